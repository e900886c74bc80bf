//! The benchmark harness behind `cargo xtask bench` (root): runs `chaos-bench-workload` in a
//! cgroup under each configuration, interleaved, several repetitions, and writes every figure
//! as a ratio against the no-chaos baseline measured in the same invocation.
//!
//! Figures: bystander overhead (rules on other cgroups), target overhead with a rule that
//! matches but never fires, the injection path against strace's `inject=` with the same
//! schedule, arm/disarm time of the `chaos` CLI, and overhead with 1, 100 and 1,000 rules on
//! distinct cgroups. Benchmarks print numbers; they assert nothing about speed.
use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos::{
    fault::{Errno, FilterSpec, Syscall, SyscallFault, When},
    loader::{HookMechanism, Injector, PlannedRule},
    target::{CgroupTarget, ChildCgroup},
};
use chaos_common::{MAX_RULES, Schedule};
use chaos_tests::{ChaosRun, TestCgroup, chaos_bin, need_root};
use clap::Parser;
use nix::time::{ClockId, clock_gettime};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Fewer iterations and repetitions (a smoke run, minutes instead of tens of minutes).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench.json")]
    out: PathBuf,
    /// Which tier this runs on, recorded in the results ("host" or "vm").
    #[arg(long, default_value = "host")]
    tier: String,
    /// Operations to measure (comma separated); default: all that this kernel can fault.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Repetitions of each configuration (default 11, 3 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Skip the strace comparison.
    #[arg(long)]
    no_strace: bool,
    /// Only print what the verifier spends on each program (JSON) and exit.
    #[arg(long)]
    verifier_only: bool,
    /// Figures to measure (comma separated): overhead, injection, arm, daemon, verifier;
    /// default all.
    #[arg(long, value_delimiter = ',')]
    figures: Vec<String>,
    /// Fault kinds whose arm time to measure (socket, connect, bind, setsockopt, signal,
    /// latency, net-drop, net-corrupt); default all.
    #[arg(long, value_delimiter = ',')]
    arm_kinds: Vec<String>,
    /// Security-hook mechanisms to force for the LSM workloads' overhead (lsm, fmod-ret),
    /// each measured as its own figure (`openat_lsm`, `openat_fmod_ret`, ...); default: the
    /// one chaos picks, under the plain name.
    #[arg(long, value_delimiter = ',')]
    mechanisms: Vec<HookMechanism>,
    /// Accepted and ignored: the VM tier's /init runs the harness as it runs test binaries.
    #[arg(long, hide = true)]
    test_threads: Option<String>,
}

/// A workload operation and the syscall fault that covers it.
struct Bench {
    /// `chaos-bench-workload --op` value.
    op: &'static str,
    /// The syscall chaos faults for it.
    syscall: &'static str,
    /// The hook family that sees it.
    family: &'static str,
    /// Iterations per run (full size).
    iterations: u64,
}

const BENCHES: &[Bench] = &[
    Bench {
        op: "socket",
        syscall: "socket",
        family: "cgroup sock_create",
        iterations: 50_000,
    },
    Bench {
        op: "connect",
        syscall: "connect",
        family: "cgroup sock_addr (connect4)",
        iterations: 5_000,
    },
    Bench {
        op: "openat",
        syscall: "openat",
        family: "LSM file_open",
        iterations: 100_000,
    },
    Bench {
        op: "read",
        syscall: "read",
        family: "LSM file_permission",
        iterations: 500_000,
    },
    Bench {
        op: "udp-send",
        syscall: "sendto",
        family: "LSM socket_sendmsg",
        iterations: 50_000,
    },
];

/// Rule counts for the scale figures, as the issue asks.
const SCALE: [usize; 3] = [1, 100, 1000];

/// A rule that matches every call but whose schedule never fires within a run.
const NEVER: u64 = u64::MAX / 2;

struct Harness {
    quick: bool,
    reps: usize,
    workload: PathBuf,
    tmpfs_file: PathBuf,
    target: TestCgroup,
    /// The same cgroup as a chaos target.
    target_cgroup: CgroupTarget,
    others: Vec<ChildCgroup>,
}

impl Harness {
    fn iterations(&self, bench: &Bench) -> u64 {
        if self.quick {
            bench.iterations / 10
        } else {
            bench.iterations
        }
    }

