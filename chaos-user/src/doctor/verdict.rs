//! The verdict on each fault kind, from the [`Facts`] alone: whether it works here, by which
//! mechanism, and if not, why and what would fix it. Nothing here touches the kernel, so the
//! reasoning is tested with made-up facts (`doctor::tests`).
use super::{Facts, Failure, FaultSupport, KernelVersion, parse};
use crate::loader::HookMechanism;

fn works(kind: &'static str, mechanism: impl Into<String>) -> FaultSupport {
    FaultSupport {
        kind,
        works: true,
        mechanism: mechanism.into(),
        why: None,
        fix: None,
        hook_mechanism: None,
        syscalls: Vec::new(),
    }
}

fn broken(
    kind: &'static str,
    mechanism: impl Into<String>,
    why: impl Into<String>,
    fix: impl Into<String>,
) -> FaultSupport {
    FaultSupport {
        kind,
        works: false,
        mechanism: mechanism.into(),
        why: Some(why.into()),
        fix: Some(fix.into()),
        hook_mechanism: None,
        syscalls: Vec::new(),
    }
}

pub(super) fn release_is_older(facts: &Facts, than: KernelVersion) -> bool {
    facts.version.is_some_and(|v| v < than)
}

const VM_KERNELS: &str = "e.g. Debian's 6.1 or 6.12 kernel booted with \
                          lsm=lockdown,capability,bpf (the project's VM tier)";

