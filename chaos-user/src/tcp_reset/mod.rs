//! TCP resets: the target's established TCP connections that match are aborted, as `ss -K`
//! does: the kernel sends the peer an RST (its next call fails with ECONNRESET) and the
//! target's next call on the socket fails with ECONNABORTED.
//!
//! Mechanism: the kernel's socket diagnostics (NETLINK_SOCK_DIAG) list the established
//! connections with the cgroup of their socket (INET_DIAG_CGROUP_ID, 5.9+) and their segment
//! counts; SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY, which Debian, Ubuntu, Fedora and this
//! project's hosts enable) aborts one through `tcp_abort`. Chosen over `bpf_sock_destroy` from
//! a TCP iterator (6.5+, a kfunc in a tracing program, with the same `tcp_abort` and errno)
//! because it needs no program at all, so it works on every kernel chaos targets, the host's
//! included, and leaves nothing in the kernel when chaos dies; and over an RST written by a tc
//! program, which would need the connection's current sequence numbers and a packet to rewrite.
//! A thread polls every 20 ms, in the target's network namespace, so a connection is reset
//! within about 20 ms of passing `--after-segments`.
use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use crate::{Error, fault::Cidr, target::CgroupTarget};

mod diag;

/// Which end of a connection `--port` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetDirection {
    /// Connections the target opened: `--port` is the peer's.
    Outbound,
    /// Connections the target accepted: `--port` is its own.
    Inbound,
    /// Either.
    Both,
}

impl std::str::FromStr for ResetDirection {
    type Err = Error;

    fn from_str(s: &str) -> Result<ResetDirection, Error> {
        match s {
            "outbound" => Ok(ResetDirection::Outbound),
            "inbound" => Ok(ResetDirection::Inbound),
            "both" => Ok(ResetDirection::Both),
            _ => Err(Error::Invalid {
                field: "direction",
                value: s.to_owned(),
                expected: "outbound (the target connected; --port is the peer's), inbound (the \
                           target accepted; --port is its own) or both"
                    .into(),
            }),
        }
    }
}

/// A TCP reset fault, every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpResetFault {
    /// Only connections with this port (see [`ResetDirection`]).
    pub port: Option<u16>,
    /// Only connections to or from peers in this network.
    pub peer: Option<Cidr>,
    /// Which end `port` names.
    pub direction: ResetDirection,
    /// Chance that a matching connection is reset, in (0, 1]; 1 when absent.
    pub probability: Option<f64>,
    /// Reset a connection once it has passed this many segments (in and out); at once when
    /// absent.
    pub after_segments: Option<u64>,
    /// Reset every Nth matching connection (1 = each).
    pub every: Option<u64>,
    /// Reset only the connections that exist when the fault starts.
    pub once: bool,
    /// Count what would be reset, reset nothing.
    pub dry_run: bool,
}

impl TcpResetFault {
    /// Checks the probability.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(p) = self.probability
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::Invalid {
                field: "probability",
                value: p.to_string(),
                expected: "a number in (0, 1]".into(),
            });
        }
        Ok(())
    }

    /// Whether a connection with these ports and peer matches the filters.
    pub fn matches(&self, local_port: u16, peer_port: u16, peer: IpAddr) -> bool {
        let port_ok = match (self.port, self.direction) {
            (None, _) => true,
            (Some(p), ResetDirection::Outbound) => peer_port == p,
            (Some(p), ResetDirection::Inbound) => local_port == p,
            (Some(p), ResetDirection::Both) => peer_port == p || local_port == p,
        };
        port_ok && self.peer.is_none_or(|cidr| cidr.contains(peer))
    }

    /// The fault in words.
    pub fn describe(&self) -> String {
        let mut out = String::from("reset");
        if let Some(p) = self.port {
            let end = match self.direction {
                ResetDirection::Outbound => "peer port",
                ResetDirection::Inbound => "local port",
                ResetDirection::Both => "port",
            };
            out.push_str(&format!(" {end} {p}"));
        }
        if let Some(c) = self.peer {
            out.push_str(&format!(" peers in {c}"));
        }
        if let Some(n) = self.after_segments {
            out.push_str(&format!(" after {n} segments"));
        }
        if let Some(p) = self.probability {
            out.push_str(&format!(" with probability {p}"));
        }
        if let Some(n) = self.every {
            out.push_str(&format!(" every {n}th connection"));
        }
        if self.once {
            out.push_str(" (connections at start only)");
        }
        out
    }
}

/// What a TCP reset fault did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpResetCounts {
    /// Established connections of the target that matched the filters.
    pub matched: u64,
    /// Those picked (would have been reset, in a dry run).
    pub injected: u64,
    /// Those the kernel aborted.
    pub reset: u64,
    /// Those that were gone (closed meanwhile) when chaos aborted them.
    pub gone: u64,
}

