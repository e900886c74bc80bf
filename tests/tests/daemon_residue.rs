//! What a SIGKILLed daemon leaves: nothing. The daemon is started and killed again and again
//! while faults of every kind the tier runs are active against one target cgroup; after each
//! kill no chaos program, link or map is loaded and the target's calls succeed. A kill while
//! net-delay runs leaves the fq qdisc on the device (device state outlives any process): the
//! daemon's next start puts the default back, from the record it wrote under /run/chaos/.
//!
//! Host tier: 100 kills, each with syscall (socket, connect, bind), signal, latency, net-drop
//! and net-corrupt faults active. VM tier (emulated, about 20 times slower): 5 kills, each
//! with those plus a file-call fault (openat, through BPF LSM or fmod_ret) and net-delay with
//! fq, which the host kernel lacks. Before 6.6 (the 6.1 guest) tc programs attach as cls_bpf
//! filters, which no file descriptor owns: net-corrupt's survives the kill, and the daemon's
//! next start removes it (from its record) before anything is checked.
use std::{process::Command, time::Instant};

use chaos::daemon::client::DaemonClient;
use chaos_tests::{
    daemon::{DaemonRun, enter_netns},
    netns::{VethPair, net_client, net_result},
    *,
};
use serde_json::{Value, json};

/// Kills per tier: enough on the host to catch a rare window, few in the emulated VM.
fn kills() -> usize {
    if skips_forbidden() { 5 } else { 100 }
}

/// The faults of every kind this tier runs, all aimed at `cgroup`; packet faults at the
/// peer's address over `veth-a`.
fn every_kind(cgroup: &TestCgroup, pair: &VethPair, dir: &str, vm: bool) -> Vec<Value> {
    let target = json!({"cgroup": cgroup.path});
    let cidr = format!("{}/32", pair.addr_b);
    let mut faults = vec![
        json!({"kind": "syscall", "syscalls": ["socket"], "errno": "EMFILE", "target": target}),
        json!({"kind": "syscall", "syscalls": ["connect"], "errno": "ECONNREFUSED", "target": target}),
        json!({"kind": "syscall", "syscalls": ["bind"], "errno": "EADDRINUSE", "target": target}),
        // kill(self, 0) is the workload's `kill` call: a SIGKILL at it would end the workload.
        json!({"kind": "signal", "syscalls": ["kill"], "signal": "SIGKILL", "target": target}),
        json!({"kind": "latency", "syscalls": ["listen"], "delay": "20ms", "mode": "spin", "target": target}),
        json!({"kind": "net-drop", "filter": {"protocol": "udp", "cidr": cidr}, "target": target}),
        json!({"kind": "net-corrupt", "devices": ["veth-a"], "filter": {"protocol": "udp", "cidr": cidr}, "target": target}),
    ];
    if vm {
        faults.push(
            json!({"kind": "syscall", "syscalls": ["openat"], "errno": "EIO",
            "filter": {"path": dir}, "target": target}),
        );
        faults.push(
            json!({"kind": "net-delay", "devices": ["veth-a"], "delay": "50ms",
            "filter": {"protocol": "udp", "cidr": cidr}, "target": target}),
        );
    }
    faults
}

/// One call of workload `op` in `cgroup`, in namespace `ns`.
fn call_in(cgroup: &TestCgroup, ns: &str, op: &[&str]) -> WorkloadResult {
    let mut cmd = workload(op);
    enter_netns(&mut cmd, ns);
    workload_result(cgroup.spawn(&mut cmd))
}

/// `veth-a`'s root qdisc in namespace `ns`, as `tc` shows it (kind and handle).
fn root_qdisc(ns: &str) -> String {
    let out = Command::new("tc")
        .args(["-n", ns, "qdisc", "show", "dev", "veth-a", "root"])
        .output()
        .expect("tc");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether tc programs attach through TCX (6.6+), as bpf_links owned by the process.
fn has_tcx() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 6)
}

/// What a killed daemon may leave on a kernel without TCX: the tc classifier and its maps.
fn survives_without_tcx(object: &str) -> bool {
    // The maps the classifier uses (rules, counters, events) stay with it.
    object.starts_with("program chaos_tc_egress ") || object.starts_with("map CHAOS_")
}

