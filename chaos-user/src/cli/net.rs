//! `chaos inject net-drop|net-delay|net-rate|net-duplicate|net-corrupt`: packet faults on the
//! sockets of a target.
use std::{
    fmt, io,
    os::{fd::AsFd as _, unix::process::ExitStatusExt as _},
    process::{Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use super::inject::{RunArgs, StopSignals, TargetArgs, parse_probability};
use crate::{
    live_view::{FaultRow, Keys, LiveView},
    packet::{
        Cidr, Direction, FqQdiscs, NetEffect, NetFault, PacketInjector, Protocol, Rate, devices_up,
    },
    target::{CgroupTarget, ChildCgroup},
};

/// Which of the target's packets a fault applies to.
#[derive(Debug, clap::Args)]
pub struct PacketFilterArgs {
    /// Packets the target sends (egress), receives (ingress) or both. Default: both for drop,
    /// egress (the only choice) for delay and rate.
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    /// Only this protocol.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Only packets with this local or remote TCP/UDP port.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only packets to or from this peer network (IPv4 or IPv6), e.g. 10.0.0.0/8.
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub cidr: Option<Cidr>,
    /// Affect each matching packet with this probability, in (0, 1].
    #[arg(long, value_parser = parse_probability, value_name = "P")]
    pub probability: Option<f64>,
}

/// Where the egress devices are, for faults that work on them.
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// Egress devices to work on (repeatable); default: every device that is up.
    #[arg(long, value_name = "DEV")]
    pub device: Vec<String>,
    /// The network namespace the devices are in: a name under /run/netns or a path such as
    /// /proc/PID/ns/net (a container's); default: chaos's own.
    #[arg(long, value_name = "NAME|PATH")]
    pub netns: Option<String>,
}

impl DeviceArgs {
    /// Moves chaos (its main thread, which does all the device work and sets qdiscs over rtnetlink) into
    /// the namespace. The cgroup programs do not care: they follow the sockets.
    fn enter_netns(&self) -> anyhow::Result<()> {
        let Some(netns) = &self.netns else {
            return Ok(());
        };
        let path = if netns.contains('/') {
            std::path::PathBuf::from(netns)
        } else {
            std::path::Path::new("/run/netns").join(netns)
        };
        let file = std::fs::File::open(&path).map_err(|err| crate::Error::Invalid {
            field: "--netns",
            value: netns.clone(),
            expected: format!(
                "a network namespace: a name under /run/netns (`ip netns list`) or a path like \
                 /proc/PID/ns/net ({}: {err})",
                path.display()
            ),
        })?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| {
            crate::Error::Invalid {
                field: "--netns",
                value: netns.clone(),
                expected: format!("a network namespace chaos may enter (setns: {errno})"),
            }
        })?;
        Ok(())
    }
}

/// Options of `chaos inject net-drop`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject net-drop --probability 0.1 --protocol udp -- ./client\n  \
    chaos inject net-drop --direction ingress --port 5432 --cgroup /system.slice/db.service")]
