//! net-duplicate: a tc egress classifier (TCX on 6.6+, clsact before) on `lo` copies a
//! fraction of the target's packets. Loads on the host kernel and in the VM tier.
use std::process::Command;

use chaos_tests::{
    netns::{UdpCounter, net_client, net_result},
    *,
};

#[test]
fn udp_copies_are_binomial_and_outsiders_get_none() {
    if !need_root() {
        return;
    }
    let before = tc_qdiscs_lo();
    let loopback = "127.0.0.1".parse().unwrap();
    let inside_counter = UdpCounter::start(None, loopback);
    let outside_counter = UdpCounter::start(None, loopback);
    let (inside_addr, outside_addr) = (
        inside_counter.addr.to_string(),
        outside_counter.addr.to_string(),
    );
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
    let inside = cgroup.spawn(&mut net_client(None, &["udp-send", &inside_addr, &n]));
    let outside = net_client(None, &["udp-send", &outside_addr, &n])
        .spawn()
        .unwrap();
    net_result(inside);
    net_result(outside);
    let (inside_got, _) = inside_counter.stop();
    let (outside_got, outside_altered) = outside_counter.stop();
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    let copies = inside_got - N;
    // Binomial(2000, 0.2): mean 400, sd 17.9; ±5 sd.
    let (mean, sd) = (N as f64 * 0.2, (N as f64 * 0.2 * 0.8).sqrt());
    assert!(
        (copies as f64 - mean).abs() <= 5.0 * sd,
        "{copies} copies of {N} datagrams at 20%, expected {mean} ± {:.0}",
        5.0 * sd
    );
    assert_eq!(
        (outside_got, outside_altered),
        (N, 0),
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
