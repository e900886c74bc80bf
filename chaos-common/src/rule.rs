//! Rules: what to do, at which hook, to which cgroup's tasks, on which calls.
use crate::{Filter, Schedule};

/// How many rules the kernel side can hold at once.
pub const MAX_RULES: u32 = 4096;

/// How many rules one cgroup may have on one hook (a [`TargetRules`] list).
pub const MAX_RULES_PER_TARGET: u32 = 64;

/// How many distinct cgroup depths the targets of one hook's rules may have (a [`HookLevels`]
/// list): each is one cgroup-id lookup on every call that reaches the hook.
pub const MAX_TARGET_LEVELS: u32 = 8;

/// The kernel hook a [`Rule`] is enforced at. Stored in [`Rule::hook`].
///
/// LSM hooks are reached from several syscalls (and from the kernel itself), so rules on them
/// name the syscall; cgroup hooks are reached from one syscall each.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// LSM `file_open`: open, openat, openat2, creat.
    FileOpen = 1,
    /// cgroup sock_addr `connect4`/`connect6`: connect.
    Connect = 2,
    /// LSM `file_permission`: the read and write families, getdents64, sendfile, ...
    FilePermission = 3,
    /// LSM `mmap_file`: mmap.
    MmapFile = 4,
    /// LSM `file_mprotect`: mprotect.
    FileMprotect = 5,
    /// LSM `file_ioctl`: ioctl.
    FileIoctl = 6,
    /// LSM `file_fcntl`: fcntl.
    FileFcntl = 7,
    /// LSM `file_lock`: flock.
    FileLock = 8,
    /// LSM `inode_unlink`: unlink, unlinkat.
    InodeUnlink = 9,
    /// LSM `inode_rmdir`: rmdir, unlinkat(AT_REMOVEDIR).
    InodeRmdir = 10,
    /// LSM `inode_mkdir`: mkdir, mkdirat.
    InodeMkdir = 11,
    /// LSM `inode_rename`: rename, renameat, renameat2.
    InodeRename = 12,
    /// LSM `inode_link`: link, linkat.
    InodeLink = 13,
    /// LSM `inode_symlink`: symlink, symlinkat.
    InodeSymlink = 14,
    /// LSM `inode_setattr`: truncate, ftruncate, chmod, fchmod, chown, fchown, ...
    InodeSetattr = 15,
    /// LSM `inode_getattr`: the stat family.
    InodeGetattr = 16,
    /// LSM `bprm_check_security`: execve, execveat.
    BprmCheck = 17,
    /// LSM `task_alloc`: clone, clone3, fork, vfork.
    TaskAlloc = 18,
    /// cgroup `sock_create`: socket (inet and inet6).
    SockCreate = 19,
    /// cgroup sock_addr `bind4`/`bind6`: bind.
    Bind = 20,
    /// cgroup `getsockopt`: getsockopt.
    Getsockopt = 21,
    /// cgroup `setsockopt`: setsockopt.
    Setsockopt = 22,
    /// LSM `socket_listen`: listen.
    SocketListen = 23,
    /// LSM `socket_accept`: accept, accept4.
    SocketAccept = 24,
    /// LSM `socket_sendmsg`: sendto, sendmsg, sendmmsg.
    SocketSendmsg = 25,
    /// LSM `socket_recvmsg`: recvfrom, recvmsg, recvmmsg.
    SocketRecvmsg = 26,
    /// LSM `socket_shutdown`: shutdown.
    SocketShutdown = 27,
    /// LSM `task_kill`: kill, tkill, tgkill.
    TaskKill = 28,
    /// LSM `sb_mount`: mount.
    SbMount = 29,
    /// The `sys_enter` raw tracepoint: every syscall, before it runs (signals, latency).
    SysEnter = 30,
}

impl Hook {
    /// Every hook, in value order.
    pub const ALL: [Hook; 30] = [
        Hook::FileOpen,
        Hook::Connect,
        Hook::FilePermission,
        Hook::MmapFile,
        Hook::FileMprotect,
        Hook::FileIoctl,
        Hook::FileFcntl,
        Hook::FileLock,
        Hook::InodeUnlink,
        Hook::InodeRmdir,
        Hook::InodeMkdir,
        Hook::InodeRename,
        Hook::InodeLink,
        Hook::InodeSymlink,
        Hook::InodeSetattr,
        Hook::InodeGetattr,
        Hook::BprmCheck,
        Hook::TaskAlloc,
        Hook::SockCreate,
        Hook::Bind,
        Hook::Getsockopt,
        Hook::Setsockopt,
        Hook::SocketListen,
        Hook::SocketAccept,
        Hook::SocketSendmsg,
        Hook::SocketRecvmsg,
        Hook::SocketShutdown,
        Hook::TaskKill,
        Hook::SbMount,
        Hook::SysEnter,
    ];

