//! What goes over the daemon's socket: requests and answers, shared by the daemon and its
//! clients (`chaos status`, `chaos stop`, `chaos inject` when a daemon runs).
use serde::{Deserialize, Serialize};

/// Where the daemon listens unless told otherwise (`--socket`, or `CHAOS_SOCKET` for clients).
pub const DEFAULT_SOCKET: &str = "/run/chaos/chaos.sock";

/// The environment variable clients read the socket path from.
pub const SOCKET_ENV: &str = "CHAOS_SOCKET";

/// `POST /faults`: a fault described exactly as on the command line after `chaos inject`,
/// e.g. `["syscall", "--syscall", "connect", "--errno", "ECONNREFUSED", "--cgroup", "/x"]`,
/// so that every fault kind `chaos inject` knows is one the daemon knows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateFault {
    /// The arguments after `chaos inject`.
    pub args: Vec<String>,
}

/// One active fault and its live counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultStatus {
    /// The daemon's id for it, for `GET`/`DELETE /faults/{id}` and `chaos stop ID`.
    pub id: u64,
    /// The fault kind (`syscall`).
    pub kind: String,
    /// What it does, e.g. `connect -> ECONNREFUSED`.
    pub description: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counts.
    pub dry_run: bool,
    /// The uid that created it.
    pub created_by: u32,
    /// Seconds until the daemon removes it (and the kernel programs stop injecting).
    pub remaining_secs: f64,
    /// Calls from the target that matched, over all its syscalls.
    pub matched: u64,
    /// Calls failed (would have been, in a dry run), over all its syscalls.
    pub injected: u64,
    /// The counters per syscall.
    pub syscalls: Vec<SyscallCounters>,
}

/// The counters of one syscall of a fault.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyscallCounters {
    /// The syscall's name.
    pub syscall: String,
    /// The errno it fails with.
    pub errno: String,
    /// Calls that matched.
    pub matched: u64,
    /// Calls failed.
    pub injected: u64,
}

/// `DELETE /faults`: what was removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Removed {
    /// The ids of the faults removed.
    pub removed: Vec<u64>,
}

/// The body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong and what would be valid.
    pub error: String,
}
