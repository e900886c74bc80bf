//! Signals at a chosen syscall: the `sys_enter` tracepoint signals the caller at the calls
//! the schedule picks, before the call runs.
use std::{fmt, str::FromStr, time::Duration};

use chaos_common::{Action, Hook, RULE_ACTIVE, RULE_DRY_RUN, Rule, Schedule};
use syscalls::Sysno;

use super::{FilterSpec, boot_time_ns, syscall::CLASSES};
use crate::{Error, loader::PlannedRule, target::CgroupTarget};

/// A signal, by number; shown by name where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalNumber(u32);

/// The highest signal number on Linux x86_64 (`SIGRTMAX`).
const SIGRTMAX: u32 = 64;

impl SignalNumber {
    /// The number.
    pub fn number(self) -> u32 {
        self.0
    }
}

impl FromStr for SignalNumber {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Invalid {
            field: "signal",
            value: s.to_owned(),
            expected: format!(
                "a signal name (SIGKILL, KILL, SIGSEGV, SIGABRT, SIGTERM, SIGUSR1, ...) or a \
                 number in 1..={SIGRTMAX}"
            ),
        };
        if let Ok(n) = s.parse::<u32>() {
            return if (1..=SIGRTMAX).contains(&n) {
                Ok(SignalNumber(n))
            } else {
                Err(invalid())
            };
        }
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        nix::sys::signal::Signal::from_str(&name)
            .map(|sig| SignalNumber(sig as u32))
            .map_err(|_| invalid())
    }
}

impl fmt::Display for SignalNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0 as i32) {
            Ok(sig) => f.write_str(sig.as_str()),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

/// Parses a comma-separated list of syscall names (any x86_64 syscall) and strace classes
/// (%file, %net, ...), in order, without repeats: the `sys_enter` tracepoint sees every
/// syscall, so these faults are not limited to the ones a hook can fail.
pub fn parse_any_syscalls(s: &str) -> Result<Vec<Sysno>, Error> {
    let mut out: Vec<Sysno> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let names: Vec<&str> = match CLASSES.iter().find(|(name, ..)| *name == item) {
            Some((_, _, names)) => names.to_vec(),
            None => vec![item],
        };
        for name in names {
            let sysno = Sysno::from_str(name).map_err(|_| Error::Invalid {
                field: "syscall",
                value: name.to_owned(),
                expected: "a Linux x86_64 syscall name as in `man 2` (fsync, close, read, \
                           getpid, ...) or a class: %file, %net, %read, %write"
                    .into(),
            })?;
            if !out.contains(&sysno) {
                out.push(sysno);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid {
            field: "syscall",
            value: s.to_owned(),
            expected: "one or more syscall names or classes".into(),
        });
    }
    Ok(out)
}

/// Refuses filters that need facts `sys_enter` does not have: it sees the syscall number and
/// the thread, not the file or address the call is about.
pub(crate) fn check_entry_filter(filter: &FilterSpec, kind: &str) -> Result<(), Error> {
    let mut unsupported = filter.file_options();
    unsupported.extend(filter.address_options());
    match unsupported.first() {
        None => Ok(()),
        Some(option) => Err(Error::Invalid {
            field: "filter",
            value: (*option).to_owned(),
            expected: format!(
                "only --comm for {kind} faults: they act at syscall entry, before the kernel \
                 has looked up the file or address the call is about"
            ),
        }),
    }
}

/// `deadline` from now on the boot clock, or 0 for none.
pub(crate) fn deadline_ns(deadline: Option<Duration>) -> Result<u64, Error> {
    Ok(match deadline {
        Some(d) => boot_time_ns()?.saturating_add(d.as_nanos().try_into().unwrap_or(u64::MAX)),
        None => 0,
    })
}

/// One `sys_enter` rule per syscall, with everything but the action's fields filled in.
pub(crate) fn entry_rules(
    syscalls: &[Sysno],
    target: &CgroupTarget,
    filter: &FilterSpec,
    schedule: Schedule,
    dry_run: bool,
    deadline: Option<Duration>,
    kind: &str,
) -> Result<Vec<PlannedRule>, Error> {
    check_entry_filter(filter, kind)?;
    let filter = filter.to_filter()?;
    let deadline_ns = deadline_ns(deadline)?;
    Ok(syscalls
        .iter()
        .map(|sysno| PlannedRule {
            rule: Rule {
                flags: RULE_ACTIVE | if dry_run { RULE_DRY_RUN } else { 0 },
                hook: Hook::SysEnter as u32,
                cgroup_id: target.id,
                cgroup_level: target.level,
                syscall_nr: i64::from(sysno.id()),
                deadline_ns,
                schedule,
                filter,
                ..Rule::default()
            },
            cgroup_dir: target.path.clone(),
            label: sysno.name().to_owned(),
        })
        .collect())
}

/// Send a signal to a target's processes (or only the calling thread) at chosen calls of
/// some syscalls, like strace's `-e inject=SYSCALL:signal=SIG`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalFault {
    /// The syscalls whose entry is watched.
    pub syscalls: Vec<Sysno>,
    /// The signal sent.
    pub signal: SignalNumber,
    /// Only to the calling thread, not the process.
    pub thread: bool,
    /// Which calls match, beyond the syscall (only `comm` is possible here).
    pub filter: FilterSpec,
    /// Which matching calls are signalled.
    pub schedule: Schedule,
    /// Count only.
    pub dry_run: bool,
    /// How long the kernel may act on the fault at most.
    pub deadline: Option<Duration>,
}

