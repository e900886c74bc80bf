//! What this kernel allows: `chaos doctor` tries each mechanism the fault kinds need (loads
//! the real programs, attaches probes to a throw-away cgroup and network namespace, installs
//! qdiscs there) and reports, per fault kind, whether it works here, how, and if not, why and
//! what would fix it.
//!
//! [`examine`] gathers raw [`Facts`]; [`Report::from_facts`] turns them into verdicts without
//! touching the kernel, so the reasoning can be tested with made-up facts.
use std::path::PathBuf;

use serde::Serialize;

use crate::{
    fault::{Mechanism, Syscall},
    loader::HookMechanism,
    mountinfo,
};

mod parse;
mod probe;
mod verdict;

pub use parse::KernelVersion;
pub use probe::{ActiveLsms, Failure, NetnsFacts, Outcome};

/// Why the doctor cannot run at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "chaos doctor needs root (or CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN) to load and attach \
     programs; this process lacks {missing}"
)]
pub struct NotPrivileged {
    /// The missing capabilities, e.g. `CAP_BPF, CAP_SYS_ADMIN`.
    pub missing: String,
}

/// Checks that this process can load programs, create cgroups and network namespaces.
/// Capabilities rather than uid 0, since root with a reduced bounding set (containers) fails
/// just the same.
pub fn require_privileges() -> Result<(), NotPrivileged> {
    use parse::cap;
    let Some(caps) = probe::effective_caps() else {
        // No /proc/self/status: nothing else will work either, but let the probes say so.
        return Ok(());
    };
    // CAP_BPF exists since 5.8; before that CAP_SYS_ADMIN covers BPF.
    let cap_bpf_exists =
        parse::kernel_version(&probe::kernel_release()).is_none_or(|v| v >= (5, 8, 0));
    let missing: Vec<&str> = [
        (cap::BPF, "CAP_BPF", cap_bpf_exists),
        (cap::SYS_ADMIN, "CAP_SYS_ADMIN", true),
        (cap::NET_ADMIN, "CAP_NET_ADMIN", true),
    ]
    .into_iter()
    .filter(|&(bit, _, needed)| needed && !parse::has_cap(caps, bit))
    .map(|(_, name, _)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NotPrivileged {
            missing: missing.join(", "),
        })
    }
}

/// Everything the probes found, before any interpretation.
#[derive(Clone, Debug)]
pub struct Facts {
    /// `uname -r`.
    pub release: String,
    /// The release's version numbers, if they parse.
    pub version: Option<KernelVersion>,
    /// The kernel's BTF parsed.
    pub btf: Outcome,
    /// Where the cgroup v2 hierarchy is mounted.
    pub cgroup2: Option<PathBuf>,
    /// Where bpffs is mounted.
    pub bpffs: Option<PathBuf>,
    /// Where securityfs is mounted.
    pub securityfs: Option<PathBuf>,
    /// Where tracefs is mounted.
    pub tracefs: Option<PathBuf>,
    /// The active LSMs.
    pub lsms: Result<ActiveLsms, Failure>,
    /// The embedded eBPF object parsed and its maps created.
    pub object: Outcome,
    /// A child cgroup could be made to attach probes to.
    pub temp_cgroup: Outcome,
    /// `chaos_file_open` (lsm) loaded.
    pub lsm_file_open: Outcome,
    /// `chaos_fmod_file_open` (fmod_ret on security_file_open) loaded.
    pub fmod_ret_file_open: Outcome,
    /// `chaos_connect4` (cgroup sock_addr) loaded and attached.
    pub connect4: Outcome,
    /// `chaos_connect6` (cgroup sock_addr) loaded and attached.
    pub connect6: Outcome,
    /// The sock_create probe (cgroup sock) loaded and attached.
    pub sock_create: Outcome,
    /// The DNS fault's redirect programs (cgroup sock_addr connect, sendmsg and recvmsg,
    /// both families) loaded and attached.
    pub dns_redirect: Outcome,
    /// A loopback TCP connection listed with its cgroup and destroyed through sock_diag.
    pub tcp_destroy: Outcome,
    /// The cgroup_skb egress probe loaded and attached.
    pub cgroup_skb: Outcome,
    /// The raw_tracepoint sys_enter probe loaded and attached.
    pub sys_enter: Outcome,
    /// The cgroup v2 freezer exists.
    pub freezer: Outcome,
    /// Latency block mode's kfuncs, /dev/fuse and sleepable program (`probe::latency_block`).
    pub latency_block: Outcome,
    /// Classifier attachment and qdiscs, probed in a throw-away network namespace.
    pub net: NetnsFacts,
    /// What the verifier spent on each program (`loader::verifier_costs`; empty when the
    /// object did not load).
    pub programs: Vec<crate::loader::VerifierCost>,
}

