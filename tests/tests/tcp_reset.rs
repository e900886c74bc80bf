//! `chaos inject tcp-reset` end to end: long-lived TCP connections to a server the test runs,
//! one from a client in the target cgroup and one from a bystander outside it. The target's
//! connection is aborted by the kernel (SOCK_DESTROY): its next send fails with ECONNABORTED
//! and the server reads ECONNRESET (the RST); the bystander's connection survives. No kernel
//! program is involved. Both tiers: the clients are `chaos-net tcp-hold`, and the VM guest
//! loads inet_diag and tcp_diag.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _},
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use chaos_tests::*;

/// How each of the server's connections ended, by the client's port: `open` while it lasts,
/// `eof`, or the read error's kind.
type Ends = Arc<Mutex<HashMap<u16, String>>>;

fn server() -> (u16, Ends) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ends: Ends = Arc::default();
    let e = Arc::clone(&ends);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let peer = stream.peer_addr().unwrap().port();
            e.lock().unwrap().insert(peer, "open".into());
            let e = Arc::clone(&e);
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let end = loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break "eof".to_owned(),
                        Ok(_) => {}
                        Err(err) => break format!("{:?}", err.kind()),
                    }
                };
                e.lock().unwrap().insert(peer, end);
            });
        }
    });
    (port, ends)
}

struct Client {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    port: u16,
}

fn client(cgroup: Option<&TestCgroup>, server: u16, seconds: &str) -> Client {
    // `chaos-net tcp-hold`: prints `ready LOCALPORT`, then sends a byte every 20 ms for
    // SECONDS and prints `ok`, or the errno of the first failed send and the sends before it.
    let mut command = Command::new(workload_bin().with_file_name("chaos-net"));
    command
        .args(["tcp-hold", &format!("127.0.0.1:{server}"), seconds])
        .stdout(Stdio::piped());
    let mut child = match cgroup {
        Some(c) => c.spawn(&mut command),
        None => command.spawn().expect("chaos-net"),
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().expect("a ready line").unwrap();
    let port = ready
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a ready line: {ready}"));
    Client { child, lines, port }
}

impl Client {
    fn outcome(mut self) -> String {
        let line = self.lines.next().expect("an outcome line").unwrap();
        let _ = self.child.wait();
        line
    }
}

fn report(outcome: &ChaosOutcome) -> serde_json::Value {
    let line = outcome
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"kind\":\"tcp-reset\""))
        .unwrap_or_else(|| panic!("no tcp-reset report: {outcome:?}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_targets_connection_is_reset_and_a_bystanders_survives() {
    if !need_root() {
        return;
    }
    let (port, ends) = server();
    let cgroup = TestCgroup::new("tcp-reset");
    let target = client(Some(&cgroup), port, "20");
    let bystander = client(None, port, "3");
    let mut run = ChaosRun::start(&[
        "inject",
        "tcp-reset",
        "--port",
        &port.to_string(),
        "--direction",
        "outbound",
        "--json",
        "--standalone",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    let (target_port, bystander_port) = (target.port, bystander.port);
    let target_end = target.outcome();
    let bystander_end = bystander.outcome();
    let outcome = run.interrupt();

    assert!(
        target_end.starts_with("ECONNABORTED "),
        "the target's next send: {target_end}"
    );
    assert_eq!(bystander_end, "ok", "the bystander kept sending for 3 s");
    // The server saw the RST on the target's connection only; the bystander closed normally.
    let ends = ends.lock().unwrap().clone();
    assert_eq!(ends[&target_port], "ConnectionReset", "{ends:?}");
    assert_ne!(ends[&bystander_port], "ConnectionReset", "{ends:?}");
    let r = report(&outcome);
    assert_eq!(
        (
            r["matched"].as_u64(),
            r["injected"].as_u64(),
            r["reset"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{r}"
    );
    assert!(outcome.status.success(), "{outcome:?}");
    assert_nothing_left();
}

fn inject(cgroup: &TestCgroup, port: u16, extra: &[&str]) -> ChaosRun {
    let port = port.to_string();
    let mut args = vec![
        "inject",
        "tcp-reset",
        "--port",
        &port,
        "--json",
        "--standalone",
    ];
    args.extend(extra);
    args.extend(["--cgroup", cgroup.path.to_str().unwrap()]);
    let mut run = ChaosRun::start(&args);
    run.wait_injecting().expect("chaos injecting");
    run
}

fn counts(outcome: &ChaosOutcome) -> (u64, u64, u64) {
    let r = report(outcome);
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    (n("matched"), n("injected"), n("reset"))
}

#[test]
fn after_n_segments_the_connection_is_reset_not_before() {
    if !need_root() {
        return;
    }
    let (port, _ends) = server();
    let cgroup = TestCgroup::new("tcp-reset-after");
    let run = inject(&cgroup, port, &["--after", "60"]);
    let target = client(Some(&cgroup), port, "20");
    let end = target.outcome();
    let outcome = run.interrupt();
    let (errno, sent) = end.split_once(' ').expect("reset, with a count");
    assert_eq!(errno, "ECONNABORTED", "{end}");
    // Each send is one segment out and at most one ACK in, the handshake three segments: 60
    // segments take at least (60 - 3) / 2 sends.
    let sent: u64 = sent.parse().unwrap();
    assert!(sent >= 28, "reset after only {sent} sends");
    assert_eq!(counts(&outcome), (1, 1, 1));
    assert_nothing_left();
}

#[test]
fn once_spares_new_connections_and_dry_run_only_counts() {
    if !need_root() {
        return;
    }
    let (port, _ends) = server();
    let cgroup = TestCgroup::new("tcp-reset-once");

    let old = client(Some(&cgroup), port, "1");
    let run = inject(&cgroup, port, &["--dry-run"]);
    assert_eq!(old.outcome(), "ok", "a dry run resets nothing");
    assert_eq!(counts(&run.interrupt()), (1, 1, 0));

    let old = client(Some(&cgroup), port, "20");
    let run = inject(&cgroup, port, &["--once"]);
    assert!(
        old.outcome().starts_with("ECONNABORTED"),
        "the connection there at start"
    );
    let new = client(Some(&cgroup), port, "1");
    assert_eq!(
        new.outcome(),
        "ok",
        "a connection made after the start is spared"
    );
    assert_eq!(counts(&run.interrupt()), (1, 1, 1));
    assert_nothing_left();
}
