//! Latency "block" mode: the calling thread sleeps in a FUSE request that chaos answers after
//! the delay, so only that thread waits and it burns no CPU (docs/latency-block-mode.md).
//!
//! Three parts, all owned by a [`BlockFault`]:
//! - a FUSE mount served by chaos ([`DelayFs`]) with one executable file; its GETXATTR answer
//!   for [`XATTR_NAME`] is held for the delay;
//! - a helper process started from that file, so that its executable is a file on chaos's
//!   mount the kernel programs can reach through trusted pointers
//!   (`bpf_task_from_pid` -> `bpf_get_task_exe_file`);
//! - sleepable BPF LSM programs (chaos-ebpf `block.rs`) whose kfunc calls are patched in at
//!   load time by [`patch_kfunc_calls`], since aya 0.14 cannot link kfuncs.
use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use aya::{Btf, Ebpf, programs::Lsm};
use chaos_common::block::{Kfunc, SYSCALL_WORDS, XATTR_NAME, config, counter};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyEntry,
    ReplyOpen, ReplyXattr, Request, SessionACL,
};
use object::{Object as _, ObjectSection as _, SectionFlags};
use syscalls::Sysno;

use crate::{
    Error, btf,
    btf::VMLINUX_BTF,
    loader::{
        EBPF_OBJECT,
        object::{array_mut, program_error, program_mut, read_array, write_array},
    },
    target::CgroupTarget,
};

/// The fault's name in errors.
const FAULT: &str = "latency --mode block";

/// The block programs and the LSM hooks they attach to; all are on the kernel's list of
/// sleepable LSM hooks (kernel/bpf/bpf_lsm.c, `sleepable_lsm_hooks`).
pub const PROGRAMS: [(&str, &str); 4] = [
    ("chaos_block_file_open", "file_open"),
    ("chaos_block_socket_connect", "socket_connect"),
    ("chaos_block_socket_sendmsg", "socket_sendmsg"),
    ("chaos_block_socket_recvmsg", "socket_recvmsg"),
];

/// The syscalls block mode can delay: those that reach one of the [`PROGRAMS`]' hooks.
/// (read and write on a socket reach socket_recvmsg/socket_sendmsg too, but on files they do
/// not, so they are left out rather than half covered.)
pub const SYSCALLS: [Sysno; 11] = [
    Sysno::open,
    Sysno::openat,
    Sysno::openat2,
    Sysno::creat,
    Sysno::connect,
    Sysno::sendto,
    Sysno::sendmsg,
    Sysno::sendmmsg,
    Sysno::recvfrom,
    Sysno::recvmsg,
    Sysno::recvmmsg,
];

/// Refuses a syscall block mode cannot delay, naming the ones it can.
pub fn check_syscalls(syscalls: &[Sysno]) -> Result<(), Error> {
    match syscalls.iter().find(|s| !SYSCALLS.contains(s)) {
        None => Ok(()),
        Some(sysno) => Err(Error::Invalid {
            field: "syscall",
            value: sysno.name().to_owned(),
            expected: format!(
                "in block mode one of {} (only sleepable LSM hooks can block; use spin or \
                 pause for other syscalls)",
                SYSCALLS.map(|s| s.name()).join(", ")
            ),
        }),
    }
}

const CONFIG_MAP: &str = "CHAOS_BLOCK_CONFIG";
const SYSCALLS_MAP: &str = "CHAOS_BLOCK_SYSCALLS";
/// The kernel struct offsets map the programs share with the other LSM programs.
const KERNEL_CONFIG_MAP: &str = "CHAOS_CONFIG";
const COUNTERS_MAP: &str = "CHAOS_BLOCK_COUNTERS";

