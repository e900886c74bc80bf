//! The fault spec: one typed description of a fault, the library's centre. Every edge maps into
//! it: `chaos inject`'s options, the `chaos` provider of an experiment (its `arguments` are
//! the spec's fields), the daemon's `POST /faults` body and the Chaos Toolkit extension.
//! [`FaultSpec::check`] is the one place a spec is validated; errors name the field as a JSON
//! path (`schedule.probability: 1.5 is not in (0, 1]`). The engine starts a checked spec.
//!
//! A spec is JSON tagged by `kind`:
//!
//! ```json
//! {"kind": "syscall", "syscalls": ["connect"], "errno": "ECONNREFUSED",
//!  "filter": {"port": 5432}, "schedule": {"probability": 0.5, "max_hits": 10},
//!  "target": {"cgroup": "/system.slice/web.service"}, "duration": "30s"}
//! ```
//!
//! Its JSON Schema ([`schema`]) is committed as `docs/fault-spec.schema.json` and served at
//! `GET /schema`.
use std::{borrow::Cow, fmt, path::PathBuf, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Error,
    fault::{
        Errno, FdKind, FilterSpec, Injectable, LatencyFault, LatencyMode, SignalFault,
        SignalNumber, Syscall, SyscallFault, parse_any_syscalls, parse_comm,
    },
    packet::{Direction, NetEffect, NetFault, Protocol, Rate},
    target::Target,
};

#[cfg(test)]
mod tests;

/// The fault kinds, as `chaos inject` subcommands, the spec's `kind` and every report name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Fail syscalls with an errno.
    Syscall,
    /// Send a signal at chosen calls.
    Signal,
    /// Delay chosen calls.
    Latency,
    /// Drop packets.
    NetDrop,
    /// Delay packets the target sends.
    NetDelay,
    /// Cap the rate the target sends at.
    NetRate,
    /// Duplicate packets the target sends.
    NetDuplicate,
    /// Corrupt packets the target sends.
    NetCorrupt,
}

impl FaultKind {
    /// Every kind, in the order `chaos inject --help` lists them.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Syscall,
        FaultKind::Signal,
        FaultKind::Latency,
        FaultKind::NetDrop,
        FaultKind::NetDelay,
        FaultKind::NetRate,
        FaultKind::NetDuplicate,
        FaultKind::NetCorrupt,
    ];

    /// Its name: `syscall`, `net-drop`, ...
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Syscall => "syscall",
            FaultKind::Signal => "signal",
            FaultKind::Latency => "latency",
            FaultKind::NetDrop => "net-drop",
            FaultKind::NetDelay => "net-delay",
            FaultKind::NetRate => "net-rate",
            FaultKind::NetDuplicate => "net-duplicate",
            FaultKind::NetCorrupt => "net-corrupt",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every name, comma separated, for messages.
    pub fn names() -> String {
        FaultKind::ALL.map(FaultKind::name).join(", ")
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A spec that is not valid: the field as a JSON path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct SpecError {
    /// The field, e.g. `schedule.probability` or `syscalls[1]`; empty for the whole spec.
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A library error about a value of `path`, worded for the spec.
    fn from_error(path: impl Into<String>, err: Error) -> SpecError {
        let message = match err {
            Error::Invalid {
                value, expected, ..
            } => format!("`{value}` is not valid: {expected}"),
            other => other.to_string(),
        };
        SpecError::new(path, message)
    }
}

/// Whom a fault hits: exactly one of a cgroup, the cgroup of a process, a container, a
/// systemd unit or a Kubernetes pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetSpec {
    /// A cgroup v2 directory (absolute, or relative to the v2 mount as in /proc/PID/cgroup);
    /// its descendants are hit too.
    Cgroup(PathBuf),
    /// The cgroup of this process.
    Pid(u32),
    /// A container, by full or short id.
    Container(String),
    /// A systemd unit (NAME.service, .scope or .slice).
    Unit(String),
    /// A Kubernetes pod on this node, by UID.
    Pod(String),
}

impl From<&TargetSpec> for Target {
    fn from(t: &TargetSpec) -> Target {
        match t {
            TargetSpec::Cgroup(p) => Target::Cgroup(p.clone()),
            TargetSpec::Pid(p) => Target::Pid(*p),
            TargetSpec::Container(c) => Target::Container(c.clone()),
            TargetSpec::Unit(u) => Target::Unit(u.clone()),
            TargetSpec::Pod(p) => Target::Pod(p.clone()),
        }
    }
}

