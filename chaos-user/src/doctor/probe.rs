//! The probes: each one tries one thing against the running kernel and says what happened.
//!
//! Everything a probe creates (a cgroup directory, links, a network namespace, a securityfs
//! mount) is removed before it returns; loaded programs go away when the [`Ebpf`] is dropped.
use std::{
    fs::{self, File},
    io,
    path::Path,
};

use aya::{
    Btf, Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, LinkOrder,
        Lsm, ProgramError, RawTracePoint, SchedClassifier, TcAttachType,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use nix::{errno::Errno, mount::MsFlags, sched::CloneFlags};

use super::parse;
use crate::{loader::EBPF_OBJECT, mountinfo, target::ChildCgroup};

/// Why a probe failed: the errno when the kernel gave one, and the full text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The errno the failing call returned, if the failure came from one.
    pub errno: Option<Errno>,
    /// What failed and how, for people.
    pub message: String,
}

impl Failure {
    /// A failure with no errno.
    pub fn text(message: impl Into<String>) -> Failure {
        Failure {
            errno: None,
            message: message.into(),
        }
    }

    /// A failure of an I/O call, naming what was being done.
    pub fn io(doing: &str, err: &io::Error) -> Failure {
        Failure {
            errno: err.raw_os_error().map(Errno::from_raw),
            message: format!("{doing}: {}", describe_io(err)),
        }
    }
}

/// The result of one probe: on success, a short note on what worked.
pub type Outcome = Result<String, Failure>;

/// `EPERM (Operation not permitted)` rather than `Operation not permitted (os error 1)`, since
/// errno names are what kernel documentation and mailing lists use.
pub fn describe_io(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(raw) => {
            let errno = Errno::from_raw(raw);
            format!("{errno:?} ({})", errno.desc())
        }
        None => err.to_string(),
    }
}

/// Turns aya's program errors into a [`Failure`], keeping the errno and the end of the
/// verifier log (its last lines say why it rejected a program).
fn program_failure(doing: &str, err: &ProgramError) -> Failure {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let tail = tail[tail.len().saturating_sub(2)..].join("; ");
            let mut message = format!("{doing}: BPF_PROG_LOAD: {}", describe_io(io_error));
            if tail.is_empty() {
                message.push_str(" (no verifier log)");
            } else {
                message.push_str(&format!("; verifier: {tail}"));
            }
            Failure {
                errno: io_error.raw_os_error().map(Errno::from_raw),
                message,
            }
        }
        ProgramError::SyscallError(e) => Failure {
            errno: e.io_error.raw_os_error().map(Errno::from_raw),
            message: format!("{doing}: {}: {}", e.call, describe_io(&e.io_error)),
        },
        other => Failure::text(format!("{doing}: {}", error_chain(other))),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|err| format!("unknown ({})", describe_io(&err)))
}

/// The effective capabilities of this process, from `/proc/self/status`.
pub fn effective_caps() -> Option<u64> {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse::effective_caps(&s))
}

/// The mounts of this process's mount namespace.
pub fn mounts() -> Result<Vec<mountinfo::Mount>, Failure> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|text| mountinfo::parse(&text))
        .map_err(|err| Failure::io("reading /proc/self/mountinfo", &err))
}

/// Parses the kernel's own BTF, which LSM and fmod_ret programs are loaded against.
pub fn vmlinux_btf() -> Result<Btf, Failure> {
    let path = crate::btf::VMLINUX_BTF;
    if !Path::new(path).exists() {
        return Err(Failure::text(format!(
            "{path} does not exist (kernel built without CONFIG_DEBUG_INFO_BTF)"
        )));
    }
    Btf::from_sys_fs()
        .map_err(|err| Failure::text(format!("parsing {path}: {}", error_chain(&err))))
}

/// The active LSMs and where they were read from.
#[derive(Clone, Debug)]
pub struct ActiveLsms {
    /// The LSMs, in call order.
    pub list: Vec<String>,
    /// How they were found (which file, whether securityfs had to be mounted).
    pub source: String,
}

