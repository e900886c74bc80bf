//! Signals and latency at syscall entry, through the `sys_enter` raw tracepoint: it runs for
//! every syscall of every task, before the call does anything, so these faults cover syscalls
//! that no LSM hook sees (fsync, close, getpid, ...). The tracepoint cannot change what the
//! call does; it can only signal the caller or hold it back.
//!
//! A raw tracepoint, not a BTF one (`tp_btf`): the program reads only the syscall number, which
//! both pass the same way, and a raw tracepoint attaches by name, so loading it needs no
//! lookup in the kernel's BTF (15-20 ms of a fault's arm time).
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_prandom_u32, bpf_ktime_get_boot_ns, bpf_ktime_get_ns,
        bpf_send_signal, bpf_send_signal_thread, generated::bpf_loop,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use chaos_common::{Action, Hook, MAX_SPIN_NS, SYS_ENTER_FILTER_BITS};

use crate::{
    maps::{CHAOS_PAUSED, CHAOS_SYS_ENTER_NRS},
    rule::{self, Call},
};

const SIGSTOP: u32 = 19;

/// bpf_loop's most iterations per call (`BPF_MAX_LOOPS`).
const MAX_LOOPS: u32 = 1 << 23;

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn chaos_sys_enter(ctx: RawTracePointContext) -> i32 {
    let id: i64 = ctx.arg(1);
    if !named(id) {
        return 0;
    }
    let Some(rule) = rule::apply(&Call::new(Hook::SysEnter, id)) else {
        return 0;
    };
    match Action::from_raw(rule.action) {
        // SAFETY: plain helper calls; the value is a signal number checked by the user side.
        Some(Action::Signal) => unsafe {
            bpf_send_signal(rule.value);
        },
        // SAFETY: as above.
        Some(Action::SignalThread) => unsafe {
            bpf_send_signal_thread(rule.value);
        },
        Some(Action::Spin) => {
            // SAFETY: a plain helper call.
            let delay = rule.delay_for(unsafe { bpf_get_prandom_u32() });
            spin(delay.min(MAX_SPIN_NS));
        }
        Some(Action::Pause) => {
            // SAFETY: plain helper calls.
            let (random, now, tgid) = unsafe {
                (
                    bpf_get_prandom_u32(),
                    bpf_ktime_get_boot_ns(),
                    (bpf_get_current_pid_tgid() >> 32) as u32,
                )
            };
            let resume_at = now.saturating_add(rule.delay_for(random));
            // Record first, so that user space never misses a process it must continue. A
            // process already paused keeps its earlier resume time.
            if CHAOS_PAUSED.insert(&tgid, &resume_at, 1).is_ok() {
                // SAFETY: a plain helper call.
                unsafe {
                    bpf_send_signal(SIGSTOP);
                }
            }
        }
        _ => {}
    }
    0
}

/// Whether some rule may act on syscall `id`: one lookup in the quick filter, so that the
/// machine's other syscalls skip the rule loop.
#[inline(always)]
fn named(id: i64) -> bool {
    if id < 0 || id >= i64::from(SYS_ENTER_FILTER_BITS) {
        return false;
    }
    match CHAOS_SYS_ENTER_NRS.get((id >> 6) as u32) {
        Some(word) => word & (1 << (id & 63)) != 0,
        None => false,
    }
}

/// Busy-waits on the monotonic clock until `delay_ns` from now has passed. bpf_loop keeps the
/// program small for the verifier whatever the delay; a few rounds of it cover any delay up to
/// [`MAX_SPIN_NS`] however fast the clock reads are.
#[inline(always)]
fn spin(delay_ns: u64) {
    // SAFETY: a plain helper call.
    let mut deadline = unsafe { bpf_ktime_get_ns() }.saturating_add(delay_ns);
    let ctx = (&raw mut deadline).cast::<c_void>();
    let mut round = 0;
    while round < 4 {
        // SAFETY: the callback is a static function, the context points into this stack frame.
        let done = unsafe { bpf_loop(MAX_LOOPS, spin_step as *mut c_void, ctx, 0) };
        // bpf_loop returns the iterations it ran, fewer than asked once the deadline passed.
        if done < i64::from(MAX_LOOPS) {
            return;
        }
        round += 1;
    }
}

/// One bpf_loop iteration: 1 (stop) once the deadline behind `ctx` has passed.
#[inline(never)]
extern "C" fn spin_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `spin` gave it, to a u64 on its stack.
    let deadline = unsafe { *ctx.cast::<u64>() };
    // SAFETY: a plain helper call.
    i64::from(unsafe { bpf_ktime_get_ns() } >= deadline)
}
