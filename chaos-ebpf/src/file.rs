//! File and filesystem syscalls through BPF LSM hooks. Each program finds the dentry the call
//! is about (for the path and kind filters) and lets the rules decide.
use aya_ebpf::{
    EbpfContext as _, helpers::bpf_probe_read_kernel, macros::lsm, programs::LsmContext,
};
use chaos_common::Hook;

use crate::{
    lsm::{call, decide},
    maps::CHAOS_CONFIG,
    rule::{read_ptr, targets_current_task},
};

/// The dentry of a `struct file *` (0 for none).
#[inline(always)]
fn file_dentry(file: u64) -> u64 {
    match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(file, config.file_dentry),
        None => 0,
    }
}

/// A hook whose first argument is a `struct file *`.
#[inline(always)]
fn on_file(ctx: &LsmContext, hook: Hook) -> i32 {
    let file: u64 = ctx.arg(0);
    decide(call(hook, file_dentry(file)))
}

#[lsm(hook = "file_open")]
pub fn chaos_file_open(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FileOpen) {
        return 0;
    }
    on_file(&ctx, Hook::FileOpen)
}

#[lsm(hook = "file_permission")]
pub fn chaos_file_permission(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FilePermission) {
        return 0;
    }
    on_file(&ctx, Hook::FilePermission)
}

/// `mmap_file(file, reqprot, prot, flags)`; `file` is NULL for anonymous mappings.
#[lsm(hook = "mmap_file")]
pub fn chaos_mmap_file(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::MmapFile) {
        return 0;
    }
    on_file(&ctx, Hook::MmapFile)
}

#[lsm(hook = "file_mprotect")]
pub fn chaos_file_mprotect(_ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FileMprotect) {
        return 0;
    }
    decide(call(Hook::FileMprotect, 0))
}

#[lsm(hook = "file_ioctl")]
pub fn chaos_file_ioctl(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FileIoctl) {
        return 0;
    }
    on_file(&ctx, Hook::FileIoctl)
}

#[lsm(hook = "file_fcntl")]
pub fn chaos_file_fcntl(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FileFcntl) {
        return 0;
    }
    on_file(&ctx, Hook::FileFcntl)
}

#[lsm(hook = "file_lock")]
pub fn chaos_file_lock(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::FileLock) {
        return 0;
    }
    on_file(&ctx, Hook::FileLock)
}

/// A hook whose argument `N` is the `struct dentry *` the call is about.
#[inline(always)]
fn on_dentry<const N: usize>(ctx: &LsmContext, hook: Hook) -> i32 {
    let dentry: u64 = ctx.arg(N);
    decide(call(hook, dentry))
}

/// `inode_unlink(dir, dentry)`.
#[lsm(hook = "inode_unlink")]
pub fn chaos_inode_unlink(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeUnlink) {
        return 0;
    }
    on_dentry::<1>(&ctx, Hook::InodeUnlink)
}

/// `inode_rmdir(dir, dentry)`.
#[lsm(hook = "inode_rmdir")]
pub fn chaos_inode_rmdir(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeRmdir) {
        return 0;
    }
    on_dentry::<1>(&ctx, Hook::InodeRmdir)
}

/// `inode_mkdir(dir, dentry, mode)`: the new dentry has no inode yet; its parents place it.
#[lsm(hook = "inode_mkdir")]
pub fn chaos_inode_mkdir(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeMkdir) {
        return 0;
    }
    on_dentry::<1>(&ctx, Hook::InodeMkdir)
}

/// `inode_rename(old_dir, old_dentry, new_dir, new_dentry)`: filtered on the source.
#[lsm(hook = "inode_rename")]
pub fn chaos_inode_rename(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeRename) {
        return 0;
    }
    on_dentry::<1>(&ctx, Hook::InodeRename)
}

/// `inode_link(old_dentry, dir, new_dentry)`: filtered on the existing file.
#[lsm(hook = "inode_link")]
pub fn chaos_inode_link(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeLink) {
        return 0;
    }
    on_dentry::<0>(&ctx, Hook::InodeLink)
}

/// `inode_symlink(dir, dentry, old_name)`.
#[lsm(hook = "inode_symlink")]
pub fn chaos_inode_symlink(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeSymlink) {
        return 0;
    }
    on_dentry::<1>(&ctx, Hook::InodeSymlink)
}

/// `inode_setattr([idmap,] dentry, attr)`: 6.3 added the idmap in front.
#[lsm(hook = "inode_setattr")]
pub fn chaos_inode_setattr(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeSetattr) {
        return 0;
    }
    // Loaded from the context, the two arguments are pointers of different BTF types, and a
    // choice between them doubles every verifier state after it (past the 1M budget). Copied
    // out with a helper they are plain numbers; the offsets stay constant, as they must.
    let args = ctx.as_ptr() as *const u64;
    let second = CHAOS_CONFIG
        .get(0)
        .is_some_and(|config| config.setattr_dentry_arg == 1);
    // SAFETY: the hook has at least two arguments on every kernel; the helper copes anyway.
    let dentry = unsafe {
        if second {
            bpf_probe_read_kernel(args.add(1))
        } else {
            bpf_probe_read_kernel(args)
        }
    }
    .unwrap_or(0);
    decide(call(Hook::InodeSetattr, dentry))
}

/// `inode_getattr(const struct path *path)`.
#[lsm(hook = "inode_getattr")]
pub fn chaos_inode_getattr(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::InodeGetattr) {
        return 0;
    }
    let path: u64 = ctx.arg(0);
    let dentry = match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(path, config.path_dentry),
        None => 0,
    };
    decide(call(Hook::InodeGetattr, dentry))
}

/// `bprm_check_security(bprm)`: the executable is `bprm->file`.
#[lsm(hook = "bprm_check_security")]
pub fn chaos_bprm_check_security(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::BprmCheck) {
        return 0;
    }
    let bprm: u64 = ctx.arg(0);
    let file = match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(bprm, config.bprm_file),
        None => 0,
    };
    decide(call(Hook::BprmCheck, file_dentry(file)))
}

/// `sb_mount(dev_name, path, type, flags, data)`: filtered on the mount point.
#[lsm(hook = "sb_mount")]
pub fn chaos_sb_mount(ctx: LsmContext) -> i32 {
    if !targets_current_task(Hook::SbMount) {
        return 0;
    }
    let path: u64 = ctx.arg(1);
    let dentry = match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(path, config.path_dentry),
        None => 0,
    };
    decide(call(Hook::SbMount, dentry))
}
