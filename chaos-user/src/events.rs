//! Events: one record per call or packet a fault acted on, as the kernel reported it, turned
//! into what a person reads (strace-like lines) or a program reads (JSON lines).
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chaos_common::{
    Action, Event,
    event::{EVENT_DRY_RUN, EVENT_EGRESS, EVENT_NAMES, EVENT_PACKET},
    filter::{AF_INET, AF_INET6},
    packet::PacketAction,
};
use serde::{Deserialize, Serialize};

use crate::fault::Errno;

/// Turns the kernel's boot-clock times into wall-clock times: the offset between the two
/// clocks is read once, so that every event of a run converts alike.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock ns at boot-clock 0.
    boot_at_ns: i128,
}

impl Clock {
    /// The offset now.
    pub fn now() -> Result<Clock, crate::Error> {
        let boot = crate::fault::boot_time_ns()?;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Ok(Clock {
            boot_at_ns: wall - boot as i128,
        })
    }

    /// The wall-clock time of boot-clock `boot_ns`.
    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (self.boot_at_ns + boot_ns as i128).max(0) as u128;
        UNIX_EPOCH + Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
    }
}

/// One call or packet a fault acted on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventRecord {
    /// When, as RFC 3339 UTC with microseconds.
    pub time: String,
    /// When, on the kernel's boot clock (ns).
    pub boot_ns: u64,
    /// The rule that acted: its position among the fault's rules, from 1.
    pub rule: usize,
    /// The calling process (calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The calling thread (calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    /// The calling thread's name (calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// The cgroup v2 id of the caller (of the packet's socket).
    pub cgroup_id: u64,
    /// The syscall (calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// `egress` or `ingress` (packets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// What was done: errno, signal, delay, pause (calls); drop, delay, rate, corrupt,
    /// duplicate (packets).
    pub effect: String,
    /// The errno the call failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// The signal sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The rule's delay (ns), for delays and pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ns: Option<u64>,
    /// For file calls: the file's name and a few of its parents' (`.../` when cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The peer's address and port (sockets, packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The local port of a packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// The IP protocol of a packet (tcp, udp, icmp, or its number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The fault is a dry run: this was only counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl EventRecord {
    /// The record of kernel event `event`, whose rule is the fault's `rule`th (from 0);
    /// `label` names the rule's syscall for hooks that do not know it.
    pub fn new(clock: &Clock, rule: usize, label: &str, event: &Event) -> EventRecord {
        let packet = event.kind == EVENT_PACKET;
        let time = humantime::format_rfc3339_micros(clock.wall(event.time_ns)).to_string();
        let mut record = EventRecord {
            time,
            boot_ns: event.time_ns,
            rule: rule + 1,
            pid: (!packet).then_some(event.pid),
            tid: (!packet).then_some(event.tid),
            comm: (!packet).then(|| String::from_utf8_lossy(event.comm()).into_owned()),
            cgroup_id: event.cgroup_id,
            call: None,
            direction: None,
            effect: String::new(),
            errno: None,
            signal: None,
            delay_ns: None,
            file: file_of(event),
            peer: peer_of(event),
            local_port: (packet && event.local_port != 0).then_some(event.local_port),
            protocol: None,
            dry_run: event.flags & EVENT_DRY_RUN != 0,
        };
        if packet {
            record.direction = Some(
                if event.flags & EVENT_EGRESS != 0 {
                    "egress"
                } else {
                    "ingress"
                }
                .to_owned(),
            );
            record.protocol = Some(match event.protocol {
                6 => "tcp".to_owned(),
                17 => "udp".to_owned(),
                1 => "icmp".to_owned(),
                58 => "icmpv6".to_owned(),
                n => n.to_string(),
            });
            let action = PacketAction::from_raw(event.action);
            record.effect = match action {
                Some(PacketAction::Drop) => "drop",
                Some(PacketAction::Delay) => "delay",
                Some(PacketAction::Rate) => "rate",
                Some(PacketAction::Corrupt) => "corrupt",
                Some(PacketAction::Duplicate) => "duplicate",
                None => "unknown",
            }
            .to_owned();
            if action == Some(PacketAction::Delay) {
                record.delay_ns = Some(event.delay_ns);
            }
            return record;
        }
        record.call = Some(
            usize::try_from(event.syscall_nr)
                .ok()
                .and_then(syscalls::Sysno::new)
                .map(|s| s.name().to_owned())
                .unwrap_or_else(|| label.to_owned()),
        );
        match Action::from_raw(event.action) {
            Some(Action::Errno) => {
                record.effect = "errno".to_owned();
                record.errno = Some(Errno::from_raw(event.value as i32).to_string());
            }
            Some(Action::Signal | Action::SignalThread) => {
                record.effect = "signal".to_owned();
                record.signal = Some(signal_name(event.value));
            }
            Some(Action::Spin) => {
                record.effect = "delay".to_owned();
                record.delay_ns = Some(event.delay_ns);
            }
            Some(Action::Pause) => {
                record.effect = "pause".to_owned();
                record.delay_ns = Some(event.delay_ns);
            }
            None => record.effect = "unknown".to_owned(),
        }
        record
    }

    /// The time of day (UTC) with microseconds, as strace's `-tt` shows it.
    fn time_of_day(&self) -> &str {
        // RFC 3339: 2026-11-30T12:03:04.123456Z
        self.time.get(11..26).unwrap_or(&self.time)
    }
}

