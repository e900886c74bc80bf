//! `--log-kernel`: the kernel programs' own debug lines (aya-log) on stderr. With `debug`, a
//! line for each call or packet a rule acts on, as many as the counters count; without the
//! flag none; the daemon prints them in its log; a bad level is refused naming the option. That logging off costs the programs
//! nothing is verifier.rs's budget plus the numbers in the report of the change.
use chaos::{
    kernel_log::{KernelLogLevel, set_level},
    loader::verifier_costs,
};
use chaos_tests::{
    daemon::DaemonRun,
    events::{net_bin, proc_bin},
    netns::UdpCounter,
    *,
};

/// The `kernel:` lines of a run's stderr.
fn kernel_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("kernel: "))
        .collect()
}

/// `chaos inject syscall --syscall socket --errno EACCES` around 2 threads making 5 socket()
/// calls each, with `extra` options.
fn socket_fault(extra: &[&str]) -> ChaosOutcome {
    let proc_path = proc_bin();
    let mut args = vec![
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EACCES",
        "--json",
    ];
    args.extend_from_slice(extra);
    args.extend([
        "--",
        proc_path.to_str().unwrap(),
        "threads",
        "--threads",
        "2",
        "--count",
        "5",
        "--call",
        "socket",
    ]);
    chaos(&args)
}

#[test]
fn debug_prints_a_line_for_each_failed_call() {
    if !need_root() {
        return;
    }
    let outcome = socket_fault(&["--log-kernel", "debug"]);
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let (_, injected) = outcome.counts(0);
    assert_eq!(injected, 10, "{}", outcome.stdout);
    let lines = kernel_lines(&outcome.stderr);
    assert_eq!(
        lines.len(),
        10,
        "one line per failed call: {}",
        outcome.stderr
    );
    // EACCES is 13; action 0 fails the call with the rule's value as errno.
    assert_each_line_matches(
        lines,
        r"^kernel: DEBUG rule \d+ acts on syscall -?\d+ \(hook \d+\): action 0 value 13 pid \d+$",
    );
    assert_nothing_left();
}

#[test]
fn without_the_flag_the_kernel_prints_nothing() {
    if !need_root() {
        return;
    }
    let outcome = socket_fault(&[]);
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let (_, injected) = outcome.counts(0);
    assert_eq!(injected, 10, "{}", outcome.stdout);
    assert_eq!(kernel_lines(&outcome.stderr), Vec::<&str>::new());
    // Below debug, the rule lines are not printed either.
    let outcome = socket_fault(&["--log-kernel", "info"]);
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert_eq!(kernel_lines(&outcome.stderr), Vec::<&str>::new());
    assert_nothing_left();
}

#[test]
fn dropped_packets_print_a_line_each() {
    if !need_root() {
        return;
    }
    let loopback = "127.0.0.1".parse().unwrap();
    let counter = UdpCounter::start(None, loopback);
    let addr = counter.addr.to_string();
    let net = net_bin();
    let outcome = chaos(&[
        "inject",
        "net-drop",
        "--probability",
        "0.5",
        "--protocol",
        "udp",
        "--cidr",
        "127.0.0.1",
        "--json",
        "--log-kernel",
        "debug",
        "--",
        net.to_str().unwrap(),
        "udp-send",
        &addr,
        "100",
    ]);
    counter.stop();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let fault = &outcome.report()["faults"][0];
    let affected = fault["affected"].as_u64().expect("affected");
    assert!(affected > 0, "{fault}");
    let lines = kernel_lines(&outcome.stderr);
    assert_eq!(lines.len() as u64, affected, "{}", outcome.stderr);
    assert_each_line_matches(
        lines,
        r"^kernel: DEBUG packet rule \d+ acts: action 1 direction \d+ len \d+$",
    );
    assert_nothing_left();
}

