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
