//! `chaos report`: an experiment's journal as one self-contained HTML page (inline SVG, no
//! scripts, no network): the verdict, a timeline of every probe, action, fault and rollback,
//! each fault's injections and matches per second from its counter samples, and tables of the
//! steady-state probes with their values and tolerances.
//!
//! It reads the journal file (the JSON `chaos run` writes), not the runner's types, so a
//! journal from an older chaos or from the daemon renders the same way.
use std::{path::Path, time::SystemTime};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::RuleCounters;

mod chart;
mod html;

pub use chart::{rate_chart, timeline_chart};
pub use html::render;

/// A journal as read back from its file. Missing fields read as empty, so that a partial
/// journal (an experiment that failed early) still renders.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Journal {
    /// The version of chaos that ran it.
    #[serde(rename = "chaos-version")]
    pub chaos_version: String,
    /// `uname -sr` of the machine.
    pub platform: String,
    /// Host name.
    pub node: String,
    /// The experiment as written.
    pub experiment: Value,
    /// RFC 3339 start time.
    pub start: String,
    /// RFC 3339 end time.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// `completed`, `deviated`, `failed` or `aborted`.
    pub status: String,
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

/// The checks of the steady state.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SteadyStates {
    /// Before the method.
    pub before: Option<SteadyState>,
    /// After the method.
    pub after: Option<SteadyState>,
    /// While the method ran.
    pub during: Vec<SteadyState>,
}

/// One check of the steady-state hypothesis.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SteadyState {
    /// Whether every probe was within tolerance.
    pub steady_state_met: bool,
    /// The probes' runs.
    pub probes: Vec<ActivityRun>,
}

/// One activity's run.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActivityRun {
    /// The activity as run: `name`, `type`, `provider`, a probe's `tolerance`.
    pub activity: Value,
    /// `succeeded` or `failed`.
    pub status: String,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// What it returned.
    pub output: Option<Value>,
    /// Why it failed.
    pub exception: Option<Vec<String>>,
    /// For steady-state probes: whether the output was within tolerance.
    pub tolerance_met: Option<bool>,
}

impl ActivityRun {
    /// The activity's name.
    pub fn name(&self) -> &str {
        self.activity
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
    }

    /// `probe` or `action`.
    pub fn kind(&self) -> &str {
        self.activity
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("activity")
    }
}

/// A fault an action started, and its counters over time.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct FaultRecord {
    /// The action that started it.
    pub activity: String,
    /// The equivalent command line.
    pub command: String,
    /// The target cgroup.
    pub target: String,
    /// Counters sampled while it ran; the last is final.
    pub counters: Vec<Sample>,
}

/// A fault's counters `at` seconds after the experiment started.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// Seconds since the experiment started.
    pub at: f64,
    /// Per rule.
    pub counters: Vec<RuleCounters>,
}

impl Sample {
    /// `(matched, injected)` over all rules.
    pub fn totals(&self) -> (u64, u64) {
        self.counters
            .iter()
            .fold((0, 0), |(m, i), c| (m + c.matched, i + c.injected))
    }
}

