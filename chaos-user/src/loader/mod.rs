//! Loading the kernel programs, installing rules and attaching only what the rules need.
//!
//! The object is loaded once per process and shared by its faults (`loaded.rs`); an
//! [`Injector`] is one fault in it. All links are bpf_link file descriptors owned by this
//! process and nothing is pinned, so the kernel detaches everything when the last injector is
//! dropped or the process dies for any reason, SIGKILL included.
use std::path::PathBuf;

mod cost;
pub(crate) mod cover;
mod events;
pub(crate) mod fmod_ret;
mod index;
mod kernel_btf;
mod loaded;
mod mechanism;
pub(crate) mod object;
pub use cost::{VerifierCost, verifier_costs};
pub use events::EVENTS_BUFFER_ENV;
pub(crate) use events::{EventRing, size_ring};
pub use index::{IndexChanges, RuleIndex, Slots};
use loaded::{FaultSlots, LoadedObject};
pub use mechanism::{HookMechanism, MechanismChoice, choose as choose_mechanism, choose_for};

use std::sync::{Mutex, MutexGuard};

use chaos_common::{Event, HitCounter, Hook, MAX_RULES, Rule};

use crate::{Error, btf};

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
    /// A raw tracepoint, by name, system-wide (the programs match the cgroup themselves).
    RawTracepoint(&'static str),
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
        Hook::SysEnter => (&["chaos_sys_enter"], RawTracepoint("sys_enter")),
    }
}

