//! Process syscalls through BPF LSM hooks.
use aya_ebpf::{macros::lsm, programs::LsmContext};
use chaos_common::Hook;

use crate::{
    lsm::{call, decide},
    rule::targets_current_task,
};

/// `task_alloc(task, clone_flags)`, in the parent: clone, clone3, fork, vfork.
#[lsm(hook = "task_alloc")]
pub fn chaos_task_alloc(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::TaskAlloc) {
        return 0;
    }
    decide(call(Hook::TaskAlloc, 0))
}

/// `task_kill(p, info, sig, cred)`, in the sender.
#[lsm(hook = "task_kill")]
pub fn chaos_task_kill(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::TaskKill) {
        return 0;
    }
    decide(call(Hook::TaskKill, 0))
}
