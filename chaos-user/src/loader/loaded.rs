//! The object loaded once per process and shared by every fault it runs (the daemon's, an
//! experiment's, `chaos inject`'s one): programs are verified the first time a fault needs
//! them, and a fault is then a few map writes (its rule slots, the index entries of its
//! targets) plus, for cgroup hooks, an attach per target cgroup that has none yet.
//!
//! System-wide links (LSM, tracepoints) are counted per program: a fault takes a reference on
//! each it needs, and the last fault to let go detaches it. Faults want a cgroup program per
//! cgroup, counted the same way, but it is linked only to wanted cgroups with no wanted
//! ancestor ([`CgroupCover`]), so that it runs once for a task below two targets. Every link
//! is a bpf_link file descriptor owned by this process and nothing is pinned, so SIGKILL still detaches everything; when the
//! last fault goes the whole object is dropped and nothing stays loaded.
use std::{
    any::Any,
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use aya::Ebpf;
use chaos_common::{
    Event, HitCounter, Hook, HookLevels, KernelConfig, MAX_RULES, RULE_EVENTS, Rule,
    SYS_ENTER_FILTER_BITS, SYS_ENTER_FILTER_WORDS, TargetKey, TargetRules,
};

mod attach;

use super::{
    Attach, CONFIG_MAP, COUNTERS_MAP, EBPF_OBJECT, HOOK_LEVELS_MAP, HookMechanism, PlannedRule,
    RULES_MAP, SYS_ENTER_NRS_MAP, TARGETS_MAP,
    cover::CgroupCover,
    events::{EventRing, size_ring},
    fmod_ret::FmodRetObject,
    fmod_ret_twin,
    index::{RuleIndex, Slots},
    kernel_btf::KernelBtf,
    object::{array_mut, hash_mut, write_array},
    programs,
};
use crate::{
    Error, btf,
    kernel_log::{self, KernelLogReader},
};

/// Where one program is attached: to a cgroup, or (LSM, tracepoints) system-wide.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AttachPoint {
    program: &'static str,
    cgroup: Option<PathBuf>,
}

/// A link and how many faults use it (a cgroup link: 1, its faults are counted in the
/// program's [`CgroupCover`]); dropping the link detaches it.
struct Link {
    users: usize,
    _link: Box<dyn Any + Send>,
}

/// What one fault holds in the loaded object, to give back when it goes.
#[derive(Debug, Default)]
pub(crate) struct FaultSlots {
    /// Its rules' slots, in rule order.
    pub slots: Vec<u32>,
    /// The attach points it holds a reference on.
    points: Vec<AttachPoint>,
}

/// The loaded object with the rules of every fault of this process.
pub(crate) struct LoadedObject {
    /// First, so that the links go (detach) before the programs are closed.
    links: BTreeMap<AttachPoint, Link>,
    /// Per cgroup program: how to attach it and the cgroups faults want it on (its links in
    /// `links` are the minimal cover of these).
    covers: BTreeMap<&'static str, (Attach, CgroupCover)>,
    // After the links (the fmod_ret programs they hold), before the maps they use. Boxed:
    // aya-obj's Object is large.
    fmod_ret: Option<Box<FmodRetObject>>,
    ebpf: Ebpf,
    /// The event ring, taken out of `ebpf`.
    events: EventRing,
    /// The reader of the programs' log ring (taken out of `ebpf`), with `--log-kernel`.
    kernel_log: Option<KernelLogReader>,
    btf: KernelBtf,
    config_written: bool,
    /// Programs that passed the verifier already.
    loaded: BTreeSet<&'static str>,
    /// The rules in the kernel's slots (host copy, to plan the index from).
    rules: BTreeMap<u32, Rule>,
    slots: Slots,
    /// The index as written to the maps.
    index: RuleIndex,
}

impl LoadedObject {
    /// Loads the object (maps created, no program verified yet). With `needs_kernel_btf`
    /// (a first fault that attaches by BTF id), the kernel's BTF is parsed meanwhile.
    pub fn load(needs_kernel_btf: bool) -> Result<LoadedObject, Error> {
        super::raise_open_file_limit();
        let mut btf = KernelBtf::default();
        if needs_kernel_btf {
            btf.prefetch();
        }
        let mut loader = kernel_log::loader();
        size_ring(&mut loader)?;
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        Ok(LoadedObject {
            fmod_ret: None,
            events: EventRing::take(&mut ebpf)?,
            kernel_log: KernelLogReader::start(&mut ebpf)?,
            ebpf,
            btf,
            config_written: false,
            loaded: BTreeSet::new(),
            rules: BTreeMap::new(),
            slots: Slots::new(MAX_RULES),
            index: RuleIndex::default(),
            links: BTreeMap::new(),
            covers: BTreeMap::new(),
        })
    }

