//! Packet faults on the sockets of the target cgroup, through cgroup_skb programs: they run
//! only for sockets of tasks in the cgroups they are attached to (and below), and see each
//! packet from its IP header on.
//!
//! Egress: drop, or set the earliest departure time (`skb->tstamp`) for delay and rate, which
//! the fq qdisc on the egress device honours. Ingress: drop.
//!
//! What cgroup programs cannot do (send a copy, rewrite bytes) runs as a tc classifier on the egress devices,
//! which sees every socket's packets and keeps the target's by `bpf_skb_ancestor_cgroup_id`.
use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    helpers::{
        bpf_clone_redirect, bpf_get_prandom_u32, bpf_ktime_get_boot_ns, bpf_ktime_get_ns,
        bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id, generated::bpf_loop,
    },
    macros::{cgroup_skb, classifier, map},
    maps::Array,
    programs::{SkBuffContext, TcContext, sk_buff::SkBuff},
};
use chaos_common::{
    event::{EVENT_DRY_RUN, EVENT_EGRESS, EVENT_NAME_LEN, EVENT_NAMES, EVENT_PACKET},
    filter::{AF_INET, AF_INET6},
    packet::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, MAX_PACKET_RULES, PACKET_DRY_RUN, PACKET_EVENTS,
        PACKET_FIX_CHECKSUM, PacketAction, PacketCounter, PacketRule, PacketState,
    },
};

use crate::{event::zero_words, rule::fetch_add};

/// The packet rules, in slots; inactive slots are skipped.
#[map]
pub static CHAOS_PACKET_RULES: Array<PacketRule> = Array::with_max_entries(MAX_PACKET_RULES, 0);

/// One counter per packet rule slot, updated atomically.
#[map]
pub static CHAOS_PACKET_COUNTERS: Array<PacketCounter> =
    Array::with_max_entries(MAX_PACKET_RULES, 0);

/// Per-rule state kept between packets (rate limiting).
#[map]
pub static CHAOS_PACKET_STATE: Array<PacketState> = Array::with_max_entries(MAX_PACKET_RULES, 0);

/// cgroup_skb verdicts. On egress, 2 drops and tells the sender "congestion" (NET_XMIT_DROP):
/// a UDP sendto then succeeds as if the network lost the datagram, and TCP backs off and
/// retransmits, instead of both failing with EPERM as a plain 0 would make them.
const PASS: i32 = 1;
const DROP_INGRESS: i32 = 0;
const DROP_EGRESS: i32 = 2;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// What the rules filter on, decoded from the packet.
struct Packet {
    protocol: u32,
    /// (local, remote) ports in host order, valid when `has_ports`. (No `Option`s here: see
    /// `PacketRule::matches`.)
    ports: (u16, u16),
    /// Whether the packet is TCP or UDP, first fragment: not 0. (A number, not a `bool`: see
    /// [`Packet::opaque`].)
    has_ports: u32,
    /// 4 or 6.
    family: u32,
    /// The peer's address as packet words; IPv4 in word 0.
    peer: [u32; 4],
    /// Offset of the L4 payload from the IP header.
    payload: usize,
    /// Offset of the L4 checksum from the IP header, for TCP, UDP and ICMP; 0 for none.
    checksum: usize,
}

impl Packet {
    /// The same packet, with every field a value the verifier knows nothing about.
    ///
    /// Each way through [`decode`] (IPv4 or IPv6; TCP, UDP, ICMP or neither; a first fragment
    /// or not) leaves different constants in its fields (family 4, protocol 6, a checksum at
    /// 16, ...), and the verifier walked the slot step once per way: 12 to 18 times per
    /// program (see [`crate::opaque`]). Nothing in the step needs the constants: the helpers
    /// that read and write the packet check their offsets at run time.
    #[inline(always)]
    fn opaque(self) -> Packet {
        // One read of the zero for all the fields (`opaque::hide` reads it per call).
        let zero = crate::opaque::zero();
        let hide = |value: u64| value.wrapping_add(zero);
        Packet {
            protocol: hide(self.protocol as u64) as u32,
            ports: (
                hide(self.ports.0 as u64) as u16,
                hide(self.ports.1 as u64) as u16,
            ),
            has_ports: hide(self.has_ports as u64) as u32,
            family: hide(self.family as u64) as u32,
            peer: [
                hide(self.peer[0] as u64) as u32,
                hide(self.peer[1] as u64) as u32,
                hide(self.peer[2] as u64) as u32,
                hide(self.peer[3] as u64) as u32,
            ],
            payload: hide(self.payload as u64) as usize,
            checksum: hide(self.checksum as u64) as usize,
        }
    }
}

