//! What every BPF LSM program shares: finding the running syscall and returning a verdict the
//! verifier accepts.
//!
//! LSM hooks are shared by many syscalls (file_open runs for open, openat, openat2, creat and
//! for the kernel's own opens during exec), so the programs read which syscall is running
//! from the task's saved registers and let the rules match on it.
//!
//! BPF LSM programs of one hook run in a chain that stops at the first non-zero verdict, so a
//! program never sees an earlier denial and needs no check of the previous verdict.
//!
//! Every hook has two programs with one body: an `lsm/<hook>` program, which runs only where
//! `bpf` is among the kernel's *active* LSMs, and an `fmod_ret` program on the kernel function
//! `security_<hook>` that calls the hook, which runs wherever BPF trampolines do (the verifier
//! allows BPF_MODIFY_RETURN on every `security_*` function, whatever the active LSMs and
//! without CONFIG_FUNCTION_ERROR_INJECTION). A non-zero return from it skips the function,
//! and the syscall fails with it. Trampolines also stop at the first non-zero return of
//! their fmod_ret programs, so neither kind needs to look at an earlier verdict. aya has no
//! fmod_ret program type: its twin sits in an `fentry/` section, which aya parses but never
//! loads, and the user side loads it itself with `BPF_MODIFY_RETURN` (`loader/fmod_ret.rs`).
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

/// The arguments of the hook (LSM) or function (fmod_ret) a program runs at: both kinds get
/// the same context, an array of the arguments as 64-bit words.
pub struct Args(*const u64);

impl Args {
    /// The arguments in the context `ctx` of an LSM or tracing program.
    #[inline(always)]
    pub fn new(ctx: *mut core::ffi::c_void) -> Args {
        Args(ctx as *const u64)
    }

    /// Argument `n`. Callers pass constants that both the hook and its `security_` function
    /// have (the user side checks the types in the kernel's BTF before loading).
    #[inline(always)]
    pub fn get(&self, n: usize) -> u64 {
        // SAFETY: the context holds at least n + 1 words for the n the programs use; the
        // verifier checks every context load against the function's BTF anyway.
        unsafe { *self.0.add(n) }
    }

    /// The context itself, for copying an argument with a helper.
    #[inline(always)]
    pub fn as_ptr(&self) -> *const u64 {
        self.0
    }
}

/// The verdict of the hook's programs: 0 (allow) for tasks no rule at `hook` targets, else
/// what `body` decides from the arguments.
#[inline(always)]
pub fn run(hook: Hook, args: Args, body: impl FnOnce(&Args) -> i32) -> i32 {
    if !rule::targets_current_task(hook) {
        return 0;
    }
    body(&args)
}

/// Declares the LSM program and its fmod_ret twin for one hook, with one body. The sections
/// are literals, as `link_section` needs: `"lsm/<hook>"` and `"fentry/security_<hook>"`.
macro_rules! security_hook {
    (
        $(#[$doc:meta])*
        $lsm:ident in $lsm_section:literal,
        $fmod:ident in $fmod_section:literal,
        $hook:expr,
        $body:expr
    ) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        #[unsafe(link_section = $lsm_section)]
        pub fn $lsm(ctx: *mut ::core::ffi::c_void) -> i32 {
            $crate::lsm::run($hook, $crate::lsm::Args::new(ctx), $body)
        }

        /// The fmod_ret twin of the LSM program above: same hook, same body.
        #[unsafe(no_mangle)]
        #[unsafe(link_section = $fmod_section)]
        pub fn $fmod(ctx: *mut ::core::ffi::c_void) -> i32 {
            $crate::lsm::run($hook, $crate::lsm::Args::new(ctx), $body)
        }
    };
}
pub(crate) use security_hook;

/// A call at `hook` from the running syscall, about the file at `dentry` (0 for none).
///
/// The syscall number is hidden from the verifier (`crate::opaque`): each read that can fail
/// on the way to it (no config, no registers, a failed copy) would otherwise bring its own
/// constant, and its own walk of the rules.
#[inline(always)]
pub fn call(hook: Hook, dentry: u64) -> Call {
    Call::new(
        hook,
        crate::opaque::hide(current_syscall_nr() as u64) as i64,
    )
    .with_dentry(dentry)
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
