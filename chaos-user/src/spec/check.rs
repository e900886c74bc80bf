//! [`FaultSpec::check`]: the one place a spec is validated and turned into the fault it
//! describes.
use std::time::Duration;

use super::{
    CheckedFault, DirectionSpec, Fault, FaultSpec, MechanismSpec, Names, PacketFilterSpec,
    ProtocolSpec, ScheduleSpec, SpecError, TargetSpec,
};
use crate::{
    Error,
    fault::{
        Errno, LatencyFault, LatencyMode, SignalFault, SignalNumber, Syscall, SyscallFault,
        parse_any_syscalls,
    },
    packet::{Direction, NetEffect, NetFault, Protocol, Rate},
    target::Target,
};

impl FaultSpec {
    /// Checks every value and builds the fault it describes: the one place a spec is
    /// validated. Errors name the field as a JSON path.
    pub fn check(&self) -> Result<CheckedFault, SpecError> {
        let (target, unguarded, duration, dry_run) = each!(self, s => (
            &s.target, s.i_know_what_i_am_doing, &s.duration, s.dry_run
        ));
        let duration = parse_duration("duration", duration)?;
        if duration.is_zero() {
            return Err(SpecError::new("duration", "0s is not valid: at least 1ms"));
        }
        if let TargetSpec::Cgroup(p) = target
            && p.as_os_str().is_empty()
        {
            return Err(SpecError::new(
                "target.cgroup",
                "empty: a cgroup v2 directory",
            ));
        }
        let deadline = Some(duration);
        let fault = match self {
            FaultSpec::Syscall(s) => {
                let syscalls = syscall_list(&s.syscalls, Syscall::parse_list)?;
                Fault::Rules(Box::new(SyscallFault {
                    syscalls,
                    errno: s
                        .errno
                        .0
                        .parse::<Errno>()
                        .map_err(|e| SpecError::from_error("errno", e))?,
                    filter: s.filter.filter()?,
                    schedule: s.schedule.schedule()?,
                    dry_run,
                    deadline,
                    mechanism: s.mechanism.map(MechanismSpec::hook_mechanism),
                }))
            }
            FaultSpec::Signal(s) => Fault::Rules(Box::new(SignalFault {
                syscalls: syscall_list(&s.syscalls, parse_one_sysno)?,
                signal: match &s.signal {
                    None => "SIGKILL".parse().expect("a signal"),
                    Some(sig) => sig
                        .0
                        .parse::<SignalNumber>()
                        .map_err(|e| SpecError::from_error("signal", e))?,
                },
                thread: s.thread,
                filter: s.filter.filter()?,
                schedule: s.schedule.schedule()?,
                dry_run,
                deadline,
            })),
            FaultSpec::Latency(s) => {
                let delay = parse_duration("delay", &s.delay)?;
                let jitter = match &s.jitter {
                    Some(j) => parse_duration("jitter", j)?,
                    None => Duration::ZERO,
                };
                let mode = match &s.mode {
                    Some(m) => m
                        .parse::<LatencyMode>()
                        .map_err(|e| SpecError::from_error("mode", e))?,
                    None => LatencyMode::automatic(delay, jitter),
                };
                Fault::Rules(Box::new(LatencyFault {
                    syscalls: syscall_list(&s.syscalls, parse_one_sysno)?,
                    delay,
                    jitter,
                    mode,
                    filter: s.filter.filter()?,
                    schedule: s.schedule.schedule()?,
                    dry_run,
                    deadline,
                }))
            }
            FaultSpec::NetDrop(s) => net(
                NetEffect::Drop,
                &s.filter,
                &s.schedule,
                &[],
                dry_run,
                deadline,
            )?,
            FaultSpec::NetDelay(s) => {
                let delay = parse_duration("delay", &s.delay)?;
                let jitter = match &s.jitter {
                    Some(j) => parse_duration("jitter", j)?,
                    None => Duration::ZERO,
                };
                let effect = NetEffect::Delay { delay, jitter };
                net(
                    effect,
                    &s.filter,
                    &s.schedule,
                    &s.devices,
                    dry_run,
                    deadline,
                )?
            }
            FaultSpec::NetRate(s) => {
                let rate = s
                    .rate
                    .parse::<Rate>()
                    .map_err(|e| SpecError::from_error("rate", e))?;
                net(
                    NetEffect::Rate(rate),
                    &s.filter,
                    &s.schedule,
                    &s.devices,
                    dry_run,
                    deadline,
                )?
            }
            FaultSpec::NetDuplicate(s) => net(
                NetEffect::Duplicate,
                &s.filter,
                &s.schedule,
                &s.devices,
                dry_run,
                deadline,
            )?,
            FaultSpec::NetCorrupt(s) => {
                let effect = NetEffect::Corrupt {
                    fix_checksum: s.fix_checksum,
                };
                net(
                    effect,
                    &s.filter,
                    &s.schedule,
                    &s.devices,
                    dry_run,
                    deadline,
                )?
            }
            FaultSpec::Dns(s) => dns(s, dry_run)?,
            FaultSpec::TcpReset(s) => tcp_reset(s, dry_run)?,
        };
        Ok(CheckedFault {
            kind: self.kind(),
            fault,
            target: Target::from(target),
            unguarded,
            duration,
            dry_run,
        })
    }
}

