//! The VM tier. (Being written.)
use crate::summary::Summary;

/// Options of `cargo xtask vm-test`.
#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Debian kernel to boot: 6.1 (bookworm) or 6.12 (trixie).
    #[arg(long)]
    pub kernel: String,
}

/// Runs the integration tests inside a VM; errors when any failed or no result came back.
pub fn run(_args: &VmTestArgs) -> anyhow::Result<Summary> {
    anyhow::bail!("not yet")
}
