//! The native `chaos` provider: a fault of this project, started by an action and removed
//! when its `duration` ends or the experiment ends.
//!
//! The provider's `func` is the fault kind and its `arguments` are the fields of a
//! [`FaultSpec`] (`func: syscall`, `arguments: {syscalls: connect, errno: ECONNREFUSED,
//! target: {cgroup: /x}}`), the same JSON `POST /faults` takes and `chaos schema` describes.
//! A `target` beside `arguments` is accepted too (files written before the spec). Starting and
//! stopping a fault is [`crate::engine`]'s, shared with the daemon and `chaos inject`.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::spec::FaultSpec;
use crate::{
    engine::{StartedFault, TargetCheck},
    events::{Clock, EventRecord},
    spec::{FaultKind, SpecError},
};

/// Reads a `chaos` provider mapping into a checked spec. Errors are `(key, value, expected)`,
/// key relative to the provider (`arguments.schedule.probability`).
pub fn from_provider(p: &Map<String, Value>) -> Result<FaultSpec, (String, String, String)> {
    let func = match p.get("func") {
        Some(Value::String(f)) if FaultKind::from_name(f).is_some() => f.clone(),
        other => {
            return Err((
                "func".into(),
                other.map(Value::to_string).unwrap_or_default(),
                format!("the fault kind: one of {}", FaultKind::names()),
            ));
        }
    };
    let mut arguments = match p.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(other) => {
            return Err((
                "arguments".into(),
                other.to_string(),
                "a mapping: the fields of the fault spec (`chaos schema`)".into(),
            ));
        }
    };
    match (arguments.get("kind"), p.get("target")) {
        (Some(kind), _) if kind.as_str() != Some(func.as_str()) => {
            return Err((
                "arguments.kind".into(),
                kind.to_string(),
                format!("the provider's func ({func}), or left out"),
            ));
        }
        (_, Some(target)) if arguments.contains_key("target") => {
            return Err((
                "target".into(),
                target.to_string(),
                "one target: in arguments or beside them, not both".into(),
            ));
        }
        (_, Some(target)) => {
            arguments.insert("target".into(), target.clone());
        }
        _ => {}
    }
    arguments.insert("kind".into(), Value::String(func));
    let value = Value::Object(arguments);
    let at = |e: SpecError| {
        let key = match e.path.as_str() {
            "" => "arguments".to_owned(),
            path => format!("arguments.{path}"),
        };
        let shown = e
            .path
            .split('.')
            .try_fold(&value, |v, k| v.get(k.split('[').next().unwrap_or(k)))
            .map(Value::to_string)
            .unwrap_or_default();
        (key, shown, e.message)
    };
    let spec = FaultSpec::from_value(value.clone()).map_err(at)?;
    spec.check().map_err(at)?;
    Ok(spec)
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

