//! Loading and attaching the packet programs for a set of [`PacketRule`]s.
//!
//! As for syscall faults (`loader/loaded.rs`), the object is loaded once per process and
//! shared by every packet fault the process runs (the daemon's, an experiment's, `chaos
//! inject`'s one): the first fault that needs a program verifies it; later faults write their
//! rules to free slots and attach only where nothing is attached yet (a target cgroup, an
//! egress device). Links are counted per attach point and the last fault to let go detaches
//! it; with the last fault the object goes and nothing stays loaded. A cgroup_skb program is
//! linked only where no ancestor cgroup is linked (`loader::cover`), so that it runs once for
//! a packet of a task below two targets.
use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    fs::File,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Mutex, MutexGuard},
};

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, SchedClassifier, TcAttachType, tc,
    },
    util::KernelVersion,
};
use chaos_common::{
    Event,
    packet::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_PACKET_RULES, PACKET_EVENTS, PacketAction,
        PacketCounter, PacketRule, PacketState,
    },
};

use crate::{
    Error,
    kernel_log::KernelLogReader,
    loader::{
        EBPF_OBJECT, EventRing, Slots,
        cover::CgroupCover,
        object::{array_mut, load_side_by_side, program_error, program_mut},
        size_ring,
    },
};

const RULES_MAP: &str = "CHAOS_PACKET_RULES";
const COUNTERS_MAP: &str = "CHAOS_PACKET_COUNTERS";
const STATE_MAP: &str = "CHAOS_PACKET_STATE";
const EGRESS: &str = "chaos_skb_egress";
const INGRESS: &str = "chaos_skb_ingress";
const TC_EGRESS: &str = "chaos_tc_egress";

/// One packet fault's rules, installed in the process's shared packet object and attached
/// where they need to be.
///
/// Like the syscall injector, every link is a bpf_link file descriptor (or a netlink tc filter
/// on kernels before TCX) owned by this process and nothing is pinned: dropping the last
/// injector, or the process dying, detaches everything.
pub struct PacketInjector {
    slots: Vec<u32>,
    points: Vec<AttachPoint>,
}

/// Where one packet program is attached: a cgroup (cgroup_skb) or an egress device in a
/// network namespace (tc).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum AttachPoint {
    Cgroup {
        program: &'static str,
        dir: PathBuf,
    },
    Device {
        /// The namespace's inode: the same name may be another device in another namespace.
        netns: u64,
        dev: String,
    },
}

/// A link, how many faults use it (a cgroup link: 1, its faults are counted in the program's
/// `CgroupCover`), and (tc before 6.6) the clsact qdisc added for it.
struct Link {
    users: usize,
    // Dropped in this order: the program's link first, then the qdisc it used.
    _link: Box<dyn Any + Send>,
    _clsact: Option<Clsact>,
    /// The record of a tc filter attached without TCX (it outlives the process), removed
    /// last, once the filter is gone.
    _record: Option<super::qdisc_record::Recorded>,
}

/// A clsact qdisc chaos added (kernels before 6.6 attach tc programs through one); dropping
/// this removes it again.
struct Clsact {
    dev: String,
}

impl Drop for Clsact {
    fn drop(&mut self) {
        if let Err(why) = super::qdisc::delete(&self.dev, super::qdisc::CLSACT) {
            eprintln!(
                "chaos: could not remove the clsact qdisc chaos added to {dev}: {why}; run \
                 `tc qdisc del dev {dev} clsact`",
                dev = self.dev
            );
        }
    }
}

/// The packet object with the rules of every packet fault of this process.
struct PacketObject {
    /// First, so that the links go (detach) before the programs are closed.
    links: BTreeMap<AttachPoint, Link>,
    /// Per cgroup_skb program: its attach type and the cgroups faults want it on (its links
    /// in `links` are the minimal cover of these).
    covers: BTreeMap<&'static str, (CgroupSkbAttachType, CgroupCover)>,
    ebpf: Ebpf,
    /// The event ring, taken out of `ebpf`.
    events: EventRing,
    /// Prints the programs' log ring (taken out of `ebpf`) with `--log-kernel`; held for its drop.
    _kernel_log: Option<KernelLogReader>,
    /// Programs that passed the verifier already.
    loaded: BTreeSet<&'static str>,
    /// Slots in use, with their rules (host copy).
    rules: BTreeMap<u32, PacketRule>,
    slots: Slots,
}