/// Decodes the IP header at offset `l3`: 0 in cgroup_skb programs, which see packets from the
/// network header on, the Ethernet header's length in tc programs.
#[inline(always)]
fn decode(ctx: &SkBuff, l3: usize, direction: u32) -> Option<Packet> {
    // SAFETY: ctx.skb.skb is the program's context pointer.
    let proto = u16::from_be(unsafe { (*ctx.skb).protocol } as u16);
    let egress = direction == DIRECTION_EGRESS;
    let mut peer = [0u32; 4];
    let (family, protocol, l4, first_fragment) = if proto == ETH_P_IP {
        let header: [u8; 20] = ctx.load(l3).ok()?;
        let ihl = (header[0] & 0x0f) as usize * 4;
        let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
        let at = if egress { 16 } else { 12 };
        peer[0] = u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        (4, header[9], ihl, fragment_offset == 0)
    } else if proto == ETH_P_IPV6 {
        let next: u8 = ctx.load(l3 + 6).ok()?;
        // Extension headers are not walked: their packets match only filters without ports.
        peer = ctx.load(l3 + if egress { 24 } else { 8 }).ok()?;
        (6, next, 40, true)
    } else {
        return None;
    };
    let has_ports = first_fragment && (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP);
    let mut ports = (0, 0);
    if has_ports {
        let raw: [u8; 4] = ctx.load(l3 + l4).ok()?;
        let src = u16::from_be_bytes([raw[0], raw[1]]);
        let dst = u16::from_be_bytes([raw[2], raw[3]]);
        ports = if egress { (src, dst) } else { (dst, src) };
    }
    // Where the payload starts and where the checksum is, for corruption.
    let (payload, checksum) = if !first_fragment {
        (l4, 0)
    } else if protocol == IPPROTO_TCP {
        let offset: u8 = ctx.load(l3 + l4 + 12).ok()?;
        (l4 + (offset >> 4) as usize * 4, l4 + 16)
    } else if protocol == IPPROTO_UDP {
        (l4 + 8, l4 + 6)
    } else if protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6 {
        (l4 + 8, l4 + 2)
    } else {
        (l4, 0)
    };
    Some(Packet {
        protocol: protocol as u32,
        ports,
        has_ports: has_ports as u32,
        family,
        peer,
        payload,
        checksum,
    })
}

/// Whether the skb's socket belongs to the rule's target cgroup (or one below it).
#[inline(always)]
fn in_target(skb: *mut __sk_buff, rule: &PacketRule) -> bool {
    // SAFETY: a plain helper call on the context; too deep a level returns 0.
    unsafe { bpf_skb_ancestor_cgroup_id(skb, rule.cgroup_level as i32) == rule.cgroup_id }
}

/// Which program runs the rules: each action belongs to one of them, so that no packet is
/// counted twice.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    CgroupSkb,
    TcEgress,
}

impl Hook {
    #[inline(always)]
    fn runs(self, action: Option<PacketAction>) -> bool {
        match action {
            Some(PacketAction::Drop | PacketAction::Delay | PacketAction::Rate) => {
                self == Hook::CgroupSkb
            }
            Some(PacketAction::Duplicate | PacketAction::Corrupt) => self == Hook::TcEgress,
            None => false,
        }
    }
}

