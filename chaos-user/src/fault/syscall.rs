//! Which syscalls chaos can fail, through which kernel hooks, and strace-style classes.
use std::{fmt, str::FromStr};

use chaos_common::Hook;
use syscalls::Sysno;

use crate::Error;

/// How a hook is reached from user space, which decides what the kernel must support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// A BPF LSM hook: needs CONFIG_BPF_LSM, `bpf` among the active LSMs and BPF trampolines.
    /// Shared by several syscalls, so rules name the syscall.
    Lsm,
    /// A cgroup socket hook: works wherever cgroup v2 BPF does; reached from one syscall.
    Cgroup,
}

/// The mechanism behind `hook`.
pub fn mechanism(hook: Hook) -> Mechanism {
    match hook {
        Hook::Connect | Hook::Bind | Hook::SockCreate | Hook::Getsockopt | Hook::Setsockopt => {
            Mechanism::Cgroup
        }
        _ => Mechanism::Lsm,
    }
}

/// Whether the programs at `hook` know the file the call is about (path and kind filters).
pub fn knows_file(hook: Hook) -> bool {
    matches!(
        hook,
        Hook::FileOpen
            | Hook::FilePermission
            | Hook::MmapFile
            | Hook::FileIoctl
            | Hook::FileFcntl
            | Hook::FileLock
            | Hook::InodeUnlink
            | Hook::InodeRmdir
            | Hook::InodeMkdir
            | Hook::InodeRename
            | Hook::InodeLink
            | Hook::InodeSymlink
            | Hook::InodeSetattr
            | Hook::InodeGetattr
            | Hook::BprmCheck
            | Hook::SbMount
    )
}

/// Whether the programs at `hook` know the socket address (port and CIDR filters).
pub fn knows_address(hook: Hook) -> bool {
    matches!(hook, Hook::Connect | Hook::Bind)
}

/// The hooks that fail `sysno`; empty when none does.
fn hooks_of(sysno: Sysno) -> &'static [Hook] {
    use Sysno as S;
    match sysno {
        S::open | S::openat | S::openat2 | S::creat => &[Hook::FileOpen],
        S::read
        | S::readv
        | S::pread64
        | S::preadv
        | S::preadv2
        | S::write
        | S::writev
        | S::pwrite64
        | S::pwritev
        | S::pwritev2
        | S::sendfile
        | S::copy_file_range
        | S::splice
        | S::getdents
        | S::getdents64 => &[Hook::FilePermission],
        S::mmap => &[Hook::MmapFile],
        S::mprotect | S::pkey_mprotect => &[Hook::FileMprotect],
        S::ioctl => &[Hook::FileIoctl],
        S::fcntl => &[Hook::FileFcntl],
        S::flock => &[Hook::FileLock],
        S::unlink => &[Hook::InodeUnlink],
        // unlinkat removes files and, with AT_REMOVEDIR, directories.
        S::unlinkat => &[Hook::InodeUnlink, Hook::InodeRmdir],
        S::rmdir => &[Hook::InodeRmdir],
        S::mkdir | S::mkdirat => &[Hook::InodeMkdir],
        S::rename | S::renameat | S::renameat2 => &[Hook::InodeRename],
        S::link | S::linkat => &[Hook::InodeLink],
        S::symlink | S::symlinkat => &[Hook::InodeSymlink],
        S::truncate
        | S::ftruncate
        | S::chmod
        | S::fchmod
        | S::fchmodat
        | S::chown
        | S::fchown
        | S::lchown
        | S::fchownat
        | S::utimensat => &[Hook::InodeSetattr],
        S::stat | S::lstat | S::fstat | S::newfstatat | S::statx => &[Hook::InodeGetattr],
        S::execve | S::execveat => &[Hook::BprmCheck],
        S::clone | S::clone3 | S::fork | S::vfork => &[Hook::TaskAlloc],
        S::socket => &[Hook::SockCreate],
        S::connect => &[Hook::Connect],
        S::bind => &[Hook::Bind],
        S::getsockopt => &[Hook::Getsockopt],
        S::setsockopt => &[Hook::Setsockopt],
        S::listen => &[Hook::SocketListen],
        S::accept | S::accept4 => &[Hook::SocketAccept],
        S::sendto | S::sendmsg | S::sendmmsg => &[Hook::SocketSendmsg],
        S::recvfrom | S::recvmsg | S::recvmmsg => &[Hook::SocketRecvmsg],
        S::shutdown => &[Hook::SocketShutdown],
        S::kill | S::tkill | S::tgkill => &[Hook::TaskKill],
        S::mount => &[Hook::SbMount],
        _ => &[],
    }
}

