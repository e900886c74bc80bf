//! The user half of a DNS fault: sockets on the loopback of the target's network namespace
//! that receive the queries the kernel programs redirect, answer the faulted ones and pass
//! the rest to the server the target asked.
//!
//! One thread polls every socket; a query that has to wait (forwarded, delayed, or a TCP
//! connection) gets a thread of its own, so a slow server holds up nobody else. Every thread
//! is in the target's network namespace (new threads inherit the creating thread's), so the
//! servers are reached as the target reaches them (Docker's 127.0.0.11 included). The
//! responder's own sockets are chaos's, not the target cgroup's: the redirect does not see them.
use std::{
    fs::File,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, SystemTime},
};

use chaos_common::dns::DNS_SLOTS;
use hickory_proto::op::{Message, MessageType, ResponseCode};

use super::{
    Decision, DnsCounts, DnsEffect, DnsFault, Rcode,
    redirect::{Servers, server_of},
};
use crate::Error;

/// How long a forwarded query waits for the server.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// The responder's sockets' ports, per slot (0: none, e.g. IPv6 off in the namespace).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ports {
    pub udp4: [u16; DNS_SLOTS as usize],
    pub tcp4: [u16; DNS_SLOTS as usize],
    pub udp6: [u16; DNS_SLOTS as usize],
    pub tcp6: [u16; DNS_SLOTS as usize],
}

#[derive(Default)]
pub(super) struct Counters {
    seen: AtomicU64,
    matched: AtomicU64,
    injected: AtomicU64,
    nxdomain: AtomicU64,
    servfail: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    forwarded: AtomicU64,
    upstream_failed: AtomicU64,
    malformed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn read(&self) -> DnsCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsCounts {
            seen: r(&self.seen),
            matched: r(&self.matched),
            injected: r(&self.injected),
            nxdomain: r(&self.nxdomain),
            servfail: r(&self.servfail),
            refused: r(&self.refused),
            dropped: r(&self.dropped),
            delayed: r(&self.delayed),
            forwarded: r(&self.forwarded),
            upstream_failed: r(&self.upstream_failed),
            malformed: r(&self.malformed),
            ..DnsCounts::default()
        }
    }
}

/// What every responder thread shares.
struct Shared {
    fault: DnsFault,
    servers: Servers,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    /// For the probability draws.
    seed: AtomicU64,
}

/// The running responder; dropping it stops every thread.
pub(super) struct Responder {
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    pub(super) counters: Arc<Counters>,
}

struct Sockets {
    /// (slot, socket).
    udp: Vec<(u32, UdpSocket)>,
    tcp: Vec<(u32, TcpListener)>,
}

