//! Socket syscalls through the cgroup socket hooks (socket, bind, getsockopt, setsockopt,
//! connect filters), on the host and in the VM tier, and the probability schedule.
use std::{fs, net::TcpListener, os::unix::fs::symlink};

use chaos_tests::*;

#[test]
fn cgroup_socket_syscalls_fail_in_target_only() {
    if !need_root() {
        return;
    }
    assert_target_only("socket", "EMFILE", &[], &["socket"]);
    assert_target_only("bind", "EADDRINUSE", &[], &["bind", "127.0.0.1:0"]);
    assert_target_only("setsockopt", "ENOPROTOOPT", &[], &["setsockopt"]);
    assert_target_only("getsockopt", "ENOPROTOOPT", &[], &["getsockopt"]);
}

#[test]
fn probability_lands_inside_the_binomial_interval() {
    if !need_root() {
        return;
    }
    const N: u64 = 10_000;
    let go = scratch("probability-go");
    let cgroup = TestCgroup::new("probability");
    let mut children = vec![cgroup.spawn(&mut workload(&[
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        &N.to_string(),
        "socket",
    ]))];
    let Some(run) = start_or_skip(
        &[
            "inject",
            "syscall",
            "--syscall",
            "socket",
            "--errno",
            "EMFILE",
            "--probability",
            "0.3",
            "--json",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
        ],
        &mut children,
    ) else {
        return;
    };
    fs::write(&go, b"").unwrap();
    let result = workload_result(children.pop().unwrap());
    let outcome = run.interrupt();
    let failed = result.failed_with("EMFILE");
    // 99.9% two-sided: 3000 ± 3.29 * sqrt(10000 * 0.3 * 0.7) = 3000 ± 151.
    assert!(
        (2849..=3151).contains(&failed),
        "{failed} of {N} failed, outside the 99.9% interval 2849..=3151"
    );
    assert_eq!(result.ok + failed, N, "{result:?}");
    assert_eq!(outcome.counts(0), (N, failed), "report: {}", outcome.stdout);
    assert_nothing_left();
}

/// Runs workloads (each `(comm-name, args)`) in one cgroup under `chaos inject syscall
/// --syscall connect --errno ETIMEDOUT FILTERS`, and returns their results in order.
fn connect_with_filter(
    name: &str,
    filter: &[&str],
    runs: &[(&str, Vec<String>)],
) -> Option<Vec<WorkloadResult>> {
    let go = scratch(&format!("{name}-go"));
    let cgroup = TestCgroup::new(name);
    let mut children = Vec::new();
    for (comm, args) in runs {
        // The thread name is the executable's file name: a symlink gives the same program
        // another comm.
        let exe = scratch(comm);
        symlink(workload_bin(), &exe).unwrap();
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["--wait-for", go.to_str().unwrap(), "--count", "3"])
            .args(args)
            .stdout(std::process::Stdio::piped());
        children.push(cgroup.spawn(&mut cmd));
    }
    let mut args = vec![
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ETIMEDOUT",
    ];
    args.extend_from_slice(filter);
    args.extend_from_slice(&["--json", "--cgroup", cgroup.path.to_str().unwrap()]);
    let run = start_or_skip(&args, &mut children)?;
    fs::write(&go, b"").unwrap();
    let results = children.into_iter().map(workload_result).collect();
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert_nothing_left();
    Some(results)
}

fn connect_to(addr: String) -> Vec<String> {
    vec!["connect".into(), addr]
}