fn parse_duration(path: &str, s: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(s).map_err(|e| {
        SpecError::new(
            path,
            format!("`{s}` is not a duration ({e}): e.g. 30s, 500ms, 5m"),
        )
    })
}

fn parse_one_sysno(name: &str) -> Result<Vec<syscalls::Sysno>, Error> {
    parse_any_syscalls(name)
}

/// Parses each name (or class) of `names`, naming the index of a bad one.
fn syscall_list<T, R: IntoIterator<Item = T>>(
    names: &Names,
    parse: impl Fn(&str) -> Result<R, Error>,
) -> Result<Vec<T>, SpecError>
where
    T: PartialEq,
{
    let items = names.items();
    if items.is_empty() {
        return Err(SpecError::new(
            "syscalls",
            "empty: at least one syscall name (as in `man 2`) or class (%file, %net, ...)",
        ));
    }
    let mut out: Vec<T> = Vec::new();
    for (i, name) in items.iter().enumerate() {
        for s in parse(name).map_err(|e| SpecError::from_error(format!("syscalls[{i}]"), e))? {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn net(
    effect: NetEffect,
    filter: &PacketFilterSpec,
    schedule: &ScheduleSpec,
    devices: &[String],
    dry_run: bool,
    deadline: Option<Duration>,
) -> Result<Fault, SpecError> {
    for (name, set) in [
        ("after", schedule.after.is_some()),
        ("every", schedule.every.is_some()),
        ("max_hits", schedule.max_hits.is_some()),
    ] {
        if set {
            return Err(SpecError::new(
                format!("schedule.{name}"),
                format!(
                    "not available to {}: packet faults take only schedule.probability",
                    effect.kind()
                ),
            ));
        }
    }
    let default_direction = if effect.egress_only() {
        Direction::Egress
    } else {
        Direction::Both
    };
    let fault = NetFault {
        effect,
        direction: match filter.direction {
            None => default_direction,
            Some(DirectionSpec::Egress) => Direction::Egress,
            Some(DirectionSpec::Ingress) => Direction::Ingress,
            Some(DirectionSpec::Both) => Direction::Both,
        },
        protocol: filter.protocol.map(|p| match p {
            ProtocolSpec::Tcp => Protocol::Tcp,
            ProtocolSpec::Udp => Protocol::Udp,
            ProtocolSpec::Icmp => Protocol::Icmp,
        }),
        port: filter.port,
        peer: filter
            .cidr
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| SpecError::from_error("filter.cidr", e))?,
        probability: schedule.probability()?,
        dry_run,
        deadline,
    };
    fault.validate().map_err(|e| {
        let path = match &e {
            Error::Invalid { field, .. } => match field.trim_start_matches("--") {
                "direction" => "filter.direction",
                "port" => "filter.port",
                "jitter" => "jitter",
                _ => "",
            },
            _ => "",
        };
        SpecError::from_error(path, e)
    })?;
    Ok(Fault::Net {
        fault,
        devices: devices.to_vec(),
    })
}

fn dns(s: &super::DnsSpec, dry_run: bool) -> Result<Fault, SpecError> {
    use crate::dns::{DnsEffect, DnsFault, Rcode};
    for (name, set) in [
        ("after", s.schedule.after.is_some()),
        ("every", s.schedule.every.is_some()),
        ("when", s.schedule.when.is_some()),
        ("max_hits", s.schedule.max_hits.is_some()),
        ("per_process", s.schedule.per_process),
    ] {
        if set {
            return Err(SpecError::new(
                format!("schedule.{name}"),
                "not available to dns: it takes only schedule.probability",
            ));
        }
    }
    let effect = match (&s.rcode, s.drop, &s.delay) {
        (Some(rcode), false, None) => DnsEffect::Rcode(
            rcode
                .parse::<Rcode>()
                .map_err(|e| SpecError::from_error("rcode", e))?,
        ),
        (None, true, None) => DnsEffect::Drop,
        (None, false, Some(delay)) => DnsEffect::Delay(parse_duration("delay", delay)?),
        (None, false, None) => {
            return Err(SpecError::new(
                "rcode",
                "missing: what faulted queries get, one of rcode (NXDOMAIN, SERVFAIL, \
                 REFUSED), drop or delay",
            ));
        }
        _ => {
            return Err(SpecError::new(
                "",
                "rcode, drop and delay exclude each other: give one",
            ));
        }
    };
    let mut domains = Vec::new();
    for (i, d) in s.domains.iter().enumerate() {
        domains.push(
            DnsFault::domain(d).map_err(|e| SpecError::from_error(format!("domains[{i}]"), e))?,
        );
    }
    let fault = DnsFault {
        domains,
        effect,
        probability: s
            .schedule
            .probability
            .map(|_| s.schedule.probability())
            .transpose()?,
        server: s
            .server
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| SpecError::from_error("server", e))?,
        port: s.port.unwrap_or(53),
        dry_run,
    };
    fault.validate().map_err(|e| {
        let path = match &e {
            Error::Invalid { field, .. } => *field,
            _ => "",
        };
        SpecError::from_error(path, e)
    })?;
    Ok(Fault::Dns(fault))
}

fn tcp_reset(s: &super::TcpResetSpec, dry_run: bool) -> Result<Fault, SpecError> {
    use crate::tcp_reset::{ResetDirection, TcpResetFault};
    for (name, set) in [
        ("when", s.schedule.when.is_some()),
        ("max_hits", s.schedule.max_hits.is_some()),
        ("per_process", s.schedule.per_process),
    ] {
        if set {
            return Err(SpecError::new(
                format!("schedule.{name}"),
                "not available to tcp-reset: it takes schedule.probability, every and after",
            ));
        }
    }
    if s.schedule.every == Some(0) {
        return Err(SpecError::new(
            "schedule.every",
            "0 is not valid: at least 1",
        ));
    }
    let fault = TcpResetFault {
        port: s.port,
        peer: s
            .cidr
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| SpecError::from_error("cidr", e))?,
        direction: match &s.direction {
            None => ResetDirection::Both,
            Some(d) => d
                .parse()
                .map_err(|e| SpecError::from_error("direction", e))?,
        },
        probability: s
            .schedule
            .probability
            .map(|_| s.schedule.probability())
            .transpose()?,
        after_segments: s.schedule.after,
        every: s.schedule.every,
        once: s.once,
        dry_run,
    };
    fault
        .validate()
        .map_err(|e| SpecError::from_error("schedule.probability", e))?;
    Ok(Fault::TcpReset(fault))
}
