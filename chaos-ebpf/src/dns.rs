//! DNS faults: cgroup sock_addr programs on the target's cgroup send its DNS queries (UDP
//! `sendmsg`/`connect`, TCP `connect`) to chaos's responder, and make the responder's answers
//! look as if the original server sent them (`recvmsg`). Attached to the target's cgroup
//! only, so no target matching is needed here; the responder decides per query.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_ktime_get_boot_ns,
    macros::{cgroup_sock_addr, map},
    maps::{Array, HashMap},
    programs::SockAddrContext,
};
use chaos_common::dns::{
    DNS_COUNTERS, DNS_NEXT_SLOT, DNS_NO_SLOT, DNS_REDIRECTED, DNS_SLOTS, DnsConfig, DnsServer,
};

use crate::rule::fetch_add;

/// Index 0: what to redirect and where.
#[map]
static CHAOS_DNS_CONFIG: Array<DnsConfig> = Array::with_max_entries(1, 0);

/// Per slot, the server the target addressed (read by the responder to forward).
#[map]
static CHAOS_DNS_SERVERS: Array<DnsServer> = Array::with_max_entries(DNS_SLOTS, 0);

/// Server -> slot, to give each server one slot.
#[map]
static CHAOS_DNS_SLOT_OF: HashMap<DnsServer, u32> = HashMap::with_max_entries(DNS_SLOTS * 4, 0);

/// `DNS_*` counters.
#[map]
static CHAOS_DNS_COUNTERS: Array<u64> = Array::with_max_entries(DNS_COUNTERS, 0);

const SOCK_STREAM: u32 = 1;

#[inline(always)]
fn count(index: u32) -> u64 {
    match CHAOS_DNS_COUNTERS.get_ptr_mut(index) {
        Some(counter) => fetch_add(counter, 1),
        None => 0,
    }
}

/// The server's slot, given one if it has none yet; `None` when every slot is taken.
#[inline(always)]
fn slot_of(server: &DnsServer) -> Option<u32> {
    // SAFETY: a plain map lookup; the value is copied out.
    if let Some(slot) = unsafe { CHAOS_DNS_SLOT_OF.get(server) } {
        return Some(*slot);
    }
    let slot = count(DNS_NEXT_SLOT) as u32;
    if slot >= DNS_SLOTS {
        return None;
    }
    // Record the server before publishing the slot, so the responder never reads an empty one.
    let entry = CHAOS_DNS_SERVERS.get_ptr_mut(slot)?;
    // SAFETY: a pointer into the map value, valid for its size.
    unsafe { *entry = *server };
    if CHAOS_DNS_SLOT_OF
        .insert(server, &slot, BPF_NOEXIST as u64)
        .is_err()
    {
        // Another CPU gave this server a slot first: use that one (this slot stays unused).
        // SAFETY: as above.
        return unsafe { CHAOS_DNS_SLOT_OF.get(server) }.copied();
    }
    Some(slot)
}

/// Where `server`'s query goes instead: the responder's port, if the config matches it.
#[inline(always)]
fn redirect(server: &DnsServer, tcp: bool) -> Option<(DnsConfig, u16)> {
    let config = *CHAOS_DNS_CONFIG.get(0)?;
    if !config.matches(server) {
        return None;
    }
    // SAFETY: a plain helper call.
    if config.deadline_ns != 0 && unsafe { bpf_ktime_get_boot_ns() } >= config.deadline_ns {
        return None;
    }
    let Some(slot) = slot_of(server) else {
        count(DNS_NO_SLOT);
        return None;
    };
    let port = config.responder_port(slot, server.family, tcp);
    if port == 0 {
        return None;
    }
    count(DNS_REDIRECTED);
    Some((config, port))
}

#[inline(always)]
fn server4(ctx: &SockAddrContext) -> (DnsServer, bool) {
    // SAFETY: the kernel hands a valid bpf_sock_addr; user_ip4/user_port/type are readable in
    // the *4 attach types.
    let (ip, port, kind) = unsafe {
        let a = &*ctx.sock_addr;
        (a.user_ip4, a.user_port, a.type_)
    };
    let server = DnsServer {
        family: 4,
        port: u16::from_be(port as u16) as u32,
        addr: [ip, 0, 0, 0],
    };
    (server, kind == SOCK_STREAM)
}

