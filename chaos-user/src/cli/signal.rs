//! `chaos inject signal`: signal a target at chosen calls of any syscall.
use std::process::ExitCode;

use chaos_common::HitCounter;
use syscalls::Sysno;

use super::inject::{FilterArgs, InjectRequest, Injectable, RunArgs, ScheduleArgs, sum_counters};
use super::target::TargetArgs;
use crate::{
    fault::{SignalFault, SignalNumber, parse_any_syscalls},
    loader::PlannedRule,
    report::{FaultReport, Report},
    target::CgroupTarget,
};

/// Options of `chaos inject signal`.
#[derive(Debug, clap::Args)]
// The schedule options are shared with `inject syscall`; here they say what this kind
// does to a chosen call.
#[command(mut_arg("probability", |a| a.help("Signal each eligible call with this probability, in (0, 1]")))]
#[command(mut_arg("every", |a| a.help("Signal the Nth eligible call and every Nth after it (with --after A: calls A+N, A+2N, ...); 1 = each")))]
#[command(mut_arg("when", |a| a.help("strace's when=: which matching calls to signal, counted from 1: FIRST (that one), FIRST..LAST, FIRST+ (FIRST and after), FIRST+STEP (FIRST, FIRST+STEP, ...), FIRST..LAST+STEP")))]
#[command(mut_arg("max_hits", |a| a.help("Stop signalling calls after N")))]
#[command(
    after_help = "The signal is raised at the syscall's entry, before the call runs. A \
    fatal signal ends the process when the call returns to user space, or interrupts the call \
    if it waits; a call that completes without waiting (fsync on most filesystems) still takes \
    effect. Only --comm filters calls here.\n\n\
    Examples:\n  \
    chaos inject signal --syscall fsync --signal SIGKILL --after 99 -- ./db\n  \
    chaos inject signal --syscall write --signal SIGSEGV --thread --comm worker --pid 1234"
)]
pub struct SignalArgs {
    /// Syscalls whose entry is watched: any Linux x86_64 syscall by name as in `man 2`, or
    /// classes %file, %net, %read, %write (comma separated).
    #[arg(long, required = true, value_parser = parse_syscalls, value_name = "NAME[,NAME...]")]
    pub syscall: ::std::vec::Vec<Sysno>,
    /// The signal: a name (SIGKILL, KILL, SIGABRT, ...) or a number in 1..=64.
    #[arg(long, default_value = "SIGKILL")]
    pub signal: SignalNumber,
    /// Signal only the calling thread (bpf_send_signal_thread), not the whole process.
    #[arg(long)]
    pub thread: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_syscalls(s: &str) -> Result<Vec<Sysno>, crate::Error> {
    parse_any_syscalls(s)
}

/// Runs `chaos inject signal`.
pub fn run(args: SignalArgs) -> anyhow::Result<ExitCode> {
    request(args).run()
}

/// The fault, run options and target of `chaos inject signal`.
pub(crate) fn request(args: SignalArgs) -> InjectRequest {
    let fault = SignalFault {
        syscalls: args.syscall.clone(),
        signal: args.signal,
        thread: args.thread,
        filter: args.filter.spec(),
        schedule: args.schedule.schedule(),
        dry_run: args.run.dry_run,
        deadline: Some(args.run.duration),
    };
    InjectRequest {
        fault: Box::new(fault),
        run: args.run,
        target: args.target,
    }
}

impl SignalFault {
    fn effect(&self) -> String {
        format!(
            "{}{}",
            self.signal,
            if self.thread { " (thread)" } else { "" }
        )
    }
}

impl Injectable for SignalFault {
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, crate::Error> {
        SignalFault::rules(self, target)
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.syscalls.iter().map(|s| s.name()).collect();
        format!(
            "{} -> {}{}",
            names.join(","),
            self.effect(),
            if self.dry_run { " (dry run)" } else { "" }
        )
    }

    fn report(
        &self,
        target: &CgroupTarget,
        rules: &[PlannedRule],
        counters: &[HitCounter],
    ) -> Report {
        Report {
            faults: self
                .syscalls
                .iter()
                .map(|sysno| {
                    let (matched, injected) = sum_counters(rules, counters, sysno.name());
                    FaultReport {
                        kind: "signal",
                        syscall: sysno.name().to_owned(),
                        errno: String::new(),
                        effect: Some(self.effect()),
                        target: target.path.display().to_string(),
                        dry_run: self.dry_run,
                        matched,
                        injected,
                    }
                })
                .collect(),
        }
    }
}