/// The packet object this process loaded; `None` while no packet fault runs.
static LOADED: Mutex<Option<PacketObject>> = Mutex::new(None);

fn loaded() -> MutexGuard<'static, Option<PacketObject>> {
    // The bookkeeping is updated only after each kernel write succeeds: keep going after a
    // panic elsewhere.
    LOADED.lock().unwrap_or_else(|e| e.into_inner())
}

impl PacketInjector {
    /// Installs `rules` (each with the cgroup directory it targets) and attaches the programs
    /// the rules need: cgroup_skb egress and ingress on the cgroups, and for copies the tc
    /// egress classifier on `devices`. All or nothing: on error, whatever this call attached
    /// is detached again.
    ///
    /// With a `deadline`, the programs stop affecting packets that long after they are
    /// attached, whatever becomes of this process.
    pub fn start(
        rules: &[(PacketRule, PathBuf)],
        devices: &[String],
        deadline: Option<std::time::Duration>,
    ) -> Result<PacketInjector, Error> {
        let mut guard = loaded();
        if guard.is_none() {
            crate::loader::raise_open_file_limit();
            let mut loader = crate::kernel_log::loader();
            size_ring(&mut loader)?;
            let mut ebpf = loader.load(EBPF_OBJECT)?;
            *guard = Some(PacketObject {
                links: BTreeMap::new(),
                covers: BTreeMap::new(),
                events: EventRing::take(&mut ebpf)?,
                _kernel_log: KernelLogReader::start(&mut ebpf)?,
                ebpf,
                loaded: BTreeSet::new(),
                rules: BTreeMap::new(),
                slots: Slots::new(MAX_PACKET_RULES),
            });
        }
        let object = guard.as_mut().expect("just loaded");
        let Some(slots) = object.slots.take(rules.len()) else {
            let in_use = object.rules.len();
            if object.is_idle() {
                *guard = None;
            }
            return Err(Error::Invalid {
                field: "packet faults",
                value: format!("{} more while {in_use} are installed", rules.len()),
                expected: format!(
                    "at most {MAX_PACKET_RULES} packet faults at once, over all faults"
                ),
            });
        };
        let mut injector = PacketInjector {
            slots,
            points: Vec::new(),
        };
        match object.install(&mut injector, rules, devices, deadline) {
            Ok(()) => Ok(injector),
            Err(err) => {
                object.remove(&injector);
                if object.is_idle() {
                    *guard = None;
                }
                // Nothing left to give back on drop.
                injector.slots.clear();
                injector.points.clear();
                Err(err)
            }
        }
    }

