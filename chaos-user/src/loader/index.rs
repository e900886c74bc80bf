//! The rule index: how the kernel programs find the rules for a call without scanning every
//! rule slot (see `chaos_common::TargetKey`). Planned here, where it can be tested, and written
//! to the `CHAOS_TARGETS` and `CHAOS_HOOK_LEVELS` maps by the [`super::Injector`].
use std::collections::BTreeMap;

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
        let mut index = RuleIndex::default();
        for (slot, rule) in rules.iter().enumerate() {
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
            list.slots[list.len as usize] = u32::try_from(slot).expect("slots fit in u32");
            list.len += 1;
        }
        Ok(index)
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
    fn unknown_hook_is_refused() {
        let bad = Rule {
            hook: 999,
            ..Rule::default()
        };
        assert!(RuleIndex::plan(&[bad]).is_err());
    }
}
