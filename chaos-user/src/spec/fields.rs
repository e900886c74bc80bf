//! The parts of a spec: its target, filters, schedule, and the value types that accept a
//! list or a string, a name or a number.
use std::{borrow::Cow, fmt, path::PathBuf};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::SpecError;
use crate::{
    fault::{FdKind, FilterSpec, parse_comm},
    target::Target,
};

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
    /// A container, by full or short id, or by name (through the Docker or Podman engine).
    Container(String),
    /// A container of a Docker Compose project, by service or container name:
    /// `{"compose": {"project": "shop", "service": "redis"}}`.
    Compose {
        /// The Compose project (`com.docker.compose.project`).
        project: String,
        /// The service, or a container's own name.
        service: String,
    },
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
            TargetSpec::Compose { project, service } => Target::ComposeService {
                project: project.clone(),
                service: service.clone(),
            },
            TargetSpec::Unit(u) => Target::Unit(u.clone()),
            TargetSpec::Pod(p) => Target::Pod(p.clone()),
        }
    }
}

/// A list of names given as a list or as one comma-separated string (`"read,write"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names(pub Vec<String>);

impl Names {
    /// The names of one comma-separated string, as a list (`"read, write"` is read, write).
    pub fn split(s: &str) -> Names {
        Names(
            s.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

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
    /// Affect the Nth eligible call and every Nth after it (with `after` A: calls A+N,
    /// A+2N, ...); 1 = each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// strace's `when=FIRST[..LAST][+[STEP]]`: which matching calls are affected, counted
    /// from 1 (not with `after` or `every`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Stop after N affected calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hits: Option<u64>,
    /// Number calls per process, as strace does per traced process, instead of across the
    /// whole target cgroup (`max_hits` stays a total).
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub per_process: bool,
}

impl ScheduleSpec {
    pub(super) fn is_empty(&self) -> bool {
        *self == ScheduleSpec::default()
    }

    pub(super) fn probability(&self) -> Result<f64, SpecError> {
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
    pub(super) fn schedule(&self) -> Result<chaos_common::Schedule, SpecError> {
        let probability = self.probability()?;
        for (name, value) in [("every", self.every), ("max_hits", self.max_hits)] {
            if value == Some(0) {
                return Err(SpecError::new(
                    format!("schedule.{name}"),
                    "0 is not valid: at least 1",
                ));
            }
        }
        let when = match &self.when {
            Some(expr) => {
                if self.after.is_some() || self.every.is_some() {
                    return Err(SpecError::new(
                        "schedule.when",
                        "cannot be combined with `after` or `every`: give one or the other",
                    ));
                }
                expr.parse::<crate::fault::When>()
                    .map_err(|e| SpecError::from_error("schedule.when", e))?
            }
            None => {
                crate::fault::When::after_every(self.after.unwrap_or(0), self.every.unwrap_or(1))
            }
        };
        Ok(chaos_common::Schedule {
            per_process: u32::from(self.per_process),
            ..when.schedule(
                self.max_hits,
                chaos_common::Schedule::probability_from_f64(probability),
            )
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
    pub(super) fn is_empty(&self) -> bool {
        *self == SyscallFilterSpec::default()
    }

    pub(super) fn filter(&self) -> Result<FilterSpec, SpecError> {
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
    pub(super) fn is_empty(&self) -> bool {
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

/// Which kernel mechanism fails the syscalls through the security hooks; absent: BPF LSM where
/// `bpf` is an active LSM, else fmod_ret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MechanismSpec {
    /// BPF LSM hooks (and the cgroup socket hooks for the socket syscalls).
    Lsm,
    /// fmod_ret programs on the security_* functions.
    FmodRet,
}

impl From<crate::loader::HookMechanism> for MechanismSpec {
    fn from(m: crate::loader::HookMechanism) -> Self {
        match m {
            crate::loader::HookMechanism::Lsm => MechanismSpec::Lsm,
            crate::loader::HookMechanism::FmodRet => MechanismSpec::FmodRet,
        }
    }
}

impl MechanismSpec {
    /// The loader's name for it.
    pub fn hook_mechanism(self) -> crate::loader::HookMechanism {
        match self {
            MechanismSpec::Lsm => crate::loader::HookMechanism::Lsm,
            MechanismSpec::FmodRet => crate::loader::HookMechanism::FmodRet,
        }
    }
}