    fn workload_cmd(&self, op: &str, iterations: u64) -> Command {
        let mut cmd = Command::new(&self.workload);
        cmd.args(["--op", op, "--iterations", &iterations.to_string()])
            .arg("--path")
            .arg(if op == "openat" {
                &self.tmpfs_file
            } else {
                std::path::Path::new("/dev/zero")
            })
            .stdout(Stdio::piped());
        cmd
    }

    /// Runs `cmd` (a workload, possibly wrapped) in the target cgroup; returns its JSON line.
    fn run_in_target(&self, mut cmd: Command) -> anyhow::Result<Value> {
        let child = self.target.spawn(&mut cmd);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("workload failed: {:?}", out.status);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| format!("no result from the workload: {stdout:?}"))?;
        Ok(serde_json::from_str(line)?)
    }

    fn fault(&self, syscall: &str, schedule: Schedule) -> anyhow::Result<SyscallFault> {
        Ok(SyscallFault {
            syscalls: Syscall::parse_list(syscall)?,
            errno: "EMFILE".parse::<Errno>()?,
            filter: FilterSpec::default(),
            schedule,
            dry_run: false,
            deadline: Some(Duration::from_secs(600)),
            mechanism: None,
        })
    }

    /// `count` never-firing rules for `syscall` on distinct cgroups: the first on the
    /// workload's cgroup when `on_target`, the rest (or all) on other cgroups.
    fn quiet_rules(
        &self,
        syscall: &str,
        count: usize,
        on_target: bool,
    ) -> anyhow::Result<Vec<PlannedRule>> {
        let fault = self.fault(syscall, never())?;
        let mut targets: Vec<&CgroupTarget> = Vec::new();
        if on_target {
            targets.push(self.target_cgroup()?);
        }
        targets.extend(self.others.iter().map(ChildCgroup::target));
        let mut rules = Vec::new();
        for target in targets.into_iter().take(count) {
            rules.extend(fault.rules(target)?);
        }
        Ok(rules)
    }

    fn target_cgroup(&self) -> anyhow::Result<&CgroupTarget> {
        Ok(&self.target_cgroup)
    }
}

fn never() -> Schedule {
    Schedule {
        first: NEVER,
        ..Schedule::default()
    }
}

fn monotonic_ns() -> u128 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

/// Median, min, max of samples.
fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (median, s[0], s[n - 1])
}

/// A configuration's samples summarised, with its ratio to the baseline's median and the
/// median of the per-repetition ratios (each against the baseline run next to it, which
/// cancels slow drifts in the machine's load).
fn summary(samples: &[f64], baseline: &[f64]) -> Value {
    let (median, min, max) = stats(samples);
    let (baseline_median, _, _) = stats(baseline);
    let paired: Vec<f64> = samples.iter().zip(baseline).map(|(s, b)| s / b).collect();
    let (paired_median, paired_min, paired_max) = stats(&paired);
    json!({
        "paired_ratio_median": paired_median,
        "paired_ratio_min": paired_min,
        "paired_ratio_max": paired_max,
        "median_ns": median,
        "min_ns": min,
        "max_ns": max,
        "spread_pct": if median > 0.0 { (max - min) / median * 100.0 } else { 0.0 },
        "ratio": median / baseline_median,
        "samples_ns": samples,
    })
}

/// One overhead configuration: which rules are active while the workload runs.
#[derive(Clone, Copy)]
enum Config {
    Baseline,
    /// A do-nothing program on the workload's cgroup at the same hook: what the kernel's
    /// cgroup-BPF dispatch costs by itself, before any chaos code runs (cgroup hooks only).
    EmptyProgram,
    Bystander(usize),
    Target(usize),
}

impl Config {
    fn name(self) -> String {
        match self {
            Config::Baseline => "baseline".into(),
            Config::EmptyProgram => "target_empty_program".into(),
            Config::Bystander(n) => format!("bystander_{n}_rules"),
            Config::Target(n) => format!("target_{n}_rules_never_fire"),
        }
    }
}

