//! `--events`: the kernel reports each call or packet a fault acts on. The events a run
//! prints are exactly what its counters count, they name the right process and thread, a
//! full buffer loses events loudly, and a process outside the target appears in none.
//! Host tier: socket syscalls, signals, latency, packet drop/corrupt/duplicate. VM tier
//! (BPF LSM or fmod_ret): file calls, with the file's name.
use std::{collections::BTreeMap, fs, process::Command};

use chaos_tests::{
    events::{inject_with_events, net_bin, proc_bin},
    netns::UdpCounter,
    *,
};
use serde_json::Value;

/// `chaos-proc threads`' report: the process id and each worker thread's id -> name.
fn threads_of(json: &Value) -> (u64, BTreeMap<u64, String>) {
    let pid = json["pid"].as_u64().expect("pid");
    let threads = json["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| {
            (
                t["tid"].as_u64().expect("tid"),
                t["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect();
    (pid, threads)
}

#[test]
fn signal_events_name_the_process_and_each_thread_and_outsiders_none() {
    if !need_root() {
        return;
    }
    let ready = scratch("events-ready");
    let go = scratch("events-go");
    let proc_path = proc_bin();
    let proc_str = proc_path.to_str().unwrap().to_owned();
    let (ready_str, go_str) = (
        ready.to_str().unwrap().to_owned(),
        go.to_str().unwrap().to_owned(),
    );
    // An outsider makes the same calls while the fault runs.
    let outsider = std::thread::spawn(move || {
        wait_for_file(&ready);
        let out = Command::new(proc_bin())
            .args(["threads", "--threads", "2", "--count", "50"])
            .output()
            .expect("outside process");
        assert!(out.status.success(), "outside: {out:?}");
        fs::write(&go, b"").unwrap();
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        serde_json::from_str::<Value>(&line).expect("outsider JSON")
    });
    // SIGWINCH is ignored by default: every getppid is signalled and the process lives on.
    let outcome = inject_with_events(
        &[
            "inject",
            "signal",
            "--syscall",
            "getppid",
            "--signal",
            "SIGWINCH",
            "--",
            &proc_str,
            "--ready",
            &ready_str,
            "--wait-for",
            &go_str,
            "threads",
            "--threads",
            "3",
            "--count",
            "20",
        ],
        &[],
    );
    let outsider = outsider.join().expect("outsider");
    assert!(outcome.success, "chaos: {outcome:?}");
    let (pid, threads) = threads_of(&outcome.command_json());
    let (outsider_pid, _) = threads_of(&outsider);

    assert_eq!(outcome.injected(0), 60, "report: {}", outcome.report);
    assert_eq!(outcome.events.len(), 60, "one event per signalled call");
    let mut per_thread: BTreeMap<u64, u64> = BTreeMap::new();
    for event in &outcome.events {
        assert_eq!(event["pid"], pid, "{event}");
        assert_ne!(event["pid"], outsider_pid, "an outsider's call: {event}");
        let tid = event["tid"].as_u64().unwrap();
        assert_eq!(
            event["comm"].as_str(),
            threads.get(&tid).map(String::as_str),
            "{event}"
        );
        assert_eq!(event["call"], "getppid");
        assert_eq!(event["effect"], "signal");
        assert_eq!(event["signal"], "SIGWINCH");
        assert_eq!(event["rule"], 1);
        *per_thread.entry(tid).or_default() += 1;
    }
    let expected: BTreeMap<u64, u64> = threads.keys().map(|tid| (*tid, 20)).collect();
    assert_eq!(per_thread, expected, "20 events for each worker thread");
    assert_nothing_left();
}

#[test]
fn socket_errors_print_as_strace_lines() {
    if !need_root() {
        return;
    }
    let proc_path = proc_bin();
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--events",
        "--json",
        "--",
        proc_path.to_str().unwrap(),
        "threads",
        "--threads",
        "2",
        "--count",
        "10",
        "--call",
        "socket",
    ]);
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let (_, injected) = outcome.counts(0);
    assert_eq!(injected, 20, "{}", outcome.stdout);
    let lines: Vec<&str> = outcome
        .stdout
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect();
    assert_eq!(lines.len(), 20, "{}", outcome.stdout);
    assert_each_line_matches(
        lines,
        r"^\d\d:\d\d:\d\d\.\d{6} \[pid \d+ tid \d+ worker-[01]\] socket\(\) = -1 EMFILE \(injected, rule 1\)$",
    );
    assert_nothing_left();
}

#[test]
fn latency_events_carry_the_delay() {
    if !need_root() {
        return;
    }
    let proc_path = proc_bin();
    let outcome = inject_with_events(
        &[
            "inject",
            "latency",
            "--syscall",
            "getppid",
            "--delay",
            "1ms",
            "--",
            proc_path.to_str().unwrap(),
            "threads",
            "--threads",
            "2",
            "--count",
            "10",
        ],
        &[],
    );
    assert!(outcome.success, "chaos: {outcome:?}");
    assert_eq!(outcome.injected(0), 20, "report: {}", outcome.report);
    assert_eq!(outcome.events.len(), 20);
    for event in &outcome.events {
        assert_eq!(event["effect"], "delay", "{event}");
        assert_eq!(event["delay_ns"], 1_000_000, "{event}");
    }
    assert_nothing_left();
}

#[test]
fn a_tiny_buffer_loses_events_and_says_how_many() {
    if !need_root() {
        return;
    }
    let proc_path = proc_bin();
    // One page holds about 19 events; 4 threads making 5,000 calls each outrun a reader
    // that wakes every 10 ms.
    let outcome = inject_with_events(
        &[
            "inject",
            "signal",
            "--syscall",
            "getppid",
            "--signal",
            "SIGWINCH",
            "--",
            proc_path.to_str().unwrap(),
            "threads",
            "--threads",
            "4",
            "--count",
            "5000",
        ],
        &[("CHAOS_EVENTS_BUFFER", "4096")],
    );
    assert!(outcome.success, "chaos: {outcome:?}");
    let injected = outcome.injected(0);
    assert_eq!(injected, 20_000);
    let lost: u64 = regex::Regex::new(r"chaos: (\d+) events lost")
        .unwrap()
        .captures(&outcome.stderr)
        .unwrap_or_else(|| panic!("no loss reported: {}", outcome.stderr))[1]
        .parse()
        .unwrap();
    assert!(lost > 0);
    assert_eq!(
        outcome.events.len() as u64 + lost,
        injected,
        "every injection is either printed or counted as lost"
    );
    assert_nothing_left();
}

/// One packet fault on `lo` for a UDP sender in the target: each packet it affects has an
/// event with the addresses and the protocol, and the count matches the report.
fn packet_events(kind: &str, extra: &[&str], effect: &str) {
    if !need_root() {
        return;
    }
    let loopback = "127.0.0.1".parse().unwrap();
    let counter = UdpCounter::start(None, loopback);
    let addr = counter.addr.to_string();
    let net = net_bin();
    let mut args = vec![
        "inject",
        kind,
        "--probability",
        "0.5",
        "--protocol",
        "udp",
        "--cidr",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", net.to_str().unwrap(), "udp-send", &addr, "200"]);
    let outcome = inject_with_events(&args, &[]);
    counter.stop();
    if !outcome.success && outcome.stderr.contains("not supported") {
        return skip(&format!("{kind}: {}", outcome.stderr));
    }
    assert!(outcome.success, "chaos: {outcome:?}");
    let affected = outcome.injected(0);
    assert!(affected > 0, "report: {}", outcome.report);
    assert_eq!(outcome.events.len() as u64, affected, "{}", outcome.report);
    for event in &outcome.events {
        assert_eq!(event["effect"], effect, "{event}");
        assert_eq!(event["protocol"], "udp", "{event}");
        assert_eq!(event["direction"], "egress", "{event}");
        assert_eq!(event["peer"], addr.as_str(), "{event}");
        assert!(event.get("pid").is_none(), "{event}");
    }
    assert_nothing_left();
}

#[test]
fn dropped_packets_are_events() {
    packet_events("net-drop", &[], "drop");
}

#[test]
fn corrupted_packets_are_events() {
    packet_events("net-corrupt", &["--device", "lo"], "corrupt");
}

#[test]
fn duplicated_packets_are_events() {
    packet_events("net-duplicate", &["--device", "lo"], "duplicate");
}

/// VM tier (the host refuses BPF LSM and fmod_ret): an openat failed by the file_open hook
/// names the file and its parents.
#[test]
fn file_errors_name_the_file_and_its_parents() {
    if !need_root() {
        return;
    }
    let dir = scratch("events-dir").with_extension("d");
    fs::create_dir_all(dir.join("inner")).unwrap();
    let file = dir.join("inner").join("data.txt");
    fs::write(&file, b"x").unwrap();
    let outcome = inject_with_events(
        &[
            "inject",
            "syscall",
            "--syscall",
            "openat",
            "--errno",
            "EIO",
            "--path",
            dir.to_str().unwrap(),
            "--",
            "/bin/cat",
            file.to_str().unwrap(),
        ],
        &[],
    );
    if !outcome.success && outcome.stderr.contains("not supported by this kernel") {
        return skip(&format!(
            "this kernel cannot run file faults: {}",
            outcome.stderr
        ));
    }
    let injected = outcome.injected(0);
    assert!(injected >= 1, "report: {}", outcome.report);
    assert_eq!(
        outcome.events.len() as u64,
        injected,
        "{:?}",
        outcome.events
    );
    let dir_name = dir.file_name().unwrap().to_str().unwrap();
    let expected = format!(".../{dir_name}/inner/data.txt");
    let event = &outcome.events[0];
    assert_eq!(event["file"], expected.as_str(), "{event}");
    assert_eq!(event["call"], "openat", "{event}");
    assert_eq!(event["errno"], "EIO", "{event}");
    assert_eq!(event["comm"], "cat", "{event}");
    assert_nothing_left();
}

/// The daemon streams a fault's events while it runs (`GET /faults/{id}/events`, followed by
/// `chaos events ID`), and the stream ends when the fault is removed.
#[test]
fn the_daemon_streams_a_faults_events_to_chaos_events() {
    use std::io::{BufRead as _, BufReader};
    if !need_root() {
        return;
    }
    let socket = scratch("events-daemon.sock");
    let mut daemon = Command::new(chaos_bin())
        .args(["daemon", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting chaos daemon");
    let client = chaos::daemon::client::DaemonClient::new(Some(&socket));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !client.answers() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cgroup = TestCgroup::new("events-daemon");
    let fault = client
        .create_json(&serde_json::json!({
            "kind": "syscall",
            "syscalls": ["socket"],
            "errno": "EMFILE",
            "target": {"cgroup": cgroup.path},
        }))
        .expect("creating the fault");
    let mut follower = Command::new(chaos_bin())
        .args(["events", &fault.id.to_string(), "--json"])
        .args(["--socket", socket.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("chaos events");
    // The follower asks the kernel for events once its request is in: give it that moment.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let inside = workload_result(cgroup.spawn(&mut workload(&["--count", "5", "socket"])));
    let outside = workload_result(workload(&["--count", "5", "socket"]).spawn().unwrap());
    assert_eq!(inside.failed_with("EMFILE"), 5);
    assert_eq!(outside.ok, 5);
    // The events arrive while the fault still runs.
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let events: Vec<Value> = (0..5)
        .map(|_| serde_json::from_str(&lines.next().expect("an event").unwrap()).unwrap())
        .collect();
    let removed = client.remove(fault.id).expect("removing the fault");
    assert_eq!(removed.injected, 5);
    for event in &events {
        assert_eq!(event["call"], "socket", "{event}");
        assert_eq!(event["errno"], "EMFILE", "{event}");
    }
    // The stream ends with the fault, and so does the follower.
    assert!(lines.next().is_none(), "more events than injections");
    assert!(follower.wait().unwrap().success());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_nothing_left();
}
