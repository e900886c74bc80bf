//! What goes over the daemon's socket: requests and answers, shared by the daemon and its
//! clients (`chaos status`, `chaos stop`, `chaos inject` when a daemon runs).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::engine::RuleCounters;

/// Where the daemon listens unless told otherwise (`--socket`, or `CHAOS_SOCKET` for clients).
pub const DEFAULT_SOCKET: &str = "/run/chaos/chaos.sock";

/// The environment variable clients read the socket path from.
pub const SOCKET_ENV: &str = "CHAOS_SOCKET";

/// `POST /faults` takes a [`crate::spec::FaultSpec`] as JSON (its schema: `GET /schema`,
/// `docs/fault-spec.schema.json`) and answers with the new fault's [`FaultStatus`].
pub use crate::spec::FaultSpec as CreateFault;

/// One active fault and its live counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultStatus {
    /// The daemon's id for it, for `GET`/`DELETE /faults/{id}` and `chaos stop ID`.
    pub id: u64,
    /// The fault kind, as the spec's `kind` (`syscall`, `signal`, `latency`, `net-drop`,
    /// `net-delay`, `net-rate`, `net-duplicate`, `net-corrupt`).
    pub kind: String,
    /// What it does, e.g. `connect -> ECONNREFUSED` or `drop`.
    pub description: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counts.
    pub dry_run: bool,
    /// The uid that created it (of the experiment's creator for an experiment's fault).
    pub created_by: u32,
    /// The experiment that started it, if one did (`GET /experiments/{id}`).
    pub experiment: Option<u64>,
    /// Seconds until the daemon removes it (and the kernel programs stop injecting).
    pub remaining_secs: f64,
    /// Calls (packets) from the target that matched, over all its rules.
    pub matched: u64,
    /// Calls failed, signalled or delayed, packets affected (would have been, in a dry run),
    /// over all its rules.
    pub injected: u64,
    /// The counters per syscall, or of the packet fault.
    pub counters: Vec<RuleCounters>,
    /// How its programs reach the kernel's security hooks (`lsm` or `fmod-ret`), for
    /// faults that use them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<crate::loader::HookMechanism>,
}

/// `DELETE /faults`: what was removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Removed {
    /// The ids of the faults removed.
    pub removed: Vec<u64>,
    /// The experiments that were running and are aborted (their faults are among `removed`).
    #[serde(default)]
    pub aborted_experiments: Vec<u64>,
}

/// `POST /experiments`: an experiment file's content, as `chaos run` sends it. The text, not
/// a path: the file is the client's, which the daemon (another user, maybe another mount
/// namespace) may not be able to read.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StartExperiment {
    /// The experiment in Chaos Toolkit's format, YAML or JSON.
    pub text: String,
    /// The file's name, for messages; a name ending in `.json` means JSON unless `format`
    /// says otherwise.
    #[serde(default)]
    pub name: Option<String>,
    /// `yaml` or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// Faults count what they would fail and fail nothing (`chaos run --dry-run`).
    #[serde(default)]
    pub dry_run: bool,
    /// Overrides the experiment's `runtime.rollbacks.strategy` (`default`, `always`, `never`,
    /// `deviated`).
    #[serde(default)]
    pub rollback_strategy: Option<String>,
    /// The environment `configuration` entries of `type: env` read (`chaos run` sends its
    /// own); the daemon's environment is never used.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The client's working directory: process and python activities run there when the
    /// client may enter it (they run as the client, with `env` as their whole environment).
    #[serde(default)]
    pub cwd: Option<String>,
}

/// Where an experiment the daemon runs is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExperimentState {
    /// Running its method, probes or rollbacks.
    Running,
    /// Asked to abort (`DELETE /experiments/{id}`): its faults are removed, it is ending.
    Aborting,
    /// Ended; `status` and `journal` say how.
    Finished,
}

/// An experiment the daemon runs or ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentStatus {
    /// The daemon's id for it.
    pub id: u64,
    /// Its title.
    pub title: String,
    /// The file name the client gave.
    pub file: String,
    /// The uid that started it.
    pub created_by: u32,
    /// Running, aborting or finished.
    pub state: ExperimentState,
    /// Once finished: `completed`, `deviated`, `failed` or `aborted`, as in the journal.
    pub status: Option<String>,
    /// Once finished: the exit status `chaos run` gives for it (0, 1 or 130).
    pub exit_code: Option<u8>,
    /// The ids of its faults active now (in `GET /faults`).
    pub faults: Vec<u64>,
    /// What it did so far, one line each (`[  1.2s] probe ok: ...`), as `chaos run` prints.
    /// Left out of `GET /experiments`.
    #[serde(default)]
    pub log: Vec<String>,
    /// Once finished, the journal `chaos run` writes. Left out of `GET /experiments`.
    #[serde(default)]
    pub journal: Option<serde_json::Value>,
}

/// The body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong and what would be valid.
    pub error: String,
}