/// A list of names given as a list or as one comma-separated string (`"read,write"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names(pub Vec<String>);

impl Names {
    /// The names, the comma-separated strings split.
    pub fn items(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of names or one comma-separated string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Names, E> {
                Ok(Names(vec![s.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Names(out))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for Names {
    fn schema_name() -> Cow<'static, str> {
        "Names".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A list of names, or one comma-separated string.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

/// A name or a number (errno `EIO` or `5`, signal `SIGKILL` or `9`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameOrNumber(pub String);

impl Serialize for NameOrNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.parse::<u64>() {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for NameOrNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NameOrNumber, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NameOrNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a number")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber(s.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber(n.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<NameOrNumber, E> {
                Ok(NameOrNumber(n.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for NameOrNumber {
    fn schema_name() -> Cow<'static, str> {
        "NameOrNumber".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]})
    }
}

/// Which matching calls (packets) are affected. Packet faults take only `probability`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Affect each eligible call (packet) with this probability, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Let the first N matching calls through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Affect every Nth eligible call (1 = each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Stop after N affected calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hits: Option<u64>,
}

impl ScheduleSpec {
    fn is_empty(&self) -> bool {
        *self == ScheduleSpec::default()
    }

    fn probability(&self) -> Result<f64, SpecError> {
        match self.probability {
            None => Ok(1.0),
            Some(p) if p > 0.0 && p <= 1.0 => Ok(p),
            Some(p) => Err(SpecError::new(
                "schedule.probability",
                format!("{p} is not in (0, 1]"),
            )),
        }
    }

    /// The kernel's schedule.
    fn schedule(&self) -> Result<chaos_common::Schedule, SpecError> {
        let probability = self.probability()?;
        for (name, value) in [("every", self.every), ("max_hits", self.max_hits)] {
            if value == Some(0) {
                return Err(SpecError::new(
                    format!("schedule.{name}"),
                    "0 is not valid: at least 1",
                ));
            }
        }
        Ok(chaos_common::Schedule {
            after: self.after.unwrap_or(0),
            every: self.every.unwrap_or(1),
            max_hits: self.max_hits.unwrap_or(u64::MAX),
            probability: chaos_common::Schedule::probability_from_f64(probability),
            _pad: 0,
        })
    }
}

/// Which calls of the syscalls match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyscallFilterSpec {
    /// Only files at or below this directory (file syscalls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Only descriptors of these kinds: file, dir, socket, pipe, char, block, symlink.
    #[serde(default, alias = "fd_kind", skip_serializing_if = "Option::is_none")]
    pub fd_kinds: Option<Names>,
    /// Only this port: the peer's for connect, the local one for bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Only addresses in this block (10.0.0.0/8, fd00::/8, 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Only threads of this name (as in /proc/PID/task/TID/comm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
}

impl SyscallFilterSpec {
    fn is_empty(&self) -> bool {
        *self == SyscallFilterSpec::default()
    }

    fn filter(&self) -> Result<FilterSpec, SpecError> {
        let mut fd_kinds = Vec::new();
        if let Some(kinds) = &self.fd_kinds {
            for (i, k) in kinds.items().iter().enumerate() {
                fd_kinds.push(
                    k.parse::<FdKind>()
                        .map_err(|e| SpecError::from_error(format!("filter.fd_kinds[{i}]"), e))?,
                );
            }
        }
        Ok(FilterSpec {
            path: self.path.clone(),
            fd_kinds,
            port: self.port,
            cidr: self
                .cidr
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| SpecError::from_error("filter.cidr", e))?,
            comm: self
                .comm
                .as_deref()
                .map(parse_comm)
                .transpose()
                .map_err(|e| SpecError::from_error("filter.comm", e))?,
        })
    }
}

/// Which of the target's packets a packet fault applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PacketFilterSpec {
    /// `egress`, `ingress` or `both`. Default: both for drop, egress (the only choice) for the
    /// others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<DirectionSpec>,
    /// Only this protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolSpec>,
    /// Only packets with this local or remote TCP/UDP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Only packets to or from this peer network, e.g. 10.0.0.0/8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

impl PacketFilterSpec {
    fn is_empty(&self) -> bool {
        *self == PacketFilterSpec::default()
    }
}

/// Which way packets travel, seen from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DirectionSpec {
    Egress,
    Ingress,
    Both,
}

/// An IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ProtocolSpec {
    Tcp,
    Udp,
    Icmp,
}

