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
    let orig_ax = member_offset(&btf, "pt_regs", "orig_ax").map_err(|what| Error::Btf {
        path: path.to_owned(),
        what,
    })?;
    Ok(KernelConfig {
        pt_regs_orig_ax: orig_ax,
        _pad: 0,
    })
}

/// Byte offset of `member` in `struct name`; only direct, byte-aligned members.
fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32, String> {
    let types = btf
        .resolve_types_by_name(name)
        .map_err(|err| format!("no type `{name}`: {err}"))?;
    for ty in types {
        let Type::Struct(st) = ty else { continue };
        for m in &st.members {
            if btf.resolve_name(m).ok().as_deref() == Some(member) {
                let bits = m.bit_offset();
                if bits % 8 != 0 || m.bitfield_size().is_some_and(|s| s != 0) {
                    return Err(format!("`{name}.{member}` is a bitfield"));
                }
                return Ok(bits / 8);
            }
        }
        return Err(format!("`struct {name}` has no member `{member}`"));
    }
    Err(format!("no `struct {name}`"))
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
    }
}
