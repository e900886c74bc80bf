//! Kernel struct offsets, read from the running kernel's BTF.
//!
//! Rust emits no CO-RE relocations, so the kernel programs cannot ask the loader to fix field
//! offsets for them. Instead the user side looks them up here at load time and hands them to
//! the programs through the `CONFIG` map.
use std::path::Path;

use btf_rs::{Btf, Type};
use chaos_common::KernelConfig;

use crate::Error;

/// Where the running kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads the offsets the kernel programs need from `path` (normally [`VMLINUX_BTF`]).
pub fn kernel_config(path: &Path) -> Result<KernelConfig, Error> {
    let btf = Btf::from_file(path).map_err(|err| Error::Btf {
        path: path.to_owned(),
        what: format!("cannot parse: {err}"),
    })?;
    let offsets = || -> Result<KernelConfig, String> {
        let path_dentry = member_offset(&btf, "path", "dentry")?;
        Ok(KernelConfig {
            pt_regs_orig_ax: member_offset(&btf, "pt_regs", "orig_ax")?,
            file_dentry: member_offset(&btf, "file", "f_path")? + path_dentry,
            file_inode: member_offset(&btf, "file", "f_inode")?,
            path_dentry,
            dentry_parent: member_offset(&btf, "dentry", "d_parent")?,
            dentry_inode: member_offset(&btf, "dentry", "d_inode")?,
            dentry_sb: member_offset(&btf, "dentry", "d_sb")?,
            inode_ino: member_offset(&btf, "inode", "i_ino")?,
            inode_mode: member_offset(&btf, "inode", "i_mode")?,
            sb_dev: member_offset(&btf, "super_block", "s_dev")?,
            bprm_file: member_offset(&btf, "linux_binprm", "file")?,
            setattr_dentry_arg: match hook_arity(&btf, "inode_setattr")? {
                3 => 1,
                _ => 0,
            },
        })
    };
    offsets().map_err(|what| Error::Btf {
        path: path.to_owned(),
        what,
    })
}

/// How many arguments the LSM hook `hook` takes (its `bpf_lsm_` stub's parameters).
fn hook_arity(btf: &Btf, hook: &str) -> Result<usize, String> {
    let name = format!("bpf_lsm_{hook}");
    let types = btf
        .resolve_types_by_name(&name)
        .map_err(|err| format!("no function `{name}`: {err}"))?;
    for ty in types {
        let Type::Func(func) = ty else { continue };
        let proto = btf
            .resolve_chained_type(&func)
            .map_err(|err| format!("`{name}` has no prototype: {err}"))?;
        if let Type::FuncProto(proto) = proto {
            return Ok(proto.parameters.len());
        }
    }
    Err(format!("no function `{name}`"))
}

/// Byte offset of `member` in `struct name`, looking into anonymous structs and unions (recent
/// kernels wrap fields such as `file.f_path` in them); byte-aligned members only.
fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32, String> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|err| format!("no type `{name}`: {err}"))?;
    for ty in types {
        let Type::Struct(st) = ty else { continue };
        return find_member(btf, &st.members, member, 0)?
            .ok_or_else(|| format!("`struct {name}` has no member `{member}`"));
    }
    Err(format!("no `struct {name}`"))
}

fn find_member(
    btf: &Btf,
    members: &[btf_rs::Member],
    member: &str,
    base_bits: u32,
) -> Result<Option<u32>, String> {
    for m in members {
        let bits = base_bits + m.bit_offset();
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == member {
            if !bits.is_multiple_of(8) || m.bitfield_size().is_some_and(|s| s != 0) {
                return Err(format!("`{member}` is a bitfield"));
            }
            return Ok(Some(bits / 8));
        }
        if name.is_empty() {
            let inner = match btf.resolve_chained_type(m) {
                Ok(Type::Struct(s)) | Ok(Type::Union(s)) => s,
                _ => continue,
            };
            if let Some(off) = find_member(btf, &inner.members, member, bits)? {
                return Ok(Some(off));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pt_regs_orig_ax_from_this_kernel() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            eprintln!("SKIP: {VMLINUX_BTF} is missing: this kernel has no CONFIG_DEBUG_INFO_BTF");
            return;
        }
        let config = kernel_config(path).unwrap();
        // x86_64's pt_regs: 15 general registers precede orig_ax.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(config.pt_regs_orig_ax, 15 * 8);
        assert!(config.dentry_parent > 0 && config.inode_ino > 0);
        assert!(config.setattr_dentry_arg <= 1);
    }
}