/// Syscalls with no hook that could fail them, and what to do instead.
const UNHOOKABLE: &[(&str, &str)] = &[
    (
        "fsync",
        "no LSM or cgroup hook runs in fsync; fail the writes before it (write, pwrite64) \
         instead, or kill the process at it (chaos inject signal)",
    ),
    (
        "fdatasync",
        "no LSM or cgroup hook runs in fdatasync; fail the writes before it (write, pwrite64) \
         instead, or kill the process at it (chaos inject signal)",
    ),
    (
        "sync_file_range",
        "no LSM or cgroup hook runs in sync_file_range; fail the writes before it instead",
    ),
    (
        "close",
        "no LSM or cgroup hook can fail close; fail the calls that use the descriptor instead",
    ),
    (
        "dup",
        "no LSM or cgroup hook runs in dup; fail fcntl(F_DUPFD) or the calls that use the copy",
    ),
    (
        "nanosleep",
        "no hook runs in nanosleep; add latency to the calls around it (chaos inject latency)",
    ),
];

/// strace's syscall classes, limited to the syscalls chaos can fail.
pub(crate) const CLASSES: &[(&str, &str, &[&str])] = &[
    (
        "%file",
        "syscalls that take a file name",
        &[
            "open",
            "openat",
            "openat2",
            "creat",
            "stat",
            "lstat",
            "newfstatat",
            "statx",
            "truncate",
            "chmod",
            "fchmodat",
            "chown",
            "lchown",
            "fchownat",
            "utimensat",
            "unlink",
            "unlinkat",
            "rmdir",
            "mkdir",
            "mkdirat",
            "rename",
            "renameat",
            "renameat2",
            "link",
            "linkat",
            "symlink",
            "symlinkat",
            "execve",
            "execveat",
            "mount",
        ],
    ),
    (
        "%net",
        "socket syscalls",
        &[
            "socket",
            "connect",
            "bind",
            "listen",
            "accept",
            "accept4",
            "sendto",
            "sendmsg",
            "sendmmsg",
            "recvfrom",
            "recvmsg",
            "recvmmsg",
            "shutdown",
            "getsockopt",
            "setsockopt",
        ],
    ),
    (
        "%read",
        "reads",
        &["read", "readv", "pread64", "preadv", "preadv2"],
    ),
    (
        "%write",
        "writes",
        &["write", "writev", "pwrite64", "pwritev", "pwritev2"],
    ),
];

/// A syscall that a fault can fail, resolved to its number and hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    sysno: Sysno,
}

impl Syscall {
    /// The syscall's name as in `man 2`.
    pub fn name(self) -> &'static str {
        self.sysno.name()
    }

    /// The hooks that fail it (more than one when it does several things, like unlinkat).
    pub fn hooks(self) -> &'static [Hook] {
        hooks_of(self.sysno)
    }

    /// The number the kernel programs match on at `hook`, or [`chaos_common::ANY_SYSCALL`]
    /// when the hook is reached from this syscall only.
    pub fn rule_nr(self, hook: Hook) -> i64 {
        match mechanism(hook) {
            Mechanism::Lsm => self.sysno.id() as i64,
            Mechanism::Cgroup => chaos_common::ANY_SYSCALL,
        }
    }

    /// Parses a comma-separated list of syscall names and `%class`es, in order, without
    /// repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Syscall>, Error> {
        let mut out: Vec<Syscall> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let items = match CLASSES.iter().find(|(name, ..)| *name == item) {
                Some((_, _, names)) => names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<Result<Vec<Syscall>, Error>>()?,
                None => vec![item.parse()?],
            };
            for syscall in items {
                if !out.contains(&syscall) {
                    out.push(syscall);
                }
            }
        }
        if out.is_empty() {
            return Err(invalid(s, "one or more syscall names or classes".into()));
        }
        Ok(out)
    }

    /// The syscalls whose every hook works through `mechanism`, by name.
    pub fn supported_by(mechanism: Mechanism) -> Vec<&'static str> {
        Sysno::iter()
            .filter(|s| {
                let hooks = hooks_of(*s);
                !hooks.is_empty() && hooks.iter().all(|h| self::mechanism(*h) == mechanism)
            })
            .map(|s| s.name())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Every syscall chaos can fail, by name, for messages and `chaos doctor`.
    pub fn supported() -> Vec<&'static str> {
        let mut names: Vec<&str> = Sysno::iter()
            .filter(|s| !hooks_of(*s).is_empty())
            .map(|s| s.name())
            .collect();
        names.sort_unstable();
        names
    }
}