    /// Starts (or stops) the kernel writing an event for each packet the rules affect.
    pub fn listen_events(&mut self, on: bool) -> Result<(), Error> {
        let mut guard = loaded();
        let object = guard.as_mut().expect("an injector keeps the object loaded");
        if on {
            object.events.listen(&self.slots);
        }
        let changed: Vec<(u32, PacketRule)> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let rule = object.rules.get(slot)?;
                let flags = if on {
                    rule.flags | PACKET_EVENTS
                } else {
                    rule.flags & !PACKET_EVENTS
                };
                Some((*slot, PacketRule { flags, ..*rule }))
            })
            .collect();
        let result = object.write_rules(changed);
        if !on {
            object.events.forget(&self.slots);
        }
        result
    }

    /// The events since the last call, oldest first, with the position of each one's rule
    /// among the fault's rules.
    pub fn events(&mut self) -> Vec<(usize, Event)> {
        let mut guard = loaded();
        let object = guard.as_mut().expect("an injector keeps the object loaded");
        object
            .events
            .drain(&self.slots)
            .into_iter()
            .filter_map(|e| Some((self.slots.iter().position(|s| *s == e.slot)?, e)))
            .collect()
    }

    /// Events lost so far (ring full, or read too late).
    pub fn events_lost(&self) -> Result<u64, Error> {
        let kernel: u64 = self.counters()?.iter().map(|c| c.events_lost).sum();
        let guard = loaded();
        let object = guard.as_ref().expect("an injector keeps the object loaded");
        Ok(kernel + object.events.overflowed(&self.slots))
    }

    /// The counters of the installed rules, in rule order.
    pub fn counters(&self) -> Result<Vec<PacketCounter>, Error> {
        let guard = loaded();
        let object = guard.as_ref().expect("an injector keeps the object loaded");
        let map: aya::maps::Array<_, PacketCounter> =
            aya::maps::Array::try_from(object.ebpf.map(COUNTERS_MAP).expect(COUNTERS_MAP))
                .map_err(|source| Error::Map {
                    map: COUNTERS_MAP,
                    source,
                })?;
        self.slots
            .iter()
            .map(|slot| {
                map.get(slot, 0).map_err(|source| Error::Map {
                    map: COUNTERS_MAP,
                    source,
                })
            })
            .collect()
    }
}

impl Drop for PacketInjector {
    fn drop(&mut self) {
        if self.slots.is_empty() && self.points.is_empty() {
            return;
        }
        let mut guard = loaded();
        if let Some(object) = guard.as_mut() {
            object.remove(self);
            if object.is_idle() {
                // Unloads every program and map: nothing of chaos stays in the kernel.
                *guard = None;
            }
        }
    }
}

impl PacketObject {
    fn is_idle(&self) -> bool {
        self.rules.is_empty() && self.links.is_empty()
    }

    fn install(
        &mut self,
        injector: &mut PacketInjector,
        rules: &[(PacketRule, PathBuf)],
        devices: &[String],
        deadline: Option<std::time::Duration>,
    ) -> Result<(), Error> {
        // A reused slot starts from zero: counters and rate timeline, before its rule.
        {
            let mut counters = array_mut::<PacketCounter>(&mut self.ebpf, COUNTERS_MAP)?;
            for slot in &injector.slots {
                counters
                    .set(*slot, PacketCounter::default(), 0)
                    .map_err(|source| Error::Map {
                        map: COUNTERS_MAP,
                        source,
                    })?;
            }
            let mut state = array_mut::<PacketState>(&mut self.ebpf, STATE_MAP)?;
            for slot in &injector.slots {
                state
                    .set(*slot, PacketState::default(), 0)
                    .map_err(|source| Error::Map {
                        map: STATE_MAP,
                        source,
                    })?;
            }
        }
        self.write_rules(
            injector
                .slots
                .iter()
                .copied()
                .zip(rules.iter().map(|r| r.0)),
        )?;
        let directions = [
            (DIRECTION_EGRESS, EGRESS, CgroupSkbAttachType::Egress),
            (DIRECTION_INGRESS, INGRESS, CgroupSkbAttachType::Ingress),
        ];
        // Both directions' programs verified at once when the faults want both.
        let wanted: BTreeSet<&'static str> = directions
            .iter()
            .filter(|(direction, _, _)| {
                rules
                    .iter()
                    .any(|(rule, _)| rule.wants_direction(*direction) && on_cgroup(rule))
            })
            .map(|(_, name, _)| *name)
            .collect();
        load_side_by_side(&mut self.ebpf, &wanted, &mut self.loaded)?;
        for (direction, name, attach_type) in directions {
            let dirs: BTreeSet<&PathBuf> = rules
                .iter()
                .filter(|(rule, _)| rule.wants_direction(direction) && on_cgroup(rule))
                .map(|(_, dir)| dir)
                .collect();
            if dirs.is_empty() {
                continue;
            }
            self.load(name, CgroupSkb::load)?;
            let (_, cover) = self
                .covers
                .entry(name)
                .or_insert_with(|| (attach_type, CgroupCover::default()));
            for dir in dirs {
                cover.want(dir);
                injector.points.push(AttachPoint::Cgroup {
                    program: name,
                    dir: dir.clone(),
                });
            }
            self.relink(name)?;
        }
        if rules.iter().any(|(rule, _)| !on_cgroup(rule)) {
            let netns = std::fs::metadata("/proc/thread-self/ns/net")
                .map(|m| m.ino())
                .unwrap_or(0);
            for dev in devices {
                let point = AttachPoint::Device {
                    netns,
                    dev: dev.clone(),
                };
                self.hold_device(&point, dev)?;
                injector.points.push(point);
            }
        }
        if let Some(deadline) = deadline {
            // Counted from now, when everything is attached.
            let deadline_ns = crate::fault::boot_time_ns()?
                .saturating_add(deadline.as_nanos().try_into().unwrap_or(u64::MAX));
            self.write_rules(
                injector
                    .slots
                    .iter()
                    .copied()
                    .zip(rules.iter().map(|(rule, _)| PacketRule {
                        deadline_ns,
                        ..*rule
                    })),
            )?;
        }
        Ok(())
    }