    /// Whether no fault uses it any more.
    pub fn is_idle(&self) -> bool {
        self.rules.is_empty() && self.links.is_empty()
    }

    /// Installs a fault's rules and attaches what they need that is not attached yet. All or
    /// nothing: on error, everything this call did is undone.
    /// The security hooks' programs run through `mechanism` (chosen by the caller; `None`
    /// when the rules need none).
    pub fn add(
        &mut self,
        rules: &[PlannedRule],
        mechanism: Option<HookMechanism>,
    ) -> Result<FaultSlots, Error> {
        let slots = self.slots.take(rules.len()).ok_or_else(|| Error::Invalid {
            field: "rules",
            value: format!(
                "{} more rules while {} are installed",
                rules.len(),
                self.rules.len()
            ),
            expected: format!("at most {MAX_RULES} rules at once, over all faults"),
        })?;
        let mut fault = FaultSlots {
            slots,
            points: Vec::new(),
        };
        match self.install(rules, mechanism, &mut fault) {
            Ok(()) => Ok(fault),
            Err(err) => {
                // Undoing writes only maps this process owns; a failure there leaves at worst
                // inactive slots, which the programs skip.
                let _ = self.remove(&fault);
                Err(err)
            }
        }
    }

    fn install(
        &mut self,
        rules: &[PlannedRule],
        mechanism: Option<HookMechanism>,
        fault: &mut FaultSlots,
    ) -> Result<(), Error> {
        let mut next = self.rules.clone();
        for (slot, planned) in fault.slots.iter().zip(rules) {
            next.insert(*slot, planned.rule);
        }
        // Also checks every rule's hook and the per-target and per-hook limits.
        let index = RuleIndex::plan_slots(next.iter().map(|(s, r)| (*s, r)))?;
        let hooks: BTreeSet<Hook> = rules
            .iter()
            .filter_map(|r| Hook::from_raw(r.rule.hook))
            .collect();
        let security_hooks: Vec<Hook> = hooks
            .iter()
            .copied()
            .filter(|h| matches!(programs(*h).1, Attach::Lsm(_)))
            .collect();
        let fmod_ret = mechanism == Some(HookMechanism::FmodRet);
        // The twins read the security_ functions' arguments where the hooks have them: checked
        // against this kernel's BTF for each twin before it is first loaded (an attached one
        // passed already, so a later fault on the same hooks parses no BTF).
        let new_twins: Vec<btf::Twin> = if fmod_ret {
            security_hooks
                .iter()
                .filter_map(|h| fmod_ret_twin(*h))
                .filter(|(program, _)| {
                    !self.links.contains_key(&AttachPoint {
                        program,
                        cgroup: None,
                    })
                })
                .map(|(_, twin)| twin)
                .collect()
        } else {
            Vec::new()
        };
        if !new_twins.is_empty() {
            let config: KernelConfig = btf::kernel_config_for(
                Path::new(btf::VMLINUX_BTF),
                &new_twins,
                "security_inode_setattr",
            )?;
            if !self.config_written {
                write_array(&mut self.ebpf, CONFIG_MAP, [config])?;
                self.config_written = true;
            }
        } else if !self.config_written && !security_hooks.is_empty() {
            let config: KernelConfig = btf::kernel_config(Path::new(btf::VMLINUX_BTF))?;
            write_array(&mut self.ebpf, CONFIG_MAP, [config])?;
            self.config_written = true;
        }
        // A reused slot starts counting from zero, before its rule is in place.
        {
            let mut counters = array_mut::<HitCounter>(&mut self.ebpf, COUNTERS_MAP)?;
            for slot in &fault.slots {
                counters
                    .set(*slot, HitCounter::default(), 0)
                    .map_err(|source| Error::Map {
                        map: COUNTERS_MAP,
                        source,
                    })?;
            }
        }
        self.write_rules(
            fault
                .slots
                .iter()
                .copied()
                .zip(rules.iter().map(|r| r.rule)),
        )?;
        self.rules = next;
        self.write_index(index)?;
        if hooks.contains(&Hook::SysEnter) {
            self.write_sys_enter_filter()?;
        }
        self.load_cgroup_programs(hooks.iter().flat_map(|hook| {
            let (names, attach) = programs(*hook);
            names.iter().map(move |name| (*name, attach))
        }))?;
        for hook in hooks {
            let dirs: BTreeSet<&PathBuf> = rules
                .iter()
                .filter(|r| r.rule.hook == hook as u32)
                .map(|r| &r.cgroup_dir)
                .collect();
            let (names, attach) = programs(hook);
            if fmod_ret && let Attach::Lsm(_) = attach {
                let (program, twin) = fmod_ret_twin(hook).ok_or_else(|| Error::Unsupported {
                    fault: format!("hook {hook:?}"),
                    why: "it has no fmod_ret program".to_owned(),
                })?;
                let point = AttachPoint {
                    program,
                    cgroup: None,
                };
                self.hold_fmod_ret(&point, twin.function)?;
                fault.points.push(point);
                continue;
            }
            for name in names {
                self.load_program(name, attach)?;
                if let Attach::Lsm(_) | Attach::RawTracepoint(_) = attach {
                    let point = AttachPoint {
                        program: name,
                        cgroup: None,
                    };
                    self.hold(&point, attach)?;
                    fault.points.push(point);
                    continue;
                }
                let (_, cover) = self
                    .covers
                    .entry(name)
                    .or_insert_with(|| (attach, CgroupCover::default()));
                for dir in &dirs {
                    cover.want(dir);
                    fault.points.push(AttachPoint {
                        program: name,
                        cgroup: Some((*dir).clone()),
                    });
                }
                self.relink(name)?;
            }
        }
        Ok(())
    }

