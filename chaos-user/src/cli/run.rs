//! `chaos run`: run an experiment (Chaos Toolkit's format) and write its journal, in this
//! process or, when a daemon runs, in the daemon.
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
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{
    daemon::{
        api::{ExperimentState, StartExperiment},
        client::DaemonClient,
    },
    experiment::{
        Experiment,
        format::RollbackStrategy,
        runner::{self, RunOptions},
    },
    journal_report,
};

/// Options of `chaos run`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 completed, 1 deviated or failed, 2 invalid experiment, \
    130 interrupted.\n\nWhen a chaos daemon runs, it runs the experiment (its faults show in \
    `chaos status`); this command prints the experiment's log, writes the journal and exits \
    as it would standalone; Ctrl-C aborts it.\n\nExample:\n  \
    chaos run examples/connect-refused.yaml --journal journal.json"
)]
pub struct RunArgs {
    /// The experiment: a YAML or JSON file in Chaos Toolkit's format.
    pub experiment: PathBuf,
    /// Where to write the journal.
    #[arg(long, value_name = "FILE", default_value = "journal.json")]
    pub journal: PathBuf,
    /// Also write the journal as an HTML report (as `chaos report` would) at the end.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Faults count what they would fail and fail nothing; every other activity runs.
    #[arg(long)]
    pub dry_run: bool,
    /// Which rollbacks run; overrides the experiment's runtime.rollbacks.strategy.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub rollback_strategy: Option<RollbackStrategy>,
    /// Run the experiment in this process even when a chaos daemon is running.
    #[arg(long)]
    pub standalone: bool,
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
    if !args.standalone {
        let daemon = DaemonClient::new(None);
        if daemon.answers() {
            return in_daemon(&daemon, &args, &stop);
        }
    }
    let journal = runner::run(
        &experiment,
        RunOptions {
            dry_run: args.dry_run,
            rollback_strategy: args.rollback_strategy,
            ..RunOptions::default()
        },
        stop,
    );
    write_journal(&args.journal, &journal)?;
    write_report(args.report.as_deref(), &journal)?;
    Ok(ExitCode::from(journal.status.exit_code()))
}

fn write_journal(path: &std::path::Path, journal: &impl serde::Serialize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("writing the journal {}", path.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), journal)
        .with_context(|| format!("writing the journal {}", path.display()))?;
    eprintln!("chaos: journal written to {}", path.display());
    Ok(())
}

fn write_report(
    path: Option<&std::path::Path>,
    journal: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let journal = journal_report::Journal::from_value(serde_json::to_value(journal)?)?;
    std::fs::write(path, journal_report::render(&journal))
        .with_context(|| format!("writing the report {}", path.display()))?;
    eprintln!("chaos: report written to {}", path.display());
    Ok(())
}

/// Has the daemon run the experiment, printing its log as it goes; `stop` aborts it.
fn in_daemon(daemon: &DaemonClient, args: &RunArgs, stop: &AtomicBool) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.experiment)
        .with_context(|| format!("reading {}", args.experiment.display()))?;
    let started = daemon.start_experiment(&StartExperiment {
        text,
        name: Some(args.experiment.display().to_string()),
        format: None,
        dry_run: args.dry_run,
        rollback_strategy: args
            .rollback_strategy
            .and_then(|s| clap::ValueEnum::to_possible_value(&s).map(|v| v.get_name().to_owned())),
        // `configuration` entries of type env are this user's, as standalone.
        env: std::env::vars().collect(),
    })?;
    let id = started.id;
    eprintln!(
        "chaos: the daemon on {} runs experiment {id} ({}); `chaos status` shows its faults, \
         Ctrl-C aborts it",
        daemon.socket().display(),
        started.title
    );
    let mut printed = 0;
    let mut aborted = false;
    loop {
        if stop.load(Ordering::Relaxed) && !aborted {
            daemon.abort_experiment(id)?;
            eprintln!("chaos: experiment {id} aborted: its faults are removed");
            aborted = true;
        }
        let status = daemon.experiment(id)?;
        for line in status.log.iter().skip(printed) {
            eprintln!("chaos: {line}");
        }
        printed = printed.max(status.log.len());
        if status.state == ExperimentState::Finished {
            let journal = status
                .journal
                .context("the daemon's answer has no journal for a finished experiment")?;
            write_journal(&args.journal, &journal)?;
            write_report(args.report.as_deref(), &journal)?;
            return Ok(ExitCode::from(status.exit_code.unwrap_or(1)));
        }
        thread::sleep(Duration::from_millis(200));
    }
}
