//! Events: one record per call or packet a rule acted on, written by the kernel programs to
//! the `CHAOS_EVENTS` ring buffer for rules whose listener asked for them
//! ([`crate::RULE_EVENTS`], [`crate::packet::PACKET_EVENTS`]).

/// [`Event::kind`]: a syscall a [`crate::Rule`] acted on.
pub const EVENT_CALL: u32 = 1;
/// [`Event::kind`]: a packet a [`crate::packet::PacketRule`] affected.
pub const EVENT_PACKET: u32 = 2;

/// [`Event::flags`]: the rule is a dry run; the call or packet was only counted.
pub const EVENT_DRY_RUN: u32 = 1 << 0;
/// [`Event::flags`]: the packet was going out (else coming in).
pub const EVENT_EGRESS: u32 = 1 << 1;

/// How many names of the file's path an event carries: the file's own and its parents'.
pub const EVENT_NAMES: usize = 3;
/// The longest name kept (with its NUL); longer ones are cut.
pub const EVENT_NAME_LEN: usize = 32;

/// One call or packet a rule acted on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, on `CLOCK_BOOTTIME` (ns).
    pub time_ns: u64,
    /// The cgroup v2 id of the calling task (of the packet's socket).
    pub cgroup_id: u64,
    /// Thread group id of the calling task (0 for packets).
    pub pid: u32,
    /// Thread id of the calling task (0 for packets).
    pub tid: u32,
    /// [`EVENT_CALL`] or [`EVENT_PACKET`].
    pub kind: u32,
    /// The rule's slot (an index into the rule or packet rule array).
    pub slot: u32,
    /// The [`crate::Hook`] as `u32` (calls), 0 for packets.
    pub hook: u32,
    /// The rule's [`crate::Action`] (calls) or [`crate::packet::PacketAction`] (packets).
    pub action: u32,
    /// The errno or signal number.
    pub value: u32,
    /// `EVENT_*` bits.
    pub flags: u32,
    /// The syscall number (x86_64), or [`crate::ANY_SYSCALL`] where the hook names it.
    pub syscall_nr: i64,
    /// The rule's delay, for latency and packet delay rules (ns).
    pub delay_ns: u64,
    /// The calling thread's name, NUL padded (empty for packets).
    pub comm: [u8; 16],
    /// `AF_INET` or `AF_INET6` when `addr` holds an address, else 0.
    pub family: u16,
    /// The peer's port (host order), 0 for none.
    pub port: u16,
    /// The local port of a packet (host order), 0 for none.
    pub local_port: u16,
    /// The IP protocol number of a packet, 0 for calls.
    pub protocol: u8,
    /// Reserved.
    pub _pad: u8,
    /// The peer address in network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// For file calls, the file's name and its parents' (`names[0]` the file), each NUL
    /// terminated; an empty name ends the list.
    pub names: [[u8; EVENT_NAME_LEN]; EVENT_NAMES],
}

impl Event {
    /// The `index`th name of the file's path (0 the file itself), if the event has it.
    pub fn name(&self, index: usize) -> Option<&[u8]> {
        let raw = self.names.get(index)?;
        let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        (len > 0).then(|| &raw[..len])
    }

    /// The thread name, up to its NUL.
    pub fn comm(&self) -> &[u8] {
        let len = self
            .comm
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.comm.len());
        &self.comm[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_hidden_padding() {
        // Every field accounted for: the kernel writes each one into ring buffer memory.
        assert_eq!(core::mem::size_of::<Event>(), 200);
        assert_eq!(core::mem::align_of::<Event>(), 8);
    }

    #[test]
    fn names_stop_at_the_first_empty_one() {
        let mut names = [[0u8; EVENT_NAME_LEN]; EVENT_NAMES];
        names[0][..4].copy_from_slice(b"data");
        names[1][..3].copy_from_slice(b"tmp");
        let event = Event {
            time_ns: 0,
            cgroup_id: 0,
            pid: 0,
            tid: 0,
            kind: EVENT_CALL,
            slot: 0,
            hook: 0,
            action: 0,
            value: 0,
            flags: 0,
            syscall_nr: 0,
            delay_ns: 0,
            comm: *b"cat\0\0\0\0\0\0\0\0\0\0\0\0\0",
            family: 0,
            port: 0,
            local_port: 0,
            protocol: 0,
            _pad: 0,
            addr: [0; 16],
            names,
        };
        assert_eq!(event.name(0), Some(&b"data"[..]));
        assert_eq!(event.name(1), Some(&b"tmp"[..]));
        assert_eq!(event.name(2), None);
        assert_eq!(event.comm(), b"cat");
    }
}
