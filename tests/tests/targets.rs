//! Target options end to end on the real cgroup hierarchy: `--unit` and `--pod` find a cgroup
//! by the name systemd or the kubelet gives it, and the blast-radius guards refuse PID 1's
//! and chaos's own cgroup. Runs on the host and in the VM tier (no systemd or kubelet needed:
//! resolution goes by the cgroup's name). The runtimes' full layouts are tested against
//! synthetic trees in chaos-user's `target::tests`.
use std::{
    fs,
    process::{Command, Stdio},
    sync::atomic::Ordering,
};

use chaos_tests::*;

/// Faults connect(2) in `cgroup` through the target option `option VALUE` and checks that its
/// workload fails, an outsider does not, and the report names that cgroup.
fn fault_connects_through(cgroup: &TestCgroup, option: &str, value: &str) {
    let (addr, accepted) = tcp_server();
    let go = scratch(&format!("{}-go", option.trim_start_matches('-')));
    let inside = cgroup.spawn(&mut workload(&[
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "3",
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
        "--json",
        option,
        value,
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
    assert_eq!(
        (inside.ok, inside.failed_with("EHOSTUNREACH")),
        (0, 3),
        "{option} {value}: {inside:?}"
    );
    assert_eq!(outcome.counts(0), (3, 3), "report: {}", outcome.stdout);
    assert_eq!(
        outcome.report()["faults"][0]["target"],
        cgroup.path.to_str().unwrap()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_nothing_left();
}

#[test]
fn unit_target_finds_the_unit_cgroup_by_name() {
    if !need_root() {
        return;
    }
    let unit = format!("chaos-test-{}.service", std::process::id());
    let cgroup = TestCgroup::named(&unit);
    fault_connects_through(&cgroup, "--unit", &unit);
}

#[test]
fn pod_target_finds_the_pod_cgroup_by_uid() {
    if !need_root() {
        return;
    }
    // A pod UID unique to this run, in the systemd driver's escaped form for the directory.
    let uid = format!("c4a05e1d-7b2f-4e3a-9d61-{:012x}", std::process::id());
    let cgroup = TestCgroup::named(&format!(
        "kubepods-besteffort-pod{}.slice",
        uid.replace('-', "_")
    ));
    fault_connects_through(&cgroup, "--pod", &uid);
}

/// Runs chaos with `args` inside `cgroup` and returns its exit code and stderr.
fn chaos_inside(cgroup: &TestCgroup, args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(chaos_bin());
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cgroup
        .spawn(&mut command)
        .wait_with_output()
        .expect("waiting for chaos");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONNECT_EIO: [&str; 6] = [
    "inject",
    "syscall",
    "--syscall",
    "connect",
    "--errno",
    "EIO",
];

#[test]
fn guards_refuse_chaos_own_cgroup_and_its_ancestors() {
    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("guard-own");
    let own = cgroup.path.to_str().unwrap();
    let parent = cgroup.path.parent().unwrap().to_str().unwrap();
    for (target, why) in [
        (own, "it is chaos's own cgroup"),
        (parent, "it contains chaos's own cgroup"),
    ] {
        let mut args = CONNECT_EIO.to_vec();
        args.extend(["--cgroup", target]);
        let (code, stderr) = chaos_inside(&cgroup, &args);
        assert_eq!(code, Some(2), "{target}: {stderr}");
        for wanted in [
            &format!("refusing target cgroup {target}") as &str,
            why,
            "--i-know-what-i-am-doing",
        ] {
            assert!(stderr.contains(wanted), "stderr lacks {wanted:?}: {stderr}");
        }
        assert_nothing_left();
    }

    // Insisting works (a dry run, so that chaos does not fail its own calls).
    let mut args = CONNECT_EIO.to_vec();
    args.extend([
        "--cgroup",
        own,
        "--i-know-what-i-am-doing",
        "--dry-run",
        "--duration",
        "300ms",
    ]);
    let (code, stderr) = chaos_inside(&cgroup, &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("into cgroup {own}")), "{stderr}");
    assert_nothing_left();
}

#[test]
fn guards_refuse_the_cgroup_of_pid_1() {
    if !need_root() {
        return;
    }
    let mut args = CONNECT_EIO.to_vec();
    args.extend(["--pid", "1"]);
    let outcome = chaos(&args);
    assert_eq!(outcome.status.code(), Some(2), "{outcome:?}");
    let init = fs::read_to_string("/proc/1/cgroup").unwrap();
    // Where init sits in the root cgroup (the project's hosts, the VM tier), the root guard
    // speaks first; elsewhere the PID 1 guard does.
    let why = if init.lines().any(|l| l == "0::/") {
        "it is the root cgroup"
    } else {
        "it is the cgroup of PID 1"
    };
    for wanted in ["refusing target pid 1", why, "--i-know-what-i-am-doing"] {
        assert!(
            outcome.stderr.contains(wanted),
            "stderr lacks {wanted:?}: {}",
            outcome.stderr
        );
    }
    assert_nothing_left();
}