/// Runs the rules of `hook` for `direction` over the packet; returns whether to drop it.
/// Delay and rate rules move `skb->tstamp` forward, duplicate rules send a copy, and let it
/// pass.
#[inline(always)]
fn apply(ctx: &SkBuff, hook: Hook, direction: u32) -> bool {
    let l3 = if hook == Hook::TcEgress { ETH_HLEN } else { 0 };
    let Some(packet) = decode(ctx, l3, direction) else {
        return false;
    };
    let packet = packet.opaque();
    let walk = Walk {
        skb: ctx.skb,
        len: ctx.len() as u64,
        l3,
        packet,
    };
    // One callback per program, each with its hook and direction constants: the verifier
    // refuses helpers a program type lacks (bpf_clone_redirect in cgroup_skb, on 6.1) even on
    // a path a runtime value rules out, so each body must hold only its own actions.
    let step = match (hook, direction == DIRECTION_EGRESS) {
        (Hook::CgroupSkb, true) => {
            crate::log::pick(skb_egress_step::<false>, skb_egress_step::<true>)
        }
        (Hook::CgroupSkb, false) => {
            crate::log::pick(skb_ingress_step::<false>, skb_ingress_step::<true>)
        }
        (Hook::TcEgress, _) => crate::log::pick(tc_egress_step::<false>, tc_egress_step::<true>),
    };
    // A bpf_loop, so that the verifier walks the slot body once instead of once per slot (a
    // plain loop over 16 slots cost it 23k-78k instructions per program, most of a packet
    // fault's arm time). The verifier re-walks a callback until its context stops changing,
    // so the context is read-only: a drop comes back as bpf_loop's count (the step that
    // drops stops the loop; without one, the extra last step stops it at MAX + 1).
    // SAFETY: the callback is a static function, the context points into this frame.
    let steps = unsafe {
        bpf_loop(
            MAX_PACKET_RULES + 1,
            step,
            (&raw const walk).cast_mut().cast(),
            0,
        )
    };
    steps > 0 && steps <= MAX_PACKET_RULES as i64
}

/// What every step of [`apply`]'s walk over the rule slots reads.
struct Walk {
    skb: *mut __sk_buff,
    /// The packet's length.
    len: u64,
    /// Offset of the IP header.
    l3: usize,
    packet: Packet,
}

/// One bpf_loop step of [`apply`] in `chaos_skb_egress`: runs the rule in slot `slot`; 1
/// (stop) to drop the packet, and at the step past the last slot.
#[inline(never)]
extern "C" fn skb_egress_step<const LOG: bool>(slot: u64, ctx: *mut c_void) -> i64 {
    step::<LOG>(slot, ctx, Hook::CgroupSkb, DIRECTION_EGRESS)
}

/// [`skb_egress_step`] for `chaos_skb_ingress`.
#[inline(never)]
extern "C" fn skb_ingress_step<const LOG: bool>(slot: u64, ctx: *mut c_void) -> i64 {
    step::<LOG>(slot, ctx, Hook::CgroupSkb, DIRECTION_INGRESS)
}

/// [`skb_egress_step`] for `chaos_tc_egress`.
#[inline(never)]
extern "C" fn tc_egress_step<const LOG: bool>(slot: u64, ctx: *mut c_void) -> i64 {
    step::<LOG>(slot, ctx, Hook::TcEgress, DIRECTION_EGRESS)
}

#[inline(always)]
fn step<const LOG: bool>(slot: u64, ctx: *mut c_void, hook: Hook, direction: u32) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `apply` gave it, to a Walk on its stack.
    let walk = unsafe { &*ctx.cast::<Walk>() };
    let Ok(slot) = u32::try_from(slot) else {
        return 1;
    };
    if slot >= MAX_PACKET_RULES {
        return 1;
    }
    i64::from(try_packet_rule::<LOG>(walk, slot, hook, direction))
}

