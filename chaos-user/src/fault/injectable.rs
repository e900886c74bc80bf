//! [`Injectable`]: a fault that becomes rules of the syscall engine (syscall, signal, latency),
//! with the one report builder they share.
use chaos_common::HitCounter;

use super::{LatencyFault, LatencyMode, SignalFault, SyscallFault, block::BlockFault};
use crate::{
    Error,
    loader::{HookMechanism, Injector, PlannedRule},
    pause::Resumer,
    report::{FaultReport, Report},
    spec::FaultKind,
    target::CgroupTarget,
};

/// Whatever a fault keeps running beside its programs until it ends (see
/// [`Injectable::started`]); only its drop matters.
pub type Running = Box<dyn std::any::Any + Send>;

/// A fault made of kernel rules that reports its counters.
pub trait Injectable {
    /// Its kind.
    fn kind(&self) -> FaultKind;
    /// The kernel rules against `target`.
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error>;
    /// The syscalls it acts on, by name: the labels of its rules, in order.
    fn labels(&self) -> Vec<&'static str>;
    /// What it does to a call: the errno, the signal, the delay.
    fn effect(&self) -> String;
    /// Whether it only counts.
    fn dry_run(&self) -> bool;
    /// Calls injected, from the rules' count (block mode delays every matching call).
    fn injected(&self, matched: u64, injected: u64) -> u64 {
        let _ = matched;
        injected
    }
    /// What must keep running beside the programs on `target` (continuing paused processes,
    /// block mode's FUSE server); dropped after the injector.
    fn started(
        &self,
        _injector: &mut Injector,
        _target: &CgroupTarget,
    ) -> Result<Option<Running>, Error> {
        Ok(None)
    }
    /// The mechanism the user forced for the security hooks' programs, if any.
    fn mechanism(&self) -> Option<HookMechanism> {
        None
    }

    /// One line saying what is injected, for the start message.
    fn describe(&self) -> String {
        format!(
            "{} -> {}{}",
            self.labels().join(","),
            self.effect(),
            if self.dry_run() { " (dry run)" } else { "" }
        )
    }

    /// The report from the counters of `rules` (same order): one entry per syscall, its
    /// hooks added up.
    fn report(
        &self,
        target: &CgroupTarget,
        rules: &[PlannedRule],
        counters: &[HitCounter],
    ) -> Report {
        let kind = self.kind();
        let effect = self.effect();
        Report {
            faults: self
                .labels()
                .into_iter()
                .map(|label| {
                    let (matched, injected) = sum_counters(rules, counters, label);
                    let errno = kind == FaultKind::Syscall;
                    FaultReport {
                        kind: kind.name(),
                        syscall: label.to_owned(),
                        errno: if errno { effect.clone() } else { String::new() },
                        effect: (!errno).then(|| effect.clone()),
                        target: target.path.display().to_string(),
                        dry_run: self.dry_run(),
                        matched,
                        injected: self.injected(matched, injected),
                        mechanism: None,
                    }
                })
                .collect(),
        }
    }
}

/// The counters of the rules labelled `label` added up: a syscall with several hooks
/// (unlinkat) has one rule per hook.
pub fn sum_counters(rules: &[PlannedRule], counters: &[HitCounter], label: &str) -> (u64, u64) {
    rules
        .iter()
        .zip(counters)
        .filter(|(rule, _)| rule.label == label)
        .fold((0, 0), |(m, i), (_, c)| (m + c.matched, i + c.injected))
}

impl Injectable for SyscallFault {
    fn kind(&self) -> FaultKind {
        FaultKind::Syscall
    }
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        SyscallFault::rules(self, target)
    }
    fn labels(&self) -> Vec<&'static str> {
        self.syscalls.iter().map(|s| s.name()).collect()
    }
    fn effect(&self) -> String {
        self.errno.to_string()
    }
    fn mechanism(&self) -> Option<HookMechanism> {
        self.mechanism
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl Injectable for SignalFault {
    fn kind(&self) -> FaultKind {
        FaultKind::Signal
    }
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        SignalFault::rules(self, target)
    }
    fn labels(&self) -> Vec<&'static str> {
        self.syscalls.iter().map(|s| s.name()).collect()
    }
    fn effect(&self) -> String {
        format!(
            "{}{}",
            self.signal,
            if self.thread { " (thread)" } else { "" }
        )
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
}

impl Injectable for LatencyFault {
    fn kind(&self) -> FaultKind {
        FaultKind::Latency
    }
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        LatencyFault::rules(self, target)
    }
    fn labels(&self) -> Vec<&'static str> {
        self.syscalls.iter().map(|s| s.name()).collect()
    }
    fn effect(&self) -> String {
        let mut out = humantime::format_duration(self.delay).to_string();
        if !self.jitter.is_zero() {
            out += &format!("±{}", humantime::format_duration(self.jitter));
        }
        format!("{out} {}", self.mode)
    }
    fn dry_run(&self) -> bool {
        self.dry_run
    }
    fn injected(&self, matched: u64, injected: u64) -> u64 {
        // Block mode's rules only count: every matching call is delayed by the block
        // programs (fault::block), unless this is a dry run.
        if self.mode == LatencyMode::Block && !self.dry_run {
            matched
        } else {
            injected
        }
    }
    fn started(
        &self,
        injector: &mut Injector,
        target: &CgroupTarget,
    ) -> Result<Option<Running>, Error> {
        Ok(match self.mode {
            LatencyMode::Pause => Some(Box::new(Resumer::start(injector.take_paused()?))),
            LatencyMode::Spin => None,
            LatencyMode::Block if self.dry_run => None,
            LatencyMode::Block => {
                let mount = std::env::temp_dir().join(format!(
                    "chaos-block-{}-{}",
                    std::process::id(),
                    target.id
                ));
                Some(Box::new(BlockFault::start(
                    target,
                    &self.syscalls,
                    self.delay,
                    &mount,
                )?))
            }
        })
    }
}
