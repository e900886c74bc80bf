//! The native `chaos` provider: a fault of this project, started by an action and removed
//! when its `duration` ends or the experiment ends.
//!
//! The provider's `func` and `arguments` become `chaos inject` arguments (`func: syscall`,
//! `arguments: {syscall: connect, errno: ECONNREFUSED}` -> `syscall --syscall connect --errno
//! ECONNREFUSED`) parsed by the same clap structs as the command line, so every fault kind
//! and option of `chaos inject` works here as it does there. Starting and stopping a fault is
//! [`crate::engine`]'s, shared with the daemon.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    cli::inject::InjectCommand,
    engine::{StartedFault, TargetCheck},
};

/// `chaos inject` arguments as the experiment gave them.
#[derive(Debug, clap::Parser)]
#[command(name = "chaos inject", no_binary_name = true)]
struct FaultCommand {
    #[command(subcommand)]
    inject: InjectCommand,
}

/// A checked `chaos` provider: the `chaos inject` arguments it stands for.
#[derive(Clone, Debug)]
pub struct FaultSpec {
    /// The fault kind (`chaos inject` subcommand).
    pub func: String,
    /// The arguments after the subcommand.
    pub argv: Vec<String>,
}

impl FaultSpec {
    /// Checks a provider mapping. Errors are `(key, value, expected)`, key relative to the
    /// provider.
    pub fn from_provider(p: &Map<String, Value>) -> Result<FaultSpec, (String, String, String)> {
        let func = match p.get("func") {
            Some(Value::String(f)) => f.clone(),
            other => {
                return Err((
                    "func".into(),
                    other.map(Value::to_string).unwrap_or_default(),
                    format!(
                        "the fault kind, a `chaos inject` subcommand: {}",
                        fault_kinds()
                    ),
                ));
            }
        };
        let mut argv = Vec::new();
        for (section, required) in [("arguments", false), ("target", true)] {
            match p.get(section) {
                Some(Value::Object(args)) => {
                    for (key, value) in args {
                        if section == "target" && key == "command" {
                            return Err((
                                format!("target.{key}"),
                                value.to_string(),
                                "cgroup: PATH or pid: N; an experiment targets running processes"
                                    .into(),
                            ));
                        }
                        push_option(&mut argv, key, value);
                    }
                }
                None if !required => {}
                None => {
                    return Err((
                        section.into(),
                        String::new(),
                        "missing: whom the fault hits, e.g. target: {cgroup: /system.slice/web.service} or {pid: 1234}".into(),
                    ));
                }
                Some(other) => {
                    return Err((
                        section.into(),
                        other.to_string(),
                        "a mapping of option names to values".into(),
                    ));
                }
            }
        }
        let spec = FaultSpec { func, argv };
        spec.parse(false)
            .map_err(|err| (String::new(), spec.command_line(), err))?;
        Ok(spec)
    }

    /// `chaos inject ...` as a user would type it, for messages and the journal.
    pub fn command_line(&self) -> String {
        format!("chaos inject {} {}", self.func, self.argv.join(" "))
    }

    fn parse(&self, dry_run: bool) -> Result<InjectCommand, String> {
        let mut args = vec![self.func.clone()];
        args.extend(self.argv.iter().cloned());
        if dry_run {
            args.push("--dry-run".into());
        }
        FaultCommand::try_parse_from(&args)
            .map(|c| c.inject)
            .map_err(|err| {
                let text = err.render().to_string();
                let first = text.split("\n\nUsage").next().unwrap_or(&text);
                let first = first
                    .split("\n\nFor more information")
                    .next()
                    .unwrap_or(first);
                first
                    .trim()
                    .trim_start_matches("error: ")
                    .replace('\n', " ")
            })
    }
}

fn fault_kinds() -> String {
    use clap::CommandFactory as _;
    FaultCommand::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `key: value` as `--key value`: `true` is a bare flag, `false` and null leave it out, lists
/// are comma-separated.
fn push_option(argv: &mut Vec<String>, key: &str, value: &Value) {
    let flag = format!("--{}", key.replace('_', "-"));
    match value {
        Value::Bool(true) => argv.push(flag),
        Value::Bool(false) | Value::Null => {}
        Value::String(s) => argv.extend([flag, s.clone()]),
        Value::Array(items) => {
            let joined: Vec<String> = items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect();
            argv.extend([flag, joined.join(",")]);
        }
        other => argv.extend([flag, other.to_string()]),
    }
}

pub use crate::engine::RuleCounters;

/// The counters of a fault at a moment, seconds after the experiment started.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the experiment started.
    pub at: f64,
    /// Per rule.
    pub counters: Vec<RuleCounters>,
}

