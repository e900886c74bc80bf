//! The workspace this xtask belongs to, and the cargo that runs it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

/// Where the workspace and its build output live.
pub struct Workspace {
    /// The directory of the workspace's Cargo.toml.
    pub root: PathBuf,
    /// Cargo's target directory (honours CARGO_TARGET_DIR and config).
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Finds the workspace this xtask belongs to (not the current directory's), so that
    /// `cargo xtask` behaves the same from any subdirectory.
    pub fn locate() -> anyhow::Result<Self> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let metadata = cargo_metadata::MetadataCommand::new()
            .manifest_path(&manifest)
            .no_deps()
            .exec()
            .with_context(|| format!("running cargo metadata for {}", manifest.display()))?;
        Ok(Self {
            root: metadata.workspace_root.into_std_path_buf(),
            target_dir: metadata.target_directory.into_std_path_buf(),
        })
    }

    /// A cargo command run in the workspace root. Under `cargo xtask`, CARGO names the very
    /// cargo (and toolchain) running us.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&self.root);
        cmd
    }
}
