//! The rule index: how the kernel programs find the rules for a call without scanning every
//! rule slot (see `chaos_common::TargetKey`). Planned here, where it can be tested, and written
//! to the `CHAOS_TARGETS` and `CHAOS_HOOK_LEVELS` maps by the shared loaded object
//! (`super::loaded`), which adds and removes faults as changes to it.
use std::collections::{BTreeMap, BTreeSet};

use chaos_common::{
    Hook, HookLevels, MAX_RULES_PER_TARGET, MAX_TARGET_LEVELS, Rule, TargetKey, TargetRules,
};

use crate::Error;

/// The contents of the two index maps for a set of rules in slots `0..n`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuleIndex {
    /// Per hook: the cgroup depths of its rules' targets, in the order of their first rule.
    pub levels: BTreeMap<Hook, HookLevels>,
    /// Per hook and target: the slots of its rules, in slot order.
    pub targets: BTreeMap<TargetKey, TargetRules>,
}

impl RuleIndex {
    /// Indexes `rules` (slot `i` holds `rules[i]`). Within one target rules keep their order,
    /// so the first of them that acts on a call still decides it.
    pub fn plan(rules: &[Rule]) -> Result<RuleIndex, Error> {
        RuleIndex::plan_slots(
            rules
                .iter()
                .enumerate()
                .map(|(slot, rule)| (u32::try_from(slot).expect("slots fit in u32"), rule)),
        )
    }

    /// Indexes rules in the given slots (ascending, as the loaded object keeps them): the
    /// rules of every fault loaded at once.
    pub fn plan_slots<'r>(
        rules: impl IntoIterator<Item = (u32, &'r Rule)>,
    ) -> Result<RuleIndex, Error> {
        let mut index = RuleIndex::default();
        for (slot, rule) in rules {
            let hook = Hook::from_raw(rule.hook).ok_or_else(|| Error::Invalid {
                field: "rule.hook",
                value: rule.hook.to_string(),
                expected: "a chaos_common::Hook".into(),
            })?;
            let levels = index.levels.entry(hook).or_default();
            let used = &levels.levels[..levels.len as usize];
            if !used.contains(&rule.cgroup_level) {
                if levels.len == MAX_TARGET_LEVELS {
                    return Err(Error::Invalid {
                        field: "rules",
                        value: format!(
                            "targets at {} different cgroup depths for the {hook:?} hook",
                            levels.len + 1
                        ),
                        expected: format!(
                            "targets at no more than {MAX_TARGET_LEVELS} different depths below \
                             the cgroup root per hook"
                        ),
                    });
                }
                levels.levels[levels.len as usize] = rule.cgroup_level;
                levels.len += 1;
            }
            let key = TargetKey {
                hook: rule.hook,
                cgroup_level: rule.cgroup_level,
                cgroup_id: rule.cgroup_id,
            };
            let list = index.targets.entry(key).or_default();
            if list.len == MAX_RULES_PER_TARGET {
                return Err(Error::Invalid {
                    field: "rules",
                    value: format!(
                        "more than {MAX_RULES_PER_TARGET} rules on the {hook:?} hook for cgroup id {}",
                        rule.cgroup_id
                    ),
                    expected: format!(
                        "at most {MAX_RULES_PER_TARGET} rules per hook and target cgroup (fewer \
                         syscalls in one fault, or several faults on different cgroups)"
                    ),
                });
            }
            list.slots[list.len as usize] = slot;
            list.len += 1;
        }
        Ok(index)
    }

    /// What to write to turn the maps holding `self` into `next`: only the keys whose list
    /// changed, the keys no rule uses any more, and the depths of every hook whose depths
    /// changed (an emptied hook gets an empty list, so its programs stop looking).
    pub fn changes_to(&self, next: &RuleIndex) -> IndexChanges {
        let upserts = next
            .targets
            .iter()
            .filter(|(key, list)| self.targets.get(key) != Some(list))
            .map(|(key, list)| (*key, *list))
            .collect();
        let removals = self
            .targets
            .keys()
            .filter(|key| !next.targets.contains_key(key))
            .copied()
            .collect();
        let hooks: BTreeSet<Hook> = self
            .levels
            .keys()
            .chain(next.levels.keys())
            .copied()
            .collect();
        let levels = hooks
            .into_iter()
            .filter_map(|hook| {
                let levels = next.levels.get(&hook).copied().unwrap_or_default();
                (self.levels.get(&hook) != Some(&levels)).then_some((hook, levels))
            })
            .collect();
        IndexChanges {
            upserts,
            removals,
            levels,
        }
    }
}

/// Writes that move the index maps from one [`RuleIndex`] to another.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexChanges {
    /// Keys to insert or overwrite with their new slot list.
    pub upserts: Vec<(TargetKey, TargetRules)>,
    /// Keys to delete.
    pub removals: Vec<TargetKey>,
    /// Hooks whose depth list to overwrite.
    pub levels: Vec<(Hook, HookLevels)>,
}

/// The rule slots of the loaded object: which are free. The lowest free slots are handed out
/// first, so a fault's rules keep their order within each target.
#[derive(Debug)]
pub struct Slots {
    free: BTreeSet<u32>,
}

impl Slots {
    /// `capacity` free slots, `0..capacity`.
    pub fn new(capacity: u32) -> Slots {
        Slots {
            free: (0..capacity).collect(),
        }
    }

