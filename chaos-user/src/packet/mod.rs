//! Packet faults: drop, delay and rate-limit the packets of a target cgroup's sockets.
//!
//! [`NetFault`] is the validated description of one fault; [`NetFault::rule`] turns it into
//! the [`PacketRule`] the kernel programs read. [`PacketInjector`] loads and attaches the
//! programs; [`FqQdiscs`] installs the fq qdisc that delay and rate need and restores what
//! was there before.
use std::{fmt, str::FromStr, time::Duration};

use chaos_common::Schedule;
use chaos_common::packet::{
    ANY_PROTOCOL, DIRECTION_EGRESS, DIRECTION_INGRESS, PACKET_ACTIVE, PACKET_DRY_RUN,
    PACKET_FIX_CHECKSUM, PacketAction, PacketRule,
};

use crate::{Error, fault::Cidr, target::CgroupTarget};

mod fq;
mod injection;
mod injector;
pub(crate) mod qdisc;
pub mod qdisc_record;

pub use fq::{FqQdiscs, TCA_FQ_HORIZON, devices_up};
pub use injection::{NetInjection, enter_netns};
pub use injector::PacketInjector;

/// Which way packets travel, seen from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Packets the target sends.
    Egress,
    /// Packets the target receives.
    Ingress,
    /// Both.
    Both,
}

impl Direction {
    fn bits(self) -> u32 {
        match self {
            Direction::Egress => DIRECTION_EGRESS,
            Direction::Ingress => DIRECTION_INGRESS,
            Direction::Both => DIRECTION_EGRESS | DIRECTION_INGRESS,
        }
    }
}

/// The IP protocols a fault can be limited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4) and ICMPv6 are different protocol numbers; this matches ICMP for IPv4.
    Icmp,
}

impl Protocol {
    fn number(self) -> u32 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
        }
    }
}

/// A data rate as tc writes it: `1mbit`, `500kbit`, `2mbps` (bytes), `8000bit`; bare numbers
/// are bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per second.
    pub bytes_per_sec: u64,
}

impl FromStr for Rate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rate, Error> {
        let invalid = || Error::Invalid {
            field: "--rate",
            value: s.to_owned(),
            expected: "a rate such as 1mbit, 500kbit, 10mbps (bytes/s) or 64000bit, at least \
                       8bit"
                .into(),
        };
        let lower = s.trim().to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let bits_per_unit: f64 = match unit {
            "" | "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            "bps" => 8.0,
            "kbps" => 8e3,
            "mbps" => 8e6,
            "gbps" => 8e9,
            _ => return Err(invalid()),
        };
        let bytes = number * bits_per_unit / 8.0;
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(invalid());
        }
        Ok(Rate {
            bytes_per_sec: bytes as u64,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}bit", self.bytes_per_sec * 8)
    }
}

/// What a [`NetFault`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetEffect {
    /// Drop the picked packets.
    Drop,
    /// Hold the picked (egress) packets for `delay ± jitter`.
    Delay {
        /// The delay.
        delay: Duration,
        /// The delay varies uniformly within `delay ± jitter`.
        jitter: Duration,
    },
    /// Pace the target's egress to this rate.
    Rate(Rate),
    /// Send a copy of the picked (egress) packets too.
    Duplicate,
    /// Flip one bit in the payload of the picked (egress) packets.
    Corrupt {
        /// Make the L4 checksum match the corrupted data, so that the receiver accepts it.
        fix_checksum: bool,
    },
}

impl NetEffect {
    /// The fault kind as the CLI and the report name it.
    pub fn kind(&self) -> &'static str {
        match self {
            NetEffect::Drop => "net-drop",
            NetEffect::Delay { .. } => "net-delay",
            NetEffect::Rate(_) => "net-rate",
            NetEffect::Duplicate => "net-duplicate",
            NetEffect::Corrupt { .. } => "net-corrupt",
        }
    }

    /// Whether the fault needs the fq qdisc on the egress devices (earliest departure time).
    pub fn needs_fq(&self) -> bool {
        matches!(self, NetEffect::Delay { .. } | NetEffect::Rate(_))
    }

    /// Whether the fault works on the egress devices (a tc program) rather than on the
    /// target's cgroup.
    pub fn on_devices(&self) -> bool {
        matches!(self, NetEffect::Duplicate | NetEffect::Corrupt { .. })
    }

    /// Whether the fault can only act on packets the target sends.
    pub fn egress_only(&self) -> bool {
        self.needs_fq() || self.on_devices()
    }
}

/// One packet fault on a target's sockets, validated.
#[derive(Clone, Debug)]
pub struct NetFault {
    /// What it does.
    pub effect: NetEffect,
    /// Which packets, by direction.
    pub direction: Direction,
    /// Only this protocol, if given.
    pub protocol: Option<Protocol>,
    /// Only packets with this local or remote port, if given.
    pub port: Option<u16>,
    /// Only packets to or from this network, if given.
    pub peer: Option<Cidr>,
    /// Chance of affecting each matching packet, in (0, 1].
    pub probability: f64,
    /// Count only.
    pub dry_run: bool,
    /// How long after attaching the kernel programs stop affecting packets by themselves
    /// (`--duration`), even if chaos cannot remove them; `None` for no limit.
    pub deadline: Option<std::time::Duration>,
}

