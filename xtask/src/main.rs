//! Developer tasks: `cargo xtask setup|test|vm-test|quickstart|bench`.
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

mod bench;
mod bench_chart;
mod summary;
mod vm;
mod workspace;

use summary::Summary;
use workspace::Workspace;

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent): scripts/setup.
    Setup,
    /// Set up, then run every test: fmt, clippy, unit tests, host-tier and VM-tier
    /// integration tests.
    Test(TestArgs),
    /// Boot a Debian kernel under QEMU and run the integration tests inside it.
    VmTest(vm::VmTestArgs),
    /// Set up, build and run `chaos quickstart` (as root).
    Quickstart,
    /// Measure chaos's overhead, injection path, arm/disarm time and scale (as root); see
    /// BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Draw benchmark results (bench/*.json) as SVG charts of their ratios, each beside its
    /// JSON (bench/host.json -> bench/host.svg).
    BenchChart {
        /// The results to draw.
        #[arg(required = true)]
        results: Vec<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    /// Skip the VM tier (it downloads kernels and boots them under emulation).
    #[arg(long)]
    no_vm: bool,
    /// Kernels for the VM tier.
    #[arg(long, value_delimiter = ',', default_value = "6.1,6.12")]
    kernels: Vec<String>,
}

/// Runs a command to completion, failing with its description.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    println!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("starting: {what}"))?;
    if !status.success() {
        bail!("{what}: failed ({status})");
    }
    Ok(())
}

/// Runs a libtest-based command, echoing its stdout and counting its results (SKIP lines
/// printed by tests that could not run here count as skipped, not passed).
fn run_tests(mut cmd: Command, what: &str) -> anyhow::Result<Summary> {
    println!("xtask: {what}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting: {what}"))?;
    let mut summary = Summary::default();
    let mut skips = 0;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        summary.add_line(&line);
        if line.starts_with("SKIP: ") {
            skips += 1;
        }
    }
    let status = child.wait()?;
    summary.passed = summary.passed.saturating_sub(skips);
    summary.ignored += skips;
    if !status.success() {
        bail!("{what}: failed ({status}); {summary}");
    }
    Ok(summary)
}

fn setup(workspace: &Workspace) -> anyhow::Result<()> {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace.root.join("scripts/setup"));
    run(cmd, "setup (scripts/setup)")
}

fn test(args: &TestArgs) -> anyhow::Result<Summary> {
    let workspace = Workspace::locate()?;
    let cargo = || workspace.cargo();
    setup(&workspace)?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt, "cargo fmt --check")?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    run(clippy, "cargo clippy -D warnings")?;

    let mut total = Summary::default();
    let mut unit = cargo();
    unit.args([
        "test",
        "-p",
        "chaos-common",
        "-p",
        "chaos-user",
        "-p",
        "xtask",
    ]);
    total.add(run_tests(unit, "unit tests")?);

    let mut build = cargo();
    build.args(["build", "-p", "chaos-user", "-p", "chaos-tests", "--bins"]);
    run(build, "building chaos and the test workload")?;
    let mut host = cargo();
    host.args([
        "test",
        "-p",
        "chaos-tests",
        "--",
        "--test-threads=1",
        "--show-output",
    ]);
    total.add(run_tests(
        host,
        "host-tier integration tests (root, serial)",
    )?);

    if args.no_vm {
        println!("xtask: VM tier skipped (--no-vm)");
    } else {
        for kernel in &args.kernels {
            let mut vm_args = vm::VmTestArgs::for_kernel(kernel);
            // As on the host: what each test printed (doctor's table, for one) goes in the log.
            vm_args.test_args = vec!["--show-output".into()];
            total.add(vm::run(&vm_args).with_context(|| format!("VM tier on {kernel}"))?);
        }
    }
    Ok(total)
}

fn quickstart() -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    setup(&workspace)?;
    let mut build = workspace.cargo();
    build.args(["build", "-p", "chaos-user"]);
    run(build, "building chaos")?;
    let chaos = workspace.target_dir.join("debug/chaos");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        Command::new(&chaos)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(&chaos);
        sudo
    };
    cmd.arg("quickstart");
    run(cmd, "chaos quickstart")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Setup => Workspace::locate().and_then(|w| setup(&w)),
        Task::Test(args) => test(&args).map(|total| {
            println!("xtask test: all tiers");
            println!("{total}");
        }),
        Task::VmTest(args) => vm::run(&args).map(|_summary| ()),
        Task::Quickstart => quickstart(),
        Task::Bench(args) => bench::run_bench(&args),
        Task::BenchChart { results } => results.iter().try_for_each(|json| {
            let svg = bench_chart::write_beside(json)?;
            println!("xtask: {} drawn in {}", json.display(), svg.display());
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
