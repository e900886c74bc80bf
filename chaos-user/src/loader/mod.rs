//! Loading the kernel programs, installing rules and attaching only what the rules need.
//!
//! An [`Injector`] owns the loaded object and every link it made. All links are bpf_link file
//! descriptors owned by this process and nothing is pinned, so the kernel detaches everything
//! when the injector is dropped or the process dies for any reason, SIGKILL included.
use std::{collections::BTreeSet, fs::File, path::PathBuf};

mod cost;
mod index;
pub(crate) mod object;
pub use cost::{VerifierCost, verifier_costs};
pub use index::RuleIndex;
use object::{array_mut, attach_to_cgroups, program_error, program_mut, write_array};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSock, CgroupSockAddr, CgroupSockopt, Lsm, Program,
        ProgramError,
    },
};
use chaos_common::{
    HitCounter, Hook, HookLevels, KernelConfig, MAX_RULES, Rule, SYS_ENTER_FILTER_BITS,
    SYS_ENTER_FILTER_WORDS, TargetKey, TargetRules,
};

use crate::{Error, btf};

/// The kernel programs, built from chaos-ebpf by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos-ebpf"));

const CONFIG_MAP: &str = "CHAOS_CONFIG";
const RULES_MAP: &str = "CHAOS_RULES";
const COUNTERS_MAP: &str = "CHAOS_COUNTERS";
const PAUSED_MAP: &str = "CHAOS_PAUSED";
const SYS_ENTER_NRS_MAP: &str = "CHAOS_SYS_ENTER_NRS";
const TARGETS_MAP: &str = "CHAOS_TARGETS";
const HOOK_LEVELS_MAP: &str = "CHAOS_HOOK_LEVELS";

/// How the programs of a hook attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attach {
    /// BPF LSM, to the named LSM hook.
    Lsm(&'static str),
    /// cgroup sock_addr programs, to each target cgroup.
    SockAddr,
    /// cgroup sock programs, to each target cgroup.
    Sock,
    /// cgroup sockopt programs, to each target cgroup.
    Sockopt,
    /// A BTF-enabled tracepoint, system-wide (the programs match the cgroup themselves).
    TpBtf(&'static str),
}

/// The programs that enforce `hook`'s rules and how they attach.
fn programs(hook: Hook) -> (&'static [&'static str], Attach) {
    use Attach::*;
    match hook {
        Hook::FileOpen => (&["chaos_file_open"], Lsm("file_open")),
        Hook::FilePermission => (&["chaos_file_permission"], Lsm("file_permission")),
        Hook::MmapFile => (&["chaos_mmap_file"], Lsm("mmap_file")),
        Hook::FileMprotect => (&["chaos_file_mprotect"], Lsm("file_mprotect")),
        Hook::FileIoctl => (&["chaos_file_ioctl"], Lsm("file_ioctl")),
        Hook::FileFcntl => (&["chaos_file_fcntl"], Lsm("file_fcntl")),
        Hook::FileLock => (&["chaos_file_lock"], Lsm("file_lock")),
        Hook::InodeUnlink => (&["chaos_inode_unlink"], Lsm("inode_unlink")),
        Hook::InodeRmdir => (&["chaos_inode_rmdir"], Lsm("inode_rmdir")),
        Hook::InodeMkdir => (&["chaos_inode_mkdir"], Lsm("inode_mkdir")),
        Hook::InodeRename => (&["chaos_inode_rename"], Lsm("inode_rename")),
        Hook::InodeLink => (&["chaos_inode_link"], Lsm("inode_link")),
        Hook::InodeSymlink => (&["chaos_inode_symlink"], Lsm("inode_symlink")),
        Hook::InodeSetattr => (&["chaos_inode_setattr"], Lsm("inode_setattr")),
        Hook::InodeGetattr => (&["chaos_inode_getattr"], Lsm("inode_getattr")),
        Hook::BprmCheck => (&["chaos_bprm_check_security"], Lsm("bprm_check_security")),
        Hook::TaskAlloc => (&["chaos_task_alloc"], Lsm("task_alloc")),
        Hook::TaskKill => (&["chaos_task_kill"], Lsm("task_kill")),
        Hook::SbMount => (&["chaos_sb_mount"], Lsm("sb_mount")),
        Hook::SocketListen => (&["chaos_socket_listen"], Lsm("socket_listen")),
        Hook::SocketAccept => (&["chaos_socket_accept"], Lsm("socket_accept")),
        Hook::SocketSendmsg => (&["chaos_socket_sendmsg"], Lsm("socket_sendmsg")),
        Hook::SocketRecvmsg => (&["chaos_socket_recvmsg"], Lsm("socket_recvmsg")),
        Hook::SocketShutdown => (&["chaos_socket_shutdown"], Lsm("socket_shutdown")),
        Hook::Connect => (&["chaos_connect4", "chaos_connect6"], SockAddr),
        Hook::Bind => (&["chaos_bind4", "chaos_bind6"], SockAddr),
        Hook::SockCreate => (&["chaos_sock_create"], Sock),
        Hook::Getsockopt => (&["chaos_getsockopt"], Sockopt),
        Hook::Setsockopt => (&["chaos_setsockopt"], Sockopt),
        Hook::SysEnter => (&["chaos_sys_enter"], TpBtf("sys_enter")),
    }
}

