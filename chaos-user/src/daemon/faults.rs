//! The daemon's active faults: each one an [`Injector`] of its own (all or nothing, detached
//! when dropped), with its deadline and who asked for it.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::bail;
use clap::Parser as _;

use super::api::{FaultStatus, SyscallCounters};
use crate::{
    cli::inject::{InjectArgs, InjectCommand},
    fault::SyscallFault,
    loader::{Injector, PlannedRule},
    target::CgroupTarget,
};

/// A fault parsed and resolved, not yet attached.
pub struct PlannedFault {
    kind: &'static str,
    fault: SyscallFault,
    target: CgroupTarget,
    rules: Vec<PlannedRule>,
    duration: Duration,
}

impl PlannedFault {
    /// Parses `chaos inject` arguments with the CLI's own parser and resolves the target
    /// (with its guards). Errors are the CLI's messages.
    pub fn from_args(args: &[String]) -> anyhow::Result<PlannedFault> {
        let request = InjectArgs::try_parse_from(args).map_err(|e| anyhow::anyhow!("{e}"))?;
        #[allow(unreachable_patterns)] // Other fault kinds join here as the daemon learns them.
        match request.command {
            InjectCommand::Syscall(args) => {
                if !args.target.command.is_empty() {
                    bail!(
                        "a command after `--` runs under `chaos inject` itself, not in the \
                         daemon: give --cgroup, --pid, --container, --unit or --pod, or use \
                         --standalone"
                    );
                }
                let target = args.target.resolve()?;
                let fault = args.fault();
                let rules = fault.rules(&target)?;
                Ok(PlannedFault {
                    kind: "syscall",
                    fault,
                    target,
                    rules,
                    duration: args.run.duration,
                })
            }
            other => bail!("the daemon cannot run {other:?} faults yet; use --standalone"),
        }
    }

    /// Attaches the fault's programs (blocking: loads and attaches kernel programs).
    pub fn start(self, created_by: u32) -> anyhow::Result<ActiveFault> {
        let injector = Injector::start(&self.rules)?;
        Ok(ActiveFault {
            deadline: Instant::now() + self.duration,
            plan: self,
            injector,
            created_by,
        })
    }
}

/// A fault whose programs are attached.
pub struct ActiveFault {
    plan: PlannedFault,
    injector: Injector,
    deadline: Instant,
    created_by: u32,
}

impl ActiveFault {
    /// What it does, for logs and listings.
    pub fn description(&self) -> String {
        let fault = &self.plan.fault;
        let names: Vec<&str> = fault.syscalls.iter().map(|s| s.name()).collect();
        format!(
            "{} -> {}{}",
            names.join(","),
            fault.errno,
            if fault.dry_run { " (dry run)" } else { "" }
        )
    }

    /// The target cgroup directory.
    pub fn target(&self) -> String {
        self.plan.target.path.display().to_string()
    }

    /// Whether its deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Its state with the counters read from the kernel now.
    pub fn status(&self, id: u64) -> anyhow::Result<FaultStatus> {
        let counters = self.injector.counters()?;
        let fault = &self.plan.fault;
        let syscalls: Vec<SyscallCounters> = fault
            .syscalls
            .iter()
            .map(|syscall| {
                // A syscall with several hooks (unlinkat) has one rule per hook.
                let (matched, injected) = self
                    .plan
                    .rules
                    .iter()
                    .zip(&counters)
                    .filter(|(rule, _)| rule.label == syscall.name())
                    .fold((0, 0), |(m, i), (_, c)| (m + c.matched, i + c.injected));
                SyscallCounters {
                    syscall: syscall.name().to_owned(),
                    errno: fault.errno.to_string(),
                    matched,
                    injected,
                }
            })
            .collect();
        Ok(FaultStatus {
            id,
            kind: self.plan.kind.to_owned(),
            description: self.description(),
            target: self.target(),
            dry_run: fault.dry_run,
            created_by: self.created_by,
            remaining_secs: self
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
            matched: syscalls.iter().map(|s| s.matched).sum(),
            injected: syscalls.iter().map(|s| s.injected).sum(),
            syscalls,
        })
    }
}

/// The active faults by id. Removing a fault from here drops its injector, which detaches it.
#[derive(Default)]
pub struct ActiveFaults {
    next_id: u64,
    faults: BTreeMap<u64, ActiveFault>,
}

impl ActiveFaults {
    /// How many are active.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Adds a started fault and returns its id.
    pub fn insert(&mut self, fault: ActiveFault) -> u64 {
        self.next_id += 1;
        self.faults.insert(self.next_id, fault);
        self.next_id
    }

    /// The fault with this id.
    pub fn get(&self, id: u64) -> Option<&ActiveFault> {
        self.faults.get(&id)
    }

    /// Every fault, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &ActiveFault)> {
        self.faults.iter().map(|(id, f)| (*id, f))
    }

    /// Removes (and so detaches) one fault.
    pub fn remove(&mut self, id: u64) -> Option<ActiveFault> {
        self.faults.remove(&id)
    }

    /// Removes the faults whose deadline passed, returning them so the caller can log them.
    pub fn remove_expired(&mut self, now: Instant) -> Vec<(u64, ActiveFault)> {
        let expired: Vec<u64> = self
            .faults
            .iter()
            .filter(|(_, f)| f.expired(now))
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.faults.remove(&id).map(|f| (id, f)))
            .collect()
    }

    /// Removes (and so detaches) everything.
    pub fn clear(&mut self) -> Vec<(u64, ActiveFault)> {
        std::mem::take(&mut self.faults).into_iter().collect()
    }
}
