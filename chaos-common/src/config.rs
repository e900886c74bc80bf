//! Facts about the running kernel that Rust cannot get from CO-RE relocations.

/// Field offsets (bytes) read by the user side from the kernel's BTF and stored at index 0 of
/// the `CHAOS_CONFIG` map; the kernel programs read kernel structs through them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// `pt_regs.orig_ax`: the syscall number of the running task.
    pub pt_regs_orig_ax: u32,
    /// `file.f_path` + `path.dentry`: the dentry of an open file.
    pub file_dentry: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `path.dentry`, for hooks that pass a `struct path *`.
    pub path_dentry: u32,
    /// `dentry.d_parent`.
    pub dentry_parent: u32,
    /// `dentry.d_inode`.
    pub dentry_inode: u32,
    /// `dentry.d_sb`.
    pub dentry_sb: u32,
    /// `inode.i_ino`.
    pub inode_ino: u32,
    /// `inode.i_mode`.
    pub inode_mode: u32,
    /// `super_block.s_dev`.
    pub sb_dev: u32,
    /// `linux_binprm.file`.
    pub bprm_file: u32,
    /// Which argument of the `inode_setattr` hook is the dentry: 1 since 6.3 (which added
    /// an idmap before it), 0 before.
    pub setattr_dentry_arg: u32,
    /// `dentry.d_name` + `qstr.name`: the dentry's name, for events.
    pub dentry_name: u32,
    /// Reserved, keeps the size a multiple of 8.
    pub _pad: u32,
}
