//! Typed access to the maps and programs of the loaded object, with chaos's errors: the part
//! of loading that the syscall and the packet injectors share.
use std::{collections::BTreeSet, fs::File, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{Array, HashMap, MapData},
    programs::{Program, ProgramError},
};

use crate::Error;

/// An aya loader that has not read the kernel's BTF.
///
/// aya 0.14's `EbpfLoader::new()` reads and parses all of `/sys/kernel/btf/vmlinux` (5 MB:
/// about 15 ms of CPU and 4,000 page faults on these machines, a third of arming a fault) for
/// CO-RE relocations, and chaos's object has none: Rust emits none, and chaos reads the
/// offsets it needs itself ([`crate::btf`]). aya 0.15 reads it only when a relocation needs it,
/// but wants a newer rustc than these machines have. Until then the loader is made on a
/// short-lived thread whose root directory is `/sys/kernel/btf`, where aya's absolute path
/// does not exist: the thread first takes a filesystem context of its own
/// (`unshare(CLONE_FS)`), so the rest of the process, and every process it starts, keeps its
/// root. Where that is refused (no `CAP_SYS_CHROOT`), the loader reads the BTF as before.
pub(crate) fn loader_without_kernel_btf() -> EbpfLoader<'static> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare and chroot take no pointers but the NUL-terminated literal;
                // both change this thread's own filesystem context only, which ends with it.
                unsafe {
                    if libc::unshare(libc::CLONE_FS) == 0 {
                        libc::chroot(c"/sys/kernel/btf".as_ptr());
                    }
                }
                EbpfLoader::new()
            })
            .join()
            .expect("making an aya loader panicked")
    })
}

/// The array map `name`, to write.
pub(crate) fn array_mut<'a, V: Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<Array<&'a mut MapData, V>, Error> {
    Array::try_from(ebpf.map_mut(name).expect(name))
        .map_err(|source| Error::Map { map: name, source })
}

/// The hash map `name`, to write.
pub(crate) fn hash_mut<'a, K: Pod, V: Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, V>, Error> {
    HashMap::try_from(ebpf.map_mut(name).expect(name))
        .map_err(|source| Error::Map { map: name, source })
}

/// Writes `values` to the array map `name` at indices `0..`.
pub(crate) fn write_array<V: Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    values: impl IntoIterator<Item = V>,
) -> Result<(), Error> {
    let mut map = array_mut::<V>(ebpf, name)?;
    for (i, value) in values.into_iter().enumerate() {
        let i = u32::try_from(i).expect("array indices fit in u32");
        map.set(i, value, 0)
            .map_err(|source| Error::Map { map: name, source })?;
    }
    Ok(())
}

/// The first `n` entries of the array map `name` (counters, in rule order).
pub(crate) fn read_array<V: Pod>(
    ebpf: &Ebpf,
    name: &'static str,
    n: usize,
) -> Result<Vec<V>, Error> {
    let map: Array<_, V> = Array::try_from(ebpf.map(name).expect(name))
        .map_err(|source| Error::Map { map: name, source })?;
    (0..n as u32)
        .map(|i| {
            map.get(&i, 0)
                .map_err(|source| Error::Map { map: name, source })
        })
        .collect()
}

/// The program `name` as its type `P`.
pub(crate) fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, Error>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .expect(name)
        .try_into()
        .map_err(|source| program_error(name, "type", source))
}

/// Loads (verifies) the programs `names` that are not in `loaded` yet, side by side, one
/// thread each, and adds them to `loaded`: the verifier is most of arming a fault, and a
/// fault often needs more than one program. Only program types that load without arguments
/// (cgroup and tc programs). On error, the ones that did load stay loaded and counted.
pub(crate) fn load_side_by_side(
    ebpf: &mut Ebpf,
    names: &BTreeSet<&'static str>,
    loaded: &mut BTreeSet<&'static str>,
) -> Result<(), Error> {
    let todo: Vec<(&'static str, &mut Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, prog)| names.get(name).map(|name| (*name, prog)))
        .filter(|(name, _)| !loaded.contains(name))
        .collect();
    if todo.len() < 2 {
        // Nothing to overlap: the callers' one-by-one path loads it.
        return Ok(());
    }
    let outcomes: Vec<(&'static str, Result<(), ProgramError>)> = std::thread::scope(|scope| {
        let loads: Vec<_> = todo
            .into_iter()
            .map(|(name, prog)| {
                scope.spawn(move || {
                    let outcome = match prog {
                        Program::CgroupSockAddr(p) => p.load(),
                        Program::CgroupSock(p) => p.load(),
                        Program::CgroupSockopt(p) => p.load(),
                        Program::CgroupSkb(p) => p.load(),
                        Program::SchedClassifier(p) => p.load(),
                        _ => Err(ProgramError::UnexpectedProgramType),
                    };
                    (name, outcome)
                })
            })
            .collect();
        loads
            .into_iter()
            .map(|load| load.join().expect("a program load panicked"))
            .collect()
    });
    let mut first_error = None;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(()) => {
                loaded.insert(name);
            }
            Err(source) => {
                first_error.get_or_insert_with(|| program_error(name, "load", source));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// An [`Error::Program`] for `action` on `program`.
pub(crate) fn program_error(
    program: &'static str,
    action: &'static str,
    source: ProgramError,
) -> Error {
    Error::Program {
        program,
        action,
        source,
    }
}

/// Attaches `program` to every cgroup directory in `dirs` with `attach`.
pub(crate) fn attach_to_cgroups(
    program: &'static str,
    dirs: &BTreeSet<&PathBuf>,
    mut attach: impl FnMut(File) -> Result<(), ProgramError>,
) -> Result<(), Error> {
    for dir in dirs {
        let cgroup = File::open(dir).map_err(|source| Error::Io {
            path: (*dir).clone(),
            source,
        })?;
        attach(cgroup).map_err(|source| program_error(program, "attach", source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSection as _};

    /// [`super::loader_without_kernel_btf`] skips aya's CO-RE relocations: that is right only
    /// while the object asks for none. Its `.BTF.ext` header says how many bytes of CO-RE
    /// relocation records follow (`core_relo_len`, at byte 28 of a header of 32 or more).
    #[test]
    fn the_object_has_no_core_relocations() {
        let elf = object::File::parse(super::super::EBPF_OBJECT).expect("the object parses");
        let ext = elf
            .section_by_name(".BTF.ext")
            .expect("the object has a .BTF.ext section")
            .data()
            .expect("its bytes");
        let word = |at: usize| u32::from_le_bytes(ext[at..at + 4].try_into().expect("4 bytes"));
        let header_len = word(4) as usize;
        let core_relo_len = if header_len >= 32 { word(28) } else { 0 };
        assert_eq!(
            core_relo_len, 0,
            "the kernel programs now carry CO-RE relocations: load them with the kernel's BTF \
             (aya's EbpfLoader::new) instead of loader_without_kernel_btf"
        );
    }
}