pub(super) fn syscall_file(facts: &Facts) -> FaultSupport {
    const KIND: &str = "syscall-file";
    const LSM: &str = "BPF LSM programs on the file, inode, exec, task and socket hooks \
         (file_open, file_permission, inode_unlink, bprm_check_security, task_alloc, \
         socket_sendmsg, ...)";
    const FMOD_RET: &str = "fmod_ret programs on the security_* functions behind the file, \
         inode, exec, task and socket hooks (security_file_open, security_file_permission, \
         security_inode_unlink, security_bprm_check, ...)";
    if let Err(fail) = &facts.btf {
        return broken(
            KIND,
            LSM,
            format!("no usable kernel BTF: {}", fail.message),
            "a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        );
    }
    // The same choice `chaos inject` makes.
    let list = facts.lsms.as_ref().map(|l| l.list.as_slice());
    let choice = crate::loader::choose_for(list.map_err(|f| f.message.as_str()), None)
        .expect("an automatic choice is never refused");
    let (mechanism, probe) = match choice.mechanism {
        HookMechanism::Lsm => (LSM, &facts.lsm_file_open),
        HookMechanism::FmodRet => (FMOD_RET, &facts.fmod_ret_file_open),
    };
    let mechanism = format!("{mechanism}; {}", choice.why);
    let mut support = match probe {
        Ok(_) => works(KIND, mechanism),
        Err(fail) if fail.errno == Some(nix::errno::Errno::EPERM) => broken(
            KIND,
            mechanism,
            format!(
                "the kernel refuses BPF trampoline programs (lsm, fentry/fexit, fmod_ret): {}",
                fail.message
            ),
            format!(
                "a kernel where BPF trampoline programs load, {VM_KERNELS}; socket syscall \
                 faults still work here through cgroup hooks"
            ),
        ),
        Err(fail) => broken(
            KIND,
            mechanism,
            format!(
                "the kernel refused the {} program: {}",
                choice.mechanism, fail.message
            ),
            format!("a kernel with BTF and BPF trampolines (5.7+), {VM_KERNELS}"),
        ),
    };
    support.hook_mechanism = Some(choice.mechanism);
    support
}

pub(super) fn syscall_socket(facts: &Facts) -> FaultSupport {
    const KIND: &str = "syscall-socket";
    const MECHANISM: &str = "cgroup sock_addr (connect, bind), sock (sock_create) and sockopt \
                             programs on the target cgroup; errno via bpf_set_retval (5.18+)";
    if facts.cgroup2.is_none() {
        return no_cgroup2(KIND, MECHANISM);
    }
    let failures: Vec<&Failure> = [&facts.connect4, &facts.connect6, &facts.sock_create]
        .into_iter()
        .filter_map(|o| o.as_ref().err())
        .collect();
    if failures.is_empty() {
        return works(KIND, MECHANISM);
    }
    let why = failures
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if release_is_older(facts, (5, 18, 0)) {
        broken(
            KIND,
            MECHANISM,
            format!(
                "{why} (bpf_set_retval needs 5.18+, this is {})",
                facts.release
            ),
            "a 5.18 or newer kernel",
        )
    } else {
        broken(
            KIND,
            MECHANISM,
            why,
            "a kernel with CONFIG_CGROUP_BPF=y that allows cgroup sock and sock_addr programs",
        )
    }
}

pub(super) fn dns(facts: &Facts) -> FaultSupport {
    const KIND: &str = "dns";
    const MECHANISM: &str = "cgroup sock_addr programs (connect, sendmsg, recvmsg) on the target \
                             cgroup redirect its DNS queries to chaos's responder in the \
                             target's network namespace";
    if facts.cgroup2.is_none() {
        return no_cgroup2(KIND, MECHANISM);
    }
    match &facts.dns_redirect {
        Ok(_) => works(KIND, MECHANISM),
        Err(fail) => broken(
            KIND,
            MECHANISM,
            fail.message.clone(),
            "a kernel with CONFIG_CGROUP_BPF=y that allows cgroup sock_addr programs \
             (recvmsg hooks: 4.19+)",
        ),
    }
}

pub(super) fn tcp_reset(facts: &Facts) -> FaultSupport {
    const KIND: &str = "tcp-reset";
    const MECHANISM: &str = "sock_diag lists the target's established TCP connections by cgroup \
                             and SOCK_DESTROY aborts them (the peer gets an RST); no kernel \
                             program";
    match &facts.tcp_destroy {
        Ok(_) => works(KIND, MECHANISM),
        Err(fail) => broken(
            KIND,
            MECHANISM,
            fail.message.clone(),
            "a 5.9+ kernel with CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG and \
             CONFIG_INET_DIAG_DESTROY (Debian's, Ubuntu's and Fedora's have them; as modules, \
             `modprobe tcp_diag` if nothing loaded them)",
        ),
    }
}

fn no_cgroup2(kind: &'static str, mechanism: &str) -> FaultSupport {
    broken(
        kind,
        mechanism,
        "no cgroup v2 hierarchy is mounted",
        "mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with \
         systemd.unified_cgroup_hierarchy=1",
    )
}

fn no_cgroup_skb(kind: &'static str, mechanism: &str, fail: &Failure) -> FaultSupport {
    broken(
        kind,
        mechanism,
        fail.message.clone(),
        "a kernel with CONFIG_CGROUP_BPF=y that allows cgroup_skb programs",
    )
}

pub(super) fn packet_drop(facts: &Facts) -> FaultSupport {
    const KIND: &str = "net-drop";
    const MECHANISM: &str = "cgroup_skb egress/ingress program on the target cgroup drops the \
                             picked packets (egress as local congestion, so TCP retransmits)";
    if facts.cgroup2.is_none() {
        return no_cgroup2(KIND, MECHANISM);
    }
    match &facts.cgroup_skb {
        Ok(_) => works(KIND, MECHANISM),
        Err(fail) => no_cgroup_skb(KIND, MECHANISM, fail),
    }
}

pub(super) fn packet_delay(facts: &Facts) -> FaultSupport {
    earliest_departure(
        facts,
        "net-delay",
        "cgroup_skb egress program sets skb->tstamp (EDT) to now + delay ± jitter; chaos makes \
         fq the root qdisc of the egress devices, which holds packets until then, and restores \
         the default root qdisc afterwards",
    )
}

pub(super) fn packet_rate(facts: &Facts) -> FaultSupport {
    earliest_departure(
        facts,
        "net-rate",
        "cgroup_skb egress program paces the target's packets by setting skb->tstamp (EDT) on \
         a timeline advancing by length / rate; chaos makes fq the root qdisc of the egress \
         devices and restores the default root qdisc afterwards",
    )
}

/// Faults that set a packet's earliest departure time: cgroup_skb plus the fq qdisc.
fn earliest_departure(facts: &Facts, kind: &'static str, mechanism: &str) -> FaultSupport {
    if facts.cgroup2.is_none() {
        return no_cgroup2(kind, mechanism);
    }
    if let Err(fail) = &facts.cgroup_skb {
        return no_cgroup_skb(kind, mechanism, fail);
    }
    match &facts.net.fq {
        Ok(detail) => works(
            kind,
            format!("{mechanism} ({detail}; chaos sets it above the delay)"),
        ),
        Err(fail) => {
            let netem = match &facts.net.netem {
                Ok(_) => "netem exists, but chaos delays through fq",
                Err(_) => "netem is absent too",
            };
            broken(
                kind,
                mechanism,
                format!("the fq qdisc is not available: {} ({netem})", fail.message),
                "a kernel with CONFIG_NET_SCH_FQ (module sch_fq), e.g. Debian's 6.1 or 6.12 \
                 (the project's VM tier)",
            )
        }
    }
}

pub(super) fn packet_corrupt(facts: &Facts) -> FaultSupport {
    tc_egress(
        facts,
        "net-corrupt",
        "tc classifier on the egress devices, keeping the target's packets by \
         bpf_skb_ancestor_cgroup_id, flips a payload bit with bpf_skb_store_bytes and leaves \
         the checksum as the original's (or fixes it with bpf_l4_csum_replace)",
    )
}

pub(super) fn packet_duplicate(facts: &Facts) -> FaultSupport {
    tc_egress(
        facts,
        "net-duplicate",
        "tc classifier on the egress devices, keeping the target's packets by \
         bpf_skb_ancestor_cgroup_id, sends a copy with bpf_clone_redirect",
    )
}

/// Faults done by the tc egress classifier: TCX on 6.6+, a clsact qdisc before.
fn tc_egress(facts: &Facts, kind: &'static str, mechanism: &str) -> FaultSupport {
    match (&facts.net.tcx, &facts.net.clsact) {
        (Ok(_), _) => works(kind, format!("{mechanism}; attached through TCX")),
        (Err(_), Ok(_)) => works(
            kind,
            format!(
                "{mechanism}; attached through a clsact qdisc that chaos adds and removes (no \
                 TCX: needs 6.6+)"
            ),
        ),
        (Err(tcx), Err(clsact)) => broken(
            kind,
            mechanism,
            format!("{}; {}", tcx.message, clsact.message),
            "a kernel with TCX (6.6+) or the clsact qdisc (CONFIG_NET_SCH_INGRESS) and \
             CONFIG_NET_CLS_BPF",
        ),
    }
}

pub(super) fn syscall_latency(facts: &Facts) -> FaultSupport {
    const KIND: &str = "latency";
    const MECHANISM: &str = "raw_tracepoint sys_enter program; modes: spin (the calling thread \
                             busy-waits with bpf_loop, at most 100ms, costs CPU), pause \
                             (SIGSTOP by bpf_send_signal, SIGCONT by chaos after the delay; \
                             whole process)";
    // Block mode (docs/latency-block-mode.md) has its own programs and kernel needs.
    let mechanism = match &facts.latency_block {
        Ok(_) => format!(
            "{MECHANISM}; block mode works here (--mode block: sleepable LSM programs and \
             chaos's FUSE server: only the calling thread sleeps, no CPU; open, connect, send \
             and receive calls)"
        ),
        Err(fail) => format!("{MECHANISM}; block mode unavailable: {}", fail.message),
    };
    let mechanism = match &facts.lsms {
        Ok(lsms) if !lsms.list.iter().any(|l| l == "bpf") => format!(
            "{MECHANISM}; block mode unavailable: BPF LSM is not active (the active LSMs are \
             {}): block mode's sleepable programs call kfuncs (bpf_get_file_xattr) that the \
             kernel allows only in LSM programs, so fmod_ret cannot stand in; boot with {} for it",
            lsms.list.join(","),
            parse::lsm_param_with_bpf(&lsms.list)
        ),
        _ => mechanism,
    };
    match &facts.sys_enter {
        Ok(_) => works(KIND, mechanism),
        Err(fail) => broken(
            KIND,
            mechanism,
            fail.message.clone(),
            "a kernel that allows raw_tracepoint programs and has bpf_loop (5.17+)",
        ),
    }
}

pub(super) fn signal(facts: &Facts) -> FaultSupport {
    const KIND: &str = "signal";
    const MECHANISM: &str = "raw_tracepoint sys_enter program counts matching syscalls and signals the \
                             Nth with bpf_send_signal or bpf_send_signal_thread";
    match &facts.sys_enter {
        Ok(_) => works(KIND, MECHANISM),
        Err(fail) => broken(
            KIND,
            MECHANISM,
            fail.message.clone(),
            "a kernel that allows raw_tracepoint programs and has bpf_loop (5.17+), which the \
             same program uses for latency",
        ),
    }
}
