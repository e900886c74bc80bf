//! Packet faults: what the kernel's packet programs match and do, and what they count.
//!
//! One [`PacketRule`] describes one fault on the packets of one target cgroup's sockets. The
//! user side fills the rules (with every value pre-digested: masks in network byte order,
//! probability scaled) so that the kernel programs only compare.

/// How many packet rules the kernel side can hold at once.
pub const MAX_PACKET_RULES: u32 = 16;

/// What a [`PacketRule`] does to the packets it picks. Stored in [`PacketRule::action`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAction {
    /// Drop the packet (cgroup_skb).
    Drop = 1,
    /// Hold the packet on egress until `now + delay ± jitter` (cgroup_skb sets the earliest
    /// departure time, the fq qdisc holds it).
    Delay = 2,
    /// Flip one bit in the payload (tc egress).
    Corrupt = 3,
    /// Send a copy of the packet too (tc egress).
    Duplicate = 4,
    /// Pace the target's egress to `rate_bytes_per_sec` (earliest departure time, fq).
    Rate = 5,
}

impl PacketAction {
    /// The action for a raw [`PacketRule::action`] value.
    pub const fn from_raw(raw: u32) -> Option<PacketAction> {
        match raw {
            1 => Some(PacketAction::Drop),
            2 => Some(PacketAction::Delay),
            3 => Some(PacketAction::Corrupt),
            4 => Some(PacketAction::Duplicate),
            5 => Some(PacketAction::Rate),
            _ => None,
        }
    }
}

/// [`PacketRule::flags`]: the slot holds a rule.
pub const PACKET_ACTIVE: u32 = 1 << 0;
/// [`PacketRule::flags`]: count what would be affected, change nothing.
pub const PACKET_DRY_RUN: u32 = 1 << 1;
/// [`PacketRule::flags`]: after corrupting, fix the L4 checksum so the receiver accepts it.
pub const PACKET_FIX_CHECKSUM: u32 = 1 << 2;
/// [`PacketRule::flags`]: someone listens: write an [`crate::Event`] for each packet affected.
pub const PACKET_EVENTS: u32 = 1 << 3;

/// [`PacketRule::directions`]: packets the target sends.
pub const DIRECTION_EGRESS: u32 = 1 << 0;
/// [`PacketRule::directions`]: packets the target receives.
pub const DIRECTION_INGRESS: u32 = 1 << 1;

/// [`PacketRule::protocol`] value matching every IP protocol.
pub const ANY_PROTOCOL: u32 = 0;

/// One packet fault for the sockets of cgroup `cgroup_id` and its descendants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketRule {
    /// `PACKET_*` bits; a slot without [`PACKET_ACTIVE`] is ignored.
    pub flags: u32,
    /// A [`PacketAction`] as `u32`.
    pub action: u32,
    /// `DIRECTION_*` bits.
    pub directions: u32,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6) or [`ANY_PROTOCOL`].
    pub protocol: u32,
    /// The target cgroup v2 id.
    pub cgroup_id: u64,
    /// Depth of the target cgroup below the v2 root, for ancestor matching.
    pub cgroup_level: u32,
    /// Local or remote TCP/UDP port to match (host byte order), 0 for any.
    pub port: u32,
    /// 0 for any peer, 4 or 6: the family of `peer_net`.
    pub peer_family: u32,
    /// Chance of affecting a matching packet, scaled so that `u32::MAX` is always.
    pub probability: u32,
    /// The peer network's address, as the words of the packet (network byte order); IPv4 uses
    /// word 0.
    pub peer_net: [u32; 4],
    /// The prefix mask for `peer_net`, same layout.
    pub peer_mask: [u32; 4],
    /// [`PacketAction::Delay`]: the delay.
    pub delay_ns: u64,
    /// [`PacketAction::Delay`]: the delay varies uniformly in `delay ± jitter`.
    pub jitter_ns: u64,
    /// [`PacketAction::Rate`]: the cap.
    pub rate_bytes_per_sec: u64,
    /// `CLOCK_BOOTTIME` nanoseconds after which the rule no longer affects packets, so that a
    /// fault ends even when chaos cannot remove it (killed, frozen); 0 for none.
    pub deadline_ns: u64,
}

impl PacketRule {
    /// Whether this slot holds a rule.
    pub const fn is_active(&self) -> bool {
        self.flags & PACKET_ACTIVE != 0
    }

    /// Whether the rule only counts.
    pub const fn is_dry_run(&self) -> bool {
        self.flags & PACKET_DRY_RUN != 0
    }

