//! net-drop through cgroup_skb programs, between two network namespaces joined by veth: loads
//! on the host kernel and in the VM tier.
use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, UdpSocket},
    process::Command,
    thread,
};

use chaos_tests::{
    netns::{UdpCounter, VethPair, net_client},
    *,
};
use serde_json::Value;

fn net_bin() -> std::path::PathBuf {
    let workload = workload_bin();
    workload.with_file_name("chaos-net")
}

/// `chaos-net --netns NS ARGS` with stdout captured.
fn client(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(net_bin());
    cmd.args(["--netns", ns]).args(args);
    cmd.stdout(std::process::Stdio::piped());
    cmd
}

fn json_out(child: std::process::Child) -> Value {
    let out = child.wait_with_output().expect("waiting for chaos-net");
    assert!(out.status.success(), "chaos-net failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("chaos-net JSON")
}

fn start_chaos(args: &[&str]) -> Option<ChaosRun> {
    let mut run = ChaosRun::start(args);
    match run.wait_injecting() {
        Ok(()) => Some(run),
        Err(err) => {
            skip(&format!("chaos could not inject: {err:#}"));
            None
        }
    }
}

#[test]
fn udp_loss_ratio_is_binomial_and_outsiders_lose_nothing() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("drop") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let inside_counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let outside_counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let (inside_addr, outside_addr) = (inside_counter.addr, outside_counter.addr);
    let cgroup = TestCgroup::new("net-drop-udp");
    let cidr = format!("{}/32", pair.addr_b);
    let Some(run) = start_chaos(&[
        "inject",
        "net-drop",
        "--probability",
        "0.3",
        "--protocol",
        "udp",
        "--cidr",
        &cidr,
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    const N: u64 = 2000;
    let n = N.to_string();
    let inside = cgroup.spawn(&mut client(
        &pair.a,
        &["udp-send", &inside_addr.to_string(), &n],
    ));
    let outside = client(&pair.a, &["udp-send", &outside_addr.to_string(), &n])
        .spawn()
        .unwrap();
    let inside = json_out(inside);
    let outside = json_out(outside);
    let (received, _) = inside_counter.stop();
    let (outside_received, _) = outside_counter.stop();
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    // A lossy network: sendto succeeds, the datagram just never arrives.
    assert_eq!(inside["errors"], 0, "inside: {inside}");
    assert_eq!(outside["errors"], 0, "outside: {outside}");
    // Binomial(2000, 0.7): mean 1400, sd 20.5; ±5 sd is wrong once in 3.5 million runs.
    let (mean, sd) = (N as f64 * 0.7, (N as f64 * 0.3 * 0.7).sqrt());
    assert!(
        (received as f64 - mean).abs() <= 5.0 * sd,
        "received {received} of {N} at 30% loss, expected {mean} ± {:.0}",
        5.0 * sd
    );
    assert_eq!(
        outside_received, N,
        "a process outside the target lost datagrams"
    );
    let fault = &outcome.report()["faults"][0];
    assert_eq!(fault["seen"], N, "report: {}", outcome.stdout);
    assert_eq!(
        fault["affected"].as_u64().unwrap(),
        N - received,
        "every datagram that did not arrive is one chaos dropped: {}",
        outcome.stdout
    );
    // 64 bytes of payload + 8 UDP + 20 IPv4.
    assert_eq!(fault["bytes"].as_u64().unwrap(), (N - received) * 92);
    drop(pair);
    assert_nothing_left();
}

/// A TCP server in namespace `ns` that sends `bytes` to each client and closes.
fn tcp_source(ns: &str, ip: std::net::IpAddr, bytes: u64) -> SocketAddr {
    let listener = VethPair::within(ns, || TcpListener::bind((ip, 0)).expect("bind"));
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let chunk = vec![0xa5u8; 64 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if conn.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    addr
}

#[test]
fn tcp_download_completes_under_loss_with_retransmits() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("tcp") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    const BYTES: u64 = 4 << 20;
    let addr = tcp_source(&pair.b, pair.addr_b, BYTES).to_string();
    let cgroup = TestCgroup::new("net-drop-tcp");
    // Ingress: the segments reach the target's host and are lost there, so the sender (in
    // the other namespace, outside the target) sees real loss and retransmits.
    let Some(run) = start_chaos(&[
        "inject",
        "net-drop",
        "--direction",
        "ingress",
        "--probability",
        "0.1",
        "--protocol",
        "tcp",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    // The server's namespace counts the retransmits.
    let retrans = || VethPair::snmp(&pair.b, "Tcp", "RetransSegs");

    // Outside the target first, alone in the namespaces: not one retransmit.
    let before = retrans();
    let outside = json_out(client(&pair.a, &["tcp-recv", &addr]).spawn().unwrap());
    assert_eq!(outside["bytes"], BYTES, "outside: {outside}");
    assert_eq!(
        retrans(),
        before,
        "a transfer outside the target retransmitted"
    );

    let inside = json_out(cgroup.spawn(&mut client(&pair.a, &["tcp-recv", &addr])));
    assert_eq!(inside["bytes"], BYTES, "inside: {inside}");
    let retransmitted = retrans() - before;
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let fault = &outcome.report()["faults"][0];
    let affected = fault["affected"].as_u64().unwrap();
    let seen = fault["seen"].as_u64().unwrap();
    assert!(
        retransmitted > 0,
        "the sender's RetransSegs did not move under 10% loss ({fault})"
    );
    assert!(seen > 0 && affected > 0, "report: {}", outcome.stdout);
    // seen counts (GRO-merged) packets; 10% of them, give or take 5 sd.
    let (mean, sd) = (seen as f64 * 0.1, (seen as f64 * 0.1 * 0.9).sqrt());
    assert!(
        (affected as f64 - mean).abs() <= 5.0 * sd + 1.0,
        "dropped {affected} of {seen} packets, not about 10%"
    );
    println!(
        "dropped {affected} of {seen} packets; the sender retransmitted {retransmitted} segments"
    );
    drop(pair);
    assert_nothing_left();
}

#[test]
fn dry_run_counts_and_drops_nothing() {
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("dry") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let addr = counter.addr;
    let cgroup = TestCgroup::new("net-drop-dry");
    let Some(run) = start_chaos(&[
        "inject",
        "net-drop",
        "--probability",
        "0.5",
        "--protocol",
        "udp",
        "--dry-run",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    let sent = json_out(cgroup.spawn(&mut client(
        &pair.a,
        &["udp-send", &addr.to_string(), "1000"],
    )));
    assert_eq!(sent["errors"], 0);
    let (got, _) = counter.stop();
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert_eq!(got, 1000, "a dry run dropped datagrams");
    let fault = &outcome.report()["faults"][0];
    assert_eq!(fault["seen"], 1000, "report: {}", outcome.stdout);
    assert_eq!(fault["dry_run"], true);
    let would = fault["affected"].as_u64().unwrap();
    assert!(
        (400..=600).contains(&would),
        "would have dropped {would} of 1000 at 50%"
    );
    drop(pair);
    assert_nothing_left();
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    let out = chaos(&[
        "inject",
        "net-delay",
        "--delay",
        "10ms",
        "--direction",
        "ingress",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--direction") && out.stderr.contains("egress"),
        "{out:?}"
    );
    let out = chaos(&[
        "inject",
        "net-delay",
        "--delay",
        "10ms",
        "--jitter",
        "20ms",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("--jitter"), "{out:?}");
    let out = chaos(&["inject", "net-drop", "--cidr", "10.0.0.0/40", "--", "true"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("10.0.0.0/40"), "{out:?}");
    let out = chaos(&["inject", "net-rate", "--rate", "fast", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--rate") && out.stderr.contains("1mbit"),
        "{out:?}"
    );
}

#[test]
fn ipv6_peer_and_port_filters_pick_only_their_packets() {
    if !need_root() {
        return;
    }
    let loopback: std::net::IpAddr = "::1".parse().unwrap();
    if UdpSocket::bind((loopback, 0)).is_err() {
        return skip("no IPv6 loopback address (::1)");
    }
    let hit = UdpCounter::start(None, loopback);
    let miss = UdpCounter::start(None, loopback);
    let out = UdpCounter::start(None, loopback);
    let (hit_addr, miss_addr, out_addr) = (hit.addr, miss.addr, out.addr);
    let cgroup = TestCgroup::new("net-drop-v6");
    let port = hit_addr.port().to_string();
    let Some(run) = start_chaos(&[
        "inject",
        "net-drop",
        "--direction",
        "egress",
        "--protocol",
        "udp",
        "--cidr",
        "::1/128",
        "--port",
        &port,
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    let send = |addr: SocketAddr| net_client(None, &["udp-send", &addr.to_string(), "100"]);
    json_out(cgroup.spawn(&mut send(hit_addr)));
    json_out(cgroup.spawn(&mut send(miss_addr)));
    // Outside the target, to the very port the rule names.
    let mut outside = send(hit_addr);
    let outside_to_hit = json_out(outside.spawn().unwrap());
    assert_eq!(outside_to_hit["errors"], 0);
    json_out(send(out_addr).spawn().unwrap());
    let (hit_got, miss_got, out_got) = (hit.stop().0, miss.stop().0, out.stop().0);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    // The target's datagrams to the named port are gone; the outsider's 100 to it arrive.
    assert_eq!(hit_got, 100, "only the outsider's should arrive");
    assert_eq!(miss_got, 100, "another port must not match");
    assert_eq!(out_got, 100);
    let fault = &outcome.report()["faults"][0];
    assert_eq!(
        (fault["seen"].as_u64(), fault["affected"].as_u64()),
        (Some(100), Some(100)),
        "report: {}",
        outcome.stdout
    );
    assert_nothing_left();
}

#[test]
fn the_kernel_stops_dropping_at_the_deadline_even_when_chaos_is_frozen() {
    use nix::sys::signal::{Signal, kill};
    use std::time::{Duration, Instant};

    if !need_root() {
        return;
    }
    let pair = match VethPair::new("ddl") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let cgroup = TestCgroup::new("net-drop-deadline");
    let Some(run) = start_chaos(&[
        "inject",
        "net-drop",
        "--protocol",
        "udp",
        "--duration",
        "3s",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    // The deadline counts from when the programs are attached, just before chaos says so.
    let started = Instant::now();
    let send = |counter: UdpCounter| {
        json_out(cgroup.spawn(&mut client(
            &pair.a,
            &["udp-send", &counter.addr.to_string(), "20"],
        )));
        counter.stop().0
    };
    let before = send(UdpCounter::start(Some(&pair.b), pair.addr_b));
    assert_eq!(before, 0, "before the deadline, datagrams arrived");
    // Frozen, chaos cannot remove anything: only the rule's own deadline can end the fault.
    kill(run.pid(), Signal::SIGSTOP).unwrap();
    while started.elapsed() < Duration::from_millis(3500) {
        thread::sleep(Duration::from_millis(50));
    }
    let after = send(UdpCounter::start(Some(&pair.b), pair.addr_b));
    kill(run.pid(), Signal::SIGCONT).unwrap();
    assert_eq!(after, 20, "after the deadline, datagrams were still lost");
    let outcome = run.finish();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let fault = &outcome.report()["faults"][0];
    // Every datagram passed the program; only those before the deadline were dropped.
    assert_eq!(fault["seen"], 40, "report: {}", outcome.stdout);
    assert_eq!(fault["affected"], 20, "report: {}", outcome.stdout);
    assert_nothing_left();
}

/// How many programs named `name` the kernel holds (it keeps the first 15 bytes of a name).
fn loaded(name: &str) -> usize {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| !n.is_empty() && name.starts_with(n))
        })
        .count()
}

/// Packet faults of one process (the daemon's, an experiment's) share one loaded object: a
/// second fault on another cgroup verifies no program again, each fault drops only its own
/// cgroup's datagrams and counts only them, removing one leaves the other working, and the
/// programs go with the last fault.
#[test]
fn faults_of_one_process_share_the_programs_and_leave_with_the_last() {
    use chaos::{
        packet::{Direction, NetEffect, NetFault, PacketInjector, Protocol},
        target::CgroupTarget,
    };
    if !need_root() {
        return;
    }
    let pair = match VethPair::new("share") {
        Ok(pair) => pair,
        Err(why) => return skip(&format!("no veth network namespaces: {why}")),
    };
    let counter = UdpCounter::start(Some(&pair.b), pair.addr_b);
    let addr = counter.addr.to_string();
    let (a, b) = (
        TestCgroup::new("net-share-a"),
        TestCgroup::new("net-share-b"),
    );
    let fault = NetFault {
        effect: NetEffect::Drop,
        direction: Direction::Egress,
        protocol: Some(Protocol::Udp),
        port: None,
        peer: None,
        probability: 1.0,
        dry_run: false,
        deadline: None,
    };
    let start = |cgroup: &TestCgroup| {
        let target = CgroupTarget::from_path(&cgroup.path).unwrap();
        PacketInjector::start(&[(fault.rule(&target), cgroup.path.clone())], &[], None)
    };
    let first = match start(&a) {
        Ok(injector) => injector,
        Err(err) => return skip(&format!("cgroup_skb programs do not load: {err}")),
    };
    let second = start(&b).unwrap();
    assert_eq!(loaded("chaos_skb_egress"), 1, "one program for both faults");

    const N: u64 = 50;
    let n = N.to_string();
    let send = |cgroup: Option<&TestCgroup>| {
        let mut cmd = client(&pair.a, &["udp-send", &addr, &n]);
        let out = json_out(match cgroup {
            Some(cgroup) => cgroup.spawn(&mut cmd),
            None => cmd.spawn().unwrap(),
        });
        assert_eq!(out["errors"], 0, "{out}");
    };
    send(Some(&a));
    send(Some(&b));
    send(None);
    assert_eq!(first.counters().unwrap()[0].affected, N, "a's fault");
    assert_eq!(second.counters().unwrap()[0].affected, N, "b's fault");

    // The first fault goes: a sends freely, b still loses everything.
    drop(first);
    assert_eq!(loaded("chaos_skb_egress"), 1);
    send(Some(&a));
    send(Some(&b));
    assert_eq!(second.counters().unwrap()[0].affected, 2 * N, "b's fault");
    drop(second);
    let (received, _) = counter.stop();
    // Outside (N) and a once its fault was gone (N); everything else was dropped.
    assert_eq!(received, 2 * N);
    drop(pair);
    assert_nothing_left();
}