/// BPF_JMP | BPF_CALL.
const OPCODE_CALL: u8 = 0x85;
/// `src_reg` of a call to a kernel function named by its vmlinux BTF id.
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// The BTF id of each kfunc block mode needs, in [`Kfunc::ALL`] order; an error names the
/// ones the kernel lacks (6.1, for one, has none of them).
pub fn kfunc_ids(btf_path: &Path) -> Result<Vec<(Kfunc, u32)>, Error> {
    let btf = crate::btf::open(btf_path)?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for kfunc in Kfunc::ALL {
        let id = btf
            .resolve_ids_by_name(kfunc.name())
            .unwrap_or_default()
            .into_iter()
            .find(|id| matches!(btf.resolve_type_by_id(*id), Ok(btf_rs::Type::Func(_))));
        match id {
            Some(id) => found.push((kfunc, id)),
            None => missing.push(kfunc.name()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::Unsupported {
            fault: FAULT.to_owned(),
            why: format!(
                "the kernel lacks the kfuncs {} (block mode needs Linux 6.12 or later)",
                missing.join(", ")
            ),
        });
    }
    Ok(found)
}

/// A copy of the ELF `object` where every call to a [`Kfunc`] placeholder helper id in an
/// executable section calls the kfunc itself (`src_reg` = BPF_PSEUDO_KFUNC_CALL, `imm` = its
/// BTF id). Returns the copy and how many calls were rewritten.
///
/// aya-obj 0.3 passes such calls through untouched: it relocates only BPF_PSEUDO_CALL calls
/// and rewrites only plain helper calls to the probe_read family.
pub fn patch_kfunc_calls(object: &[u8], ids: &[(Kfunc, u32)]) -> Result<(Vec<u8>, usize), Error> {
    let invalid = |why: String| Error::Invalid {
        field: "eBPF object",
        value: "embedded chaos-ebpf".to_owned(),
        expected: why,
    };
    let file = object::File::parse(object).map_err(|err| invalid(err.to_string()))?;
    let mut patched = object.to_vec();
    let mut count = 0;
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        if sh_flags & u64::from(object::elf::SHF_EXECINSTR) == 0 {
            continue;
        }
        let Some((offset, size)) = section.file_range() else {
            continue;
        };
        let start = usize::try_from(offset).map_err(|err| invalid(err.to_string()))?;
        let end = start + usize::try_from(size).map_err(|err| invalid(err.to_string()))?;
        for ins in patched[start..end].chunks_exact_mut(8) {
            // A helper call has opcode 0x85 and both registers 0; its imm is the helper id.
            if ins[0] != OPCODE_CALL || ins[1] != 0 {
                continue;
            }
            let imm = u32::from_le_bytes([ins[4], ins[5], ins[6], ins[7]]);
            let Some(kfunc) = Kfunc::from_placeholder(imm) else {
                continue;
            };
            let Some(&(_, id)) = ids.iter().find(|(k, _)| *k == kfunc) else {
                return Err(invalid(format!("no BTF id for {}", kfunc.name())));
            };
            ins[1] = BPF_PSEUDO_KFUNC_CALL << 4;
            ins[4..8].copy_from_slice(&id.to_le_bytes());
            count += 1;
        }
    }
    Ok((patched, count))
}

/// What the block programs counted (chaos-common `block::counter`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounters {
    /// Calls of the target the programs saw.
    pub hits: u64,
    /// Calls that waited for chaos's answer.
    pub delayed: u64,
    /// Calls that found no helper process.
    pub no_helper: u64,
    /// Calls whose getxattr failed.
    pub failed: u64,
    /// The last getxattr errno.
    pub last_errno: u64,
}

/// Inode of the mount's root directory.
const ROOT: INodeNo = INodeNo::ROOT;
/// Inode of the helper's executable.
const EXE: INodeNo = INodeNo(2);
/// Name of the executable on the mount; busybox picks its applet by this name.
const EXE_NAME: &str = "sleep";

/// The FUSE file system: one executable, whose [`XATTR_NAME`] answer waits for the delay.
struct DelayFs {
    exe: Arc<Vec<u8>>,
    delay: Duration,
    answered: Arc<AtomicU64>,
    stop: Arc<Stop>,
}

/// Set when the fault ends: every answer still waiting goes out at once, so that no target
/// thread stays blocked after chaos stops (the reply threads would otherwise keep the FUSE
/// connection open for up to the delay).
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits for `delay` or until [`Stop::stop`], whichever comes first.
    fn wait(&self, delay: Duration) {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .wake
            .wait_timeout_while(stopped, delay, |stopped| !*stopped);
    }

    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}

impl DelayFs {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o755, 0, 2)
        } else {
            (FileType::RegularFile, 0o755, self.exe.len() as u64, 1)
        };
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

/// How long the kernel may cache the mount's (unchanging) attributes and names.
const TTL: Duration = Duration::from_secs(3600);

