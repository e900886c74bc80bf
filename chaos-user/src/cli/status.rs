//! `chaos status`: the active faults of a running daemon with live counters.
use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::{
    daemon::client::DaemonClient,
    live_view::{Keys, LiveView, rows_of_status},
};

/// Options of `chaos status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's socket (default: $CHAOS_SOCKET, else /run/chaos/chaos.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the faults as JSON.
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Keep showing the faults, redrawn in place on a terminal, until q or Ctrl-C.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `chaos status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let daemon = DaemonClient::new(args.socket.as_deref());
    if args.watch {
        return watch(&daemon);
    }
    let faults = daemon.list()?;
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

/// `--watch`: the daemon's faults in the live view `chaos inject` uses, until q or Ctrl-C.
fn watch(daemon: &DaemonClient) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut live = LiveView::new(false, Keys::Read);
    while !stop.load(Ordering::Relaxed) && !live.quit_requested() {
        live.update(&rows_of_status(&daemon.list()?));
        thread::sleep(Duration::from_millis(250));
    }
    live.finish();
    Ok(ExitCode::SUCCESS)
}
