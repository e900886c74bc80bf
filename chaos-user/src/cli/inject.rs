//! `chaos inject`: apply a fault to a target now, in the foreground, and report what it did.
use std::{
    io::{self, IsTerminal as _},
    os::{fd::AsFd as _, unix::process::ExitStatusExt as _},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos_common::Schedule;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{
    fault::{Errno, Syscall, SyscallFault},
    loader::Injector,
    report::{FaultReport, Report},
    target::{CgroupTarget, ChildCgroup},
};

/// The fault kinds `chaos inject` offers.
#[derive(Debug, clap::Subcommand)]
pub enum InjectCommand {
    /// Fail syscalls with an errno, like strace's `-e inject=SYSCALL:error=ERRNO`.
    Syscall(SyscallArgs),
    /// Drop packets of the target's sockets.
    NetDrop(super::net::NetDropArgs),
    /// Delay packets the target sends (needs the fq qdisc).
    NetDelay(super::net::NetDelayArgs),
    /// Cap the rate at which the target sends (needs the fq qdisc).
    NetRate(super::net::NetRateArgs),
    /// Send a copy of some of the packets the target sends.
    NetDuplicate(super::net::NetDuplicateArgs),
    /// Flip bits in the payload of some of the packets the target sends.
    NetCorrupt(super::net::NetCorruptArgs),
}

/// Options of `chaos inject syscall`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject syscall --syscall connect --errno ECONNREFUSED -- curl http://127.0.0.1:8080/\n  \
    chaos inject syscall --syscall openat --errno EIO --cgroup /system.slice/db.service --duration 30s")]
pub struct SyscallArgs {
    /// Syscalls to fail, by name as in `man 2` (comma separated).
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "NAME[,NAME...]"
    )]
    pub syscall: Vec<Syscall>,
    /// The errno to fail them with: a name (EIO, ECONNREFUSED...) or a number in 1..=4095.
    #[arg(long)]
    pub errno: Errno,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Which matching calls fail.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Fail each eligible call with this probability, in (0, 1].
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub probability: Option<f64>,
    /// Let the first N matching calls through.
    #[arg(long, value_name = "N")]
    pub after: Option<u64>,
    /// Fail every Nth eligible call (1 = each).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// Stop failing calls after N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_hits: Option<u64>,
}

impl ScheduleArgs {
    fn schedule(&self) -> Schedule {
        Schedule {
            after: self.after.unwrap_or(0),
            every: self.every.unwrap_or(1),
            max_hits: self.max_hits.unwrap_or(u64::MAX),
            probability: Schedule::probability_from_f64(self.probability.unwrap_or(1.0)),
            _pad: 0,
        }
    }
}

/// Parses a probability in (0, 1], for every option that takes one.
pub(crate) fn parse_probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("`{s}` is not a probability in (0, 1], e.g. 0.25")),
    }
}

/// How long and how to report.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Remove the faults after this long (e.g. 30s, 5m); a command keeps running.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Count what would be failed, fail nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout (a command's own stdout then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Whom the fault hits.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// A cgroup v2 directory (absolute, or relative to the v2 mount as in /proc/PID/cgroup);
    /// its descendants are hit too.
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    pub cgroup: Option<PathBuf>,
    /// The cgroup of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Run this command in a cgroup of its own, fault it, wait for it and exit with its status.
    #[arg(last = true, value_name = "CMD", conflicts_with_all = ["cgroup", "pid"])]
    pub command: Vec<String>,
}

/// Runs `chaos inject`.
pub fn run(cmd: InjectCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InjectCommand::Syscall(args) => syscall(args),
        InjectCommand::NetDrop(args) => super::net::drop(args),
        InjectCommand::NetDelay(args) => super::net::delay(args),
        InjectCommand::NetRate(args) => super::net::rate(args),
        InjectCommand::NetDuplicate(args) => super::net::duplicate(args),
        InjectCommand::NetCorrupt(args) => super::net::corrupt(args),
    }
}

fn syscall(args: SyscallArgs) -> anyhow::Result<ExitCode> {
    let fault = SyscallFault {
        syscalls: args.syscall.clone(),
        errno: args.errno,
        schedule: args.schedule.schedule(),
        dry_run: args.run.dry_run,
    };
    let stop = StopSignals::install()?;
    if !args.target.command.is_empty() {
        let cgroup = ChildCgroup::create(&format!("run-{}", std::process::id()))?;
        return run_command(&fault, &args.run, &args.target.command, &cgroup, &stop);
    }
    let target = match (&args.target.cgroup, args.target.pid) {
        (Some(path), _) => CgroupTarget::from_path(path)?,
        (None, Some(pid)) => CgroupTarget::from_pid(pid)?,
        (None, None) => bail!(
            "no target: give --cgroup PATH, --pid PID, or a command after `--` \
             (chaos inject syscall --syscall connect --errno ECONNREFUSED -- curl ...)"
        ),
    };
    if target.level == 0 {
        bail!(
            "invalid --cgroup `{}`: the root cgroup holds every process of the machine; give \
             the cgroup of the service or container to fault, or run a command after `--`",
            target.path.display()
        );
    }
    run_until_stopped(&fault, &args.run, &target, &stop)
}

