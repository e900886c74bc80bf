//! The kernel's socket diagnostics (NETLINK_SOCK_DIAG), as `ss` uses them: list established
//! TCP connections with their cgroup and segment counts, and destroy one (`ss -K`,
//! SOCK_DESTROY, CONFIG_INET_DIAG_DESTROY).
use std::{io, net::IpAddr};

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SockDiagDestroy, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, protocols::NETLINK_SOCK_DIAG};

use crate::netlink::{self, invalid};

/// INET_DIAG_CGROUP_ID (5.9+): the cgroup v2 id of the socket's creator.
const INET_DIAG_CGROUP_ID: u16 = 21;

/// One established TCP connection.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    /// Its addresses and ports (local = source), and the kernel's cookie.
    pub id: SocketId,
    /// The cgroup its socket belongs to; 0 when the kernel does not say (before 5.9).
    pub cgroup_id: u64,
    /// Segments received and sent so far.
    pub segments: u64,
}

impl Connection {
    /// The connection a sock_diag answer describes, from its attributes: the segment counts
    /// (`INET_DIAG_INFO`) and the cgroup (`INET_DIAG_CGROUP_ID`, 5.9+).
    fn of(id: &SocketId, nlas: &[Nla]) -> Connection {
        let mut c = Connection {
            id: id.clone(),
            cgroup_id: 0,
            segments: 0,
        };
        for nla in nlas {
            match nla {
                Nla::TcpInfo(info) => {
                    c.segments = u64::from(info.segs_in) + u64::from(info.segs_out);
                }
                Nla::Other(other)
                    if netlink_packet_core::Nla::kind(other) == INET_DIAG_CGROUP_ID =>
                {
                    let mut v = [0u8; 8];
                    netlink_packet_core::Nla::emit_value(other, &mut v);
                    c.cgroup_id = u64::from_ne_bytes(v);
                }
                _ => {}
            }
        }
        c
    }

    /// The kernel's socket cookie: identifies the connection for as long as it lives.
    pub fn cookie(&self) -> u64 {
        u64::from_ne_bytes(self.id.cookie)
    }

    /// The peer's address.
    pub fn peer(&self) -> IpAddr {
        self.id.destination_address
    }
}

/// A sock_diag socket, in the network namespace of the thread that opened it.
pub(super) struct Diag {
    socket: Socket,
}

impl Diag {
    pub(super) fn open() -> io::Result<Diag> {
        Ok(Diag {
            socket: netlink::open(NETLINK_SOCK_DIAG)?,
        })
    }

    /// Every established TCP connection (IPv4 and IPv6) of this namespace.
    pub(super) fn established(&self) -> io::Result<Vec<Connection>> {
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let request = InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states: StateFlags::ESTABLISHED,
                socket_id: if family == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            };
            netlink::send(
                &self.socket,
                NetlinkPayload::from(SockDiagMessage::InetRequest(request)),
                NLM_F_REQUEST | NLM_F_DUMP,
            )?;
            netlink::read_dump::<SockDiagMessage>(&self.socket, |_, bytes| {
                let message =
                    NetlinkMessage::<SockDiagMessage>::deserialize(bytes).map_err(invalid)?;
                if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) =
                    message.payload
                {
                    out.push(Connection::of(&r.header.socket_id, &r.nlas));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Aborts `connection` as `ss -K` does: the kernel sends the peer an RST, and the owner's
    /// next call on the socket fails with ECONNABORTED.
    pub(super) fn destroy(&self, connection: &Connection) -> io::Result<()> {
        let family = if connection.id.source_address.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        };
        let request = InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: connection.id.clone(),
        };
        netlink::send(
            &self.socket,
            NetlinkPayload::InnerMessage(SockDiagDestroy::new(SockDiagMessage::InetRequest(
                request,
            ))),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        netlink::await_ack::<SockDiagMessage>(&self.socket)
    }
}
