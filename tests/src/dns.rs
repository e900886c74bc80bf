//! What the DNS tests share: a real resolver (dnsmasq) serving a test zone on addresses the
//! test picks, and a real client (glibc's getaddrinfo, through Python) that asks it through a
//! resolv.conf of its own, in a private mount namespace: the machine's /etc/resolv.conf is
//! never touched.
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{TestCgroup, scratch};

/// A dnsmasq answering `*.ok.test` with 10.1.2.3 and `*.bad.test` with 10.9.9.9 (and
/// nothing else: it forwards nowhere), killed on drop.
pub struct Dnsmasq {
    child: Child,
    /// The addresses it listens on, port 53.
    pub addrs: Vec<String>,
}

/// What `ok.test` names resolve to.
pub const OK_ADDR: &str = "10.1.2.3";
/// What `bad.test` names resolve to when no fault is in the way.
pub const BAD_ADDR: &str = "10.9.9.9";

impl Dnsmasq {
    /// Starts dnsmasq on `addrs`; `Err` says what is missing (no dnsmasq installed).
    pub fn start(addrs: &[&str]) -> Result<Dnsmasq, String> {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| fs::metadata(p).is_ok())
            .ok_or("dnsmasq is not installed (Debian: dnsmasq-base; scripts/setup installs it)")?;
        let child = Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--pid-file=",
                "--address=/ok.test/10.1.2.3",
                "--address=/bad.test/10.9.9.9",
            ])
            .arg(format!("--listen-address={}", addrs.join(",")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting dnsmasq: {e}"))?;
        let mut dnsmasq = Dnsmasq {
            child,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        };
        // Ready once it answers (a UDP query for ok.test on the first address).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = dnsmasq.child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                use std::io::Read as _;
                let _ = dnsmasq
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                return Err(format!("dnsmasq exited with {status}: {err}"));
            }
            if query_a(addrs[0], "ready.ok.test").is_some() {
                return Ok(dnsmasq);
            }
            assert!(Instant::now() < deadline, "dnsmasq did not answer in 10 s");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw A query to `server`:53 from the test itself: the answer's rcode, if any came.
fn query_a(server: &str, name: &str) -> Option<u8> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&q, (server, 53)).ok()?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).ok()?;
    (n >= 4).then(|| buf[3] & 0x0f)
}

/// How one getaddrinfo call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// The name asked.
    pub name: String,
    /// The first IPv4 address, or the EAI_* error name (EAI_NONAME, EAI_AGAIN, ...).
    pub result: String,
    /// How long the call took.
    pub elapsed: Duration,
}

const CLIENT: &str = r#"
import json, socket, sys, time
names = {v: k for k, v in vars(socket).items() if k.startswith("EAI_")}
for name in sys.argv[1:]:
    start = time.monotonic()
    try:
        result = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except socket.gaierror as e:
        result = names.get(e.errno, str(e.errno))
    print(json.dumps({"name": name, "result": result, "elapsed": time.monotonic() - start}), flush=True)
"#;

/// Resolves each of `names` in turn with getaddrinfo (IPv4 only: one A query each) against
/// `server`, in `cgroup` (or outside any test cgroup), with `timeout` seconds per try and one
/// try. The client sees its own resolv.conf, bind-mounted over /etc/resolv.conf in a private
/// mount namespace.
pub fn getaddrinfo(
    cgroup: Option<&TestCgroup>,
    server: &str,
    timeout: u32,
    names: &[&str],
) -> Vec<Lookup> {
    let resolv: PathBuf = scratch(&format!("resolv-{server}-{timeout}.conf"));
    fs::write(
        &resolv,
        format!("nameserver {server}\noptions timeout:{timeout} attempts:1\n"),
    )
    .unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /etc/resolv.conf && exec python3 -c \"$0\" \"$@\"",
            resolv.display()
        ))
        .arg(CLIENT)
        .args(names)
        .stdout(Stdio::piped());
    let child = match cgroup {
        Some(cgroup) => cgroup.spawn(&mut command),
        None => command.spawn().expect("unshare"),
    };
    let out = child.wait_with_output().expect("client");
    assert!(out.status.success(), "client failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("client JSON");
            Lookup {
                name: v["name"].as_str().unwrap().to_owned(),
                result: v["result"].as_str().unwrap().to_owned(),
                elapsed: Duration::from_secs_f64(v["elapsed"].as_f64().unwrap()),
            }
        })
        .collect()
}

/// Whether the client's tools are here: unshare and python3.
pub fn client_missing() -> Option<String> {
    for tool in ["unshare", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// A DNS server of the test's own, on a UDP socket, for kernels whose guests have no dnsmasq
/// (the VM tier): A queries for names in `ok.test` get [`OK_ADDR`], in `bad.test`
/// [`BAD_ADDR`], anything else NXDOMAIN. Stops on drop.
pub struct TestDnsServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    /// Queries answered so far.
    pub answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TestDnsServer {
    /// Serves on `addr` (e.g. 127.0.0.78:53).
    pub fn start(addr: &str) -> TestDnsServer {
        use std::sync::atomic::Ordering;

        use hickory_proto::{
            op::{Message, ResponseCode},
            rr::{RData, Record, rdata::A},
        };
        let socket = std::net::UdpSocket::bind(addr).expect("binding the test DNS server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, a) = (stop.clone(), answered.clone());
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(q) = query.queries.first().cloned() else {
                    continue;
                };
                let name = q.name().to_string().to_ascii_lowercase();
                let addr = if name.ends_with(".ok.test.") {
                    Some(OK_ADDR)
                } else if name.ends_with(".bad.test.") {
                    Some(BAD_ADDR)
                } else {
                    None
                };
                let code = if addr.is_some() {
                    ResponseCode::NoError
                } else {
                    ResponseCode::NXDomain
                };
                let mut answer =
                    Message::error_msg(query.metadata.id, query.metadata.op_code, code);
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.add_query(q.clone());
                if let Some(addr) = addr
                    && q.query_type() == hickory_proto::rr::RecordType::A
                {
                    answer.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A(addr.parse().unwrap())),
                    ));
                }
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from);
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        TestDnsServer {
            stop,
            thread: Some(thread),
            answered,
        }
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
