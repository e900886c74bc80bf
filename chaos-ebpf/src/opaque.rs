//! A zero the verifier cannot see through, to keep it from walking a `bpf_loop` callback
//! once per constant.
//!
//! The verifier walks a callback once for each distinct state that reaches the `bpf_loop`
//! call, and a constant (a family of 4, a syscall number of -2 for "unknown", a dentry of 0)
//! makes its path's state distinct from a path where the same field was read from the kernel.
//! A field the callback only compares, or hands to a helper that checks it at run time, needs
//! no constant: adding [`zero`] to it makes every path arrive with the same unknown value, and
//! the callback is walked once. (The packet programs' slot step was walked 12 to 18 times;
//! hiding the syscall number and dentry cut a file LSM program's cost on 6.12 by a third.)

/// Always 0. A writable global (`.bss`) is a map value, whose contents the verifier does not
/// track; nothing writes it.
static mut ZERO: u64 = 0;

/// 0, as a value the verifier knows nothing about.
#[inline(always)]
pub fn zero() -> u64 {
    // SAFETY: a read of a plain global. Volatile, so that LLVM does not fold it to the 0 it
    // is (nothing in the object writes it).
    unsafe { core::ptr::read_volatile(&raw const ZERO) }
}

/// `value`, unknown to the verifier.
#[inline(always)]
pub fn hide(value: u64) -> u64 {
    value.wrapping_add(zero())
}
