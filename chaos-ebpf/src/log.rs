//! The programs' own debug lines (aya-log), for a person debugging chaos: `--log-kernel`.
//!
//! Free when off, for the verifier too: the bpf_loop callbacks that may log exist twice, as
//! `LOG = false` (no log code at all) and `LOG = true`, and [`pick`] chooses one by aya-log's
//! `AYA_LOG_LEVEL`, a `.rodata` global chaos sets at load time (0 unless `--log-kernel` asks for
//! more). The verifier reads a frozen `.rodata` value as a constant, so it walks only the
//! chosen callback. (A level check inside the callbacks would be walked on every path through
//! them, hundreds of instructions per program.)
use core::ffi::c_void;

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use aya_log_ebpf::{
    debug,
    macro_support::{Level, level_enabled},
};
use chaos_common::{Rule, packet::PacketRule};

use crate::rule::Call;

/// The bpf_loop callback to run: `logged` when debug lines are on.
#[inline(always)]
pub fn pick(
    quiet: extern "C" fn(u64, *mut c_void) -> i64,
    logged: extern "C" fn(u64, *mut c_void) -> i64,
) -> *mut c_void {
    if level_enabled(Level::Debug) {
        logged as *mut c_void
    } else {
        quiet as *mut c_void
    }
}

/// The rule in `slot` acts on `call` (it was counted as injected).
#[inline(always)]
pub fn rule_acts<const LOG: bool>(slot: u32, rule: &Rule, call: &Call) {
    if LOG {
        debug!(
            &(),
            "rule {} acts on syscall {} (hook {}): action {} value {} pid {}",
            slot,
            call.syscall_nr,
            rule.hook,
            rule.action,
            rule.value,
            (bpf_get_current_pid_tgid() >> 32) as u32
        );
    }
}

/// Packet rule `slot` acts on a packet of `len` bytes.
#[inline(always)]
pub fn packet_rule_acts<const LOG: bool>(slot: u32, rule: &PacketRule, direction: u32, len: u64) {
    if LOG {
        debug!(
            &(),
            "packet rule {} acts: action {} direction {} len {}", slot, rule.action, direction, len
        );
    }
}
