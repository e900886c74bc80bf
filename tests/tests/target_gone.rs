//! A target that goes away under a running fault: its cgroup removed (a container that exited,
//! a unit that stopped). chaos ends the fault at once, says why, and reports the counters it
//! had, instead of running on until --duration. Host and VM tiers (cgroup sock programs).
use std::{
    fs, thread,
    time::{Duration, Instant},
};

use chaos_tests::*;

/// Removes `cgroup`'s directory (its processes have exited), as a runtime does.
fn remove(cgroup: &TestCgroup) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(err) = fs::remove_dir(&cgroup.path) {
        assert!(
            Instant::now() < deadline,
            "rmdir {}: {err}",
            cgroup.path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn inject_ends_when_the_target_cgroup_is_removed_and_reports_the_counters() {
    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("gone");
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--every",
        "2",
        "--duration",
        "10m",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    let inside = workload_result(cgroup.spawn(&mut workload(&["--count", "4", "socket"])));
    assert_eq!(inside.failed_with("EMFILE"), 2, "inside: {inside:?}");
    remove(&cgroup);
    // chaos notices within its polling interval; the 10 minutes are not waited for. A bound
    // far above the interval, so that a slow machine does not fail the test, yet far below
    // --duration, so that a chaos that never noticed does.
    let outcome = run
        .exits_within(Duration::from_secs(60))
        .expect("chaos still running a minute after its target went away");
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert!(
        outcome.stderr.contains("was removed") && outcome.stderr.contains("fault ended"),
        "says why it ended: {}",
        outcome.stderr
    );
    assert_eq!(outcome.counts(0), (4, 2), "report: {}", outcome.stdout);
    assert_nothing_left();
}
