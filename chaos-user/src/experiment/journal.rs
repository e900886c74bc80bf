//! The journal: what happened, in Chaos Toolkit's journal shape, plus every fault's counters
//! over time.
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::fault::Sample;

/// How the experiment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran through; the steady state held.
    Completed,
    /// Ran through; the steady state did not hold during or after the method.
    Deviated,
    /// Could not run as written: the steady state did not hold before the method, or a fault
    /// could not be started.
    Failed,
    /// Interrupted (Ctrl-C, SIGTERM).
    Aborted,
}

impl Status {
    /// The process exit status: 0 completed, 1 deviated or failed, 130 interrupted.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Completed => 0,
            Status::Deviated | Status::Failed => 1,
            Status::Aborted => 130,
        }
    }
}

/// [`Status`] as Chaos Toolkit's journal spells it: a deviation is `completed` (with
/// `deviated: true`).
fn journal_status<S: serde::Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
    match status {
        Status::Deviated => Status::Completed.serialize(s),
        other => other.serialize(s),
    }
}

/// One activity's run.
#[derive(Clone, Debug, Serialize)]
pub struct ActivityRun {
    /// The activity as run (after substitution).
    pub activity: Value,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    /// When it started (RFC 3339, UTC).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// What it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    /// For steady-state probes: whether the output was within tolerance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
}

/// One check of the steady-state hypothesis.
#[derive(Clone, Debug, Serialize)]
pub struct SteadyState {
    /// Whether every probe was within tolerance.
    pub steady_state_met: bool,
    /// The probes' runs.
    pub probes: Vec<ActivityRun>,
}

/// The checks of the steady state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SteadyStates {
    /// Before the method.
    pub before: Option<SteadyState>,
    /// After the method.
    pub after: Option<SteadyState>,
    /// While the method ran.
    pub during: Vec<SteadyState>,
}

/// A fault an action started, and its counters over time.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    /// The action that started it.
    pub activity: String,
    /// The equivalent command line.
    pub command: String,
    /// The target cgroup.
    pub target: String,
    /// Counters, sampled while it ran; the last is final.
    pub counters: Vec<Sample>,
    /// Its first events (calls and packets it acted on), at most
    /// [`super::fault::JOURNAL_EVENTS`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::events::EventRecord>,
    /// How many events came after those.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_events: u64,
    /// Events the kernel could not report (its event buffer was full).
    #[serde(skip_serializing_if = "is_zero")]
    pub events_lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The journal of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Journal {
    /// The version of chaos that ran it.
    #[serde(rename = "chaos-version")]
    pub chaos_version: &'static str,
    /// `uname -sr` of the machine.
    pub platform: String,
    /// Host name.
    pub node: String,
    /// The experiment as written (without secrets).
    pub experiment: Value,
    /// RFC 3339 start time.
    pub start: String,
    /// RFC 3339 end time.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// How it ended. Written as Chaos Toolkit writes it: a run that deviated is `completed`
    /// with `deviated: true` (its journal's status is one of completed, failed, aborted,
    /// interrupted).
    #[serde(serialize_with = "journal_status")]
    pub status: Status,
    /// Whether the steady state did not hold during or after the method.
    pub deviated: bool,
    /// The steady-state checks.
    pub steady_states: SteadyStates,
    /// The method's activities.
    pub run: Vec<ActivityRun>,
    /// The rollbacks.
    pub rollbacks: Vec<ActivityRun>,
    /// The faults and their counters.
    pub faults: Vec<FaultRecord>,
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `(platform, node)` for the journal, as `uname -sr` and `uname -n` say.
pub fn machine() -> (String, String) {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    (
        format!("{} {}", read("ostype"), read("osrelease")),
        read("hostname"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn journal_has_chaos_toolkit_fields() {
        let run = ActivityRun {
            activity: json!({"type": "probe", "name": "p"}),
            status: "succeeded",
            start: timestamp(SystemTime::UNIX_EPOCH),
            end: timestamp(SystemTime::UNIX_EPOCH),
            duration: 0.0,
            output: Some(json!({"status": 200})),
            exception: None,
            tolerance_met: Some(true),
        };
        let journal = Journal {
            chaos_version: "0",
            platform: "Linux".into(),
            node: "n".into(),
            experiment: json!({"title": "t"}),
            start: run.start.clone(),
            end: run.end.clone(),
            duration: 1.5,
            status: Status::Deviated,
            deviated: true,
            steady_states: SteadyStates {
                before: Some(SteadyState {
                    steady_state_met: true,
                    probes: vec![run.clone()],
                }),
                after: Some(SteadyState {
                    steady_state_met: false,
                    probes: vec![],
                }),
                during: vec![],
            },
            run: vec![run],
            rollbacks: vec![],
            faults: vec![FaultRecord {
                activity: "a".into(),
                command: "chaos inject syscall".into(),
                target: "/sys/fs/cgroup/x".into(),
                counters: vec![Sample {
                    at: 1.0,
                    counters: vec![],
                }],
                events: vec![],
                more_events: 0,
                events_lost: 0,
            }],
        };
        let v = serde_json::to_value(&journal).unwrap();
        for key in [
            "experiment",
            "start",
            "end",
            "duration",
            "status",
            "deviated",
            "steady_states",
            "run",
            "rollbacks",
            "faults",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        // As Chaos Toolkit writes a deviation.
        assert_eq!(v["status"], "completed");
        assert_eq!(v["deviated"], true);
        assert_eq!(v["start"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["steady_states"]["before"]["steady_state_met"], true);
        assert_eq!(v["run"][0]["status"], "succeeded");
        assert!(v["run"][0].get("exception").is_none());
        assert_eq!(v["faults"][0]["counters"][0]["at"], 1.0);
        assert_eq!(Status::Aborted.exit_code(), 130);
    }
}