/// The outcome of one TCP reset fault.
#[derive(Clone, Debug, Serialize)]
pub struct TcpResetReport {
    /// `tcp-reset`.
    pub kind: &'static str,
    /// The fault in words.
    pub fault: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counted.
    pub dry_run: bool,
    /// The counters.
    #[serde(flatten)]
    pub counts: TcpResetCounts,
}

impl fmt::Display for TcpResetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<9} {:>7} {:>8} {:>6} {:>5}  fault; target",
            "kind", "matched", "injected", "reset", "gone"
        )?;
        let dry = if self.dry_run { " (dry run)" } else { "" };
        let c = &self.counts;
        writeln!(
            f,
            "{:<9} {:>7} {:>8} {:>6} {:>5}  {}{dry}; {}",
            self.kind, c.matched, c.injected, c.reset, c.gone, self.fault, self.target
        )
    }
}

#[derive(Default)]
struct Counters {
    matched: AtomicU64,
    injected: AtomicU64,
    reset: AtomicU64,
    gone: AtomicU64,
}

/// A started TCP reset fault: its thread runs until the duration passes or it is dropped.
pub struct TcpResetInjection {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    fault: TcpResetFault,
    target: String,
}

/// How often the connections are looked at.
const POLL: Duration = Duration::from_millis(20);

impl TcpResetInjection {
    /// Opens sock_diag in the target's network namespace, checks that this kernel can list
    /// connections by cgroup and destroy them, and starts resetting, for `duration`.
    pub fn start(
        fault: &TcpResetFault,
        target: &CgroupTarget,
        duration: Duration,
    ) -> Result<TcpResetInjection, Error> {
        fault.validate()?;
        let netns = crate::dns::target_netns(&target.path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            fault: fault.clone(),
            cgroup: target.path.clone(),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&counters),
            until: Instant::now() + duration,
        };
        let thread = thread::Builder::new()
            .name("chaos-tcp-reset".into())
            .spawn(move || {
                if let Some(netns) = netns
                    && let Err(errno) =
                        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                {
                    let _ = tx.send(Err(format!(
                        "cannot enter the target's network namespace: {errno}"
                    )));
                    return;
                }
                let diag = match diag::Diag::open().and_then(|d| d.established().map(|_| d)) {
                    Ok(d) => d,
                    Err(err) => {
                        let _ = tx.send(Err(format!(
                            "cannot list TCP connections through NETLINK_SOCK_DIAG: {err}"
                        )));
                        return;
                    }
                };
                let _ = tx.send(Ok(()));
                worker.run(&diag);
            })
            .map_err(|source| Error::Io {
                path: "chaos-tcp-reset thread".into(),
                source,
            })?;
        let mut injection = TcpResetInjection {
            stop,
            thread: Some(thread),
            counters,
            fault: fault.clone(),
            target: target.path.display().to_string(),
        };
        match rx.recv() {
            Ok(Ok(())) => Ok(injection),
            Ok(Err(why)) => {
                injection.end();
                Err(Error::Unsupported {
                    fault: "tcp-reset".into(),
                    why,
                })
            }
            Err(_) => {
                injection.end();
                Err(Error::Unsupported {
                    fault: "tcp-reset".into(),
                    why: "the reset thread ended before starting".into(),
                })
            }
        }
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The counters now.
    pub fn counts(&self) -> TcpResetCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpResetCounts {
            matched: r(&self.counters.matched),
            injected: r(&self.counters.injected),
            reset: r(&self.counters.reset),
            gone: r(&self.counters.gone),
        }
    }

    /// The report now.
    pub fn report(&self) -> TcpResetReport {
        TcpResetReport {
            kind: "tcp-reset",
            fault: self.fault.describe(),
            target: self.target.clone(),
            dry_run: self.fault.dry_run,
            counts: self.counts(),
        }
    }
}

impl Drop for TcpResetInjection {
    fn drop(&mut self) {
        self.end();
    }
}

struct Worker {
    fault: TcpResetFault,
    cgroup: PathBuf,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    until: Instant,
}

/// What became of a connection the worker has seen.
enum Seen {
    /// Waiting for its segments to pass `after_segments`.
    Waiting,
    /// Decided (reset or spared); never looked at again.
    Done,
}