/// Runs the rule in `slot` over the packet; returns whether to drop it.
#[inline(always)]
fn try_packet_rule<const LOG: bool>(walk: &Walk, slot: u32, hook: Hook, direction: u32) -> bool {
    let Some(rule) = CHAOS_PACKET_RULES.get(slot) else {
        return false;
    };
    let action = PacketAction::from_raw(rule.action);
    if !rule.is_active()
        || !hook.runs(action)
        || !rule.wants_direction(direction)
        || !in_target(walk.skb, rule)
    {
        return false;
    }
    let packet = &walk.packet;
    if !rule.matches(
        packet.protocol,
        packet.ports,
        packet.has_ports != 0,
        packet.family,
        &packet.peer,
    ) {
        return false;
    }
    let (skb, len, l3) = (walk.skb, walk.len, walk.l3);
    // Only packets with a payload word to flip can be corrupted.
    let payload_words = (len as usize).saturating_sub(l3 + packet.payload) / 2;
    if action == Some(PacketAction::Corrupt) && payload_words == 0 {
        return false;
    }
    let Some(counter) = CHAOS_PACKET_COUNTERS.get_ptr_mut(slot) else {
        return false;
    };
    // SAFETY: the pointer comes from a map lookup and stays valid for this program run;
    // the fields are 8-byte aligned u64s, updated only atomically.
    let (seen, affected, bytes) = unsafe {
        (
            &raw mut (*counter).seen,
            &raw mut (*counter).affected,
            &raw mut (*counter).bytes,
        )
    };
    fetch_add(seen, 1);
    // SAFETY: a plain helper call.
    if rule.probability != u32::MAX && unsafe { bpf_get_prandom_u32() } >= rule.probability {
        return false;
    }
    // SAFETY: a plain helper call.
    if rule.deadline_ns != 0 && unsafe { bpf_ktime_get_boot_ns() } >= rule.deadline_ns {
        return false;
    }
    fetch_add(affected, 1);
    fetch_add(bytes, len);
    let drop = !rule.is_dry_run() && act(walk, slot, rule, action, hook, direction, payload_words);
    crate::log::packet_rule_acts::<LOG>(slot, rule, direction, len);
    // Last, after the action: the verifier then walks the event once per way out of the step
    // rather than once per way into every action.
    if rule.flags & PACKET_EVENTS != 0 {
        event(skb, slot, rule, counter, packet, direction);
    }
    drop
}

/// Does what rule `slot` says to the packet; returns whether to drop it.
#[inline(always)]
fn act(
    walk: &Walk,
    slot: u32,
    rule: &PacketRule,
    action: Option<PacketAction>,
    hook: Hook,
    direction: u32,
    payload_words: usize,
) -> bool {
    let (skb, len, l3, packet) = (walk.skb, walk.len, walk.l3, &walk.packet);
    match action {
        Some(PacketAction::Drop) => return true,
        Some(PacketAction::Duplicate) if hook == Hook::TcEgress => duplicate(skb),
        Some(PacketAction::Corrupt) if hook == Hook::TcEgress => corrupt(
            &SkBuff { skb },
            l3,
            packet,
            payload_words,
            rule.flags & PACKET_FIX_CHECKSUM != 0,
        ),
        Some(PacketAction::Delay) if hook == Hook::CgroupSkb && direction == DIRECTION_EGRESS => {
            // SAFETY: a plain helper call.
            let delay = rule.delay_for(unsafe { bpf_get_prandom_u32() });
            depart_at(skb, departure(skb) + delay);
        }
        Some(PacketAction::Rate) if hook == Hook::CgroupSkb && direction == DIRECTION_EGRESS => {
            if let Some(state) = CHAOS_PACKET_STATE.get_ptr_mut(slot) {
                pace(skb, state, len, rule.rate_bytes_per_sec);
            }
        }
        _ => {}
    }
    false
}

