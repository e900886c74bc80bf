//! net-delay and net-rate: earliest departure times set by the cgroup_skb egress program, the
//! fq qdisc holding packets until then. fq is a module the host kernel lacks, so these run in
//! the VM tier (6.1 and 6.12); on the host they check that chaos refuses clearly and skip.
use std::{
    io::Read as _,
    net::{TcpListener, UdpSocket},
    process::Command,
    thread,
};

use chaos_tests::*;
use serde_json::Value;

fn net_bin() -> std::path::PathBuf {
    workload_bin().with_file_name("chaos-net")
}

fn net_client(args: &[&str]) -> Command {
    let mut cmd = Command::new(net_bin());
    cmd.args(args).stdout(std::process::Stdio::piped());
    cmd
}

fn json_out(child: std::process::Child) -> Value {
    let out = child.wait_with_output().expect("waiting for chaos-net");
    assert!(out.status.success(), "chaos-net failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("chaos-net JSON")
}

/// A UDP echo server on 127.0.0.1, outside every target.
fn udp_echo() -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    addr
}

/// A TCP server on 127.0.0.1 that reads each connection to its end.
fn tcp_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// Round-trip times in milliseconds from `chaos-net udp-ping` output.
fn rtts_ms(out: &Value) -> Vec<f64> {
    assert_eq!(out["lost"], 0, "pings lost: {out}");
    out["rtts_us"]
        .as_array()
        .expect("rtts")
        .iter()
        .map(|v| v.as_f64().unwrap() / 1000.0)
        .collect()
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `lo`'s root qdisc as `tc` shows it (kind and handle).
fn lo_root_qdisc() -> String {
    let out = Command::new("tc")
        .args(["qdisc", "show", "dev", "lo", "root"])
        .output()
        .expect("tc");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts chaos; on a kernel without fq, checks that it refuses clearly and skips.
fn start(args: &[&str]) -> Option<ChaosRun> {
    let mut run = ChaosRun::start(args);
    match run.wait_injecting() {
        Ok(()) => Some(run),
        Err(err) => {
            let msg = format!("{err:#}");
            assert!(
                msg.contains("fq") && msg.contains("chaos doctor"),
                "chaos failed without saying fq is missing: {msg}"
            );
            skip(&format!("no fq qdisc on this kernel; chaos refused: {msg}"));
            None
        }
    }
}

#[test]
fn delay_adds_the_requested_rtt_and_restores_the_qdisc() {
    if !need_root() {
        return;
    }
    let addr = udp_echo();
    let before = lo_root_qdisc();
    let cgroup = TestCgroup::new("net-delay");
    let port = addr.rsplit(':').next().unwrap();
    let Some(run) = start(&[
        "inject",
        "net-delay",
        "--delay",
        "100ms",
        "--protocol",
        "udp",
        "--port",
        port,
        "--device",
        "lo",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    assert!(
        lo_root_qdisc().contains("fq"),
        "fq not on lo: {}",
        lo_root_qdisc()
    );
    let inside = cgroup.spawn(&mut net_client(&["udp-ping", &addr, "20"]));
    let outside = net_client(&["udp-ping", &addr, "20"]).spawn().unwrap();
    let inside = rtts_ms(&json_out(inside));
    let outside = rtts_ms(&json_out(outside));
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    // The outsider pings at the same time, under the same load: its RTT is the baseline.
    // Compared at the 10th percentile: fq never releases a packet early, but under TCG
    // emulation on a busy machine its timer (and any RTT) can fire late by many ms.
    let added = quantile(&inside, 0.1) - quantile(&outside, 0.1);
    println!(
        "inside p10 {:.2} median {:.2} ms, outside p10 {:.2} median {:.2} ms",
        quantile(&inside, 0.1),
        median(&inside),
        quantile(&outside, 0.1),
        median(&outside)
    );
    assert!(
        (added - 100.0).abs() <= 10.0,
        "RTT grew by {added:.1} ms, not 100 ms ± 10%: {inside:?}"
    );
    assert!(
        median(&inside) - median(&outside) < 150.0,
        "the median RTT grew far beyond the delay: {inside:?}"
    );
    assert!(
        median(&outside) < 50.0,
        "a process outside the target was delayed: {outside:?}"
    );
    let fault = &outcome.report()["faults"][0];
    assert_eq!(
        (fault["seen"].as_u64(), fault["affected"].as_u64()),
        (Some(20), Some(20)),
        "{fault}"
    );
    assert_eq!(lo_root_qdisc(), before, "lo's root qdisc was not restored");
    assert_nothing_left();
}

#[test]
fn jitter_spreads_the_delay_within_bounds() {
    if !need_root() {
        return;
    }
    let addr = udp_echo();
    let cgroup = TestCgroup::new("net-jitter");
    let Some(run) = start(&[
        "inject",
        "net-delay",
        "--delay",
        "200ms",
        "--jitter",
        "100ms",
        "--protocol",
        "udp",
        "--device",
        "lo",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    let inside = cgroup.spawn(&mut net_client(&["udp-ping", &addr, "50"]));
    // The same pings from outside the target, at the same time: the baseline.
    let outside = net_client(&["udp-ping", &addr, "50"]).spawn().unwrap();
    let inside = rtts_ms(&json_out(inside));
    let baseline = median(&rtts_ms(&json_out(outside)));
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let added: Vec<f64> = inside.iter().map(|r| r - baseline).collect();
    let (p10, p90) = (quantile(&added, 0.1), quantile(&added, 0.9));
    println!(
        "added delay: p10 {p10:.1} median {:.1} p90 {p90:.1} ms",
        median(&added)
    );
    // Uniform in 100..300 ms: p10 about 120, p90 about 280, p90 - p10 about 160. Deciles
    // rather than extremes or the mean, because under TCG emulation on a busy machine a
    // timer or an RTT can come tens of milliseconds late (never early).
    assert!(
        p10 >= 95.0 && p90 <= 330.0,
        "added delays outside 200 ± 100 ms: {added:?}"
    );
    assert!(
        (120.0..=200.0).contains(&(p90 - p10)),
        "the delays do not spread uniformly over ± 100 ms: {added:?}"
    );
    assert_nothing_left();
}

#[test]
fn rate_caps_throughput_within_ten_percent() {
    if !need_root() {
        return;
    }
    let addr = tcp_sink();
    let cgroup = TestCgroup::new("net-rate");
    let Some(run) = start(&[
        "inject",
        "net-rate",
        "--rate",
        "8mbit",
        "--device",
        "lo",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]) else {
        return;
    };
    const BYTES: f64 = 3_000_000.0;
    let bytes = (BYTES as u64).to_string();
    let inside = json_out(cgroup.spawn(&mut net_client(&["tcp-send", &addr, &bytes])));
    let outside = json_out(net_client(&["tcp-send", &addr, &bytes]).spawn().unwrap());
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    let rate = |out: &Value| BYTES / out["secs"].as_f64().unwrap();
    println!(
        "inside {:.0} B/s, outside {:.0} B/s",
        rate(&inside),
        rate(&outside)
    );
    // 8 mbit/s is 1,000,000 bytes/s of IP packets; the payload is a little less.
    assert!(
        (rate(&inside) - 1e6).abs() <= 1e5,
        "the target sent at {:.0} B/s, not 1e6 ± 10%",
        rate(&inside)
    );
    assert!(
        rate(&outside) > 2e6,
        "a process outside the target was slowed to {:.0} B/s",
        rate(&outside)
    );
    let fault = &outcome.report()["faults"][0];
    assert!(fault["bytes"].as_f64().unwrap() >= BYTES, "{fault}");
    assert_nothing_left();
}

#[test]
fn a_failed_install_puts_back_what_it_changed() {
    if !need_root() {
        return;
    }
    let before = lo_root_qdisc();
    let cgroup = TestCgroup::new("net-delay-undo");
    // fq goes on lo first, then the second device does not exist.
    let out = chaos(&[
        "inject",
        "net-delay",
        "--delay",
        "10ms",
        "--device",
        "lo",
        "--device",
        "chaos-nosuchdev",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "chaos: {out:?}");
    assert!(
        out.stderr.contains("chaos-nosuchdev") || out.stderr.contains("fq"),
        "the error does not say what failed: {}",
        out.stderr
    );
    assert_eq!(lo_root_qdisc(), before, "lo's root qdisc was left changed");
    assert_nothing_left();
}
