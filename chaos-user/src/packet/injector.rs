//! Loading and attaching the packet programs for a set of [`PacketRule`]s.
use std::{collections::BTreeSet, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, SchedClassifier, TcAttachType, tc,
    },
    util::KernelVersion,
};
use chaos_common::packet::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_PACKET_RULES, PacketAction, PacketCounter, PacketRule,
};

use crate::{
    Error,
    loader::{
        EBPF_OBJECT,
        object::{attach_to_cgroups, program_error, program_mut, read_array, write_array},
    },
};

const RULES_MAP: &str = "CHAOS_PACKET_RULES";
const COUNTERS_MAP: &str = "CHAOS_PACKET_COUNTERS";
const EGRESS: &str = "chaos_skb_egress";
const INGRESS: &str = "chaos_skb_ingress";
const TC_EGRESS: &str = "chaos_tc_egress";

/// The packet programs loaded, with rules installed and attached to the targets' cgroups.
///
/// Like the syscall injector, it owns every link as a bpf_link file descriptor and pins
/// nothing: dropping it, or the process dying, detaches everything.
pub struct PacketInjector {
    // Dropped in this order: the programs' links first, then the clsact qdiscs they used.
    ebpf: Ebpf,
    clsact: Clsact,
    slots: usize,
    /// Records of the tc filters attached without TCX (they outlive the process); removed
    /// last, once the filters are gone.
    records: Vec<super::qdisc_record::Recorded>,
}

/// The clsact qdiscs chaos added (kernels before 6.6 attach tc programs through one);
/// dropping this removes them again.
#[derive(Default)]
struct Clsact {
    added: Vec<String>,
}

impl Drop for Clsact {
    fn drop(&mut self) {
        for dev in self.added.drain(..) {
            if let Err(why) = super::qdisc::delete(&dev, super::qdisc::CLSACT) {
                eprintln!(
                    "chaos: could not remove the clsact qdisc chaos added to {dev}: {why}; run \
                     `tc qdisc del dev {dev} clsact`"
                );
            }
        }
    }
}

impl PacketInjector {
    /// Loads the object, installs `rules` (each with the cgroup directory it targets) and
    /// attaches the programs the rules need: cgroup_skb egress and ingress on the cgroups, and
    /// for copies the tc egress classifier on `devices`. All or nothing: on error, whatever
    /// was attached is detached again (by drop).
    ///
    /// With a `deadline`, the programs stop affecting packets that long after they are
    /// attached, whatever becomes of this process.
    pub fn start(
        rules: &[(PacketRule, PathBuf)],
        devices: &[String],
        deadline: Option<std::time::Duration>,
    ) -> Result<PacketInjector, Error> {
        if rules.len() > MAX_PACKET_RULES as usize {
            return Err(Error::Invalid {
                field: "packet faults",
                value: rules.len().to_string(),
                expected: format!("at most {MAX_PACKET_RULES} packet faults at once"),
            });
        }
        let mut injector = PacketInjector {
            ebpf: EbpfLoader::new().load(EBPF_OBJECT)?,
            clsact: Clsact::default(),
            slots: rules.len(),
            records: Vec::new(),
        };
        write_array(
            &mut injector.ebpf,
            RULES_MAP,
            rules.iter().map(|(rule, _)| *rule),
        )?;
        for (direction, name, attach_type) in [
            (DIRECTION_EGRESS, EGRESS, CgroupSkbAttachType::Egress),
            (DIRECTION_INGRESS, INGRESS, CgroupSkbAttachType::Ingress),
        ] {
            let dirs: BTreeSet<&PathBuf> = rules
                .iter()
                .filter(|(rule, _)| rule.wants_direction(direction) && on_cgroup(rule))
                .map(|(_, dir)| dir)
                .collect();
            if !dirs.is_empty() {
                injector.attach_skb(name, attach_type, &dirs)?;
            }
        }
        if rules.iter().any(|(rule, _)| !on_cgroup(rule)) {
            injector.attach_tc(devices)?;
        }
        if let Some(deadline) = deadline {
            // Counted from now, when everything is attached.
            let deadline_ns = crate::fault::boot_time_ns()?
                .saturating_add(deadline.as_nanos().try_into().unwrap_or(u64::MAX));
            write_array(
                &mut injector.ebpf,
                RULES_MAP,
                rules.iter().map(|(rule, _)| PacketRule {
                    deadline_ns,
                    ..*rule
                }),
            )?;
        }
        Ok(injector)
    }

    fn attach_tc(&mut self, devices: &[String]) -> Result<(), Error> {
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, TC_EGRESS)?;
        prog.load()
            .map_err(|source| program_error(TC_EGRESS, "load", source))?;
        // TCX (6.6+) needs no qdisc; older kernels attach through a clsact qdisc.
        let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        for dev in devices {
            if !tcx && !super::fq::has_clsact(dev)? {
                tc::qdisc_add_clsact(dev).map_err(|err| Error::Unsupported {
                    fault: format!("copying packets on {dev}"),
                    why: format!(
                        "cannot add a clsact qdisc to {dev} ({err}); tc programs need TCX \
                         (6.6+) or clsact (CONFIG_NET_SCH_INGRESS)"
                    ),
                })?;
                self.clsact.added.push(dev.clone());
            }
            if !tcx {
                // A cls_bpf filter is not owned by a file descriptor: it outlives a killed
                // chaos, and the daemon's next start removes it by this record.
                self.records.push(super::qdisc_record::Recorded::write(
                    dev,
                    super::qdisc_record::Change::TcFilter {
                        program: TC_EGRESS.into(),
                        clsact_added: self.clsact.added.contains(dev),
                    },
                    &format!("tc filter del dev {dev} egress"),
                ));
            }
            prog.attach(dev, TcAttachType::Egress)
                .map_err(|source| program_error(TC_EGRESS, "attach", source))?;
        }
        Ok(())
    }

    fn attach_skb(
        &mut self,
        name: &'static str,
        attach_type: CgroupSkbAttachType,
        dirs: &BTreeSet<&PathBuf>,
    ) -> Result<(), Error> {
        let prog: &mut CgroupSkb = program_mut(&mut self.ebpf, name)?;
        prog.load()
            .map_err(|source| program_error(name, "load", source))?;
        // bpf_link attachments stack with other programs on the same cgroup, and keep running
        // for descendants that attach their own.
        attach_to_cgroups(name, dirs, |cgroup| {
            prog.attach(cgroup, attach_type, CgroupAttachMode::Single)
                .map(drop)
        })
    }

    /// The counters of the installed rules, in rule order.
    pub fn counters(&self) -> Result<Vec<PacketCounter>, Error> {
        read_array(&self.ebpf, COUNTERS_MAP, self.slots)
    }
}

/// Whether the rule's action runs in the cgroup_skb programs (else in the tc classifier).
fn on_cgroup(rule: &PacketRule) -> bool {
    !matches!(
        PacketAction::from_raw(rule.action),
        Some(PacketAction::Duplicate | PacketAction::Corrupt)
    )
}
