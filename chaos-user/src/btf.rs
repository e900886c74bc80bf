//! Kernel struct offsets, read from the running kernel's BTF.
//!
//! Rust emits no CO-RE relocations, so the kernel programs cannot ask the loader to fix field
//! offsets for them. Instead the user side looks them up here at load time and hands them to
//! the programs through the `CONFIG` map.
use std::path::Path;

use btf_rs::{Backend, Btf, Type};
use chaos_common::KernelConfig;
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::Error;

/// Where the running kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Opens the BTF at `path` for a few lookups.
///
/// Mapped, not parsed: btf-rs's default backend parses every type of vmlinux up front, 250-290
/// ms on these machines, the largest part of arming a file fault; mapped, opening takes ~3 ms
/// and each lookup ~1.5 ms. Kernels before 6.16 cannot map `/sys/kernel/btf/vmlinux`: then
/// its bytes are copied into a memfd, which maps.
pub fn open(path: &Path) -> Result<Btf, Error> {
    let failed = |what: String| Error::Btf {
        path: path.to_owned(),
        what,
    };
    if let Ok(btf) = Btf::from_file_with_backend(path, Backend::Mmap) {
        return Ok(btf);
    }
    let mut copy = memfd_create(c"chaos-btf", MFdFlags::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(|err| failed(format!("cannot copy: {err}")))?;
    std::fs::File::open(path)
        .and_then(|mut file| std::io::copy(&mut file, &mut copy))
        .map_err(|err| failed(format!("cannot read: {err}")))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&copy);
    Btf::from_file_with_backend(format!("/proc/self/fd/{fd}"), Backend::Mmap)
        .map_err(|err| failed(format!("cannot parse: {err}")))
}

/// Reads the offsets the kernel programs need from `path` (normally [`VMLINUX_BTF`]), for
/// programs on the LSM hooks.
pub fn kernel_config(path: &Path) -> Result<KernelConfig, Error> {
    kernel_config_for(path, &[], "bpf_lsm_inode_setattr")
}

/// A kernel function an fmod_ret program attaches to in place of an LSM hook, and the
/// arguments the program reads: those must have the same types in both signatures.
#[derive(Clone, Copy, Debug)]
pub struct Twin {
    /// The LSM hook, e.g. `file_open`.
    pub hook: &'static str,
    /// The function that calls it, e.g. `security_file_open`.
    pub function: &'static str,
    /// The argument positions the program reads.
    pub reads: &'static [usize],
}

/// As [`kernel_config`], for programs on the functions of `twins` (fmod_ret) when given:
/// also checks that each function exists and passes what its program reads where the hook
/// does, and reads `inode_setattr`'s dentry position from `setattr`'s signature.
pub fn kernel_config_for(
    path: &Path,
    twins: &[Twin],
    setattr: &str,
) -> Result<KernelConfig, Error> {
    let btf = open(path)?;
    for twin in twins {
        check_twin(&btf, twin).map_err(|what| Error::Btf {
            path: path.to_owned(),
            what,
        })?;
    }
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
            dentry_name: member_offset(&btf, "dentry", "d_name")?
                + member_offset(&btf, "qstr", "name")?,
            _pad: 0,
            setattr_dentry_arg: match parameter_types(&btf, setattr)?
                .iter()
                .position(|t| t == "struct dentry *")
            {
                Some(1) => 1,
                Some(0) => 0,
                _ => {
                    return Err(format!(
                        "`{setattr}` has no dentry among its first two arguments"
                    ));
                }
            },
        })
    };
    offsets().map_err(|what| Error::Btf {
        path: path.to_owned(),
        what,
    })
}

/// Refuses a twin whose function is missing or passes the arguments its program reads with
/// other types than the hook (its `bpf_lsm_` stub) does.
fn check_twin(btf: &Btf, twin: &Twin) -> Result<(), String> {
    let hook = parameter_types(btf, &format!("bpf_lsm_{}", twin.hook))?;
    let function = parameter_types(btf, twin.function).map_err(|err| {
        format!(
            "{err}: fmod_ret cannot reach the `{}` hook on this kernel",
            twin.hook
        )
    })?;
    for &i in twin.reads {
        if hook.get(i) != function.get(i) {
            return Err(format!(
                "`{}` takes {:?} where the `{}` hook takes {:?} (argument {i}), so its \
                 fmod_ret program would misread it",
                twin.function,
                function.get(i),
                twin.hook,
                hook.get(i)
            ));
        }
    }
    Ok(())
}

/// The parameter types of the kernel function `name`, spelled as in C without qualifiers
/// (`struct file *`).
pub fn parameter_types(btf: &Btf, name: &str) -> Result<Vec<String>, String> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|err| format!("no function `{name}`: {err}"))?;
    for ty in types {
        let Type::Func(func) = ty else { continue };
        let proto = btf
            .resolve_chained_type(&func)
            .map_err(|err| format!("`{name}` has no prototype: {err}"))?;
        if let Type::FuncProto(proto) = proto {
            return Ok(proto
                .parameters
                .iter()
                .map(|p| match btf.resolve_chained_type(p) {
                    Ok(ty) => describe(btf, ty, 0),
                    Err(_) => "?".to_owned(),
                })
                .collect());
        }
    }
    Err(format!("no function `{name}`"))
}

/// A type as C spells it, without qualifiers.
fn describe(btf: &Btf, ty: Type, depth: usize) -> String {
    let name = |t: &dyn btf_rs::BtfType| btf.resolve_name(t).unwrap_or_default();
    let inner = |t: &dyn btf_rs::BtfType| match btf.resolve_chained_type(t) {
        Ok(next) if depth < 8 => describe(btf, next, depth + 1),
        _ => "?".to_owned(),
    };
    match ty {
        Type::Void => "void".to_owned(),
        Type::Ptr(p) => format!("{} *", inner(&p)),
        Type::Const(c) => inner(&c),
        Type::Volatile(v) => inner(&v),
        Type::Restrict(r) => inner(&r),
        Type::TypeTag(t) => inner(&t),
        Type::Struct(s) | Type::Union(s) => format!("struct {}", name(&s)),
        Type::Fwd(f) => format!("struct {}", name(&f)),
        Type::Typedef(t) => name(&t),
        Type::Int(i) => name(&i),
        Type::Enum(e) => format!("enum {}", name(&e)),
        _ => "?".to_owned(),
    }
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