/// chaos's objects still loaded once the kernel has freed what it frees by itself (a few
/// moments after the process ends): waits until only what [`survives_without_tcx`] is left,
/// up to 5 s.
fn settled_leftovers(tcx: bool) -> Vec<String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = leftover_chaos_objects();
        let settled = left.iter().all(|o| !tcx && survives_without_tcx(o));
        if settled || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn create_all(client: &DaemonClient, faults: &[Value]) {
    for spec in faults {
        if let Err(err) = client.create_json(spec) {
            panic!("the daemon refused {spec}: {err:#}");
        }
    }
}

#[test]
fn a_hundred_sigkills_under_every_fault_leave_nothing() {
    if !need_root() {
        return;
    }
    let vm = skips_forbidden();
    let pair = match VethPair::new("res") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let cgroup = TestCgroup::new("daemon-residue");
    // The file fault's filter is a directory: the files at or below it.
    let dir = scratch("residue-files");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    std::fs::write(&file, b"data").unwrap();
    let file = file.to_str().unwrap().to_owned();
    let faults = every_kind(&cgroup, &pair, dir.to_str().unwrap(), vm);
    let server = tcp_server_in(&pair.b, pair.addr_b);
    let peer = format!("{}:9", pair.addr_b);
    let qdisc_before = root_qdisc(&pair.a);
    let tcx = has_tcx();
    let started = Instant::now();
    let mut daemon = DaemonRun::start_in(Some(&pair.a), "residue", false, &[]);
    for round in 0..kills() {
        create_all(&daemon.client(), &faults);
        assert_eq!(daemon.client().list().unwrap().len(), faults.len());
        // The faults are live: the target's socket() fails.
        assert_eq!(
            call_in(&cgroup, &pair.a, &["socket"]).failed_with("EMFILE"),
            1,
            "round {round}: socket() not failed while the faults ran"
        );
        if vm {
            assert!(root_qdisc(&pair.a).starts_with("qdisc fq "));
        }
        daemon.kill();
        // Everything went with the process, but for what is not owned by a file descriptor:
        // before TCX (6.6) net-corrupt's tc filter, which holds its program and maps.
        let leftovers = settled_leftovers(tcx);
        assert!(
            leftovers.iter().all(|o| survives_without_tcx(o) && !tcx),
            "round {round}: left by the kill: {leftovers:?}"
        );
        // The next start (as a supervisor would restart it) removes what the kill left.
        daemon = DaemonRun::start_in(Some(&pair.a), "residue", false, &[]);
        if vm || !leftovers.is_empty() {
            let line = daemon.log_line(|l| l.contains("left by a killed chaos restored"));
            assert!(line.contains("veth-a"), "{line}");
        }
        assert_nothing_left();
        if vm {
            assert_eq!(
                root_qdisc(&pair.a),
                qdisc_before,
                "round {round}: fq not removed"
            );
        }
        // Every faulted call of the target succeeds again.
        let calls: Vec<Vec<&str>> = vec![
            vec!["socket"],
            vec!["connect", &server],
            vec!["bind", "0.0.0.0:0"],
            vec!["kill"],
            vec!["listen"],
            vec!["sendto", &peer],
        ];
        for op in &calls {
            let result = call_in(&cgroup, &pair.a, op);
            assert_eq!(
                result.ok, 1,
                "round {round}: {op:?} after the kill: {result:?}"
            );
        }
        if vm {
            let result = workload_result(cgroup.spawn(&mut workload(&["openat", &file])));
            assert_eq!(
                result.ok, 1,
                "round {round}: openat after the kill: {result:?}"
            );
        }
    }
    eprintln!(
        "MEASURED: {} SIGKILLs of the daemon with {} faults active each, nothing left after \
         each (TCX: {tcx}), in {:?}",
        kills(),
        faults.len(),
        started.elapsed()
    );
    drop(daemon);
    drop(pair);
    assert_nothing_left();
}

/// The round-trip time of 20 UDP pings from `cgroup` in `pair.a` to an echo in `pair.b`, in
/// milliseconds (the median).
fn ping_ms(cgroup: &TestCgroup, pair: &VethPair, echo: &str) -> f64 {
    let out = net_result(cgroup.spawn(&mut net_client(Some(&pair.a), &["udp-ping", echo, "20"])));
    assert_eq!(out["lost"], 0, "pings lost: {out}");
    let mut rtts: Vec<f64> = out["rtts_us"]
        .as_array()
        .expect("rtts")
        .iter()
        .map(|v| v.as_f64().unwrap() / 1000.0)
        .collect();
    rtts.sort_by(f64::total_cmp);
    rtts[rtts.len() / 2]
}

