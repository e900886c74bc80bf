//! `chaos inject dns` end to end: a real resolver (dnsmasq) serving a test zone, real clients
//! (glibc's getaddrinfo through Python, dig) in the target cgroup and outside it. The kernel
//! programs are cgroup sock_addr programs, which load on the host kernel; the tests need
//! dnsmasq and python3, which the VM tier's guest lacks, so they run on the host tier.
use std::time::Duration;

use chaos_tests::{dns::*, docker::*, *};
use serde_json::Value;

/// The address the test's dnsmasq listens on (loopback, port 53).
const SERVER: &str = "127.0.0.77";

/// Root, dnsmasq running on `addrs`, and the client tools; `None` after a SKIP line.
fn resolver(addrs: &[&str]) -> Option<Dnsmasq> {
    if host_only("dnsmasq and python3") || !need_root() {
        return None;
    }
    if let Some(missing) = dns::client_missing() {
        skip(&missing);
        return None;
    }
    match Dnsmasq::start(addrs) {
        Ok(d) => Some(d),
        Err(why) => {
            skip(&why);
            None
        }
    }
}

/// Starts `chaos inject dns ARGS --json --cgroup CGROUP` and waits until it injects.
fn inject(cgroup: &TestCgroup, args: &[&str]) -> ChaosRun {
    let mut all = vec!["inject", "dns"];
    all.extend(args);
    all.extend([
        "--json",
        "--standalone",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    let mut run = ChaosRun::start(&all);
    run.wait_injecting().expect("chaos injecting");
    run
}

/// The DNS report's counters.
fn counts(outcome: &ChaosOutcome) -> Value {
    let line = outcome
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"kind\":\"dns\""))
        .unwrap_or_else(|| panic!("no DNS report on stdout: {outcome:?}"));
    serde_json::from_str(line).unwrap()
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

fn result_of<'a>(lookups: &'a [Lookup], name: &str) -> &'a Lookup {
    lookups
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("{name} not in {lookups:?}"))
}

#[test]
fn nxdomain_for_one_domain_gives_eai_noname_and_leaves_the_rest_alone() {
    let Some(_dnsmasq) = resolver(&[SERVER]) else {
        return;
    };
    let cgroup = TestCgroup::new("dns-nxdomain");
    let run = inject(&cgroup, &["--domain", "bad.test", "--rcode", "NXDOMAIN"]);

    let inside = getaddrinfo(Some(&cgroup), SERVER, 2, &["www.bad.test", "www.ok.test"]);
    let outside = getaddrinfo(None, SERVER, 2, &["www.bad.test"]);
    let outcome = run.interrupt();

    assert_eq!(
        result_of(&inside, "www.bad.test").result,
        "EAI_NONAME",
        "{inside:?}"
    );
    assert_eq!(
        result_of(&inside, "www.ok.test").result,
        OK_ADDR,
        "{inside:?}"
    );
    assert_eq!(
        result_of(&outside, "www.bad.test").result,
        BAD_ADDR,
        "bystander: {outside:?}"
    );
    let report = counts(&outcome);
    // One A query per getaddrinfo(AF_INET), one try each.
    assert_eq!(count(&report, "seen"), 2, "{report}");
    assert_eq!(count(&report, "matched"), 1, "{report}");
    assert_eq!(count(&report, "injected"), 1, "{report}");
    assert_eq!(count(&report, "nxdomain"), 1, "{report}");
    assert_eq!(count(&report, "forwarded"), 1, "{report}");
    assert_eq!(count(&report, "redirected"), 2, "{report}");
    assert!(outcome.status.success(), "{outcome:?}");
    assert_nothing_left();
}

#[test]
fn servfail_gives_eai_again() {
    let Some(_dnsmasq) = resolver(&[SERVER]) else {
        return;
    };
    let cgroup = TestCgroup::new("dns-servfail");
    let run = inject(&cgroup, &["--rcode", "SERVFAIL"]);
    let inside = getaddrinfo(Some(&cgroup), SERVER, 2, &["www.ok.test"]);
    let outcome = run.interrupt();
    assert_eq!(inside[0].result, "EAI_AGAIN", "{inside:?}");
    let report = counts(&outcome);
    assert_eq!(
        count(&report, "servfail"),
        count(&report, "seen"),
        "{report}"
    );
    assert!(count(&report, "servfail") >= 1, "{report}");
    assert_eq!(count(&report, "forwarded"), 0, "{report}");
    assert_nothing_left();
}