    /// Removes a fault: its rules stop at once (inactive slots), and the links no other
    /// fault holds are detached. Errors only leave inactive slots, which the programs skip.
    fn remove(&mut self, injector: &PacketInjector) {
        let cleared = injector.slots.iter().map(|s| (*s, PacketRule::default()));
        if let Err(err) = self.write_rules(cleared) {
            tracing::warn!("removing a packet fault's rules: {err}");
        }
        for slot in &injector.slots {
            self.rules.remove(slot);
        }
        self.events.forget(&injector.slots);
        self.slots.give_back(&injector.slots);
        let mut relink = BTreeSet::new();
        for point in &injector.points {
            if let AttachPoint::Cgroup { program, dir } = point {
                if let Some((_, cover)) = self.covers.get_mut(program) {
                    cover.unwant(dir);
                    relink.insert(*program);
                }
                continue;
            }
            if let Some(link) = self.links.get_mut(point) {
                link.users -= 1;
                if link.users == 0 {
                    // Dropping the link detaches it (and removes a clsact chaos added).
                    self.links.remove(point);
                }
            }
        }
        for program in relink {
            if let Err(err) = self.relink(program) {
                tracing::warn!(
                    "re-attaching {program} below a removed packet fault's target: {err}"
                );
            }
        }
    }

    fn write_rules(
        &mut self,
        rules: impl IntoIterator<Item = (u32, PacketRule)>,
    ) -> Result<(), Error> {
        let mut map = array_mut::<PacketRule>(&mut self.ebpf, RULES_MAP)?;
        for (slot, rule) in rules {
            map.set(slot, rule, 0).map_err(|source| Error::Map {
                map: RULES_MAP,
                source,
            })?;
            if rule.is_active() {
                self.rules.insert(slot, rule);
            }
        }
        Ok(())
    }

    /// Takes a reference on `point`, attaching it if no fault holds it yet.
    fn hold(
        &mut self,
        point: &AttachPoint,
        attach: impl FnOnce(&mut Ebpf) -> Result<Link, Error>,
    ) -> Result<(), Error> {
        if let Some(link) = self.links.get_mut(point) {
            link.users += 1;
            return Ok(());
        }
        let link = attach(&mut self.ebpf)?;
        self.links.insert(point.clone(), link);
        Ok(())
    }

