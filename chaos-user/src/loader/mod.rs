//! Loading the kernel programs, installing rules and attaching only what the rules need.
//!
//! The object is loaded once per process and shared by its faults (`loaded.rs`); an
//! [`Injector`] is one fault in it. All links are bpf_link file descriptors owned by this
//! process and nothing is pinned, so the kernel detaches everything when the last injector is
//! dropped or the process dies for any reason, SIGKILL included.
use std::path::PathBuf;

mod cost;
mod index;
mod loaded;
pub(crate) mod object;
pub use cost::{VerifierCost, verifier_costs};
pub use index::{IndexChanges, RuleIndex, Slots};
use loaded::{FaultSlots, LoadedObject};

use std::sync::{Mutex, MutexGuard};

use chaos_common::{HitCounter, Hook, MAX_RULES, Rule};

use crate::Error;

/// The kernel programs, built from chaos-ebpf by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos-ebpf"));

const CONFIG_MAP: &str = "CHAOS_CONFIG";
const RULES_MAP: &str = "CHAOS_RULES";
const COUNTERS_MAP: &str = "CHAOS_COUNTERS";
const PAUSED_MAP: &str = "CHAOS_PAUSED";
const SYS_ENTER_NRS_MAP: &str = "CHAOS_SYS_ENTER_NRS";
const TARGETS_MAP: &str = "CHAOS_TARGETS";
const HOOK_LEVELS_MAP: &str = "CHAOS_HOOK_LEVELS";

/// How the programs of a hook attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    /// BPF LSM, to the named LSM hook.
    Lsm(&'static str),
    /// cgroup sock_addr programs, to each target cgroup.
    SockAddr,
    /// cgroup sock programs, to each target cgroup.
    Sock,
    /// cgroup sockopt programs, to each target cgroup.
    Sockopt,
    /// A BTF-enabled tracepoint, system-wide (the programs match the cgroup themselves).
    TpBtf(&'static str),
}

/// The programs that enforce `hook`'s rules and how they attach.
fn programs(hook: Hook) -> (&'static [&'static str], Attach) {
    use Attach::*;
    match hook {
        Hook::FileOpen => (&["chaos_file_open"], Lsm("file_open")),
        Hook::FilePermission => (&["chaos_file_permission"], Lsm("file_permission")),
        Hook::MmapFile => (&["chaos_mmap_file"], Lsm("mmap_file")),
        Hook::FileMprotect => (&["chaos_file_mprotect"], Lsm("file_mprotect")),
        Hook::FileIoctl => (&["chaos_file_ioctl"], Lsm("file_ioctl")),
        Hook::FileFcntl => (&["chaos_file_fcntl"], Lsm("file_fcntl")),
        Hook::FileLock => (&["chaos_file_lock"], Lsm("file_lock")),
        Hook::InodeUnlink => (&["chaos_inode_unlink"], Lsm("inode_unlink")),
        Hook::InodeRmdir => (&["chaos_inode_rmdir"], Lsm("inode_rmdir")),
        Hook::InodeMkdir => (&["chaos_inode_mkdir"], Lsm("inode_mkdir")),
        Hook::InodeRename => (&["chaos_inode_rename"], Lsm("inode_rename")),
        Hook::InodeLink => (&["chaos_inode_link"], Lsm("inode_link")),
        Hook::InodeSymlink => (&["chaos_inode_symlink"], Lsm("inode_symlink")),
        Hook::InodeSetattr => (&["chaos_inode_setattr"], Lsm("inode_setattr")),
        Hook::InodeGetattr => (&["chaos_inode_getattr"], Lsm("inode_getattr")),
        Hook::BprmCheck => (&["chaos_bprm_check_security"], Lsm("bprm_check_security")),
        Hook::TaskAlloc => (&["chaos_task_alloc"], Lsm("task_alloc")),
        Hook::TaskKill => (&["chaos_task_kill"], Lsm("task_kill")),
        Hook::SbMount => (&["chaos_sb_mount"], Lsm("sb_mount")),
        Hook::SocketListen => (&["chaos_socket_listen"], Lsm("socket_listen")),
        Hook::SocketAccept => (&["chaos_socket_accept"], Lsm("socket_accept")),
        Hook::SocketSendmsg => (&["chaos_socket_sendmsg"], Lsm("socket_sendmsg")),
        Hook::SocketRecvmsg => (&["chaos_socket_recvmsg"], Lsm("socket_recvmsg")),
        Hook::SocketShutdown => (&["chaos_socket_shutdown"], Lsm("socket_shutdown")),
        Hook::Connect => (&["chaos_connect4", "chaos_connect6"], SockAddr),
        Hook::Bind => (&["chaos_bind4", "chaos_bind6"], SockAddr),
        Hook::SockCreate => (&["chaos_sock_create"], Sock),
        Hook::Getsockopt => (&["chaos_getsockopt"], Sockopt),
        Hook::Setsockopt => (&["chaos_setsockopt"], Sockopt),
        Hook::SysEnter => (&["chaos_sys_enter"], TpBtf("sys_enter")),
    }
}

