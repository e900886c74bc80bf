//! `chaos inject`: apply a fault to a target now, in the foreground, and report what it did.
use std::{
    io,
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
use chaos_common::{HitCounter, Schedule};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub use super::target::TargetArgs;
use crate::{
    daemon::client::DaemonClient,
    fault::{Cidr, Errno, FdKind, FilterSpec, Syscall, SyscallFault, parse_comm},
    live_view::{Keys, LiveView, rows_of_report},
    loader::{Injector, PlannedRule},
    report::{FaultReport, Report},
    target::{CgroupTarget, ChildCgroup},
};

/// The fault kinds `chaos inject` offers.
#[derive(Debug, clap::Subcommand)]
pub enum InjectCommand {
    /// Fail syscalls with an errno, like strace's `-e inject=SYSCALL:error=ERRNO`.
    Syscall(Box<SyscallArgs>),
    /// Send a signal at a chosen call of any syscall, like strace's `-e inject=SYSCALL:signal=SIG`.
    Signal(super::signal::SignalArgs),
    /// Delay syscalls, like strace's `-e inject=SYSCALL:delay_enter=DELAY`.
    Latency(super::latency::LatencyArgs),
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

/// `chaos inject`'s arguments on their own, as a daemon receives them (`POST /faults`).
#[derive(Debug, clap::Parser)]
#[command(name = "chaos inject", no_binary_name = true)]
pub struct InjectArgs {
    /// The fault.
    #[command(subcommand)]
    pub command: InjectCommand,
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

impl SyscallArgs {
    /// The fault these options describe.
    pub fn fault(&self) -> SyscallFault {
        SyscallFault {
            syscalls: self.syscall.clone(),
            errno: self.errno,
            filter: self.filter.spec(),
            schedule: self.schedule.schedule(),
            dry_run: self.run.dry_run,
            deadline: Some(self.run.duration),
        }
    }
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
    pub(crate) fn schedule(&self) -> Schedule {
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
    /// Run the fault in this process even when a chaos daemon is running (which otherwise
    /// takes the fault and this command returns at once).
    #[arg(long)]
    pub standalone: bool,
}

/// Runs `chaos inject`.
pub fn run(cmd: InjectCommand) -> anyhow::Result<ExitCode> {
    // A running daemon takes faults on a target and owns them from then on.
    // A command after `--` runs under this process, which starts and waits for it.
    let (run, target) = cmd.run_and_target();
    if !run.standalone && target.command.is_empty() {
        let daemon = DaemonClient::new(None);
        if daemon.answers() {
            return hand_to_daemon(&daemon, run.json);
        }
    }
    match cmd {
        InjectCommand::Syscall(args) => syscall(*args).run(),
        InjectCommand::Signal(args) => super::signal::run(args),
        InjectCommand::Latency(args) => super::latency::run(args),
        InjectCommand::NetDrop(args) => super::net::drop(args),
        InjectCommand::NetDelay(args) => super::net::delay(args),
        InjectCommand::NetRate(args) => super::net::rate(args),
        InjectCommand::NetDuplicate(args) => super::net::duplicate(args),
        InjectCommand::NetCorrupt(args) => super::net::corrupt(args),
    }
}

/// A parsed `chaos inject` command of any kind.
pub enum FaultRequest {
    /// A fault made of rules for the syscall engine (syscall, signal, latency).
    Rules(InjectRequest),
    /// A packet fault.
    Net(super::net::NetRequest),
}

/// A parsed `chaos inject` command: the fault, how long and how to report, and whom.
pub struct InjectRequest {
    /// The fault.
    pub(crate) fault: Box<dyn Injectable>,
    /// Duration, dry run, output.
    pub run: RunArgs,
    /// Whom it hits.
    pub target: TargetArgs,
}

impl InjectRequest {
    /// Runs it in the foreground until it ends (see [`RunArgs`]).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        inject(&*self.fault, &self.run, &self.target)
    }
}

impl InjectCommand {
    /// The fault kind: the subcommand's name (`syscall`, `net-drop`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            InjectCommand::Syscall(_) => "syscall",
            InjectCommand::Signal(_) => "signal",
            InjectCommand::Latency(_) => "latency",
            InjectCommand::NetDrop(_) => "net-drop",
            InjectCommand::NetDelay(_) => "net-delay",
            InjectCommand::NetRate(_) => "net-rate",
            InjectCommand::NetDuplicate(_) => "net-duplicate",
            InjectCommand::NetCorrupt(_) => "net-corrupt",
        }
    }

    /// Its run options and target, whatever the kind.
    fn run_and_target(&self) -> (&RunArgs, &TargetArgs) {
        match self {
            InjectCommand::Syscall(a) => (&a.run, &a.target),
            InjectCommand::Signal(a) => (&a.run, &a.target),
            InjectCommand::Latency(a) => (&a.run, &a.target),
            InjectCommand::NetDrop(a) => (&a.run, &a.target),
            InjectCommand::NetDelay(a) => (&a.run, &a.target),
            InjectCommand::NetRate(a) => (&a.run, &a.target),
            InjectCommand::NetDuplicate(a) => (&a.run, &a.target),
            InjectCommand::NetCorrupt(a) => (&a.run, &a.target),
        }
    }

    /// The request behind the command, for those that run faults themselves (experiments).
    pub fn into_request(self) -> anyhow::Result<FaultRequest> {
        use FaultRequest::{Net, Rules};
        Ok(match self {
            InjectCommand::Syscall(args) => Rules(syscall(*args)),
            InjectCommand::Signal(args) => Rules(super::signal::request(args)),
            InjectCommand::Latency(args) => Rules(super::latency::request(args)),
            InjectCommand::NetDrop(args) => Net(args.into_request()?),
            InjectCommand::NetDelay(args) => Net(args.into_request()?),
            InjectCommand::NetRate(args) => Net(args.into_request()?),
            InjectCommand::NetDuplicate(args) => Net(args.into_request()?),
            InjectCommand::NetCorrupt(args) => Net(args.into_request()?),
        })
    }
}

/// What `chaos inject` runs: a fault that becomes kernel rules and reports its counters.
/// Whatever a fault keeps running beside its programs until it ends (see
/// [`Injectable::started`]); only its drop matters.
pub(crate) type Running = Box<dyn std::any::Any + Send>;

pub(crate) trait Injectable {
    /// The kernel rules against `target`.
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, crate::Error>;
    /// One line saying what is injected, for the start message.
    fn describe(&self) -> String;
    /// The report from the counters of `rules` (same order).
    fn report(
        &self,
        target: &CgroupTarget,
        rules: &[PlannedRule],
        counters: &[HitCounter],
    ) -> Report;
    /// What must keep running beside the programs on `target` (continuing paused processes,
    /// block mode's FUSE server); dropped after the injector.
    fn started(
        &self,
        _injector: &mut Injector,
        _target: &CgroupTarget,
    ) -> Result<Option<Running>, crate::Error> {
        Ok(None)
    }
}

impl Injectable for SyscallFault {
    fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, crate::Error> {
        SyscallFault::rules(self, target)
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.syscalls.iter().map(|s| s.name()).collect();
        format!(
            "{} -> {}{}",
            names.join(","),
            self.errno,
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
                .map(|syscall| {
                    let (matched, injected) = sum_counters(rules, counters, syscall.name());
                    FaultReport {
                        kind: "syscall",
                        syscall: syscall.name().to_owned(),
                        errno: self.errno.to_string(),
                        effect: None,
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

/// The counters of the rules labelled `label` added up: a syscall with several hooks
/// (unlinkat) has one rule per hook.
pub(crate) fn sum_counters(
    rules: &[PlannedRule],
    counters: &[HitCounter],
    label: &str,
) -> (u64, u64) {
    rules
        .iter()
        .zip(counters)
        .filter(|(rule, _)| rule.label == label)
        .fold((0, 0), |(m, i), (_, c)| (m + c.matched, i + c.injected))
}

fn syscall(args: SyscallArgs) -> InjectRequest {
    let fault = args.fault();
    InjectRequest {
        fault: Box::new(fault),
        run: args.run,
        target: args.target,
    }
}

/// Runs `fault` against the target of `target` until it ends (see [`RunArgs`]).
pub(crate) fn inject(
    fault: &dyn Injectable,
    run: &RunArgs,
    target: &TargetArgs,
) -> anyhow::Result<ExitCode> {
    let stop = StopSignals::install()?;
    if !target.command.is_empty() {
        let cgroup = ChildCgroup::create(&format!("run-{}", std::process::id()))?;
        return run_command(fault, run, &target.command, &cgroup, &stop);
    }
    let target = target.resolve()?;
    run_until_stopped(fault, run, &target, &stop)
}

/// Gives this command line's fault to the running daemon, which owns it from then on.
fn hand_to_daemon(daemon: &DaemonClient, json: bool) -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args()
        .skip_while(|a| a != "inject")
        .skip(1)
        .collect();
    let fault = daemon.create(args)?;
    if json {
        println!("{}", serde_json::to_string(&fault)?);
    }
    eprintln!(
        "chaos: the daemon on {} runs {} fault {} ({} on {}) for {:.0}s; \
         `chaos status` shows it, `chaos stop {}` ends it",
        daemon.socket().display(),
        fault.kind,
        fault.id,
        fault.description,
        fault.target,
        fault.remaining_secs,
        fault.id
    );
    Ok(ExitCode::SUCCESS)
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
    fault: &dyn Injectable,
    target: &CgroupTarget,
    rules: &[PlannedRule],
    injector: &Injector,
) -> anyhow::Result<Report> {
    Ok(fault.report(target, rules, &injector.counters()?))
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        eprint!("{report}");
    }
    Ok(())
}

fn run_until_stopped(
    fault: &dyn Injectable,
    run: &RunArgs,
    target: &CgroupTarget,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    let rules = fault.rules(target)?;
    // Declared first so that it is dropped last, on every path: it continues the processes
    // that pause rules stopped, which must happen after the programs are detached.
    let _resumer;
    let mut injector = Injector::start(&rules)?;
    _resumer = fault.started(&mut injector, target)?;
    eprintln!(
        "chaos: injecting {} into cgroup {} for {}; Ctrl-C to stop",
        fault.describe(),
        target.path.display(),
        humantime::format_duration(run.duration)
    );
    let started = Instant::now();
    let mut live = LiveView::new(run.json, Keys::Read);
    while !stop.stopped() && started.elapsed() < run.duration && !live.quit_requested() {
        // Short naps: a stop signal ends the fault within about 10 ms (the disarm time in
        // BENCHMARKS.md was 100 ms with 100 ms naps). The live view throttles itself.
        thread::sleep(Duration::from_millis(10));
        let left = run.duration.saturating_sub(started.elapsed());
        live.update(&rows_of_report(
            &report(fault, target, &rules, &injector)?,
            Some(left),
        ));
    }
    live.finish();
    let report = report(fault, target, &rules, &injector)?;
    drop(injector);
    print_report(&report, run.json)?;
    Ok(ExitCode::SUCCESS)
}

fn run_command(
    fault: &dyn Injectable,
    run: &RunArgs,
    argv: &[String],
    cgroup: &ChildCgroup,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    let target = cgroup.target();
    let rules = fault.rules(target)?;
    // Dropped after the injector on every path, as in run_until_stopped.
    let _resumer;
    let mut injector = Some(Injector::start(&rules)?);
    _resumer = fault.started(injector.as_mut().expect("just set"), target)?;

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