fn invalid(value: &str, expected: String) -> Error {
    Error::Invalid {
        field: "syscall",
        value: value.to_owned(),
        expected,
    }
}

fn classes_help() -> String {
    CLASSES
        .iter()
        .map(|(name, what, _)| format!("{name} ({what})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Syscall {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let supported = || {
            format!(
                "supported: {}; classes: {}",
                Syscall::supported().join(", "),
                classes_help()
            )
        };
        if let Some((_, why)) = UNHOOKABLE.iter().find(|(name, _)| *name == s) {
            return Err(invalid(s, format!("{why}; {}", supported())));
        }
        let sysno = Sysno::from_str(s).map_err(|_| {
            invalid(
                s,
                format!("a Linux x86_64 syscall name or class; {}", supported()),
            )
        })?;
        if hooks_of(sysno).is_empty() {
            return Err(invalid(
                s,
                format!(
                    "a syscall that a kernel hook can fail (no LSM or cgroup hook covers {s}); {}",
                    supported()
                ),
            ));
        }
        Ok(Syscall { sysno })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscalls_resolve_to_hooks() {
        let openat: Syscall = "openat".parse().unwrap();
        assert_eq!(openat.hooks(), &[Hook::FileOpen]);
        assert_eq!(openat.rule_nr(Hook::FileOpen), 257);
        let read: Syscall = "read".parse().unwrap();
        let pread: Syscall = "pread64".parse().unwrap();
        assert_eq!(read.hooks(), pread.hooks());
        assert_ne!(
            read.rule_nr(Hook::FilePermission),
            pread.rule_nr(Hook::FilePermission)
        );
        let connect: Syscall = "connect".parse().unwrap();
        assert_eq!(connect.hooks(), &[Hook::Connect]);
        assert_eq!(connect.rule_nr(Hook::Connect), chaos_common::ANY_SYSCALL);
        let unlinkat: Syscall = "unlinkat".parse().unwrap();
        assert_eq!(unlinkat.hooks().len(), 2);
    }

    #[test]
    fn every_listed_syscall_has_a_hook() {
        for (class, _, names) in CLASSES {
            for name in *names {
                assert!(name.parse::<Syscall>().is_ok(), "{class}: {name}");
            }
        }
        for name in [
            "read",
            "readv",
            "pread64",
            "preadv",
            "write",
            "writev",
            "pwrite64",
            "pwritev",
            "sendfile",
            "copy_file_range",
            "mmap",
            "mprotect",
            "ioctl",
            "fcntl",
            "flock",
            "unlink",
            "unlinkat",
            "rmdir",
            "mkdir",
            "mkdirat",
            "rename",
            "renameat",
            "renameat2",
            "link",
            "symlink",
            "truncate",
            "ftruncate",
            "chmod",
            "fchmod",
            "chown",
            "stat",
            "lstat",
            "fstat",
            "newfstatat",
            "statx",
            "getdents64",
            "execve",
            "clone",
            "clone3",
            "fork",
            "vfork",
            "socket",
            "connect",
            "bind",
            "listen",
            "accept",
            "accept4",
            "sendto",
            "sendmsg",
            "sendmmsg",
            "recvfrom",
            "recvmsg",
            "recvmmsg",
            "shutdown",
            "getsockopt",
            "setsockopt",
            "kill",
            "mount",
        ] {
            assert!(name.parse::<Syscall>().is_ok(), "{name}");
        }
    }

    #[test]
    fn classes_expand_in_order_without_repeats() {
        let list = Syscall::parse_list("%read,read,write").unwrap();
        let names: Vec<&str> = list.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["read", "readv", "pread64", "preadv", "preadv2", "write"]
        );
        assert!(Syscall::parse_list("%net").unwrap().len() >= 15);
        assert!(Syscall::parse_list(",").is_err());
    }

    #[test]
    fn unhookable_syscalls_say_why() {
        let err = "fsync".parse::<Syscall>().unwrap_err().to_string();
        assert!(err.contains("no LSM or cgroup hook"), "{err}");
        let err = "nosuchcall".parse::<Syscall>().unwrap_err().to_string();
        assert!(
            err.contains("nosuchcall") && err.contains("openat") && err.contains("%file"),
            "{err}"
        );
        let err = "getpid".parse::<Syscall>().unwrap_err().to_string();
        assert!(err.contains("no LSM or cgroup hook covers getpid"), "{err}");
    }
}
