//! `--events`: print each call or packet a running fault acts on, as the kernel reports it.
use std::{io::Write as _, path::PathBuf, process::ExitCode};

use crate::{
    daemon::client::DaemonClient,
    engine::StartedFault,
    events::{Clock, EventRecord},
};

/// Options of `chaos events`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  chaos events 3")]
pub struct EventsArgs {
    /// The daemon's id of the fault (`chaos status` lists them).
    pub id: u64,
    /// Print JSON lines, as the daemon sends them.
    #[arg(long)]
    pub json: bool,
    /// The daemon's socket (default: $CHAOS_SOCKET or /run/chaos/chaos.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// Runs `chaos events ID`: prints a daemon fault's events until it ends.
pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let daemon = DaemonClient::new(args.socket.as_deref());
    daemon.follow_events(args.id, |line| {
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{line}")?;
        } else {
            let event: EventRecord = serde_json::from_str(line)?;
            writeln!(out, "{event}")?;
        }
        out.flush()?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How `--events` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventFormat {
    /// One strace-like line per event, on stdout.
    Text,
    /// One JSON object per line, on stdout (the report then goes to stderr).
    Json,
}

/// Prints a fault's events as they come.
pub struct EventPrinter {
    format: EventFormat,
    clock: Clock,
    printed: u64,
}

impl EventPrinter {
    /// Asks the kernel for `fault`'s events and prints them in `format` from now on.
    pub fn start(fault: &StartedFault, format: EventFormat) -> anyhow::Result<EventPrinter> {
        fault.listen_events(true)?;
        Ok(EventPrinter {
            format,
            clock: Clock::now()?,
            printed: 0,
        })
    }

    /// Prints the events that came since the last call.
    pub fn print(&mut self, fault: &StartedFault) -> anyhow::Result<()> {
        let events = fault.events(&self.clock);
        if events.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        for event in &events {
            match self.format {
                EventFormat::Text => writeln!(out, "{event}")?,
                EventFormat::Json => writeln!(out, "{}", serde_json::to_string(event)?)?,
            }
        }
        out.flush()?;
        self.printed += events.len() as u64;
        Ok(())
    }

    /// Prints the last events and says how many were lost; call before the fault stops.
    pub fn finish(mut self, fault: &StartedFault) -> anyhow::Result<()> {
        self.print(fault)?;
        let lost = fault.events_lost();
        if lost > 0 {
            eprintln!(
                "chaos: {lost} events lost (the kernel's event buffer was full); {} printed",
                self.printed
            );
        }
        Ok(())
    }
}
