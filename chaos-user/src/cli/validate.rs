//! `chaos validate`: check an experiment without running anything.
use std::{path::PathBuf, process::ExitCode};

use crate::experiment::{Experiment, format::Provider};

/// Options of `chaos validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The experiment: a YAML or JSON file in Chaos Toolkit's format.
    pub experiment: PathBuf,
}

/// Runs `chaos validate`: exit status 0 when valid, 2 with every problem listed otherwise.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    match Experiment::load(&args.experiment) {
        Ok(e) => {
            let faults = e
                .method
                .iter()
                .filter(|a| matches!(a.provider, Provider::Chaos(_)))
                .count();
            println!(
                "{}: valid: \"{}\", {} steady-state probes, {} method activities ({} faults), {} rollbacks",
                args.experiment.display(),
                e.title,
                e.hypothesis.len(),
                e.method.len(),
                faults,
                e.rollbacks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(invalid) => {
            eprintln!("{invalid}");
            eprintln!(
                "chaos: {}: {} problem{}",
                args.experiment.display(),
                invalid.0.len(),
                if invalid.0.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(2))
        }
    }
}