    /// The hook for a raw [`Rule::hook`] value.
    pub const fn from_raw(raw: u32) -> Option<Hook> {
        if raw >= 1 && raw as usize <= Hook::ALL.len() {
            Some(Hook::ALL[raw as usize - 1])
        } else {
            None
        }
    }
}

/// What a rule does to a call it selects. Stored in [`Rule::action`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail the call with [`Rule::value`] as errno.
    Errno = 0,
    /// Send signal [`Rule::value`] to the calling process.
    Signal = 1,
    /// Send signal [`Rule::value`] to the calling thread only.
    SignalThread = 2,
    /// Busy-wait in the kernel for [`Rule::delay_ns`] (± [`Rule::jitter_ns`]) before the call
    /// runs: only the calling thread waits, and it burns its CPU meanwhile.
    Spin = 3,
    /// Stop the whole process with SIGSTOP; user space sends SIGCONT after
    /// [`Rule::delay_ns`] (± [`Rule::jitter_ns`]), as recorded in the paused-process map.
    Pause = 4,
}

impl Action {
    /// The action for a raw [`Rule::action`] value.
    pub const fn from_raw(raw: u32) -> Option<Action> {
        match raw {
            0 => Some(Action::Errno),
            1 => Some(Action::Signal),
            2 => Some(Action::SignalThread),
            3 => Some(Action::Spin),
            4 => Some(Action::Pause),
            _ => None,
        }
    }
}

/// The longest [`Action::Spin`] delay (delay plus jitter) a rule may ask for. A spinning thread
/// holds its CPU, and on a kernel without preemption (PREEMPT_NONE) nothing else runs there
/// meanwhile, so the cap is kept well below what would upset the scheduler or RCU.
pub const MAX_SPIN_NS: u64 = 100_000_000;

/// How many syscall numbers the `sys_enter` program's quick filter covers (x86_64 numbers are
/// below 512); see [`SYS_ENTER_FILTER_WORDS`].
pub const SYS_ENTER_FILTER_BITS: u32 = 512;
/// The quick filter as 64-bit words: bit `n % 64` of word `n / 64` is set when some rule at
/// [`Hook::SysEnter`] may act on syscall `n`. Every task's every syscall runs that program,
/// so the syscalls no rule names leave after one map lookup instead of the rule loop.
pub const SYS_ENTER_FILTER_WORDS: u32 = SYS_ENTER_FILTER_BITS / 64;

/// [`Rule::flags`]: the slot holds a rule.
pub const RULE_ACTIVE: u32 = 1 << 0;
/// [`Rule::flags`]: count what would be injected, inject nothing.
pub const RULE_DRY_RUN: u32 = 1 << 1;
/// [`Rule::flags`]: someone listens: write an [`crate::Event`] for each call the rule acts on.
/// Set per rule (not globally) because one loaded object serves many faults, and a fault
/// nobody listens to must not pay for the events of another.
pub const RULE_EVENTS: u32 = 1 << 2;

/// [`Rule::syscall_nr`] value that matches whatever syscall reaches the hook.
pub const ANY_SYSCALL: i64 = -1;

/// One fault: at `hook`, for tasks in the cgroup `cgroup_id` (or below it), when the running
/// syscall is `syscall_nr` and the filter matches, do `action` as `schedule` decides, until
/// `deadline_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// `RULE_*` bits; a slot without [`RULE_ACTIVE`] is ignored.
    pub flags: u32,
    /// A [`Hook`] as `u32`.
    pub hook: u32,
    /// The target cgroup v2 id (the inode number of its directory).
    pub cgroup_id: u64,
    /// Depth of the target cgroup below the v2 root (the root is 0), so that the kernel can
    /// match descendants with `bpf_get_current_ancestor_cgroup_id(level)`.
    pub cgroup_level: u32,
    /// An [`Action`] as `u32`.
    pub action: u32,
    /// The action's argument: the positive errno, or the signal number.
    pub value: u32,
    /// Reserved, keeps the layout 8-byte aligned.
    pub _pad: u32,
    /// The syscall number (x86_64) that must be running, or [`ANY_SYSCALL`].
    pub syscall_nr: i64,
    /// `CLOCK_BOOTTIME` nanoseconds after which the rule no longer fires, so that a fault
    /// ends even when chaos cannot remove it (killed, frozen); 0 for none.
    pub deadline_ns: u64,
    /// When, among the matching calls, to act.
    pub schedule: Schedule,
    /// Which calls match, beyond target and syscall.
    pub filter: Filter,
    /// For latency actions: how long the call is held back, in nanoseconds.
    pub delay_ns: u64,
    /// For latency actions: each delay is drawn uniformly from `delay_ns ± jitter_ns`.
    pub jitter_ns: u64,
}

