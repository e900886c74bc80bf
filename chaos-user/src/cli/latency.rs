//! `chaos inject latency`: delay chosen calls of any syscall.
use std::{process::ExitCode, time::Duration};

use chaos_common::HitCounter;
use syscalls::Sysno;

use super::inject::{
    FilterArgs, InjectRequest, Injectable, RunArgs, Running, ScheduleArgs, sum_counters,
};
use super::target::TargetArgs;
use crate::{
    fault::{LatencyFault, LatencyMode, block::BlockFault, parse_any_syscalls},
    loader::{Injector, PlannedRule},
    pause::Resumer,
    report::{FaultReport, Report},
    target::CgroupTarget,
};

/// Options of `chaos inject latency`.
#[derive(Debug, clap::Args)]
// The schedule options are shared with `inject syscall`; here they say what this kind
// does to a chosen call.
#[command(mut_arg("probability", |a| a.help("Delay each eligible call with this probability, in (0, 1]")))]
#[command(mut_arg("every", |a| a.help("Delay the Nth eligible call and every Nth after it (with --after A: calls A+N, A+2N, ...); 1 = each")))]
#[command(mut_arg("when", |a| a.help("strace's when=: which matching calls to delay, counted from 1: FIRST (that one), FIRST..LAST, FIRST+ (FIRST and after), FIRST+STEP (FIRST, FIRST+STEP, ...), FIRST..LAST+STEP")))]
#[command(mut_arg("max_hits", |a| a.help("Stop delaying calls after N")))]
#[command(after_help = "Modes (see docs/signals-and-latency.md):\n  \
    spin   the calling thread busy-waits in the kernel before the call: exact to a few \
    microseconds, only that thread waits, but it burns its CPU; at most 100ms (delay + jitter).\n  \
    pause  the process gets SIGSTOP at the call's entry and SIGCONT from chaos after the delay \
    (1ms polling): any delay, no CPU, but every thread of the process stops, the call itself \
    completes first, and some waiting calls return EINTR.\n  \
    block  the calling thread sleeps in a FUSE request that chaos answers after the delay: any \
    delay, no CPU, only that thread waits; open, openat, openat2, creat, connect, sendto, \
    sendmsg, sendmmsg, recvfrom, recvmsg, recvmmsg only, no jitter, filters or schedule; \
    needs BPF LSM and Linux 6.12+ (see `chaos doctor`, docs/latency-block-mode.md).\n\
    Without --mode: spin when the delay fits under its cap, pause otherwise.\n\n\
    Examples:\n  \
    chaos inject latency --syscall fsync --delay 20ms --jitter 5ms -- ./db\n  \
    chaos inject latency --syscall read,write --delay 2s --mode pause --pid 1234")]
pub struct LatencyArgs {
    /// Syscalls to delay: any Linux x86_64 syscall by name as in `man 2`, or classes %file,
    /// %net, %read, %write (comma separated).
    #[arg(long, required = true, value_parser = parse_syscalls, value_name = "NAME[,NAME...]")]
    pub syscall: ::std::vec::Vec<Sysno>,
    /// How long each delayed call waits (e.g. 50ms, 200us, 2s).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub delay: Duration,
    /// Each delay is drawn uniformly from DELAY ± JITTER.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jitter: Option<Duration>,
    /// How calls are held back: spin, pause or block (default: spin up to its 100ms cap, else
    /// pause).
    #[arg(long, value_enum)]
    pub mode: Option<LatencyMode>,
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

/// Runs `chaos inject latency`.
pub fn run(args: LatencyArgs) -> anyhow::Result<ExitCode> {
    request(args).run()
}

/// The fault, run options and target of `chaos inject latency`.
pub(crate) fn request(args: LatencyArgs) -> InjectRequest {
    let jitter = args.jitter.unwrap_or_default();
    let fault = LatencyFault {
        syscalls: args.syscall.clone(),
        delay: args.delay,
        jitter,
        mode: args
            .mode
            .unwrap_or_else(|| LatencyMode::automatic(args.delay, jitter)),
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

impl LatencyFault {
    fn effect(&self) -> String {
        let mut out = humantime::format_duration(self.delay).to_string();
        if !self.jitter.is_zero() {
            out += &format!("±{}", humantime::format_duration(self.jitter));
        }
        format!("{out} {}", self.mode)
    }
}

impl Injectable for LatencyFault {
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, crate::Error> {
        LatencyFault::rules(self, target)
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
                    let (matched, mut injected) = sum_counters(rules, counters, sysno.name());
                    // Block mode's rules only count: every matching call is delayed by the
                    // block programs (fault::block), unless this is a dry run.
                    if self.mode == LatencyMode::Block && !self.dry_run {
                        injected = matched;
                    }
                    FaultReport {
                        kind: "latency",
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

    fn started(
        &self,
        injector: &mut Injector,
        target: &CgroupTarget,
    ) -> Result<Option<Running>, crate::Error> {
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