    /// The `n` lowest free slots, ascending, or `None` (and nothing taken) if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<u32>> {
        if self.free.len() < n {
            return None;
        }
        Some(
            (0..n)
                .map(|_| self.free.pop_first().expect("counted"))
                .collect(),
        )
    }

    /// Frees `slots` again.
    pub fn give_back(&mut self, slots: &[u32]) {
        self.free.extend(slots);
    }

    /// How many are free.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hook: Hook, level: u32, cgroup_id: u64) -> Rule {
        Rule {
            hook: hook as u32,
            cgroup_level: level,
            cgroup_id,
            ..Rule::default()
        }
    }

    #[test]
    fn groups_by_hook_and_target_in_slot_order() {
        let index = RuleIndex::plan(&[
            rule(Hook::FileOpen, 3, 100),
            rule(Hook::FileOpen, 2, 50),
            rule(Hook::FileOpen, 3, 100),
            rule(Hook::Connect, 3, 100),
        ])
        .unwrap();
        let open = index.levels[&Hook::FileOpen];
        assert_eq!(&open.levels[..open.len as usize], &[3, 2]);
        let connect = index.levels[&Hook::Connect];
        assert_eq!(&connect.levels[..connect.len as usize], &[3]);
        let key = |hook: Hook, level, id| TargetKey {
            hook: hook as u32,
            cgroup_level: level,
            cgroup_id: id,
        };
        let slots = |k| {
            let list: &TargetRules = &index.targets[&k];
            list.slots[..list.len as usize].to_vec()
        };
        assert_eq!(slots(key(Hook::FileOpen, 3, 100)), [0, 2]);
        assert_eq!(slots(key(Hook::FileOpen, 2, 50)), [1]);
        assert_eq!(slots(key(Hook::Connect, 3, 100)), [3]);
        assert_eq!(index.targets.len(), 3);
    }

    #[test]
    fn thousands_of_targets_fit() {
        let rules: Vec<Rule> = (0..4096).map(|i| rule(Hook::SockCreate, 2, i)).collect();
        let index = RuleIndex::plan(&rules).unwrap();
        assert_eq!(index.targets.len(), 4096);
        assert_eq!(index.levels[&Hook::SockCreate].len, 1);
    }

    #[test]
    fn too_many_rules_for_one_target_is_refused() {
        let rules = vec![rule(Hook::SysEnter, 2, 7); MAX_RULES_PER_TARGET as usize + 1];
        let err = RuleIndex::plan(&rules).unwrap_err().to_string();
        assert!(err.contains("rules per hook and target cgroup"), "{err}");
        assert!(RuleIndex::plan(&rules[1..]).is_ok());
    }

    #[test]
    fn too_many_depths_for_one_hook_is_refused() {
        let rules: Vec<Rule> = (0..=MAX_TARGET_LEVELS)
            .map(|level| rule(Hook::FileOpen, level, 1000 + u64::from(level)))
            .collect();
        let err = RuleIndex::plan(&rules).unwrap_err().to_string();
        assert!(err.contains("different depths"), "{err}");
        assert!(RuleIndex::plan(&rules[1..]).is_ok());
    }

    #[test]
    fn changes_write_only_what_moved_and_delete_what_went() {
        let a = rule(Hook::Connect, 2, 10);
        let b = rule(Hook::Connect, 2, 11);
        let c = rule(Hook::SockCreate, 3, 10);
        let before = RuleIndex::plan_slots([(0, &a), (1, &b)]).unwrap();
        // A fault on a new hook and a second rule on an existing target arrive.
        let after = RuleIndex::plan_slots([(0, &a), (1, &b), (2, &c), (3, &a)]).unwrap();
        let changes = before.changes_to(&after);
        let keys: Vec<u64> = changes.upserts.iter().map(|(k, _)| k.cgroup_id).collect();
        assert_eq!(keys, [10, 10], "{changes:?}");
        assert_eq!(changes.upserts[0].1.len, 2);
        assert!(changes.removals.is_empty());
        assert_eq!(changes.levels.len(), 1);
        assert_eq!(changes.levels[0].0, Hook::SockCreate);
        // The first fault leaves: its targets go, the emptied hook gets no depths.
        let last = RuleIndex::plan_slots([(1, &b)]).unwrap();
        let changes = after.changes_to(&last);
        assert!(changes.upserts.is_empty(), "{changes:?}");
        assert_eq!(changes.removals.len(), 2);
        assert_eq!(changes.levels, [(Hook::SockCreate, HookLevels::default())]);
        assert_eq!(last.changes_to(&last), IndexChanges::default());
    }

    #[test]
    fn slots_are_handed_out_lowest_first_and_reused() {
        let mut slots = Slots::new(8);
        assert_eq!(slots.take(3).unwrap(), [0, 1, 2]);
        assert_eq!(slots.take(2).unwrap(), [3, 4]);
        slots.give_back(&[0, 1, 2]);
        assert_eq!(slots.take(4).unwrap(), [0, 1, 2, 5]);
        assert!(slots.take(3).is_none());
        assert_eq!(slots.free(), 2);
    }

    #[test]
    fn unknown_hook_is_refused() {
        let bad = Rule {
            hook: 999,
            ..Rule::default()
        };
        assert!(RuleIndex::plan(&[bad]).is_err());
    }
}
