//! The daemon over its real socket: faults of each engine (syscall, latency, net-drop) created,
//! counted, listed, scraped and removed; a fault ending at its deadline while the daemon is
//! frozen; experiments started, listed and aborted through the API and by `chaos run`; an
//! unauthorized peer refused; a SIGKILLed daemon leaves nothing behind. Host tier (cgroup
//! sock programs, the sys_enter raw tracepoint and cgroup_skb, which the host and both VM kernels load).
use std::{
    io::Read as _,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos::daemon::{
    api::{ExperimentState, ExperimentStatus, FaultStatus, StartExperiment},
    client::DaemonClient,
};
use chaos_tests::{daemon::DaemonRun, *};
use serde_json::{Value, json};

/// A fault spec (what `POST /faults` takes): fail socket() in `cgroup` with `errno`.
fn socket_fault(cgroup: &TestCgroup, errno: &str) -> Value {
    json!({
        "kind": "syscall",
        "syscalls": ["socket"],
        "errno": errno,
        "target": {"cgroup": cgroup.path},
    })
}

fn sockets_in(cgroup: &TestCgroup, n: u32) -> WorkloadResult {
    workload_result(cgroup.spawn(&mut workload(&["--count", &n.to_string(), "socket"])))
}

fn sockets_outside(n: u32) -> WorkloadResult {
    workload_result(
        workload(&["--count", &n.to_string(), "socket"])
            .spawn()
            .unwrap(),
    )
}

fn by_id(faults: &[FaultStatus], id: u64) -> &FaultStatus {
    faults.iter().find(|f| f.id == id).expect("fault listed")
}

#[test]
fn api_round_trip_counts_metrics_and_stop() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("round-trip", true, &[]);
    let client = daemon.client();
    let a = TestCgroup::new("daemon-a");
    let b = TestCgroup::new("daemon-b");

    // One fault through the API, one through `chaos inject`, which finds the daemon.
    let first = client.create_json(&socket_fault(&a, "EMFILE")).unwrap();
    let out = daemon.chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "ENFILE",
        "--cgroup",
        b.path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let second: FaultStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(first.id, second.id);

    let in_a = sockets_in(&a, 7);
    let in_b = sockets_in(&b, 3);
    let outside = sockets_outside(5);
    assert_eq!((in_a.ok, in_a.failed_with("EMFILE")), (0, 7), "{in_a:?}");
    assert_eq!((in_b.ok, in_b.failed_with("ENFILE")), (0, 3), "{in_b:?}");
    assert_eq!((outside.ok, outside.failed()), (5, 0), "{outside:?}");

    // The counters equal what the workloads experienced, in the API, status and metrics.
    let listed = client.list().unwrap();
    assert_eq!(listed.len(), 2);
    let fa = by_id(&listed, first.id);
    let fb = by_id(&listed, second.id);
    assert_eq!((fa.matched, fa.injected), (7, 7), "{fa:?}");
    assert_eq!((fb.matched, fb.injected), (3, 3), "{fb:?}");
    assert_eq!(fa.target, a.path.display().to_string());
    let out = daemon.chaos(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 2, "{status}");

    let metrics = daemon.scrape();
    for f in [fa, fb] {
        let labels = format!(
            "{{id=\"{}\",kind=\"syscall\",target=\"{}\"}}",
            f.id, f.target
        );
        assert_eq!(
            metrics[&format!("chaos_fault_matched_total{labels}")],
            f.matched as f64,
            "{metrics:?}"
        );
        assert_eq!(
            metrics[&format!("chaos_fault_injected_total{labels}")],
            f.injected as f64,
            "{metrics:?}"
        );
    }
    assert_eq!(metrics["chaos_faults_active"], 2.0);
    assert_eq!(metrics["chaos_up"], 1.0);

    // Stop one: its target is released, the other's fault stays.
    let removed = client.remove(first.id).unwrap();
    assert_eq!(removed.injected, 7);
    assert!(client.remove(first.id).is_err(), "removed twice");
    assert_eq!(sockets_in(&a, 2).ok, 2);
    assert_eq!(sockets_in(&b, 2).failed_with("ENFILE"), 2);
    assert_eq!(client.list().unwrap().len(), 1);

    // Stop all from the CLI, with a few more faults to remove.
    for errno in ["EIO", "EACCES", "EPERM", "ENOMEM"] {
        client.create_json(&socket_fault(&a, errno)).unwrap();
    }
    let active = client.list().unwrap().len();
    assert_eq!(active, 5);
    let started = Instant::now();
    let out = daemon.chaos(&["stop", "--all"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    eprintln!("MEASURED: `chaos stop --all` with {active} faults took {took:?}");
    assert!(client.list().unwrap().is_empty());
    assert_eq!(sockets_in(&a, 2).ok, 2);
    assert_eq!(sockets_in(&b, 2).ok, 2);
    assert_eq!(daemon.scrape()["chaos_faults_active"], 0.0);
    assert_nothing_left();
}

#[test]
fn fault_ends_at_its_duration() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("duration", false, &[]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("daemon-duration");
    let mut args = socket_fault(&cgroup, "EMFILE");
    // Long enough for the fault to be seen working under the VM tier's emulation, where
    // loading alone takes seconds.
    args["duration"] = json!("8s");
    let fault = client.create_json(&args).unwrap();
    assert_eq!(sockets_in(&cgroup, 1).failed_with("EMFILE"), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.list().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "fault {} never ended", fault.id);
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sockets_in(&cgroup, 1).ok, 1);
    assert_nothing_left();
}

#[test]
fn bad_request_names_the_field_and_changes_nothing() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("bad", false, &["--max-faults", "1"]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("daemon-bad");
    let err = client
        .create_json(&socket_fault(&cgroup, "ENOTANERRNO"))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("400") && msg.contains("errno: `ENOTANERRNO` is not valid"),
        "{msg}"
    );
    // Unknown fields are refused by their JSON path, not ignored.
    let mut typo = socket_fault(&cgroup, "EMFILE");
    typo["schedule"] = json!({"probabilty": 0.5});
    let msg = format!("{:#}", client.create_json(&typo).unwrap_err());
    assert!(
        msg.contains("400") && msg.contains("schedule.probabilty: unknown field"),
        "{msg}"
    );
    // The schema clients validate against is served, and is the committed one.
    let schema = client.schema().unwrap();
    // Built in, so that the VM tier's guest (binaries only) compares with it too.
    let committed: Value =
        serde_json::from_str(include_str!("../../docs/fault-spec.schema.json")).unwrap();
    assert_eq!(schema, committed);
    client
        .create_json(&socket_fault(&cgroup, "EMFILE"))
        .unwrap();
    let err = client
        .create_json(&socket_fault(&cgroup, "EIO"))
        .unwrap_err();
    assert!(format!("{err:#}").contains("--max-faults"), "{err:#}");
    assert_eq!(client.list().unwrap().len(), 1);
}