/// Figures 1, 2 and 5 for one operation, with the security hooks' mechanism forced when
/// `mechanism` is given.
fn overhead(h: &Harness, bench: &Bench, mechanism: Option<HookMechanism>) -> anyhow::Result<Value> {
    // Whether this kernel can run the hook at all (LSM hooks need the VM tier on our hosts).
    let mechanism_used = match h
        .quiet_rules(bench.syscall, 1, true)
        .and_then(|r| Ok(Injector::start_with(&r, mechanism)?))
    {
        Ok(injector) => injector.mechanism(),
        Err(err) => {
            eprintln!("bench: {}: skipped: {err:#}", bench.op);
            return Ok(json!({"family": bench.family, "skipped": format!("{err:#}")}));
        }
    };
    let mut configs = vec![Config::Baseline];
    if bench.op == "socket" {
        configs.push(Config::EmptyProgram);
    }
    configs.extend(SCALE.iter().map(|&n| Config::Bystander(n)));
    configs.extend(SCALE.iter().map(|&n| Config::Target(n)));
    let iterations = h.iterations(bench);
    let mut wall = vec![Vec::new(); configs.len()];
    let mut cpu = vec![Vec::new(); configs.len()];
    for rep in 0..h.reps {
        // Interleaved, each repetition starting at a different configuration, so that drifts
        // in the machine's load spread over all of them.
        for k in 0..configs.len() {
            let i = (k + rep) % configs.len();
            let empty = match configs[i] {
                Config::EmptyProgram => Some(empty_sock_create(&h.target.path)?),
                _ => None,
            };
            let rules = match configs[i] {
                Config::Baseline | Config::EmptyProgram => Vec::new(),
                Config::Bystander(n) => h.quiet_rules(bench.syscall, n, false)?,
                Config::Target(n) => h.quiet_rules(bench.syscall, n, true)?,
            };
            let injector = if rules.is_empty() {
                None
            } else {
                Some(Injector::start_with(&rules, mechanism)?)
            };
            let result = h.run_in_target(h.workload_cmd(bench.op, iterations))?;
            if let (Config::Target(_), Some(inj)) = (configs[i], &injector) {
                let c = &inj.counters()?[0];
                // At least the loop's calls: the workload's start (the dynamic loader opening
                // libraries) makes a few more.
                if c.matched < iterations || c.injected != 0 {
                    bail!(
                        "{}: the target rule saw matched={} injected={}, expected {iterations}+/0",
                        bench.op,
                        c.matched,
                        c.injected
                    );
                }
            }
            drop(injector);
            drop(empty);
            if result["failed"].as_u64() != Some(0) {
                bail!("{}: calls failed without a firing rule: {result}", bench.op);
            }
            wall[i].push(result["ns"].as_f64().context("ns")?);
            cpu[i].push(result["cpu_ns"].as_f64().context("cpu_ns")?);
        }
        eprintln!(
            "bench: {}: repetition {} of {} done",
            bench.op,
            rep + 1,
            h.reps
        );
    }
    let mut out = serde_json::Map::new();
    out.insert("family".into(), json!(bench.family));
    out.insert("iterations".into(), json!(iterations));
    out.insert(
        "mechanism".into(),
        json!(mechanism_used.map(|m| m.to_string())),
    );
    for (i, config) in configs.iter().enumerate() {
        out.insert(
            config.name(),
            json!({"cpu": summary(&cpu[i], &cpu[0]), "wall": summary(&wall[i], &wall[0])}),
        );
    }
    Ok(Value::Object(out))
}

/// chaos's do-nothing `sock_create` program (the one `chaos doctor` probes with), attached to
/// `cgroup` until the returned object is dropped.
fn empty_sock_create(cgroup: &std::path::Path) -> anyhow::Result<aya::Ebpf> {
    use aya::programs::{CgroupAttachMode, CgroupSock};
    let mut ebpf = aya::EbpfLoader::new().load(chaos::loader::EBPF_OBJECT)?;
    let prog: &mut CgroupSock = ebpf
        .program_mut("chaos_probe_sock_create")
        .context("chaos_probe_sock_create")?
        .try_into()?;
    prog.load()?;
    prog.attach(fs::File::open(cgroup)?, CgroupAttachMode::Single)?;
    Ok(ebpf)
}