    /// Whether a packet going `direction` (one `DIRECTION_*` bit) is the rule's concern.
    #[inline(always)]
    pub const fn wants_direction(&self, direction: u32) -> bool {
        self.directions & direction != 0
    }

    /// Whether a packet of `protocol` with `ports` (local, remote; `None` for packets without
    /// them) from or to peer address `peer` (`family` 4 or 6, words as in the packet) passes
    /// the rule's filters.
    ///
    /// The ports come as a pair and a flag rather than an `Option`: the kernel side must not
    /// hand LLVM an `Option` whose `None` leaves the payload undefined, which the verifier
    /// refuses as a read of an uninitialised register.
    #[inline(always)]
    pub fn matches(
        &self,
        protocol: u32,
        ports: (u16, u16),
        has_ports: bool,
        family: u32,
        peer: &[u32; 4],
    ) -> bool {
        if self.protocol != ANY_PROTOCOL && self.protocol != protocol {
            return false;
        }
        if self.port != 0
            && (!has_ports || (ports.0 as u32 != self.port && ports.1 as u32 != self.port))
        {
            return false;
        }
        if self.peer_family != 0 {
            if self.peer_family != family {
                return false;
            }
            let mut i = 0;
            while i < 4 {
                if peer[i] & self.peer_mask[i] != self.peer_net[i] {
                    return false;
                }
                i += 1;
            }
        }
        true
    }

    /// The delay for a packet given a uniformly random `draw`: `delay ± jitter`, never
    /// negative.
    #[inline(always)]
    pub fn delay_for(&self, draw: u32) -> u64 {
        if self.jitter_ns == 0 {
            return self.delay_ns;
        }
        // draw/2^32 scaled onto [0, 2*jitter]: an offset in [-jitter, +jitter].
        let span = self.jitter_ns.saturating_mul(2);
        // span * draw / 2^32 without u128 (no 128-bit multiply on bpf): split span in halves.
        let draw = draw as u64;
        let offset = (span >> 32) * draw + (((span & 0xffff_ffff) * draw) >> 32);
        (self.delay_ns + offset).saturating_sub(self.jitter_ns)
    }
}

/// Per-rule packet counters, updated atomically by the kernel side; same index as the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    /// Packets of the target that passed the rule's filters.
    pub seen: u64,
    /// Packets the fault was applied to (or, in a dry run, would have been).
    pub affected: u64,
    /// Bytes of the affected packets.
    pub bytes: u64,
    /// Events of this rule lost because the ring buffer was full.
    pub events_lost: u64,
}

/// Per-rule state the kernel keeps between packets (the next free departure time for rate
/// limiting); same index as the rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketState {
    /// [`PacketAction::Rate`]: monotonic ns before which no further packet may leave.
    pub next_departure_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C) with explicit padding and no pointers.
    unsafe impl aya::Pod for super::PacketRule {}
    unsafe impl aya::Pod for super::PacketCounter {}
    unsafe impl aya::Pod for super::PacketState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    #[test]
    fn filters() {
        let mut rule = PacketRule {
            protocol: 17,
            port: 53,
            peer_family: 4,
            peer_net: v4([10, 0, 0, 0]),
            peer_mask: v4([255, 0, 0, 0]),
            ..PacketRule::default()
        };
        assert!(rule.matches(17, (4000, 53), true, 4, &v4([10, 1, 2, 3])));
        assert!(rule.matches(17, (53, 4000), true, 4, &v4([10, 1, 2, 3])));
        assert!(!rule.matches(6, (4000, 53), true, 4, &v4([10, 1, 2, 3])));
        assert!(!rule.matches(17, (4000, 54), true, 4, &v4([10, 1, 2, 3])));
        assert!(!rule.matches(17, (0, 0), false, 4, &v4([10, 1, 2, 3])));
        assert!(!rule.matches(17, (4000, 53), true, 4, &v4([11, 1, 2, 3])));
        assert!(!rule.matches(17, (4000, 53), true, 6, &v4([10, 1, 2, 3])));
        rule.port = 0;
        rule.peer_family = 0;
        assert!(rule.matches(17, (0, 0), false, 6, &[1, 2, 3, 4]));
    }

    #[test]
    fn jitter_stays_in_range() {
        let rule = PacketRule {
            delay_ns: 100,
            jitter_ns: 20,
            ..PacketRule::default()
        };
        assert_eq!(rule.delay_for(0), 80);
        assert_eq!(rule.delay_for(u32::MAX), 119);
        assert_eq!(rule.delay_for(1 << 31), 100);
        let small = PacketRule {
            delay_ns: 5,
            jitter_ns: 20,
            ..PacketRule::default()
        };
        assert_eq!(small.delay_for(0), 0);
    }
}