impl Responder {
    /// Opens the sockets (in `netns` when given) and starts answering. Returns the ports the
    /// kernel programs redirect to.
    pub(super) fn start(
        fault: DnsFault,
        servers: Servers,
        netns: Option<File>,
    ) -> Result<(Responder, Ports), Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        let shared = Arc::new(Shared {
            fault,
            servers,
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            seed: AtomicU64::new(seed),
        });
        let (tx, rx) = mpsc::channel();
        let poller = thread::Builder::new()
            .name("chaos-dns".into())
            .spawn(move || {
                if let Some(netns) = netns
                    && let Err(errno) =
                        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                {
                    let _ = tx.send(Err(Error::Unsupported {
                        fault: "dns".into(),
                        why: format!("cannot enter the target's network namespace: {errno}"),
                    }));
                    return;
                }
                match open() {
                    Ok((sockets, ports)) => {
                        let _ = tx.send(Ok(ports));
                        poll_loop(&shared, sockets);
                    }
                    Err(err) => {
                        let _ = tx.send(Err(err));
                    }
                }
            })
            .map_err(|source| Error::Io {
                path: "chaos-dns thread".into(),
                source,
            })?;
        let mut responder = Responder {
            stop,
            poller: Some(poller),
            counters,
        };
        let ports = match rx.recv() {
            Ok(result) => result?,
            Err(_) => {
                responder.stop_threads();
                return Err(Error::Unsupported {
                    fault: "dns".into(),
                    why: "the responder thread ended before opening its sockets".into(),
                });
            }
        };
        Ok((responder, ports))
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn io_error(what: &str, source: std::io::Error) -> Error {
    Error::Io {
        path: what.into(),
        source,
    }
}

/// A UDP socket and a TCP listener per slot on 127.0.0.1, and on ::1 where IPv6 is up.
fn open() -> Result<(Sockets, Ports), Error> {
    let mut sockets = Sockets {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    let mut ports = Ports::default();
    let v4: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    let v6: SocketAddr = (Ipv6Addr::LOCALHOST, 0).into();
    for slot in 0..DNS_SLOTS {
        let i = slot as usize;
        let udp = UdpSocket::bind(v4).map_err(|e| io_error("udp 127.0.0.1", e))?;
        ports.udp4[i] = udp.local_addr().map_err(|e| io_error("udp", e))?.port();
        sockets.udp.push((slot, udp));
        let tcp = TcpListener::bind(v4).map_err(|e| io_error("tcp 127.0.0.1", e))?;
        ports.tcp4[i] = tcp.local_addr().map_err(|e| io_error("tcp", e))?.port();
        sockets.tcp.push((slot, tcp));
        // No ::1 (IPv6 disabled in the namespace): IPv6 queries are left alone.
        if let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(v6), TcpListener::bind(v6)) {
            ports.udp6[i] = udp.local_addr().map_err(|e| io_error("udp", e))?.port();
            ports.tcp6[i] = tcp.local_addr().map_err(|e| io_error("tcp", e))?.port();
            sockets.udp.push((slot, udp));
            sockets.tcp.push((slot, tcp));
        }
    }
    for (_, s) in &sockets.udp {
        s.set_nonblocking(true).map_err(|e| io_error("udp", e))?;
    }
    for (_, s) in &sockets.tcp {
        s.set_nonblocking(true).map_err(|e| io_error("tcp", e))?;
    }
    Ok((sockets, ports))
}

fn poll_loop(shared: &Arc<Shared>, sockets: Sockets) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = sockets
            .udp
            .iter()
            .map(|(_, s)| s.as_fd().as_raw_fd())
            .chain(sockets.tcp.iter().map(|(_, s)| s.as_fd().as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the length given.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            workers.retain(|w| !w.is_finished());
            continue;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            if let Some((slot, udp)) = sockets.udp.get(i) {
                while let Ok((len, client)) = udp.recv_from(&mut buf) {
                    let query = buf[..len].to_vec();
                    if let Some(w) = on_udp(shared, *slot, udp, client, query) {
                        workers.push(w);
                    }
                }
            } else if let Some((slot, tcp)) = sockets.tcp.get(i - sockets.udp.len()) {
                while let Ok((stream, _)) = tcp.accept() {
                    let shared = Arc::clone(shared);
                    let slot = *slot;
                    if let Ok(w) = thread::Builder::new()
                        .name("chaos-dns-tcp".into())
                        .spawn(move || serve_tcp(&shared, slot, stream))
                    {
                        workers.push(w);
                    }
                }
            }
        }
        workers.retain(|w| !w.is_finished());
    }
    for w in workers {
        let _ = w.join();
    }
}

/// What to do with one query message: its verdict, counted.
enum Verdict {
    Answer(Vec<u8>),
    Drop,
    Forward(Duration),
}

fn verdict(shared: &Shared, query: &[u8]) -> Verdict {
    let c = &shared.counters;
    let Ok(message) = Message::from_vec(query) else {
        bump(&c.malformed);
        return Verdict::Drop;
    };
    if message.metadata.message_type != MessageType::Query {
        bump(&c.malformed);
        return Verdict::Drop;
    }
    bump(&c.seen);
    let name = message
        .queries
        .first()
        .map(|q| q.name().to_string())
        .unwrap_or_default();
    let decision = shared.fault.decide(&name, draw(&shared.seed));
    match decision {
        Decision::Forward { matched, picked } => {
            if matched {
                bump(&c.matched);
            }
            if picked {
                bump(&c.injected);
            }
            Verdict::Forward(Duration::ZERO)
        }
        Decision::Fault(effect) => {
            bump(&c.matched);
            bump(&c.injected);
            match effect {
                DnsEffect::Rcode(rcode) => {
                    let (counter, code) = match rcode {
                        Rcode::Nxdomain => (&c.nxdomain, ResponseCode::NXDomain),
                        Rcode::Servfail => (&c.servfail, ResponseCode::ServFail),
                        Rcode::Refused => (&c.refused, ResponseCode::Refused),
                    };
                    bump(counter);
                    let mut answer =
                        Message::error_msg(message.metadata.id, message.metadata.op_code, code);
                    answer.metadata.recursion_desired = message.metadata.recursion_desired;
                    answer.metadata.recursion_available = true;
                    answer.add_queries(message.queries.clone());
                    match answer.to_vec() {
                        Ok(bytes) => Verdict::Answer(bytes),
                        Err(_) => Verdict::Drop,
                    }
                }
                DnsEffect::Drop => {
                    bump(&c.dropped);
                    Verdict::Drop
                }
                DnsEffect::Delay(d) => {
                    bump(&c.delayed);
                    Verdict::Forward(d)
                }
            }
        }
    }
}