/// Whether one fault kind works on this kernel.
#[derive(Clone, Debug, Serialize)]
pub struct FaultSupport {
    /// Stable identifier: the fault kind's name (`net-drop`, `latency`, ...), or for the
    /// `syscall` kind, its class: `syscall-file` or `syscall-socket`.
    pub kind: &'static str,
    /// Whether the kernel lets the mechanism work here.
    pub works: bool,
    /// How the fault is (or would be) injected; when it works, the variant in use.
    pub mechanism: String,
    /// Why it does not work (`None` when it works).
    pub why: Option<String>,
    /// What would make it work (`None` when it works).
    pub fix: Option<String>,
    /// For faults on the kernel's security hooks: how chaos reaches them on this kernel
    /// (`lsm` or `fmod-ret`), the same choice `chaos inject` makes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_mechanism: Option<HookMechanism>,
    /// For syscall faults: the syscalls this mechanism fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<&'static str>,
}

/// The syscalls that the mechanism behind doctor row `kind` fails.
fn syscalls_of(kind: &str) -> Vec<&'static str> {
    let mechanism = match kind {
        "syscall-file" => Mechanism::Lsm,
        "syscall-socket" => Mechanism::Cgroup,
        _ => return Vec::new(),
    };
    Syscall::supported_by(mechanism)
}

/// One raw fact about the kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked, e.g. `prog lsm/file_open`.
    pub name: String,
    /// Whether it is there / worked.
    pub ok: bool,
    /// The value found, or the error.
    pub detail: String,
}

/// The doctor's findings, in the shape `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The kernel release.
    pub kernel: String,
    /// One entry per fault kind.
    pub faults: Vec<FaultSupport>,
    /// The raw facts behind them.
    pub checks: Vec<Check>,
    /// Per program: `verified_insns` (what loading costs the verifier, most of a fault's
    /// arm time; Linux 5.16+), load time, or why this kernel refused it.
    pub programs: Vec<crate::loader::VerifierCost>,
}

/// The kernel's active LSMs, from securityfs where it is mounted, else through a temporary
/// mount (the machine is left as it was).
pub fn active_lsm_list() -> Result<ActiveLsms, Failure> {
    let mounts = probe::mounts().unwrap_or_default();
    let securityfs = mountinfo::mount_point_of(&mounts, "securityfs");
    probe::active_lsms(securityfs.as_deref())
}

