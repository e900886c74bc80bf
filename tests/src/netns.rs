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