/// SIGINT, SIGTERM and SIGHUP end the injection cleanly instead of killing chaos, so that the
/// report is printed. (Links go with the process either way.)
pub(crate) struct StopSignals {
    stop: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl StopSignals {
    pub(crate) fn install() -> anyhow::Result<StopSignals> {
        let stop = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing signal handlers")?;
        }
        signal_hook::flag::register(SIGTERM, Arc::clone(&term))
            .context("installing signal handlers")?;
        Ok(StopSignals { stop, term })
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a SIGTERM arrived, which a command does not get from the terminal by itself.
    pub(crate) fn take_term(&self) -> bool {
        self.term.swap(false, Ordering::Relaxed)
    }
}

fn report(
    fault: &SyscallFault,
    target: &CgroupTarget,
    injector: &Injector,
) -> anyhow::Result<Report> {
    let counters = injector.counters()?;
    Ok(Report {
        faults: fault
            .syscalls
            .iter()
            .zip(counters)
            .map(|(syscall, counter)| FaultReport {
                kind: "syscall",
                syscall: syscall.name().to_owned(),
                errno: fault.errno.to_string(),
                target: target.path.display().to_string(),
                dry_run: fault.dry_run,
                matched: counter.matched,
                injected: counter.injected,
            })
            .collect(),
    })
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        eprint!("{report}");
    }
    Ok(())
}

fn describe(fault: &SyscallFault) -> String {
    let names: Vec<&str> = fault.syscalls.iter().map(|s| s.name()).collect();
    format!(
        "{} -> {}{}",
        names.join(","),
        fault.errno,
        if fault.dry_run { " (dry run)" } else { "" }
    )
}

fn run_until_stopped(
    fault: &SyscallFault,
    run: &RunArgs,
    target: &CgroupTarget,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    let injector = Injector::start(&fault.rules(target))?;
    eprintln!(
        "chaos: injecting {} into cgroup {}; Ctrl-C to stop",
        describe(fault),
        target.path.display()
    );
    let started = Instant::now();
    let mut last = Vec::new();
    let live = io::stderr().is_terminal() || !run.json;
    while !stop.stopped() && run.duration.is_none_or(|d| started.elapsed() < d) {
        thread::sleep(Duration::from_millis(100));
        let counters = injector.counters()?;
        if live && counters != last && started.elapsed() > Duration::from_millis(900) {
            let parts: Vec<String> = fault
                .syscalls
                .iter()
                .zip(&counters)
                .map(|(s, c)| format!("{} matched {} injected {}", s.name(), c.matched, c.injected))
                .collect();
            eprintln!(
                "chaos: [{:>6.1}s] {}",
                started.elapsed().as_secs_f64(),
                parts.join("; ")
            );
            last = counters;
        }
    }
    let report = report(fault, target, &injector)?;
    drop(injector);
    print_report(&report, run.json)?;
    Ok(ExitCode::SUCCESS)
}

fn run_command(
    fault: &SyscallFault,
    run: &RunArgs,
    argv: &[String],
    cgroup: &ChildCgroup,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    let target = cgroup.target();
    let mut injector = Some(Injector::start(&fault.rules(target))?);

    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if run.json {
        // Keep stdout for the report alone.
        command.stdout(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?));
    }
    let procs = cgroup.enter_on_exec(&mut command)?;
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", argv[0]))?;
    drop(procs);

    let started = Instant::now();
    let mut final_report = None;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            break status;
        }
        if stop.take_term() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if let (Some(d), Some(inj)) = (run.duration, injector.as_ref())
            && started.elapsed() >= d
        {
            final_report = Some(report(fault, target, inj)?);
            injector = None;
            eprintln!("chaos: {d:?} passed, faults removed; waiting for the command");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let report = match (final_report, injector.as_ref()) {
        (Some(report), _) => report,
        (None, Some(inj)) => report(fault, target, inj)?,
        (None, None) => unreachable!("the injector is only dropped after the report is taken"),
    };
    drop(injector);
    print_report(&report, run.json)?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