impl SignalFault {
    /// The kernel rules for this fault against `target`, one per syscall.
    pub fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        let mut rules = entry_rules(
            &self.syscalls,
            target,
            &self.filter,
            self.schedule,
            self.dry_run,
            self.deadline,
            "signal",
        )?;
        for planned in &mut rules {
            planned.rule.action = if self.thread {
                Action::SignalThread
            } else {
                Action::Signal
            } as u32;
            planned.rule.value = self.signal.number();
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CgroupTarget {
        CgroupTarget {
            path: "/sys/fs/cgroup/x".into(),
            id: 42,
            level: 1,
        }
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        for s in ["SIGKILL", "KILL", "kill", "9"] {
            assert_eq!(s.parse::<SignalNumber>().unwrap().number(), 9, "{s}");
        }
        assert_eq!(
            "SIGKILL".parse::<SignalNumber>().unwrap().to_string(),
            "SIGKILL"
        );
        assert_eq!("40".parse::<SignalNumber>().unwrap().to_string(), "40");
        for bad in ["0", "65", "SIGNOPE", ""] {
            let err = bad.parse::<SignalNumber>().unwrap_err().to_string();
            assert!(err.contains("signal") && err.contains("1..=64"), "{err}");
        }
    }

    #[test]
    fn any_syscall_parses() {
        let list = parse_any_syscalls("fsync,close,fsync,getpid").unwrap();
        assert_eq!(list, [Sysno::fsync, Sysno::close, Sysno::getpid]);
        assert!(parse_any_syscalls("%read").unwrap().contains(&Sysno::read));
        let err = parse_any_syscalls("fsnyc").unwrap_err().to_string();
        assert!(err.contains("fsnyc"), "{err}");
    }

    #[test]
    fn rules_carry_signal_and_syscall() {
        let fault = SignalFault {
            syscalls: vec![Sysno::fsync],
            signal: "SIGUSR1".parse().unwrap(),
            thread: true,
            filter: FilterSpec::default(),
            schedule: Schedule::ALWAYS,
            dry_run: false,
            deadline: None,
        };
        let rules = fault.rules(&target()).unwrap();
        assert_eq!(rules.len(), 1);
        let rule = rules[0].rule;
        assert_eq!(rule.hook, Hook::SysEnter as u32);
        assert_eq!(rule.action, Action::SignalThread as u32);
        assert_eq!(rule.value, 10);
        assert_eq!(rule.syscall_nr, 74);
        assert_eq!(rules[0].label, "fsync");
    }

    #[test]
    fn file_and_address_filters_are_refused() {
        let mut fault = SignalFault {
            syscalls: vec![Sysno::fsync],
            signal: "SIGKILL".parse().unwrap(),
            thread: false,
            filter: FilterSpec::default(),
            schedule: Schedule::ALWAYS,
            dry_run: false,
            deadline: None,
        };
        fault.filter.path = Some("/tmp".into());
        let err = fault.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("--path") && err.contains("--comm"), "{err}");
        fault.filter.path = None;
        fault.filter.port = Some(80);
        let err = fault.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("--port"), "{err}");
    }
}