#[test]
fn dropped_queries_time_out_and_delayed_ones_arrive_late() {
    let Some(_dnsmasq) = resolver(&[SERVER]) else {
        return;
    };
    let cgroup = TestCgroup::new("dns-drop");
    let run = inject(&cgroup, &["--domain", "bad.test", "--drop"]);
    let inside = getaddrinfo(Some(&cgroup), SERVER, 1, &["x.bad.test", "x.ok.test"]);
    let outcome = run.interrupt();
    let dropped = result_of(&inside, "x.bad.test");
    assert_eq!(dropped.result, "EAI_AGAIN", "{inside:?}");
    // glibc waited its whole 1 s timeout for an answer that never came.
    assert!(dropped.elapsed >= Duration::from_millis(900), "{inside:?}");
    assert_eq!(
        result_of(&inside, "x.ok.test").result,
        OK_ADDR,
        "{inside:?}"
    );
    let report = counts(&outcome);
    assert_eq!(count(&report, "dropped"), 1, "{report}");
    assert_eq!(count(&report, "forwarded"), 1, "{report}");

    // --delay: the real answer, that much later (docs/dns.md: within about 50 ms here).
    let cgroup = TestCgroup::new("dns-delay");
    let run = inject(&cgroup, &["--domain", "ok.test", "--delay", "1500ms"]);
    let inside = getaddrinfo(Some(&cgroup), SERVER, 5, &["slow.ok.test"]);
    let outside = getaddrinfo(None, SERVER, 5, &["slow.ok.test"]);
    let outcome = run.interrupt();
    eprintln!(
        "delayed lookup took {:?}, bystander {:?}",
        inside[0].elapsed, outside[0].elapsed
    );
    assert_eq!(inside[0].result, OK_ADDR, "{inside:?}");
    assert!(
        inside[0].elapsed >= Duration::from_millis(1500),
        "{inside:?}"
    );
    // A bound for a hang, not a measurement: BENCHMARKS-style numbers are in docs/dns.md.
    assert!(
        inside[0].elapsed < Duration::from_millis(4000),
        "{inside:?}"
    );
    assert!(
        outside[0].elapsed < Duration::from_millis(1000),
        "{outside:?}"
    );
    let report = counts(&outcome);
    assert_eq!(count(&report, "delayed"), 1, "{report}");
    assert_eq!(count(&report, "forwarded"), 1, "{report}");
    assert_nothing_left();
}

