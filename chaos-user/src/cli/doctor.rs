//! `chaos doctor`. (Being written.)
use std::process::ExitCode;

/// Options of `chaos doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chaos doctor`.
pub fn run(_args: DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
