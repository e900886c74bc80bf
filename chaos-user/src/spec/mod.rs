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
use std::{fmt, time::Duration};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, fault::Injectable, packet::NetFault, target::Target};

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
    /// Answer the target's DNS queries with an error, late or never.
    Dns,
    /// Reset the target's TCP connections.
    TcpReset,
}

impl FaultKind {
    /// Every kind, in the order `chaos inject --help` lists them.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Syscall,
        FaultKind::Signal,
        FaultKind::Latency,
        FaultKind::NetDrop,
        FaultKind::NetDelay,
        FaultKind::NetRate,
        FaultKind::NetDuplicate,
        FaultKind::NetCorrupt,
        FaultKind::Dns,
        FaultKind::TcpReset,
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
            FaultKind::Dns => "dns",
            FaultKind::TcpReset => "tcp-reset",
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
    pub(super) fn new(path: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A library error about a value of `path`, worded for the spec.
    pub(super) fn from_error(path: impl Into<String>, err: Error) -> SpecError {
        let message = match err {
            Error::Invalid {
                value, expected, ..
            } => format!("`{value}` is not valid: {expected}"),
            other => other.to_string(),
        };
        SpecError::new(path, message)
    }
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
        /// How the security hooks are reached: `lsm` or `fmod-ret` (default: lsm where BPF LSM
        /// is active, else fmod-ret).
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

kind_spec!(
    /// `dns`: answer the target's DNS queries with an error code, late, or never; the rest
    /// resolve as before.
    DnsSpec {
        /// Names to fault: each matches itself and every name below it. Default: every name.
        #[serde(default, alias = "domain", skip_serializing_if = "Vec::is_empty")]
        domains: Vec<String>,
        /// Answer with this code: NXDOMAIN, SERVFAIL or REFUSED (one of rcode, drop, delay).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rcode: Option<String>,
        /// Never answer: the client times out.
        #[serde(default, skip_serializing_if = "is_false")]
        drop: bool,
        /// Give the real answer this much later (`2s`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delay: Option<String>,
        /// Only queries to servers in this network (`10.0.0.0/8`, `127.0.0.53`); default every
        /// server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        /// The servers' port; default 53.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Which matching queries (only `probability`).
        #[serde(default, skip_serializing_if = "ScheduleSpec::is_empty")]
        schedule: ScheduleSpec,
    }
);

kind_spec!(
    /// `tcp-reset`: abort the target's established TCP connections (the peer gets an RST).
    TcpResetSpec {
        /// Only connections with this port: the peer's (outbound), the target's own
        /// (inbound), or either (both, the default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Only connections to or from peers in this network (`10.0.0.0/8`, `::1`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cidr: Option<String>,
        /// `outbound`, `inbound` or `both`: which end `port` names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        /// Reset only the connections that exist when the fault starts.
        #[serde(default, skip_serializing_if = "is_false")]
        once: bool,
        /// Which connections: `probability`, `every` (Nth matching connection), `after` (a
        /// connection is reset once it has passed N segments, in and out).
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
    Dns(DnsSpec),
    TcpReset(TcpResetSpec),
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
            FaultSpec::Dns($s) => $body,
            FaultSpec::TcpReset($s) => $body,
        }
    };
}

mod check;
mod fields;

pub use fields::{
    DirectionSpec, MechanismSpec, NameOrNumber, Names, PacketFilterSpec, ProtocolSpec,
    ScheduleSpec, SyscallFilterSpec, TargetSpec,
};

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
    /// A DNS fault (redirect programs and the responder).
    Dns(crate::dns::DnsFault),
    /// A TCP reset fault (sock_diag).
    TcpReset(crate::tcp_reset::TcpResetFault),
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
            FaultKind::Dns => FaultSpec::Dns(read(rest)?),
            FaultKind::TcpReset => FaultSpec::TcpReset(read(rest)?),
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
            FaultSpec::Dns(_) => FaultKind::Dns,
            FaultSpec::TcpReset(_) => FaultKind::TcpReset,
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
                "domains" => "domain",
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
                // A Compose target reads as the CLI spells it: --container S --compose-project P.
                Value::Object(map) if key == "compose" => {
                    for (k, option) in [("service", "container"), ("project", "compose_project")] {
                        if let Some(v) = map.get(k) {
                            push(out, option, v);
                        }
                    }
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
