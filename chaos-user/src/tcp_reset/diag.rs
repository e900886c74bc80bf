//! The kernel's socket diagnostics (NETLINK_SOCK_DIAG), as `ss` uses them: list established
//! TCP connections with their cgroup and segment counts, and destroy one (`ss -K`,
//! SOCK_DESTROY, CONFIG_INET_DIAG_DESTROY).
use std::{io, net::IpAddr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, IPPROTO_TCP, SockDiagDestroy, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

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

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {err}"))
}

impl Diag {
    pub(super) fn open() -> io::Result<Diag> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Diag { socket })
    }

    fn send(
        &self,
        payload: NetlinkPayload<impl netlink_packet_core::NetlinkSerializable>,
        flags: u16,
    ) -> io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        let mut message = NetlinkMessage::new(header, payload);
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(())
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
            self.send(
                NetlinkPayload::from(SockDiagMessage::InetRequest(request)),
                NLM_F_REQUEST | NLM_F_DUMP,
            )?;
            'dump: loop {
                let (bytes, _) = self.socket.recv_from_full()?;
                let mut rest = bytes.as_slice();
                while !rest.is_empty() {
                    let buffer = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
                    let len = (buffer.length() as usize)
                        .next_multiple_of(4)
                        .min(rest.len());
                    match buffer.message_type() {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => error_of(&rest[..len])?,
                        _ => {
                            let message =
                                NetlinkMessage::<SockDiagMessage>::deserialize(&rest[..len])
                                    .map_err(invalid)?;
                            if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) =
                                message.payload
                            {
                                let mut c = Connection {
                                    id: r.header.socket_id.clone(),
                                    cgroup_id: 0,
                                    segments: 0,
                                };
                                for nla in &r.nlas {
                                    match nla {
                                        Nla::TcpInfo(info) => {
                                            c.segments =
                                                u64::from(info.segs_in) + u64::from(info.segs_out);
                                        }
                                        Nla::Other(other)
                                            if netlink_packet_core::Nla::kind(other)
                                                == INET_DIAG_CGROUP_ID =>
                                        {
                                            let mut v = [0u8; 8];
                                            netlink_packet_core::Nla::emit_value(other, &mut v);
                                            c.cgroup_id = u64::from_ne_bytes(v);
                                        }
                                        _ => {}
                                    }
                                }
                                out.push(c);
                            }
                        }
                    }
                    rest = &rest[len..];
                }
            }
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
        self.send(
            NetlinkPayload::InnerMessage(SockDiagDestroy::new(SockDiagMessage::InetRequest(
                request,
            ))),
            NLM_F_REQUEST | NLM_F_ACK,
        )?;
        loop {
            let (bytes, _) = self.socket.recv_from_full()?;
            let buffer = NetlinkBuffer::new_checked(bytes.as_slice()).map_err(invalid)?;
            if buffer.message_type() == NLMSG_ERROR {
                return error_of(&bytes);
            }
        }
    }
}

/// The outcome an `NLMSG_ERROR` message carries: an acknowledgement or an errno.
fn error_of(bytes: &[u8]) -> io::Result<()> {
    let message = NetlinkMessage::<SockDiagMessage>::deserialize(bytes).map_err(invalid)?;
    match message.payload {
        NetlinkPayload::Error(err) if err.code.is_some() => Err(err.to_io()),
        _ => Ok(()),
    }
}