/// A TCP server in namespace `ns` at `addr` that accepts and closes, on a thread of its own;
/// its address.
fn tcp_server_in(ns: &str, addr: std::net::IpAddr) -> String {
    in_netns(ns, move |tx| {
        let listener = std::net::TcpListener::bind((addr, 0)).expect("bind");
        tx.send(listener.local_addr().unwrap().to_string()).unwrap();
        for conn in listener.incoming() {
            drop(conn);
        }
    })
}

/// Runs `serve` on a thread of its own in namespace `ns`; returns what it sends first.
fn in_netns(
    ns: &str,
    serve: impl FnOnce(std::sync::mpsc::Sender<String>) + Send + 'static,
) -> String {
    let path = std::path::Path::new("/run/netns").join(ns);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).expect("netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        serve(tx);
    });
    rx.recv().expect("server address")
}

/// A UDP echo server in namespace `ns` at `addr`, on a thread of its own; its address.
fn udp_echo_in(ns: &str, addr: std::net::IpAddr) -> String {
    in_netns(ns, move |tx| {
        let socket = std::net::UdpSocket::bind((addr, 0)).expect("bind");
        tx.send(socket.local_addr().unwrap().to_string()).unwrap();
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    })
}

#[test]
fn fq_left_by_a_killed_daemon_is_restored_on_its_next_start() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("fqr") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let before = root_qdisc(&pair.a);
    let cgroup = TestCgroup::new("daemon-fq-restore");
    let audit = scratch("fq-restore-audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let audit_arg = ["--audit-log", audit.to_str().unwrap()];
    let mut daemon = DaemonRun::start_in(Some(&pair.a), "fq-restore", false, &audit_arg);
    let spec = json!({"kind": "net-delay", "devices": ["veth-a"], "delay": "100ms",
        "target": {"cgroup": cgroup.path}});
    match daemon.client().create_json(&spec) {
        Ok(_) => {}
        Err(err) => {
            let msg = format!("{err:#}");
            assert!(msg.contains("fq"), "refused without naming fq: {msg}");
            return skip(&format!(
                "no fq qdisc on this kernel; the daemon refused: {msg}"
            ));
        }
    }
    let installed = root_qdisc(&pair.a);
    assert!(
        installed.starts_with("qdisc fq "),
        "fq not installed: {installed}"
    );
    let records: Vec<_> = std::fs::read_dir("/run/chaos/qdiscs")
        .expect("/run/chaos/qdiscs")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .filter(|r| r.contains("\"veth-a\"") && r.contains(&daemon.child.id().to_string()))
        .collect();
    assert_eq!(records.len(), 1, "no record of the change: {records:?}");

    // The fault at work: pings from the target to an echo in the other namespace are late.
    let echo = udp_echo_in(&pair.b, pair.addr_b);
    let rtt = ping_ms(&cgroup, &pair, &echo);
    assert!(rtt >= 95.0, "median rtt {rtt} ms under a 100ms delay");

    daemon.kill();
    assert_nothing_left();
    // Killed: its programs are gone, fq is not (device state outlives the process).
    assert_eq!(root_qdisc(&pair.a), installed, "fq gone without a restore");

    let again = DaemonRun::start_in(Some(&pair.a), "fq-restore", false, &audit_arg);
    let line = again.log_line(|l| l.contains("qdisc left by a killed chaos restored"));
    assert!(line.contains("veth-a"), "{line}");
    assert_eq!(
        root_qdisc(&pair.a),
        before,
        "the original root qdisc is not back"
    );
    let audited = std::fs::read_to_string(&audit).unwrap();
    let restore: Vec<Value> = audited
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["action"] == "restore-qdisc")
        .collect();
    assert!(
        restore
            .iter()
            .any(|r| r["target"] == "veth-a" && r["allowed"] == true),
        "{audited}"
    );
    drop(again);
    drop(pair);
    assert_nothing_left();
}
