//! Fault descriptions as users write them, checked and turned into kernel rules.
use std::time::Duration;

use chaos_common::{Action, RULE_ACTIVE, RULE_DRY_RUN, Rule, Schedule};

use crate::{Error, loader::PlannedRule, target::CgroupTarget};

pub mod block;
mod errno;
mod filter;
mod injectable;
mod latency;
mod schedule;
mod signal;
mod syscall;

pub use errno::Errno;
pub use filter::{Cidr, FdKind, FilterSpec, parse_comm};
pub use injectable::{Injectable, Running, sum_counters};
pub use latency::{LatencyFault, LatencyMode};
pub use schedule::When;
pub use signal::{SignalFault, SignalNumber, parse_any_syscalls};
pub use syscall::{Mechanism, Syscall, knows_address, knows_file, mechanism};

/// Fail some syscalls of a target with an errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallFault {
    /// The syscalls to fail.
    pub syscalls: Vec<Syscall>,
    /// The errno they fail with.
    pub errno: Errno,
    /// Which calls match, beyond the syscall.
    pub filter: FilterSpec,
    /// Which matching calls fail.
    pub schedule: Schedule,
    /// Count only.
    pub dry_run: bool,
    /// How long the kernel may act on the fault at most, counted from when its rules are
    /// planned; past it the programs stop injecting even if chaos cannot remove them.
    pub deadline: Option<Duration>,
    /// How to reach the security hooks, when forced (`None`: BPF LSM where it is active,
    /// else fmod_ret; see [`crate::loader::choose_mechanism`]).
    pub mechanism: Option<crate::loader::HookMechanism>,
}

impl SyscallFault {
    /// The kernel rules for this fault against `target`, one per syscall and hook, each with
    /// the cgroup its programs attach to. Refuses filters that a syscall's hook cannot see.
    pub fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        for syscall in &self.syscalls {
            for hook in syscall.hooks() {
                if self.filter.needs_file() && !knows_file(*hook) {
                    return Err(Error::Invalid {
                        field: "syscall",
                        value: syscall.name().to_owned(),
                        expected: format!(
                            "a syscall about a file for {} (file syscalls such as openat, \
                             read, write, unlink, stat, mmap, ioctl)",
                            self.filter.file_options().join(" and ")
                        ),
                    });
                }
                if self.filter.needs_address() && !knows_address(*hook) {
                    return Err(Error::Invalid {
                        field: "syscall",
                        value: syscall.name().to_owned(),
                        expected: format!(
                            "connect or bind for {}: the other socket syscalls do not see \
                             an address",
                            self.filter.address_options().join(" and ")
                        ),
                    });
                }
            }
        }
        let filter = self.filter.to_filter()?;
        let deadline_ns = match self.deadline {
            Some(d) => boot_time_ns()?.saturating_add(d.as_nanos().try_into().unwrap_or(u64::MAX)),
            None => 0,
        };
        let mut rules = Vec::new();
        for syscall in &self.syscalls {
            for hook in syscall.hooks() {
                rules.push(PlannedRule {
                    rule: Rule {
                        flags: RULE_ACTIVE | if self.dry_run { RULE_DRY_RUN } else { 0 },
                        hook: *hook as u32,
                        cgroup_id: target.id,
                        cgroup_level: target.level,
                        action: Action::Errno as u32,
                        value: self.errno.number(),
                        syscall_nr: syscall.rule_nr(*hook),
                        deadline_ns,
                        schedule: self.schedule,
                        filter,
                        ..Rule::default()
                    },
                    cgroup_dir: target.path.clone(),
                    label: syscall.name().to_owned(),
                });
            }
        }
        Ok(rules)
    }
}

/// Now on `CLOCK_BOOTTIME`, the clock the kernel programs read deadlines from.
pub fn boot_time_ns() -> Result<u64, Error> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_err(|errno| {
        Error::Io {
            path: "CLOCK_BOOTTIME".into(),
            source: errno.into(),
        }
    })?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::CgroupTarget;

    fn target() -> CgroupTarget {
        CgroupTarget {
            path: "/sys/fs/cgroup/x".into(),
            id: 42,
            level: 1,
        }
    }

    fn fault(syscalls: &str) -> SyscallFault {
        SyscallFault {
            syscalls: Syscall::parse_list(syscalls).unwrap(),
            errno: "EIO".parse().unwrap(),
            filter: FilterSpec::default(),
            schedule: Schedule::ALWAYS,
            dry_run: false,
            deadline: None,
            mechanism: None,
        }
    }

    #[test]
    fn one_rule_per_syscall_and_hook() {
        let rules = fault("read,unlinkat").rules(&target()).unwrap();
        let labels: Vec<&str> = rules.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["read", "unlinkat", "unlinkat"]);
        assert_eq!(rules[0].rule.syscall_nr, 0);
        assert_eq!(rules[0].rule.value, 5);
        assert_eq!(rules[0].rule.deadline_ns, 0);
    }

    #[test]
    fn filters_must_fit_the_hooks() {
        let mut f = fault("connect");
        f.filter.path = Some("/tmp".into());
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("connect") && err.contains("--path"), "{err}");
        let mut f = fault("openat");
        f.filter.port = Some(80);
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("openat") && err.contains("--port"), "{err}");
    }

    #[test]
    fn deadline_is_on_the_boot_clock() {
        let mut f = fault("openat");
        f.deadline = Some(Duration::from_secs(60));
        let before = boot_time_ns().unwrap();
        let rule = f.rules(&target()).unwrap()[0].rule;
        assert!(rule.deadline_ns >= before + 60_000_000_000);
        assert!(rule.deadline_ns < boot_time_ns().unwrap() + 61_000_000_000);
    }
}
