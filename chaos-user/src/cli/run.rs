//! `chaos run`: run an experiment (Chaos Toolkit's format) and write its journal.
use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::experiment::{
    Experiment,
    format::RollbackStrategy,
    runner::{self, RunOptions},
};

/// Options of `chaos run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 completed, 1 deviated or failed, 2 invalid experiment, \
    130 interrupted.\n\nExample:\n  chaos run examples/connect-refused.yaml --journal journal.json"
)]
pub struct RunArgs {
    /// The experiment: a YAML or JSON file in Chaos Toolkit's format.
    pub experiment: PathBuf,
    /// Where to write the journal.
    #[arg(long, value_name = "FILE", default_value = "journal.json")]
    pub journal: PathBuf,
    /// Faults count what they would fail and fail nothing; every other activity runs.
    #[arg(long)]
    pub dry_run: bool,
    /// Which rollbacks run; overrides the experiment's runtime.rollbacks.strategy.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub rollback_strategy: Option<RollbackStrategy>,
}

/// Runs `chaos run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let experiment = match Experiment::load(&args.experiment) {
        Ok(e) => e,
        Err(invalid) => {
            eprintln!("chaos: invalid experiment, nothing was run:\n{invalid}");
            return Ok(ExitCode::from(2));
        }
    };
    // Ctrl-C, SIGTERM and SIGHUP end the experiment through its cleanup; a second Ctrl-C
    // only sets the same flag again, so it cannot skip the cleanup.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let journal = runner::run(
        &experiment,
        RunOptions {
            dry_run: args.dry_run,
            rollback_strategy: args.rollback_strategy,
        },
        stop,
    );
    let file = std::fs::File::create(&args.journal)
        .with_context(|| format!("writing the journal {}", args.journal.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), &journal)
        .with_context(|| format!("writing the journal {}", args.journal.display()))?;
    eprintln!("chaos: journal written to {}", args.journal.display());
    Ok(ExitCode::from(journal.status.exit_code()))
}
