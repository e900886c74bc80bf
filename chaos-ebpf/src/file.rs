//! File and filesystem syscalls through the kernel's security hooks. Each program finds the
//! dentry the call is about (for the path and kind filters) and lets the rules decide. Every
//! hook has an LSM program and an fmod_ret twin on its `security_` function (see `lsm`).
use aya_ebpf::helpers::bpf_probe_read_kernel;
use chaos_common::Hook;

use crate::{
    lsm::{Args, call, decide, security_hook},
    maps::CHAOS_CONFIG,
    opaque::hide,
    rule::read_ptr,
};

/// The dentry of a `struct file *` (0 for none).
///
/// Hidden from the verifier, as the dentries below are (`crate::opaque`): every read on the
/// way that can fail gives 0, and each such constant would cost a walk of the rules of its
/// own.
#[inline(always)]
fn file_dentry(file: u64) -> u64 {
    hide(match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(file, config.file_dentry),
        None => 0,
    })
}

/// The dentry of a `struct path *` (0 for none), hidden as in [`file_dentry`].
#[inline(always)]
fn path_dentry(path: u64) -> u64 {
    hide(match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(path, config.path_dentry),
        None => 0,
    })
}

/// The verdict at `hook`, whose first argument is a `struct file *`.
#[inline(always)]
fn on_file(hook: Hook) -> impl FnOnce(&Args) -> i32 {
    move |args| decide(call(hook, file_dentry(args.get(0))))
}

/// The verdict at `hook`, whose argument `N` is the `struct dentry *` the call is about.
#[inline(always)]
fn on_dentry<const N: usize>(hook: Hook) -> impl FnOnce(&Args) -> i32 {
    move |args| decide(call(hook, args.get(N)))
}

security_hook!(
    chaos_file_open in "lsm/file_open",
    chaos_fmod_file_open in "fentry/security_file_open",
    Hook::FileOpen,
    on_file(Hook::FileOpen)
);

security_hook!(
    chaos_file_permission in "lsm/file_permission",
    chaos_fmod_file_permission in "fentry/security_file_permission",
    Hook::FilePermission,
    on_file(Hook::FilePermission)
);

security_hook!(
    /// `mmap_file(file, reqprot, prot, flags)` (`security_mmap_file(file, prot, flags)`);
    /// `file` is NULL for anonymous mappings.
    chaos_mmap_file in "lsm/mmap_file",
    chaos_fmod_mmap_file in "fentry/security_mmap_file",
    Hook::MmapFile,
    on_file(Hook::MmapFile)
);

security_hook!(
    chaos_file_mprotect in "lsm/file_mprotect",
    chaos_fmod_file_mprotect in "fentry/security_file_mprotect",
    Hook::FileMprotect,
    |_: &Args| decide(call(Hook::FileMprotect, 0))
);

security_hook!(
    chaos_file_ioctl in "lsm/file_ioctl",
    chaos_fmod_file_ioctl in "fentry/security_file_ioctl",
    Hook::FileIoctl,
    on_file(Hook::FileIoctl)
);

security_hook!(
    chaos_file_fcntl in "lsm/file_fcntl",
    chaos_fmod_file_fcntl in "fentry/security_file_fcntl",
    Hook::FileFcntl,
    on_file(Hook::FileFcntl)
);

security_hook!(
    chaos_file_lock in "lsm/file_lock",
    chaos_fmod_file_lock in "fentry/security_file_lock",
    Hook::FileLock,
    on_file(Hook::FileLock)
);

security_hook!(
    /// `inode_unlink(dir, dentry)`.
    chaos_inode_unlink in "lsm/inode_unlink",
    chaos_fmod_inode_unlink in "fentry/security_inode_unlink",
    Hook::InodeUnlink,
    on_dentry::<1>(Hook::InodeUnlink)
);

security_hook!(
    /// `inode_rmdir(dir, dentry)`.
    chaos_inode_rmdir in "lsm/inode_rmdir",
    chaos_fmod_inode_rmdir in "fentry/security_inode_rmdir",
    Hook::InodeRmdir,
    on_dentry::<1>(Hook::InodeRmdir)
);