    /// Loads (verifies) `name` unless an earlier fault did.
    fn load<P>(
        &mut self,
        name: &'static str,
        load: fn(&mut P) -> Result<(), aya::programs::ProgramError>,
    ) -> Result<(), Error>
    where
        for<'a> &'a mut P:
            TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        if self.loaded.contains(name) {
            return Ok(());
        }
        let prog: &mut P = program_mut(&mut self.ebpf, name)?;
        load(prog).map_err(|source| program_error(name, "load", source))?;
        self.loaded.insert(name);
        Ok(())
    }

    /// Brings the cgroup_skb program `program`'s links to the minimal cover of the cgroups
    /// faults want it on (`CgroupCover::relink`: attaches first, then detaches).
    fn relink(&mut self, program: &'static str) -> Result<(), Error> {
        // Taken out while its links change, put back while some fault wants it.
        let Some((attach_type, cover)) = self.covers.remove(program) else {
            return Ok(());
        };
        let linked: BTreeSet<PathBuf> = self
            .links
            .keys()
            .filter_map(|p| match p {
                AttachPoint::Cgroup { program: p, dir } if *p == program => Some(dir.clone()),
                _ => None,
            })
            .collect();
        let (redundant, result) = cover.relink(&linked, |dir| {
            let point = AttachPoint::Cgroup {
                program,
                dir: dir.to_path_buf(),
            };
            self.hold_cgroup(&point, attach_type)
        });
        for dir in redundant {
            // Dropping the link detaches it.
            self.links.remove(&AttachPoint::Cgroup { program, dir });
        }
        if !cover.is_empty() {
            self.covers.insert(program, (attach_type, cover));
        }
        result
    }

    fn hold_cgroup(
        &mut self,
        point: &AttachPoint,
        attach_type: CgroupSkbAttachType,
    ) -> Result<(), Error> {
        let AttachPoint::Cgroup { program, dir } = point else {
            unreachable!("a cgroup point");
        };
        let program = *program;
        self.hold(point, |ebpf| {
            let prog: &mut CgroupSkb = program_mut(ebpf, program)?;
            let cgroup = File::open(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            // bpf_link attachments stack with other programs on the same cgroup, and keep
            // running for descendants that attach their own.
            let id = prog
                .attach(cgroup, attach_type, CgroupAttachMode::Single)
                .map_err(|source| program_error(program, "attach", source))?;
            let link = prog
                .take_link(id)
                .map_err(|source| program_error(program, "attach", source))?;
            Ok(Link {
                users: 1,
                _link: Box::new(link),
                _clsact: None,
                _record: None,
            })
        })
    }

    fn hold_device(&mut self, point: &AttachPoint, dev: &str) -> Result<(), Error> {
        self.load(TC_EGRESS, SchedClassifier::load)?;
        self.hold(point, |ebpf| {
            // TCX (6.6+) needs no qdisc; older kernels attach through a clsact qdisc.
            let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
            let mut clsact = None;
            if !tcx && !super::fq::has_clsact(dev)? {
                tc::qdisc_add_clsact(dev).map_err(|err| Error::Unsupported {
                    fault: format!("copying packets on {dev}"),
                    why: format!(
                        "cannot add a clsact qdisc to {dev} ({err}); tc programs need TCX \
                         (6.6+) or clsact (CONFIG_NET_SCH_INGRESS)"
                    ),
                })?;
                clsact = Some(Clsact {
                    dev: dev.to_owned(),
                });
            }
            // A cls_bpf filter is not owned by a file descriptor: it outlives a killed chaos,
            // and the daemon's next start removes it by this record.
            let record = (!tcx).then(|| {
                super::qdisc_record::Recorded::write(
                    dev,
                    super::qdisc_record::Change::TcFilter {
                        program: TC_EGRESS.into(),
                        clsact_added: clsact.is_some(),
                    },
                    &format!("tc filter del dev {dev} egress"),
                )
            });
            let prog: &mut SchedClassifier = program_mut(ebpf, TC_EGRESS)?;
            let id = prog
                .attach(dev, TcAttachType::Egress)
                .map_err(|source| program_error(TC_EGRESS, "attach", source))?;
            let link = prog
                .take_link(id)
                .map_err(|source| program_error(TC_EGRESS, "attach", source))?;
            Ok(Link {
                users: 1,
                _link: Box::new(link),
                _clsact: clsact,
                _record: record,
            })
        })
    }
}

/// Whether the rule's action runs in the cgroup_skb programs (else in the tc classifier).
fn on_cgroup(rule: &PacketRule) -> bool {
    !matches!(
        PacketAction::from_raw(rule.action),
        Some(PacketAction::Duplicate | PacketAction::Corrupt)
    )
}