/// Which kernel mechanism fails the syscalls. Reserved: only the automatic choice (absent,
/// or `lsm` where that is what it picks) runs today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MechanismSpec {
    /// BPF LSM hooks (and the cgroup socket hooks for the socket syscalls).
    Lsm,
    /// fmod_ret programs on the security_* functions.
    FmodRet,
}

fn default_duration() -> String {
    "10m".into()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Declares a kind's spec struct: its own fields, then the fields every kind has.
macro_rules! kind_spec {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Whom the fault hits.
            pub target: TargetSpec,
            /// Remove the fault after this long (`30s`, `5m`); the kernel programs stop
            /// injecting then by themselves. Default 10m.
            #[serde(default = "default_duration")]
            pub duration: String,
            /// Count what would be affected, affect nothing.
            #[serde(default, skip_serializing_if = "is_false")]
            pub dry_run: bool,
            /// Allow the root cgroup, PID 1's cgroup, or chaos's own cgroup or an ancestor of it.
            #[serde(default, skip_serializing_if = "is_false")]
            pub i_know_what_i_am_doing: bool,
        }
    };
}

kind_spec!(
    /// `syscall`: fail syscalls with an errno, like strace's `-e inject=SYSCALL:error=ERRNO`.
    SyscallSpec {
        /// Syscalls to fail, by name as in `man 2`, or classes %file, %net, %read, %write.
        #[serde(alias = "syscall")]
        syscalls: Names,
        /// The errno: a name (EIO, ECONNREFUSED...) or a number in 1..=4095.
        errno: NameOrNumber,
        /// Reserved: the mechanism (default: automatic).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mechanism: Option<MechanismSpec>,
        /// Which calls match.
        #[serde(default, skip_serializing_if = "SyscallFilterSpec::is_empty")]
        filter: SyscallFilterSpec,
        /// Which matching calls fail.
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `signal`: send a signal at chosen calls of any syscall, like strace's
    /// `-e inject=SYSCALL:signal=SIG`.
    SignalSpec {
        /// Syscalls whose entry is watched: any Linux x86_64 syscall, or classes.
        #[serde(alias = "syscall")]
        syscalls: Names,
        /// The signal: a name (SIGKILL, KILL, ...) or a number in 1..=64. Default SIGKILL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<NameOrNumber>,
        /// Signal only the calling thread, not the whole process.
        #[serde(default, skip_serializing_if = "is_false")]
        thread: bool,
        /// Which calls match (only `comm` applies).
        #[serde(default, skip_serializing_if = "SyscallFilterSpec::is_empty")]
        filter: SyscallFilterSpec,
        /// Which matching calls are signalled.
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `latency`: delay chosen calls of any syscall, like strace's
    /// `-e inject=SYSCALL:delay_enter=DELAY`.
    LatencySpec {
        /// Syscalls to delay: any Linux x86_64 syscall, or classes.
        #[serde(alias = "syscall")]
        syscalls: Names,
        /// How long each delayed call waits (`50ms`, `2s`).
        delay: String,
        /// Each delay is drawn uniformly from delay ± jitter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<String>,
        /// `spin`, `pause` or `block` (default: spin up to its 100ms cap, else pause).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// Which calls match.
        #[serde(default, skip_serializing_if = "SyscallFilterSpec::is_empty")]
        filter: SyscallFilterSpec,
        /// Which matching calls are delayed.
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `net-drop`: drop packets of the target's sockets.
    NetDropSpec {
        /// Which packets.
        #[serde(default, skip_serializing_if = "PacketFilterSpec::is_empty")]
        filter: PacketFilterSpec,
        /// Which matching packets (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `net-delay`: delay packets the target sends (installs the fq qdisc).
    NetDelaySpec {
        /// How long to hold each packet (`100ms`).
        delay: String,
        /// Vary the delay uniformly within delay ± jitter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter: Option<String>,
        /// Egress devices to work on; default every device that is up.
        #[serde(default, alias = "device", skip_serializing_if = "Vec::is_empty")]
        devices: Vec<String>,
        /// Which packets.
        #[serde(default, skip_serializing_if = "PacketFilterSpec::is_empty")]
        filter: PacketFilterSpec,
        /// Which matching packets (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `net-rate`: cap the rate the target sends at (installs the fq qdisc).
    NetRateSpec {
        /// The cap, in tc units: `1mbit`, `500kbit`, `2mbps` (bytes/s).
        rate: String,
        /// Egress devices to work on; default every device that is up.
        #[serde(default, alias = "device", skip_serializing_if = "Vec::is_empty")]
        devices: Vec<String>,
        /// Which packets.
        #[serde(default, skip_serializing_if = "PacketFilterSpec::is_empty")]
        filter: PacketFilterSpec,
        /// Which matching packets (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `net-duplicate`: send a copy of some of the packets the target sends.
    NetDuplicateSpec {
        /// Egress devices to work on; default every device that is up.
        #[serde(default, alias = "device", skip_serializing_if = "Vec::is_empty")]
        devices: Vec<String>,
        /// Which packets.
        #[serde(default, skip_serializing_if = "PacketFilterSpec::is_empty")]
        filter: PacketFilterSpec,
        /// Which matching packets (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `net-corrupt`: flip a bit in the payload of some of the packets the target sends.
    NetCorruptSpec {
        /// Fix the TCP/UDP/ICMP checksum after corrupting, so that the receiver accepts it.
        #[serde(default, skip_serializing_if = "is_false")]
        fix_checksum: bool,
        /// Egress devices to work on; default every device that is up.
        #[serde(default, alias = "device", skip_serializing_if = "Vec::is_empty")]
        devices: Vec<String>,
        /// Which packets.
        #[serde(default, skip_serializing_if = "PacketFilterSpec::is_empty")]
        filter: PacketFilterSpec,
        /// Which matching packets (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

/// One fault, typed: its kind and the kind's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum FaultSpec {
    Syscall(SyscallSpec),
    Signal(SignalSpec),
    Latency(LatencySpec),
    NetDrop(NetDropSpec),
    NetDelay(NetDelaySpec),
    NetRate(NetRateSpec),
    NetDuplicate(NetDuplicateSpec),
    NetCorrupt(NetCorruptSpec),
}

/// `$body` with `$s` bound to the kind's struct, whatever the kind.
macro_rules! each {
    ($spec:expr, $s:ident => $body:expr) => {
        match $spec {
            FaultSpec::Syscall($s) => $body,
            FaultSpec::Signal($s) => $body,
            FaultSpec::Latency($s) => $body,
            FaultSpec::NetDrop($s) => $body,
            FaultSpec::NetDelay($s) => $body,
            FaultSpec::NetRate($s) => $body,
            FaultSpec::NetDuplicate($s) => $body,
            FaultSpec::NetCorrupt($s) => $body,
        }
    };
}

/// What a checked spec does: rules for the syscall engine or a packet fault.
pub enum Fault {
    /// Rules of the syscall engine (syscall, signal, latency).
    Rules(Box<dyn Injectable + Send + Sync>),
    /// A packet fault and the egress devices it works on (empty: every device up).
    Net {
        /// The fault.
        fault: NetFault,
        /// Its devices.
        devices: Vec<String>,
    },
}

/// A spec that passed [`FaultSpec::check`]: every value parsed, ready to start.
pub struct CheckedFault {
    /// The kind.
    pub kind: FaultKind,
    /// What it does.
    pub fault: Fault,
    /// Whom it hits (not resolved yet).
    pub target: Target,
    /// Skip the blast-radius guards.
    pub unguarded: bool,
    /// How long it lasts.
    pub duration: Duration,
    /// Whether it only counts.
    pub dry_run: bool,
}

impl FaultSpec {
    /// Reads a spec from JSON, naming the field of any error as a JSON path; unknown fields
    /// are refused. Does not [`check`](FaultSpec::check) the values.
    pub fn from_value(value: Value) -> Result<FaultSpec, SpecError> {
        let Value::Object(mut map) = value else {
            return Err(SpecError::new(
                "",
                format!(
                    "a fault is a JSON object with a `kind` ({}), not {value}",
                    FaultKind::names()
                ),
            ));
        };
        let kind = match map.remove("kind") {
            Some(Value::String(k)) => FaultKind::from_name(&k).ok_or_else(|| {
                SpecError::new(
                    "kind",
                    format!("`{k}` is not a fault kind: one of {}", FaultKind::names()),
                )
            })?,
            Some(other) => {
                return Err(SpecError::new(
                    "kind",
                    format!("{other} is not a fault kind: one of {}", FaultKind::names()),
                ));
            }
            None => {
                return Err(SpecError::new(
                    "kind",
                    format!("missing: the fault kind, one of {}", FaultKind::names()),
                ));
            }
        };
        let rest = Value::Object(map);
        fn read<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, SpecError> {
            serde_path_to_error::deserialize(v).map_err(|err| {
                let path = err.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let message = err.into_inner().to_string();
                // serde names a missing field in its message: make it the path.
                if let Some(field) = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.strip_suffix('`'))
                {
                    let path = if path.is_empty() {
                        field.to_owned()
                    } else {
                        format!("{path}.{field}")
                    };
                    return SpecError::new(path, "missing");
                }
                SpecError::new(path, message)
            })
        }
        Ok(match kind {
            FaultKind::Syscall => FaultSpec::Syscall(read(rest)?),
            FaultKind::Signal => FaultSpec::Signal(read(rest)?),
            FaultKind::Latency => FaultSpec::Latency(read(rest)?),
            FaultKind::NetDrop => FaultSpec::NetDrop(read(rest)?),
            FaultKind::NetDelay => FaultSpec::NetDelay(read(rest)?),
            FaultKind::NetRate => FaultSpec::NetRate(read(rest)?),
            FaultKind::NetDuplicate => FaultSpec::NetDuplicate(read(rest)?),
            FaultKind::NetCorrupt => FaultSpec::NetCorrupt(read(rest)?),
        })
    }

    /// Reads and checks a spec from JSON.
    pub fn parse(value: Value) -> Result<FaultSpec, SpecError> {
        let spec = FaultSpec::from_value(value)?;
        spec.check()?;
        Ok(spec)
    }

    /// The kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultSpec::Syscall(_) => FaultKind::Syscall,
            FaultSpec::Signal(_) => FaultKind::Signal,
            FaultSpec::Latency(_) => FaultKind::Latency,
            FaultSpec::NetDrop(_) => FaultKind::NetDrop,
            FaultSpec::NetDelay(_) => FaultKind::NetDelay,
            FaultSpec::NetRate(_) => FaultKind::NetRate,
            FaultSpec::NetDuplicate(_) => FaultKind::NetDuplicate,
            FaultSpec::NetCorrupt(_) => FaultKind::NetCorrupt,
        }
    }

    /// Whom it hits.
    pub fn target(&self) -> &TargetSpec {
        each!(self, s => &s.target)
    }

    /// Sets whom it hits.
    pub fn set_target(&mut self, target: TargetSpec) {
        each!(self, s => s.target = target)
    }

    /// Whether it only counts.
    pub fn dry_run(&self) -> bool {
        each!(self, s => s.dry_run)
    }

    /// Makes it only count (`chaos run --dry-run`).
    pub fn set_dry_run(&mut self, dry_run: bool) {
        each!(self, s => s.dry_run = dry_run)
    }

    /// The spec as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a spec serializes")
    }

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
                if s.mechanism == Some(MechanismSpec::FmodRet) {
                    return Err(SpecError::new(
                        "mechanism",
                        "`fmod-ret` is not available in this build: leave it out (automatic)",
                    ));
                }
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

/// The JSON Schema of [`FaultSpec`], as committed in `docs/fault-spec.schema.json` and served
/// at `GET /schema`.
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(FaultSpec)).expect("a schema")
}

/// [`schema`] as the committed file holds it (pretty, with a final newline).
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema");
    text.push('\n');
    text
}

impl FaultSpec {
    /// The equivalent `chaos inject` command line, for messages and journals.
    pub fn command_line(&self) -> String {
        fn option(key: &str) -> String {
            let name = match key {
                "syscalls" => "syscall",
                "fd_kinds" => "fd-kind",
                "devices" => "device",
                other => other,
            };
            format!("--{}", name.replace('_', "-"))
        }
        fn push(out: &mut Vec<String>, key: &str, value: &Value) {
            match value {
                Value::Bool(true) => out.push(option(key)),
                Value::Bool(false) | Value::Null => {}
                Value::String(s) => out.extend([option(key), s.clone()]),
                Value::Array(items) if key == "devices" => {
                    for item in items {
                        push(out, key, item);
                    }
                }
                Value::Array(items) => {
                    let joined: Vec<String> = items
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect();
                    out.extend([option(key), joined.join(",")]);
                }
                Value::Object(map) => {
                    for (k, v) in map {
                        push(out, k, v);
                    }
                }
                other => out.extend([option(key), other.to_string()]),
            }
        }
        let mut out = vec![
            "chaos".to_owned(),
            "inject".to_owned(),
            self.kind().name().to_owned(),
        ];
        if let Value::Object(map) = self.to_value() {
            for (k, v) in &map {
                if k != "kind" {
                    push(&mut out, k, v);
                }
            }
        }
        out.join(" ")
    }
}