/// Probes the running kernel. Needs the privileges [`require_privileges`] checks; without them
/// the probes still run but report the refusals.
pub fn examine() -> Facts {
    let release = probe::kernel_release();
    let version = parse::kernel_version(&release);
    let btf = probe::vmlinux_btf();
    let mounts = probe::mounts().unwrap_or_default();
    let cgroup2 = mountinfo::mount_point_of(&mounts, "cgroup2");
    let securityfs = mountinfo::mount_point_of(&mounts, "securityfs");
    let lsms = probe::active_lsms(securityfs.as_deref());

    let mut object = probe::load_object();
    let temp_cgroup = match &cgroup2 {
        Some(_) => probe::TempCgroup::create(),
        None => Err(Failure::text("no cgroup v2 hierarchy is mounted")),
    };

    // A missing prerequisite fails every probe that needs it, with that as the reason.
    let with_btf = |ebpf: &mut aya::Ebpf, f: fn(&mut aya::Ebpf, &aya::Btf) -> Outcome| match &btf {
        Ok(btf) => f(ebpf, btf),
        Err(fail) => Err(fail.clone()),
    };
    let (lsm_file_open, fmod_ret_file_open, sys_enter) = match object.as_mut() {
        Ok(ebpf) => (
            with_btf(ebpf, probe::lsm_file_open),
            with_btf(ebpf, probe::fmod_ret_file_open),
            probe::sys_enter(ebpf),
        ),
        Err(fail) => (Err(fail.clone()), Err(fail.clone()), Err(fail.clone())),
    };
    let cgroup_probe =
        |object: &mut Result<aya::Ebpf, Failure>,
         f: &dyn Fn(&mut aya::Ebpf, &probe::TempCgroup) -> Outcome| {
            let ebpf = object.as_mut().map_err(|fail| fail.clone())?;
            let cgroup = temp_cgroup.as_ref().map_err(Clone::clone)?;
            f(ebpf, cgroup)
        };
    let connect4 = cgroup_probe(&mut object, &|e, c| {
        probe::sock_addr(e, "chaos_connect4", c)
    });
    let connect6 = cgroup_probe(&mut object, &|e, c| {
        probe::sock_addr(e, "chaos_connect6", c)
    });
    let sock_create = cgroup_probe(&mut object, &probe::sock_create);
    let dns_redirect = cgroup_probe(&mut object, &|e, c| {
        for name in [
            "chaos_dns_connect4",
            "chaos_dns_sendmsg4",
            "chaos_dns_recvmsg4",
            "chaos_dns_connect6",
            "chaos_dns_sendmsg6",
            "chaos_dns_recvmsg6",
        ] {
            probe::sock_addr(e, name, c)?;
        }
        Ok("connect, sendmsg and recvmsg (4 and 6) loaded and attached".into())
    });
    let tcp_destroy = crate::tcp_reset::probe().map_err(Failure::text);
    let cgroup_skb = cgroup_probe(&mut object, &probe::cgroup_skb);
    let freezer = temp_cgroup
        .as_ref()
        .map_err(Clone::clone)
        .and_then(probe::freezer);
    let latency_block = match &btf {
        Ok(btf) => probe::latency_block(btf),
        Err(fail) => Err(fail.clone()),
    };

    let classifier = match object.as_mut() {
        Ok(ebpf) => probe::classifier(ebpf),
        Err(fail) => Err(fail.clone()),
    };
    let net = probe::in_netns(classifier);

    Facts {
        release,
        version,
        btf: btf.map(|_| format!("{} parses", crate::btf::VMLINUX_BTF)),
        cgroup2,
        bpffs: mountinfo::mount_point_of(&mounts, "bpf"),
        securityfs,
        tracefs: mountinfo::mount_point_of(&mounts, "tracefs"),
        lsms,
        object: object.map(|_| "parsed; maps created".into()),
        temp_cgroup: temp_cgroup.map(|c| format!("created and removed {}", c.path().display())),
        lsm_file_open,
        fmod_ret_file_open,
        connect4,
        connect6,
        sock_create,
        dns_redirect,
        tcp_destroy,
        cgroup_skb,
        sys_enter,
        freezer,
        latency_block,
        net,
        programs: crate::loader::verifier_costs().unwrap_or_default(),
    }
}

impl Report {
    /// Judges each fault kind from the facts.
    pub fn from_facts(facts: &Facts) -> Report {
        let mut report = Report {
            kernel: facts.release.clone(),
            faults: vec![
                verdict::syscall_file(facts),
                verdict::syscall_socket(facts),
                verdict::packet_drop(facts),
                verdict::packet_delay(facts),
                verdict::packet_rate(facts),
                verdict::packet_corrupt(facts),
                verdict::packet_duplicate(facts),
                verdict::syscall_latency(facts),
                verdict::signal(facts),
                verdict::dns(facts),
                verdict::tcp_reset(facts),
            ],
            checks: checks(facts),
            programs: facts.programs.clone(),
        };
        for fault in &mut report.faults {
            fault.syscalls = syscalls_of(fault.kind);
        }
        report
    }
}

fn check(name: &str, outcome: &Outcome) -> Check {
    match outcome {
        Ok(detail) => Check {
            name: name.into(),
            ok: true,
            detail: detail.clone(),
        },
        Err(fail) => Check {
            name: name.into(),
            ok: false,
            detail: fail.message.clone(),
        },
    }
}

fn mount_check(name: &str, mount: &Option<PathBuf>) -> Check {
    Check {
        name: name.into(),
        ok: mount.is_some(),
        detail: match mount {
            Some(path) => format!("mounted at {}", path.display()),
            None => "not mounted".into(),
        },
    }
}