/// Writes the event of a packet rule `slot` affected (or, in a dry run, would have). Packets
/// carry no calling task: the event has the socket's cgroup, the addresses and the protocol.
///
/// Called from the slot step of a rule that asks for events; the step is a bpf_loop
/// callback, verified once whatever the slot, so the event costs the verifier one path.
#[inline(always)]
fn event(
    skb: *mut __sk_buff,
    slot: u32,
    rule: &PacketRule,
    counter: *mut PacketCounter,
    packet: &Packet,
    direction: u32,
) {
    // SAFETY: a pointer into a map value, an aligned u64 updated only atomically.
    let Some(mut entry) = crate::event::reserve(unsafe { &raw mut (*counter).events_lost }) else {
        return;
    };
    const _: () = assert!(PACKET_DRY_RUN == 1 << 1 && EVENT_DRY_RUN == 1);
    const _: () = assert!(DIRECTION_EGRESS == 1 && EVENT_EGRESS == 1 << 1);
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to the reserved ring buffer memory, large enough for an Event;
    // every field is plain data, written once here. The helpers are plain calls.
    unsafe {
        (*e).time_ns = bpf_ktime_get_boot_ns();
        (*e).cgroup_id = bpf_skb_cgroup_id(skb);
        (*e).pid = 0;
        (*e).tid = 0;
        (*e).kind = EVENT_PACKET;
        (*e).slot = slot;
        (*e).hook = 0;
        (*e).action = rule.action;
        (*e).value = 0;
        // Bit arithmetic, not `if`s: BPF has no conditional move.
        (*e).flags = ((rule.flags & PACKET_DRY_RUN) >> 1) | ((direction & DIRECTION_EGRESS) << 1);
        (*e).syscall_nr = 0;
        (*e).delay_ns = rule.delay_ns;
        zero_words::<2>((&raw mut (*e).comm).cast());
        // 4 -> AF_INET (2), 6 -> AF_INET6 (10).
        const _: () = assert!(AF_INET == 4 * 4 - 14 && AF_INET6 == 6 * 4 - 14);
        (*e).family = (packet.family as u16).wrapping_mul(4).wrapping_sub(14);
        (*e).local_port = packet.ports.0;
        (*e).port = packet.ports.1;
        (*e).protocol = packet.protocol as u8;
        (*e)._pad = 0;
        let addr = &raw mut (*e).addr;
        (*addr.cast::<[u32; 4]>()) = packet.peer;
        zero_words::<{ EVENT_NAME_LEN * EVENT_NAMES / 8 }>((&raw mut (*e).names).cast());
    }
    entry.submit(0);
}

/// When the packet would leave now: its own departure time if the stack set one (TCP
/// pacing), else the current monotonic time, the clock fq compares against.
#[inline(always)]
fn departure(skb: *mut __sk_buff) -> u64 {
    // SAFETY: a plain helper call, and a read of the context.
    let now = unsafe { bpf_ktime_get_ns() };
    let stamped = unsafe { (*skb).tstamp };
    if stamped > now { stamped } else { now }
}

#[inline(always)]
fn depart_at(skb: *mut __sk_buff, at: u64) {
    // SAFETY: cgroup_skb egress may write tstamp.
    unsafe { (*skb).tstamp = at };
}

/// How far the rate timeline may lag behind now before it restarts: a packet fq released
/// late (a busy machine) leaves its successors up to this much time to catch up, so the
/// average rate holds; an idle target gets at most this much worth of burst.
const RATE_SLACK_NS: u64 = 20_000_000;

/// Reserves the packet's transmission time on the rule's timeline: it leaves at the later of
/// now and the end of the previous reservation, which moves on by `len / rate`.
#[inline(always)]
fn pace(skb: *mut __sk_buff, state: *mut PacketState, len: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    // The timeline is the capped link's: it runs on the clock, not on the stack's own
    // departure time (TCP pacing), which only sets a lower bound for this packet below.
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let cost = len * 1_000_000_000 / rate;
    // SAFETY: the pointer comes from a map lookup; the field is an aligned u64. A timeline
    // further behind than the slack restarts there; a race between CPUs here at worst lets
    // one packet through early.
    let next = unsafe { &raw mut (*state).next_departure_ns };
    let earliest = now.saturating_sub(RATE_SLACK_NS);
    unsafe {
        if *next < earliest {
            *next = earliest;
        }
    }
    let at = fetch_add(next, cost);
    let stack = departure(skb);
    depart_at(skb, if at > stack { at } else { stack });
}