security_hook!(
    /// `inode_mkdir(dir, dentry, mode)`: the new dentry has no inode yet; its parents place it.
    chaos_inode_mkdir in "lsm/inode_mkdir",
    chaos_fmod_inode_mkdir in "fentry/security_inode_mkdir",
    Hook::InodeMkdir,
    on_dentry::<1>(Hook::InodeMkdir)
);

security_hook!(
    /// `inode_rename(old_dir, old_dentry, new_dir, new_dentry)`: filtered on the source.
    chaos_inode_rename in "lsm/inode_rename",
    chaos_fmod_inode_rename in "fentry/security_inode_rename",
    Hook::InodeRename,
    on_dentry::<1>(Hook::InodeRename)
);

security_hook!(
    /// `inode_link(old_dentry, dir, new_dentry)`: filtered on the existing file.
    chaos_inode_link in "lsm/inode_link",
    chaos_fmod_inode_link in "fentry/security_inode_link",
    Hook::InodeLink,
    on_dentry::<0>(Hook::InodeLink)
);

security_hook!(
    /// `inode_symlink(dir, dentry, old_name)`.
    chaos_inode_symlink in "lsm/inode_symlink",
    chaos_fmod_inode_symlink in "fentry/security_inode_symlink",
    Hook::InodeSymlink,
    on_dentry::<1>(Hook::InodeSymlink)
);

/// `inode_setattr([idmap,] dentry, attr)`: kernels put an idmap in front (the hook and its
/// `security_` function not always in the same release), so the user side reads the
/// dentry's position from the BTF of the function the program attaches to.
#[inline(always)]
fn inode_setattr(args: &Args) -> i32 {
    // Loaded from the context, the two arguments are pointers of different BTF types, and a
    // choice between them doubles every verifier state after it (past the 1M budget). Copied
    // out with a helper they are plain numbers; the offsets stay constant, as they must.
    let ctx = args.as_ptr();
    let second = CHAOS_CONFIG
        .get(0)
        .is_some_and(|config| config.setattr_dentry_arg == 1);
    // SAFETY: the hook has at least two arguments on every kernel; the helper copes anyway.
    let dentry = unsafe {
        if second {
            bpf_probe_read_kernel(ctx.add(1))
        } else {
            bpf_probe_read_kernel(ctx)
        }
    }
    .unwrap_or(0);
    decide(call(Hook::InodeSetattr, hide(dentry)))
}

security_hook!(
    chaos_inode_setattr in "lsm/inode_setattr",
    chaos_fmod_inode_setattr in "fentry/security_inode_setattr",
    Hook::InodeSetattr,
    inode_setattr
);

security_hook!(
    /// `inode_getattr(const struct path *path)`.
    chaos_inode_getattr in "lsm/inode_getattr",
    chaos_fmod_inode_getattr in "fentry/security_inode_getattr",
    Hook::InodeGetattr,
    |args: &Args| decide(call(Hook::InodeGetattr, path_dentry(args.get(0))))
);

/// `bprm_check_security(bprm)`: the executable is `bprm->file`.
#[inline(always)]
fn bprm_check(args: &Args) -> i32 {
    let file = match CHAOS_CONFIG.get(0) {
        Some(config) => read_ptr(args.get(0), config.bprm_file),
        None => 0,
    };
    decide(call(Hook::BprmCheck, file_dentry(file)))
}

security_hook!(
    // The function behind this hook is `security_bprm_check`, without `_security`.
    chaos_bprm_check_security in "lsm/bprm_check_security",
    chaos_fmod_bprm_check in "fentry/security_bprm_check",
    Hook::BprmCheck,
    bprm_check
);

security_hook!(
    /// `sb_mount(dev_name, path, type, flags, data)`: filtered on the mount point.
    chaos_sb_mount in "lsm/sb_mount",
    chaos_fmod_sb_mount in "fentry/security_sb_mount",
    Hook::SbMount,
    |args: &Args| decide(call(Hook::SbMount, path_dentry(args.get(1))))
);