/// Raises this process's soft limit on open files to its hard limit: every cgroup a rule
/// targets holds one bpf_link file descriptor per program attached there, and a thousand
/// targets pass the usual soft limit of 1024 long before the hard one.
pub(crate) fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        // Failing leaves the old limit, and attaching reports EMFILE if it is too low.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The fmod_ret twin of the LSM program of `hook`: the program, the kernel function it
/// attaches to (the `security_` function that calls the hook) and which of its arguments it
/// reads (checked against the hook's in the kernel's BTF before loading).
fn fmod_ret_twin(hook: Hook) -> Option<(&'static str, btf::Twin)> {
    let twin = |program, hook, function, reads| {
        Some((
            program,
            btf::Twin {
                hook,
                function,
                reads,
            },
        ))
    };
    match hook {
        Hook::FileOpen => twin(
            "chaos_fmod_file_open",
            "file_open",
            "security_file_open",
            &[0],
        ),
        Hook::FilePermission => twin(
            "chaos_fmod_file_permission",
            "file_permission",
            "security_file_permission",
            &[0],
        ),
        Hook::MmapFile => twin(
            "chaos_fmod_mmap_file",
            "mmap_file",
            "security_mmap_file",
            &[0],
        ),
        Hook::FileMprotect => twin(
            "chaos_fmod_file_mprotect",
            "file_mprotect",
            "security_file_mprotect",
            &[],
        ),
        Hook::FileIoctl => twin(
            "chaos_fmod_file_ioctl",
            "file_ioctl",
            "security_file_ioctl",
            &[0],
        ),
        Hook::FileFcntl => twin(
            "chaos_fmod_file_fcntl",
            "file_fcntl",
            "security_file_fcntl",
            &[0],
        ),
        Hook::FileLock => twin(
            "chaos_fmod_file_lock",
            "file_lock",
            "security_file_lock",
            &[0],
        ),
        Hook::InodeUnlink => twin(
            "chaos_fmod_inode_unlink",
            "inode_unlink",
            "security_inode_unlink",
            &[1],
        ),
        Hook::InodeRmdir => twin(
            "chaos_fmod_inode_rmdir",
            "inode_rmdir",
            "security_inode_rmdir",
            &[1],
        ),
        Hook::InodeMkdir => twin(
            "chaos_fmod_inode_mkdir",
            "inode_mkdir",
            "security_inode_mkdir",
            &[1],
        ),
        Hook::InodeRename => twin(
            "chaos_fmod_inode_rename",
            "inode_rename",
            "security_inode_rename",
            &[1],
        ),
        Hook::InodeLink => twin(
            "chaos_fmod_inode_link",
            "inode_link",
            "security_inode_link",
            &[0],
        ),
        Hook::InodeSymlink => twin(
            "chaos_fmod_inode_symlink",
            "inode_symlink",
            "security_inode_symlink",
            &[1],
        ),
        // The dentry's position is read from the function's own signature (KernelConfig).
        Hook::InodeSetattr => twin(
            "chaos_fmod_inode_setattr",
            "inode_setattr",
            "security_inode_setattr",
            &[],
        ),
        Hook::InodeGetattr => twin(
            "chaos_fmod_inode_getattr",
            "inode_getattr",
            "security_inode_getattr",
            &[0],
        ),
        Hook::BprmCheck => twin(
            "chaos_fmod_bprm_check",
            "bprm_check_security",
            "security_bprm_check",
            &[0],
        ),
        Hook::TaskAlloc => twin(
            "chaos_fmod_task_alloc",
            "task_alloc",
            "security_task_alloc",
            &[],
        ),
        Hook::TaskKill => twin(
            "chaos_fmod_task_kill",
            "task_kill",
            "security_task_kill",
            &[],
        ),
        Hook::SbMount => twin("chaos_fmod_sb_mount", "sb_mount", "security_sb_mount", &[1]),
        Hook::SocketListen => twin(
            "chaos_fmod_socket_listen",
            "socket_listen",
            "security_socket_listen",
            &[],
        ),
        Hook::SocketAccept => twin(
            "chaos_fmod_socket_accept",
            "socket_accept",
            "security_socket_accept",
            &[],
        ),
        Hook::SocketSendmsg => twin(
            "chaos_fmod_socket_sendmsg",
            "socket_sendmsg",
            "security_socket_sendmsg",
            &[],
        ),
        Hook::SocketRecvmsg => twin(
            "chaos_fmod_socket_recvmsg",
            "socket_recvmsg",
            "security_socket_recvmsg",
            &[],
        ),
        Hook::SocketShutdown => twin(
            "chaos_fmod_socket_shutdown",
            "socket_shutdown",
            "security_socket_shutdown",
            &[],
        ),
        _ => None,
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
    /// How the security hooks' programs run, when the rules need any.
    mechanism: Option<MechanismChoice>,
}

impl Injector {
    /// Installs `rules` and attaches the programs they need. All or nothing: on error, nothing
    /// of this fault stays (and nothing at all, when no other fault is running).
    /// The security hooks' programs take the mechanism [`choose_mechanism`] picks.
    pub fn start(rules: &[PlannedRule]) -> Result<Injector, Error> {
        Self::start_with(rules, None)
    }

    /// As [`Injector::start`], with the security hooks' mechanism forced when `forced` is
    /// given (refused where it could not fire).
    pub fn start_with(
        rules: &[PlannedRule],
        forced: Option<HookMechanism>,
    ) -> Result<Injector, Error> {
        if rules.len() > MAX_RULES as usize {
            return Err(Error::Invalid {
                field: "rules",
                value: rules.len().to_string(),
                expected: format!("at most {MAX_RULES} rules at once"),
            });
        }
        // Security hooks need a mechanism chosen, and attach by BTF id: they are the only
        // programs that need the kernel's BTF.
        let needs_security_hooks = rules
            .iter()
            .filter_map(|r| Hook::from_raw(r.rule.hook))
            .any(|h| matches!(programs(h).1, Attach::Lsm(_)));
        // Chosen before loading, so that a refusal changes nothing.
        let mechanism = match (needs_security_hooks, forced) {
            (true, _) => Some(mechanism::choose(forced)?),
            (false, None) => None,
            (false, Some(forced)) => {
                return Err(Error::Invalid {
                    field: "mechanism",
                    value: forced.to_string(),
                    expected: format!(
                        "no --mechanism for these syscalls: {} go through cgroup hooks, which \
                         run on every kernel",
                        crate::fault::Syscall::supported_by(crate::fault::Mechanism::Cgroup)
                            .join(", ")
                    ),
                });
            }
        };
        let loading_since = crate::fault::boot_time_ns()?;
        let mut guard = loaded();
        if guard.is_none() {
            *guard = Some(LoadedObject::load(needs_security_hooks)?);
        }
        let object = guard.as_mut().expect("just loaded");
        let fault = match object.add(rules, mechanism.as_ref().map(|c| c.mechanism)) {
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
        Ok(Injector { fault, mechanism })
    }

    /// The mechanism the security hooks' programs run with (None when the rules need none).
    pub fn mechanism(&self) -> Option<HookMechanism> {
        self.mechanism.as_ref().map(|c| c.mechanism)
    }

    /// The mechanism and why it was chosen.
    pub fn mechanism_choice(&self) -> Option<&MechanismChoice> {
        self.mechanism.as_ref()
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

    /// Starts (or stops) the kernel writing an event for each call this fault's rules act on.
    pub fn listen_events(&self, on: bool) -> Result<(), Error> {
        let mut guard = loaded();
        let object = guard.as_mut().expect("an injector keeps the object loaded");
        object.listen_events(&self.fault.slots, on)
    }

    /// This fault's events since the last call, oldest first, with the position of each
    /// one's rule among the fault's rules.
    pub fn events(&self) -> Vec<(usize, Event)> {
        let mut guard = loaded();
        let object = guard.as_mut().expect("an injector keeps the object loaded");
        object
            .events(&self.fault.slots)
            .into_iter()
            .filter_map(|e| Some((self.fault.slots.iter().position(|s| *s == e.slot)?, e)))
            .collect()
    }

    /// Events of this fault lost so far: the ring was full (counted by the kernel per rule)
    /// or they were read too late.
    pub fn events_lost(&self) -> Result<u64, Error> {
        let guard = loaded();
        let object = guard.as_ref().expect("an injector keeps the object loaded");
        let kernel: u64 = object
            .counters(&self.fault.slots)?
            .iter()
            .map(|c| c.events_lost)
            .sum();
        Ok(kernel + object.events_overflowed(&self.fault.slots))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_security_hook_has_an_fmod_ret_twin_this_kernel_can_take() {
        let twins: Vec<btf::Twin> = Hook::ALL
            .iter()
            .filter(|h| matches!(programs(**h).1, Attach::Lsm(_)))
            .map(|h| {
                fmod_ret_twin(*h)
                    .unwrap_or_else(|| panic!("{h:?} has no twin"))
                    .1
            })
            .collect();
        let path = std::path::Path::new(btf::VMLINUX_BTF);
        if !path.exists() {
            eprintln!(
                "SKIP: {} is missing: no CONFIG_DEBUG_INFO_BTF",
                btf::VMLINUX_BTF
            );
            return;
        }
        // Every security_ function exists and passes what its program reads as the hook does.
        btf::kernel_config_for(path, &twins, "security_inode_setattr").unwrap();
    }

    #[test]
    fn twins_are_in_the_object() {
        let object = aya_obj::Object::parse(EBPF_OBJECT).unwrap();
        for hook in Hook::ALL {
            if let Some((program, twin)) = fmod_ret_twin(hook) {
                let section = format!("{:?}", object.programs[program].section);
                assert!(section.contains("FEntry"), "{program}: {section}");
                assert!(twin.function.starts_with("security_"), "{}", twin.function);
            }
        }
    }
}
