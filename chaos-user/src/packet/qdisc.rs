//! Qdiscs over rtnetlink (`RTM_{GET,NEW,DEL}QDISC`), in the calling thread's network
//! namespace: what `tc qdisc show|replace|del` did, without iproute2 on the machine or in the
//! image.
//!
//! Messages are built with netlink-packet-route. Dump replies are read by hand (header, then
//! the `TCA_KIND` and `TCA_OPTIONS` attributes as raw bytes) because the crate's parser
//! refuses the whole message for qdiscs whose options are a C struct rather than attributes
//! (netem), and a dump lists every device's qdiscs.
use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkPayload, NlasIterator,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    tc::{TcAttribute, TcHandle, TcHeader, TcMessage},
};
use netlink_sys::protocols::NETLINK_ROUTE;

use crate::netlink::{self, invalid};

/// `TCA_KIND` and `TCA_OPTIONS` (include/uapi/linux/rtnetlink.h).
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// `RTM_NEWQDISC`, the type of each entry of a qdisc dump.
const RTM_NEWQDISC: u16 = 36;
/// The size of `struct tcmsg`.
const TCMSG_LEN: usize = 20;

/// One qdisc of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    /// `fq`, `noqueue`, `clsact`...
    pub kind: String,
    /// Its handle; 0 for the default qdisc the kernel attached by itself.
    pub handle: u32,
    /// Its parent; [`ROOT`] for a root qdisc.
    pub parent: u32,
    /// The raw `TCA_OPTIONS` payload.
    pub options: Vec<u8>,
}

impl Qdisc {
    /// The handle as `tc` shows it (`0:`, `8001:`).
    pub fn shown_handle(&self) -> String {
        shown(self.handle)
    }

    /// The u32 attribute `kind` of its options, if its options are attributes (fq's are).
    pub fn option_u32(&self, kind: u16) -> Option<u32> {
        NlasIterator::new(self.options.as_slice())
            .flatten()
            .find(|nla| nla.kind() == kind)
            .and_then(|nla| Some(u32::from_ne_bytes(nla.value().get(..4)?.try_into().ok()?)))
    }
}

/// A handle as `tc` shows it: `major:` or `major:minor` in hex.
fn shown(handle: u32) -> String {
    let (major, minor) = (handle >> 16, handle & 0xffff);
    if minor == 0 {
        format!("{major:x}:")
    } else {
        format!("{major:x}:{minor:x}")
    }
}

/// `TC_H_ROOT`: the parent of a root qdisc.
pub const ROOT: u32 = 0xffff_ffff;
/// `TC_H_CLSACT` (= `TC_H_INGRESS`): the parent of clsact.
pub const CLSACT: u32 = 0xffff_fff1;

/// The interface index of `dev` in the current network namespace.
pub fn ifindex(dev: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("no network device `{dev}` in this namespace ({errno})"),
        )
    })
}

/// The qdiscs of `dev`.
pub fn list(dev: &str) -> io::Result<Vec<Qdisc>> {
    let index = ifindex(dev)?;
    let mut message = TcMessage::default();
    message.header = TcHeader {
        index: index as i32,
        ..Default::default()
    };
    let socket = netlink::open(NETLINK_ROUTE)?;
    netlink::send(
        &socket,
        NetlinkPayload::from(RouteNetlinkMessage::GetQueueDiscipline(message)),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    let mut qdiscs = Vec::new();
    netlink::read_dump::<RouteNetlinkMessage>(&socket, |kind, bytes| {
        if kind == RTM_NEWQDISC {
            let buffer = NetlinkBuffer::new_checked(bytes).map_err(invalid)?;
            qdiscs.extend(parse_qdisc(buffer.payload(), index));
        }
        Ok(())
    })?;
    Ok(qdiscs)
}

/// A qdisc of device `index` from the payload of an `RTM_NEWQDISC` message; `None` for
/// another device's or a message too short to be one.
fn parse_qdisc(payload: &[u8], index: u32) -> Option<Qdisc> {
    let header = TcHeader::parse(payload).ok()?;
    if header.index as u32 != index {
        return None;
    }
    let mut qdisc = Qdisc {
        kind: String::new(),
        handle: header.handle.into(),
        parent: header.parent.into(),
        options: Vec::new(),
    };
    for nla in NlasIterator::new(payload.get(TCMSG_LEN..)?).flatten() {
        match nla.kind() {
            TCA_KIND => {
                qdisc.kind = String::from_utf8_lossy(nla.value())
                    .trim_end_matches('\0')
                    .to_owned();
            }
            TCA_OPTIONS => qdisc.options = nla.value().to_vec(),
            _ => {}
        }
    }
    Some(qdisc)
}

/// Creates (or replaces) the qdisc `kind` at `parent` of `dev`, with `options` as the raw
/// `TCA_OPTIONS` payload (attributes for most qdiscs, a C struct for netem). The kernel loads
/// the qdisc's module if it needs to.
pub fn replace(dev: &str, parent: u32, kind: &str, options: Vec<u8>) -> io::Result<()> {
    let mut message = TcMessage::default();
    message.header = TcHeader {
        index: ifindex(dev)? as i32,
        parent: TcHandle::from(parent),
        ..Default::default()
    };
    message.attributes = vec![TcAttribute::Kind(kind.to_owned())];
    if !options.is_empty() {
        message
            .attributes
            .push(TcAttribute::Other(netlink_packet_core::DefaultNla::new(
                TCA_OPTIONS,
                options,
            )));
    }
    request(
        RouteNetlinkMessage::NewQueueDiscipline(message),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// Deletes the qdisc at `parent` of `dev` (the root: the kernel attaches its default again).
pub fn delete(dev: &str, parent: u32) -> io::Result<()> {
    let mut message = TcMessage::default();
    message.header = TcHeader {
        index: ifindex(dev)? as i32,
        parent: TcHandle::from(parent),
        // clsact's handle is ffff:, as `tc qdisc del ... clsact` sends it.
        handle: TcHandle::from(if parent == CLSACT { 0xffff_0000 } else { 0 }),
        ..Default::default()
    };
    request(RouteNetlinkMessage::DelQueueDiscipline(message), 0)
}

/// Options attributes (`struct nlattr` + u32 value each), for [`replace`].
pub fn u32_attributes(attributes: &[(u16, u32)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(attributes.len() * 8);
    for (kind, value) in attributes {
        bytes.extend_from_slice(&8u16.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&value.to_ne_bytes());
    }
    bytes
}

/// Sends a change and waits for the kernel's acknowledgement (or its error).
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let socket = netlink::open(NETLINK_ROUTE)?;
    netlink::send(
        &socket,
        NetlinkPayload::from(message),
        NLM_F_REQUEST | NLM_F_ACK | flags,
    )?;
    netlink::await_ack::<RouteNetlinkMessage>(&socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shown_as_tc_shows_them() {
        assert_eq!(shown(0), "0:");
        assert_eq!(shown(0x8001_0000), "8001:");
        assert_eq!(shown(0xffff_fff1), "ffff:fff1");
    }

    #[test]
    fn u32_options_round_trip() {
        let qdisc = Qdisc {
            kind: "fq".into(),
            handle: 0,
            parent: ROOT,
            options: u32_attributes(&[(1, 100_000), (14, 10_000_000)]),
        };
        assert_eq!(qdisc.option_u32(14), Some(10_000_000));
        assert_eq!(qdisc.option_u32(1), Some(100_000));
        assert_eq!(qdisc.option_u32(2), None);
    }
}
