//! Matching the current task against the rules and deciding whether to inject.
use aya_ebpf::helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_prandom_u32};
use chaos_common::{ANY_SYSCALL, Hook, MAX_RULES};

use crate::maps::{CHAOS_COUNTERS, CHAOS_RULES};

/// Returns the errno to fail the current call with, if an active rule for `hook` targets the
/// current task's cgroup, matches `syscall_nr` (the running syscall, or [`ANY_SYSCALL`] when
/// the hook is reached from one syscall only) and its schedule picks this call.
///
/// Rules are tried in slot order and each one that matches is counted, until the first that
/// injects: it decides the call, and later slots neither count nor inject this call.
#[inline(always)]
pub fn apply(hook: Hook, syscall_nr: i64) -> Option<u32> {
    let mut i = 0;
    while i < MAX_RULES {
        let slot = i;
        i += 1;
        let Some(rule) = CHAOS_RULES.get(slot) else {
            continue;
        };
        if !rule.is_active() || rule.hook != hook as u32 {
            continue;
        }
        // Hooks that only one syscall reaches pass ANY_SYSCALL: the hook already decided.
        if syscall_nr != ANY_SYSCALL
            && rule.syscall_nr != ANY_SYSCALL
            && rule.syscall_nr != syscall_nr
        {
            continue;
        }
        // SAFETY: a plain helper call; any level is accepted (too deep returns 0).
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(rule.cgroup_level as i32) };
        if ancestor != rule.cgroup_id {
            continue;
        }
        let Some(counter) = CHAOS_COUNTERS.get_ptr_mut(slot) else {
            continue;
        };
        // SAFETY: the pointer comes from a map lookup and stays valid for this program run;
        // the fields are 8-byte aligned u64s, updated only atomically.
        let (matched, injected) =
            unsafe { (&raw mut (*counter).matched, &raw mut (*counter).injected) };
        let n = fetch_add(matched, 1);
        if !rule.schedule.selects(n) {
            continue;
        }
        // SAFETY: a plain helper call.
        if !rule.schedule.draw_hits(unsafe { bpf_get_prandom_u32() }) {
            continue;
        }
        if fetch_add(injected, 1) >= rule.schedule.max_hits {
            fetch_sub(injected, 1);
            continue;
        }
        if rule.is_dry_run() {
            continue;
        }
        return Some(rule.errno);
    }
    None
}

// The bpf target has no `AtomicU64::fetch_add` (it lacks compare-and-swap) and rustc always
// tells bpf-linker `--cpu generic`, where LLVM refuses to use the result of an atomic add. The
// kernel has had atomic fetch-add (BPF_ATOMIC | BPF_FETCH) since 5.12, so emit it directly.
#[inline(always)]
pub(crate) fn fetch_add(counter: *mut u64, n: u64) -> u64 {
    let mut value = n;
    // SAFETY: callers pass pointers into map values, valid and 8-byte aligned.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            v = inout(reg) value,
            p = in(reg) counter,
        );
    }
    value
}

#[inline(always)]
fn fetch_sub(counter: *mut u64, n: u64) -> u64 {
    fetch_add(counter, n.wrapping_neg())
}