#[test]
fn unauthorized_peer_is_refused() {
    if !need_root() {
        return;
    }
    // Runs in every tier. It was host-only for a while: in the 6.12 guest the nobody client
    // got EACCES from connect(). The daemon bound the socket at its path, then chowned and
    // chmodded it; `DaemonRun::start` saw it answer in between, this test's chmod 0666 came
    // before the daemon's chmod 0660, which undid it. The daemon now renames the socket into
    // place once its mode is final.
    let daemon = DaemonRun::start("auth", false, &[]);
    let meta = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // Open the socket file to everyone so that the daemon's own SO_PEERCRED check is what
    // refuses, not the file mode.
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // A copy of chaos that nobody may execute wherever the build tree is.
    let exe = scratch("chaos-for-nobody");
    std::fs::copy(chaos_bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["stop", "--all", "--socket", daemon.socket.to_str().unwrap()]);
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    let cgroup = TestCgroup::new("daemon-auth");
    daemon
        .client()
        .create_json(&socket_fault(&cgroup, "EMFILE"))
        .unwrap();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("403") && stderr.contains("uid 65534 may not use this chaos daemon"),
        "{stderr}"
    );
    assert_eq!(
        daemon.client().list().unwrap().len(),
        1,
        "nobody removed it"
    );
}

#[test]
fn sigkilled_daemon_leaves_nothing() {
    if !need_root() {
        return;
    }
    let mut daemon = DaemonRun::start("sigkill", false, &[]);
    let cgroup = TestCgroup::new("daemon-sigkill");
    daemon
        .client()
        .create_json(&socket_fault(&cgroup, "EMFILE"))
        .unwrap();
    assert_eq!(sockets_in(&cgroup, 3).failed_with("EMFILE"), 3);
    daemon.child.kill().unwrap(); // SIGKILL
    daemon.child.wait().unwrap();
    let killed = Instant::now();
    loop {
        if sockets_in(&cgroup, 1).ok == 1 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "socket() still failing 1s after the daemon was killed"
        );
    }
    eprintln!(
        "MEASURED: the target's socket() succeeded {:?} after SIGKILL",
        killed.elapsed()
    );
    assert_nothing_left();
}

