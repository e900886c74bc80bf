//! Loading and attaching the shared object's programs: each is verified the first time a
//! fault needs it, system-wide links are counted per program, and a cgroup program's links
//! follow the cover of the cgroups faults want it on (`CgroupCover`).
use std::{
    any::Any,
    collections::BTreeSet,
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, CgroupSockopt, Lsm, Program, ProgramError,
        RawTracePoint,
    },
};

use super::{AttachPoint, Link, LoadedObject};
use crate::{
    Error,
    kernel_log::KERNEL_LOG_MAP,
    loader::{
        Attach, EBPF_OBJECT,
        events::EVENTS_MAP,
        fmod_ret::FmodRetObject,
        object::{load_side_by_side, program_error, program_mut},
    },
};

impl LoadedObject {
    /// Loads the cgroup programs among `wanted` that no earlier fault loaded, side by side
    /// ([`load_side_by_side`]): connect and bind need two programs each (4 and 6).
    pub(super) fn load_cgroup_programs(
        &mut self,
        wanted: impl Iterator<Item = (&'static str, Attach)>,
    ) -> Result<(), Error> {
        let names: BTreeSet<&'static str> = wanted
            .filter(|(_, attach)| {
                matches!(attach, Attach::SockAddr | Attach::Sock | Attach::Sockopt)
            })
            .map(|(name, _)| name)
            .collect();
        load_side_by_side(&mut self.ebpf, &names, &mut self.loaded)
    }

    /// Loads (verifies) program `name` unless an earlier fault did.
    pub(super) fn load_program(&mut self, name: &'static str, attach: Attach) -> Result<(), Error> {
        if self.loaded.contains(name) {
            return Ok(());
        }
        match attach {
            Attach::Lsm(hook) => {
                let btf = self.btf.get(&format!("LSM hook {hook}"))?;
                let prog: &mut Lsm = program_mut(&mut self.ebpf, name)?;
                prog.load(hook, btf).map_err(|err| Error::Unsupported {
                    fault: format!("LSM hook {hook}"),
                    why: format!(
                        "the kernel refused the BPF LSM program ({err}); this needs \
                         CONFIG_BPF_LSM, `bpf` in the active LSMs (lsm= boot parameter) and BPF \
                         trampolines; without them, the cgroup hooks still fail {}; `chaos \
                         doctor` shows what this kernel lacks",
                        crate::fault::Syscall::supported_by(crate::fault::Mechanism::Cgroup)
                            .join(", ")
                    ),
                })?;
            }
            Attach::RawTracepoint(_) => load_with(&mut self.ebpf, name, RawTracePoint::load)?,
            Attach::SockAddr => load_with(&mut self.ebpf, name, CgroupSockAddr::load)?,
            Attach::Sock => load_with(&mut self.ebpf, name, CgroupSock::load)?,
            Attach::Sockopt => load_with(&mut self.ebpf, name, CgroupSockopt::load)?,
        }
        self.loaded.insert(name);
        Ok(())
    }

    /// Takes a reference on the fmod_ret program `point`, loading and attaching it to the
    /// kernel function `function` if no fault holds it yet.
    pub(super) fn hold_fmod_ret(
        &mut self,
        point: &AttachPoint,
        function: &str,
    ) -> Result<(), Error> {
        if let Some(link) = self.links.get_mut(point) {
            link.users += 1;
            return Ok(());
        }
        let btf = self.btf.get(&format!("fmod_ret on {function}"))?;
        if self.fmod_ret.is_none() {
            let mut taken = vec![(EVENTS_MAP, self.events.raw_fd())];
            if let Some(reader) = &self.kernel_log {
                taken.push((KERNEL_LOG_MAP, reader.raw_fd()));
            }
            self.fmod_ret = Some(Box::new(FmodRetObject::with_maps(
                EBPF_OBJECT,
                &self.ebpf,
                &taken,
            )?));
        }
        let object = self.fmod_ret.as_ref().expect("just set");
        let link = object.attach(point.program, function, btf)?;
        self.links.insert(
            point.clone(),
            Link {
                users: 1,
                _link: Box::new(link),
            },
        );
        Ok(())
    }

    /// Brings the cgroup program `program`'s links to the minimal cover of the cgroups faults
    /// want it on ([`CgroupCover::relink`]: attaches first, then detaches).
    pub(super) fn relink(&mut self, program: &'static str) -> Result<(), Error> {
        // Taken out while its links change, put back while some fault wants it.
        let Some((attach, cover)) = self.covers.remove(program) else {
            return Ok(());
        };
        let linked: BTreeSet<PathBuf> = self
            .links
            .keys()
            .filter(|p| p.program == program)
            .filter_map(|p| p.cgroup.clone())
            .collect();
        let (redundant, result) = cover.relink(&linked, |dir| {
            let point = AttachPoint {
                program,
                cgroup: Some(dir.to_path_buf()),
            };
            self.hold(&point, attach)
        });
        for dir in redundant {
            // Dropping the link detaches it.
            self.links.remove(&AttachPoint {
                program,
                cgroup: Some(dir),
            });
        }
        if !cover.is_empty() {
            self.covers.insert(program, (attach, cover));
        }
        result
    }

    /// Takes a reference on `point`, attaching it if no fault holds it yet.
    pub(super) fn hold(&mut self, point: &AttachPoint, attach: Attach) -> Result<(), Error> {
        if let Some(link) = self.links.get_mut(point) {
            link.users += 1;
            return Ok(());
        }
        let name = point.program;
        let link: Box<dyn Any + Send> = match (attach, &point.cgroup) {
            (Attach::Lsm(_), _) => {
                let prog: &mut Lsm = program_mut(&mut self.ebpf, name)?;
                let id = prog
                    .attach()
                    .map_err(|source| program_error(name, "attach", source))?;
                Box::new(
                    prog.take_link(id)
                        .map_err(|source| program_error(name, "attach", source))?,
                )
            }
            (Attach::RawTracepoint(tracepoint), _) => {
                let prog: &mut RawTracePoint = program_mut(&mut self.ebpf, name)?;
                let id = prog
                    .attach(tracepoint)
                    .map_err(|source| program_error(name, "attach", source))?;
                Box::new(
                    prog.take_link(id)
                        .map_err(|source| program_error(name, "attach", source))?,
                )
            }
            (Attach::SockAddr, Some(dir)) => attach_cgroup(&mut self.ebpf, name, dir, |p, f| {
                let prog: &mut CgroupSockAddr = p;
                let id = prog.attach(f, CgroupAttachMode::Single)?;
                Ok(Box::new(prog.take_link(id)?))
            })?,
            (Attach::Sock, Some(dir)) => attach_cgroup(&mut self.ebpf, name, dir, |p, f| {
                let prog: &mut CgroupSock = p;
                let id = prog.attach(f, CgroupAttachMode::Single)?;
                Ok(Box::new(prog.take_link(id)?))
            })?,
            (Attach::Sockopt, Some(dir)) => attach_cgroup(&mut self.ebpf, name, dir, |p, f| {
                let prog: &mut CgroupSockopt = p;
                let id = prog.attach(f, CgroupAttachMode::Single)?;
                Ok(Box::new(prog.take_link(id)?))
            })?,
            (_, None) => unreachable!("cgroup programs attach to a cgroup"),
        };
        self.links.insert(
            point.clone(),
            Link {
                users: 1,
                _link: link,
            },
        );
        Ok(())
    }
}

fn load_with<P>(
    ebpf: &mut Ebpf,
    name: &'static str,
    load: fn(&mut P) -> Result<(), ProgramError>,
) -> Result<(), Error>
where
    for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog: &mut P = program_mut(ebpf, name)?;
    load(prog).map_err(|source| program_error(name, "load", source))
}

/// Attaches the cgroup program `name` to the cgroup `dir`, returning its link.
///
/// On 5.7+ aya attaches through bpf_link, which the kernel always treats as multi-attach (and
/// refuses flags for): the program coexists with others on the same cgroup and keeps running
/// for descendants that attach their own.
fn attach_cgroup<P>(
    ebpf: &mut Ebpf,
    name: &'static str,
    dir: &Path,
    attach: impl FnOnce(&mut P, File) -> Result<Box<dyn Any + Send>, ProgramError>,
) -> Result<Box<dyn Any + Send>, Error>
where
    for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog: &mut P = program_mut(ebpf, name)?;
    let cgroup = File::open(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    attach(prog, cgroup).map_err(|source| program_error(name, "attach", source))
}
