//! `cargo xtask bench`: build chaos and the benchmark binaries, run the harness
//! (tests/src/bin/chaos-bench.rs) as root on this kernel, and leave its JSON where asked.
//!
//! Not part of `cargo xtask test`: benchmarks measure, they never assert on speed.
use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context as _;

use crate::{
    Workspace, run, setup,
    vm::{self, KernelVersion},
};

/// What the harness prints before its results as one JSON line (read back from the VM's
/// serial console).
const RESULT_PREFIX: &str = "chaos-bench-result ";

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
    /// Repetitions of each configuration (default 11, 3 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Only these figures: overhead, injection, arm, daemon, verifier (default all).
    #[arg(long, value_delimiter = ',')]
    figures: Vec<String>,
    /// Security-hook mechanisms to force for the LSM workloads' overhead (lsm, fmod-ret),
    /// each its own figure; default: the one chaos picks.
    #[arg(long, value_delimiter = ',')]
    mechanisms: Vec<String>,
    /// Fault kinds whose arm time to measure (default: the tier's own; see chaos-bench).
    #[arg(long, value_delimiter = ',')]
    arm_kinds: Vec<String>,
    /// Run in the VM tier instead, on this Debian kernel (6.1 or 6.12), for the LSM hooks the
    /// host refuses. Always quick-sized (software emulation); the figures are ratios only.
    #[arg(long, value_name = "KERNEL")]
    vm: Option<String>,
}

impl BenchArgs {
    /// The harness options given as they are.
    fn passed_through(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.mechanisms.is_empty() {
            out.extend(["--mechanisms".into(), self.mechanisms.join(",")]);
        }
        if !self.arm_kinds.is_empty() {
            out.extend(["--arm-kinds".into(), self.arm_kinds.join(",")]);
        }
        out
    }
}

/// Runs the benchmark on the host tier, or in the VM tier with `--vm`.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let workspace = Workspace::locate()?;
    setup(&workspace)?;
    if let Some(kernel) = &args.vm {
        return run_in_vm(&workspace, args, kernel);
    }
    // Measured as users run it: an optimised build (`cargo install` builds release).
    let mut build = workspace.cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "chaos-user",
        "-p",
        "chaos-tests",
        "--bins",
    ]);
    run(build, "building chaos and the benchmark binaries (release)")?;
    let bin = workspace.target_dir.join("release");
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
    if let Some(reps) = args.reps {
        cmd.arg("--reps").arg(reps.to_string());
    }
    if !args.figures.is_empty() {
        cmd.arg("--figures").arg(args.figures.join(","));
    }
    cmd.args(args.passed_through());
    run(cmd, "chaos-bench (root)")?;
    draw_beside(&args.out);
    Ok(())
}

/// Boots `kernel` with the harness in the place of the integration tests (the guest's /init
/// runs it as it would a test binary) and writes the results it prints to `args.out`.
fn run_in_vm(workspace: &Workspace, args: &BenchArgs, kernel: &str) -> anyhow::Result<()> {
    let version = KernelVersion::from_name(kernel)?;
    let mut binaries = vm::build::build_guest_binaries(workspace, &[])?;
    let harness = binaries
        .bins
        .iter()
        .find(|b| b.name == "chaos-bench")
        .cloned()
        .context("cargo built no chaos-bench binary")?;
    binaries.tests = vec![harness];
    let image = vm::kernel::ensure(version, &vm::kernel::cache_dir()?)?;
    let work_dir = workspace
        .target_dir
        .join("vm")
        .join(format!("bench-{kernel}"));
    let mut harness_args: Vec<String> = ["--quick", "--no-strace", "--tier"]
        .map(String::from)
        .to_vec();
    harness_args.push(format!("vm-{kernel}"));
    if !args.ops.is_empty() {
        harness_args.extend(["--ops".into(), args.ops.join(",")]);
    }
    if let Some(reps) = args.reps {
        harness_args.extend(["--reps".into(), reps.to_string()]);
    }
    if !args.figures.is_empty() {
        harness_args.extend(["--figures".into(), args.figures.join(",")]);
    }
    harness_args.extend(args.passed_through());
    let initrd = vm::initramfs::build(&vm::initramfs::Spec {
        work_dir: &work_dir,
        kernel_name: kernel,
        modules_dir: &image.modules_dir,
        modules: &[],
        binaries: &binaries,
        test_args: &harness_args,
    })?;
    let outcome = vm::qemu::boot(&vm::qemu::Boot {
        vmlinuz: &image.vmlinuz,
        initrd: &initrd,
        timeout: Duration::from_secs(1800),
        prefix: &format!("[vm {kernel}] "),
        lsm: vm::qemu::DEFAULT_LSM,
    })?;
    let json = outcome
        .lines
        .iter()
        .find_map(|l| {
            l.find(RESULT_PREFIX)
                .map(|at| &l[at + RESULT_PREFIX.len()..])
        })
        .context("the harness printed no results in the VM (see its output above)")?;
    let results: serde_json::Value =
        serde_json::from_str(json).context("parsing the harness's results")?;
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("xtask bench: VM results written to {}", args.out.display());
    draw_beside(&args.out);
    Ok(())
}

/// Draws the ratios beside the results; a run without ratios (only arm, daemon or verifier
/// figures) has no chart, which is no failure of the benchmark.
fn draw_beside(out: &std::path::Path) {
    match crate::bench_chart::write_beside(out) {
        Ok(svg) => println!("xtask: ratios drawn in {}", svg.display()),
        Err(err) => println!("xtask: no chart: {err:#}"),
    }
}