/// Raises this process's soft limit on open files to its hard limit: every cgroup a rule
/// targets holds one bpf_link file descriptor per program attached there, and a thousand
/// targets pass the usual soft limit of 1024 long before the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        // Failing leaves the old limit, and attaching reports EMFILE if it is too low.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A rule, the cgroup directory it targets (cgroup programs attach there) and what it is
/// for, in reports.
#[derive(Clone, Debug)]
pub struct PlannedRule {
    /// The rule as the kernel will see it.
    pub rule: Rule,
    /// The target cgroup's directory in the v2 hierarchy.
    pub cgroup_dir: PathBuf,
    /// What the rule stands for (a syscall name), to group counters in reports.
    pub label: String,
}

/// The object this process loaded, shared by all its faults; `None` while no fault runs.
static LOADED: Mutex<Option<LoadedObject>> = Mutex::new(None);

fn loaded() -> MutexGuard<'static, Option<LoadedObject>> {
    // The object's bookkeeping is updated only after each kernel write succeeds: keep going
    // after a panic elsewhere.
    LOADED.lock().unwrap_or_else(|e| e.into_inner())
}

/// One fault's rules, installed in the process's shared loaded object and attached where they
/// need to be. The programs are loaded and verified once per process, by the first fault that
/// needs them; later faults only write their rules and the index, and attach cgroup programs
/// to target cgroups that have none yet. Dropping the injector removes the fault (and, with
/// the last fault, everything that was loaded).
pub struct Injector {
    fault: FaultSlots,
}

impl Injector {
    /// Installs `rules` and attaches the programs they need. All or nothing: on error, nothing
    /// of this fault stays (and nothing at all, when no other fault is running).
    pub fn start(rules: &[PlannedRule]) -> Result<Injector, Error> {
        if rules.len() > MAX_RULES as usize {
            return Err(Error::Invalid {
                field: "rules",
                value: rules.len().to_string(),
                expected: format!("at most {MAX_RULES} rules at once"),
            });
        }
        let loading_since = crate::fault::boot_time_ns()?;
        let mut guard = loaded();
        if guard.is_none() {
            *guard = Some(LoadedObject::load()?);
        }
        let object = guard.as_mut().expect("just loaded");
        let fault = match object.add(rules) {
            Ok(fault) => fault,
            Err(err) => {
                if object.is_idle() {
                    *guard = None;
                }
                return Err(err);
            }
        };
        // Deadlines were set when the rules were planned; loading (the verifier, on the first
        // fault) must not eat into the fault's time, so they move by the time it took.
        let shift = crate::fault::boot_time_ns()?.saturating_sub(loading_since);
        if let Err(err) = object.shift_deadlines(&fault.slots, shift) {
            let _ = object.remove(&fault);
            if object.is_idle() {
                *guard = None;
            }
            return Err(err);
        }
        Ok(Injector { fault })
    }

    /// A handle on the map of processes stopped by pause rules (thread group id -> boot-clock
    /// ns at which to continue them), for a [`crate::pause::Resumer`]. Every pause fault of
    /// the process shares the map; each resumer continues whatever is due.
    pub fn take_paused(
        &mut self,
    ) -> Result<aya::maps::HashMap<aya::maps::MapData, u32, u64>, Error> {
        let guard = loaded();
        let object = guard.as_ref().expect("an injector keeps the object loaded");
        let map = aya::maps::Map::LruHashMap(object.map_handle(PAUSED_MAP)?);
        aya::maps::HashMap::try_from(map).map_err(|source| Error::Map {
            map: PAUSED_MAP,
            source,
        })
    }

    /// The counters of this fault's rules, in rule order.
    pub fn counters(&self) -> Result<Vec<HitCounter>, Error> {
        let guard = loaded();
        let object = guard.as_ref().expect("an injector keeps the object loaded");
        object.counters(&self.fault.slots)
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let mut guard = loaded();
        if let Some(object) = guard.as_mut() {
            if let Err(err) = object.remove(&self.fault) {
                tracing::warn!("removing a fault's rules: {err}");
            }
            if object.is_idle() {
                // Unloads every program and map: nothing of chaos stays in the kernel.
                *guard = None;
            }
        }
    }
}
