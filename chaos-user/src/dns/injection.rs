//! A DNS fault in place: the responder running and the redirect attached.
use std::{fs::File, os::unix::fs::MetadataExt as _, path::Path, time::Duration};

use chaos_common::dns::{DNS_ACTIVE, DnsConfig};

use super::{
    DnsCounts, DnsFault, DnsReport,
    redirect::Redirect,
    responder::{Ports, Responder},
};
use crate::{Error, target::CgroupTarget};

/// A started DNS fault; dropping it detaches the programs, then stops the responder.
pub struct DnsInjection {
    // Dropped in this order: no new query is redirected before the responder goes.
    redirect: Redirect,
    responder: Responder,
    fault: DnsFault,
    target: String,
}

impl DnsInjection {
    /// Starts the responder in the target's network namespace (that of a process in its
    /// cgroup; chaos's own when it has none yet), then attaches the redirect to its cgroup.
    /// All or nothing. With a `deadline`, the programs stop redirecting that long after they
    /// are attached, whatever becomes of this process.
    pub fn start(
        fault: &DnsFault,
        target: &CgroupTarget,
        deadline: Option<Duration>,
    ) -> Result<DnsInjection, Error> {
        fault.validate()?;
        let netns = target_netns(&target.path)?;
        let (mut redirect, servers) = Redirect::load()?;
        let (responder, ports) = Responder::start(fault.clone(), servers, netns)?;
        let mut config = config(fault, &ports);
        if let Some(deadline) = deadline {
            config.deadline_ns = crate::fault::boot_time_ns()?
                .saturating_add(deadline.as_nanos().try_into().unwrap_or(u64::MAX));
        }
        redirect.attach(&config, &target.path)?;
        Ok(DnsInjection {
            redirect,
            responder,
            fault: fault.clone(),
            target: target.path.display().to_string(),
        })
    }

    /// The counters now.
    pub fn counts(&self) -> Result<DnsCounts, Error> {
        let mut counts = self.responder.counters.read();
        (counts.redirected, counts.no_slot) = self.redirect.counters()?;
        Ok(counts)
    }

    /// The report now.
    pub fn report(&self) -> Result<DnsReport, Error> {
        Ok(DnsReport {
            kind: "dns",
            fault: self.fault.describe(),
            target: self.target.clone(),
            dry_run: self.fault.dry_run,
            counts: self.counts()?,
        })
    }
}

fn config(fault: &DnsFault, ports: &Ports) -> DnsConfig {
    let mut config = DnsConfig {
        flags: DNS_ACTIVE,
        port: u32::from(fault.port),
        responder4: u32::from_ne_bytes([127, 0, 0, 1]),
        responder6: {
            let b = std::net::Ipv6Addr::LOCALHOST.octets();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            })
        },
        udp4_ports: ports.udp4,
        tcp4_ports: ports.tcp4,
        udp6_ports: ports.udp6,
        tcp6_ports: ports.tcp6,
        // No ::1 in the namespace: leave IPv6 alone.
        skip6: u32::from(ports.udp6[0] == 0),
        ..DnsConfig::default()
    };
    if let Some(server) = fault.server {
        let (family, net, mask) = server.words();
        if family == 4 {
            config.net4 = net[0];
            config.mask4 = mask[0];
            config.skip6 = 1;
        } else {
            config.net6 = net;
            config.mask6 = mask;
            config.skip4 = 1;
        }
    }
    config
}

/// The network namespace of the first process found in `cgroup` or below, if it is not
/// chaos's own.
pub(crate) fn target_netns(cgroup: &Path) -> Result<Option<File>, Error> {
    let Some(pid) = first_pid(cgroup, 0) else {
        return Ok(None);
    };
    let own = std::fs::metadata("/proc/self/ns/net").map_err(|source| Error::Io {
        path: "/proc/self/ns/net".into(),
        source,
    })?;
    let path = format!("/proc/{pid}/ns/net");
    let Ok(theirs) = std::fs::metadata(&path) else {
        // The process went away meanwhile: look no further, the namespace is ours by default.
        return Ok(None);
    };
    if (own.dev(), own.ino()) == (theirs.dev(), theirs.ino()) {
        return Ok(None);
    }
    File::open(&path).map(Some).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

fn first_pid(cgroup: &Path, depth: u32) -> Option<u32> {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
    if let Some(pid) = procs.lines().find_map(|l| l.trim().parse().ok()) {
        return Some(pid);
    }
    if depth > 8 {
        return None;
    }
    std::fs::read_dir(cgroup)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| first_pid(&e.path(), depth + 1))
}
