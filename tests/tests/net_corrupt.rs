//! net-corrupt: a tc egress classifier flips a payload bit in a fraction of the target's
//! packets, between two network namespaces joined by veth. Loads on the host kernel (TCX)
//! and in the VM tier (TCX on 6.12, clsact on 6.1).
use chaos_tests::{
    netns::{UdpCounter, VethPair, disable_tx_checksum, net_client, net_result},
    *,
};

const N: u64 = 2000;

/// Starts chaos, or skips saying why it could not.
fn start(args: &[&str]) -> Option<ChaosRun> {
    let mut run = ChaosRun::start(args);
    match run.wait_injecting() {
        Ok(()) => Some(run),
        Err(err) => {
            skip(&format!("chaos could not attach the tc program: {err:#}"));
            None
        }
    }
}

/// Asserts `k` is a plausible Binomial(n, p) draw (±5 sd).
fn assert_binomial(k: u64, n: u64, p: f64, what: &str) {
    let (mean, sd) = (n as f64 * p, (n as f64 * p * (1.0 - p)).sqrt());
    assert!(
        (k as f64 - mean).abs() <= 5.0 * sd,
        "{what}: {k} of {n}, expected {mean} ± {:.0}",
        5.0 * sd
    );
}

/// What a corruption run saw: chaos's outcome, and (received, altered) datagrams from inside
/// and from outside the target.
struct CorruptRun {
    outcome: ChaosOutcome,
    inside: (u64, u64),
    outside: (u64, u64),
}

/// Runs `chaos inject net-corrupt EXTRA...` on UDP from a cgroup in `pair.a` to `pair.b`, and
/// an outsider alongside.
fn corrupt_udp(pair: &VethPair, extra: &[&str]) -> Option<CorruptRun> {
    let inside = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let outside = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let cgroup = TestCgroup::new("net-corrupt");
    let cidr = pair.addr_b.to_string();
    let mut args = vec![
        "inject",
        "net-corrupt",
        "--probability",
        "0.3",
        "--protocol",
        "udp",
        "--cidr",
        &cidr,
        "--netns",
        &pair.a,
        "--device",
        "veth-a",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = start(&args)?;
    let n = N.to_string();
    let (in_addr, out_addr) = (inside.addr.to_string(), outside.addr.to_string());
    let a = Some(pair.a.as_str());
    let sent_in = cgroup.spawn(&mut net_client(a, &["udp-send", &in_addr, &n]));
    let sent_out = net_client(a, &["udp-send", &out_addr, &n]).spawn().unwrap();
    net_result(sent_in);
    net_result(sent_out);
    let counts = (inside.stop(), outside.stop());
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    Some(CorruptRun {
        outcome,
        inside: counts.0,
        outside: counts.1,
    })
}

#[test]
fn receiver_checksum_catches_corruption() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("crc") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    // The sender computes checksums itself, as with a NIC without offload: the receiver
    // checks them.
    disable_tx_checksum(&pair.a, "veth-a").expect("ethtool tx off on veth-a");
    let errors = || VethPair::snmp(&pair.b, "Udp", "InCsumErrors");
    let before = errors();
    let Some(CorruptRun {
        outcome,
        inside: (received, altered),
        outside: (out_received, out_altered),
    }) = corrupt_udp(&pair, &[])
    else {
        return;
    };
    let fault = &outcome.report()["faults"][0];
    let affected = fault["affected"].as_u64().unwrap();
    assert_eq!(fault["seen"], N, "report: {}", outcome.stdout);
    assert_binomial(affected, N, 0.3, "corrupted");
    assert_eq!(altered, 0, "a corrupted datagram passed the checksum");
    assert_eq!(
        received,
        N - affected,
        "every corrupted datagram is dropped by the receiver"
    );
    assert_eq!(
        errors() - before,
        affected,
        "Udp InCsumErrors counts each one"
    );
    assert_eq!((out_received, out_altered), (N, 0), "outside the target");
    drop(pair);
    assert_nothing_left();
}

#[test]
fn fixed_checksum_delivers_corrupted_data() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("fix") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    disable_tx_checksum(&pair.a, "veth-a").expect("ethtool tx off on veth-a");
    let errors = || VethPair::snmp(&pair.b, "Udp", "InCsumErrors");
    let before = errors();
    let Some(CorruptRun {
        outcome,
        inside: (received, altered),
        outside: (out_received, out_altered),
    }) = corrupt_udp(&pair, &["--fix-checksum"])
    else {
        return;
    };
    let fault = &outcome.report()["faults"][0];
    let affected = fault["affected"].as_u64().unwrap();
    assert_binomial(affected, N, 0.3, "corrupted");
    assert_eq!(received, N, "with --fix-checksum every datagram arrives");
    assert_eq!(altered, affected, "each corrupted datagram arrives altered");
    assert_eq!(errors(), before, "no checksum errors with --fix-checksum");
    assert_eq!((out_received, out_altered), (N, 0), "outside the target");
    drop(pair);
    assert_nothing_left();
}
