//! Two network namespaces joined by a veth pair, for packet tests that must not see the
//! machine's other traffic (each namespace has its own /proc/net/snmp counters).
use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    process::Command,
};

/// Namespaces `<name>-a` (address 10.199.N.1) and `<name>-b` (10.199.N.2), linked by a veth
/// pair and removed on drop.
pub struct VethPair {
    /// The client side's namespace name (under /run/netns).
    pub a: String,
    /// The server side's namespace name.
    pub b: String,
    /// The address in `a`.
    pub addr_a: IpAddr,
    /// The address in `b`.
    pub addr_b: IpAddr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("cannot run `ip` (iproute2): {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl VethPair {
    /// Creates the pair, or says why it cannot (no `ip`, no veth).
    pub fn new(tag: &str) -> Result<VethPair, String> {
        let pid = std::process::id();
        let subnet = (pid % 250) as u8;
        let pair = VethPair {
            a: format!("chaos-{tag}-{pid}-a"),
            b: format!("chaos-{tag}-{pid}-b"),
            addr_a: IpAddr::V4(Ipv4Addr::new(10, 199, subnet, 1)),
            addr_b: IpAddr::V4(Ipv4Addr::new(10, 199, subnet, 2)),
        };
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        ip(&[
            "link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b", "netns",
            b,
        ])?;
        for (ns, dev, addr) in [(a, "veth-a", pair.addr_a), (b, "veth-b", pair.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Runs `f` on a thread that has joined namespace `ns`: sockets it makes stay there.
    pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = File::open(PathBuf::from("/run/netns").join(ns)).expect("netns");
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                    f()
                })
                .join()
                .expect("netns thread")
        })
    }

    /// A counter of namespace `ns` from /proc/net/snmp, e.g. ("Tcp", "RetransSegs").
    pub fn snmp(ns: &str, group: &str, field: &str) -> u64 {
        let text = Self::within(ns, || {
            std::fs::read_to_string("/proc/thread-self/net/snmp")
                .expect("/proc/thread-self/net/snmp")
        });
        let prefix = format!("{group}:");
        let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
        let names: Vec<&str> = lines
            .next()
            .expect("snmp header")
            .split_whitespace()
            .collect();
        let values: Vec<&str> = lines
            .next()
            .expect("snmp values")
            .split_whitespace()
            .collect();
        let at = names
            .iter()
            .position(|n| *n == field)
            .unwrap_or_else(|| panic!("no {group} {field} in /proc/net/snmp"));
        values[at].parse().expect("snmp value")
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it the other end.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

/// Turns off transmit checksum offload on `dev` in namespace `ns` (`ethtool -K DEV tx off`,
/// through the ethtool ioctl): the stack then computes TCP/UDP checksums itself when it builds
/// each packet, and the receiver checks them.
pub fn disable_tx_checksum(ns: &str, dev: &str) -> std::io::Result<()> {
    /// struct ethtool_value.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    VethPair::within(ns, || {
        let mut value = EthtoolValue {
            cmd: ETHTOOL_STXCSUM,
            data: 0,
        };
        // SAFETY: ifreq is plain data; zero is a valid value for every field.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
        // SAFETY: plain syscalls on a socket this function owns; ifr and value outlive them.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let rc = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if rc < 0 { Err(err) } else { Ok(()) }
        }
    })
}

/// `chaos-net [--netns NS] ARGS` with stdout captured.
pub fn net_client(ns: Option<&str>, args: &[&str]) -> std::process::Command {
    let mut cmd = Command::new(crate::workload_bin().with_file_name("chaos-net"));
    if let Some(ns) = ns {
        cmd.args(["--netns", ns]);
    }
    cmd.args(args).stdout(std::process::Stdio::piped());
    cmd
}

/// Waits for a `chaos-net` and parses the JSON line it printed.
pub fn net_result(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("waiting for chaos-net");
    assert!(out.status.success(), "chaos-net failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("chaos-net JSON")
}

/// A UDP socket counting the datagrams that arrive, and those whose payload is not the
/// `chaos-net udp-send` pattern (all bytes 0x5a), until [`UdpCounter::stop`].
pub struct UdpCounter {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<(u64, u64)>,
}

impl UdpCounter {
    /// Listens on `ip`, inside namespace `ns` if given.
    pub fn start(ns: Option<&str>, ip: IpAddr) -> UdpCounter {
        use std::{
            os::fd::AsRawFd as _,
            sync::{Arc, atomic::Ordering},
        };
        let bind = || std::net::UdpSocket::bind((ip, 0)).expect("bind");
        let socket = match ns {
            Some(ns) => VethPair::within(ns, bind),
            None => bind(),
        };
        // A receive buffer that holds a whole test's datagrams: a reader thread slowed down
        // by a busy machine (or emulation) must not lose any to a full buffer.
        let size: libc::c_int = 16 << 20;
        // SAFETY: setsockopt on a socket this function owns, with a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let done: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let stop = Arc::clone(&done);
        let reader = std::thread::spawn(move || {
            let (mut received, mut altered) = (0, 0);
            let mut buf = [0u8; 2048];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        received += 1;
                        if buf[..n].iter().any(|b| *b != 0x5a) {
                            altered += 1;
                        }
                    }
                    // Nothing for a while: done once told so (the buffer is drained).
                    Err(_) if stop.load(Ordering::SeqCst) => return (received, altered),
                    Err(_) => {}
                }
            }
        });
        UdpCounter { addr, done, reader }
    }

    /// Waits for stragglers, drains what arrived and returns (received, altered).
    pub fn stop(self) -> (u64, u64) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.reader.join().expect("UDP reader")
    }
}
