//! Set-up shared by the event tests: running `chaos inject ... --events json --json`, and
//! reading back its events (stdout) and report (stderr).
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::chaos_bin;

/// The `chaos-proc` test process, next to `chaos`.
pub fn proc_bin() -> PathBuf {
    chaos_bin().with_file_name("chaos-proc")
}

/// The `chaos-net` client, next to `chaos`.
pub fn net_bin() -> PathBuf {
    chaos_bin().with_file_name("chaos-net")
}

/// What `chaos inject ... --events json --json` printed.
#[derive(Debug)]
pub struct EventOutcome {
    /// Whether chaos exited with 0.
    pub success: bool,
    /// Each JSON event line of stdout.
    pub events: Vec<Value>,
    /// The JSON report (on stderr, since stdout carries the events); null when chaos
    /// printed none (it failed to start).
    pub report: Value,
    /// Everything on stderr: chaos's messages, the report, the command's stdout.
    pub stderr: String,
}

impl EventOutcome {
    /// `injected` (syscall faults) or `affected` (packet faults) of the report's fault `i`.
    pub fn injected(&self, i: usize) -> u64 {
        let fault = &self.report["faults"][i];
        fault["injected"]
            .as_u64()
            .or_else(|| fault["affected"].as_u64())
            .unwrap_or_else(|| panic!("no injected count in {}: {}", self.report, self.stderr))
    }

    /// The last JSON line the command printed (it went to stderr), other than the report.
    pub fn command_json(&self) -> Value {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{') && !l.starts_with("{\"faults\""))
            .unwrap_or_else(|| panic!("no command JSON on stderr: {}", self.stderr));
        serde_json::from_str(line).expect("command JSON")
    }

    /// How many events each value of `field` has.
    pub fn count_by(&self, field: &str) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for event in &self.events {
            *counts.entry(event[field].to_string()).or_default() += 1;
        }
        counts
    }
}

/// Runs `chaos ARGS --events json --json` with `env` set, to completion.
pub fn inject_with_events(args: &[&str], env: &[(&str, &str)]) -> EventOutcome {
    let (inject, command) = match args.iter().position(|a| *a == "--") {
        Some(i) => (&args[..i], &args[i..]),
        None => (args, &[][..]),
    };
    let out = Command::new(chaos_bin())
        .args(inject)
        .args(["--events", "json", "--json"])
        .args(command)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running chaos");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let events = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is no event: {e}"))
        })
        .collect();
    let report = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"faults\""))
        .map(|l| serde_json::from_str(l).expect("report JSON"))
        .unwrap_or(Value::Null);
    EventOutcome {
        success: out.status.success(),
        events,
        report,
        stderr,
    }
}
