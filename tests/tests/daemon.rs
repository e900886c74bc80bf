//! The daemon over its real socket: faults created, counted, listed, scraped and removed; an
//! unauthorized peer refused; a SIGKILLed daemon leaves nothing behind. Host tier (cgroup sock
//! programs, which the host and both VM kernels load).
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use chaos::daemon::{api::FaultStatus, client::DaemonClient};
use chaos_tests::*;
use serde_json::Value;

/// A `chaos daemon` child with its socket under the scratch dir; killed on drop.
struct DaemonRun {
    child: Child,
    socket: PathBuf,
    metrics: Option<String>,
}

impl DaemonRun {
    fn start(name: &str, metrics: bool, extra: &[&str]) -> DaemonRun {
        let socket = scratch(&format!("{name}.sock"));
        let mut cmd = Command::new(chaos_bin());
        cmd.args(["daemon", "--socket", socket.to_str().unwrap()]);
        // A port free now (the kernel's pick), for the daemon to bind.
        let metrics = metrics.then(|| {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        });
        if let Some(addr) = &metrics {
            cmd.args(["--metrics", addr]);
        }
        let child = cmd.args(extra).spawn().expect("starting chaos daemon");
        let mut run = DaemonRun {
            child,
            socket,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run.client().answers() {
            assert!(Instant::now() < deadline, "the daemon never answered");
            if let Some(status) = run.child.try_wait().unwrap() {
                panic!("the daemon exited: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        run
    }

    fn client(&self) -> DaemonClient {
        DaemonClient::new(Some(&self.socket))
    }

    /// `chaos ARGS` talking to this daemon.
    fn chaos(&self, args: &[&str]) -> Output {
        Command::new(chaos_bin())
            .args(args)
            .env("CHAOS_SOCKET", &self.socket)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .expect("running chaos")
    }

    /// The metrics as `series{labels} -> value`.
    fn scrape(&self) -> BTreeMap<String, f64> {
        let mut stream = TcpStream::connect(self.metrics.as_ref().unwrap()).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: chaos\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }
}

impl Drop for DaemonRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn socket_fault(cgroup: &TestCgroup, errno: &str) -> Vec<String> {
    [
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        errno,
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
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
    let first = client.create(socket_fault(&a, "EMFILE")).unwrap();
    let mut inject = vec!["inject".to_owned()];
    inject.extend(socket_fault(&b, "ENFILE"));
    inject.push("--json".into());
    let out = daemon.chaos(&inject.iter().map(String::as_str).collect::<Vec<_>>());
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
        client.create(socket_fault(&a, errno)).unwrap();
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
    args.extend(["--duration".into(), "8s".into()]);
    let fault = client.create(args).unwrap();
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
        .create(socket_fault(&cgroup, "ENOTANERRNO"))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("400") && msg.contains("ENOTANERRNO"), "{msg}");
    client.create(socket_fault(&cgroup, "EMFILE")).unwrap();
    let err = client.create(socket_fault(&cgroup, "EIO")).unwrap_err();
    assert!(format!("{err:#}").contains("--max-faults"), "{err:#}");
    assert_eq!(client.list().unwrap().len(), 1);
}

#[test]
fn unauthorized_peer_is_refused() {
    if !need_root() {
        return;
    }
    // In the 6.12 guest, uid 65534 gets EACCES from connect() on the 0666 socket before the
    // daemon sees it (not yet understood; 6.1's guest and the host behave): run it where the
    // daemon's own check is what is tested.
    if host_only("a uid 65534 client that can reach the socket (EACCES in the 6.12 guest)") {
        return;
    }
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
        .create(socket_fault(&cgroup, "EMFILE"))
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
        .create(socket_fault(&cgroup, "EMFILE"))
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
        .create(socket_fault(&cgroup, "EMFILE"))
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