#[test]
fn sigterm_removes_everything_then_exits() {
    if !need_root() {
        return;
    }
    let mut daemon = DaemonRun::start("sigterm", false, &[]);
    let cgroup = TestCgroup::new("daemon-sigterm");
    daemon
        .client()
        .create_json(&socket_fault(&cgroup, "EMFILE"))
        .unwrap();
    assert_eq!(sockets_in(&cgroup, 1).failed_with("EMFILE"), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!daemon.socket.exists(), "socket left behind");
    assert_eq!(sockets_in(&cgroup, 1).ok, 1);
    assert_nothing_left();
}

/// Continues a process it froze, also when an assertion fails first.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let frozen = Frozen(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while frozen.state() != Some('T') {
            assert!(Instant::now() < deadline, "the daemon never stopped");
            thread::sleep(Duration::from_millis(5));
        }
        frozen
    }

    /// The state letter in /proc/PID/stat (T: stopped).
    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).ok()?;
        stat.rsplit_once(") ")?.1.chars().next()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// The number after `name=` in a log line.
fn logged(line: &str, name: &str) -> u64 {
    let at = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name}= in {line}"));
    line[at + name.len() + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {name}= in {line}"))
}

#[test]
fn deadline_ends_the_fault_while_the_daemon_is_frozen() {
    if !need_root() {
        return;
    }
    const DURATION: Duration = Duration::from_secs(3);
    let daemon = DaemonRun::start("frozen", false, &[]);
    let cgroup = TestCgroup::new("daemon-frozen");
    let mut args = socket_fault(&cgroup, "EMFILE");
    args["duration"] = json!("3s");
    let fault = daemon.client().create_json(&args).unwrap();
    // The kernel's deadline counts from the attach, a little before the answer.
    let created = Instant::now();
    let frozen = Frozen::freeze(daemon.child.id());

    // Frozen: the daemon cannot remove anything, yet the fault works, then ends on time.
    let during = sockets_in(&cgroup, 5);
    assert_eq!(
        (during.ok, during.failed_with("EMFILE")),
        (0, 5),
        "{during:?}"
    );
    assert_eq!(
        sockets_outside(3).ok,
        3,
        "a process outside the target failed"
    );
    let mut failed = during.failed();
    let lifted = loop {
        let call = sockets_in(&cgroup, 1);
        if call.ok == 1 {
            break created.elapsed();
        }
        assert_eq!(call.failed_with("EMFILE"), 1, "{call:?}");
        failed += 1;
        assert!(
            created.elapsed() < DURATION + Duration::from_secs(2),
            "socket() still failing {:?} after a 3s fault was created",
            created.elapsed()
        );
        thread::sleep(Duration::from_millis(20));
    };
    assert!(
        lifted >= DURATION - Duration::from_millis(500),
        "the fault ended after {lifted:?}, before its 3s"
    );
    assert_eq!(frozen.state(), Some('T'), "the daemon ran meanwhile");
    let after = sockets_in(&cgroup, 5);
    assert_eq!(after.ok, 5, "{after:?}");
    eprintln!("MEASURED: with the daemon frozen, a 3s fault ended {lifted:?} after it was created");

    // Continued, the daemon removes the fault at once; its last counters are the calls that
    // failed, none injected past the deadline.
    drop(frozen);
    let client = daemon.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.list().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not remove the fault"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Logged after it is out of the list, and read from the daemon's stderr by a thread.
    let id = format!(" id={} ", fault.id);
    let removed = daemon.log_line(|l| l.contains("fault removed") && l.contains(&id));
    let removed = removed.as_str();
    assert_eq!(logged(removed, "injected"), failed, "{removed}");
    // Matching calls past the deadline may be counted (the rule checks its deadline only
    // where it would act): at most the 6 that succeeded.
    let matched = logged(removed, "matched");
    assert!(
        (failed..=failed + 6).contains(&matched),
        "matched {matched} for {failed} failed and 6 succeeded: {removed}"
    );
    assert_nothing_left();
}

