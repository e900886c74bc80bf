//! connect(2) failing with a chosen errno through the cgroup sock_addr hooks: loads on the
//! host kernel and in the VM tier.
use std::{fs, sync::atomic::Ordering};

use chaos_tests::*;

#[test]
fn command_sees_chosen_errno_and_outsiders_connect() {
    if !need_root() {
        return;
    }
    let (addr, accepted) = tcp_server();
    let ready = scratch("connect-ready");
    let go = scratch("connect-go");
    let workload_path = workload_bin();
    let run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--json",
        "--",
        workload_path.to_str().unwrap(),
        "--ready",
        ready.to_str().unwrap(),
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "5",
        "connect",
        &addr,
    ]);
    // chaos attaches before it starts the command, so once the command is up the fault is live.
    wait_for_file(&ready);
    let outside = workload_result(
        workload(&["--count", "3", "connect", &addr])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        (outside.ok, outside.failed()),
        (3, 0),
        "outside the target: {outside:?}"
    );
    fs::write(&go, b"").unwrap();

    let outcome = run.finish();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    // With --json the command's stdout goes to stderr, leaving stdout to the report.
    let inside = WorkloadResult::parse(&outcome.stderr);
    assert_eq!(inside.ok, 0, "inside: {inside:?}");
    assert_eq!(inside.failed_with("ECONNREFUSED"), 5, "inside: {inside:?}");
    assert_eq!(outcome.counts(0), (5, 5), "report: {}", outcome.stdout);
    let report = outcome.report();
    assert_eq!(report["faults"][0]["kind"], "syscall");
    assert_eq!(report["faults"][0]["errno"], "ECONNREFUSED");
    // The server saw the outsider's connections and none of the failed ones.
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_nothing_left();
}

#[test]
fn command_exit_status_is_passed_through() {
    if !need_root() {
        return;
    }
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "EIO",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(outcome.status.code(), Some(7), "{outcome:?}");
    assert_nothing_left();
}

#[test]
fn cgroup_target_with_strace_like_schedule() {
    if !need_root() {
        return;
    }
    let (addr, _) = tcp_server();
    let cgroup = TestCgroup::new("schedule");
    let go = scratch("schedule-go");
    let inside = cgroup.spawn(&mut workload(&[
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "10",
        "connect",
        &addr,
    ]));
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "EHOSTUNREACH",
        "--after",
        "2",
        "--every",
        "2",
        "--max-hits",
        "3",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    fs::write(&go, b"").unwrap();
    let inside = workload_result(inside);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    // Calls 1..=10: --after 2 --every 2 makes 4, 6, 8, 10 eligible (strace's when=4+2);
    // --max-hits 3 lets 10 through.
    assert_eq!(inside.failed_with("EHOSTUNREACH"), 3, "inside: {inside:?}");
    assert_eq!(inside.ok, 7, "inside: {inside:?}");
    assert_eq!(outcome.counts(0), (10, 3), "report: {}", outcome.stdout);
    assert_nothing_left();
}

#[test]
fn dry_run_counts_and_injects_nothing() {
    if !need_root() {
        return;
    }
    let (addr, accepted) = tcp_server();
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNRESET",
        "--dry-run",
        "--json",
        "--",
        workload_bin().to_str().unwrap(),
        "--count",
        "4",
        "connect",
        &addr,
    ]);
    assert!(outcome.status.success(), "{outcome:?}");
    let inside = WorkloadResult::parse(&outcome.stderr);
    assert_eq!((inside.ok, inside.failed()), (4, 0), "{inside:?}");
    assert_eq!(outcome.counts(0), (4, 4));
    assert_eq!(outcome.report()["faults"][0]["dry_run"], true);
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    assert_nothing_left();
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    if !need_root() {
        return;
    }
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--syscall", "connect", "--errno", "5000"],
            &["errno", "5000", "1..=4095"],
        ),
        (
            &["--syscall", "connect", "--errno", "EWHAT"],
            &["errno", "EWHAT", "ECONNREFUSED"],
        ),
        (
            &["--syscall", "fsync", "--errno", "EIO"],
            &["fsync", "no LSM or cgroup hook"],
        ),
        (
            &[
                "--syscall",
                "connect",
                "--errno",
                "EIO",
                "--probability",
                "1.5",
            ],
            &["1.5", "(0, 1]"],
        ),
        (
            &[
                "--syscall",
                "connect",
                "--errno",
                "EIO",
                "--cgroup",
                "/no/such/cgroup",
            ],
            &["/no/such/cgroup"],
        ),
    ];
    for (args, wanted) in cases {
        let mut full = vec!["inject", "syscall"];
        full.extend_from_slice(args);
        if !args.contains(&"--cgroup") {
            full.extend_from_slice(&["--", "true"]);
        }
        let outcome = chaos(&full);
        assert_eq!(outcome.status.code(), Some(2), "{full:?}: {outcome:?}");
        for w in *wanted {
            assert!(
                outcome.stderr.contains(w),
                "{full:?}: stderr lacks {w:?}: {}",
                outcome.stderr
            );
        }
        assert_nothing_left();
    }
}

#[test]
fn pid_target_hits_that_process_cgroup_only() {
    if !need_root() {
        return;
    }
    let (addr, accepted) = tcp_server();
    let cgroup = TestCgroup::new("pid");
    let go = scratch("pid-go");
    let inside = cgroup.spawn(&mut workload(&[
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "4",
        "connect",
        &addr,
    ]));
    let pid = inside.id().to_string();
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ENETUNREACH",
        "--json",
        "--pid",
        &pid,
    ]);
    run.wait_injecting().expect("chaos injecting");
    let outside = workload_result(
        workload(&["--count", "2", "connect", &addr])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        (outside.ok, outside.failed()),
        (2, 0),
        "outside: {outside:?}"
    );
    fs::write(&go, b"").unwrap();
    let inside = workload_result(inside);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert_eq!(inside.failed_with("ENETUNREACH"), 4, "inside: {inside:?}");
    assert_eq!(inside.ok, 0, "inside: {inside:?}");
    assert_eq!(outcome.counts(0), (4, 4), "report: {}", outcome.stdout);
    assert_eq!(
        outcome.report()["faults"][0]["target"],
        cgroup.path.to_str().unwrap()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_nothing_left();
}

#[test]
fn duration_removes_the_fault_while_the_command_runs_on() {
    if !need_root() {
        return;
    }
    let (addr, accepted) = tcp_server();
    let ready = scratch("duration-ready");
    let go = scratch("duration-go");
    let workload_path = workload_bin();
    let run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--duration",
        "200ms",
        "--json",
        "--",
        workload_path.to_str().unwrap(),
        "--ready",
        ready.to_str().unwrap(),
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "3",
        "connect",
        &addr,
    ]);
    wait_for_file(&ready);
    // Well past the duration: the command's connects come after the fault was removed.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    fs::write(&go, b"").unwrap();
    let outcome = run.finish();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert!(
        outcome.stderr.contains("faults removed"),
        "{}",
        outcome.stderr
    );
    let inside = WorkloadResult::parse(&outcome.stderr);
    assert_eq!((inside.ok, inside.failed()), (3, 0), "inside: {inside:?}");
    assert_eq!(outcome.counts(0), (0, 0), "report: {}", outcome.stdout);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_nothing_left();
}
