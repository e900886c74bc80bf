//! The fuzz targets of `fuzz/` (cargo-fuzz, nightly): `cargo xtask fuzz` runs them for a while
//! each; `cargo xtask test` runs each for a few seconds from its committed corpus.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::workspace::Workspace;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 180)]
    pub seconds: u64,
    /// Only these targets (default: every one in fuzz/fuzz_targets).
    pub targets: Vec<String>,
}

/// The targets: the files of fuzz/fuzz_targets.
pub fn targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Runs each target for `seconds` from its corpus in fuzz/corpus/TARGET. New inputs go to a
/// scratch directory, so the committed corpus only changes by hand (`cargo fuzz cmin`).
/// A crash fails the run, with libFuzzer's report and the input under fuzz/artifacts.
pub fn run(workspace: &Workspace, args: &FuzzArgs) -> anyhow::Result<()> {
    let all = targets(&workspace.root)?;
    let chosen: Vec<&String> = if args.targets.is_empty() {
        all.iter().collect()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t}; the targets are {}", all.join(", "));
            }
        }
        args.targets.iter().collect()
    };
    let scratch = tempfile_dir()?;
    for target in chosen {
        let corpus = workspace.root.join("fuzz/corpus").join(target);
        let fresh = scratch.join(target);
        std::fs::create_dir_all(&fresh)?;
        // rustup's cargo with the nightly toolchain, whatever cargo runs xtask.
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&workspace.root)
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO")
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&fresh)
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={}", args.seconds),
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ]);
        crate::run(cmd, &format!("fuzz {target} for {}s", args.seconds))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("chaos-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
