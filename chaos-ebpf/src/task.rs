//! Process syscalls through the kernel's security hooks (an LSM program and its fmod_ret
//! twin per hook, see `lsm`).
use chaos_common::Hook;

use crate::lsm::{Args, call, decide, security_hook};

security_hook!(
    /// `task_alloc(task, clone_flags)`, in the parent: clone, clone3, fork, vfork.
    chaos_task_alloc in "lsm/task_alloc",
    chaos_fmod_task_alloc in "fentry/security_task_alloc",
    Hook::TaskAlloc,
    |_: &Args| decide(call(Hook::TaskAlloc, 0))
);

security_hook!(
    /// `task_kill(p, info, sig, cred)`, in the sender.
    chaos_task_kill in "lsm/task_kill",
    chaos_fmod_task_kill in "fentry/security_task_kill",
    Hook::TaskKill,
    |_: &Args| decide(call(Hook::TaskKill, 0))
);