#[test]
fn net_drop_through_the_daemon_counts_what_the_target_lost() {
    use chaos_tests::netns::{UdpCounter, VethPair, net_client, net_result};
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("dmn") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let inside_counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let outside_counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let cgroup = TestCgroup::new("daemon-net");
    let daemon = DaemonRun::start("net", true, &[]);
    let client = daemon.client();
    let cidr = format!("{}/32", pair.addr_b);
    let spec = json!({
        "kind": "net-drop",
        "filter": {"protocol": "udp", "cidr": cidr},
        "target": {"cgroup": cgroup.path},
    });
    let fault = client.create_json(&spec).unwrap();
    assert_eq!(fault.kind, "net-drop");

    const N: u64 = 200;
    let n = N.to_string();
    let inside = net_result(cgroup.spawn(&mut net_client(
        Some(&pair.a),
        &["udp-send", &inside_counter.addr.to_string(), &n],
    )));
    let outside = net_result(
        net_client(
            Some(&pair.a),
            &["udp-send", &outside_counter.addr.to_string(), &n],
        )
        .spawn()
        .unwrap(),
    );
    let (received, _) = inside_counter.stop();
    let (outside_received, _) = outside_counter.stop();
    assert_eq!(inside["errors"], 0, "sendto succeeds, the datagram is lost");
    assert_eq!(outside["errors"], 0, "{outside}");
    assert_eq!(received, 0, "the target's datagrams arrived");
    assert_eq!(
        outside_received, N,
        "a process outside the target lost datagrams"
    );

    let listed = client.list().unwrap();
    let f = by_id(&listed, fault.id);
    assert_eq!((f.matched, f.injected), (N, N), "{f:?}");
    assert_eq!(f.counters.len(), 1, "{f:?}");
    assert_eq!(f.counters[0].rule, "net-drop");
    let labels = format!(
        "{{id=\"{}\",kind=\"net-drop\",target=\"{}\"}}",
        f.id, f.target
    );
    let metrics = daemon.scrape();
    assert_eq!(
        metrics[&format!("chaos_fault_injected_total{labels}")],
        N as f64,
        "{metrics:?}"
    );
    assert_eq!(
        metrics[&format!("chaos_fault_matched_total{labels}")],
        N as f64
    );

    // Removed: the target's datagrams arrive again.
    assert_eq!(client.remove(fault.id).unwrap().injected, N);
    let again = UdpCounter::start(Some(&pair.b), pair.addr_b);
    net_result(cgroup.spawn(&mut net_client(
        Some(&pair.a),
        &["udp-send", &again.addr.to_string(), "20"],
    )));
    assert_eq!(again.stop().0, 20);
    drop(pair);
    assert_nothing_left();
}

/// The last `chaos-proc latency` result line in `output`.
fn latency_result(output: &[u8]) -> Value {
    let text = String::from_utf8_lossy(output);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"slow_p50_ns\""))
        .unwrap_or_else(|| panic!("no latency result in {text:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn latency_pause_through_the_daemon_continues_the_target() {
    if !need_root() {
        return;
    }
    const DELAY_NS: u64 = 40_000_000;
    const COUNT: u64 = 10;
    let proc_bin = chaos_bin().with_file_name("chaos-proc");
    let daemon = DaemonRun::start("latency", true, &[]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("daemon-latency");
    let args = [
        "latency",
        "--syscall",
        "getppid",
        "--delay",
        "40ms",
        "--mode",
        "pause",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ];
    // Through `chaos inject`, which hands every fault kind to a running daemon.
    let mut inject = vec!["inject"];
    inject.extend(args);
    inject.push("--json");
    let out = daemon.chaos(&inject);
    assert!(out.status.success(), "{out:?}");
    let fault: FaultStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fault.kind, "latency");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs latency fault"),
        "{out:?}"
    );

    // Pause mode stops the whole process: the daemon's resumer must continue it each time.
    let inside = cgroup.spawn(
        Command::new(&proc_bin)
            .args(["latency", "--count", &COUNT.to_string()])
            .stdout(Stdio::piped()),
    );
    let inside = inside.wait_with_output().unwrap();
    assert!(inside.status.success(), "{inside:?}");
    let inside = latency_result(&inside.stdout);
    let outside = Command::new(&proc_bin)
        .args(["latency", "--count", &COUNT.to_string()])
        .output()
        .unwrap();
    let outside = latency_result(&outside.stdout);
    eprintln!("inside {inside}\noutside {outside}");
    let min = inside["slow_min_ns"].as_u64().unwrap();
    assert!(
        min >= DELAY_NS * 95 / 100,
        "fastest delayed call {min} ns for {DELAY_NS} ns"
    );
    let outside_p50 = outside["slow_p50_ns"].as_u64().unwrap();
    assert!(outside_p50 < DELAY_NS / 10, "outside p50 {outside_p50} ns");

    let f = client.remove(fault.id).unwrap();
    assert_eq!((f.matched, f.injected), (COUNT, COUNT), "{f:?}");
    assert_eq!(f.counters[0].rule, "getppid", "{f:?}");
    assert_nothing_left();
}

