//! What the latency "block" programs and their loader agree on.
//!
//! Block mode makes the calling thread sleep in a FUSE request that chaos answers after the
//! delay (docs/latency-block-mode.md). The programs call kernel functions (kfuncs), which
//! aya 0.14 cannot link: each call is compiled as a call to a helper id that does not exist,
//! one of the [`Kfunc`] ids below, and the loader rewrites it into a kfunc call before the
//! object reaches the kernel.

/// A kfunc the block programs call, by the placeholder helper id its call is compiled with.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kfunc {
    /// `struct task_struct *bpf_task_from_pid(s32 pid)`: acquires a task.
    TaskFromPid = 0x6b66_0001,
    /// `void bpf_task_release(struct task_struct *p)`.
    TaskRelease = 0x6b66_0002,
    /// `struct file *bpf_get_task_exe_file(struct task_struct *task)`: acquires a file.
    GetTaskExeFile = 0x6b66_0003,
    /// `void bpf_put_file(struct file *file)`.
    PutFile = 0x6b66_0004,
    /// `int bpf_get_file_xattr(struct file *file, const char *name, struct bpf_dynptr *value)`.
    GetFileXattr = 0x6b66_0005,
}

impl Kfunc {
    /// Every kfunc block mode needs.
    pub const ALL: [Kfunc; 5] = [
        Kfunc::TaskFromPid,
        Kfunc::TaskRelease,
        Kfunc::GetTaskExeFile,
        Kfunc::PutFile,
        Kfunc::GetFileXattr,
    ];

    /// The kernel's name of the function, as its BTF spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Kfunc::TaskFromPid => "bpf_task_from_pid",
            Kfunc::TaskRelease => "bpf_task_release",
            Kfunc::GetTaskExeFile => "bpf_get_task_exe_file",
            Kfunc::PutFile => "bpf_put_file",
            Kfunc::GetFileXattr => "bpf_get_file_xattr",
        }
    }

    /// The kfunc compiled as placeholder helper id `id`, if any.
    pub fn from_placeholder(id: u32) -> Option<Kfunc> {
        Kfunc::ALL.into_iter().find(|k| *k as u32 == id)
    }
}

/// Slots of the `CHAOS_BLOCK_CONFIG` array.
pub mod config {
    /// Id of the cgroup whose calls (and its descendants' calls) are delayed (0: none).
    pub const CGROUP_ID: u32 = 0;
    /// Pid of the helper process whose executable lives on chaos's FUSE mount.
    pub const HELPER_PID: u32 = 1;
    /// Depth of that cgroup below the v2 root (the root is 0).
    pub const CGROUP_LEVEL: u32 = 2;
    /// Number of slots.
    pub const LEN: u32 = 3;
}

/// Words of the `CHAOS_BLOCK_SYSCALLS` bitmap: bit `nr % 64` of word `nr / 64` is set for
/// each syscall number whose calls are delayed (x86_64 numbers stay below 512).
pub const SYSCALL_WORDS: u32 = 8;

/// Slots of the `CHAOS_BLOCK_COUNTERS` array.
pub mod counter {
    /// Calls of the target seen by a block program.
    pub const HITS: u32 = 0;
    /// Calls that waited for the FUSE server's answer.
    pub const DELAYED: u32 = 1;
    /// Calls where the helper task or its executable was gone.
    pub const NO_HELPER: u32 = 2;
    /// Calls whose getxattr failed (not delayed, or not for the full delay).
    pub const FAILED: u32 = 3;
    /// The last getxattr error, as a positive errno.
    pub const LAST_ERRNO: u32 = 4;
    /// Number of slots.
    pub const LEN: u32 = 5;
}

/// The xattr the programs ask for; the FUSE server holds its answer for the delay.
pub const XATTR_NAME: &[u8] = b"user.chaos.delay\0";