impl NetFault {
    /// Checks the combination of options; a fault that cannot act as asked is refused with the
    /// option at fault named.
    pub fn validate(&self) -> Result<(), Error> {
        if self.effect.egress_only() && self.direction != Direction::Egress {
            return Err(Error::Invalid {
                field: "--direction",
                value: format!("{:?}", self.direction).to_lowercase(),
                expected: format!(
                    "egress: {} works on the packets the target sends",
                    self.effect.kind()
                ),
            });
        }
        if self.port.is_some() && self.protocol == Some(Protocol::Icmp) {
            return Err(Error::Invalid {
                field: "--port",
                value: self.port.unwrap_or_default().to_string(),
                expected: "no --port with --protocol icmp (ICMP has no ports)".into(),
            });
        }
        if let NetEffect::Delay { delay, jitter } = self.effect
            && jitter > delay
        {
            return Err(Error::Invalid {
                field: "--jitter",
                value: humantime::format_duration(jitter).to_string(),
                expected: format!(
                    "at most the delay ({}): packets cannot leave before they were sent",
                    humantime::format_duration(delay)
                ),
            });
        }
        Ok(())
    }

    /// The rule the kernel programs read, for `target`.
    pub fn rule(&self, target: &CgroupTarget) -> PacketRule {
        let (action, delay_ns, jitter_ns, rate) = match self.effect {
            NetEffect::Drop => (PacketAction::Drop, 0, 0, 0),
            NetEffect::Delay { delay, jitter } => (
                PacketAction::Delay,
                delay.as_nanos() as u64,
                jitter.as_nanos() as u64,
                0,
            ),
            NetEffect::Rate(rate) => (PacketAction::Rate, 0, 0, rate.bytes_per_sec),
            NetEffect::Duplicate => (PacketAction::Duplicate, 0, 0, 0),
            NetEffect::Corrupt { .. } => (PacketAction::Corrupt, 0, 0, 0),
        };
        let fix_checksum = match self.effect {
            NetEffect::Corrupt { fix_checksum: true } => PACKET_FIX_CHECKSUM,
            _ => 0,
        };
        let (peer_family, peer_net, peer_mask) = match &self.peer {
            Some(cidr) => cidr.words(),
            None => (0, [0; 4], [0; 4]),
        };
        PacketRule {
            flags: PACKET_ACTIVE | fix_checksum | if self.dry_run { PACKET_DRY_RUN } else { 0 },
            action: action as u32,
            directions: self.direction.bits(),
            protocol: self.protocol.map_or(ANY_PROTOCOL, Protocol::number),
            cgroup_id: target.id,
            cgroup_level: target.level,
            port: self.port.map_or(0, u32::from),
            peer_family,
            probability: Schedule::probability_from_f64(self.probability),
            peer_net,
            peer_mask,
            delay_ns,
            jitter_ns,
            rate_bytes_per_sec: rate,
            deadline_ns: 0,
        }
    }

    /// A one-line description for messages.
    pub fn describe(&self) -> String {
        let mut s = match self.effect {
            NetEffect::Drop => "drop".to_owned(),
            NetEffect::Delay { delay, jitter } if jitter.is_zero() => {
                format!("delay {}", humantime::format_duration(delay))
            }
            NetEffect::Delay { delay, jitter } => format!(
                "delay {} ± {}",
                humantime::format_duration(delay),
                humantime::format_duration(jitter)
            ),
            NetEffect::Rate(rate) => format!("rate {rate}"),
            NetEffect::Duplicate => "duplicate".to_owned(),
            NetEffect::Corrupt { fix_checksum } => {
                if fix_checksum {
                    "corrupt (checksum fixed)".to_owned()
                } else {
                    "corrupt".to_owned()
                }
            }
        };
        s += &format!(" {:?}", self.direction).to_lowercase();
        if let Some(p) = self.protocol {
            s += &format!(" {p:?}").to_lowercase();
        }
        if let Some(port) = self.port {
            s += &format!(" port {port}");
        }
        if let Some(peer) = &self.peer {
            s += &format!(" peer {peer}");
        }
        if self.probability < 1.0 {
            s += &format!(" p={}", self.probability);
        }
        if self.dry_run {
            s += " (dry run)";
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_tc_units() {
        let r = |s: &str| s.parse::<Rate>().map(|r| r.bytes_per_sec);
        assert_eq!(r("1mbit").unwrap(), 125_000);
        assert_eq!(r("8000").unwrap(), 1000);
        assert_eq!(r("2MBps").unwrap(), 2_000_000);
        assert_eq!(r("1.5kbit").unwrap(), 187);
        assert!(r("fast").is_err());
        assert!(r("1bit").is_err());
        assert!(r("3 furlongs").is_err());
    }
}