#[test]
fn port_cidr_and_comm_filters_pick_their_calls_only() {
    if !need_root() {
        return;
    }
    let a = TcpListener::bind("0.0.0.0:0").unwrap();
    let b = TcpListener::bind("0.0.0.0:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );

    let port = pa.to_string();
    let Some(r) = connect_with_filter(
        "port",
        &["--port", &port],
        &[
            ("w-port-hit", connect_to(format!("127.0.0.1:{pa}"))),
            ("w-port-miss", connect_to(format!("127.0.0.1:{pb}"))),
        ],
    ) else {
        return;
    };
    assert_eq!(r[0].failed_with("ETIMEDOUT"), 3, "port {pa}: {:?}", r[0]);
    assert_eq!((r[1].ok, r[1].failed()), (3, 0), "port {pb}: {:?}", r[1]);

    let r = connect_with_filter(
        "cidr",
        &["--cidr", "127.0.0.2/32"],
        &[
            ("w-cidr-hit", connect_to(format!("127.0.0.2:{pa}"))),
            ("w-cidr-miss", connect_to(format!("127.0.0.1:{pa}"))),
        ],
    )
    .expect("ran above");
    assert_eq!(r[0].failed_with("ETIMEDOUT"), 3, "127.0.0.2: {:?}", r[0]);
    assert_eq!((r[1].ok, r[1].failed()), (3, 0), "127.0.0.1: {:?}", r[1]);

    let r = connect_with_filter(
        "comm",
        &["--comm", "w-comm-hit"],
        &[
            ("w-comm-hit", connect_to(format!("127.0.0.1:{pa}"))),
            ("w-comm-miss", connect_to(format!("127.0.0.1:{pa}"))),
        ],
    )
    .expect("ran above");
    assert_eq!(r[0].failed_with("ETIMEDOUT"), 3, "w-comm-hit: {:?}", r[0]);
    assert_eq!((r[1].ok, r[1].failed()), (3, 0), "w-comm-miss: {:?}", r[1]);
}

#[test]
fn many_rules_on_many_targets_at_once_stay_apart() {
    use chaos::{
        fault::{FilterSpec, Syscall, SyscallFault},
        loader::Injector,
    };
    use chaos_common::Schedule;

    if !need_root() {
        return;
    }
    let a = TestCgroup::new("many-a");
    let b = TestCgroup::new("many-b");
    let target = |c: &TestCgroup| chaos::target::CgroupTarget::from_path(&c.path).unwrap();
    let fault = |syscalls: &str, errno: &str| SyscallFault {
        syscalls: Syscall::parse_list(syscalls).unwrap(),
        errno: errno.parse().unwrap(),
        filter: FilterSpec::default(),
        schedule: Schedule::ALWAYS,
        dry_run: false,
        deadline: None,
        mechanism: None,
    };
    // A: socket fails with EMFILE. B: bind with EADDRINUSE, getsockopt with ENOPROTOOPT.
    let mut rules = fault("socket", "EMFILE").rules(&target(&a)).unwrap();
    rules.extend(fault("bind", "EADDRINUSE").rules(&target(&b)).unwrap());
    rules.extend(
        fault("getsockopt", "ENOPROTOOPT")
            .rules(&target(&b))
            .unwrap(),
    );
    let injector = Injector::start(&rules).unwrap();

    let run = |c: &TestCgroup, op: &[&str]| {
        let mut args = vec!["--count", "2"];
        args.extend_from_slice(op);
        workload_result(c.spawn(&mut workload(&args)))
    };
    let a_socket = run(&a, &["socket"]);
    let b_socket = run(&b, &["socket"]);
    let b_bind = run(&b, &["bind", "127.0.0.1:0"]);
    let outside = workload_result(
        workload(&["--count", "2", "bind", "127.0.0.1:0"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(a_socket.failed_with("EMFILE"), 2, "A socket: {a_socket:?}");
    assert_eq!(
        (b_socket.ok, b_socket.failed()),
        (2, 0),
        "B socket: {b_socket:?}"
    );
    assert_eq!(b_bind.failed_with("EADDRINUSE"), 2, "B bind: {b_bind:?}");
    assert_eq!(
        (outside.ok, outside.failed()),
        (2, 0),
        "outside: {outside:?}"
    );
    let counters: Vec<(u64, u64)> = injector
        .counters()
        .unwrap()
        .iter()
        .map(|c| (c.matched, c.injected))
        .collect();
    assert_eq!(counters, [(2, 2), (2, 2), (0, 0)]);
    drop(injector);
    assert_nothing_left();
}

#[test]
fn the_kernel_stops_injecting_at_the_deadline_even_when_chaos_is_frozen() {
    use nix::sys::signal::{Signal, kill};
    use std::time::{Duration, Instant};

    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("deadline");
    let Some(run) = start_or_skip(
        &[
            "inject",
            "syscall",
            "--syscall",
            "socket",
            "--errno",
            "EMFILE",
            "--duration",
            "3s",
            "--json",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
        ],
        &mut [],
    ) else {
        return;
    };
    // The deadline counts from when the programs are in place, which is when chaos says it
    // injects (loading them can take seconds under emulation).
    let started = Instant::now();
    let socket = || workload_result(cgroup.spawn(&mut workload(&["--count", "2", "socket"])));
    let before = socket();
    assert_eq!(
        before.failed_with("EMFILE"),
        2,
        "before the deadline: {before:?}"
    );
    // Frozen, chaos cannot remove anything: only the rule's own deadline can end the fault.
    kill(run.pid(), Signal::SIGSTOP).unwrap();
    while started.elapsed() < Duration::from_millis(3500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = socket();
    let attached = leftover_chaos_objects();
    kill(run.pid(), Signal::SIGCONT).unwrap();
    assert_eq!(
        (after.ok, after.failed()),
        (2, 0),
        "after the deadline: {after:?}"
    );
    assert!(
        attached.iter().any(|o| o.contains("chaos_sock_crea")),
        // The kernel keeps 15 bytes of a program name.
        "the program was still attached while chaos was frozen: {attached:?}"
    );
    let outcome = run.finish();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    // The calls after the deadline still match (the program runs while attached), but the
    // rule no longer acts on them.
    assert_eq!(outcome.counts(0), (4, 2), "report: {}", outcome.stdout);
    assert_nothing_left();
}