impl Filesystem for DelayFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == ROOT && name == EXE_NAME {
            reply.entry(&TTL, &self.attr(EXE), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == ROOT || ino == EXE {
            reply.attr(&TTL, &self.attr(ino));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino == EXE {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let start = (offset as usize).min(self.exe.len());
        let end = start.saturating_add(size as usize).min(self.exe.len());
        reply.data(&self.exe[start..end]);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let wanted = &XATTR_NAME[..XATTR_NAME.len() - 1];
        if ino != EXE || name.as_encoded_bytes() != wanted {
            reply.error(Errno::NO_XATTR);
            return;
        }
        // The answer waits on its own thread: the session's threads stay free for the other
        // callers, whose delays then run side by side.
        let delay = self.delay;
        let answered = Arc::clone(&self.answered);
        let stop = Arc::clone(&self.stop);
        thread::spawn(move || {
            stop.wait(delay);
            answered.fetch_add(1, Ordering::Relaxed);
            if size == 0 {
                reply.size(1);
            } else {
                reply.data(b"1");
            }
        });
    }
}

/// A running block-mode latency fault on one cgroup: mount, helper and programs. Dropping it
/// detaches the programs, stops the helper and unmounts.
pub struct BlockFault {
    // `drop` stops the helper and unmounts first; the programs go last, with `ebpf`. Calls in
    // between find no helper and go on undelayed; a call still waiting ends when the FUSE
    // connection closes.
    ebpf: Ebpf,
    helper: Child,
    session: Option<BackgroundSession>,
    mount: PathBuf,
    answered: Arc<AtomicU64>,
    stop: Arc<Stop>,
}

impl BlockFault {
    /// Delays calls of `syscalls` (a subset of [`SYSCALLS`]) from `target` and the cgroups
    /// below it by `delay`, serving the FUSE mount at `mount` (created, must not be in use).
    pub fn start(
        target: &CgroupTarget,
        syscalls: &[Sysno],
        delay: Duration,
        mount: &Path,
    ) -> Result<BlockFault, Error> {
        check_syscalls(syscalls)?;
        // Its programs are LSM programs (the kfuncs they call are allowed in no other kind),
        // which load where BPF LSM is not active and never run: refuse rather than delay
        // nothing.
        if let Ok(lsms) = crate::doctor::active_lsm_list()
            && !lsms.list.iter().any(|l| l == "bpf")
        {
            return Err(Error::Unsupported {
                fault: FAULT.to_owned(),
                why: format!(
                    "BPF LSM is not active (the active LSMs are {}): block mode's sleepable \
                     programs call kfuncs (bpf_get_file_xattr) that the kernel allows only in \
                     LSM programs, so fmod_ret cannot stand in; use --mode spin or pause, or \
                     boot with `bpf` added to lsm=",
                    lsms.list.join(",")
                ),
            });
        }
        let ids = kfunc_ids(Path::new(VMLINUX_BTF))?;
        if !Path::new("/dev/fuse").exists() {
            return Err(Error::Unsupported {
                fault: FAULT.to_owned(),
                why: "/dev/fuse is missing (CONFIG_FUSE_FS, or `modprobe fuse`)".to_owned(),
            });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let sleep = which_sleep()?;
        let exe = fs::read(&sleep).map_err(io(&sleep))?;
        fs::create_dir_all(mount).map_err(io(mount))?;

        let answered = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(Stop::default());
        let fs = DelayFs {
            exe: Arc::new(exe),
            delay,
            answered: Arc::clone(&answered),
            stop: Arc::clone(&stop),
        };
        let mut options = Config::default();
        options.mount_options = vec![
            MountOption::FSName("chaos-block".to_owned()),
            MountOption::RO,
            MountOption::Exec,
        ];
        // The targets run as any user; FUSE refuses everyone but the mounter without it.
        options.acl = SessionACL::All;
        options.n_threads = Some(2);
        let session = fuser::spawn_mount(fs, mount, &options).map_err(io(mount))?;

        let exe_path = mount.join(EXE_NAME);
        let helper = Command::new(&exe_path)
            .arg("2147483647")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(&exe_path))?;
        let mut fault = BlockFault {
            ebpf: crate::kernel_log::quiet_loader()
                .load(&patch_kfunc_calls(EBPF_OBJECT, &ids)?.0)?,
            helper,
            session: Some(session),
            mount: mount.to_owned(),
            answered,
            stop,
        };
        fault.attach(target, syscalls)?;
        Ok(fault)
    }

    fn attach(&mut self, target: &CgroupTarget, syscalls: &[Sysno]) -> Result<(), Error> {
        let helper_pid = u64::from(self.helper.id());
        let kernel_config = btf::kernel_config(Path::new(VMLINUX_BTF))?;
        write_array(&mut self.ebpf, KERNEL_CONFIG_MAP, [kernel_config])?;
        let mut words = [0u64; SYSCALL_WORDS as usize];
        for sysno in syscalls {
            let nr = sysno.id() as usize;
            words[nr / 64] |= 1 << (nr % 64);
        }
        write_array(&mut self.ebpf, SYSCALLS_MAP, words)?;
        let mut config_map = array_mut::<u64>(&mut self.ebpf, CONFIG_MAP)?;
        // The cgroup id last: it turns the programs on.
        for (slot, value) in [
            (config::HELPER_PID, helper_pid),
            (config::CGROUP_LEVEL, u64::from(target.level)),
            (config::CGROUP_ID, target.id),
        ] {
            config_map
                .set(slot, value, 0)
                .map_err(|source| Error::Map {
                    map: CONFIG_MAP,
                    source,
                })?;
        }
        let btf = Btf::from_sys_fs().map_err(|err| Error::Unsupported {
            fault: FAULT.to_owned(),
            why: format!("cannot read the kernel's BTF ({VMLINUX_BTF}): {err}"),
        })?;
        for (name, hook) in PROGRAMS {
            let prog: &mut Lsm = program_mut(&mut self.ebpf, name)?;
            prog.load(hook, &btf).map_err(|err| Error::Unsupported {
                fault: FAULT.to_owned(),
                why: format!(
                    "the kernel refused the sleepable LSM program {name} on {hook} ({}); block \
                     mode needs BPF LSM programs (lsm=...,bpf and BPF trampolines) and the \
                     Linux 6.12 kfuncs",
                    load_error(&err)
                ),
            })?;
            prog.attach()
                .map_err(|source| program_error(name, "attach", source))?;
        }
        Ok(())
    }

    /// What the programs counted so far.
    pub fn counters(&self) -> Result<BlockCounters, Error> {
        let counters: Vec<u64> = read_array(&self.ebpf, COUNTERS_MAP, counter::LEN as usize)?;
        let get = |slot: u32| counters[slot as usize];
        Ok(BlockCounters {
            hits: get(counter::HITS),
            delayed: get(counter::DELAYED),
            no_helper: get(counter::NO_HELPER),
            failed: get(counter::FAILED),
            last_errno: get(counter::LAST_ERRNO),
        })
    }

    /// How many delayed GETXATTR requests the FUSE server has answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// The helper process's pid.
    pub fn helper_pid(&self) -> u32 {
        self.helper.id()
    }
}

impl Drop for BlockFault {
    fn drop(&mut self) {
        // Waiting calls go on now, not at the end of their delay.
        self.stop.stop();
        // The helper next, so that its executable no longer keeps the mount busy.
        let _ = self.helper.kill();
        let _ = self.helper.wait();
        drop(self.session.take());
        let _ = fs::remove_dir(&self.mount);
    }
}

/// The errno and the verifier's last words of a failed load, on one line.
fn load_error(err: &aya::programs::ProgramError) -> String {
    match err {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .rev()
                .take(3)
                .collect();
            match tail.is_empty() {
                true => io_error.to_string(),
                false => format!(
                    "{io_error}; verifier: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ),
            }
        }
        other => other.to_string(),
    }
}

/// The `sleep` executable the helper runs a copy of.
fn which_sleep() -> Result<PathBuf, Error> {
    for dir in ["/bin", "/usr/bin"] {
        let path = Path::new(dir).join("sleep");
        if let Ok(real) = fs::canonicalize(&path) {
            return Ok(real);
        }
    }
    Err(Error::Unsupported {
        fault: FAULT.to_owned(),
        why: "no `sleep` executable in /bin or /usr/bin to run as the helper".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded object holds placeholder calls for every kfunc, and patching rewrites each
    /// into a kfunc call with the id given.
    #[test]
    fn patches_every_placeholder_call() {
        let ids: Vec<(Kfunc, u32)> = Kfunc::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, 1000 + i as u32))
            .collect();
        let (patched, count) = patch_kfunc_calls(EBPF_OBJECT, &ids).unwrap();
        // Five kfunc calls in each program.
        assert_eq!(count, PROGRAMS.len() * Kfunc::ALL.len());
        assert_eq!(patched.len(), EBPF_OBJECT.len());
        let (_, again) = patch_kfunc_calls(&patched, &ids).unwrap();
        assert_eq!(again, 0, "no placeholder left after patching");
    }
}
