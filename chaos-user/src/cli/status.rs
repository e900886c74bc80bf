//! `chaos status`: the active faults of a running daemon with live counters.
use std::{path::PathBuf, process::ExitCode};

use crate::daemon::client::DaemonClient;

/// Options of `chaos status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's socket (default: $CHAOS_SOCKET, else /run/chaos/chaos.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the faults as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chaos status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let faults = DaemonClient::new(args.socket.as_deref()).list()?;
    if args.json {
        println!("{}", serde_json::to_string(&faults)?);
        return Ok(ExitCode::SUCCESS);
    }
    if faults.is_empty() {
        println!("no active faults");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4} {:<8} {:<32} {:>9} {:>9} {:>8}  target",
        "id", "kind", "fault", "matched", "injected", "left"
    );
    for f in faults {
        println!(
            "{:>4} {:<8} {:<32} {:>9} {:>9} {:>7.0}s  {}",
            f.id, f.kind, f.description, f.matched, f.injected, f.remaining_secs, f.target
        );
    }
    Ok(ExitCode::SUCCESS)
}
