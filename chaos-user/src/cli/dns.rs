//! `chaos inject dns`: answer a target's DNS queries with an error code, late or never.
use super::{args::RunArgs, target::TargetArgs};
use crate::spec::{DnsSpec, FaultSpec, ScheduleSpec};

/// Options of `chaos inject dns`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("answer").required(true).args(["rcode", "drop", "delay"])))]
#[command(after_help = "Examples:\n  \
    chaos inject dns --domain example.com --rcode NXDOMAIN -- curl https://www.example.com/\n  \
    chaos inject dns --rcode SERVFAIL --probability 0.3 --container web\n  \
    chaos inject dns --domain db.internal --delay 2s --cgroup /system.slice/app.service\n\n\
    The target's queries to port 53 (UDP and TCP; or --server's) go to a responder chaos runs \
    in the target's network namespace, which answers the faulted ones and passes the rest to \
    the server the target asked. A --delay is held to within about 50 ms.")]
pub struct DnsArgs {
    /// Names to fault, comma separated: each matches itself and every name below it
    /// (example.com takes www.example.com). Default: every name.
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// Answer with this code and no records: NXDOMAIN (getaddrinfo: EAI_NONAME), SERVFAIL
    /// (EAI_AGAIN) or REFUSED.
    #[arg(long, value_name = "NXDOMAIN|SERVFAIL|REFUSED")]
    pub rcode: Option<String>,
    /// Never answer: the client times out.
    #[arg(long)]
    pub drop: bool,
    /// Give the real answer this much later, e.g. 2s.
    #[arg(long, value_name = "DURATION")]
    pub delay: Option<String>,
    /// Only queries to servers in this network (10.0.0.0/8, 127.0.0.53); default every server.
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub server: Option<String>,
    /// The servers' port.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Fault each matching query with this probability, in (0, 1].
    #[arg(long, value_name = "P")]
    pub probability: Option<f64>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl DnsArgs {
    /// The spec these options describe.
    pub fn spec(&self) -> FaultSpec {
        FaultSpec::Dns(DnsSpec {
            domains: self.domain.clone(),
            rcode: self.rcode.clone(),
            drop: self.drop,
            delay: self.delay.clone(),
            server: self.server.clone(),
            port: self.port,
            schedule: ScheduleSpec {
                probability: self.probability,
                ..ScheduleSpec::default()
            },
            target: self.target.spec(),
            duration: self.run.duration(),
            dry_run: self.run.dry_run,
            i_know_what_i_am_doing: self.target.i_know_what_i_am_doing,
        })
    }
}