#[test]
fn an_unknown_level_is_refused_naming_the_option() {
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EACCES",
        "--log-kernel",
        "bogus",
        "--",
        "true",
    ]);
    assert!(!outcome.status.success(), "{outcome:?}");
    for needle in ["--log-kernel", "bogus", "off", "debug", "trace"] {
        assert!(
            outcome.stderr.contains(needle),
            "{needle}: {}",
            outcome.stderr
        );
    }
    // Commands that keep no programs running refuse it rather than ignore it.
    let outcome = chaos(&["doctor", "--log-kernel", "debug"]);
    assert!(!outcome.status.success(), "{outcome:?}");
    assert!(
        outcome.stderr.contains("--log-kernel is for"),
        "{}",
        outcome.stderr
    );
}

/// With the lines on, every program still loads, inside the verifier budget verifier.rs
/// holds the quiet programs to.
#[test]
fn logging_on_stays_within_the_verifier_budget() {
    if !need_root() {
        return;
    }
    set_level(KernelLogLevel::Debug);
    let costs = verifier_costs().expect("loading the object");
    set_level(KernelLogLevel::Off);
    let quiet = verifier_costs().expect("loading the object");
    for (cost, quiet) in costs.iter().zip(&quiet) {
        eprintln!(
            "{:28} {:>8} insns logging, {:>8} quiet",
            cost.program,
            cost.verified_insns.map_or("-".into(), |n| n.to_string()),
            quiet.verified_insns.map_or("-".into(), |n| n.to_string()),
        );
        if cost.program_type != "lsm" || skips_forbidden() {
            assert!(cost.error.is_none(), "{cost:?}");
        }
        if let Some(insns) = cost.verified_insns {
            assert!(insns <= 100_000, "{cost:?}");
        }
    }
}

/// The daemon prints the lines of its faults' programs in its own log, target `kernel`.
#[test]
fn the_daemon_logs_its_programs_lines() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("kernel-log", false, &["--log-kernel", "debug"]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("kernel-log-daemon");
    let fault = client
        .create_json(&serde_json::json!({
            "kind": "syscall",
            "syscalls": ["socket"],
            "errno": "EMFILE",
            "target": {"cgroup": cgroup.path},
        }))
        .unwrap();
    let result = workload_result(cgroup.spawn(&mut workload(&["--count", "2", "socket"])));
    assert_eq!(result.failed_with("EMFILE"), 2);
    // EMFILE is 24.
    let line = daemon.log_line(|l| l.contains("kernel") && l.contains("value 24"));
    assert!(line.contains("rule "), "{line}");
    client.remove(fault.id).unwrap();
    drop(daemon);
    assert_nothing_left();
}

/// VM tier (the host refuses BPF LSM and fmod_ret): a file call failed by the security hook
/// logs its line, through BPF LSM and through fmod_ret, whose programs chaos loads itself and
/// which must find the log ring taken out of the object.
#[test]
fn file_calls_log_through_lsm_and_fmod_ret() {
    if !need_root() {
        return;
    }
    let dir = scratch("kernel-log-dir").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data.txt");
    std::fs::write(&file, b"x").unwrap();
    for mechanism in ["lsm", "fmod-ret"] {
        let outcome = chaos(&[
            "inject",
            "syscall",
            "--syscall",
            "openat",
            "--errno",
            "EIO",
            "--path",
            dir.to_str().unwrap(),
            "--mechanism",
            mechanism,
            "--json",
            "--log-kernel",
            "debug",
            "--",
            "/bin/cat",
            file.to_str().unwrap(),
        ]);
        if !outcome.status.success() && outcome.stderr.contains("not supported") {
            return skip(&format!("{mechanism}: {}", outcome.stderr));
        }
        let (_, injected) = outcome.counts(0);
        assert!(injected >= 1, "{mechanism}: {}", outcome.stdout);
        let lines = kernel_lines(&outcome.stderr);
        assert_eq!(
            lines.len() as u64,
            injected,
            "{mechanism}: {}",
            outcome.stderr
        );
        // EIO is 5.
        assert!(
            lines[0].contains("action 0 value 5 "),
            "{mechanism}: {lines:?}"
        );
    }
    assert_nothing_left();
}
