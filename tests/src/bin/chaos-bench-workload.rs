//! The benchmark's workload: one syscall-heavy operation repeated a fixed number of times,
//! timed inside the process (so that starting it, and whatever traces it, is not counted).
//! Prints one JSON line: `{"op", "iterations", "ns", "cpu_ns", "ok", "failed"}` (wall and
//! CPU time of the loop).
//!
//! `--until-fail` instead repeats the operation until it first fails and prints the
//! CLOCK_MONOTONIC time at which that failing operation began (`{"first_failure_ns"}`), for
//! arm-time measurements: the fault was armed by then. Not when the failure was noticed, which
//! for a delay or a dropped packet comes a delay or a receive timeout later.
use std::{
    ffi::CString,
    io::Write as _,
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    os::fd::AsRawFd as _,
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use nix::time::{ClockId, clock_gettime};

#[derive(Parser)]
struct Args {
    /// The operation to repeat.
    #[arg(long, value_enum)]
    op: Op,
    /// How many times.
    #[arg(long, default_value_t = 10_000)]
    iterations: u64,
    /// The file `openat` opens (put it on tmpfs); the device `read` reads.
    #[arg(long)]
    path: Option<PathBuf>,
    /// Repeat until the first failure (at most 60 s), pausing 100 µs between calls, and
    /// print when the failing call began.
    #[arg(long)]
    until_fail: bool,
}

/// One unit of work; each makes the syscall that a chaos hook family sees.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Op {
    /// socket(AF_INET, SOCK_DGRAM) + close: cgroup sock_create.
    Socket,
    /// Loopback TCP socket + connect + accept + close both: cgroup sock_addr connect4.
    Connect,
    /// sendto() of one byte on a UDP socket to a loopback port: LSM socket_sendmsg.
    UdpSend,
    /// openat(PATH, O_RDONLY) + close: LSM file_open.
    Openat,
    /// read() of one byte from PATH (/dev/zero), opened once: LSM file_permission.
    Read,
    /// UDP socket + bind to a loopback port chosen by the kernel + close: cgroup bind4.
    Bind,
    /// setsockopt(SO_REUSEADDR) on a UDP socket opened once: cgroup setsockopt.
    Setsockopt,
    /// getppid(); "fails" when SIGUSR1 arrived (signal faults) or when the call took over
    /// 10 ms (latency faults): raw_tracepoint sys_enter.
    Getppid,
    /// One byte over UDP to a socket of this process on loopback, read back within 50 ms;
    /// "fails" when it does not arrive or arrives changed (packet drop and corruption).
    UdpEcho,
}

/// Set by the SIGUSR1 handler.
static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The receiving socket of [`Op::UdpEcho`].
static ECHO: std::sync::OnceLock<std::net::UdpSocket> = std::sync::OnceLock::new();

/// What the operation needs set up beforehand, outside the timed loop.
struct Fixture {
    listener: Option<TcpListener>,
    addr: libc::sockaddr_in,
    path: CString,
    fd: i32,
}

