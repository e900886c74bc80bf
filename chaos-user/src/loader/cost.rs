//! What the verifier spends on each program: `verified_insns` (bpf_prog_info, Linux 5.16+),
//! the instructions it walked to accept the program. Loading is most of a fault's arm time,
//! and this is most of loading, so the benchmark reports it per program.
use aya::{
    Btf, Ebpf,
    programs::{CgroupSkb, Lsm, Program, RawTracePoint, SchedClassifier},
};

use super::EBPF_OBJECT;
use crate::Error;

/// One program's verifier cost on this kernel.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifierCost {
    /// The program's name (`chaos_*`).
    pub program: String,
    /// Its program type, as bpftool names it (`lsm`, `cgroup_sock_addr`, ...).
    pub program_type: &'static str,
    /// Instructions the verifier walked, or `None` where the kernel refused the program (or
    /// does not report the count); `error` then says why.
    pub verified_insns: Option<u32>,
    /// Wall time of the load (BPF_PROG_LOAD, verifier included), microseconds.
    pub load_us: u128,
    /// Why the program did not load here, if it did not.
    pub error: Option<String>,
}

/// Loads every program of the object once (without attaching) and reports what the verifier
/// spent on each. Programs this kernel refuses (LSM on the host) are listed with the error.
/// At this process's kernel log level ([`crate::kernel_log::set_level`]; `chaos doctor` runs
/// with it off).
pub fn verifier_costs() -> Result<Vec<VerifierCost>, Error> {
    let mut ebpf: Ebpf = crate::kernel_log::loader().load(EBPF_OBJECT)?;
    let btf = Btf::from_sys_fs().ok();
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
    let mut costs = Vec::new();
    for name in names {
        let prog = ebpf.program_mut(&name).expect("listed");
        let started = std::time::Instant::now();
        let (program_type, loaded) = match prog {
            Program::CgroupSockAddr(p) => ("cgroup_sock_addr", p.load()),
            Program::CgroupSock(p) => ("cgroup_sock", p.load()),
            Program::CgroupSockopt(p) => ("cgroup_sockopt", p.load()),
            Program::CgroupSkb(p) => ("cgroup_skb", CgroupSkb::load(p)),
            Program::SchedClassifier(p) => ("sched_cls", SchedClassifier::load(p)),
            Program::Lsm(p) => match (&btf, lsm_hook(&name)) {
                (Some(btf), Some(hook)) => ("lsm", Lsm::load(p, hook, btf)),
                _ => continue,
            },
            Program::RawTracePoint(p) => ("raw_tracepoint", RawTracePoint::load(p)),
            _ => continue,
        };
        let load_us = started.elapsed().as_micros();
        let (verified_insns, error) = match loaded {
            Ok(()) => (
                prog.info()
                    .ok()
                    .and_then(|info| info.verified_instruction_count()),
                None,
            ),
            Err(err) => (None, Some(err.to_string())),
        };
        costs.push(VerifierCost {
            program: name,
            program_type,
            verified_insns,
            load_us,
            error,
        });
    }
    costs.sort_by(|a, b| a.program.cmp(&b.program));
    Ok(costs)
}

/// The LSM hook of a `chaos_*` LSM program, from the loader's tables (block mode's programs
/// need their kfunc calls patched first, so they are not measured here).
fn lsm_hook(program: &str) -> Option<&'static str> {
    chaos_common::Hook::ALL
        .iter()
        .find_map(|hook| match super::programs(*hook) {
            (names, super::Attach::Lsm(lsm)) if names.contains(&program) => Some(lsm),
            _ => None,
        })
}
