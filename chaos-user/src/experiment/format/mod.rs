//! The experiment document (Chaos Toolkit's format): the validated types an experiment run
//! uses. `validate` turns a parsed document into them.
use std::{path::Path, time::Duration};

use serde_json::{Map, Value};

use super::{
    document::{Document, Invalid},
    fault::FaultSpec,
};

/// Whether an activity changes the system or observes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    /// Changes the system (starts a fault, runs a command).
    Action,
    /// Observes the system; its output is recorded and checked against a tolerance.
    Probe,
}

/// What runs an activity.
#[derive(Clone, Debug)]
pub enum Provider {
    /// An HTTP request.
    Http(HttpSpec),
    /// A command.
    Process(ProcessSpec),
    /// `module.func(**arguments)` in the system's python3.
    Python(PythonSpec),
    /// A fault of this project (boxed: a spec is much larger than the other providers).
    Chaos(Box<FaultSpec>),
}

/// An `http` provider.
#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// The URL.
    pub url: String,
    /// GET, POST, ...
    pub method: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body: a string as is, anything else as JSON.
    pub body: Option<Value>,
    /// Give up after this long.
    pub timeout: Duration,
    /// When set, any other status fails the activity.
    pub expected_status: Option<u16>,
}

/// A `process` provider.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// The program.
    pub path: String,
    /// Its arguments (a string is split as POSIX shell words, as Chaos Toolkit's `shlex.split`).
    pub arguments: Vec<String>,
    /// Kill it after this long.
    pub timeout: Option<Duration>,
    /// Extra environment (a probe tolerance's process gets the output in `CHAOS_VALUE`).
    pub env: Vec<(String, String)>,
}

/// A `python` provider.
#[derive(Clone, Debug)]
pub struct PythonSpec {
    /// The module to import.
    pub module: String,
    /// The function to call.
    pub func: String,
    /// Its keyword arguments.
    pub arguments: Map<String, Value>,
}

/// An action or probe.
#[derive(Clone, Debug)]
pub struct Activity {
    /// Action or probe.
    pub kind: ActivityKind,
    /// Its name, unique enough to read a journal by.
    pub name: String,
    /// What runs it.
    pub provider: Provider,
    /// Seconds to wait before it.
    pub pause_before: Duration,
    /// Seconds to wait after it.
    pub pause_after: Duration,
    /// Runs in parallel with what follows; the method waits for it at its end.
    pub background: bool,
    /// For steady-state probes: what output is acceptable.
    pub tolerance: Option<Value>,
    /// For a `probe` tolerance: the probe that judges the output.
    pub tolerance_probe: Option<Box<Activity>>,
    /// The activity as written (after substitution), for the journal.
    pub raw: Value,
}

/// When the steady-state hypothesis is checked (`runtime.hypothesis.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypothesisStrategy {
    /// Before and after the method.
    Default,
    /// Only before the method.
    BeforeMethodOnly,
    /// Only after the method.
    AfterMethodOnly,
    /// Only while the method runs, every `frequency`.
    DuringMethodOnly,
    /// Before, during (every `frequency`) and after.
    Continuously,
}

/// Which rollbacks run (`runtime.rollbacks.strategy` or `--rollback-strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RollbackStrategy {
    /// Whenever the method started, unless the run was interrupted.
    Default,
    /// Always, even after a failed steady state before the method or an interruption.
    Always,
    /// Never.
    Never,
    /// Only when the experiment deviated.
    Deviated,
}

/// `runtime`.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// When the hypothesis is checked.
    pub strategy: HypothesisStrategy,
    /// How often during the method, for the during/continuously strategies.
    pub frequency: Duration,
    /// Stop the method as soon as a check during it deviates.
    pub fail_fast: bool,
    /// Which rollbacks run.
    pub rollbacks: RollbackStrategy,
}

/// A validated experiment, with `${...}` substituted.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `steady-state-hypothesis.title`, when there is one.
    pub hypothesis_title: Option<String>,
    /// `steady-state-hypothesis.probes`.
    pub hypothesis: Vec<Activity>,
    /// `method`.
    pub method: Vec<Activity>,
    /// `rollbacks`.
    pub rollbacks: Vec<Activity>,
    /// `runtime`.
    pub runtime: Runtime,
    /// The document as written (configuration and secret values are not echoed), for the
    /// journal.
    pub raw: Value,
}

mod validate;

impl Experiment {
    /// Reads, resolves and validates an experiment file.
    pub fn load(path: &Path) -> Result<Experiment, Invalid> {
        let doc = Document::read(path)?;
        Experiment::from_document(&doc, &|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests;
