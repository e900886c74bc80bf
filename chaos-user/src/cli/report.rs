//! `chaos report`: an experiment's journal as one self-contained HTML page.
use std::{path::PathBuf, process::ExitCode};

use crate::journal_report;

/// Options of `chaos report`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The page has no script and loads nothing: open it anywhere, attach it \
    to a ticket.\n\nExample:\n  chaos run examples/connect-refused.yaml --journal journal.json\n  \
    chaos report journal.json -o report.html"
)]
pub struct ReportArgs {
    /// The journal `chaos run` wrote.
    pub journal: PathBuf,
    /// Where to write the page.
    #[arg(short, long, value_name = "FILE", default_value = "report.html")]
    pub output: PathBuf,
}

/// Runs `chaos report`.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    journal_report::write(&args.journal, &args.output)?;
    eprintln!("chaos: report written to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
