//! A network client for the packet fault tests: sends UDP datagrams, a TCP stream or UDP
//! pings to a server the test runs, and prints what it saw as one JSON line.
use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    /// Join this network namespace (a name under /run/netns) first.
    #[arg(long)]
    netns: Option<String>,
    #[command(subcommand)]
    call: Call,
}

#[derive(Subcommand)]
enum Call {
    /// Send COUNT datagrams of SIZE bytes, one every 100 µs; report how many sendto calls
    /// failed.
    UdpSend {
        addr: SocketAddr,
        count: u32,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Connect, write BYTES, half-close and wait for the server to close; report the time.
    TcpSend { addr: SocketAddr, bytes: u64 },
    /// Connect and read until the server closes; report the bytes and the time.
    TcpRecv { addr: SocketAddr },
    /// Send COUNT datagrams, each after the echo of the previous one came back (or 2 s
    /// passed); report each round-trip time in microseconds.
    UdpPing { addr: SocketAddr, count: u32 },
    /// Connect, print `ready LOCALPORT`, then send a byte every 20 ms for SECS seconds and
    /// print `ok`, or the errno name of the first failed send and how many sends succeeded.
    TcpHold { addr: SocketAddr, secs: f64 },
    /// Send one DNS A query for NAME to SERVER over UDP from an unconnected socket (as
    /// resolvers do), wait up to 2 s; report the answer's code (null: no answer), its addresses, where it came
    /// from and the time.
    DnsQuery { server: SocketAddr, name: String },
}

fn main() {
    let args = Args::parse();
    if let Some(name) = &args.netns {
        let ns = File::open(PathBuf::from("/run/netns").join(name)).expect("opening netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }
    match args.call {
        Call::UdpSend { addr, count, size } => {
            let socket = UdpSocket::bind(bind_any(addr)).expect("bind");
            let payload = vec![0x5au8; size];
            let mut errors = 0;
            for _ in 0..count {
                if socket.send_to(&payload, addr).is_err() {
                    errors += 1;
                }
                thread::sleep(Duration::from_micros(100));
            }
            println!("{{\"sent\":{count},\"errors\":{errors}}}");
        }
        Call::TcpSend { addr, bytes } => {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).expect("connect");
            let chunk = vec![0xa5u8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n]).expect("write");
                left -= n as u64;
            }
            stream.shutdown(Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).expect("read");
            println!(
                "{{\"bytes\":{bytes},\"secs\":{}}}",
                started.elapsed().as_secs_f64()
            );
        }
        Call::TcpRecv { addr } => {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).expect("connect");
            let mut buf = vec![0u8; 64 * 1024];
            let mut bytes = 0u64;
            loop {
                match stream.read(&mut buf).expect("read") {
                    0 => break,
                    n => bytes += n as u64,
                }
            }
            println!(
                "{{\"bytes\":{bytes},\"secs\":{}}}",
                started.elapsed().as_secs_f64()
            );
        }
        Call::UdpPing { addr, count } => {
            let socket = UdpSocket::bind(bind_any(addr)).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let mut rtts = Vec::new();
            let mut lost = 0;
            let mut buf = [0u8; 64];
            for seq in 0..count {
                let sent = Instant::now();
                socket.send_to(&seq.to_be_bytes(), addr).expect("send");
                loop {
                    match socket.recv_from(&mut buf) {
                        Ok((4, _)) if buf[..4] == seq.to_be_bytes() => {
                            rtts.push(sent.elapsed().as_micros().to_string());
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => {
                            lost += 1;
                            break;
                        }
                    }
                }
            }
            println!("{{\"rtts_us\":[{}],\"lost\":{lost}}}", rtts.join(","));
        }
        Call::TcpHold { addr, secs } => {
            let mut stream = TcpStream::connect(addr).expect("connect");
            let port = stream.local_addr().expect("local address").port();
            println!("ready {port}");
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let mut sent = 0u64;
            while Instant::now() < end {
                if let Err(err) = stream.write_all(b"x") {
                    let errno = nix::errno::Errno::from_raw(err.raw_os_error().unwrap_or(0));
                    println!("{errno:?} {sent}");
                    return;
                }
                sent += 1;
                thread::sleep(Duration::from_millis(20));
            }
            println!("ok");
        }
        Call::DnsQuery { server, name } => {
            use hickory_proto::{
                op::{Message, Query},
                rr::{Name, RData, RecordType},
            };
            let mut query = Message::query();
            query.metadata.recursion_desired = true;
            query.add_query(Query::query(
                Name::from_ascii(&name).expect("a DNS name"),
                RecordType::A,
            ));
            let socket = UdpSocket::bind(bind_any(server)).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            let started = Instant::now();
            socket
                .send_to(&query.to_vec().expect("a query"), server)
                .expect("send");
            let mut buf = [0u8; 1500];
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let answer = Message::from_vec(&buf[..n]).expect("a DNS answer");
                    let addrs: Vec<String> = answer
                        .answers
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(format!("\"{}\"", a.0)),
                            _ => None,
                        })
                        .collect();
                    println!(
                        "{{\"rcode\":{},\"addrs\":[{}],\"from\":\"{from}\",\"ms\":{}}}",
                        u16::from(answer.metadata.response_code),
                        addrs.join(","),
                        started.elapsed().as_secs_f64() * 1000.0
                    );
                }
                Err(_) => println!(
                    "{{\"rcode\":null,\"addrs\":[],\"ms\":{}}}",
                    started.elapsed().as_secs_f64() * 1000.0
                ),
            }
        }
    }
}

fn bind_any(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    }
}
