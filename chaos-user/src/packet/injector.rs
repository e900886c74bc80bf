//! Loading and attaching the packet programs for a set of [`PacketRule`]s.
use std::{collections::BTreeSet, fs::File, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType},
};
use chaos_common::packet::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_PACKET_RULES, PacketCounter, PacketRule,
};

use crate::{Error, loader::EBPF_OBJECT};

const RULES_MAP: &str = "CHAOS_PACKET_RULES";
const COUNTERS_MAP: &str = "CHAOS_PACKET_COUNTERS";
const EGRESS: &str = "chaos_skb_egress";
const INGRESS: &str = "chaos_skb_ingress";

/// The packet programs loaded, with rules installed and attached to the targets' cgroups.
///
/// Like the syscall injector, it owns every link as a bpf_link file descriptor and pins
/// nothing: dropping it, or the process dying, detaches everything.
pub struct PacketInjector {
    ebpf: Ebpf,
    slots: usize,
}

impl PacketInjector {
    /// Loads the object, installs `rules` (each with the cgroup directory it targets) and
    /// attaches the egress and ingress programs the rules need. All or nothing: on error,
    /// whatever was attached is detached again (by drop).
    pub fn start(rules: &[(PacketRule, PathBuf)]) -> Result<PacketInjector, Error> {
        if rules.len() > MAX_PACKET_RULES as usize {
            return Err(Error::Invalid {
                field: "packet faults",
                value: rules.len().to_string(),
                expected: format!("at most {MAX_PACKET_RULES} packet faults at once"),
            });
        }
        let mut injector = PacketInjector {
            ebpf: EbpfLoader::new().load(EBPF_OBJECT)?,
            slots: rules.len(),
        };
        {
            let mut map: Array<_, PacketRule> = Array::try_from(
                injector.ebpf.map_mut(RULES_MAP).expect(RULES_MAP),
            )
            .map_err(|source| Error::Map {
                map: RULES_MAP,
                source,
            })?;
            for (slot, (rule, _)) in rules.iter().enumerate() {
                map.set(slot as u32, *rule, 0)
                    .map_err(|source| Error::Map {
                        map: RULES_MAP,
                        source,
                    })?;
            }
        }
        for (direction, name, attach_type) in [
            (DIRECTION_EGRESS, EGRESS, CgroupSkbAttachType::Egress),
            (DIRECTION_INGRESS, INGRESS, CgroupSkbAttachType::Ingress),
        ] {
            let dirs: BTreeSet<&PathBuf> = rules
                .iter()
                .filter(|(rule, _)| rule.wants_direction(direction))
                .map(|(_, dir)| dir)
                .collect();
            if !dirs.is_empty() {
                injector.attach_skb(name, attach_type, &dirs)?;
            }
        }
        Ok(injector)
    }

    fn attach_skb(
        &mut self,
        name: &'static str,
        attach_type: CgroupSkbAttachType,
        dirs: &BTreeSet<&PathBuf>,
    ) -> Result<(), Error> {
        let prog: &mut CgroupSkb = self
            .ebpf
            .program_mut(name)
            .expect(name)
            .try_into()
            .map_err(|source| Error::Program {
                program: name,
                action: "type",
                source,
            })?;
        prog.load().map_err(|source| Error::Program {
            program: name,
            action: "load",
            source,
        })?;
        for dir in dirs {
            let cgroup = File::open(dir).map_err(|source| Error::Io {
                path: (*dir).clone(),
                source,
            })?;
            // bpf_link attachments stack with other programs on the same cgroup, and keep
            // running for descendants that attach their own.
            prog.attach(cgroup, attach_type, CgroupAttachMode::Single)
                .map_err(|source| Error::Program {
                    program: name,
                    action: "attach",
                    source,
                })?;
        }
        Ok(())
    }

    /// The counters of the installed rules, in rule order.
    pub fn counters(&self) -> Result<Vec<PacketCounter>, Error> {
        let map: Array<_, PacketCounter> = Array::try_from(
            self.ebpf.map(COUNTERS_MAP).expect(COUNTERS_MAP),
        )
        .map_err(|source| Error::Map {
            map: COUNTERS_MAP,
            source,
        })?;
        (0..self.slots as u32)
            .map(|slot| {
                map.get(&slot, 0).map_err(|source| Error::Map {
                    map: COUNTERS_MAP,
                    source,
                })
            })
            .collect()
    }
}
