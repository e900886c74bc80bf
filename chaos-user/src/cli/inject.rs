//! `chaos inject`: apply a fault to a target now, in the foreground, and report what it did.
//! Each kind's options map into a [`FaultSpec`]; one runner starts it through the engine.
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
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::{
    args::{FilterArgs, RunArgs, ScheduleArgs, option_error},
    dns::DnsArgs,
    events::{EventFormat, EventPrinter},
    latency::LatencyArgs,
    net::{NetCorruptArgs, NetDelayArgs, NetDropArgs, NetDuplicateArgs, NetRateArgs},
    signal::SignalArgs,
    target::TargetArgs,
    tcp_reset::TcpResetArgs,
};
use crate::{
    daemon::client::DaemonClient,
    engine::StartedFault,
    live_view::{FaultRow, Keys, LiveView, rows_of_report},
    loader::HookMechanism,
    packet::enter_netns,
    report::AnyReport,
    spec::{FaultSpec, MechanismSpec, NameOrNumber, Names, SyscallSpec, TargetSpec},
    target::ChildCgroup,
};

/// The fault kinds `chaos inject` offers.
#[derive(Debug, clap::Subcommand)]
pub enum InjectCommand {
    /// Fail syscalls with an errno, like strace's `-e inject=SYSCALL:error=ERRNO`.
    Syscall(Box<SyscallArgs>),
    /// Send a signal at a chosen call of any syscall, like strace's `-e inject=SYSCALL:signal=SIG`.
    Signal(SignalArgs),
    /// Delay syscalls, like strace's `-e inject=SYSCALL:delay_enter=DELAY`.
    Latency(LatencyArgs),
    /// Drop packets of the target's sockets.
    NetDrop(NetDropArgs),
    /// Delay packets the target sends (needs the fq qdisc).
    NetDelay(NetDelayArgs),
    /// Cap the rate at which the target sends (needs the fq qdisc).
    NetRate(NetRateArgs),
    /// Send a copy of some of the packets the target sends.
    NetDuplicate(NetDuplicateArgs),
    /// Flip bits in the payload of some of the packets the target sends.
    NetCorrupt(NetCorruptArgs),
    /// Answer the target's DNS queries with an error code, late or never.
    Dns(DnsArgs),
    /// Reset the target's established TCP connections (the peer gets an RST).
    TcpReset(TcpResetArgs),
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
    #[arg(long, required = true, value_name = "NAME[,NAME...]")]
    pub syscall: String,
    /// The errno to fail them with: a name (EIO, ECONNREFUSED...) or a number in 1..=4095.
    #[arg(long)]
    pub errno: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// How to reach the kernel's security hooks: lsm (BPF LSM programs, where `bpf` is an
    /// active LSM) or fmod-ret (fmod_ret programs on the security_* functions, everywhere
    /// else). Default: lsm where BPF LSM is active, else fmod-ret.
    #[arg(long, value_name = "lsm|fmod-ret")]
    pub mechanism: Option<HookMechanism>,
}

