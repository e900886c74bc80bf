//! File syscalls through BPF LSM hooks.
//!
//! LSM hooks are shared by many syscalls (file_open runs for open, openat, openat2, creat and
//! for the kernel's own opens during exec), so the programs read which syscall is running
//! from the task's saved registers and let the rules match on it.
use aya_ebpf::{
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::lsm,
    programs::LsmContext,
};
use chaos_common::Hook;

use crate::{maps::CHAOS_CONFIG, rule};

const UNKNOWN_SYSCALL: i64 = -2;

/// The number of the syscall the current task is in, or [`UNKNOWN_SYSCALL`] if it cannot be
/// read (which then matches no rule for a specific syscall).
#[inline(always)]
fn current_syscall_nr() -> i64 {
    let Some(config) = CHAOS_CONFIG.get(0) else {
        return UNKNOWN_SYSCALL;
    };
    // SAFETY: bpf_get_current_task_btf returns a trusted task pointer, which is what
    // bpf_task_pt_regs takes; the read goes through bpf_probe_read_kernel.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        if regs.is_null() {
            return UNKNOWN_SYSCALL;
        }
        bpf_probe_read_kernel(regs.add(config.pt_regs_orig_ax as usize).cast::<i64>())
            .unwrap_or(UNKNOWN_SYSCALL)
    }
}

/// `security_file_open(struct file *file)`; BPF LSM appends the previous hooks' verdict.
#[lsm(hook = "file_open")]
pub fn chaos_file_open(ctx: LsmContext) -> i32 {
    // Argument 1 of a one-argument hook is the verdict so far.
    let verdict: i64 = ctx.arg(1);
    if verdict != 0 {
        return lsm_verdict(verdict.wrapping_neg() as u64);
    }
    match rule::apply(Hook::FileOpen, current_syscall_nr()) {
        Some(errno) => lsm_verdict(u64::from(errno)),
        None => 0,
    }
}

/// `-errno`, in a form the verifier can prove lies in [-4095, 0], the range it accepts from
/// LSM programs (checked since 6.12). The user side only writes errnos in 1..=4095, so the
/// mask changes nothing for them.
#[inline(always)]
fn lsm_verdict(errno: u64) -> i32 {
    const EIO: u64 = 5;
    // A mask, unlike a comparison, bounds the very register it produces; LLVM likes to compare
    // a copy, which leaves the returned register unbounded for the verifier.
    let errno = match errno & 0xfff {
        0 => EIO,
        e => e,
    };
    // LLVM emits BPF_NEG for `-errno`, through which the verifier keeps no bounds; a
    // subtraction from zero keeps them.
    let verdict: i64;
    // SAFETY: register arithmetic only.
    unsafe {
        core::arch::asm!(
            "{v} = 0",
            "{v} -= {e}",
            v = out(reg) verdict,
            e = in(reg) errno,
        );
    }
    verdict as i32
}