/// Figure 3: every Nth socket() failed, by chaos and by strace with the same schedule.
fn injection(h: &Harness, use_strace: bool) -> anyhow::Result<Value> {
    const EVERY: u64 = 10;
    let bench = &BENCHES[0];
    let iterations = h.iterations(bench);
    let expected = iterations / EVERY;
    // The same when= expression for both: the Nth, 2Nth... call fails.
    let when = format!("{EVERY}+{EVERY}");
    let fault = h.fault(
        bench.syscall,
        when.parse::<When>()?
            .schedule(None, Schedule::ALWAYS.probability),
    )?;
    let mut names = vec!["baseline", "chaos"];
    if use_strace {
        names.extend(["strace", "strace_seccomp_bpf"]);
    }
    let strace = |seccomp: bool| {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=socket"]);
        cmd.arg("-e")
            .arg(format!("inject=socket:error=EMFILE:when={when}"));
        if seccomp {
            cmd.arg("--seccomp-bpf");
        }
        cmd.arg("--").arg(&h.workload);
        cmd.args(["--op", bench.op, "--iterations", &iterations.to_string()])
            .stdout(Stdio::piped());
        cmd
    };
    let mut samples = vec![Vec::new(); names.len()];
    let mut cpu = vec![Vec::new(); names.len()];
    let mut failures = vec![0u64; names.len()];
    for rep in 0..h.reps {
        for k in 0..names.len() {
            let i = (k + rep) % names.len();
            let mut injector = None;
            let cmd = match names[i] {
                "baseline" => h.workload_cmd(bench.op, iterations),
                "chaos" => {
                    injector = Some(Injector::start(&fault.rules(h.target_cgroup()?)?)?);
                    h.workload_cmd(bench.op, iterations)
                }
                "strace" => strace(false),
                _ => strace(true),
            };
            let result = h.run_in_target(cmd)?;
            let failed = result["failed"].as_u64().context("failed")?;
            if let Some(inj) = injector.take() {
                let injected = inj.counters()?[0].injected;
                if injected != failed {
                    bail!("chaos counted {injected} injections, the workload saw {failed}");
                }
            }
            let want = if names[i] == "baseline" { 0 } else { expected };
            if failed != want {
                bail!("{}: {failed} calls failed, expected {want}", names[i]);
            }
            failures[i] = failed;
            samples[i].push(result["ns"].as_f64().context("ns")?);
            cpu[i].push(result["cpu_ns"].as_f64().context("cpu_ns")?);
        }
        eprintln!(
            "bench: injection path: repetition {} of {} done",
            rep + 1,
            h.reps
        );
    }
    let (base, _, _) = stats(&samples[0]);
    let mut out = serde_json::Map::new();
    out.insert("op".into(), json!(bench.op));
    out.insert("iterations".into(), json!(iterations));
    out.insert(
        "schedule".into(),
        json!(format!("every {EVERY}th call fails with EMFILE")),
    );
    for (i, name) in names.iter().enumerate() {
        // Wall time: strace's cost is mostly in the tracer and the context switches to it,
        // which the traced workload's own CPU time does not show.
        let mut s = summary(&samples[i], &samples[0]);
        s["failures"] = json!(failures[i]);
        s["cpu"] = summary(&cpu[i], &cpu[0]);
        out.insert((*name).into(), s);
    }
    if use_strace {
        let (chaos, _, _) = stats(&samples[1]);
        for (i, name) in [(2, "strace"), (3, "strace_seccomp_bpf")] {
            let (st, _, _) = stats(&samples[i]);
            out.insert(format!("{name}_over_chaos_time"), json!(st / chaos));
            // What each injector adds to the bare workload, compared.
            let added = if chaos > base {
                json!((st - base) / (chaos - base))
            } else {
                json!(null)
            };
            out.insert(format!("{name}_over_chaos_added_time"), added);
        }
    }
    Ok(Value::Object(out))
}

/// A fault kind whose arm time is measured: the workload operation that notices it and the
/// `chaos inject` arguments (before `--json --cgroup X`).
struct ArmCase {
    kind: &'static str,
    /// A security-hook fault, which only the VM tier's kernels run (and run by default).
    vm: bool,
    op: &'static str,
    inject: &'static [&'static str],
}