/// An experiment whose one action fails socket() in `$EXP_CGROUP` for `duration`, then waits
/// `pause` seconds.
fn socket_experiment(duration: &str, pause: f64) -> String {
    format!(
        "title: sockets fail in the daemon
configuration:
  cgroup: {{type: env, key: EXP_CGROUP}}
method:
  - type: action
    name: no-sockets
    provider:
      type: chaos
      func: syscall
      arguments: {{syscall: socket, errno: EMFILE, duration: {duration}}}
      target: {{cgroup: \"${{cgroup}}\"}}
    pauses: {{after: {pause}}}
"
    )
}

/// Waits until the experiment has a fault in `GET /faults`.
fn experiment_fault(client: &DaemonClient, experiment: u64) -> FaultStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(f) = client
            .list()
            .unwrap()
            .into_iter()
            .find(|f| f.experiment == Some(experiment))
        {
            return f;
        }
        let status = client.experiment(experiment).unwrap();
        assert!(
            Instant::now() < deadline && status.state != ExperimentState::Finished,
            "the experiment's fault never showed: {status:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_finished(client: &DaemonClient, id: u64) -> ExperimentStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.experiment(id).unwrap();
        if status.state == ExperimentState::Finished {
            return status;
        }
        assert!(Instant::now() < deadline, "never finished: {status:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn experiment_through_the_api_is_listed_and_aborted() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("experiment", false, &[]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("daemon-experiment");
    let start = || {
        client
            .start_experiment(&StartExperiment {
                text: socket_experiment("60s", 60.0),
                name: Some("sockets.yaml".into()),
                env: [("EXP_CGROUP".to_owned(), cgroup.path.display().to_string())].into(),
                ..StartExperiment::default()
            })
            .unwrap()
    };

    // Started: its fault is among the daemon's, counted, and only hits the target.
    let exp = start();
    assert_eq!(exp.title, "sockets fail in the daemon");
    let fault = experiment_fault(&client, exp.id);
    assert_eq!(fault.kind, "syscall");
    assert_eq!(fault.target, cgroup.path.display().to_string());
    let inside = sockets_in(&cgroup, 4);
    assert_eq!(
        (inside.ok, inside.failed_with("EMFILE")),
        (0, 4),
        "{inside:?}"
    );
    assert_eq!(sockets_outside(3).ok, 3);
    let listed = client.list().unwrap();
    let f = by_id(&listed, fault.id);
    assert_eq!((f.matched, f.injected), (4, 4), "{f:?}");
    let experiments = client.experiments().unwrap();
    let listed_exp = experiments.iter().find(|e| e.id == exp.id).unwrap();
    assert_eq!(listed_exp.state, ExperimentState::Running);
    assert_eq!(listed_exp.faults, vec![fault.id]);

    // Aborted: the fault is gone when the answer comes, and the experiment ends aborted.
    let aborted = client.abort_experiment(exp.id).unwrap();
    assert_ne!(aborted.state, ExperimentState::Running);
    assert!(client.list().unwrap().is_empty());
    assert_eq!(sockets_in(&cgroup, 3).ok, 3);
    let ended = wait_finished(&client, exp.id);
    assert_eq!(ended.status.as_deref(), Some("aborted"), "{ended:?}");
    assert_eq!(ended.exit_code, Some(130));
    let journal = ended.journal.expect("a journal");
    assert_eq!(journal["status"], "aborted");
    assert_eq!(journal["faults"][0]["activity"], "no-sockets");
    assert!(
        ended
            .log
            .iter()
            .any(|l| l.contains("fault no-sockets started")),
        "{:?}",
        ended.log
    );

    // `chaos stop --all` removes an experiment's faults and aborts it.
    let exp = start();
    experiment_fault(&client, exp.id);
    assert_eq!(sockets_in(&cgroup, 1).failed_with("EMFILE"), 1);
    let out = daemon.chaos(&["stop", "--all"]);
    assert!(out.status.success(), "{out:?}");
    assert!(client.list().unwrap().is_empty());
    assert_eq!(sockets_in(&cgroup, 2).ok, 2);
    assert_eq!(
        wait_finished(&client, exp.id).status.as_deref(),
        Some("aborted")
    );

    // An invalid experiment is refused with the validator's message; nothing runs.
    let err = client
        .start_experiment(&StartExperiment {
            text: "title: t\nmethod: 3\n".into(),
            ..StartExperiment::default()
        })
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("400") && msg.contains("method"), "{msg}");
    assert_nothing_left();
}

#[test]
fn chaos_run_uses_the_daemon_and_writes_the_journal() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("run", false, &[]);
    let cgroup = TestCgroup::new("daemon-run");
    let file = scratch("daemon-run.yaml");
    std::fs::write(&file, socket_experiment("2s", 3.0)).unwrap();
    let journal_path = scratch("daemon-run-journal.json");
    let mut run = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--journal"])
        .arg(&journal_path)
        .env("CHAOS_SOCKET", &daemon.socket)
        .env("EXP_CGROUP", &cgroup.path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, the daemon lists its fault, which fails the target's calls.
    let exp = loop {
        if let Some(e) = daemon.client().experiments().unwrap().pop() {
            break e;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let fault = experiment_fault(&daemon.client(), exp.id);
    assert_eq!(sockets_in(&cgroup, 3).failed_with("EMFILE"), 3);
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    run.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("runs experiment {}", exp.id))
            && stderr.contains("fault no-sockets started")
            && stderr.contains("experiment completed"),
        "{stderr}"
    );
    let journal: Value = serde_json::from_slice(&std::fs::read(&journal_path).unwrap()).unwrap();
    assert_eq!(journal["status"], "completed");
    let samples = journal["faults"][0]["counters"].as_array().unwrap();
    let last = &samples.last().unwrap()["counters"][0];
    assert_eq!(
        (last["matched"].as_u64(), last["injected"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        daemon
            .client()
            .list()
            .unwrap()
            .iter()
            .all(|f| f.id != fault.id)
    );
    assert_eq!(sockets_in(&cgroup, 2).ok, 2);

    // Ctrl-C on `chaos run` aborts the experiment in the daemon: its fault goes at once.
    std::fs::write(&file, socket_experiment("60s", 60.0)).unwrap();
    let mut run = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--journal"])
        .arg(&journal_path)
        .env("CHAOS_SOCKET", &daemon.socket)
        .env("EXP_CGROUP", &cgroup.path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = loop {
        let all = daemon.client().experiments().unwrap();
        if let Some(e) = all.into_iter().find(|e| e.id != exp.id) {
            break e;
        }
        thread::sleep(Duration::from_millis(20));
    };
    experiment_fault(&daemon.client(), second.id);
    assert_eq!(sockets_in(&cgroup, 1).failed_with("EMFILE"), 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = run.wait().unwrap();
    let mut stderr = String::new();
    run.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("aborted"), "{stderr}");
    assert!(daemon.client().list().unwrap().is_empty());
    assert_eq!(sockets_in(&cgroup, 2).ok, 2);
    let journal: Value = serde_json::from_slice(&std::fs::read(&journal_path).unwrap()).unwrap();
    assert_eq!(journal["status"], "aborted");
    assert_nothing_left();
}

#[test]
fn fault_ends_when_its_target_cgroup_is_removed() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("gone", false, &[]);
    let client = daemon.client();
    let cgroup = TestCgroup::new("daemon-gone");
    let mut spec = socket_fault(&cgroup, "EMFILE");
    spec["duration"] = "10m".into();
    let fault = client.create_json(&spec).unwrap();
    assert_eq!(sockets_in(&cgroup, 3).failed_with("EMFILE"), 3);
    // The runtime removes the cgroup once its processes exited.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(&cgroup.path).is_err() {
        assert!(Instant::now() < deadline, "rmdir {}", cgroup.path.display());
        thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.list().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "fault {} outlived its target",
            fault.id
        );
        thread::sleep(Duration::from_millis(50));
    }
    let line = daemon.log_line(|l| l.contains("fault removed"));
    assert!(
        line.contains("its target cgroup was removed") && logged(&line, "injected") == 3,
        "{line}"
    );
    assert_nothing_left();
}

/// The kernel programs named `name` (as the kernel truncates names: 15 characters) that
/// are loaded now.
fn loaded_programs_named(name: &str) -> usize {
    let short = &name[..name.len().min(15)];
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some(short))
        .count()
}

#[test]
fn many_faults_share_one_load_and_go_one_by_one() {
    if !need_root() {
        return;
    }
    const FAULTS: usize = 16;
    let daemon = DaemonRun::start("many", false, &[]);
    let client = daemon.client();
    let errnos = ["EMFILE", "ENFILE"];
    let cgroups: Vec<TestCgroup> = (0..FAULTS)
        .map(|i| TestCgroup::new(&format!("daemon-many-{i}")))
        .collect();
    let started = Instant::now();
    let faults: Vec<FaultStatus> = cgroups
        .iter()
        .enumerate()
        .map(|(i, cgroup)| {
            client
                .create_json(&socket_fault(cgroup, errnos[i % 2]))
                .unwrap()
        })
        .collect();
    eprintln!(
        "MEASURED: {FAULTS} socket faults created through the daemon in {:?}",
        started.elapsed()
    );
    // One program verified and loaded for all of them, attached once per target cgroup.
    assert_eq!(loaded_programs_named("chaos_sock_create"), 1);

    // Each fault fails its own cgroup's calls with its own errno and counts exactly them.
    for (i, cgroup) in cgroups.iter().enumerate() {
        let n = 2 + i as u32 % 3;
        let seen = sockets_in(cgroup, n);
        assert_eq!(
            (seen.ok, seen.failed_with(errnos[i % 2])),
            (0, u64::from(n)),
            "{i}: {seen:?}"
        );
    }
    let outside = sockets_outside(5);
    assert_eq!((outside.ok, outside.failed()), (5, 0), "{outside:?}");
    let listed = client.list().unwrap();
    for (i, fault) in faults.iter().enumerate() {
        let f = by_id(&listed, fault.id);
        let n = 2 + i as u64 % 3;
        assert_eq!((f.matched, f.injected), (n, n), "{i}: {f:?}");
    }

    // Removing one releases its cgroup only; the others keep failing, counting on.
    client.remove(faults[0].id).unwrap();
    assert_eq!(sockets_in(&cgroups[0], 2).ok, 2);
    for (i, cgroup) in cgroups.iter().enumerate().skip(1) {
        assert_eq!(sockets_in(cgroup, 1).failed_with(errnos[i % 2]), 1, "{i}");
    }
    // A new fault reuses the freed slot with fresh counters.
    let again = client
        .create_json(&socket_fault(&cgroups[0], "EACCES"))
        .unwrap();
    assert_eq!(sockets_in(&cgroups[0], 3).failed_with("EACCES"), 3);
    let status = by_id(&client.list().unwrap(), again.id).clone();
    assert_eq!((status.matched, status.injected), (3, 3), "{status:?}");
    let last = by_id(&client.list().unwrap(), faults[FAULTS - 1].id).clone();
    let n = 2 + (FAULTS as u64 - 1) % 3 + 1;
    assert_eq!((last.matched, last.injected), (n, n), "{last:?}");

    // One by one until none: the last removal leaves nothing loaded.
    let remaining: Vec<u64> = client.list().unwrap().iter().map(|f| f.id).collect();
    for id in remaining {
        assert_eq!(loaded_programs_named("chaos_sock_create"), 1);
        client.remove(id).unwrap();
    }
    for cgroup in &cgroups {
        assert_eq!(sockets_in(cgroup, 1).ok, 1);
    }
    assert_nothing_left();
}

/// The links of the loaded program named `name` (as the kernel truncates names).
fn links_of_program(name: &str) -> usize {
    let short = &name[..name.len().min(15)];
    let ids: Vec<u32> = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str() == Some(short))
        .map(|p| p.id())
        .collect();
    aya::programs::loaded_links()
        .flatten()
        .filter(|l| ids.contains(&l.program_id()))
        .count()
}