    /// Removes a fault: its rules stop at once (inactive slots, index entries gone), and the
    /// links no other fault holds are detached.
    pub fn remove(&mut self, fault: &FaultSlots) -> Result<(), Error> {
        let mut result = self.write_rules(fault.slots.iter().map(|s| (*s, Rule::default())));
        let had_sys_enter = fault.slots.iter().any(|s| {
            self.rules
                .get(s)
                .is_some_and(|r| r.hook == Hook::SysEnter as u32)
        });
        for slot in &fault.slots {
            self.rules.remove(slot);
        }
        self.events.forget(&fault.slots);
        let index = RuleIndex::plan_slots(self.rules.iter().map(|(s, r)| (*s, r)))
            .expect("a subset of a planned index plans");
        result = result.and(self.write_index(index));
        if had_sys_enter {
            result = result.and(self.write_sys_enter_filter());
        }
        let mut relink = BTreeSet::new();
        for point in &fault.points {
            if let Some(dir) = &point.cgroup {
                if let Some((_, cover)) = self.covers.get_mut(point.program) {
                    cover.unwant(dir);
                    relink.insert(point.program);
                }
                continue;
            }
            if let Some(link) = self.links.get_mut(point) {
                link.users -= 1;
                if link.users == 0 {
                    // Dropping the link detaches it.
                    self.links.remove(point);
                }
            }
        }
        for program in relink {
            result = result.and(self.relink(program));
        }
        self.slots.give_back(&fault.slots);
        result
    }

    /// The counters of `slots`, in that order.
    pub fn counters(&self, slots: &[u32]) -> Result<Vec<HitCounter>, Error> {
        let map: aya::maps::Array<_, HitCounter> = aya::maps::Array::try_from(
            self.ebpf.map(COUNTERS_MAP).expect(COUNTERS_MAP),
        )
        .map_err(|source| Error::Map {
            map: COUNTERS_MAP,
            source,
        })?;
        slots
            .iter()
            .map(|i| {
                map.get(i, 0).map_err(|source| Error::Map {
                    map: COUNTERS_MAP,
                    source,
                })
            })
            .collect()
    }

    /// Turns the events of `slots` on or off: the kernel writes events only for rules with
    /// [`RULE_EVENTS`], so a fault nobody listens to costs what it did before events.
    pub fn listen_events(&mut self, slots: &[u32], on: bool) -> Result<(), Error> {
        if on {
            self.events.listen(slots);
        }
        let changed: Vec<(u32, Rule)> = slots
            .iter()
            .filter_map(|s| {
                let mut rule = *self.rules.get(s)?;
                if on {
                    rule.flags |= RULE_EVENTS;
                } else {
                    rule.flags &= !RULE_EVENTS;
                }
                Some((*s, rule))
            })
            .collect();
        for (slot, rule) in &changed {
            self.rules.insert(*slot, *rule);
        }
        let result = self.write_rules(changed);
        if !on {
            self.events.forget(slots);
        }
        result
    }