/// Reads the active LSMs from securityfs. When securityfs is not mounted it is mounted on a
/// private temporary directory for the read and unmounted again, so the machine is left as it
/// was; `/sys/kernel/security` itself is never touched.
pub fn active_lsms(securityfs: Option<&Path>) -> Result<ActiveLsms, Failure> {
    if let Some(dir) = securityfs {
        let path = dir.join("lsm");
        return fs::read_to_string(&path)
            .map(|text| ActiveLsms {
                list: parse::lsm_list(&text),
                source: path.display().to_string(),
            })
            .map_err(|err| Failure::io(&format!("reading {}", path.display()), &err));
    }
    let dir = std::env::temp_dir().join(format!("chaos-doctor-securityfs.{}", std::process::id()));
    fs::create_dir(&dir).map_err(|err| Failure::io(&format!("mkdir {}", dir.display()), &err))?;
    let mounted = nix::mount::mount(
        Some("securityfs"),
        &dir,
        Some("securityfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    let result = match mounted {
        Ok(()) => {
            let read = fs::read_to_string(dir.join("lsm"));
            let _ = nix::mount::umount(&dir);
            read.map(|text| ActiveLsms {
                list: parse::lsm_list(&text),
                source: "a temporary securityfs mount, as securityfs is not mounted".into(),
            })
            .map_err(|err| {
                Failure::io(
                    "securityfs is not mounted; reading lsm through a temporary mount",
                    &err,
                )
            })
        }
        Err(errno) => Err(Failure {
            errno: Some(errno),
            message: format!(
                "securityfs is not mounted and a temporary mount failed: {errno:?} ({}); {}",
                errno.desc(),
                boot_lsm_hint()
            ),
        }),
    };
    let _ = fs::remove_dir(&dir);
    result
}

/// What the kernel command line asked for, as a hint when the active list cannot be read.
fn boot_lsm_hint() -> String {
    match fs::read_to_string("/proc/cmdline")
        .ok()
        .and_then(|c| parse::cmdline_lsm(&c))
    {
        Some(lsm) => format!("the kernel command line asks for lsm={lsm}"),
        None => "the kernel command line has no lsm=, so the kernel's built-in CONFIG_LSM \
                 order applies"
            .into(),
    }
}

/// Parses the embedded eBPF object and creates its maps (no program is loaded yet).
pub fn load_object() -> Result<Ebpf, Failure> {
    crate::kernel_log::quiet_loader()
        .load(EBPF_OBJECT)
        .map_err(|err| {
            Failure::text(format!(
                "loading the embedded eBPF object: {}",
                error_chain(&err)
            ))
        })
}

/// A cgroup that exists only while the probes run, opened for attaching.
pub struct TempCgroup {
    cgroup: ChildCgroup,
    dir: File,
}

impl TempCgroup {
    /// Creates the cgroup `chaos/doctor-<pid>` under the v2 root.
    pub fn create() -> Result<TempCgroup, Failure> {
        let cgroup = ChildCgroup::create(&format!("doctor-{}", std::process::id()))
            .map_err(|err| Failure::text(format!("creating a cgroup to probe in: {err}")))?;
        let path = &cgroup.target().path;
        let dir = File::open(path)
            .map_err(|err| Failure::io(&format!("open {}", path.display()), &err))?;
        Ok(TempCgroup { cgroup, dir })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.cgroup.target().path
    }
}

/// The mode for cgroup attachments. On 5.7+ aya attaches through bpf_link_create, whose links
/// always stack with other programs and which refuses any attach flag with EINVAL, so
/// `Single` (no flag) is the only mode that works there.
const CGROUP_MODE: CgroupAttachMode = CgroupAttachMode::Single;

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, Failure>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| Failure::text(format!("program {name} is not in the eBPF object")))?;
    prog.try_into()
        .map_err(|err: ProgramError| program_failure(&format!("program {name}"), &err))
}

/// Loads the BPF LSM program on `file_open`. Not attached: attaching would put it in every
/// open on the machine, and the load is where kernels without working BPF LSM refuse it.
pub fn lsm_file_open(ebpf: &mut Ebpf, btf: &Btf) -> Outcome {
    let prog: &mut Lsm = program(ebpf, "chaos_file_open")?;
    prog.load("file_open", btf)
        .map_err(|err| program_failure("load lsm/file_open", &err))?;
    Ok("loaded".into())
}

/// Loads the fmod_ret twin of the `file_open` program on `security_file_open`. Not attached,
/// as for [`lsm_file_open`]; the load is where the verifier checks the target.
pub fn fmod_ret_file_open(ebpf: &mut Ebpf, btf: &Btf) -> Outcome {
    let object = crate::loader::fmod_ret::FmodRetObject::new(EBPF_OBJECT, ebpf)
        .map_err(|err| Failure::text(err.to_string()))?;
    object
        .load("chaos_fmod_file_open", "security_file_open", btf)
        .map_err(|err| Failure {
            errno: match &err {
                crate::Error::Unsupported { why, .. }
                    if why.contains("Operation not permitted") =>
                {
                    Some(nix::errno::Errno::EPERM)
                }
                _ => None,
            },
            message: format!("load fmod_ret/security_file_open: {err}"),
        })?;
    Ok("loaded".into())
}