/// A socket() fault spec on `cgroup` with `extra` fields merged in.
fn socket_fault_with(cgroup: &TestCgroup, errno: &str, extra: Value) -> Value {
    let mut spec = socket_fault(cgroup, errno);
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

fn counts(client: &DaemonClient, id: u64) -> (u64, u64) {
    let f = by_id(&client.list().unwrap(), id).clone();
    (f.matched, f.injected)
}

/// Two faults of one daemon on a cgroup and on a cgroup below it share one program; linked at
/// both, it would run twice for a task in the inner cgroup, and each fault would count (and
/// its schedule would see) every call twice.
#[test]
fn faults_on_nested_cgroups_count_each_call_once() {
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("nested", false, &[]);
    let client = daemon.client();
    let outer = TestCgroup::new("nested");
    let outer_name = outer.path.file_name().unwrap().to_str().unwrap().to_owned();
    let inner = TestCgroup::named(&format!("{outer_name}/inner"));
    // Its path starts with the outer one's as a string, but it is not below it.
    let sibling = TestCgroup::named(&format!("{outer_name}2"));

    // Outer first: its depth is tried first, and a dry run counts every call without
    // deciding it, so the inner fault's rule sees every call too.
    let watch = json!({"dry_run": true});
    let outer_fault = client
        .create_json(&socket_fault_with(&outer, "EMFILE", watch.clone()))
        .unwrap();
    let every_2nd = json!({"schedule": {"every": 2}});
    let inner_fault = client
        .create_json(&socket_fault_with(&inner, "ENFILE", every_2nd))
        .unwrap();
    assert_eq!(
        links_of_program("chaos_sock_create"),
        1,
        "one link covers both"
    );

    let seen = sockets_in(&inner, 6);
    assert_eq!((seen.ok, seen.failed_with("ENFILE")), (3, 3), "{seen:?}");
    assert_eq!(counts(&client, outer_fault.id), (6, 6));
    assert_eq!(counts(&client, inner_fault.id), (6, 3));
    let seen = sockets_in(&outer, 4);
    assert_eq!((seen.ok, seen.failed()), (4, 0), "{seen:?}");
    assert_eq!(counts(&client, outer_fault.id), (10, 10));
    for bystander in [sockets_in(&sibling, 4), sockets_outside(4)] {
        assert_eq!((bystander.ok, bystander.failed()), (4, 0), "{bystander:?}");
    }
    assert_eq!(counts(&client, outer_fault.id), (10, 10));
    assert_eq!(counts(&client, inner_fault.id), (6, 3));

    // The outer fault goes: the inner cgroup gets a link of its own before the outer one's
    // goes, and its calls keep failing on schedule.
    client.remove(outer_fault.id).unwrap();
    assert_eq!(links_of_program("chaos_sock_create"), 1);
    let seen = sockets_in(&inner, 6);
    assert_eq!((seen.ok, seen.failed_with("ENFILE")), (3, 3), "{seen:?}");
    assert_eq!(counts(&client, inner_fault.id), (12, 6));
    assert_eq!(sockets_in(&outer, 2).ok, 2);

    // An outer fault again, after the inner one: its link replaces the inner cgroup's.
    let outer_fault = client
        .create_json(&socket_fault_with(&outer, "EMFILE", watch))
        .unwrap();
    assert_eq!(links_of_program("chaos_sock_create"), 1);
    let seen = sockets_in(&inner, 6);
    assert_eq!((seen.ok, seen.failed_with("ENFILE")), (3, 3), "{seen:?}");
    assert_eq!(counts(&client, outer_fault.id), (6, 6));
    assert_eq!(counts(&client, inner_fault.id), (18, 9));

    // The inner fault goes: the outer link stays and still counts the inner cgroup's calls.
    client.remove(inner_fault.id).unwrap();
    assert_eq!(sockets_in(&inner, 2).ok, 2);
    assert_eq!(counts(&client, outer_fault.id), (8, 8));
    client.remove(outer_fault.id).unwrap();
    assert_eq!(links_of_program("chaos_sock_create"), 0);
    drop(daemon);
    assert_nothing_left();
}

/// The same for packet faults, whose cgroup_skb programs are shared the same way: each fault
/// counts each of the inner cgroup's datagrams once.
#[test]
fn packet_faults_on_nested_cgroups_count_each_packet_once() {
    use chaos_tests::netns::{UdpCounter, VethPair, net_client, net_result};
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("nst") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let outer = TestCgroup::new("nested-net");
    let outer_name = outer.path.file_name().unwrap().to_str().unwrap().to_owned();
    let inner = TestCgroup::named(&format!("{outer_name}/inner"));
    let daemon = DaemonRun::start("nested-net", false, &[]);
    let client = daemon.client();
    let cidr = format!("{}/32", pair.addr_b);
    let drop_udp = |cgroup: &TestCgroup, dry_run: bool| {
        json!({
            "kind": "net-drop",
            "filter": {"protocol": "udp", "cidr": cidr, "direction": "egress"},
            "target": {"cgroup": cgroup.path},
            "dry_run": dry_run,
        })
    };
    let outer_fault = client.create_json(&drop_udp(&outer, true)).unwrap();
    let inner_fault = client.create_json(&drop_udp(&inner, false)).unwrap();
    assert_eq!(
        links_of_program("chaos_skb_egress"),
        1,
        "one link covers both"
    );

    const N: u64 = 50;
    let send = |cgroup: &TestCgroup| {
        let counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
        let result = net_result(cgroup.spawn(&mut net_client(
            Some(&pair.a),
            &["udp-send", &counter.addr.to_string(), &N.to_string()],
        )));
        assert_eq!(result["errors"], 0, "{result}");
        counter.stop().0
    };
    assert_eq!(send(&inner), 0, "the inner cgroup's datagrams arrived");
    assert_eq!(counts(&client, inner_fault.id), (N, N));
    assert_eq!(counts(&client, outer_fault.id), (N, N));
    assert_eq!(
        send(&outer),
        N,
        "a dry run dropped the outer cgroup's datagrams"
    );
    assert_eq!(counts(&client, outer_fault.id), (2 * N, 2 * N));

    // The outer fault goes first: the inner cgroup keeps losing its datagrams.
    client.remove(outer_fault.id).unwrap();
    assert_eq!(links_of_program("chaos_skb_egress"), 1);
    assert_eq!(send(&inner), 0);
    assert_eq!(counts(&client, inner_fault.id), (2 * N, 2 * N));
    client.remove(inner_fault.id).unwrap();
    assert_eq!(send(&inner), N);
    drop(daemon);
    drop(pair);
    assert_nothing_left();
}