    /// The events of `slots` since the last call, oldest first.
    pub fn events(&mut self, slots: &[u32]) -> Vec<Event> {
        self.events.drain(slots)
    }

    /// Events of `slots` lost in user space (read too late).
    pub fn events_overflowed(&self, slots: &[u32]) -> u64 {
        self.events.overflowed(slots)
    }

    /// A handle of its own on the map `name` (the shared object keeps its own).
    pub fn map_handle(&self, name: &'static str) -> Result<aya::maps::MapData, Error> {
        let map = self.ebpf.map(name).ok_or(Error::Map {
            map: name,
            source: aya::maps::MapError::InvalidName { name: name.into() },
        })?;
        let id = match map {
            aya::maps::Map::LruHashMap(data) | aya::maps::Map::HashMap(data) => data.info(),
            aya::maps::Map::Array(data) => data.info(),
            _ => unreachable!("chaos's maps are arrays and hashes"),
        }
        .map_err(|source| Error::Map { map: name, source })?
        .id();
        aya::maps::MapData::from_id(id).map_err(|source| Error::Map { map: name, source })
    }

    fn write_rules(&mut self, rules: impl IntoIterator<Item = (u32, Rule)>) -> Result<(), Error> {
        let mut map = array_mut::<Rule>(&mut self.ebpf, RULES_MAP)?;
        for (slot, rule) in rules {
            map.set(slot, rule, 0).map_err(|source| Error::Map {
                map: RULES_MAP,
                source,
            })?;
        }
        Ok(())
    }

    /// Moves deadlines of `slots` later by `shift_ns` (the time loading took).
    pub fn shift_deadlines(&mut self, slots: &[u32], shift_ns: u64) -> Result<(), Error> {
        let shifted: Vec<(u32, Rule)> = slots
            .iter()
            .filter_map(|s| {
                let mut rule = *self.rules.get(s)?;
                if rule.deadline_ns == 0 {
                    return None;
                }
                rule.deadline_ns = rule.deadline_ns.saturating_add(shift_ns);
                Some((*s, rule))
            })
            .collect();
        for (slot, rule) in &shifted {
            self.rules.insert(*slot, *rule);
        }
        self.write_rules(shifted)
    }

    /// Writes what changed between the index in the maps and `next`: new and changed lists
    /// first, then the depths, then deletions, so a call never finds a depth without its list.
    fn write_index(&mut self, next: RuleIndex) -> Result<(), Error> {
        let changes = self.index.changes_to(&next);
        let mut targets = hash_mut::<TargetKey, TargetRules>(&mut self.ebpf, TARGETS_MAP)?;
        for (key, list) in &changes.upserts {
            targets.insert(key, list, 0).map_err(|source| Error::Map {
                map: TARGETS_MAP,
                source,
            })?;
        }
        let mut levels = array_mut::<HookLevels>(&mut self.ebpf, HOOK_LEVELS_MAP)?;
        for (hook, hook_levels) in &changes.levels {
            levels
                .set(*hook as u32, hook_levels, 0)
                .map_err(|source| Error::Map {
                    map: HOOK_LEVELS_MAP,
                    source,
                })?;
        }
        let mut targets = hash_mut::<TargetKey, TargetRules>(&mut self.ebpf, TARGETS_MAP)?;
        for key in &changes.removals {
            targets.remove(key).map_err(|source| Error::Map {
                map: TARGETS_MAP,
                source,
            })?;
        }
        self.index = next;
        Ok(())
    }

    /// Sets the bit of every syscall a `sys_enter` rule names (all of them for a rule on any
    /// syscall) in the program's quick filter, over every fault's rules.
    fn write_sys_enter_filter(&mut self) -> Result<(), Error> {
        let mut words = [0u64; SYS_ENTER_FILTER_WORDS as usize];
        for rule in self.rules.values() {
            if rule.hook != Hook::SysEnter as u32 {
                continue;
            }
            match u32::try_from(rule.syscall_nr) {
                Ok(nr) if nr < SYS_ENTER_FILTER_BITS => {
                    words[(nr / 64) as usize] |= 1 << (nr % 64);
                }
                _ if rule.syscall_nr == chaos_common::ANY_SYSCALL => words = [u64::MAX; _],
                _ => {
                    return Err(Error::Invalid {
                        field: "rule.syscall_nr",
                        value: rule.syscall_nr.to_string(),
                        expected: format!("a syscall number below {SYS_ENTER_FILTER_BITS}"),
                    });
                }
            }
        }
        write_array(&mut self.ebpf, SYS_ENTER_NRS_MAP, words)
    }
}
