//! What every BPF LSM program shares: finding the running syscall and returning a verdict the
//! verifier accepts.
//!
//! LSM hooks are shared by many syscalls (file_open runs for open, openat, openat2, creat and
//! for the kernel's own opens during exec), so the programs read which syscall is running
//! from the task's saved registers and let the rules match on it.
//!
//! BPF LSM programs of one hook run in a chain that stops at the first non-zero verdict, so a
//! program never sees an earlier denial and needs no check of the previous verdict.
use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs};
use chaos_common::{Action, Hook};

use crate::{
    maps::CHAOS_CONFIG,
    rule::{self, Call},
};

const UNKNOWN_SYSCALL: i64 = -2;

/// The number of the syscall the current task is in, or [`UNKNOWN_SYSCALL`] if it cannot be
/// read (which then matches no rule for a specific syscall).
#[inline(always)]
pub fn current_syscall_nr() -> i64 {
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

/// A call at `hook` from the running syscall, about the file at `dentry` (0 for none).
#[inline(always)]
pub fn call(hook: Hook, dentry: u64) -> Call {
    Call::new(hook, current_syscall_nr()).with_dentry(dentry)
}

/// The LSM verdict for `call`: `-errno` when a rule fails it, 0 otherwise.
#[inline(always)]
pub fn decide(call: Call) -> i32 {
    match rule::apply(&call) {
        Some(rule) if rule.action == Action::Errno as u32 => verdict(u64::from(rule.value)),
        _ => 0,
    }
}

/// `-errno`, in a form the verifier can prove lies in [-4095, 0], the range it accepts from
/// LSM programs (checked since 6.12). The user side only writes errnos in 1..=4095, so the
/// mask changes nothing for them.
#[inline(always)]
fn verdict(errno: u64) -> i32 {
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