fn checks(facts: &Facts) -> Vec<Check> {
    let lsm = match &facts.lsms {
        Ok(lsms) => Check {
            name: "active LSMs".into(),
            ok: lsms.list.iter().any(|l| l == "bpf"),
            detail: format!("{} (from {})", lsms.list.join(","), lsms.source),
        },
        Err(fail) => Check {
            name: "active LSMs".into(),
            ok: false,
            detail: fail.message.clone(),
        },
    };
    let tcx_detail = |outcome: &Outcome| -> Outcome {
        match (outcome, verdict::release_is_older(facts, (6, 6, 0))) {
            (Err(fail), true) => Err(Failure::text(format!(
                "{} (TCX needs 6.6+, this is {})",
                fail.message, facts.release
            ))),
            _ => outcome.clone(),
        }
    };
    vec![
        Check {
            name: "kernel".into(),
            ok: facts.version.is_some(),
            detail: facts.release.clone(),
        },
        check("BTF", &facts.btf),
        mount_check("cgroup v2", &facts.cgroup2),
        mount_check("bpffs", &facts.bpffs),
        mount_check("securityfs", &facts.securityfs),
        mount_check("tracefs", &facts.tracefs),
        lsm,
        check("eBPF object", &facts.object),
        check("temporary cgroup", &facts.temp_cgroup),
        check("prog lsm/file_open", &facts.lsm_file_open),
        check(
            "prog fmod_ret/security_file_open",
            &facts.fmod_ret_file_open,
        ),
        check("prog cgroup_sock_addr/connect4", &facts.connect4),
        check("prog cgroup_sock_addr/connect6", &facts.connect6),
        check("prog cgroup_sock/sock_create", &facts.sock_create),
        check("prog dns redirect", &facts.dns_redirect),
        check("sock_diag SOCK_DESTROY", &facts.tcp_destroy),
        check("prog cgroup_skb/egress", &facts.cgroup_skb),
        check("prog raw_tracepoint/sys_enter", &facts.sys_enter),
        check("prog tc via TCX", &tcx_detail(&facts.net.tcx)),
        check("prog tc via clsact", &facts.net.clsact),
        check("qdisc fq", &facts.net.fq),
        check("qdisc netem", &facts.net.netem),
        check("cgroup v2 freezer", &facts.freezer),
        check("latency block mode", &facts.latency_block),
    ]
}

#[cfg(test)]
mod tests {
    use nix::errno::Errno;

    use super::*;

    fn ok(s: &str) -> Outcome {
        Ok(s.into())
    }

    fn fail(errno: Option<Errno>, s: &str) -> Outcome {
        Err(Failure {
            errno,
            message: s.into(),
        })
    }

    /// What this project's 6.18 host reports (see PLATFORM.md).
    fn host() -> Facts {
        Facts {
            release: "6.18.44".into(),
            version: Some((6, 18, 44)),
            btf: ok("parses"),
            cgroup2: Some("/sys/fs/cgroup/unified".into()),
            bpffs: None,
            securityfs: None,
            tracefs: None,
            lsms: Ok(ActiveLsms {
                list: parse::lsm_list("lockdown,capability,landlock,yama,bpf"),
                source: "test".into(),
            }),
            object: ok("parsed"),
            temp_cgroup: ok("made"),
            lsm_file_open: fail(Some(Errno::EPERM), "BPF_PROG_LOAD: EPERM"),
            fmod_ret_file_open: fail(Some(Errno::EPERM), "BPF_PROG_LOAD: EPERM"),
            connect4: ok("attached"),
            connect6: ok("attached"),
            sock_create: ok("attached"),
            dns_redirect: ok("attached"),
            tcp_destroy: ok("destroyed"),
            cgroup_skb: ok("attached"),
            sys_enter: ok("attached"),
            freezer: ok("present"),
            latency_block: fail(Some(Errno::EPERM), "load lsm.s/file_open: EPERM"),
            net: NetnsFacts {
                tcx: ok("attached"),
                clsact: ok("attached"),
                fq: fail(None, "Specified qdisc kind is unknown."),
                netem: fail(None, "Specified qdisc kind is unknown."),
            },
            programs: Vec::new(),
        }
    }

