//! `--events`: print each call or packet a running fault acts on, as the kernel reports it.
use std::io::Write as _;

use crate::{engine::StartedFault, events::Clock};

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