pub struct NetDropArgs {
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Options of `chaos inject net-delay`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject net-delay --delay 100ms --jitter 20ms -- ./client\n  \
    chaos inject net-delay --delay 1s --cidr 10.0.0.0/8 --device eth0 --pid 1234\n\n\
    chaos makes fq the root qdisc of the egress devices (only in place of the kernel's \
    default) and restores the default when it ends.")]
pub struct NetDelayArgs {
    /// How long to hold each packet, e.g. 100ms.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub delay: Duration,
    /// Vary the delay uniformly within delay ± jitter, e.g. 20ms.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub jitter: Option<Duration>,
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Options of `chaos inject net-rate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject net-rate --rate 1mbit -- ./uploader\n\n\
    chaos makes fq the root qdisc of the egress devices (only in place of the kernel's \
    default) and restores the default when it ends.")]
pub struct NetRateArgs {
    /// The cap on what the target sends, in tc units: 1mbit, 500kbit, 2mbps (bytes/s).
    #[arg(long)]
    pub rate: Rate,
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn fault(effect: NetEffect, filter: &PacketFilterArgs, run: &RunArgs) -> anyhow::Result<NetFault> {
    let default_direction = if effect.egress_only() {
        Direction::Egress
    } else {
        Direction::Both
    };
    let fault = NetFault {
        effect,
        direction: filter.direction.unwrap_or(default_direction),
        protocol: filter.protocol,
        port: filter.port,
        peer: filter.cidr,
        probability: filter.probability.unwrap_or(1.0),
        dry_run: run.dry_run,
        deadline: Some(run.duration),
    };
    fault.validate()?;
    Ok(fault)
}

/// Options of `chaos inject net-duplicate`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject net-duplicate --probability 0.05 --protocol udp -- ./client\n\n\
    A tc program on the egress devices (TCX, or a clsact qdisc that chaos adds and removes \
    before 6.6) sends a copy of the target's picked packets.")]
pub struct NetDuplicateArgs {
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Options of `chaos inject net-corrupt`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject net-corrupt --probability 0.01 --protocol udp -- ./client\n  \
    chaos inject net-corrupt --probability 0.1 --fix-checksum --port 8080 --pid 1234\n\n\
    Each picked packet gets one bit of its payload flipped by a tc program on the egress \
    devices. Without --fix-checksum its checksum stays that of the original data, so a \
    receiver that checks it drops the packet; receivers on lo and veth trust checksums the \
    sender left to the device, and accept the corrupted data.")]
pub struct NetCorruptArgs {
    /// Fix the TCP/UDP/ICMP checksum after corrupting, so that the receiver accepts the data.
    #[arg(long)]
    pub fix_checksum: bool,
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A parsed `chaos inject net-*` command, for those that run it themselves (experiments).
pub struct NetRequest {
    /// The fault.
    pub fault: NetFault,
    /// Where its qdiscs and tc programs go.
    pub devices: DeviceArgs,
    /// Duration, dry run, output.
    pub run: RunArgs,
    /// Whom it hits.
    pub target: TargetArgs,
}

impl NetRequest {
    fn run(self) -> anyhow::Result<ExitCode> {
        inject(&self.fault, &self.devices, &self.run, &self.target)
    }
}

impl NetCorruptArgs {
    /// The request behind the options.
    pub fn into_request(self) -> anyhow::Result<NetRequest> {
        let effect = NetEffect::Corrupt {
            fix_checksum: self.fix_checksum,
        };
        Ok(NetRequest {
            fault: fault(effect, &self.filter, &self.run)?,
            devices: self.devices,
            run: self.run,
            target: self.target,
        })
    }
}

impl NetDuplicateArgs {
    /// The request behind the options.
    pub fn into_request(self) -> anyhow::Result<NetRequest> {
        Ok(NetRequest {
            fault: fault(NetEffect::Duplicate, &self.filter, &self.run)?,
            devices: self.devices,
            run: self.run,
            target: self.target,
        })
    }
}

impl NetDropArgs {
    /// The request behind the options.
    pub fn into_request(self) -> anyhow::Result<NetRequest> {
        Ok(NetRequest {
            fault: fault(NetEffect::Drop, &self.filter, &self.run)?,
            devices: DeviceArgs {
                device: Vec::new(),
                netns: None,
            },
            run: self.run,
            target: self.target,
        })
    }
}

impl NetDelayArgs {
    /// The request behind the options.
    pub fn into_request(self) -> anyhow::Result<NetRequest> {
        let effect = NetEffect::Delay {
            delay: self.delay,
            jitter: self.jitter.unwrap_or_default(),
        };
        Ok(NetRequest {
            fault: fault(effect, &self.filter, &self.run)?,
            devices: self.devices,
            run: self.run,
            target: self.target,
        })
    }
}

impl NetRateArgs {
    /// The request behind the options.
    pub fn into_request(self) -> anyhow::Result<NetRequest> {
        Ok(NetRequest {
            fault: fault(NetEffect::Rate(self.rate), &self.filter, &self.run)?,
            devices: self.devices,
            run: self.run,
            target: self.target,
        })
    }
}

/// Runs `chaos inject net-corrupt`.
pub fn corrupt(args: NetCorruptArgs) -> anyhow::Result<ExitCode> {
    args.into_request()?.run()
}

/// Runs `chaos inject net-duplicate`.
pub fn duplicate(args: NetDuplicateArgs) -> anyhow::Result<ExitCode> {
    args.into_request()?.run()
}

/// Runs `chaos inject net-drop`.
pub fn drop(args: NetDropArgs) -> anyhow::Result<ExitCode> {
    args.into_request()?.run()
}

/// Runs `chaos inject net-delay`.
pub fn delay(args: NetDelayArgs) -> anyhow::Result<ExitCode> {
    args.into_request()?.run()
}

/// Runs `chaos inject net-rate`.
pub fn rate(args: NetRateArgs) -> anyhow::Result<ExitCode> {
    args.into_request()?.run()
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

/// The outcome of one `chaos inject net-*` run.
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

/// The injection in progress: the fq qdiscs (if any) and the attached programs. Dropping it
/// ends the fault.
pub(crate) struct NetInjection {
    fault: NetFault,
    target: CgroupTarget,
    injector: Option<PacketInjector>,
    fq: Option<FqQdiscs>,
}

impl NetInjection {
    /// Installs fq where the fault needs it and attaches the programs; all or nothing.
    pub(crate) fn start(
        fault: &NetFault,
        devices: &[String],
        target: &CgroupTarget,
    ) -> anyhow::Result<NetInjection> {
        let devices = if !(fault.effect.needs_fq() || fault.effect.on_devices()) {
            Vec::new()
        } else if devices.is_empty() {
            devices_up()?
        } else {
            devices.to_vec()
        };
        // fq first: stamped packets on a device without it would just leave undelayed.
        let fq = if fault.effect.needs_fq() {
            let qdiscs = FqQdiscs::install(&devices, horizon(fault))?;
            if !qdiscs.devices().is_empty() {
                eprintln!(
                    "chaos: fq is the root qdisc of {} until chaos ends",
                    qdiscs.devices().join(", ")
                );
            }
            Some(qdiscs)
        } else {
            None
        };
        let tc_devices: &[String] = if fault.effect.on_devices() {
            &devices
        } else {
            &[]
        };
        let injector = PacketInjector::start(
            &[(fault.rule(target), target.path.clone())],
            tc_devices,
            fault.deadline,
        )?;
        Ok(NetInjection {
            fault: fault.clone(),
            target: target.clone(),
            injector: Some(injector),
            fq,
        })
    }

    /// The counters so far; `None` once the fault has ended.
    pub(crate) fn report(&self) -> anyhow::Result<Option<NetReport>> {
        let Some(injector) = &self.injector else {
            return Ok(None);
        };
        let counters = injector.counters()?;
        Ok(Some(NetReport {
            faults: counters
                .iter()
                .map(|c| NetFaultReport {
                    kind: self.fault.effect.kind(),
                    fault: self.fault.describe(),
                    target: self.target.path.display().to_string(),
                    dry_run: self.fault.dry_run,
                    seen: c.seen,
                    affected: c.affected,
                    bytes: c.bytes,
                })
                .collect(),
        }))
    }

    /// Detaches the programs, lets the packets fq still holds leave, then restores the
    /// qdiscs (deleting a qdisc drops what it holds).
    pub(crate) fn end(&mut self) {
        // Programs first, explicitly: nothing may stamp packets while fq drains.
        std::mem::drop(self.injector.take());
        if let Some(fq) = self.fq.take() {
            thread::sleep(horizon(&self.fault).min(Duration::from_secs(10)));
            std::mem::drop(fq);
        }
    }
}

impl Drop for NetInjection {
    fn drop(&mut self) {
        self.end();
    }
}

/// How far ahead the fault stamps packets at most.
fn horizon(fault: &NetFault) -> Duration {
    match fault.effect {
        NetEffect::Delay { delay, jitter } => delay + jitter,
        _ => Duration::from_millis(200),
    }
}

fn print_report(report: &NetReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        eprint!("{report}");
    }
    Ok(())
}

fn inject(
    fault: &NetFault,
    device_args: &DeviceArgs,
    run: &RunArgs,
    target_args: &TargetArgs,
) -> anyhow::Result<ExitCode> {
    let stop = StopSignals::install()?;
    // Resolve the target (paths, /proc) before moving, then move.
    let devices = &device_args.device[..];
    if !target_args.command.is_empty() {
        let cgroup = ChildCgroup::create(&format!("run-{}", std::process::id()))?;
        device_args.enter_netns()?;
        return run_command(fault, devices, run, &target_args.command, &cgroup, &stop);
    }
    let target = target_args.resolve()?;
    device_args.enter_netns()?;
    let mut injection = NetInjection::start(fault, devices, &target)?;
    eprintln!(
        "chaos: injecting {} {} into cgroup {}; Ctrl-C to stop",
        fault.effect.kind(),
        fault.describe(),
        target.path.display()
    );
    let started = Instant::now();
    let mut live = LiveView::new(run.json, Keys::Read);
    while !stop.stopped() && started.elapsed() < run.duration && !live.quit_requested() {
        thread::sleep(Duration::from_millis(100));
        let left = run.duration.saturating_sub(started.elapsed());
        let Some(report) = injection.report()? else {
            continue;
        };
        live.update(
            &report
                .faults
                .iter()
                .map(|f| FaultRow {
                    kind: f.kind.to_owned(),
                    what: f.fault.clone(),
                    matched: f.seen,
                    injected: f.affected,
                    left: Some(left),
                })
                .collect::<Vec<_>>(),
        );
    }
    live.finish();
    let report = injection.report()?.expect("injecting");
    injection.end();
    print_report(&report, run.json)?;
    Ok(ExitCode::SUCCESS)
}

fn run_command(
    fault: &NetFault,
    devices: &[String],
    run: &RunArgs,
    argv: &[String],
    cgroup: &ChildCgroup,
    stop: &StopSignals,
) -> anyhow::Result<ExitCode> {
    let target = cgroup.target();
    let mut injection = NetInjection::start(fault, devices, target)?;
    eprintln!(
        "chaos: injecting {} {} into cgroup {}",
        fault.effect.kind(),
        fault.describe(),
        target.path.display()
    );
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
    std::mem::drop(procs);

    let started = Instant::now();
    let mut report = None;
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
        let d = run.duration;
        if report.is_none() && started.elapsed() >= d {
            report = injection.report()?;
            injection.end();
            eprintln!("chaos: {d:?} passed, faults removed; waiting for the command");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let report = match report {
        Some(report) => report,
        None => injection.report()?.expect("injecting"),
    };
    injection.end();
    print_report(&report, run.json)?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
