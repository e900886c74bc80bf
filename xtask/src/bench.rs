//! `cargo xtask bench`: build chaos and the benchmark binaries, run the harness
//! (tests/src/bin/chaos-bench.rs) as root on this kernel, and leave its JSON where asked.
//!
//! Not part of `cargo xtask test`: benchmarks measure, they never assert on speed.
use std::{path::PathBuf, process::Command};

use crate::{Workspace, run, setup};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Fewer iterations and repetitions: a smoke run of every figure.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results (relative to the current directory).
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// Only these workload operations (socket, connect, openat, read, udp-send).
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
}

/// Runs the benchmark on the host tier.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    setup(&workspace)?;
    let mut build = workspace.cargo();
    build.args(["build", "-p", "chaos-user", "-p", "chaos-tests", "--bins"]);
    run(build, "building chaos and the benchmark binaries")?;
    let bin = workspace.target_dir.join("debug");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new(bin.join("chaos-bench"))
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(bin.join("chaos-bench"));
        sudo
    };
    cmd.env("CHAOS_BIN", bin.join("chaos"))
        .arg("--out")
        .arg(std::path::absolute(&args.out)?)
        .arg("--tier")
        .arg("host");
    if args.quick {
        cmd.arg("--quick");
    }
    if !args.ops.is_empty() {
        cmd.arg("--ops").arg(args.ops.join(","));
    }
    run(cmd, "chaos-bench (root)")
}
