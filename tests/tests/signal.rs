//! Signals at a chosen syscall through the `sys_enter` BTF tracepoint: loads on the host
//! kernel and in the VM tier.
use std::{fs, path::PathBuf, process::Command};

use chaos_tests::*;
use serde_json::Value;

/// The `chaos-proc` test process, next to `chaos`.
fn proc_bin() -> PathBuf {
    chaos_bin().with_file_name("chaos-proc")
}

/// The number a `fsync-count` run last wrote before an fsync.
fn counter(path: &std::path::Path) -> u64 {
    fs::read_to_string(path)
        .expect("counter file")
        .trim()
        .parse()
        .expect("a number in the counter file")
}

fn last_json(output: &str) -> Value {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{') && !l.starts_with("{\"faults\""))
        .unwrap_or_else(|| panic!("no JSON line in {output:?}"));
    serde_json::from_str(line).expect("JSON")
}

#[test]
fn sigkill_at_exactly_the_100th_fsync_and_outsiders_untouched() {
    if !need_root() {
        return;
    }
    let inside_file = scratch("fsync-inside");
    let outside_file = scratch("fsync-outside");
    let ready = scratch("fsync-ready");
    let go = scratch("fsync-go");
    let proc_path = proc_bin();
    let run = ChaosRun::start(&[
        "inject",
        "signal",
        "--syscall",
        "fsync",
        "--signal",
        "SIGKILL",
        "--after",
        "99",
        "--json",
        "--",
        proc_path.to_str().unwrap(),
        "--ready",
        ready.to_str().unwrap(),
        "--wait-for",
        go.to_str().unwrap(),
        "fsync-count",
        inside_file.to_str().unwrap(),
        "--count",
        "200",
    ]);
    // The fault is live once the command runs: a process outside makes more fsyncs than
    // the point of death and finishes them all.
    wait_for_file(&ready);
    let outside = Command::new(&proc_path)
        .args([
            "fsync-count",
            outside_file.to_str().unwrap(),
            "--count",
            "150",
        ])
        .output()
        .expect("outside process");
    assert!(outside.status.success(), "outside: {outside:?}");
    assert_eq!(counter(&outside_file), 150);
    fs::write(&go, b"").unwrap();

    let outcome = run.finish();
    // chaos exits like the command did: killed by signal 9.
    assert_eq!(outcome.status.code(), Some(128 + 9), "chaos: {outcome:?}");
    // The counter is written before each fsync: the process wrote 100 and died at that
    // fsync's entry, never writing 101.
    assert_eq!(counter(&inside_file), 100);
    assert_eq!(outcome.counts(0), (100, 1), "report: {}", outcome.stdout);
    let report = outcome.report();
    assert_eq!(report["faults"][0]["kind"], "signal");
    assert_eq!(report["faults"][0]["effect"], "SIGKILL");
    assert_nothing_left();
}

/// Where SIGUSR1 ended up pending after a second thread's fsync, with and without --thread.
fn usr1_pending(thread: bool) -> (Value, (u64, u64)) {
    let file = scratch("thread-signal");
    let proc_path = proc_bin();
    let mut args = vec![
        "inject",
        "signal",
        "--syscall",
        "fsync",
        "--signal",
        "SIGUSR1",
    ];
    if thread {
        args.push("--thread");
    }
    args.extend([
        "--json",
        "--",
        proc_path.to_str().unwrap(),
        "thread-signal",
        file.to_str().unwrap(),
    ]);
    let outcome = chaos(&args);
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    (last_json(&outcome.stderr), outcome.counts(0))
}

#[test]
fn thread_option_signals_only_the_calling_thread() {
    if !need_root() {
        return;
    }
    let (pending, counts) = usr1_pending(true);
    assert_eq!(pending["thread_pending"], true, "{pending}");
    assert_eq!(pending["shared_pending"], false, "{pending}");
    assert_eq!(counts, (1, 1));

    let (pending, counts) = usr1_pending(false);
    assert_eq!(pending["thread_pending"], false, "{pending}");
    assert_eq!(pending["shared_pending"], true, "{pending}");
    assert_eq!(counts, (1, 1));
    assert_nothing_left();
}

#[test]
fn filters_that_entry_cannot_see_are_refused() {
    if !need_root() {
        return;
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--syscall", "fsync", "--path", "/tmp"],
            &["--path", "--comm"],
        ),
        (
            &["--syscall", "fsync", "--port", "80"],
            &["--port", "--comm"],
        ),
        (
            &["--syscall", "fsync", "--signal", "SIGNOPE"],
            &["signal", "SIGNOPE", "1..=64"],
        ),
        (&["--syscall", "fsnyc"], &["syscall", "fsnyc"]),
    ];
    for (extra, words) in cases {
        let mut args = vec!["inject", "signal"];
        args.extend_from_slice(extra);
        args.extend(["--", "true"]);
        let outcome = chaos(&args);
        assert_eq!(outcome.status.code(), Some(2), "{args:?}: {outcome:?}");
        for word in *words {
            assert!(
                outcome.stderr.contains(word),
                "{args:?}: {}",
                outcome.stderr
            );
        }
    }
    assert_nothing_left();
}

#[test]
fn doctor_rows_agree_with_what_attaches() {
    if !need_root() {
        return;
    }
    let outcome = chaos(&["doctor", "--json"]);
    assert!(outcome.status.success(), "{outcome:?}");
    let report: Value = serde_json::from_str(&outcome.stdout).expect("doctor --json");
    let row = |kind: &str| {
        report["faults"]
            .as_array()
            .expect("faults")
            .iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} row in {report}"))
            .clone()
    };
    let cgroup = TestCgroup::new("doctor-entry");
    for (kind, args) in [
        ("signal", &["signal", "--syscall", "fsync"][..]),
        (
            "latency",
            &["latency", "--syscall", "fsync", "--delay", "1ms"][..],
        ),
    ] {
        let mut full = vec!["inject"];
        full.extend_from_slice(args);
        full.extend(["--cgroup", cgroup.path.to_str().unwrap()]);
        let mut run = ChaosRun::start(&full);
        let attached = run.wait_injecting().is_ok();
        if attached {
            run.interrupt();
        }
        assert_eq!(row(kind)["works"], attached, "{kind}: {}", row(kind));
    }
    let latency = row("latency");
    let mechanism = latency["mechanism"].as_str().unwrap_or_default();
    assert!(
        mechanism.contains("spin") && mechanism.contains("pause"),
        "{latency}"
    );
    assert_nothing_left();
}