/// A fault an action started.
pub struct RunningFault {
    /// The action's name.
    pub activity: String,
    /// `chaos inject ...` it stands for.
    pub command_line: String,
    /// The target cgroup directory.
    pub target: String,
    fault: Arc<StartedFault>,
    started: Instant,
    /// Whether the counters it had when it was stopped are among the samples.
    final_sampled: bool,
    /// Counters over time.
    pub samples: Vec<Sample>,
}

impl RunningFault {
    /// Starts the fault now. On error nothing stays attached.
    /// `check`, if given, decides on the resolved target first.
    pub fn start(
        activity: &str,
        spec: &FaultSpec,
        dry_run: bool,
        check: Option<&TargetCheck>,
    ) -> anyhow::Result<RunningFault> {
        let command = spec.parse(dry_run).map_err(anyhow::Error::msg)?;
        // Every `chaos inject` fault kind, through the code the daemon runs them with too.
        let fault = StartedFault::start_checked(
            command,
            "a fault in an experiment",
            check.unwrap_or(&|_| Ok(())),
        )?;
        Ok(RunningFault {
            activity: activity.to_owned(),
            command_line: if dry_run {
                format!("{} --dry-run", spec.command_line())
            } else {
                spec.command_line()
            },
            target: fault.target.clone(),
            fault: Arc::new(fault),
            started: Instant::now(),
            final_sampled: false,
            samples: Vec::new(),
        })
    }

    /// The fault itself, for those that list and may stop it besides the runner (the daemon).
    pub fn shared(&self) -> &Arc<StartedFault> {
        &self.fault
    }

    /// Time left until its duration ends.
    pub fn remaining(&self) -> Option<Duration> {
        Some(self.fault.duration.saturating_sub(self.started.elapsed()))
    }

    /// Whether it is still injecting (the daemon may have stopped it: `chaos stop`).
    pub fn active(&self) -> bool {
        self.fault.active()
    }

    /// Records the counters at `at` seconds into the experiment and removes the fault once its
    /// duration has passed. Says why when the fault is found ended for the first time.
    pub fn tick(&mut self, at: f64) -> Option<&'static str> {
        let expired = self.started.elapsed() >= self.fault.duration && self.fault.stop();
        // Once stopped (here, by the runner or by the daemon), its last counters are sampled
        // once more.
        if self.final_sampled {
            return None;
        }
        self.final_sampled = !self.fault.active();
        if let Some(counters) = self.fault.counters() {
            self.samples.push(Sample { at, counters });
        }
        match (self.final_sampled, expired) {
            (false, _) => None,
            (true, true) => Some("duration over"),
            (true, false) => Some("stopped from outside (chaos stop)"),
        }
    }

    /// Records the last counters and removes the fault.
    pub fn stop(&mut self, at: f64) {
        self.fault.stop();
        let _ = self.tick(at);
    }

    /// The latest counters.
    pub fn last(&self) -> Vec<RuleCounters> {
        self.samples
            .last()
            .map(|s| s.counters.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_become_cli_options() {
        let spec = FaultSpec::from_provider(&provider(json!({
            "type": "chaos", "func": "syscall",
            "arguments": {"syscall": ["connect"], "errno": "ECONNREFUSED", "probability": 0.5, "max_hits": 3, "dry_run": false, "duration": "10s"},
            "target": {"cgroup": "/chaos/web"}
        })))
        .unwrap();
        assert_eq!(
            spec.command_line(),
            "chaos inject syscall --syscall connect --errno ECONNREFUSED --probability 0.5 --max-hits 3 --duration 10s --cgroup /chaos/web"
        );
    }

    #[test]
    fn bad_options_are_refused_with_clap_message() {
        let (key, value, expected) = FaultSpec::from_provider(&provider(json!({
            "func": "syscall", "arguments": {"syscall": "connect", "errno": "EWHAT"}, "target": {"pid": 1}
        })))
        .unwrap_err();
        assert_eq!(key, "");
        assert!(value.contains("--errno EWHAT"), "{value}");
        assert!(
            expected.contains("EWHAT") && expected.contains("errno"),
            "{expected}"
        );
        let (_, _, expected) = FaultSpec::from_provider(&provider(json!({
            "func": "nosuch", "target": {"pid": 1}
        })))
        .unwrap_err();
        assert!(expected.contains("nosuch"), "{expected}");
        let (key, _, _) =
            FaultSpec::from_provider(&provider(json!({"func": "syscall"}))).unwrap_err();
        assert_eq!(key, "target");
    }
}
