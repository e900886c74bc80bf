//! Types shared by chaos's kernel programs and its userspace.
//!
//! Everything here is `#[repr(C)]` and plain old data: the user side writes these values into
//! BPF maps and the kernel side reads them. Decision logic that both sides need (the schedule)
//! lives here too so that it can be unit-tested on the host.
#![no_std]

pub mod packet;
pub mod schedule;

pub use schedule::Schedule;

/// How many rules the kernel side can hold at once.
pub const MAX_RULES: u32 = 64;

/// The kernel hook a [`Rule`] is enforced at. Stored in [`Rule::hook`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// BPF LSM `file_open`: open, openat, openat2, creat.
    FileOpen = 1,
    /// cgroup sock_addr `connect4` and `connect6`: connect(2).
    Connect = 2,
}

impl Hook {
    /// The hook for a raw [`Rule::hook`] value.
    pub const fn from_raw(raw: u32) -> Option<Hook> {
        match raw {
            1 => Some(Hook::FileOpen),
            2 => Some(Hook::Connect),
            _ => None,
        }
    }
}

/// [`Rule::flags`]: the slot holds a rule.
pub const RULE_ACTIVE: u32 = 1 << 0;
/// [`Rule::flags`]: count what would be injected, inject nothing.
pub const RULE_DRY_RUN: u32 = 1 << 1;

/// [`Rule::syscall_nr`] value that matches whatever syscall reaches the hook.
pub const ANY_SYSCALL: i64 = -1;

/// One fault: at `hook`, for tasks in the cgroup `cgroup_id` (or below it), when the running
/// syscall is `syscall_nr`, fail with `errno` as `schedule` decides.
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
    /// The positive errno to fail with.
    pub errno: u32,
    /// The syscall number (x86_64) that must be running, or [`ANY_SYSCALL`].
    pub syscall_nr: i64,
    /// When, among the matching calls, to inject.
    pub schedule: Schedule,
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
}

/// Per-rule counters, updated atomically by the kernel side; same index as the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitCounter {
    /// Calls from the target that matched the rule's syscall and filters.
    pub matched: u64,
    /// Calls that were failed (or, in a dry run, would have been).
    pub injected: u64,
}

/// Facts about the running kernel that Rust cannot get from CO-RE relocations; the user side
/// reads them from the kernel's BTF and stores them at index 0 of the `CONFIG` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Byte offset of `orig_ax` in `struct pt_regs`: the syscall number of the running task.
    pub pt_regs_orig_ax: u32,
    /// Reserved, keeps the layout 8-byte aligned.
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) with explicit padding and no pointers.
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::HitCounter {}
    unsafe impl aya::Pod for super::KernelConfig {}
}