/// Whether latency block mode can run: the kfuncs it calls are in the kernel's BTF, /dev/fuse
/// exists, and its sleepable `file_open` program, with its kfunc calls patched in, loads.
pub fn latency_block(btf: &Btf) -> Outcome {
    use crate::fault::block;
    let ids = block::kfunc_ids(Path::new(crate::btf::VMLINUX_BTF))
        .map_err(|err| Failure::text(err.to_string()))?;
    if !Path::new("/dev/fuse").exists() {
        return Err(Failure::text(
            "/dev/fuse is missing (CONFIG_FUSE_FS, or `modprobe fuse`)",
        ));
    }
    let (patched, _) = block::patch_kfunc_calls(EBPF_OBJECT, &ids)
        .map_err(|err| Failure::text(err.to_string()))?;
    let mut ebpf = crate::kernel_log::quiet_loader()
        .load(&patched)
        .map_err(|err| Failure::text(format!("loading the patched eBPF object: {err}")))?;
    let (name, hook) = block::PROGRAMS[0];
    let prog: &mut Lsm = program(&mut ebpf, name)?;
    prog.load(hook, btf)
        .map_err(|err| program_failure(&format!("load lsm.s/{hook} with kfunc calls"), &err))?;
    Ok(format!(
        "kfuncs present, /dev/fuse present, sleepable lsm.s/{hook} with kfunc calls loaded"
    ))
}

/// Loads a cgroup sock_addr program and attaches it to the temporary cgroup, then detaches.
pub fn sock_addr(ebpf: &mut Ebpf, name: &str, cgroup: &TempCgroup) -> Outcome {
    let prog: &mut CgroupSockAddr = program(ebpf, name)?;
    prog.load()
        .map_err(|err| program_failure(&format!("load {name}"), &err))?;
    let link = prog
        .attach(&cgroup.dir, CGROUP_MODE)
        .map_err(|err| program_failure(&format!("attach {name} to a cgroup"), &err))?;
    let _ = prog.detach(link);
    Ok("loaded and attached to a temporary cgroup".into())
}

/// Loads the do-nothing cgroup sock program and attaches it to the temporary cgroup.
pub fn sock_create(ebpf: &mut Ebpf, cgroup: &TempCgroup) -> Outcome {
    let prog: &mut CgroupSock = program(ebpf, "chaos_probe_sock_create")?;
    prog.load()
        .map_err(|err| program_failure("load cgroup_sock/sock_create", &err))?;
    let link = prog
        .attach(&cgroup.dir, CGROUP_MODE)
        .map_err(|err| program_failure("attach cgroup_sock/sock_create to a cgroup", &err))?;
    let _ = prog.detach(link);
    Ok("loaded and attached to a temporary cgroup".into())
}

/// Loads the do-nothing cgroup_skb egress program and attaches it to the temporary cgroup.
pub fn cgroup_skb(ebpf: &mut Ebpf, cgroup: &TempCgroup) -> Outcome {
    let prog: &mut CgroupSkb = program(ebpf, "chaos_probe_cgroup_skb")?;
    prog.load()
        .map_err(|err| program_failure("load cgroup_skb/egress", &err))?;
    let link = prog
        .attach(&cgroup.dir, CgroupSkbAttachType::Egress, CGROUP_MODE)
        .map_err(|err| program_failure("attach cgroup_skb/egress to a cgroup", &err))?;
    let _ = prog.detach(link);
    Ok("loaded and attached to a temporary cgroup".into())
}

/// Loads chaos's real `sys_enter` program (signals, spin and pause latency: bpf_send_signal,
/// bpf_loop) and attaches it for a moment: with no rules installed it matches nothing, and
/// loading the real program proves every helper it calls is available here.
pub fn sys_enter(ebpf: &mut Ebpf) -> Outcome {
    let prog: &mut RawTracePoint = program(ebpf, "chaos_sys_enter")?;
    prog.load()
        .map_err(|err| program_failure("load raw_tracepoint/sys_enter", &err))?;
    let link = prog
        .attach("sys_enter")
        .map_err(|err| program_failure("attach raw_tracepoint/sys_enter", &err))?;
    let _ = prog.detach(link);
    Ok("chaos_sys_enter loaded and attached".into())
}

/// Whether the cgroup v2 freezer exists: `cgroup.freeze` is in every non-root cgroup since 5.2.
pub fn freezer(cgroup: &TempCgroup) -> Outcome {
    let file = cgroup.path().join("cgroup.freeze");
    if file.exists() {
        Ok("cgroup.freeze present in a child cgroup".into())
    } else {
        Err(Failure::text(format!(
            "{} does not exist (cgroup v2 freezer needs 5.2+)",
            file.display()
        )))
    }
}

