//! DNS faults: what the kernel's redirect programs need to send a target's DNS queries to
//! chaos's responder, and to make its answers look as if they came from the original server.
//!
//! The user side fills one [`DnsConfig`]; the programs match the destination of the target's
//! `connect`/`sendmsg` calls against it and, on a match, give the original server a slot
//! (one of [`DNS_SLOTS`]) and rewrite the destination to the responder's socket of that slot.
//! The responder reads the slot's server back (`CHAOS_DNS_SERVERS`) to forward what it does
//! not fault, and `recvmsg` rewrites the responder's address back to the slot's server.

/// How many distinct servers one DNS fault redirects (a resolv.conf names at most 3).
pub const DNS_SLOTS: u32 = 8;

/// [`DnsConfig::flags`]: the fault is set up.
pub const DNS_ACTIVE: u32 = 1 << 0;

/// [`DnsCounters`] index: connects and sends redirected to the responder.
pub const DNS_REDIRECTED: u32 = 0;
/// [`DnsCounters`] index: matching calls left alone because every slot was taken.
pub const DNS_NO_SLOT: u32 = 1;
/// [`DnsCounters`] index: the next free slot (a counter; slots are never given back).
pub const DNS_NEXT_SLOT: u32 = 2;
/// How many counters the kernel side keeps.
pub const DNS_COUNTERS: u32 = 3;

/// A DNS server as the target addressed it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DnsServer {
    /// 4 or 6; 0 in an unused slot.
    pub family: u32,
    /// Port, host byte order.
    pub port: u32,
    /// The address as the words of `user_ip4`/`user_ip6` (network byte order); IPv4 in word 0.
    pub addr: [u32; 4],
}

/// What one DNS fault redirects, and where to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// `DNS_*` flags.
    pub flags: u32,
    /// The server port to match (host byte order), usually 53.
    pub port: u32,
    /// Servers to match, IPv4: address and mask words (network order); mask 0 matches all.
    pub net4: u32,
    /// The IPv4 mask.
    pub mask4: u32,
    /// Servers to match, IPv6: address words; with `mask6` all 0 every server matches.
    pub net6: [u32; 4],
    /// The IPv6 mask words.
    pub mask6: [u32; 4],
    /// 0 to redirect IPv4 queries, anything else leaves them alone (no IPv4 responder).
    pub skip4: u32,
    /// The same for IPv6.
    pub skip6: u32,
    /// The responder's IPv4 address (127.0.0.1 in the target's network namespace), network order.
    pub responder4: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The responder's IPv6 address (::1), network order words.
    pub responder6: [u32; 4],
    /// `CLOCK_BOOTTIME` ns after which nothing new is redirected; 0 for never.
    pub deadline_ns: u64,
    /// Per slot, the responder's UDP port for IPv4 and IPv6, host byte order.
    pub udp4_ports: [u16; DNS_SLOTS as usize],
    /// Per slot, the responder's TCP port for IPv4.
    pub tcp4_ports: [u16; DNS_SLOTS as usize],
    /// Per slot, the responder's UDP port for IPv6.
    pub udp6_ports: [u16; DNS_SLOTS as usize],
    /// Per slot, the responder's TCP port for IPv6.
    pub tcp6_ports: [u16; DNS_SLOTS as usize],
}

impl DnsConfig {
    /// Whether a query to `server` is redirected (family, port and network match).
    pub fn matches(&self, server: &DnsServer) -> bool {
        if self.flags & DNS_ACTIVE == 0 || server.port != self.port {
            return false;
        }
        match server.family {
            4 => self.skip4 == 0 && server.addr[0] & self.mask4 == self.net4 & self.mask4,
            6 => {
                self.skip6 == 0
                    && (server.addr[0] & self.mask6[0]) == (self.net6[0] & self.mask6[0])
                    && (server.addr[1] & self.mask6[1]) == (self.net6[1] & self.mask6[1])
                    && (server.addr[2] & self.mask6[2]) == (self.net6[2] & self.mask6[2])
                    && (server.addr[3] & self.mask6[3]) == (self.net6[3] & self.mask6[3])
            }
            _ => false,
        }
    }

    /// The responder's port for `slot`, by family (4 or 6) and whether it is TCP.
    pub fn responder_port(&self, slot: u32, family: u32, tcp: bool) -> u16 {
        let slot = (slot % DNS_SLOTS) as usize;
        match (family, tcp) {
            (4, false) => self.udp4_ports[slot],
            (4, true) => self.tcp4_ports[slot],
            (_, false) => self.udp6_ports[slot],
            (_, true) => self.tcp6_ports[slot],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn port_and_network_decide() {
        let config = DnsConfig {
            flags: DNS_ACTIVE,
            port: 53,
            net4: v4([10, 0, 0, 0]),
            mask4: v4([255, 0, 0, 0]),
            skip6: 1,
            ..DnsConfig::default()
        };
        let server = |a, port| DnsServer {
            family: 4,
            port,
            addr: [v4(a), 0, 0, 0],
        };
        assert!(config.matches(&server([10, 1, 2, 3], 53)));
        assert!(!config.matches(&server([10, 1, 2, 3], 5353)));
        assert!(!config.matches(&server([192, 168, 0, 1], 53)));
        assert!(!config.matches(&DnsServer {
            family: 6,
            port: 53,
            addr: [0; 4]
        }));
        let inactive = DnsConfig { flags: 0, ..config };
        assert!(!inactive.matches(&server([10, 1, 2, 3], 53)));
    }
}
