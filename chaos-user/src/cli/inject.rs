//! `chaos inject`: apply a fault to a target now, in the foreground, and report what it did.
use std::{
    io::{self, IsTerminal as _},
    os::{fd::AsFd as _, unix::process::ExitStatusExt as _},
    process::{Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chaos_common::Schedule;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::target::TargetArgs;
use crate::{
    fault::{Cidr, Errno, FdKind, FilterSpec, Syscall, SyscallFault, parse_comm},
    loader::{Injector, PlannedRule},
    report::{FaultReport, Report},
    target::{CgroupTarget, ChildCgroup},
};

/// The fault kinds `chaos inject` offers.
#[derive(Debug, clap::Subcommand)]
pub enum InjectCommand {
    /// Fail syscalls with an errno, like strace's `-e inject=SYSCALL:error=ERRNO`.
    Syscall(Box<SyscallArgs>),
}

/// Options of `chaos inject syscall`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject syscall --syscall connect --errno ECONNREFUSED -- curl http://127.0.0.1:8080/\n  \
    chaos inject syscall --syscall openat --errno EIO --cgroup /system.slice/db.service --duration 30s")]
pub struct SyscallArgs {
    /// Syscalls to fail, by name as in `man 2`, or classes like strace's: %file, %net,
    /// %read, %write (comma separated).
    // Spelled out so that clap takes one value that expands to a list, not many values.
    #[arg(long, required = true, value_parser = parse_syscalls, value_name = "NAME[,NAME...]")]
    pub syscall: ::std::vec::Vec<Syscall>,
    /// The errno to fail them with: a name (EIO, ECONNREFUSED...) or a number in 1..=4095.
    #[arg(long)]
    pub errno: Errno,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn parse_syscalls(s: &str) -> Result<Vec<Syscall>, crate::Error> {
    Syscall::parse_list(s)
}

/// Which calls of the syscalls match.
#[derive(Debug, Default, clap::Args)]
pub struct FilterArgs {
    /// Only files at or below this directory (file syscalls). For a container's files use
    /// /proc/PID/root/DIR.
    #[arg(long, value_name = "DIR")]
    pub path: Option<std::path::PathBuf>,
    /// Only descriptors of these kinds: file, dir, socket, pipe, char, block, symlink (file
    /// syscalls; comma separated).
    #[arg(long, value_delimiter = ',', value_name = "KIND[,KIND...]")]
    pub fd_kind: Vec<FdKind>,
    /// Only this port: the peer's for connect, the local one for bind.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Only addresses in this block: the peer's for connect, the local one for bind
    /// (10.0.0.0/8, fd00::/8, 127.0.0.1).
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub cidr: Option<Cidr>,
    /// Only threads of this name (as in /proc/PID/task/TID/comm).
    #[arg(long, value_parser = parse_comm, value_name = "NAME")]
    pub comm: Option<String>,
}

impl FilterArgs {
    /// The filters as a fault takes them.
    pub fn spec(&self) -> FilterSpec {
        FilterSpec {
            path: self.path.clone(),
            fd_kinds: self.fd_kind.clone(),
            port: self.port,
            cidr: self.cidr,
            comm: self.comm.clone(),
        }
    }
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
    /// Remove the faults after this long (e.g. 30s, 5m); a command keeps running. Every
    /// fault ends then even if chaos is killed or frozen: the kernel programs stop
    /// injecting at that deadline by themselves.
    #[arg(
        long,
        value_parser = humantime::parse_duration,
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub duration: Duration,
    /// Count what would be failed, fail nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout (a command's own stdout then goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs `chaos inject`.
pub fn run(cmd: InjectCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InjectCommand::Syscall(args) => syscall(*args),
    }
}

fn syscall(args: SyscallArgs) -> anyhow::Result<ExitCode> {
    let fault = SyscallFault {
        syscalls: args.syscall.clone(),
        errno: args.errno,
        filter: args.filter.spec(),
        schedule: args.schedule.schedule(),
        dry_run: args.run.dry_run,
        deadline: Some(args.run.duration),
    };
    let stop = StopSignals::install()?;
    if !args.target.command.is_empty() {
        let cgroup = ChildCgroup::create(&format!("run-{}", std::process::id()))?;
        return run_command(&fault, &args.run, &args.target.command, &cgroup, &stop);
    }
    let target = args.target.resolve()?;
    run_until_stopped(&fault, &args.run, &target, &stop)
}

/// SIGINT, SIGTERM and SIGHUP end the injection cleanly instead of killing chaos, so that the
/// report is printed. (Links go with the process either way.)
struct StopSignals {
    stop: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
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

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a SIGTERM arrived, which a command does not get from the terminal by itself.
    fn take_term(&self) -> bool {
        self.term.swap(false, Ordering::Relaxed)
    }
}

fn report(
    fault: &SyscallFault,
    target: &CgroupTarget,
    rules: &[PlannedRule],
    injector: &Injector,
) -> anyhow::Result<Report> {
    let counters = injector.counters()?;
    Ok(Report {
        faults: fault
            .syscalls
            .iter()
            .map(|syscall| {
                // A syscall with several hooks (unlinkat) has one rule per hook.
                let (matched, injected) = rules
                    .iter()
                    .zip(&counters)
                    .filter(|(rule, _)| rule.label == syscall.name())
                    .fold((0, 0), |(m, i), (_, c)| (m + c.matched, i + c.injected));
                FaultReport {
                    kind: "syscall",
                    syscall: syscall.name().to_owned(),
                    errno: fault.errno.to_string(),
                    target: target.path.display().to_string(),
                    dry_run: fault.dry_run,
                    matched,
                    injected,
                }
            })
            .collect(),
    })
}

/// The counters while a fault runs: one line rewritten in place about once a second on a
/// terminal, a plain line per change otherwise (none with `--json` off a terminal).
struct LiveLine {
    terminal: bool,
    enabled: bool,
    last_shown: Option<Instant>,
    last: String,
}

impl LiveLine {
    fn new(json: bool) -> LiveLine {
        let terminal = io::stderr().is_terminal();
        LiveLine {
            terminal,
            enabled: terminal || !json,
            last_shown: None,
            last: String::new(),
        }
    }

    fn show(&mut self, started: Instant, report: &Report) {
        if !self.enabled
            || self
                .last_shown
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let line = report
            .faults
            .iter()
            .map(|f| {
                format!(
                    "{} matched {} injected {}",
                    f.syscall, f.matched, f.injected
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        if line == self.last {
            return;
        }
        let elapsed = started.elapsed().as_secs_f64();
        if self.terminal {
            eprint!("\r\x1b[Kchaos: [{elapsed:>6.1}s] {line}");
        } else {
            eprintln!("chaos: [{elapsed:>6.1}s] {line}");
        }
        self.last_shown = Some(Instant::now());
        self.last = line;
    }

    fn finish(&self) {
        if self.terminal && self.last_shown.is_some() {
            eprintln!();
        }
    }
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
    let rules = fault.rules(target)?;
    let injector = Injector::start(&rules)?;
    eprintln!(
        "chaos: injecting {} into cgroup {} for {}; Ctrl-C to stop",
        describe(fault),
        target.path.display(),
        humantime::format_duration(run.duration)
    );
    let started = Instant::now();
    let mut live = LiveLine::new(run.json);
    while !stop.stopped() && started.elapsed() < run.duration {
        // Short naps: a stop signal ends the fault within about 10 ms (the disarm time in
        // BENCHMARKS.md was 100 ms with 100 ms naps). The live line throttles itself.
        thread::sleep(Duration::from_millis(10));
        live.show(started, &report(fault, target, &rules, &injector)?);
    }
    live.finish();
    let report = report(fault, target, &rules, &injector)?;
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
    let rules = fault.rules(target)?;
    let mut injector = Some(Injector::start(&rules)?);

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
        if let (d, Some(inj)) = (run.duration, injector.as_ref())
            && started.elapsed() >= d
        {
            final_report = Some(report(fault, target, &rules, inj)?);
            injector = None;
            eprintln!("chaos: {d:?} passed, faults removed; waiting for the command");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let report = match (final_report, injector.as_ref()) {
        (Some(report), _) => report,
        (None, Some(inj)) => report(fault, target, &rules, inj)?,
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
