//! `chaos daemon`: serve the fault API on a Unix socket until SIGTERM/SIGINT.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use crate::daemon::{self, DaemonConfig, access::AccessPolicy, api::DEFAULT_SOCKET};

/// Options of `chaos daemon`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    chaos daemon --group chaos --metrics 127.0.0.1:9464\n  \
    chaos inject syscall --syscall connect --errno ECONNREFUSED --unit api.service\n  \
    chaos status\n  \
    chaos stop --all")]
pub struct DaemonArgs {
    /// The API's Unix socket (created 0660 root:GROUP).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Serve Prometheus metrics on this address (http://ADDR/metrics).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Let members of this group use the API besides root.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Refuse new faults while this many are active.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_faults: u64,
}

/// Runs `chaos daemon`.
pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    daemon::run(DaemonConfig {
        socket: args.socket,
        metrics: args.metrics,
        access: AccessPolicy::new(args.group.as_deref())?,
        max_faults: args.max_faults as usize,
    })?;
    Ok(ExitCode::SUCCESS)
}
