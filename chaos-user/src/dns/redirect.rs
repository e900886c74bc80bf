//! The kernel half of a DNS fault: the sock_addr programs on the target's cgroup that send its
//! queries to the responder, and the maps they keep.
//!
//! Each fault loads its own instance of the object (like packet faults) rather than sharing the
//! syscall engine's: its state is one config, the servers it saw and a few counters, none of
//! which fits the shared object's rule slots.
use std::{collections::BTreeSet, path::PathBuf};

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr},
};
use chaos_common::dns::{
    DNS_COUNTERS, DNS_NO_SLOT, DNS_REDIRECTED, DNS_SLOTS, DnsConfig, DnsServer,
};

use crate::{
    Error,
    loader::{
        EBPF_OBJECT,
        object::{attach_to_cgroups, program_error, program_mut, read_array, write_array},
    },
};

const CONFIG_MAP: &str = "CHAOS_DNS_CONFIG";
const SERVERS_MAP: &str = "CHAOS_DNS_SERVERS";
const COUNTERS_MAP: &str = "CHAOS_DNS_COUNTERS";

/// The programs, by the family they serve.
const PROGRAMS: [(&str, u32); 6] = [
    ("chaos_dns_connect4", 4),
    ("chaos_dns_sendmsg4", 4),
    ("chaos_dns_recvmsg4", 4),
    ("chaos_dns_connect6", 6),
    ("chaos_dns_sendmsg6", 6),
    ("chaos_dns_recvmsg6", 6),
];

/// The redirect programs attached to one cgroup; dropping this detaches them (every link is a
/// bpf_link fd this process owns, nothing is pinned).
pub(super) struct Redirect {
    ebpf: Ebpf,
}

/// Where the responder reads which server a slot stands for.
pub(super) type Servers = Array<MapData, DnsServer>;

impl Redirect {
    /// Loads the object; returns the servers map for the responder. Nothing is attached yet.
    pub(super) fn load() -> Result<(Redirect, Servers), Error> {
        let mut redirect = Redirect {
            ebpf: crate::kernel_log::quiet_loader().load(EBPF_OBJECT)?,
        };
        let servers = redirect.ebpf.take_map(SERVERS_MAP).expect(SERVERS_MAP);
        let servers: Servers = Array::try_from(servers).map_err(|source| Error::Map {
            map: SERVERS_MAP,
            source,
        })?;
        Ok((redirect, servers))
    }

    /// Writes `config` and attaches the programs to `cgroup`. On error, whatever was attached
    /// goes with `self`.
    pub(super) fn attach(&mut self, config: &DnsConfig, cgroup: &PathBuf) -> Result<(), Error> {
        write_array(&mut self.ebpf, CONFIG_MAP, [*config])?;
        let dirs: BTreeSet<&PathBuf> = [cgroup].into_iter().collect();
        for (name, family) in PROGRAMS {
            let skip = if family == 4 {
                config.skip4
            } else {
                config.skip6
            };
            if skip != 0 {
                continue;
            }
            let prog: &mut CgroupSockAddr = program_mut(&mut self.ebpf, name)?;
            prog.load()
                .map_err(|source| program_error(name, "load", source))?;
            attach_to_cgroups(name, &dirs, |cgroup| {
                prog.attach(cgroup, CgroupAttachMode::Single).map(drop)
            })?;
        }
        Ok(())
    }

    /// (redirected, left alone for want of a slot).
    pub(super) fn counters(&self) -> Result<(u64, u64), Error> {
        let c: Vec<u64> = read_array(&self.ebpf, COUNTERS_MAP, DNS_COUNTERS as usize)?;
        Ok((c[DNS_REDIRECTED as usize], c[DNS_NO_SLOT as usize]))
    }
}

/// The server `slot` stands for, once a program gave it out.
pub(super) fn server_of(servers: &Servers, slot: u32) -> Option<std::net::SocketAddr> {
    if slot >= DNS_SLOTS {
        return None;
    }
    let s = servers.get(&slot, 0).ok()?;
    let port = u16::try_from(s.port).ok()?;
    match s.family {
        4 => Some((std::net::Ipv4Addr::from(s.addr[0].to_ne_bytes()), port).into()),
        6 => {
            let mut b = [0u8; 16];
            for (i, w) in s.addr.iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
            Some((std::net::Ipv6Addr::from(b), port).into())
        }
        _ => None,
    }
}
