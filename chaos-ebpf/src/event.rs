//! Events: a record in the `CHAOS_EVENTS` ring buffer for each call or packet a rule acts on,
//! for rules whose listener asked (`RULE_EVENTS`, `PACKET_EVENTS`). A rule nobody listens to
//! pays one flag test. A full buffer loses the event and counts the loss in the rule's
//! counter, so user space can report it.
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{bpf_get_current_comm, bpf_probe_read_kernel_str},
    },
    macros::map,
    maps::RingBuf,
};
use chaos_common::{
    Rule,
    event::{EVENT_CALL, EVENT_DRY_RUN, EVENT_NAME_LEN, EVENT_NAMES, Event},
};

use crate::{
    maps::CHAOS_CONFIG,
    rule::{Call, fetch_add, read_ptr},
};

/// The events. User space may resize it before loading (a power-of-two number of pages).
#[map]
pub static CHAOS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// A reserved event, every field of which the caller writes before [`submit`].
pub type Entry = aya_ebpf::maps::ring_buf::RingBufEntry<Event>;

/// Reserves room for one event, or counts it in `lost` when the buffer is full.
#[inline(always)]
pub fn reserve(lost: *mut u64) -> Option<Entry> {
    let entry = CHAOS_EVENTS.reserve::<Event>(0);
    if entry.is_none() {
        fetch_add(lost, 1);
    }
    entry
}

/// Zeroes `N` aligned words at `at`.
///
/// Not `= [0; LEN]` on a byte array: LLVM makes that a memset subprogram that stores byte by
/// byte, which the verifier walks once per byte (the 112 bytes of an event's comm and names
/// cost ~450 verified instructions per path, a third of a packet program's total). Volatile
/// stores stay eight-byte stores.
///
/// # Safety
/// `at` is 8-byte aligned and `N * 8` bytes from it are writable.
#[inline(always)]
pub unsafe fn zero_words<const N: usize>(at: *mut u64) {
    let mut i = 0;
    while i < N {
        // SAFETY: within the N words the caller promises.
        unsafe { at.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Writes the event of `call`, which rule `slot` acted on (or, in a dry run, would have).
#[inline(always)]
pub fn call(slot: u32, rule: &Rule, call: &Call, lost: *mut u64) {
    let Some(mut entry) = reserve(lost) else {
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to the reserved ring buffer memory, large enough for an Event;
    // every field is plain data, written once here, and the helpers write within the
    // lengths given.
    unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        (*e).time_ns = bpf_ktime_get_boot_ns();
        (*e).cgroup_id = bpf_get_current_cgroup_id();
        (*e).pid = (pid_tgid >> 32) as u32;
        (*e).tid = pid_tgid as u32;
        (*e).kind = EVENT_CALL;
        (*e).slot = slot;
        (*e).hook = rule.hook;
        (*e).action = rule.action;
        (*e).value = rule.value;
        (*e).flags = if rule.is_dry_run() { EVENT_DRY_RUN } else { 0 };
        (*e).syscall_nr = call.syscall_nr;
        (*e).delay_ns = rule.delay_ns;
        // Zeroed first: older kernels (6.1) leave the bytes past the name's NUL alone.
        zero_words::<2>((&raw mut (*e).comm).cast());
        bpf_get_current_comm((&raw mut (*e).comm).cast(), 16);
        let addr = (&raw mut (*e).addr).cast::<u32>();
        match call.addr {
            Some(sock) => {
                (*e).family = sock.family;
                (*e).port = sock.port;
                let mut i = 0;
                while i < 4 {
                    addr.add(i).write_volatile(sock.addr[i]);
                    i += 1;
                }
            }
            None => {
                (*e).family = 0;
                (*e).port = 0;
                zero_words::<2>(addr.cast());
            }
        }
        (*e).local_port = 0;
        (*e).protocol = 0;
        (*e)._pad = 0;
        write_names(&raw mut (*e).names, call.dentry);
    }
    entry.submit(0);
}

/// Writes the names of the file at `dentry` and its parents (empty when `dentry` is 0).
///
/// # Safety
/// `names` points to writable memory for them.
#[inline(always)]
unsafe fn write_names(names: *mut [[u8; EVENT_NAME_LEN]; EVENT_NAMES], dentry: u64) {
    let (name_at, parent_at) = match CHAOS_CONFIG.get(0) {
        Some(config) => (config.dentry_name, config.dentry_parent),
        None => (0, 0),
    };
    let mut dentry = if name_at == 0 { 0 } else { dentry };
    let mut i = 0;
    // A plain loop: EVENT_NAMES is small and fixed (see `rule::apply` on bpf_loop).
    while i < EVENT_NAMES {
        // SAFETY: within `names`, as the caller promises.
        let name = unsafe { (&raw mut (*names)[i]).cast::<u8>() };
        let mut written = 0;
        if dentry != 0 {
            let at = read_ptr(dentry, name_at);
            if at != 0 {
                // SAFETY: the helper writes at most EVENT_NAME_LEN bytes, NUL included, and
                // copes with any source address.
                written = unsafe {
                    bpf_probe_read_kernel_str(name.cast(), EVENT_NAME_LEN as u32, at as *const _)
                };
            }
            let parent = read_ptr(dentry, parent_at);
            // The root of a filesystem is its own parent: its name ("/") ends the list.
            dentry = if parent == dentry { 0 } else { parent };
        }
        if written <= 0 {
            // SAFETY: as above.
            unsafe { *name = 0 };
        }
        i += 1;
    }
}