#[test]
fn tcp_queries_are_faulted_too_and_dry_run_only_counts() {
    let Some(_dnsmasq) = resolver(&[SERVER]) else {
        return;
    };
    if !std::path::Path::new("/usr/bin/dig").exists() {
        return skip("dig is not installed (Debian: bind9-dnsutils)");
    }
    let dig = |cgroup: &TestCgroup, tcp: bool, name: &str| -> String {
        let mut command = std::process::Command::new("/usr/bin/dig");
        command
            .args(["+tries=1", "+time=2", &format!("@{SERVER}"), name])
            .args(tcp.then_some("+tcp"))
            .stdout(std::process::Stdio::piped());
        let out = cgroup.spawn(&mut command).wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cgroup = TestCgroup::new("dns-tcp");
    let run = inject(&cgroup, &["--domain", "bad.test", "--rcode", "REFUSED"]);
    let tcp_bad = dig(&cgroup, true, "a.bad.test");
    let tcp_ok = dig(&cgroup, true, "a.ok.test");
    let outcome = run.interrupt();
    assert!(tcp_bad.contains("status: REFUSED"), "{tcp_bad}");
    assert!(
        tcp_ok.contains("status: NOERROR") && tcp_ok.contains(OK_ADDR),
        "{tcp_ok}"
    );
    let report = counts(&outcome);
    assert_eq!(
        (
            count(&report, "seen"),
            count(&report, "refused"),
            count(&report, "forwarded")
        ),
        (2, 1, 1),
        "{report}"
    );

    let run = inject(&cgroup, &["--rcode", "NXDOMAIN", "--dry-run"]);
    let udp = dig(&cgroup, false, "b.bad.test");
    let outcome = run.interrupt();
    assert!(
        udp.contains("status: NOERROR") && udp.contains(BAD_ADDR),
        "{udp}"
    );
    let report = counts(&outcome);
    assert_eq!(
        (
            count(&report, "matched"),
            count(&report, "injected"),
            count(&report, "nxdomain")
        ),
        (1, 1, 0),
        "{report}"
    );
    assert_nothing_left();
}

#[test]
fn bad_options_are_named_and_change_nothing() {
    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("dns-bad");
    let path = cgroup.path.to_str().unwrap();
    for (args, words) in [
        (
            vec!["--rcode", "NOERROR"],
            &["rcode", "NOERROR", "NXDOMAIN"][..],
        ),
        (vec!["--domain", "a b", "--drop"], &["domain", "a b"][..]),
        (vec!["--delay", "5m"], &["delay", "at most"][..]),
        (
            vec!["--drop", "--server", "10.0.0.0/99"],
            &["server", "10.0.0.0/99"][..],
        ),
        (
            vec!["--drop", "--probability", "2"],
            &["probability", "2"][..],
        ),
    ] {
        let mut all = vec!["inject", "dns"];
        all.extend(&args);
        all.extend(["--standalone", "--cgroup", path]);
        let out = chaos(&all);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        for w in words {
            assert!(
                out.stderr.contains(w),
                "{args:?}: {w} not in {}",
                out.stderr
            );
        }
    }
    assert_nothing_left();
}

#[test]
fn a_container_with_its_own_network_namespace_is_faulted_and_its_twin_is_not() {
    if host_only("a Docker engine") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    let Some(dig) = ["/usr/bin/dig"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return skip("dig is not installed (Debian: bind9-dnsutils)");
    };
    let sleep = std::path::Path::new("/bin/sleep");
    let image = Image::with_binaries("dns", &[std::path::Path::new(dig), sleep]);
    // The default bridge: each container has a network namespace of its own.
    let options = ["--network".to_owned(), "bridge".to_owned()];
    let argv = ["/sleep".to_owned(), "600".to_owned()];
    let target = Container::run_with(&image, "dns-target", &options, &argv);
    let twin = Container::run_with(&image, "dns-twin", &options, &argv);
    // The containers reach the test's resolver on their bridge's gateway (the host).
    let gateway = docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.Gateway}}",
        &target.id,
    ])
    .expect("docker inspect");
    let Some(_dnsmasq) = resolver(&[SERVER, &gateway]) else {
        return;
    };
    let in_container = |c: &Container, name: &str| -> String {
        docker(&[
            "exec",
            &c.id,
            "/dig",
            "+tries=1",
            "+time=2",
            &format!("@{gateway}"),
            name,
        ])
        .unwrap_or_else(|e| e)
    };
    let mut run = ChaosRun::start(&[
        "inject",
        "dns",
        "--domain",
        "bad.test",
        "--rcode",
        "NXDOMAIN",
        "--json",
        "--standalone",
        "--container",
        target.short_id(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    let bad = in_container(&target, "c.bad.test");
    let ok = in_container(&target, "c.ok.test");
    let twin_bad = in_container(&twin, "c.bad.test");
    let outcome = run.interrupt();
    assert!(bad.contains("status: NXDOMAIN"), "{bad}");
    assert!(
        ok.contains("status: NOERROR") && ok.contains(OK_ADDR),
        "{ok}"
    );
    assert!(
        twin_bad.contains("status: NOERROR") && twin_bad.contains(BAD_ADDR),
        "{twin_bad}"
    );
    let report = counts(&outcome);
    assert_eq!(
        (
            count(&report, "seen"),
            count(&report, "nxdomain"),
            count(&report, "forwarded")
        ),
        (2, 1, 1),
        "{report}"
    );
    drop((target, twin, image));
    assert_nothing_left();
}

/// `chaos-net dns-query SERVER NAME` in `cgroup` (or outside): the answer as JSON.
fn query(cgroup: Option<&TestCgroup>, server: &str, name: &str) -> Value {
    let mut command = netns::net_client(None, &["dns-query", server, name]);
    let child = match cgroup {
        Some(c) => c.spawn(&mut command),
        None => command.spawn().expect("chaos-net"),
    };
    netns::net_result(child)
}

/// Needs nothing but the kernel: the test's own DNS server and `chaos-net`'s raw queries, so
/// that the VM tier's kernels run the redirect, the responder and the recvmsg rewrite too.
#[test]
fn nxdomain_and_forwarding_against_the_tests_own_server() {
    if !need_root() {
        return;
    }
    const OWN: &str = "127.0.0.78:53";
    let server = TestDnsServer::start(OWN);
    let cgroup = TestCgroup::new("dns-own");
    let run = inject(&cgroup, &["--domain", "bad.test", "--rcode", "NXDOMAIN"]);
    let bad = query(Some(&cgroup), OWN, "x.bad.test");
    let ok = query(Some(&cgroup), OWN, "y.ok.test");
    let outside = query(None, OWN, "x.bad.test");
    let outcome = run.interrupt();

    const NXDOMAIN: u64 = 3;
    assert_eq!(bad["rcode"], NXDOMAIN, "{bad}");
    // recvmsg4 made the responder's answer read as the server's.
    assert_eq!(bad["from"], OWN, "{bad}");
    assert_eq!(
        (ok["rcode"].as_u64(), ok["addrs"][0].as_str()),
        (Some(0), Some(OK_ADDR)),
        "{ok}"
    );
    assert_eq!(ok["from"], OWN, "{ok}");
    assert_eq!(outside["addrs"][0], BAD_ADDR, "bystander: {outside}");
    // The server answered the forwarded query and the bystander's, not the faulted one.
    assert_eq!(
        server.answered.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let report = counts(&outcome);
    for (key, want) in [
        ("seen", 2),
        ("matched", 1),
        ("nxdomain", 1),
        ("forwarded", 1),
        ("redirected", 2),
    ] {
        assert_eq!(count(&report, key), want, "{key}: {report}");
    }
    assert_nothing_left();
}

/// The daemon takes a `dns` spec like any other (`POST /faults`), lists its counters and
/// removes it: queries then reach the server directly again.
#[test]
fn the_daemon_runs_a_dns_fault() {
    use chaos::daemon::client::DaemonClient;
    if !need_root() {
        return;
    }
    const OWN: &str = "127.0.0.79:53";
    let _server = TestDnsServer::start(OWN);
    let cgroup = TestCgroup::new("dns-daemon");
    let socket = scratch("dns-daemon.sock");
    let mut daemon = std::process::Command::new(chaos_bin())
        .args(["daemon", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chaos daemon");
    let client = DaemonClient::new(Some(&socket));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !client.answers() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let fault = client
        .create_json(&serde_json::json!({
            "kind": "dns",
            "domains": ["bad.test"],
            "rcode": "SERVFAIL",
            "target": {"cgroup": cgroup.path},
        }))
        .unwrap();
    assert_eq!(fault.kind, "dns");
    const SERVFAIL: u64 = 2;
    let faulted = query(Some(&cgroup), OWN, "d.bad.test");
    let listed = client.list().unwrap();
    let status = listed.iter().find(|f| f.id == fault.id).unwrap();
    assert_eq!((status.matched, status.injected), (1, 1), "{status:?}");
    assert_eq!(client.remove(fault.id).unwrap().injected, 1);
    let after = query(Some(&cgroup), OWN, "d.bad.test");
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(faulted["rcode"], SERVFAIL, "{faulted}");
    assert_eq!(after["addrs"][0], BAD_ADDR, "after removal: {after}");
    assert_nothing_left();
}

/// IPv6: the connect6/sendmsg6/recvmsg6 programs and the responder's ::1 sockets.
#[test]
fn ipv6_queries_are_faulted_and_forwarded_too() {
    if !need_root() {
        return;
    }
    const OWN6: &str = "[::1]:53";
    let server = TestDnsServer::start(OWN6);
    let cgroup = TestCgroup::new("dns-v6");
    let run = inject(&cgroup, &["--domain", "bad.test", "--rcode", "REFUSED"]);
    let bad = query(Some(&cgroup), OWN6, "v6.bad.test");
    let ok = query(Some(&cgroup), OWN6, "v6.ok.test");
    let outcome = run.interrupt();
    const REFUSED: u64 = 5;
    assert_eq!(
        (bad["rcode"].as_u64(), bad["from"].as_str()),
        (Some(REFUSED), Some(OWN6)),
        "{bad}"
    );
    assert_eq!(ok["addrs"][0], OK_ADDR, "{ok}");
    assert_eq!(ok["from"], OWN6, "{ok}");
    assert_eq!(
        server.answered.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let report = counts(&outcome);
    assert_eq!(
        (count(&report, "refused"), count(&report, "forwarded")),
        (1, 1),
        "{report}"
    );
    assert_nothing_left();
}