/// A uniform draw in [0, 1) (splitmix64 over a shared counter: no crate for ten lines).
fn draw(seed: &AtomicU64) -> f64 {
    let mut z = seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Sleeps `d`, or less if the responder stops; false if it stopped.
fn wait(shared: &Shared, d: Duration) -> bool {
    let end = std::time::Instant::now() + d;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(TICK));
    }
}

fn on_udp(
    shared: &Arc<Shared>,
    slot: u32,
    socket: &UdpSocket,
    client: SocketAddr,
    query: Vec<u8>,
) -> Option<JoinHandle<()>> {
    match verdict(shared, &query) {
        Verdict::Answer(bytes) => {
            let _ = socket.send_to(&bytes, client);
            None
        }
        Verdict::Drop => None,
        Verdict::Forward(delay) => {
            let shared = Arc::clone(shared);
            let socket = socket.try_clone().ok()?;
            thread::Builder::new()
                .name("chaos-dns-udp".into())
                .spawn(move || {
                    if !wait(&shared, delay) {
                        return;
                    }
                    match forward_udp(&shared, slot, &query) {
                        Some(answer) => {
                            bump(&shared.counters.forwarded);
                            let _ = socket.send_to(&answer, client);
                        }
                        None => bump(&shared.counters.upstream_failed),
                    }
                })
                .ok()
        }
    }
}

fn forward_udp(shared: &Shared, slot: u32, query: &[u8]) -> Option<Vec<u8>> {
    let server = server_of(&shared.servers, slot)?;
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(server).ok()?;
    socket.send(query).ok()?;
    socket.set_read_timeout(Some(TICK)).ok()?;
    let mut buf = vec![0u8; 65536];
    let end = std::time::Instant::now() + UPSTREAM_TIMEOUT;
    while std::time::Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            // The answer to this query (same id), not a stray one.
            Ok(len) if len >= 2 && buf[..2] == query[..2] => return Some(buf[..len].to_vec()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Reads one length-prefixed message; `None` at the end of the stream or when stopping.
fn read_tcp_message(shared: &Shared, stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut read_exact = |buf: &mut [u8]| -> Option<()> {
        let mut done = 0;
        while done < buf.len() {
            if shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            match stream.read(&mut buf[done..]) {
                Ok(0) => return None,
                Ok(n) => done += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
        Some(())
    };
    let mut len = [0u8; 2];
    read_exact(&mut len)?;
    let mut message = vec![0u8; u16::from_be_bytes(len) as usize];
    read_exact(&mut message)?;
    Some(message)
}

fn write_tcp_message(stream: &mut TcpStream, message: &[u8]) -> Option<()> {
    let len = u16::try_from(message.len()).ok()?;
    stream.write_all(&len.to_be_bytes()).ok()?;
    stream.write_all(message).ok()
}

fn serve_tcp(shared: &Shared, slot: u32, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    while let Some(query) = read_tcp_message(shared, &mut stream) {
        match verdict(shared, &query) {
            Verdict::Answer(bytes) => {
                if write_tcp_message(&mut stream, &bytes).is_none() {
                    return;
                }
            }
            // Keep the connection open and silent: the client times out, as with UDP.
            Verdict::Drop => {}
            Verdict::Forward(delay) => {
                if !wait(shared, delay) {
                    return;
                }
                match forward_tcp(shared, slot, &query) {
                    Some(answer) => {
                        bump(&shared.counters.forwarded);
                        if write_tcp_message(&mut stream, &answer).is_none() {
                            return;
                        }
                    }
                    None => {
                        bump(&shared.counters.upstream_failed);
                        return;
                    }
                }
            }
        }
    }
}

fn forward_tcp(shared: &Shared, slot: u32, query: &[u8]) -> Option<Vec<u8>> {
    let server = server_of(&shared.servers, slot)?;
    let mut upstream = TcpStream::connect_timeout(&server, UPSTREAM_TIMEOUT).ok()?;
    upstream.set_read_timeout(Some(TICK)).ok()?;
    write_tcp_message(&mut upstream, query)?;
    read_tcp_message(shared, &mut upstream)
}
