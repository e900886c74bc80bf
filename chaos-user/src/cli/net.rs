//! `chaos inject net-drop|net-delay|net-rate|net-duplicate|net-corrupt`: packet faults on the
//! sockets of a target, as options that map into a [`FaultSpec`].
use super::{args::RunArgs, target::TargetArgs};
use crate::{
    packet::{Direction, Protocol},
    spec::{
        DirectionSpec, FaultSpec, NetCorruptSpec, NetDelaySpec, NetDropSpec, NetDuplicateSpec,
        NetRateSpec, PacketFilterSpec, ProtocolSpec, ScheduleSpec,
    },
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
    pub cidr: Option<String>,
    /// Affect each matching packet with this probability, in (0, 1].
    #[arg(long, value_name = "P")]
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
    #[arg(long, value_name = "DURATION")]
    pub delay: String,
    /// Vary the delay uniformly within delay ± jitter, e.g. 20ms.
    #[arg(long, value_name = "DURATION")]
    pub jitter: Option<String>,
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
    pub rate: String,
    #[command(flatten)]
    pub devices: DeviceArgs,
    #[command(flatten)]
    pub filter: PacketFilterArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
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

impl PacketFilterArgs {
    fn spec(&self) -> PacketFilterSpec {
        PacketFilterSpec {
            direction: self.direction.map(|d| match d {
                Direction::Egress => DirectionSpec::Egress,
                Direction::Ingress => DirectionSpec::Ingress,
                Direction::Both => DirectionSpec::Both,
            }),
            protocol: self.protocol.map(|p| match p {
                Protocol::Tcp => ProtocolSpec::Tcp,
                Protocol::Udp => ProtocolSpec::Udp,
                Protocol::Icmp => ProtocolSpec::Icmp,
            }),
            port: self.port,
            cidr: self.cidr.clone(),
        }
    }

    fn schedule(&self) -> ScheduleSpec {
        ScheduleSpec {
            probability: self.probability,
            ..ScheduleSpec::default()
        }
    }
}

impl NetDropArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::NetDrop(NetDropSpec {
            filter: self.filter.spec(),
            schedule: self.filter.schedule(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}

impl NetDelayArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::NetDelay(NetDelaySpec {
            delay: self.delay.clone(),
            jitter: self.jitter.clone(),
            devices: self.devices.device.clone(),
            filter: self.filter.spec(),
            schedule: self.filter.schedule(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}

impl NetRateArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::NetRate(NetRateSpec {
            rate: self.rate.clone(),
            devices: self.devices.device.clone(),
            filter: self.filter.spec(),
            schedule: self.filter.schedule(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}

impl NetDuplicateArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::NetDuplicate(NetDuplicateSpec {
            devices: self.devices.device.clone(),
            filter: self.filter.spec(),
            schedule: self.filter.schedule(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}

impl NetCorruptArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::NetCorrupt(NetCorruptSpec {
            fix_checksum: self.fix_checksum,
            devices: self.devices.device.clone(),
            filter: self.filter.spec(),
            schedule: self.filter.schedule(),
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}
