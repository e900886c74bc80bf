//! net-duplicate: a tc egress classifier (TCX on 6.6+, clsact before) on `lo` copies a
//! fraction of the target's packets. Loads on the host kernel and in the VM tier.
use std::{
    net::UdpSocket,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use chaos_tests::*;
use serde_json::Value;

fn net_client(args: &[&str]) -> Command {
    let mut cmd = Command::new(workload_bin().with_file_name("chaos-net"));
    cmd.args(args).stdout(std::process::Stdio::piped());
    cmd
}

fn json_out(child: std::process::Child) -> Value {
    let out = child.wait_with_output().expect("waiting for chaos-net");
    assert!(out.status.success(), "chaos-net failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("chaos-net JSON")
}

/// A UDP socket on 127.0.0.1 counting what arrives until the flag is set.
fn udp_counter() -> (String, Arc<AtomicU64>, Arc<AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (c, d) = (Arc::clone(&count), Arc::clone(&done));
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !d.load(Ordering::SeqCst) {
            if socket.recv_from(&mut buf).is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, count, done)
}

#[test]
fn udp_copies_are_binomial_and_outsiders_get_none() {
    if !need_root() {
        return;
    }
    let before = tc_qdiscs_lo();
    let (inside_addr, inside_got, inside_done) = udp_counter();
    let (outside_addr, outside_got, outside_done) = udp_counter();
    let cgroup = TestCgroup::new("net-duplicate");
    let mut run = ChaosRun::start(&[
        "inject",
        "net-duplicate",
        "--probability",
        "0.2",
        "--protocol",
        "udp",
        "--cidr",
        "127.0.0.1",
        "--device",
        "lo",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    if let Err(err) = run.wait_injecting() {
        return skip(&format!("chaos could not attach the tc program: {err:#}"));
    }
    const N: u64 = 2000;
    let n = N.to_string();
    let inside = cgroup.spawn(&mut net_client(&["udp-send", &inside_addr, &n]));
    let outside = net_client(&["udp-send", &outside_addr, &n])
        .spawn()
        .unwrap();
    json_out(inside);
    json_out(outside);
    thread::sleep(Duration::from_millis(500));
    inside_done.store(true, Ordering::SeqCst);
    outside_done.store(true, Ordering::SeqCst);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    let copies = inside_got.load(Ordering::SeqCst) - N;
    // Binomial(2000, 0.2): mean 400, sd 17.9; ±5 sd.
    let (mean, sd) = (N as f64 * 0.2, (N as f64 * 0.2 * 0.8).sqrt());
    assert!(
        (copies as f64 - mean).abs() <= 5.0 * sd,
        "{copies} copies of {N} datagrams at 20%, expected {mean} ± {:.0}",
        5.0 * sd
    );
    assert_eq!(
        outside_got.load(Ordering::SeqCst),
        N,
        "a process outside the target got copies (or lost datagrams)"
    );
    let fault = &outcome.report()["faults"][0];
    assert_eq!(fault["seen"], N, "report: {}", outcome.stdout);
    assert_eq!(
        fault["affected"], copies,
        "every extra datagram is a copy chaos sent"
    );
    assert_eq!(tc_qdiscs_lo(), before, "lo's qdiscs were not restored");
    assert_nothing_left();
}

/// `tc qdisc show dev lo`, to compare before and after.
fn tc_qdiscs_lo() -> String {
    Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