/// strace's spirit: `12:03:04.123456 [pid 4242 tid 4243 redis-server] fdatasync() = SIGKILL
/// (injected, rule 1)`; packets: `12:03:04.123456 [cgroup 1234] udp egress :40000 ->
/// 127.0.0.1:9999 = dropped (injected, rule 1)`.
impl fmt::Display for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.dry_run { "dry run" } else { "injected" };
        let delay = || {
            humantime::format_duration(Duration::from_nanos(self.delay_ns.unwrap_or(0))).to_string()
        };
        write!(f, "{} ", self.time_of_day())?;
        if let Some(call) = &self.call {
            write!(
                f,
                "[pid {} tid {} {}] {call}(",
                self.pid.unwrap_or(0),
                self.tid.unwrap_or(0),
                self.comm.as_deref().unwrap_or("?")
            )?;
            if let Some(file) = &self.file {
                write!(f, "{file:?}")?;
            } else if let Some(peer) = &self.peer {
                write!(f, "{peer}")?;
            }
            write!(f, ") = ")?;
            match self.effect.as_str() {
                "errno" => write!(f, "-1 {}", self.errno.as_deref().unwrap_or("?"))?,
                "signal" => write!(f, "{}", self.signal.as_deref().unwrap_or("?"))?,
                "delay" => write!(f, "? (delayed {})", delay())?,
                "pause" => write!(f, "SIGSTOP (process paused for {})", delay())?,
                other => write!(f, "{other}")?,
            }
        } else {
            write!(
                f,
                "[cgroup {}] {} {} ",
                self.cgroup_id,
                self.protocol.as_deref().unwrap_or("?"),
                self.direction.as_deref().unwrap_or("?")
            )?;
            let local = self
                .local_port
                .map(|p| format!(":{p}"))
                .unwrap_or_else(|| "local".to_owned());
            let peer = self.peer.as_deref().unwrap_or("?");
            if self.direction.as_deref() == Some("ingress") {
                write!(f, "{peer} -> {local} = ")?;
            } else {
                write!(f, "{local} -> {peer} = ")?;
            }
            match self.effect.as_str() {
                "drop" => write!(f, "dropped")?,
                "delay" => write!(f, "delayed {}", delay())?,
                "rate" => write!(f, "paced")?,
                "corrupt" => write!(f, "corrupted")?,
                "duplicate" => write!(f, "duplicated")?,
                other => write!(f, "{other}")?,
            }
        }
        write!(f, " ({how}, rule {})", self.rule)
    }
}

