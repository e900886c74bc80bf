//! Loading the kernel programs, installing rules and attaching only what the rules need.
//!
//! An [`Injector`] owns the loaded object and every link it made. All links are bpf_link file
//! descriptors owned by this process and nothing is pinned, so the kernel detaches everything
//! when the injector is dropped or the process dies for any reason, SIGKILL included.
use std::{collections::BTreeSet, fs::File, path::PathBuf};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::Array,
    programs::{CgroupAttachMode, CgroupSockAddr, Lsm},
};
use chaos_common::{HitCounter, Hook, KernelConfig, MAX_RULES, Rule};

use crate::{Error, btf};

/// The kernel programs, built from chaos-ebpf by build.rs.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos-ebpf"));

const CONFIG_MAP: &str = "CHAOS_CONFIG";
const RULES_MAP: &str = "CHAOS_RULES";
const COUNTERS_MAP: &str = "CHAOS_COUNTERS";

const FILE_OPEN: &str = "chaos_file_open";
const CONNECT4: &str = "chaos_connect4";
const CONNECT6: &str = "chaos_connect6";

/// A rule and the cgroup directory it targets (cgroup programs attach there).
#[derive(Clone, Debug)]
pub struct PlannedRule {
    /// The rule as the kernel will see it.
    pub rule: Rule,
    /// The target cgroup's directory in the v2 hierarchy.
    pub cgroup_dir: PathBuf,
}

/// Loaded programs with rules installed and attached.
pub struct Injector {
    ebpf: Ebpf,
    slots: usize,
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
        // Owned by the injector from here on, so that an error below drops it, and with it
        // every link made so far.
        let mut injector = Injector {
            ebpf: EbpfLoader::new().load(EBPF_OBJECT)?,
            slots: rules.len(),
        };

        let hooks: BTreeSet<u32> = rules.iter().map(|r| r.rule.hook).collect();
        if hooks.contains(&(Hook::FileOpen as u32)) {
            injector.write_config()?;
        }
        injector.write_rules(rules)?;
        for hook in hooks {
            match Hook::from_raw(hook) {
                Some(Hook::FileOpen) => injector.attach_lsm(FILE_OPEN, "file_open")?,
                Some(Hook::Connect) => {
                    let dirs: BTreeSet<&PathBuf> = rules
                        .iter()
                        .filter(|r| r.rule.hook == hook)
                        .map(|r| &r.cgroup_dir)
                        .collect();
                    for prog in [CONNECT4, CONNECT6] {
                        injector.attach_sock_addr(prog, &dirs)?;
                    }
                }
                None => {
                    return Err(Error::Invalid {
                        field: "rule.hook",
                        value: hook.to_string(),
                        expected: "a chaos_common::Hook".into(),
                    });
                }
            }
        }
        Ok(injector)
    }

    fn write_config(&mut self) -> Result<(), Error> {
        let config: KernelConfig = btf::kernel_config(std::path::Path::new(btf::VMLINUX_BTF))?;
        let mut map: Array<_, KernelConfig> = Array::try_from(
            self.ebpf.map_mut(CONFIG_MAP).expect(CONFIG_MAP),
        )
        .map_err(|source| Error::Map {
            map: CONFIG_MAP,
            source,
        })?;
        map.set(0, config, 0).map_err(|source| Error::Map {
            map: CONFIG_MAP,
            source,
        })
    }

    fn write_rules(&mut self, rules: &[PlannedRule]) -> Result<(), Error> {
        let mut map: Array<_, Rule> =
            Array::try_from(self.ebpf.map_mut(RULES_MAP).expect(RULES_MAP)).map_err(|source| {
                Error::Map {
                    map: RULES_MAP,
                    source,
                }
            })?;
        for (slot, planned) in rules.iter().enumerate() {
            map.set(slot as u32, planned.rule, 0)
                .map_err(|source| Error::Map {
                    map: RULES_MAP,
                    source,
                })?;
        }
        Ok(())
    }

    fn attach_lsm(&mut self, name: &'static str, hook: &str) -> Result<(), Error> {
        let btf = Btf::from_sys_fs().map_err(|err| Error::Unsupported {
            fault: format!("LSM hook {hook}"),
            why: format!("cannot read the kernel's BTF ({}): {err}", btf::VMLINUX_BTF),
        })?;
        let prog: &mut Lsm = self
            .ebpf
            .program_mut(name)
            .expect(name)
            .try_into()
            .map_err(|source| Error::Program {
                program: name,
                action: "type",
                source,
            })?;
        prog.load(hook, &btf).map_err(|err| Error::Unsupported {
            fault: format!("LSM hook {hook}"),
            why: format!(
                "the kernel refused the BPF LSM program ({err}); this needs CONFIG_BPF_LSM, `bpf` \
                 in the active LSMs (lsm= boot parameter) and BPF trampolines; `chaos doctor` \
                 shows what this kernel lacks"
            ),
        })?;
        prog.attach().map_err(|source| Error::Program {
            program: name,
            action: "attach",
            source,
        })?;
        Ok(())
    }

    fn attach_sock_addr(
        &mut self,
        name: &'static str,
        dirs: &BTreeSet<&PathBuf>,
    ) -> Result<(), Error> {
        let prog: &mut CgroupSockAddr = self
            .ebpf
            .program_mut(name)
            .expect(name)
            .try_into()
            .map_err(|source| Error::Program {
                program: name,
                action: "type",
                source,
            })?;
        prog.load().map_err(|source| Error::Program {
            program: name,
            action: "load",
            source,
        })?;
        for dir in dirs {
            let cgroup = File::open(dir).map_err(|source| Error::Io {
                path: (*dir).clone(),
                source,
            })?;
            // On 5.7+ aya attaches through bpf_link, which the kernel always treats as
            // multi-attach (and refuses flags for): the program coexists with others on the
            // same cgroup and keeps running for descendants that attach their own.
            prog.attach(cgroup, CgroupAttachMode::Single)
                .map_err(|source| Error::Program {
                    program: name,
                    action: "attach",
                    source,
                })?;
        }
        Ok(())
    }

    /// The counters of the installed rules, in rule order.
    pub fn counters(&self) -> Result<Vec<HitCounter>, Error> {
        let map: Array<_, HitCounter> = Array::try_from(
            self.ebpf.map(COUNTERS_MAP).expect(COUNTERS_MAP),
        )
        .map_err(|source| Error::Map {
            map: COUNTERS_MAP,
            source,
        })?;
        (0..self.slots as u32)
            .map(|slot| {
                map.get(&slot, 0).map_err(|source| Error::Map {
                    map: COUNTERS_MAP,
                    source,
                })
            })
            .collect()
    }
}