/// The mark a copy carries while it passes the tc program again, so that it is not copied in
/// turn.
const COPY_MARK: u32 = 0xc4a0_5d0b;

/// Sends a copy of the packet out of the same device, now.
#[inline(always)]
fn duplicate(skb: *mut __sk_buff) {
    // SAFETY: tc programs may read and write mark and read ifindex; the copy inherits the
    // mark, the original gets its own back.
    unsafe {
        let mark = (*skb).mark;
        (*skb).mark = COPY_MARK;
        bpf_clone_redirect(skb, (*skb).ifindex, 0);
        (*skb).mark = mark;
    }
}

/// Flips one random bit of one random 16-bit payload word (aligned as the checksum sums
/// them), then makes sure the checksum does what the user asked:
///
/// - `fix`: the checksum matches the corrupted data, the receiver accepts it. A checksum the
///   stack already computed is updated; one left to the device (CHECKSUM_PARTIAL) will be
///   computed over the corrupted data anyway.
/// - otherwise: the checksum stays that of the original data, so that a receiver that checks
///   it drops the packet, as it would after corruption on the wire. For a computed checksum
///   the flip alone does that and the update below (from new back to old) only moves it
///   further off; for one left to the device, the pseudo-header seed in the checksum field
///   is moved back by the flip, so that the device's sum comes out as the original's.
#[inline(always)]
fn corrupt(ctx: &SkBuff, l3: usize, packet: &Packet, words: usize, fix: bool) {
    // SAFETY: a plain helper call.
    let draw = unsafe { bpf_get_prandom_u32() };
    // checked_rem: no division-by-zero panic path, which the verifier would refuse.
    let Some(word) = ((draw & 0x00ff_ffff) as usize).checked_rem(words) else {
        return;
    };
    let bit = (draw >> 24) & 15;
    let at = l3 + packet.payload + 2 * word;
    let Ok(old) = ctx.load::<u16>(at) else {
        return;
    };
    let new = old ^ (1u16 << bit);
    if ctx.store(at, &new, 0).is_err() {
        return;
    }
    let checksum = packet.checksum;
    if checksum == 0 {
        return;
    }
    // A UDP checksum of 0 means "none": leave it so (BPF_F_MARK_MANGLED_0).
    let mangled0 = if packet.protocol == IPPROTO_UDP as u32 {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let _ = if fix {
        ctx.l4_csum_replace(l3 + checksum, old as u64, new as u64, 2 | mangled0)
    } else {
        ctx.l4_csum_replace(
            l3 + checksum,
            new as u64,
            old as u64,
            2 | mangled0 | BPF_F_PSEUDO_HDR as u64,
        )
    };
}

#[cgroup_skb(egress)]
pub fn chaos_skb_egress(ctx: SkBuffContext) -> i32 {
    if apply(&ctx.skb, Hook::CgroupSkb, DIRECTION_EGRESS) {
        DROP_EGRESS
    } else {
        PASS
    }
}

#[cgroup_skb(ingress)]
pub fn chaos_skb_ingress(ctx: SkBuffContext) -> i32 {
    if apply(&ctx.skb, Hook::CgroupSkb, DIRECTION_INGRESS) {
        DROP_INGRESS
    } else {
        PASS
    }
}

/// tc verdict: carry on with the packet.
const TC_ACT_OK: i32 = 0;

#[classifier]
pub fn chaos_tc_egress(ctx: TcContext) -> i32 {
    // SAFETY: a read of the context.
    if unsafe { (*ctx.skb.skb).mark } != COPY_MARK {
        apply(&ctx.skb, Hook::TcEgress, DIRECTION_EGRESS);
    }
    TC_ACT_OK
}