#[inline(always)]
fn server6(ctx: &SockAddrContext) -> (DnsServer, bool) {
    // SAFETY: as for server4; user_ip6 is readable in the *6 attach types. Volatile, word by
    // word: the verifier refuses a load through a ctx pointer LLVM moved to the array first
    // ("dereference of modified ctx ptr").
    let (ip, port, kind) = unsafe {
        let a = ctx.sock_addr;
        (
            [
                core::ptr::read_volatile(&raw const (*a).user_ip6[0]),
                core::ptr::read_volatile(&raw const (*a).user_ip6[1]),
                core::ptr::read_volatile(&raw const (*a).user_ip6[2]),
                core::ptr::read_volatile(&raw const (*a).user_ip6[3]),
            ],
            core::ptr::read_volatile(&raw const (*a).user_port),
            core::ptr::read_volatile(&raw const (*a).type_),
        )
    };
    let server = DnsServer {
        family: 6,
        port: u16::from_be(port as u16) as u32,
        addr: ip,
    };
    (server, kind == SOCK_STREAM)
}

#[inline(always)]
fn redirect4(ctx: &SockAddrContext) -> i32 {
    let (server, tcp) = server4(ctx);
    if let Some((config, port)) = redirect(&server, tcp) {
        // SAFETY: user_ip4 and user_port are writable in connect4 and sendmsg4.
        unsafe {
            (*ctx.sock_addr).user_ip4 = config.responder4;
            (*ctx.sock_addr).user_port = port.to_be() as u32;
        }
    }
    1
}

#[inline(always)]
fn redirect6(ctx: &SockAddrContext) -> i32 {
    let (server, tcp) = server6(ctx);
    if let Some((config, port)) = redirect(&server, tcp) {
        // SAFETY: user_ip6 and user_port are writable in connect6 and sendmsg6. Word by word:
        // the verifier takes only 4-byte stores into user_ip6.
        unsafe {
            let a = &mut *ctx.sock_addr;
            a.user_ip6[0] = config.responder6[0];
            a.user_ip6[1] = config.responder6[1];
            a.user_ip6[2] = config.responder6[2];
            a.user_ip6[3] = config.responder6[3];
            a.user_port = port.to_be() as u32;
        }
    }
    1
}

/// The slot whose responder socket `from` is, if it is one.
#[inline(always)]
fn slot_of_responder(config: &DnsConfig, family: u32, port: u16) -> Option<u32> {
    let mut slot = 0;
    while slot < DNS_SLOTS {
        if config.responder_port(slot, family, false) == port {
            return Some(slot);
        }
        slot += 1;
    }
    None
}

#[cgroup_sock_addr(connect4)]
pub fn chaos_dns_connect4(ctx: SockAddrContext) -> i32 {
    redirect4(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn chaos_dns_sendmsg4(ctx: SockAddrContext) -> i32 {
    redirect4(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn chaos_dns_connect6(ctx: SockAddrContext) -> i32 {
    redirect6(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn chaos_dns_sendmsg6(ctx: SockAddrContext) -> i32 {
    redirect6(&ctx)
}

/// An answer from the responder reads as the original server's, which the client checks.
#[cgroup_sock_addr(recvmsg4)]
pub fn chaos_dns_recvmsg4(ctx: SockAddrContext) -> i32 {
    let Some(config) = CHAOS_DNS_CONFIG.get(0) else {
        return 1;
    };
    let (from, _) = server4(&ctx);
    if from.addr[0] != config.responder4 {
        return 1;
    }
    if let Some(slot) = slot_of_responder(config, 4, from.port as u16)
        && let Some(server) = CHAOS_DNS_SERVERS.get(slot)
        && server.family == 4
    {
        // SAFETY: user_ip4 and user_port are writable in recvmsg4.
        unsafe {
            (*ctx.sock_addr).user_ip4 = server.addr[0];
            (*ctx.sock_addr).user_port = (server.port as u16).to_be() as u32;
        }
    }
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub fn chaos_dns_recvmsg6(ctx: SockAddrContext) -> i32 {
    let Some(config) = CHAOS_DNS_CONFIG.get(0) else {
        return 1;
    };
    let (from, _) = server6(&ctx);
    if from.addr != config.responder6 {
        return 1;
    }
    if let Some(slot) = slot_of_responder(config, 6, from.port as u16)
        && let Some(server) = CHAOS_DNS_SERVERS.get(slot)
        && server.family == 6
    {
        // SAFETY: user_ip6 and user_port are writable in recvmsg6; 4-byte stores.
        unsafe {
            let a = &mut *ctx.sock_addr;
            a.user_ip6[0] = server.addr[0];
            a.user_ip6[1] = server.addr[1];
            a.user_ip6[2] = server.addr[2];
            a.user_ip6[3] = server.addr[3];
            a.user_port = (server.port as u16).to_be() as u32;
        }
    }
    1
}
