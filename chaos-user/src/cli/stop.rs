//! `chaos stop`: remove one fault, or all, from a running daemon.
use std::{path::PathBuf, process::ExitCode};

use crate::daemon::client::DaemonClient;

/// Options of `chaos stop`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").args(["id", "all"]).required(true)))]
pub struct StopArgs {
    /// The fault's id, as `chaos status` shows it.
    pub id: Option<u64>,
    /// Remove every fault and abort every running experiment.
    #[arg(long)]
    pub all: bool,
    /// The daemon's socket (default: $CHAOS_SOCKET, else /run/chaos/chaos.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Runs `chaos stop`.
pub fn run(args: StopArgs) -> anyhow::Result<ExitCode> {
    let client = DaemonClient::new(args.socket.as_deref());
    match args.id {
        Some(id) => {
            let f = client.remove(id)?;
            eprintln!(
                "chaos: removed fault {id} ({} on {}): matched {} injected {}",
                f.description, f.target, f.matched, f.injected
            );
        }
        None => {
            let removed = client.remove_all()?;
            let aborted = match removed.aborted_experiments.len() {
                0 => String::new(),
                n => format!(" and aborted {n} running experiment(s)"),
            };
            eprintln!("chaos: removed {} fault(s){aborted}", removed.removed.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
