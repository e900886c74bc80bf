//! The request/acknowledge and dump exchanges of a netlink socket, shared by the rtnetlink
//! qdisc calls (`packet::qdisc`) and the sock_diag calls (`tcp_reset`). The message types
//! differ; the framing (multipart replies, `NLMSG_DONE`, `NLMSG_ERROR` carrying an errno or
//! an acknowledgement) is netlink's own.
use std::io;

use netlink_packet_core::{
    NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

/// A socket of netlink `protocol`, talking to the kernel, in the calling thread's network
/// namespace.
pub(crate) fn open(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends one message with `flags` in its header.
pub(crate) fn send<M: NetlinkSerializable>(
    socket: &Socket,
    payload: NetlinkPayload<M>,
    flags: u16,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut message = NetlinkMessage::new(header, payload);
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    socket.send(&buf, 0)?;
    Ok(())
}

/// Waits for the kernel's answer to a request sent with `NLM_F_ACK`: its acknowledgement,
/// or its errno as the error.
pub(crate) fn await_ack<M: NetlinkDeserializable>(socket: &Socket) -> io::Result<()> {
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let buffer = NetlinkBuffer::new_checked(bytes.as_slice()).map_err(invalid)?;
        if buffer.message_type() == NLMSG_ERROR {
            return error_of::<M>(&bytes);
        }
    }
}

/// Reads the reply to an `NLM_F_DUMP` request up to `NLMSG_DONE`, handing each other message
/// (its type and its bytes, header included) to `each`. An `NLMSG_ERROR` ends it with the
/// kernel's errno.
pub(crate) fn read_dump<M: NetlinkDeserializable>(
    socket: &Socket,
    mut each: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        let (bytes, _) = socket.recv_from_full()?;
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let buffer = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
            let len = (buffer.length() as usize)
                .next_multiple_of(4)
                .min(rest.len());
            match buffer.message_type() {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => error_of::<M>(&rest[..len])?,
                kind => each(kind, &rest[..len])?,
            }
            rest = &rest[len..];
        }
    }
}

/// The outcome an `NLMSG_ERROR` message carries: an acknowledgement or an errno.
fn error_of<M: NetlinkDeserializable>(bytes: &[u8]) -> io::Result<()> {
    let message = NetlinkMessage::<M>::deserialize(bytes).map_err(invalid)?;
    match message.payload {
        NetlinkPayload::Error(err) if err.code.is_some() => Err(err.to_io()),
        _ => Ok(()),
    }
}

/// A reply the crate could not parse.
pub(crate) fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink: {err}"))
}
