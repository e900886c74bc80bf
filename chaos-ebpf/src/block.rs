//! Latency "block" mode: the calling thread sleeps, burning no CPU, in a FUSE GETXATTR
//! request that chaos's FUSE server answers after the delay (docs/latency-block-mode.md).
//!
//! `bpf_get_file_xattr` needs a *trusted* `struct file *` on chaos's FUSE mount. The hook's
//! own file is the target's, so the programs take the executable of a helper process chaos
//! started from its mount: `bpf_task_from_pid` then `bpf_get_task_exe_file`. Only sleepable
//! hooks may call `bpf_get_file_xattr`.
//!
//! The kfuncs are called through placeholder helper ids ([`Kfunc`]) that chaos rewrites into
//! kfunc calls at load time; aya 0.14 has no kfunc support of its own.
use core::{ffi::c_void, ptr::addr_of_mut};

use aya_ebpf::{
    bindings::bpf_dynptr,
    helpers::{bpf_dynptr_from_mem, bpf_get_current_ancestor_cgroup_id},
    macros::{lsm, map},
    maps::Array,
    programs::LsmContext,
};
use chaos_common::block::{Kfunc, SYSCALL_WORDS, config, counter};

use crate::{lsm::current_syscall_nr, rule::fetch_add};

/// Which cgroup is delayed and which helper's executable to ask (slots in
/// [`chaos_common::block::config`]).
#[map]
static CHAOS_BLOCK_CONFIG: Array<u64> = Array::with_max_entries(config::LEN, 0);

/// The syscalls whose calls are delayed, a bitmap by syscall number (the hooks serve several
/// syscalls each, and the kernel's own opens during exec).
#[map]
static CHAOS_BLOCK_SYSCALLS: Array<u64> = Array::with_max_entries(SYSCALL_WORDS, 0);

/// What the block programs did (slots in [`chaos_common::block::counter`]).
#[map]
static CHAOS_BLOCK_COUNTERS: Array<u64> = Array::with_max_entries(counter::LEN, 0);

/// The xattr name: `bpf_get_file_xattr` wants a constant string in a read-only map, which an
/// immutable static is (aya freezes `.rodata`).
static XATTR_NAME: [u8; 17] = *b"user.chaos.delay\0";

/// Where the xattr's value lands. Not on the stack: `bpf_dynptr_from_mem` refuses stack
/// memory ("Unsupported reg type fp"). Threads share it; nobody reads the value.
static mut XATTR_VALUE: [u8; 16] = [0; 16];

/// The kfunc behind placeholder `kfunc`, typed as `F`.
///
/// # Safety
/// `F` must be the kfunc's C signature.
#[inline(always)]
unsafe fn kfunc<F: Copy>(kfunc: Kfunc) -> F {
    // SAFETY: as for aya's own helper bindings: a constant "function pointer" compiles to
    // `call <constant>`, which chaos rewrites into the kfunc call; `F` is pointer-sized.
    unsafe { core::mem::transmute_copy(&(kfunc as u32 as usize)) }
}

#[inline(always)]
fn add(slot: u32, value: u64) {
    if let Some(ptr) = CHAOS_BLOCK_COUNTERS.get_ptr_mut(slot) {
        fetch_add(ptr, value);
    }
}

#[inline(always)]
fn set(slot: u32, value: u64) {
    if let Some(ptr) = CHAOS_BLOCK_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned map value for the map's lifetime; a torn read of this
        // diagnostic slot is harmless.
        unsafe { ptr.write_volatile(value) };
    }
}

/// Delays the current call if it comes from the configured cgroup; always allows it.
#[inline(always)]
fn block() -> i32 {
    let (Some(&cgroup), Some(&helper), Some(&level)) = (
        CHAOS_BLOCK_CONFIG.get(config::CGROUP_ID),
        CHAOS_BLOCK_CONFIG.get(config::HELPER_PID),
        CHAOS_BLOCK_CONFIG.get(config::CGROUP_LEVEL),
    ) else {
        return 0;
    };
    // The target cgroup or one below it: its ancestor at the target's level is the target.
    // SAFETY: plain helper call.
    if cgroup == 0 || unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) } != cgroup {
        return 0;
    }
    let nr = current_syscall_nr();
    if !(0..i64::from(SYSCALL_WORDS) * 64).contains(&nr) {
        return 0;
    }
    match CHAOS_BLOCK_SYSCALLS.get((nr / 64) as u32) {
        Some(word) if word & (1 << (nr % 64)) != 0 => {}
        _ => return 0,
    }
    add(counter::HITS, 1);
    // SAFETY: the signatures are the kernel's (kernel/bpf/helpers.c, fs/bpf_fs_kfuncs.c);
    // every acquired reference is released on every path, as the verifier demands.
    unsafe {
        let task_from_pid: unsafe extern "C" fn(i32) -> *mut c_void = kfunc(Kfunc::TaskFromPid);
        let task_release: unsafe extern "C" fn(*mut c_void) = kfunc(Kfunc::TaskRelease);
        let get_task_exe_file: unsafe extern "C" fn(*mut c_void) -> *mut c_void =
            kfunc(Kfunc::GetTaskExeFile);
        let put_file: unsafe extern "C" fn(*mut c_void) = kfunc(Kfunc::PutFile);
        let get_file_xattr: unsafe extern "C" fn(*mut c_void, *const u8, *mut bpf_dynptr) -> i32 =
            kfunc(Kfunc::GetFileXattr);

        let task = task_from_pid(helper as i32);
        if task.is_null() {
            add(counter::NO_HELPER, 1);
            return 0;
        }
        let exe = get_task_exe_file(task);
        task_release(task);
        if exe.is_null() {
            add(counter::NO_HELPER, 1);
            return 0;
        }
        let mut value = bpf_dynptr { __opaque: [0; 2] };
        bpf_dynptr_from_mem(
            addr_of_mut!(XATTR_VALUE).cast(),
            16,
            0,
            &mut value as *mut bpf_dynptr,
        );
        let rc = get_file_xattr(exe, XATTR_NAME.as_ptr(), &mut value as *mut bpf_dynptr);
        put_file(exe);
        if rc < 0 {
            add(counter::FAILED, 1);
            set(counter::LAST_ERRNO, (-rc) as u64);
        } else {
            add(counter::DELAYED, 1);
        }
    }
    0
}

/// open, openat, openat2, creat.
#[lsm(hook = "file_open", sleepable)]
pub fn chaos_block_file_open(_ctx: LsmContext) -> i32 {
    block()
}

/// connect.
#[lsm(hook = "socket_connect", sleepable)]
pub fn chaos_block_socket_connect(_ctx: LsmContext) -> i32 {
    block()
}

/// send, sendto, sendmsg, sendmmsg, and write on a socket.
#[lsm(hook = "socket_sendmsg", sleepable)]
pub fn chaos_block_socket_sendmsg(_ctx: LsmContext) -> i32 {
    block()
}

/// recv, recvfrom, recvmsg, recvmmsg, and read on a socket.
#[lsm(hook = "socket_recvmsg", sleepable)]
pub fn chaos_block_socket_recvmsg(_ctx: LsmContext) -> i32 {
    block()
}