impl Rule {
    /// Whether this slot holds a rule.
    pub const fn is_active(&self) -> bool {
        self.flags & RULE_ACTIVE != 0
    }

    /// Whether the rule only counts.
    pub const fn is_dry_run(&self) -> bool {
        self.flags & RULE_DRY_RUN != 0
    }

    /// This call's delay: `delay_ns ± jitter_ns`, picked by `random` (uniform over `u32`).
    #[inline(always)]
    pub fn delay_for(&self, random: u32) -> u64 {
        if self.jitter_ns == 0 {
            return self.delay_ns;
        }
        // span * random / 2^32 without a 128-bit product (which the bpf target lacks), split
        // at bit 32 so that neither product overflows.
        let span = self.jitter_ns.saturating_mul(2);
        let random = random as u64;
        let offset = (span >> 32) * random + (((span & 0xffff_ffff) * random) >> 32);
        self.delay_ns
            .saturating_sub(self.jitter_ns)
            .saturating_add(offset)
    }

    /// Whether the rule has expired at `now_ns` (`CLOCK_BOOTTIME`).
    #[inline(always)]
    pub const fn expired(&self, now_ns: u64) -> bool {
        self.deadline_ns != 0 && now_ns >= self.deadline_ns
    }
}

/// The key of the rule index: a hook and a target cgroup, as the kernel sees the calling task's
/// ancestor at `cgroup_level`.
///
/// Programs find the rules for a call with one hash lookup per level listed in [`HookLevels`]
/// instead of scanning every rule slot, so the cost of a call does not grow with the number of
/// rules on other cgroups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    /// A [`Hook`] as `u32`.
    pub hook: u32,
    /// [`Rule::cgroup_level`] of the rules listed under this key.
    pub cgroup_level: u32,
    /// [`Rule::cgroup_id`] of the rules listed under this key.
    pub cgroup_id: u64,
}

/// The rule slots of one [`TargetKey`], in the order they are tried.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRules {
    /// How many of `slots` are used.
    pub len: u32,
    /// Indices into the rule array.
    pub slots: [u32; MAX_RULES_PER_TARGET as usize],
}

impl Default for TargetRules {
    fn default() -> TargetRules {
        TargetRules {
            len: 0,
            slots: [0; MAX_RULES_PER_TARGET as usize],
        }
    }
}

/// The cgroup depths at which some rule on a hook has its target, in the order they are
/// tried; indexed by [`Hook`] value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookLevels {
    /// How many of `levels` are used.
    pub len: u32,
    /// [`Rule::cgroup_level`] values.
    pub levels: [u32; MAX_TARGET_LEVELS as usize],
}

/// Per-rule counters, updated atomically by the kernel side; same index as the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitCounter {
    /// Calls from the target that matched the rule's syscall and filters while its programs
    /// were attached (past the deadline too: the rule then matches but no longer acts).
    pub matched: u64,
    /// Calls that were acted on (or, in a dry run, would have been).
    pub injected: u64,
    /// Events of this rule lost because the ring buffer was full.
    pub events_lost: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_round_trip() {
        for (i, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(*hook as u32, i as u32 + 1);
            assert_eq!(Hook::from_raw(*hook as u32), Some(*hook));
        }
        assert_eq!(Hook::from_raw(0), None);
        assert_eq!(Hook::from_raw(Hook::ALL.len() as u32 + 1), None);
    }

    #[test]
    fn delay_with_jitter() {
        let rule = Rule {
            delay_ns: 1000,
            jitter_ns: 100,
            ..Rule::default()
        };
        assert_eq!(rule.delay_for(0), 900);
        assert_eq!(rule.delay_for(u32::MAX), 1099);
        assert_eq!(rule.delay_for(1 << 31), 1000);
        let fixed = Rule {
            delay_ns: 1000,
            ..Rule::default()
        };
        assert_eq!(fixed.delay_for(12345), 1000);
    }

    #[test]
    fn deadline() {
        let rule = Rule {
            deadline_ns: 100,
            ..Rule::default()
        };
        assert!(!rule.expired(99));
        assert!(rule.expired(100));
        assert!(!Rule::default().expired(u64::MAX));
    }
}