    fn verdict<'a>(report: &'a Report, kind: &str) -> &'a FaultSupport {
        report.faults.iter().find(|f| f.kind == kind).unwrap()
    }

    #[test]
    fn host_has_socket_faults_but_no_file_faults_or_delay() {
        let report = Report::from_facts(&host());
        let file = verdict(&report, "syscall-file");
        assert!(!file.works);
        assert!(file.why.as_deref().unwrap().contains("trampoline"));
        assert!(
            file.fix
                .as_deref()
                .unwrap()
                .contains("lsm=lockdown,capability,bpf")
        );
        assert!(verdict(&report, "syscall-socket").works);
        assert!(verdict(&report, "net-drop").works);
        let delay = verdict(&report, "net-delay");
        assert!(!delay.works);
        assert!(
            delay
                .why
                .as_deref()
                .unwrap()
                .contains("netem is absent too")
        );
        assert!(!verdict(&report, "net-rate").works);
        assert!(verdict(&report, "net-corrupt").works);
        assert!(verdict(&report, "net-duplicate").works);
        assert!(verdict(&report, "latency").works);
        assert!(verdict(&report, "signal").works);
        assert!(verdict(&report, "dns").works);
        assert!(verdict(&report, "tcp-reset").works);
        assert!(report.faults.iter().all(|f| f.works == f.why.is_none()));
    }

    #[test]
    fn without_bpf_lsm_file_faults_go_through_fmod_ret_and_block_mode_says_why_not() {
        let mut facts = host();
        facts.lsms = Ok(ActiveLsms {
            list: parse::lsm_list("lockdown,capability,apparmor"),
            source: "test".into(),
        });
        // BPF LSM programs load there, and never run: the doctor must not count on them.
        facts.lsm_file_open = ok("loaded");
        facts.fmod_ret_file_open = ok("loaded");
        let report = Report::from_facts(&facts);
        let file = verdict(&report, "syscall-file");
        assert!(file.works);
        assert_eq!(file.hook_mechanism, Some(HookMechanism::FmodRet));
        assert!(
            file.mechanism.contains("without `bpf`"),
            "{}",
            file.mechanism
        );
        facts.fmod_ret_file_open = fail(Some(Errno::EPERM), "BPF_PROG_LOAD: EPERM");
        let file = verdict(&Report::from_facts(&facts), "syscall-file").clone();
        assert!(!file.works && file.why.unwrap().contains("trampoline"));
        let latency = verdict(&report, "latency");
        assert!(
            latency.mechanism.contains("BPF LSM is not active")
                && latency
                    .mechanism
                    .contains("lsm=lockdown,capability,apparmor,bpf"),
            "{}",
            latency.mechanism
        );
    }

    #[test]
    fn vm_kernel_without_tcx_uses_clsact() {
        let mut facts = host();
        facts.release = "6.1.0-47-amd64".into();
        facts.version = Some((6, 1, 0));
        facts.lsm_file_open = ok("loaded");
        facts.net.tcx = fail(Some(Errno::EINVAL), "bpf_link_create: EINVAL");
        facts.net.fq = ok("works");
        let report = Report::from_facts(&facts);
        assert!(verdict(&report, "syscall-file").works);
        assert!(verdict(&report, "net-delay").works);
        assert!(verdict(&report, "net-rate").works);
        let corrupt = verdict(&report, "net-corrupt");
        assert!(corrupt.works && corrupt.mechanism.contains("clsact"));
        let tcx = report
            .checks
            .iter()
            .find(|c| c.name == "prog tc via TCX")
            .unwrap();
        assert!(!tcx.ok && tcx.detail.contains("6.6+"));
    }

    #[test]
    fn latency_reports_block_mode_where_it_loads() {
        let report = Report::from_facts(&host());
        let latency = verdict(&report, "latency");
        assert!(latency.works);
        assert!(latency.mechanism.contains("block mode unavailable"));
        let mut facts = host();
        facts.latency_block = ok("loaded");
        let report = Report::from_facts(&facts);
        let latency = verdict(&report, "latency");
        assert!(latency.mechanism.contains("block mode works here"));
        let check = report
            .checks
            .iter()
            .find(|c| c.name == "latency block mode")
            .unwrap();
        assert!(check.ok);
    }

    #[test]
    fn json_shape_is_stable() {
        let json = serde_json::to_value(Report::from_facts(&host())).unwrap();
        assert!(json["kernel"].is_string());
        let fault = &json["faults"][0];
        for key in ["kind", "works", "mechanism", "why", "fix"] {
            assert!(fault.get(key).is_some(), "missing {key}");
        }
        let check = &json["checks"][0];
        for key in ["name", "ok", "detail"] {
            assert!(check.get(key).is_some(), "missing {key}");
        }
    }
}