/// Raises this process's soft limit on open files to its hard limit: every cgroup a rule
/// targets holds one bpf_link file descriptor per program attached there, and a thousand
/// targets pass the usual soft limit of 1024 long before the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        // Failing leaves the old limit, and attaching reports EMFILE if it is too low.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// A rule, the cgroup directory it targets (cgroup programs attach there) and what it is
/// for, in reports.
#[derive(Clone, Debug)]
pub struct PlannedRule {
    /// The rule as the kernel will see it.
    pub rule: Rule,
    /// The target cgroup's directory in the v2 hierarchy.
    pub cgroup_dir: PathBuf,
    /// What the rule stands for (a syscall name), to group counters in reports.
    pub label: String,
}

/// Loaded programs with rules installed and attached.
pub struct Injector {
    ebpf: Ebpf,
    slots: usize,
    btf: Option<Btf>,
}

impl Injector {
    /// Loads the object, installs `rules` in slots `0..rules.len()` and attaches the programs
    /// they need. All or nothing: on error, whatever was attached is detached again (by drop).
    pub fn start(rules: &[PlannedRule]) -> Result<Injector, Error> {
        if rules.len() > MAX_RULES as usize {
            return Err(Error::Invalid {
                field: "rules",
                value: rules.len().to_string(),
                expected: format!("at most {MAX_RULES} rules at once"),
            });
        }
        let planned: Vec<Rule> = rules.iter().map(|r| r.rule).collect();
        // Also checks every rule's hook.
        let index = RuleIndex::plan(&planned)?;
        let hooks: BTreeSet<Hook> = index.levels.keys().copied().collect();
        raise_open_file_limit();
        let loading_since = crate::fault::boot_time_ns()?;
        // Owned by the injector from here on, so that an error below drops it, and with it
        // every link made so far.
        let mut injector = Injector {
            ebpf: EbpfLoader::new().load(EBPF_OBJECT)?,
            slots: rules.len(),
            btf: None,
        };
        if hooks
            .iter()
            .any(|h| matches!(programs(*h).1, Attach::Lsm(_)))
        {
            injector.write_config()?;
        }
        injector.write_rules(rules)?;
        injector.write_index(&index)?;
        if hooks.contains(&Hook::SysEnter) {
            injector.write_sys_enter_filter(rules)?;
        }
        for hook in hooks {
            let dirs: BTreeSet<&PathBuf> = rules
                .iter()
                .filter(|r| r.rule.hook == hook as u32)
                .map(|r| &r.cgroup_dir)
                .collect();
            let (names, attach) = programs(hook);
            for name in names {
                match attach {
                    Attach::Lsm(lsm_hook) => injector.attach_lsm(name, lsm_hook)?,
                    Attach::SockAddr => injector.attach_cgroup(
                        name,
                        &dirs,
                        CgroupSockAddr::load,
                        CgroupSockAddr::attach::<File>,
                    )?,
                    Attach::Sock => injector.attach_cgroup(
                        name,
                        &dirs,
                        CgroupSock::load,
                        CgroupSock::attach::<File>,
                    )?,
                    Attach::TpBtf(tracepoint) => injector.attach_tp_btf(name, tracepoint)?,
                    Attach::Sockopt => injector.attach_cgroup(
                        name,
                        &dirs,
                        CgroupSockopt::load,
                        CgroupSockopt::attach::<File>,
                    )?,
                }
            }
        }
        // Deadlines were set when the rules were planned; loading (the verifier, seconds on a
        // slow machine) must not eat into the fault's time, so they move by the time it took.
        let shift = crate::fault::boot_time_ns()?.saturating_sub(loading_since);
        let shifted: Vec<PlannedRule> = rules
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r.rule.deadline_ns != 0 {
                    r.rule.deadline_ns = r.rule.deadline_ns.saturating_add(shift);
                }
                r
            })
            .collect();
        injector.write_rules(&shifted)?;
        Ok(injector)
    }

    fn write_config(&mut self) -> Result<(), Error> {
        let config: KernelConfig = btf::kernel_config(std::path::Path::new(btf::VMLINUX_BTF))?;
        write_array(&mut self.ebpf, CONFIG_MAP, [config])
    }

    fn write_rules(&mut self, rules: &[PlannedRule]) -> Result<(), Error> {
        write_array(&mut self.ebpf, RULES_MAP, rules.iter().map(|r| r.rule))
    }

    fn write_index(&mut self, index: &RuleIndex) -> Result<(), Error> {
        let mut targets = object::hash_mut::<TargetKey, TargetRules>(&mut self.ebpf, TARGETS_MAP)?;
        for (key, list) in &index.targets {
            targets.insert(key, list, 0).map_err(|source| Error::Map {
                map: TARGETS_MAP,
                source,
            })?;
        }
        let mut levels = array_mut::<HookLevels>(&mut self.ebpf, HOOK_LEVELS_MAP)?;
        for (hook, hook_levels) in &index.levels {
            levels
                .set(*hook as u32, hook_levels, 0)
                .map_err(|source| Error::Map {
                    map: HOOK_LEVELS_MAP,
                    source,
                })?;
        }
        Ok(())
    }

    /// Sets the bit of every syscall a `sys_enter` rule names (all of them for a rule on any
    /// syscall) in the program's quick filter.
    fn write_sys_enter_filter(&mut self, rules: &[PlannedRule]) -> Result<(), Error> {
        let mut words = [0u64; SYS_ENTER_FILTER_WORDS as usize];
        for planned in rules {
            let rule = &planned.rule;
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

    /// The kernel's BTF, parsed once per injector; `what` names the hook for errors.
    fn kernel_btf<'b>(btf: &'b mut Option<Btf>, what: &str) -> Result<&'b Btf, Error> {
        if btf.is_none() {
            *btf = Some(Btf::from_sys_fs().map_err(|err| Error::Unsupported {
                fault: what.to_owned(),
                why: format!("cannot read the kernel's BTF ({}): {err}", btf::VMLINUX_BTF),
            })?);
        }
        Ok(btf.as_ref().expect("just set"))
    }

    fn attach_lsm(&mut self, name: &'static str, hook: &str) -> Result<(), Error> {
        let btf = Self::kernel_btf(&mut self.btf, &format!("LSM hook {hook}"))?;
        let prog: &mut Lsm = program_mut(&mut self.ebpf, name)?;
        prog.load(hook, btf).map_err(|err| Error::Unsupported {
            fault: format!("LSM hook {hook}"),
            why: format!(
                "the kernel refused the BPF LSM program ({err}); this needs CONFIG_BPF_LSM, `bpf` \
                 in the active LSMs (lsm= boot parameter) and BPF trampolines; without them, \
                 the cgroup hooks still fail {}; `chaos doctor` shows what this kernel lacks",
                crate::fault::Syscall::supported_by(crate::fault::Mechanism::Cgroup).join(", ")
            ),
        })?;
        prog.attach()
            .map_err(|source| program_error(name, "attach", source))?;
        Ok(())
    }

    fn attach_tp_btf(&mut self, name: &'static str, tracepoint: &str) -> Result<(), Error> {
        let btf = Self::kernel_btf(&mut self.btf, &format!("tracepoint {tracepoint}"))?;
        let prog: &mut BtfTracePoint = program_mut(&mut self.ebpf, name)?;
        prog.load(tracepoint, btf)
            .map_err(|source| program_error(name, "load", source))?;
        prog.attach()
            .map_err(|source| program_error(name, "attach", source))?;
        Ok(())
    }

    /// Loads the cgroup program `name` of type `P` and attaches it to every cgroup in `dirs`.
    fn attach_cgroup<P, L>(
        &mut self,
        name: &'static str,
        dirs: &BTreeSet<&PathBuf>,
        load: fn(&mut P) -> Result<(), ProgramError>,
        attach: fn(&mut P, File, CgroupAttachMode) -> Result<L, ProgramError>,
    ) -> Result<(), Error>
    where
        for<'a> &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
    {
        let prog: &mut P = program_mut(&mut self.ebpf, name)?;
        load(prog).map_err(|source| program_error(name, "load", source))?;
        // On 5.7+ aya attaches through bpf_link, which the kernel always treats as
        // multi-attach (and refuses flags for): the program coexists with others on the same
        // cgroup and keeps running for descendants that attach their own.
        attach_to_cgroups(name, dirs, |cgroup| {
            attach(prog, cgroup, CgroupAttachMode::Single).map(drop)
        })
    }

    /// Takes the map of processes stopped by pause rules (thread group id -> boot-clock ns at
    /// which to continue them), for a [`crate::pause::Resumer`].
    pub fn take_paused(
        &mut self,
    ) -> Result<aya::maps::HashMap<aya::maps::MapData, u32, u64>, Error> {
        let map = self.ebpf.take_map(PAUSED_MAP).ok_or(Error::Map {
            map: PAUSED_MAP,
            source: aya::maps::MapError::InvalidName {
                name: PAUSED_MAP.into(),
            },
        })?;
        aya::maps::HashMap::try_from(map).map_err(|source| Error::Map {
            map: PAUSED_MAP,
            source,
        })
    }

    /// The counters of the installed rules, in rule order.
    pub fn counters(&self) -> Result<Vec<HitCounter>, Error> {
        object::read_array(&self.ebpf, COUNTERS_MAP, self.slots)
    }
}