const ARM_CASES: &[ArmCase] = &[
    ArmCase {
        kind: "socket",
        vm: false,
        op: "socket",
        inject: &["syscall", "--syscall", "socket", "--errno", "EMFILE"],
    },
    ArmCase {
        kind: "connect",
        vm: false,
        op: "connect",
        inject: &["syscall", "--syscall", "connect", "--errno", "ECONNREFUSED"],
    },
    ArmCase {
        kind: "bind",
        vm: false,
        op: "bind",
        inject: &["syscall", "--syscall", "bind", "--errno", "EADDRINUSE"],
    },
    ArmCase {
        kind: "setsockopt",
        vm: false,
        op: "setsockopt",
        inject: &[
            "syscall",
            "--syscall",
            "setsockopt",
            "--errno",
            "ENOPROTOOPT",
        ],
    },
    ArmCase {
        kind: "signal",
        vm: false,
        op: "getppid",
        inject: &["signal", "--syscall", "getppid", "--signal", "SIGUSR1"],
    },
    ArmCase {
        kind: "latency",
        vm: false,
        op: "getppid",
        inject: &[
            "latency",
            "--syscall",
            "getppid",
            "--delay",
            "30ms",
            "--mode",
            "spin",
        ],
    },
    ArmCase {
        kind: "net-drop",
        vm: false,
        op: "udp-echo",
        inject: &["net-drop", "--probability", "1", "--protocol", "udp"],
    },
    ArmCase {
        kind: "net-corrupt",
        vm: false,
        op: "udp-echo",
        inject: &[
            "net-corrupt",
            "--probability",
            "1",
            "--protocol",
            "udp",
            "--fix-checksum",
            "--device",
            "lo",
        ],
    },
    ArmCase {
        kind: "openat",
        vm: true,
        op: "openat",
        inject: &["syscall", "--syscall", "openat", "--errno", "EIO"],
    },
    ArmCase {
        kind: "openat-lsm",
        vm: true,
        op: "openat",
        inject: &[
            "syscall",
            "--syscall",
            "openat",
            "--errno",
            "EIO",
            "--mechanism",
            "lsm",
        ],
    },
    ArmCase {
        kind: "openat-fmod-ret",
        vm: true,
        op: "openat",
        inject: &[
            "syscall",
            "--syscall",
            "openat",
            "--errno",
            "EIO",
            "--mechanism",
            "fmod-ret",
        ],
    },
    ArmCase {
        kind: "read",
        vm: true,
        op: "read",
        inject: &["syscall", "--syscall", "read", "--errno", "EIO"],
    },
    ArmCase {
        kind: "read-fmod-ret",
        vm: true,
        op: "read",
        inject: &[
            "syscall",
            "--syscall",
            "read",
            "--errno",
            "EIO",
            "--mechanism",
            "fmod-ret",
        ],
    },
];

/// Figure 4: `chaos inject` start to the first injected fault, and SIGINT to the last chaos
/// program gone from the kernel's list, for every fault kind this tier runs.
/// Without `kinds`, the host tier measures the host's kinds and the VM tier the security
/// hooks' ones.
fn arm_disarm(h: &Harness, kinds: &[String], vm: bool) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    for case in ARM_CASES {
        let chosen = if kinds.is_empty() {
            case.vm == vm
        } else {
            kinds.iter().any(|k| k == case.kind)
        };
        if !chosen {
            continue;
        }
        let figures =
            arm_disarm_of(h, case).with_context(|| format!("arm time of {}", case.kind))?;
        out.insert(case.kind.into(), figures);
    }
    Ok(json!({
        "chaos_binary": chaos_bin().display().to_string(),
        "kinds": out,
    }))
}

fn arm_disarm_of(h: &Harness, case: &ArmCase) -> anyhow::Result<Value> {
    let (mut arm, mut disarm, mut exit) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..h.reps {
        let mut cmd = Command::new(&h.workload);
        cmd.args(["--op", case.op, "--until-fail"])
            .stdout(Stdio::piped());
        let workload = h.target.spawn(&mut cmd);
        thread::sleep(Duration::from_millis(200));
        let cgroup = h.target.path.to_string_lossy().into_owned();
        let before = chaos_program_ids();
        let mut args = vec!["inject"];
        args.extend(case.inject);
        args.extend(["--json", "--cgroup", &cgroup]);
        let start = monotonic_ns();
        let mut run = ChaosRun::start(&args);
        let out = workload.wait_with_output()?;
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: Value = serde_json::from_str(line.trim()).context("until-fail result")?;
        let failed_at = v["first_failure_ns"]
            .as_f64()
            .context("the workload never saw a failure")?;
        arm.push(failed_at - start as f64);
        run.wait_injecting()?;
        // This run's programs: those that were not there before it started.
        let ours: Vec<u32> = chaos_program_ids()
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        let stop = Instant::now();
        let pid = run.pid();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        loop {
            let now = chaos_program_ids();
            if ours.iter().all(|id| !now.contains(id)) {
                break;
            }
            if stop.elapsed() > Duration::from_secs(10) {
                bail!("chaos programs still loaded 10 s after SIGINT");
            }
            thread::sleep(Duration::from_micros(200));
        }
        disarm.push(stop.elapsed().as_nanos() as f64);
        let outcome = run.finish();
        exit.push(stop.elapsed().as_nanos() as f64);
        if !outcome.status.success() {
            bail!("chaos failed: {outcome:?}");
        }
        eprintln!(
            "bench: arm/disarm {}: repetition {} of {} done",
            case.kind,
            rep + 1,
            h.reps
        );
    }
    Ok(json!({
        "inject": case.inject,
        "workload_op": case.op,
        "arm_start_to_first_fault": ms(&arm),
        "disarm_sigint_to_last_program_gone": ms(&disarm),
        "disarm_sigint_to_chaos_exit": ms(&exit),
    }))
}