/// The do-nothing classifier, for [`in_netns`] to load and attach.
pub fn classifier(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, Failure> {
    program(ebpf, "chaos_probe_tc")
}

/// What the probes inside the throw-away network namespace found.
#[derive(Clone, Debug)]
pub struct NetnsFacts {
    /// The classifier attached to `lo` egress through TCX.
    pub tcx: Outcome,
    /// The classifier attached to `lo` egress through a clsact qdisc (netlink).
    pub clsact: Outcome,
    /// A root fq qdisc on lo could be installed.
    pub fq: Outcome,
    /// A root netem qdisc on lo could be installed.
    pub netem: Outcome,
}

impl NetnsFacts {
    /// Every network probe failed for the same reason.
    fn all_failed(fail: Failure) -> NetnsFacts {
        NetnsFacts {
            tcx: Err(fail.clone()),
            clsact: Err(fail.clone()),
            fq: Err(fail.clone()),
            netem: Err(fail),
        }
    }
}

/// Runs the network probes in a new network namespace on a thread of its own, so that
/// nothing they do can touch the machine's interfaces: the namespace, with the qdiscs and
/// attachments in it, disappears when the thread ends.
pub fn in_netns(classifier: Result<&mut SchedClassifier, Failure>) -> NetnsFacts {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // Only this thread moves; unshare of the network namespace is per thread.
                if let Err(errno) = nix::sched::unshare(CloneFlags::CLONE_NEWNET) {
                    return NetnsFacts::all_failed(Failure {
                        errno: Some(errno),
                        message: format!(
                            "cannot create a network namespace to probe in: unshare(CLONE_NEWNET): {errno:?} ({})",
                            errno.desc()
                        ),
                    });
                }
                let (tcx, clsact) = match classifier {
                    Ok(prog) => tc_attach(prog),
                    Err(fail) => (Err(fail.clone()), Err(fail)),
                };
                let fq = qdisc("fq", Vec::new());
                // struct tc_netem_qopt (latency, limit, loss, gap, duplicate, jitter): netem's
                // options are a C struct, not attributes; a 1000-packet limit, no delay.
                let netem_qopt = [0u32, 1000, 0, 0, 0, 0].map(u32::to_ne_bytes).concat();
                let netem = qdisc("netem", netem_qopt);
                NetnsFacts {
                    tcx,
                    clsact,
                    fq,
                    netem,
                }
            })
            .join()
            .unwrap_or_else(|_| {
                NetnsFacts::all_failed(Failure::text("the network probe thread panicked"))
            })
    })
}

/// Loads the do-nothing classifier and attaches it to `lo` egress both ways the kernel
/// offers; must run inside the throw-away namespace.
fn tc_attach(prog: &mut SchedClassifier) -> (Outcome, Outcome) {
    if let Err(err) = prog.load() {
        let fail = program_failure("load classifier (sched_cls)", &err);
        return (Err(fail.clone()), Err(fail));
    }
    let tcx = prog
        .attach_with_options(
            "lo",
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map(|link| {
            let _ = prog.detach(link);
            "attached to lo egress through TCX".to_owned()
        })
        .map_err(|err| program_failure("TCX attach to lo egress", &err));
    let clsact = tc::qdisc_add_clsact("lo")
        .map_err(|err| Failure::text(format!("add clsact qdisc on lo: {}", error_chain(&err))))
        .and_then(|()| {
            prog.attach_with_options(
                "lo",
                TcAttachType::Egress,
                TcAttachOptions::Netlink(NlOptions::default()),
            )
            .map_err(|err| program_failure("netlink attach to lo egress (clsact)", &err))
        })
        .map(|link| {
            let _ = prog.detach(link);
            "attached to lo egress through a clsact qdisc".to_owned()
        });
    (tcx, clsact)
}

/// Installs the root qdisc `kind` on `lo` over rtnetlink (with `options` as its raw
/// `TCA_OPTIONS`), which also makes the kernel load the qdisc's module if it is one; must run
/// inside the throw-away namespace.
fn qdisc(kind: &str, options: Vec<u8>) -> Outcome {
    use crate::packet::qdisc;
    let shown = format!("a root `{kind}` qdisc on lo (rtnetlink)");
    qdisc::replace("lo", qdisc::ROOT, kind, options).map_err(|err| {
        let mut fail = Failure::io(&format!("{shown} in a throw-away network namespace"), &err);
        if fail.errno == Some(Errno::ENOENT) {
            // The kernel's answer to an unknown qdisc kind (extack: "Specified qdisc kind is
            // unknown."), after trying to load its module.
            fail.message = format!("{shown}: the kernel does not know this qdisc (ENOENT)");
        }
        fail
    })?;
    let horizon = qdisc::list("lo").ok().and_then(|qdiscs| {
        qdiscs
            .into_iter()
            .find(|q| q.parent == qdisc::ROOT && q.kind == "fq")?
            .option_u32(crate::packet::TCA_FQ_HORIZON)
    });
    Ok(match horizon {
        Some(us) => format!(
            "{shown} works; default horizon {} (later packets are dropped)",
            humantime::format_duration(std::time::Duration::from_micros(us.into()))
        ),
        None => format!("{shown} works"),
    })
}
