//! `chaos quickstart`. (Being written.)
use std::process::ExitCode;

/// Options of `chaos quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {}

/// Options of the hidden client.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {}

/// Runs `chaos quickstart`.
pub fn run(_args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}

/// The quickstart's client.
pub fn client(_args: ClientArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