impl Fixture {
    fn new(op: Op, path: Option<&PathBuf>) -> Fixture {
        let path_c = CString::new(
            path.map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/dev/zero".into()),
        )
        .expect("path without NUL");
        let mut listener = None;
        let mut port = 9;
        if matches!(op, Op::UdpEcho) {
            // The receiving end: a UDP socket bound to a kernel-chosen port, 50 ms timeout.
            let r = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
                .expect("bind the echo socket");
            r.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            port = r.local_addr().expect("local addr").port();
            ECHO.set(r).expect("one fixture");
        }
        if matches!(op, Op::Getppid) {
            // SAFETY: the handler only stores to an atomic.
            unsafe { libc::signal(libc::SIGUSR1, on_sigusr1 as *const () as libc::sighandler_t) };
        }
        if matches!(op, Op::Connect) {
            let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
            port = l.local_addr().expect("local addr").port();
            listener = Some(l);
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: plain syscalls on values we own; failures are checked.
        let fd = unsafe {
            match op {
                Op::UdpSend | Op::Setsockopt | Op::UdpEcho => {
                    libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
                }
                Op::Read => libc::open(path_c.as_ptr(), libc::O_RDONLY),
                _ => -1,
            }
        };
        if matches!(op, Op::UdpSend | Op::Read | Op::Setsockopt | Op::UdpEcho) {
            assert!(
                fd >= 0,
                "setting up {op:?}: {}",
                std::io::Error::last_os_error()
            );
        }
        Fixture {
            listener,
            addr,
            path: path_c,
            fd,
        }
    }

    /// Does the operation once; false if its faultable syscall failed.
    fn once(&self, op: Op) -> bool {
        let addr_ptr = &self.addr as *const libc::sockaddr_in as *const libc::sockaddr;
        let addr_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: plain syscalls on descriptors this function owns or the fixture holds.
        unsafe {
            match op {
                Op::Socket => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    if fd < 0 {
                        return false;
                    }
                    libc::close(fd);
                    true
                }
                Op::Connect => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    if fd < 0 {
                        return false;
                    }
                    let ok = libc::connect(fd, addr_ptr, addr_len) == 0;
                    if ok {
                        let l = self.listener.as_ref().expect("listener").as_raw_fd();
                        let peer = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
                        if peer >= 0 {
                            libc::close(peer);
                        }
                    }
                    libc::close(fd);
                    ok
                }
                Op::UdpSend => {
                    libc::sendto(self.fd, b"x".as_ptr().cast(), 1, 0, addr_ptr, addr_len) == 1
                }
                Op::Openat => {
                    let fd = libc::openat(libc::AT_FDCWD, self.path.as_ptr(), libc::O_RDONLY);
                    if fd < 0 {
                        return false;
                    }
                    libc::close(fd);
                    true
                }
                Op::Read => {
                    let mut byte = 0u8;
                    libc::read(self.fd, (&mut byte as *mut u8).cast(), 1) == 1
                }
                Op::Bind => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
                    if fd < 0 {
                        return false;
                    }
                    let mut any = self.addr;
                    any.sin_port = 0;
                    let ok = libc::bind(fd, (&raw const any).cast(), addr_len) == 0;
                    libc::close(fd);
                    ok
                }
                Op::Setsockopt => {
                    let one: libc::c_int = 1;
                    libc::setsockopt(
                        self.fd,
                        libc::SOL_SOCKET,
                        libc::SO_REUSEADDR,
                        (&raw const one).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    ) == 0
                }
                Op::Getppid => {
                    let start = Instant::now();
                    libc::getppid();
                    let slow = start.elapsed() > Duration::from_millis(10);
                    !slow && !SIGNALLED.load(std::sync::atomic::Ordering::SeqCst)
                }
                Op::UdpEcho => {
                    let echo = ECHO.get().expect("echo socket");
                    let payload = *b"chaos-bench-echo";
                    let sent = libc::sendto(
                        self.fd,
                        payload.as_ptr().cast(),
                        payload.len(),
                        0,
                        addr_ptr,
                        addr_len,
                    );
                    if sent != payload.len() as isize {
                        return false;
                    }
                    let mut buf = [0u8; 64];
                    matches!(echo.recv(&mut buf), Ok(n) if buf[..n] == payload)
                }
            }
        }
    }
}

fn monotonic_ns() -> u128 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

/// CPU time this process has used, user and kernel: what a hook adds to each syscall, without
/// the time spent waiting for a CPU on a busy machine.
fn cpu_ns() -> u128 {
    let t = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).expect("clock_gettime");
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

fn main() {
    let args = Args::parse();
    let fixture = Fixture::new(args.op, args.path.as_ref());
    let line = if args.until_fail {
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            let began = monotonic_ns();
            if !fixture.once(args.op) {
                break format!("{{\"first_failure_ns\":{began}}}");
            }
            if Instant::now() > give_up {
                break "{\"first_failure_ns\":null}".to_owned();
            }
            thread::sleep(Duration::from_micros(100));
        }
    } else {
        let (mut ok, mut failed) = (0u64, 0u64);
        let cpu_start = cpu_ns();
        let start = Instant::now();
        for _ in 0..args.iterations {
            if fixture.once(args.op) {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        let ns = start.elapsed().as_nanos();
        let cpu = cpu_ns() - cpu_start;
        format!(
            "{{\"op\":\"{:?}\",\"iterations\":{},\"ns\":{ns},\"cpu_ns\":{cpu},\"ok\":{ok},\"failed\":{failed}}}",
            args.op, args.iterations
        )
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
}
