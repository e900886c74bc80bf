//! `chaos inject tcp-reset`: abort a target's established TCP connections.
use super::{args::RunArgs, target::TargetArgs};
use crate::spec::{FaultSpec, ScheduleSpec, TcpResetSpec};

/// Options of `chaos inject tcp-reset`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    chaos inject tcp-reset --port 6379 --direction outbound --container web --once\n  \
    chaos inject tcp-reset --cidr 10.0.0.0/8 --after 100 --probability 0.5 --pid 4242\n\n\
    The kernel aborts each picked connection as `ss -K` does (SOCK_DESTROY): the peer gets an \
    RST (its next call fails with ECONNRESET), the target's next call on the socket fails with \
    ECONNABORTED. Connections are looked at every 20 ms.")]
pub struct TcpResetArgs {
    /// Only connections with this port (which end: --direction).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Only connections to or from peers in this network (10.0.0.0/8, ::1).
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub cidr: Option<String>,
    /// Which end --port names: outbound (the target connected to it), inbound (the target
    /// accepted on it), both.
    #[arg(long, value_name = "outbound|inbound|both")]
    pub direction: Option<String>,
    /// Reset each matching connection with this probability, in (0, 1].
    #[arg(long, value_name = "P")]
    pub probability: Option<f64>,
    /// Reset every Nth matching connection (1 = each).
    #[arg(long, value_name = "N")]
    pub every: Option<u64>,
    /// Reset a connection once it has passed N segments (in and out); default at once.
    #[arg(long, value_name = "N")]
    pub after: Option<u64>,
    /// Reset only the connections that exist when the fault starts; new ones are spared.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl TcpResetArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::TcpReset(TcpResetSpec {
            port: self.port,
            cidr: self.cidr.clone(),
            direction: self.direction.clone(),
            once: self.once,
            schedule: ScheduleSpec {
                probability: self.probability,
                every: self.every,
                after: self.after,
                ..ScheduleSpec::default()
            },
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}
