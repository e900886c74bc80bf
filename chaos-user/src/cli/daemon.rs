//! `chaos daemon`: serve the fault API on a Unix socket until SIGTERM/SIGINT.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use crate::daemon::{
    self, DaemonConfig, Limits,
    access::AccessPolicy,
    api::DEFAULT_SOCKET,
    audit::DEFAULT_AUDIT_LOG,
    policy::{DEFAULT_POLICY, Policy},
};

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
    /// What callers other than root may fault besides their own processes (grants to groups
    /// of units, containers and cgroup subtrees); a missing file grants nothing.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_POLICY)]
    pub policy: PathBuf,
    /// Append a JSON line per change asked for (allowed or refused) to this file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_AUDIT_LOG)]
    pub audit_log: PathBuf,
    /// Refuse new faults of a uid that has this many active.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_faults_per_caller: u64,
    /// Refuse new experiments of a uid that has this many running.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_experiments_per_caller: u64,
    /// The largest request body accepted.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_body: u64,
    /// How long a client has to send a request's headers, then its body.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
}

/// Runs `chaos daemon`.
pub fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    daemon::run(DaemonConfig {
        socket: args.socket,
        metrics: args.metrics,
        access: AccessPolicy::new(args.group.as_deref())?,
        max_faults: args.max_faults as usize,
        // A policy that does not parse stops the daemon: guessing what it meant could grant
        // more than it says.
        policy: Policy::load(&args.policy).map_err(|err| {
            anyhow::anyhow!("invalid policy file, the daemon did not start: {err}")
        })?,
        audit_log: Some(args.audit_log),
        limits: Limits {
            max_body: args.max_body as usize,
            faults_per_caller: args.max_faults_per_caller as usize,
            experiments_per_caller: args.max_experiments_per_caller as usize,
            request_timeout: args.request_timeout,
            ..Limits::default()
        },
    })?;
    Ok(ExitCode::SUCCESS)
}