impl Journal {
    /// Reads a journal file.
    pub fn read(path: &Path) -> anyhow::Result<Journal> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the journal {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a chaos journal (the JSON `chaos run --journal` writes)",
                path.display()
            )
        })
    }

    /// A journal from its JSON value (`chaos run` has it in memory).
    pub fn from_value(value: Value) -> anyhow::Result<Journal> {
        serde_json::from_value(value).context("the journal does not have a journal's shape")
    }

    /// The experiment's title.
    pub fn title(&self) -> &str {
        self.experiment
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("(untitled experiment)")
    }

    /// Seconds from the journal's start to an RFC 3339 time; None when either does not parse.
    fn offset(&self, at: &str) -> Option<f64> {
        let start = parse_time(&self.start)?;
        let at = parse_time(at)?;
        Some(match at.duration_since(start) {
            Ok(d) => d.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        })
    }

    /// The span an activity ran, in seconds from the start.
    fn span(&self, run: &ActivityRun) -> Option<(f64, f64)> {
        let start = self.offset(&run.start)?;
        let end = self.offset(&run.end).unwrap_or(start + run.duration);
        Some((start, end.max(start)))
    }

    /// When the action that started a fault began, in seconds from the start.
    fn fault_start(&self, fault: &FaultRecord) -> Option<f64> {
        let action = self.run.iter().find(|r| r.name() == fault.activity)?;
        self.span(action).map(|(start, _)| start)
    }

    /// The seconds the timeline spans: the journal's duration, or the latest thing in it.
    pub fn span_secs(&self) -> f64 {
        let last_sample = self
            .faults
            .iter()
            .filter_map(|f| f.counters.last().map(|s| s.at));
        let last_bar = self.timeline().into_iter().map(|b| b.end);
        last_sample
            .chain(last_bar)
            .fold(self.duration, f64::max)
            .max(1.0)
    }

    /// Every bar of the timeline, in the order the experiment ran them.
    pub fn timeline(&self) -> Vec<Bar> {
        let mut bars = Vec::new();
        let probes = |phase: &str, state: &Option<SteadyState>, bars: &mut Vec<Bar>| {
            for p in state.iter().flat_map(|s| &s.probes) {
                if let Some((start, end)) = self.span(p) {
                    bars.push(Bar {
                        label: format!("{phase}: {}", p.name()),
                        kind: if p.tolerance_met == Some(false) || p.status == "failed" {
                            BarKind::ProbeNotMet
                        } else {
                            BarKind::Probe
                        },
                        start,
                        end,
                    });
                }
            }
        };
        probes("before", &self.steady_states.before, &mut bars);
        // Continuous checks share one row per probe (see `rows`).
        for during in &self.steady_states.during {
            probes("during", &Some(during.clone()), &mut bars);
        }
        for run in &self.run {
            let Some((start, end)) = self.span(run) else {
                continue;
            };
            bars.push(Bar {
                label: format!("{}: {}", run.kind(), run.name()),
                kind: match (run.kind(), run.status.as_str()) {
                    (_, "failed") => BarKind::Failed,
                    ("probe", _) => BarKind::Probe,
                    _ => BarKind::Action,
                },
                start,
                end,
            });
        }
        for fault in &self.faults {
            let (Some(first), Some(last)) = (fault.counters.first(), fault.counters.last()) else {
                continue;
            };
            let start = self.fault_start(fault).unwrap_or(first.at).min(first.at);
            bars.push(Bar {
                label: format!("fault: {}", fault.activity),
                kind: BarKind::Fault,
                start,
                end: last.at,
            });
        }
        probes("after", &self.steady_states.after, &mut bars);
        for run in &self.rollbacks {
            if let Some((start, end)) = self.span(run) {
                bars.push(Bar {
                    label: format!("rollback: {}", run.name()),
                    kind: if run.status == "failed" {
                        BarKind::Failed
                    } else {
                        BarKind::Rollback
                    },
                    start,
                    end,
                });
            }
        }
        bars
    }

    /// Each fault's `(seconds, per second)` series, one point per counter sample: the
    /// injections per second with `injected`, else the matches per second.
    pub fn rates(&self, injected: bool) -> Vec<Series> {
        self.faults
            .iter()
            .map(|fault| {
                let start = self.fault_start(fault);
                let pick = |s: &Sample| {
                    let (m, i) = s.totals();
                    if injected { i } else { m }
                };
                let mut points = Vec::with_capacity(fault.counters.len());
                // Before the first sample the counters were 0 at the action's start.
                let mut prev = start.map(|at| (at, 0u64));
                for s in &fault.counters {
                    let now = pick(s);
                    let rate = match prev {
                        Some((at, before)) if s.at > at => {
                            now.saturating_sub(before) as f64 / (s.at - at)
                        }
                        _ => 0.0,
                    };
                    points.push((s.at, rate));
                    prev = Some((s.at, now));
                }
                Series {
                    name: fault.activity.clone(),
                    points,
                }
            })
            .collect()
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// The timeline's rows: each distinct label once, in the order it first ran. Bars with the
/// same label (a probe checked again and again during the method) share a row.
pub fn rows(bars: &[Bar]) -> Vec<&str> {
    let mut rows: Vec<&str> = Vec::new();
    for b in bars {
        if !rows.contains(&b.label.as_str()) {
            rows.push(&b.label);
        }
    }
    rows
}

/// One bar of the timeline: something that ran from `start` to `end` seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// `before: probe-name`, `action: name`, `fault: name`, ...
    pub label: String,
    /// What it was, which sets its colour.
    pub kind: BarKind,
    /// Seconds from the experiment's start.
    pub start: f64,
    /// Seconds from the experiment's start.
    pub end: f64,
}

/// What a timeline bar stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// A probe within tolerance, or a method probe that ran.
    Probe,
    /// A steady-state probe out of tolerance.
    ProbeNotMet,
    /// A method action.
    Action,
    /// A fault's active window.
    Fault,
    /// A rollback.
    Rollback,
    /// An activity that failed.
    Failed,
}

/// One fault's points for a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The action that started the fault.
    pub name: String,
    /// `(seconds since the start, value)`.
    pub points: Vec<(f64, f64)>,
}

/// Reads `journal` and writes its report to `out`.
pub fn write(journal: &Path, out: &Path) -> anyhow::Result<()> {
    let page = render(&Journal::read(journal)?);
    std::fs::write(out, page).with_context(|| format!("writing the report {}", out.display()))
}

#[cfg(test)]
pub(crate) mod tests;