/// The signal's name (`SIGKILL`), or its number.
fn signal_name(value: u32) -> String {
    nix::sys::signal::Signal::try_from(value as i32)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The path from the names the kernel read, outermost first: `/` when the walk reached the
/// root, `.../` when it stopped before.
fn file_of(event: &Event) -> Option<String> {
    let names: Vec<String> = (0..EVENT_NAMES)
        .map_while(|i| event.name(i))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let (top, below) = names.split_last()?;
    let mut parts: Vec<&str> = below.iter().rev().map(String::as_str).collect();
    let prefix = if top == "/" {
        "/"
    } else {
        parts.insert(0, top);
        if names.len() == EVENT_NAMES {
            ".../"
        } else {
            ""
        }
    };
    Some(format!("{prefix}{}", parts.join("/")))
}

/// `address:port` of the event's peer, if it has one.
fn peer_of(event: &Event) -> Option<String> {
    let ip = match event.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(
            event.addr[0],
            event.addr[1],
            event.addr[2],
            event.addr[3],
        )),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(event.addr)),
        _ => return None,
    };
    Some(match ip {
        IpAddr::V4(ip) => format!("{ip}:{}", event.port),
        IpAddr::V6(ip) => format!("[{ip}]:{}", event.port),
    })
}

#[cfg(test)]
mod tests {
    use chaos_common::{Hook, event::EVENT_CALL};

    use super::*;

    fn event() -> Event {
        Event {
            time_ns: 5_000_000_000,
            cgroup_id: 77,
            pid: 4242,
            tid: 4243,
            kind: EVENT_CALL,
            slot: 3,
            hook: Hook::SysEnter as u32,
            action: Action::Signal as u32,
            value: 9,
            flags: 0,
            syscall_nr: 75,
            delay_ns: 0,
            comm: *b"redis-server\0\0\0\0",
            family: 0,
            port: 0,
            local_port: 0,
            protocol: 0,
            _pad: 0,
            addr: [0; 16],
            names: [[0; 32]; EVENT_NAMES],
        }
    }

    fn clock() -> Clock {
        // Boot at 2026-11-30T12:03:00Z.
        Clock {
            boot_at_ns: 1_796_040_180_000_000_000,
        }
    }

    #[test]
    fn a_signal_reads_like_strace() {
        let record = EventRecord::new(&clock(), 0, "fdatasync", &event());
        assert_eq!(record.time, "2026-11-30T12:03:05.000000Z");
        assert_eq!(
            record.to_string(),
            "12:03:05.000000 [pid 4242 tid 4243 redis-server] fdatasync() = SIGKILL \
             (injected, rule 1)"
        );
    }

    #[test]
    fn a_file_error_names_the_file_and_its_parents() {
        let mut e = event();
        e.action = Action::Errno as u32;
        e.value = 5;
        e.syscall_nr = 257;
        for (i, name) in ["data", "db", "var"].iter().enumerate() {
            e.names[i][..name.len()].copy_from_slice(name.as_bytes());
        }
        let record = EventRecord::new(&clock(), 1, "openat", &e);
        assert_eq!(record.file.as_deref(), Some(".../var/db/data"));
        assert!(
            record
                .to_string()
                .ends_with("openat(\".../var/db/data\") = -1 EIO (injected, rule 2)"),
            "{record}"
        );
        e.names[2] = [0; 32];
        e.names[2][0] = b'/';
        let record = EventRecord::new(&clock(), 1, "openat", &e);
        assert_eq!(record.file.as_deref(), Some("/db/data"));
    }

    #[test]
    fn a_dropped_packet_shows_its_addresses() {
        let mut e = event();
        e.kind = EVENT_PACKET;
        e.action = PacketAction::Drop as u32;
        e.flags = EVENT_EGRESS;
        e.family = AF_INET;
        e.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.port = 9999;
        e.local_port = 40000;
        e.protocol = 17;
        let record = EventRecord::new(&clock(), 0, "drop", &e);
        assert_eq!(record.pid, None);
        assert_eq!(
            record.to_string(),
            "12:03:05.000000 [cgroup 77] udp egress :40000 -> 127.0.0.1:9999 = dropped \
             (injected, rule 1)"
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["peer"], "127.0.0.1:9999");
        assert!(json.get("pid").is_none());
    }
}
