//! What the faults did: per fault, how many calls matched and how many were failed.
use std::fmt;

use serde::Serialize;

/// The outcome of one run of `chaos inject`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// One entry per fault (per syscall for syscall faults).
    pub faults: Vec<FaultReport>,
}

/// The counters of one fault.
#[derive(Clone, Debug, Serialize)]
pub struct FaultReport {
    /// The fault kind: `syscall`, `signal`, `latency`.
    pub kind: &'static str,
    /// The syscall it fails.
    pub syscall: String,
    /// The errno it fails with, by name where one exists (syscall faults).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub errno: String,
    /// What other faults do to a call: the signal sent, the delay and its mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counted.
    pub dry_run: bool,
    /// Calls from the target that matched.
    pub matched: u64,
    /// Calls failed (would have been, in a dry run).
    pub injected: u64,
    /// How the programs reach the kernel's security hooks (`lsm` or `fmod-ret`), for faults
    /// that use them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<crate::loader::HookMechanism>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<8} {:<10} {:<14} {:>9} {:>9}  target",
            "kind", "syscall", "effect", "matched", "injected"
        )?;
        for fault in &self.faults {
            let effect = fault.effect.as_deref().unwrap_or(&fault.errno);
            let errno = if fault.dry_run {
                format!("{effect} (dry)")
            } else {
                effect.to_owned()
            };
            writeln!(
                f,
                "{:<8} {:<10} {:<14} {:>9} {:>9}  {}",
                fault.kind, fault.syscall, errno, fault.matched, fault.injected, fault.target
            )?;
        }
        Ok(())
    }
}

/// What a packet fault did, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct NetFaultReport {
    /// The fault kind: `net-drop`, `net-delay`, `net-rate`, `net-duplicate`, `net-corrupt`.
    pub kind: &'static str,
    /// The fault in words.
    pub fault: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counted.
    pub dry_run: bool,
    /// Packets of the target that matched the filters.
    pub seen: u64,
    /// Packets dropped, delayed, paced, copied or corrupted (would have been, in a dry run).
    pub affected: u64,
    /// Bytes of the affected packets.
    pub bytes: u64,
}

/// The outcome of one packet fault.
#[derive(Clone, Debug, Serialize)]
pub struct NetReport {
    /// One entry per fault.
    pub faults: Vec<NetFaultReport>,
}

impl fmt::Display for NetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>12}  fault; target",
            "kind", "seen", "affected", "bytes"
        )?;
        for fault in &self.faults {
            writeln!(
                f,
                "{:<10} {:>9} {:>9} {:>12}  {}; {}",
                fault.kind, fault.seen, fault.affected, fault.bytes, fault.fault, fault.target
            )?;
        }
        Ok(())
    }
}

/// The report of a fault of either engine, as `chaos inject` prints it.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum AnyReport {
    /// Syscall, signal and latency faults: per syscall.
    Rules(Report),
    /// Packet faults.
    Net(NetReport),
    /// DNS faults.
    Dns(crate::dns::DnsReport),
    /// TCP reset faults.
    TcpReset(crate::tcp_reset::TcpResetReport),
}

impl fmt::Display for AnyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyReport::Rules(r) => r.fmt(f),
            AnyReport::Net(r) => r.fmt(f),
            AnyReport::Dns(r) => r.fmt(f),
            AnyReport::TcpReset(r) => r.fmt(f),
        }
    }
}