impl Worker {
    fn run(&self, diag: &diag::Diag) {
        let mut seen: HashMap<u64, Seen> = HashMap::new();
        let mut seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let mut first = true;
        // Connections that reached their turn, for --every.
        let mut decided = 0u64;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < self.until {
            let cgroups = cgroup_ids(&self.cgroup);
            let Ok(connections) = diag.established() else {
                thread::sleep(POLL);
                continue;
            };
            let mut alive = BTreeSet::new();
            for c in connections {
                if !cgroups.contains(&c.cgroup_id)
                    || !self
                        .fault
                        .matches(c.id.source_port, c.id.destination_port, c.peer())
                {
                    continue;
                }
                let cookie = c.cookie();
                alive.insert(cookie);
                match seen.get(&cookie) {
                    Some(Seen::Done) => continue,
                    Some(Seen::Waiting) => {}
                    None => {
                        // --once: only the connections there at the first look.
                        if self.fault.once && !first {
                            continue;
                        }
                        self.counters.matched.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if self.fault.after_segments.is_some_and(|n| c.segments < n) {
                    seen.insert(cookie, Seen::Waiting);
                    continue;
                }
                seen.insert(cookie, Seen::Done);
                decided += 1;
                if self.fault.every.is_some_and(|n| !decided.is_multiple_of(n)) {
                    continue;
                }
                let picked = self.fault.probability.is_none_or(|p| draw(&mut seed) < p);
                if !picked {
                    continue;
                }
                self.counters.injected.fetch_add(1, Ordering::Relaxed);
                if self.fault.dry_run {
                    continue;
                }
                match diag.destroy(&c) {
                    Ok(()) => self.counters.reset.fetch_add(1, Ordering::Relaxed),
                    Err(_) => self.counters.gone.fetch_add(1, Ordering::Relaxed),
                };
            }
            // Forget connections that closed, so that the table stays small.
            seen.retain(|cookie, _| alive.contains(cookie));
            first = false;
            thread::sleep(POLL);
        }
    }
}

/// A uniform draw in [0, 1) (splitmix64).
fn draw(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The cgroup ids (directory inode numbers) of `dir` and every cgroup below it.
fn cgroup_ids(dir: &Path) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(meta) = std::fs::metadata(&d) {
            ids.insert(meta.ino());
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    ids
}

/// Whether this kernel lets chaos list TCP connections by cgroup and abort them: makes a
/// connection over loopback in chaos's own namespace and destroys it, as a fault would.
pub fn probe() -> Result<String, String> {
    let d = diag::Diag::open().map_err(|e| format!("NETLINK_SOCK_DIAG: {e}"))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("a loopback listener: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let client = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let _server = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let local = client.local_addr().map_err(|e| e.to_string())?.port();
    let ours = d
        .established()
        .map_err(|e| format!("listing TCP connections: {e}"))?
        .into_iter()
        .find(|c| c.id.source_port == local && c.id.destination_port == addr.port())
        .ok_or("the probe's own connection is not listed")?;
    if ours.cgroup_id == 0 {
        return Err(
            "the kernel does not report sockets' cgroups (INET_DIAG_CGROUP_ID, 5.9+)".into(),
        );
    }
    d.destroy(&ours).map_err(|e| {
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            "SOCK_DESTROY is not supported (CONFIG_INET_DIAG_DESTROY is off)".to_owned()
        } else {
            format!("SOCK_DESTROY: {e}")
        }
    })?;
    Ok("listed a loopback connection with its cgroup and destroyed it".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault() -> TcpResetFault {
        TcpResetFault {
            port: Some(6379),
            peer: Some("10.0.0.0/8".parse().unwrap()),
            direction: ResetDirection::Outbound,
            probability: None,
            after_segments: None,
            every: None,
            once: false,
            dry_run: false,
        }
    }

    #[test]
    fn port_direction_and_peer_decide() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let f = fault();
        assert!(f.matches(40000, 6379, ip("10.1.2.3")));
        assert!(f.matches(40000, 6379, ip("::ffff:10.1.2.3")));
        assert!(!f.matches(6379, 40000, ip("10.1.2.3")));
        assert!(!f.matches(40000, 6379, ip("192.168.1.1")));
        let inbound = TcpResetFault {
            direction: ResetDirection::Inbound,
            peer: None,
            ..f.clone()
        };
        assert!(inbound.matches(6379, 40000, ip("192.168.1.1")));
        assert!(!inbound.matches(40000, 6379, ip("192.168.1.1")));
        let both = TcpResetFault {
            direction: ResetDirection::Both,
            peer: None,
            ..f
        };
        assert!(both.matches(6379, 1, ip("::1")) && both.matches(1, 6379, ip("::1")));
    }

    #[test]
    fn bad_values_are_named() {
        let f = TcpResetFault {
            probability: Some(0.0),
            ..fault()
        };
        assert!(
            f.validate()
                .unwrap_err()
                .to_string()
                .contains("probability")
        );
        let err = "sideways"
            .parse::<ResetDirection>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("direction") && err.contains("outbound"),
            "{err}"
        );
    }
}
