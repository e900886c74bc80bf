//! Fault descriptions as users write them, checked and turned into kernel rules.
use std::{fmt, str::FromStr};

use chaos_common::{Hook, RULE_ACTIVE, RULE_DRY_RUN, Rule, Schedule};
use nix::errno::Errno as NixErrno;
use syscalls::Sysno;

use crate::{Error, loader::PlannedRule, target::CgroupTarget};

/// A positive errno value, parsed from a name (`EIO`) or a number (`5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(u32);

impl Errno {
    /// The largest errno the kernel passes back from a hook.
    pub const MAX: u32 = 4095;

    /// An errno from a raw OS error number, as found in `std::io::Error`.
    pub fn from_raw(n: i32) -> Errno {
        Errno(n.unsigned_abs())
    }

    /// The errno's number.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The errno's symbolic name (`EIO`), if libc knows one.
    pub fn name(self) -> Option<String> {
        let e = NixErrno::from_raw(self.0 as i32);
        (e != NixErrno::UnknownErrno).then(|| format!("{e:?}"))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(&name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for Errno {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |expected: &str| Error::Invalid {
            field: "errno",
            value: s.to_owned(),
            expected: expected.to_owned(),
        };
        if let Ok(n) = s.parse::<i64>() {
            return if (1..=i64::from(Errno::MAX)).contains(&n) {
                Ok(Errno(n as u32))
            } else {
                Err(invalid(
                    "a number in 1..=4095 or a name such as EIO, ENOSPC, ECONNREFUSED",
                ))
            };
        }
        let want = s.to_ascii_uppercase();
        (1..=200)
            .map(Errno)
            .find(|e| e.name().as_deref() == Some(want.as_str()))
            .ok_or_else(|| invalid("an errno name such as EIO, ENOSPC, EACCES, ECONNREFUSED, ETIMEDOUT, EAGAIN, or a number in 1..=4095"))
    }
}

/// How a syscall can be failed on this project's hooks.
struct SyscallHook {
    hook: Hook,
    /// Whether the hook is shared with other syscalls, so that the program must check the
    /// running syscall's number.
    shared: bool,
}

/// Syscalls that have no hook at all and what to do instead.
const UNHOOKABLE: &[(&str, &str)] = &[
    (
        "fsync",
        "no LSM or cgroup hook runs in fsync; fail the writes before it (write, pwrite64) instead",
    ),
    (
        "fdatasync",
        "no LSM or cgroup hook runs in fdatasync; fail the writes before it (write, pwrite64) instead",
    ),
    (
        "close",
        "no LSM or cgroup hook can fail close; fail the calls that use the descriptor instead",
    ),
];

/// Syscalls this build can fail, for messages.
pub const SUPPORTED_SYSCALLS: &[&str] = &["open", "openat", "openat2", "creat", "connect"];

fn hook_for(sysno: Sysno) -> Option<SyscallHook> {
    match sysno {
        Sysno::open | Sysno::openat | Sysno::openat2 | Sysno::creat => Some(SyscallHook {
            hook: Hook::FileOpen,
            shared: true,
        }),
        Sysno::connect => Some(SyscallHook {
            hook: Hook::Connect,
            shared: false,
        }),
        _ => None,
    }
}

/// A syscall that a fault can fail, resolved to its number and hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    sysno: Sysno,
}

impl Syscall {
    /// The syscall's name as in `man 2`.
    pub fn name(self) -> &'static str {
        self.sysno.name()
    }

    /// The hook that fails it.
    pub fn hook(self) -> Hook {
        hook_for(self.sysno).expect("checked when parsed").hook
    }

    /// The number the kernel program matches on, or [`chaos_common::ANY_SYSCALL`] when the
    /// hook is reached from this syscall only.
    pub fn rule_nr(self) -> i64 {
        if hook_for(self.sysno).expect("checked when parsed").shared {
            self.sysno.id() as i64
        } else {
            chaos_common::ANY_SYSCALL
        }
    }
}

impl FromStr for Syscall {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let supported = || SUPPORTED_SYSCALLS.join(", ");
        if let Some((_, why)) = UNHOOKABLE.iter().find(|(name, _)| *name == s) {
            return Err(Error::Invalid {
                field: "syscall",
                value: s.to_owned(),
                expected: format!("{why}; supported: {}", supported()),
            });
        }
        let sysno = Sysno::from_str(s).map_err(|_| Error::Invalid {
            field: "syscall",
            value: s.to_owned(),
            expected: format!("a Linux x86_64 syscall name; supported: {}", supported()),
        })?;
        match hook_for(sysno) {
            Some(_) => Ok(Syscall { sysno }),
            None => Err(Error::Invalid {
                field: "syscall",
                value: s.to_owned(),
                expected: format!("a syscall with a hook in this build: {}", supported()),
            }),
        }
    }
}

/// Fail some syscalls of a target with an errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallFault {
    /// The syscalls to fail; each becomes one rule.
    pub syscalls: Vec<Syscall>,
    /// The errno they fail with.
    pub errno: Errno,
    /// Which matching calls fail.
    pub schedule: Schedule,
    /// Count only.
    pub dry_run: bool,
}

impl SyscallFault {
    /// The kernel rules for this fault against `target`, one per syscall, each with the
    /// cgroup its programs attach to.
    pub fn rules(&self, target: &CgroupTarget) -> Vec<PlannedRule> {
        self.syscalls
            .iter()
            .map(|syscall| PlannedRule {
                rule: Rule {
                    flags: RULE_ACTIVE | if self.dry_run { RULE_DRY_RUN } else { 0 },
                    hook: syscall.hook() as u32,
                    cgroup_id: target.id,
                    cgroup_level: target.level,
                    errno: self.errno.number(),
                    syscall_nr: syscall.rule_nr(),
                    schedule: self.schedule,
                },
                cgroup_dir: target.path.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_by_name_and_number() {
        assert_eq!("EIO".parse::<Errno>().unwrap().number(), 5);
        assert_eq!("econnrefused".parse::<Errno>().unwrap().number(), 111);
        assert_eq!("28".parse::<Errno>().unwrap().to_string(), "ENOSPC");
        assert_eq!("4095".parse::<Errno>().unwrap().to_string(), "4095");
    }

    #[test]
    fn errno_out_of_range_names_the_range() {
        for bad in ["0", "4096", "-5", "EWHATEVER"] {
            let err = bad.parse::<Errno>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("errno"), "{err}");
        }
        assert!(
            "0".parse::<Errno>()
                .unwrap_err()
                .to_string()
                .contains("1..=4095")
        );
    }

    #[test]
    fn syscalls_resolve_to_hooks() {
        let openat: Syscall = "openat".parse().unwrap();
        assert_eq!(openat.hook(), Hook::FileOpen);
        assert_eq!(openat.rule_nr(), 257);
        let connect: Syscall = "connect".parse().unwrap();
        assert_eq!(connect.hook(), Hook::Connect);
        assert_eq!(connect.rule_nr(), chaos_common::ANY_SYSCALL);
    }

    #[test]
    fn unhookable_syscalls_say_why() {
        let err = "fsync".parse::<Syscall>().unwrap_err().to_string();
        assert!(err.contains("no LSM or cgroup hook"), "{err}");
        let err = "nosuchcall".parse::<Syscall>().unwrap_err().to_string();
        assert!(
            err.contains("nosuchcall") && err.contains("openat"),
            "{err}"
        );
    }
}