fn ms(s: &[f64]) -> Value {
    let (median, min, max) = stats(s);
    json!({"median_ms": median / 1e6, "min_ms": min / 1e6, "max_ms": max / 1e6,
           "samples_ms": s.iter().map(|x| x / 1e6).collect::<Vec<_>>()})
}

/// How many faults the daemon figure creates.
const DAEMON_FAULTS: usize = 64;

/// Figure 5: the daemon's fault creation time, `POST /faults` to its answer, for
/// [`DAEMON_FAULTS`] socket+connect faults on as many cgroups, one after the other; then
/// their removal.
fn daemon_creation(h: &Harness) -> anyhow::Result<Value> {
    let socket = std::env::temp_dir().join(format!("chaos-bench-{}.sock", std::process::id()));
    let mut daemon = Command::new(chaos_bin())
        .args(["daemon", "--socket"])
        .arg(&socket)
        .args(["--max-faults", "1000", "--max-faults-per-caller", "1000"])
        .stderr(Stdio::null())
        .spawn()
        .context("starting chaos daemon")?;
    let result = (|| {
        let client = chaos::daemon::client::DaemonClient::new(Some(&socket));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.answers() {
            if Instant::now() > deadline {
                bail!("the daemon never answered");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let pid = std::process::id();
        let cgroups = (0..DAEMON_FAULTS)
            .map(|i| TestCgroup::named(&format!("bench-{pid}-daemon-{i}")))
            .collect::<Vec<_>>();
        let mut create = Vec::new();
        let mut ids = Vec::new();
        let all = Instant::now();
        for cgroup in &cgroups {
            let spec = json!({
                "kind": "syscall",
                "syscalls": ["socket", "connect"],
                "errno": "EACCES",
                "target": {"cgroup": cgroup.path},
            });
            let started = Instant::now();
            let fault = client.create_json(&spec)?;
            create.push(started.elapsed().as_nanos() as f64);
            ids.push(fault.id);
        }
        let create_all = all.elapsed();
        // The last fault works: its cgroup's socket() fails, counted.
        let mut cmd = Command::new(&h.workload);
        cmd.args(["--op", "socket", "--iterations", "10"])
            .stdout(Stdio::piped());
        let out = cgroups[DAEMON_FAULTS - 1]
            .spawn(&mut cmd)
            .wait_with_output()?;
        let v: Value = serde_json::from_slice(&out.stdout).context("workload result")?;
        if v["failed"] != 10 {
            bail!("the {DAEMON_FAULTS}th fault did not fail its cgroup's socket(): {v}");
        }
        let programs = chaos_program_ids().len();
        let removal = Instant::now();
        for id in ids {
            client.remove(id)?;
        }
        let remove_all = removal.elapsed();
        let rest = create[1..].to_vec();
        eprintln!(
            "bench: daemon: {DAEMON_FAULTS} faults in {create_all:?}, first {:.1} ms, \
             64th {:.1} ms",
            create[0] / 1e6,
            create[DAEMON_FAULTS - 1] / 1e6
        );
        Ok(json!({
            "faults": DAEMON_FAULTS,
            "fault": "syscall --syscall socket,connect --errno EACCES, one cgroup each",
            "first_ms": create[0] / 1e6,
            "last_ms": create[DAEMON_FAULTS - 1] / 1e6,
            "after_first": ms(&rest),
            "create_all_s": create_all.as_secs_f64(),
            "remove_all_s": remove_all.as_secs_f64(),
            "programs_loaded_with_all_faults": programs,
            "samples_ms": create.iter().map(|x| x / 1e6).collect::<Vec<_>>(),
        }))
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = fs::remove_file(&socket);
    result
}

/// Ids of the chaos programs the kernel has loaded now, from its own list.
fn chaos_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("chaos_")))
        .map(|p| p.id())
        .collect()
}

fn machine() -> Value {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let uname = nix::sys::utsname::uname().ok();
    json!({
        "kernel": uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()),
        "cpu": cpu,
        "cpus": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg": read("/proc/loadavg").trim(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Root, and the machine-wide lock the integration tests take: their leftover checks
    // would otherwise see the benchmark's programs (and the benchmark their load).
    if !need_root() {
        bail!("the benchmark loads kernel programs: run it as root");
    }
    if args.verifier_only {
        println!(
            "{}",
            serde_json::to_string_pretty(&chaos::loader::verifier_costs()?)?
        );
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("exe dir")?.to_path_buf();
    // In the VM tier the harness sits in /tests and its helpers next to CHAOS_BIN.
    if let Some(chaos) = std::env::var_os("CHAOS_BIN").map(PathBuf::from)
        && !dir.join("chaos-bench-workload").exists()
        && let Some(parent) = chaos.parent()
    {
        dir = parent.to_path_buf();
    }
    let workload = dir.join("chaos-bench-workload");
    if !workload.exists() {
        bail!("{} not found: build chaos-tests's bins", workload.display());
    }
    if std::env::var_os("CHAOS_BIN").is_none() {
        // SAFETY: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("CHAOS_BIN", dir.join("chaos")) };
    }
    // openat's file on tmpfs, as the issue asks: /dev/shm, or /tmp in the VM's guest.
    let shm = if PathBuf::from("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let tmpfs_file = PathBuf::from(format!("{shm}/chaos-bench-{}", std::process::id()));
    fs::write(&tmpfs_file, b"x")?;
    let pid = std::process::id();
    let others = (0..SCALE[2])
        .map(|i| ChildCgroup::create(&format!("bench-{pid}-other-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let target = TestCgroup::named(&format!("bench-{pid}-target"));
    let target_cgroup = CgroupTarget::from_path(&target.path)?;
    let h = Harness {
        quick: args.quick,
        reps: args.reps.unwrap_or(if args.quick { 3 } else { 11 }),
        workload,
        tmpfs_file: tmpfs_file.clone(),
        target,
        target_cgroup,
        others,
    };
    let started = std::time::SystemTime::now();
    let machine_before = machine();
    let figure = |name: &str| args.figures.is_empty() || args.figures.iter().any(|f| f == name);
    let mut overheads = serde_json::Map::new();
    for bench in BENCHES.iter().filter(|_| figure("overhead")) {
        if !args.ops.is_empty() && !args.ops.iter().any(|o| o == bench.op) {
            continue;
        }
        let security_hook = bench.family.starts_with("LSM");
        if args.mechanisms.is_empty() || !security_hook {
            overheads.insert(bench.op.into(), overhead(&h, bench, None)?);
            continue;
        }
        for mechanism in &args.mechanisms {
            let name = format!("{}_{}", bench.op, mechanism.to_string().replace('-', "_"));
            overheads.insert(name, overhead(&h, bench, Some(*mechanism))?);
        }
    }
    let use_strace = !args.no_strace
        && Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let injection = if figure("injection") {
        injection(&h, use_strace)?
    } else {
        Value::Null
    };
    let arm = if figure("arm") {
        arm_disarm(&h, &args.arm_kinds, args.tier != "host")?
    } else {
        Value::Null
    };
    let daemon = if figure("daemon") {
        daemon_creation(&h)?
    } else {
        Value::Null
    };
    let verifier = if figure("verifier") {
        serde_json::to_value(chaos::loader::verifier_costs()?)?
    } else {
        Value::Null
    };
    let _ = fs::remove_file(&tmpfs_file);
    let results = json!({
        "tier": args.tier,
        "quick": args.quick,
        "repetitions": h.reps,
        "started_unix": started.duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "machine_at_start": machine_before,
        "machine_at_end": machine(),
        "overhead": overheads,
        "injection_path": injection,
        "arm_disarm": arm,
        "daemon_fault_creation": daemon,
        "verified_insns": verifier,
        "max_rules": MAX_RULES,
    });
    fs::write(&args.out, serde_json::to_string_pretty(&results)? + "\n")?;
    // One line, which `cargo xtask bench --vm` finds on the guest's serial console.
    println!("chaos-bench-result {results}");
    eprintln!("bench: results written to {}", args.out.display());
    Ok(())
}