/// How many events of each fault a journal keeps; the rest are only counted.
pub const JOURNAL_EVENTS: usize = 100;

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
    /// Converts the events' times.
    clock: Option<Clock>,
    /// Its first [`JOURNAL_EVENTS`] events.
    pub events: Vec<EventRecord>,
    /// Events after those, counted only.
    pub more_events: u64,
    /// Events the kernel could not report (its buffer was full), as last read.
    pub events_lost: u64,
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
        let mut spec = spec.clone();
        if dry_run {
            spec.set_dry_run(true);
        }
        // Every fault kind, through the code the daemon and `chaos inject` run them with too.
        let fault = StartedFault::start_checked(&spec, check.unwrap_or(&|_| Ok(())))?;
        // The journal keeps the first events; a fault whose events cannot be had still runs.
        let clock = match fault.listen_events(true).and_then(|()| Ok(Clock::now()?)) {
            Ok(clock) => Some(clock),
            Err(err) => {
                tracing::warn!("no events for the journal: {err:#}");
                None
            }
        };
        Ok(RunningFault {
            activity: activity.to_owned(),
            command_line: spec.command_line(),
            target: fault.target.clone(),
            fault: Arc::new(fault),
            started: Instant::now(),
            final_sampled: false,
            samples: Vec::new(),
            clock,
            events: Vec::new(),
            more_events: 0,
            events_lost: 0,
        })
    }

    /// Keeps the events that came since the last call (the first [`JOURNAL_EVENTS`]), counts
    /// the rest; only while the fault is active, since stopping it drops what was not read.
    fn read_events(&mut self) {
        let Some(clock) = &self.clock else {
            return;
        };
        if !self.fault.active() {
            return;
        }
        for event in self.fault.events(clock) {
            if self.events.len() < JOURNAL_EVENTS {
                self.events.push(event);
            } else {
                self.more_events += 1;
            }
        }
        self.events_lost = self.fault.events_lost();
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
        self.read_events();
        let expired = self.started.elapsed() >= self.fault.duration && self.fault.stop();
        // Once stopped (here, by the runner or by the daemon), its last counters are sampled
        // once more.
        if self.final_sampled {
            return None;
        }
        // Its container exited (say): nothing left to fault. The daemon may have stopped it
        // for the same reason already; the reason given is the same.
        let gone = !expired && self.fault.target_gone();
        if gone {
            self.fault.stop();
        }
        self.final_sampled = !self.fault.active();
        if let Some(counters) = self.fault.counters() {
            self.samples.push(Sample { at, counters });
        }
        match (self.final_sampled, expired, gone) {
            (false, _, _) => None,
            (true, true, _) => Some("duration over"),
            (true, false, true) => Some("its target cgroup was removed"),
            (true, false, false) => Some("stopped from outside (chaos stop)"),
        }
    }

    /// Records the last counters and removes the fault.
    pub fn stop(&mut self, at: f64) {
        self.read_events();
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
    fn arguments_are_the_spec_fields() {
        let spec = from_provider(&provider(json!({
            "type": "chaos", "func": "syscall",
            "arguments": {"syscalls": ["connect"], "errno": "ECONNREFUSED",
                          "schedule": {"probability": 0.5, "max_hits": 3}, "duration": "10s",
                          "target": {"cgroup": "/chaos/web"}}
        })))
        .unwrap();
        assert_eq!(
            spec.command_line(),
            "chaos inject syscall --syscall connect --errno ECONNREFUSED --probability 0.5 --max-hits 3 --target-cgroup /chaos/web --duration 10s"
                .replace("--target-cgroup", "--cgroup")
        );
        // A target beside the arguments, as files written before the spec have it.
        let beside = from_provider(&provider(json!({
            "func": "syscall", "arguments": {"syscalls": "connect", "errno": "ECONNREFUSED"},
            "target": {"pid": 1}
        })))
        .unwrap();
        assert_eq!(beside.target(), &crate::spec::TargetSpec::Pid(1));
    }

    #[test]
    fn bad_arguments_are_named_by_their_path() {
        let (key, value, expected) = from_provider(&provider(json!({
            "func": "syscall", "arguments": {"syscalls": "connect", "errno": "EWHAT", "target": {"pid": 1}}
        })))
        .unwrap_err();
        assert_eq!(key, "arguments.errno");
        assert_eq!(value, "\"EWHAT\"");
        assert!(expected.contains("EWHAT"), "{expected}");
        let (key, _, expected) = from_provider(&provider(json!({
            "func": "syscall", "arguments": {"syscalls": "connect", "errno": "EIO",
            "schedule": {"probability": 1.5}, "target": {"pid": 1}}
        })))
        .unwrap_err();
        assert_eq!(key, "arguments.schedule.probability");
        assert_eq!(expected, "1.5 is not in (0, 1]");
        let (key, _, expected) =
            from_provider(&provider(json!({"func": "nosuch", "target": {"pid": 1}}))).unwrap_err();
        assert_eq!(key, "func");
        assert!(expected.contains("net-drop"), "{expected}");
        let (key, _, _) = from_provider(&provider(
            json!({"func": "syscall", "arguments": {"syscalls": "connect", "errno": "EIO"}}),
        ))
        .unwrap_err();
        assert_eq!(key, "arguments.target");
    }
}
