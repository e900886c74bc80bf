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
        "{:>4} {:<13} {:<32} {:>9} {:>9} {:>8} {:>4}  target",
        "id", "kind", "fault", "matched", "injected", "left", "exp"
    );
    for f in faults {
        let experiment = f
            .experiment
            .map_or_else(|| "-".to_owned(), |e| e.to_string());
        println!(
            "{:>4} {:<13} {:<32} {:>9} {:>9} {:>7.0}s {:>4}  {}",
            f.id,
            f.kind,
            f.description,
            f.matched,
            f.injected,
            f.remaining_secs,
            experiment,
            f.target
        );
    }
    Ok(ExitCode::SUCCESS)
}