impl SyscallArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::Syscall(SyscallSpec {
            syscalls: Names::split(&self.syscall),
            errno: NameOrNumber(self.errno.clone()),
            mechanism: self.mechanism.map(MechanismSpec::from),
            filter: self.filter.spec(),
            schedule: self.schedule.spec(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}

impl InjectCommand {
    /// The fault these options describe, as a spec (the target as given; an empty cgroup for
    /// a command after `--`).
    pub fn spec(&self) -> FaultSpec {
        match self {
            InjectCommand::Syscall(a) => a.spec(),
            InjectCommand::Signal(a) => a.spec(),
            InjectCommand::Latency(a) => a.spec(),
            InjectCommand::NetDrop(a) => a.spec(),
            InjectCommand::NetDelay(a) => a.spec(),
            InjectCommand::NetRate(a) => a.spec(),
            InjectCommand::NetDuplicate(a) => a.spec(),
            InjectCommand::NetCorrupt(a) => a.spec(),
            InjectCommand::Dns(a) => a.spec(),
            InjectCommand::TcpReset(a) => a.spec(),
        }
    }

    /// Its run options, target and network namespace, whatever the kind.
    fn run_target_netns(&self) -> (&RunArgs, &TargetArgs, Option<&str>) {
        match self {
            InjectCommand::Syscall(a) => (&a.run, &a.target, None),
            InjectCommand::Signal(a) => (&a.run, &a.target, None),
            InjectCommand::Latency(a) => (&a.run, &a.target, None),
            InjectCommand::NetDrop(a) => (&a.run, &a.target, None),
            InjectCommand::NetDelay(a) => (&a.run, &a.target, a.devices.netns.as_deref()),
            InjectCommand::NetRate(a) => (&a.run, &a.target, a.devices.netns.as_deref()),
            InjectCommand::NetDuplicate(a) => (&a.run, &a.target, a.devices.netns.as_deref()),
            InjectCommand::NetCorrupt(a) => (&a.run, &a.target, a.devices.netns.as_deref()),
            InjectCommand::Dns(a) => (&a.run, &a.target, None),
            InjectCommand::TcpReset(a) => (&a.run, &a.target, None),
        }
    }
}

/// Runs `chaos inject`.
pub fn run(cmd: InjectCommand) -> anyhow::Result<ExitCode> {
    let (run, target, netns) = cmd.run_target_netns();
    let spec = cmd.spec();
    if run.print_spec {
        println!("{}", serde_json::to_string_pretty(&spec)?);
        return Ok(ExitCode::SUCCESS);
    }
    target.require()?;
    // Everything is checked before anything changes: a command's cgroup is made after.
    let mut checked_spec = spec.clone();
    if !target.command.is_empty() {
        checked_spec.set_target(TargetSpec::Cgroup("/command".into()));
    }
    checked_spec
        .check()
        .map_err(|e| option_error(&checked_spec, e))?;
    // A running daemon takes faults on a target and owns them from then on (with its own
    // `--log-kernel`). A command after `--` runs under this process, which starts and waits
    // for it.
    if !run.standalone
        && target.command.is_empty()
        && netns.is_none()
        && run.events.is_none()
        && !crate::kernel_log::enabled()
    {
        let daemon = DaemonClient::new(None);
        if daemon.answers() {
            return hand_to_daemon(&daemon, &spec, run.json);
        }
    }
    let stop = StopSignals::install()?;
    if target.command.is_empty() {
        // Resolve the target (paths, /proc) before moving into another network namespace.
        let checked = spec.check().map_err(|e| option_error(&spec, e))?;
        let root = crate::target::cgroup2_root()?;
        let cgroup = checked.target.resolve(&root)?;
        if !checked.unguarded {
            crate::target::Guards::current(&root)?.check(&cgroup, &checked.target.to_string())?;
        }
        if let Some(netns) = netns {
            enter_netns(netns)?;
        }
        let fault = StartedFault::start_on(checked, &cgroup)?;
        run_until_stopped(&fault, run, &stop)
    } else {
        let cgroup = ChildCgroup::create(&format!("run-{}", std::process::id()))?;
        if let Some(netns) = netns {
            enter_netns(netns)?;
        }
        let checked = checked_spec.check().map_err(|e| option_error(&spec, e))?;
        let fault = StartedFault::start_on(checked, cgroup.target())?;
        run_command(fault, run, &target.command, &cgroup, &stop)
    }
}

/// Gives the fault to the running daemon, which owns it from then on.
fn hand_to_daemon(daemon: &DaemonClient, spec: &FaultSpec, json: bool) -> anyhow::Result<ExitCode> {
    let fault = daemon.create(spec)?;
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

/// The rows the live view shows for a report of either engine.
fn live_rows(report: &AnyReport, left: Duration) -> Vec<FaultRow> {
    match report {
        AnyReport::Rules(r) => rows_of_report(r, Some(left)),
        AnyReport::Net(r) => r
            .faults
            .iter()
            .map(|f| FaultRow {
                kind: f.kind.to_owned(),
                what: f.fault.clone(),
                matched: f.seen,
                injected: f.affected,
                left: Some(left),
            })
            .collect(),
        AnyReport::TcpReset(r) => vec![FaultRow {
            kind: r.kind.to_owned(),
            what: r.fault.clone(),
            matched: r.counts.matched,
            injected: r.counts.injected,
            left: Some(left),
        }],
        AnyReport::Dns(r) => vec![FaultRow {
            kind: r.kind.to_owned(),
            what: r.fault.clone(),
            matched: r.counts.matched,
            injected: r.counts.injected,
            left: Some(left),
        }],
    }
}

fn print_report(report: &AnyReport, run: &RunArgs) -> anyhow::Result<()> {
    if run.json && run.events == Some(EventFormat::Json) {
        // Stdout carries the events' JSON lines.
        eprintln!("{}", serde_json::to_string(report)?);
    } else if run.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        // Formatted first: stderr is unbuffered, and the table's padding would otherwise
        // reach it as one write per field.
        let table = report.to_string();
        eprint!("{table}");
    }
    Ok(())
}

fn report(fault: &StartedFault) -> anyhow::Result<AnyReport> {
    fault
        .report()?
        .context("the fault ended before its report was read")
}

fn announce(fault: &StartedFault, run: &RunArgs) {
    let mechanism = match &fault.mechanism {
        Some(choice) => format!(" through {}: {}", choice.mechanism, choice.why),
        None => String::new(),
    };
    eprintln!(
        "chaos: injecting {} {} into cgroup {} for {}{mechanism}; Ctrl-C to stop",
        fault.kind,
        fault.description,
        fault.target,
        humantime::format_duration(run.duration)
    );
}

/// The one foreground runner: until Ctrl-C or the duration, with a live line.
fn run_until_stopped(
    fault: &StartedFault,
    run: &RunArgs,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    announce(fault, run);
    let mut events = start_events(fault, run)?;
    let started = Instant::now();
    let mut live = LiveView::new(run.json, Keys::Read);
    let mut gone = false;
    while !stop.stopped() && started.elapsed() < run.duration && !live.quit_requested() && !gone {
        // Short naps: a stop signal ends the fault within about 10 ms (the disarm time in
        // BENCHMARKS.md was 100 ms with 100 ms naps). The live view throttles itself.
        thread::sleep(Duration::from_millis(10));
        let left = run.duration.saturating_sub(started.elapsed());
        match &mut events {
            // The events own stdout; a live line would break into them.
            Some(events) => events.print(fault)?,
            None => live.update(&live_rows(&report(fault)?, left)),
        }
        gone = fault.target_gone();
    }
    live.finish();
    if let Some(events) = events {
        events.finish(fault)?;
    }
    if gone {
        eprintln!(
            "chaos: the target cgroup {} was removed (its processes are gone); fault ended",
            fault.target
        );
    }
    let report = report(fault)?;
    fault.stop();
    print_report(&report, run)?;
    Ok(ExitCode::SUCCESS)
}

/// The event printer, when `--events` asked for one.
fn start_events(fault: &StartedFault, run: &RunArgs) -> anyhow::Result<Option<EventPrinter>> {
    run.events
        .map(|format| EventPrinter::start(fault, format))
        .transpose()
}

/// Runs `argv` in `cgroup` (which the fault is on), waits for it and exits with its status;
/// the fault is removed when its duration passes, the command keeps running.
fn run_command(
    fault: StartedFault,
    run: &RunArgs,
    argv: &[String],
    cgroup: &ChildCgroup,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    announce(&fault, run);
    // Listening before the command starts: none of its calls goes unreported.
    let mut events = start_events(&fault, run)?;
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    if run.json || run.events == Some(EventFormat::Json) {
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
        if let Some(events) = &mut events {
            events.print(&fault)?;
        }
        let d = run.duration;
        if final_report.is_none() && started.elapsed() >= d {
            if let Some(events) = events.take() {
                events.finish(&fault)?;
            }
            final_report = Some(report(&fault)?);
            fault.stop();
            eprintln!("chaos: {d:?} passed, faults removed; waiting for the command");
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(events) = events.take() {
        events.finish(&fault)?;
    }
    let report = match final_report {
        Some(report) => report,
        None => report(&fault)?,
    };
    fault.stop();
    print_report(&report, run)?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
