//! A process for tests to fault: performs one kind of syscall N times and prints, as one JSON
//! line, how many succeeded and which errnos the others failed with.
use std::{
    collections::BTreeMap,
    ffi::CString,
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use clap::{Parser, Subcommand};
use nix::errno::Errno;

#[derive(Parser)]
struct Args {
    /// Create this file once running, so a test knows the process exists (and, in `-- CMD`
    /// mode, that chaos attached before starting it).
    #[arg(long)]
    ready: Option<PathBuf>,
    /// Wait until this file exists before making the calls.
    #[arg(long)]
    wait_for: Option<PathBuf>,
    /// Write the result to this file instead of stdout.
    #[arg(long)]
    result: Option<PathBuf>,
    /// How many calls to make.
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[command(subcommand)]
    call: Call,
}

#[derive(Subcommand)]
enum Call {
    /// openat(AT_FDCWD, PATH, O_RDONLY), the way glibc's open() does it.
    Openat { path: PathBuf },
    /// The legacy open(2) syscall, by number.
    Open { path: PathBuf },
    /// connect(2) a TCP socket.
    Connect { addr: SocketAddr },
    /// read(2) one byte of PATH (opened before waiting).
    Read { path: PathBuf },
    /// pread64(2) one byte of PATH (opened before waiting).
    Pread { path: PathBuf },
    /// write(2) one byte to PATH (opened before waiting).
    Write { path: PathBuf },
    /// pwrite64(2) one byte to PATH (opened before waiting).
    Pwrite { path: PathBuf },
    /// stat(2) PATH.
    Stat { path: PathBuf },
    /// Create DIR/f-N with openat, then unlink(2) it.
    Unlink { dir: PathBuf },
    /// mkdir(2) DIR/d-N, then remove it with rmdir.
    Mkdir { dir: PathBuf },
    /// rename(2) DIR/r-N to DIR/r-N.new (creating it first).
    Rename { dir: PathBuf },
    /// truncate(2) PATH to 1 byte.
    Truncate { path: PathBuf },
    /// chmod(2) PATH to 0644.
    Chmod { path: PathBuf },
    /// getdents64(2) on DIR (opened before waiting).
    Getdents { dir: PathBuf },
    /// mmap(2) one page of PATH (opened before waiting).
    Mmap { path: PathBuf },
    /// ioctl(FIONREAD) on PATH (opened before waiting).
    Ioctl { path: PathBuf },
    /// fcntl(F_GETFL) on PATH (opened before waiting).
    Fcntl { path: PathBuf },
    /// flock(2) PATH (opened before waiting), then unlock.
    Flock { path: PathBuf },
    /// fork(2) a child that exits at once.
    Fork,
    /// execve(2) PATH in a forked child; the child's exit status 0 counts as success.
    Exec { path: PathBuf },
    /// kill(2) self with signal 0.
    Kill,
    /// socket(2) an IPv4 UDP socket.
    Socket,
    /// bind(2) an IPv4 UDP socket to ADDR (port 0 picks one).
    Bind { addr: SocketAddr },
    /// listen(2) on a fresh TCP socket.
    Listen,
    /// sendto(2) one UDP datagram to ADDR.
    Sendto { addr: SocketAddr },
    /// accept(2) a loopback TCP connection made to a listener of this process.
    Accept,
    /// recvfrom(2) a UDP datagram this process sent to itself.
    Recvfrom,
    /// shutdown(2) a connected UDP socket.
    Shutdown,
    /// setsockopt(SO_REUSEADDR) on a UDP socket (made before waiting).
    Setsockopt,
    /// getsockopt(SO_TYPE) on a UDP socket (made before waiting).
    Getsockopt,
}

/// What a call needs that is set up before waiting, so that setting it up is neither failed
/// nor counted.
struct Prepared {
    fd: i32,
}

fn prepare(call: &Call) -> Prepared {
    let open = |path: &Path, flags: i32| {
        let c = cstr(path);
        // SAFETY: a valid C string.
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
        assert!(fd >= 0, "opening {}: {}", path.display(), Errno::last());
        fd
    };
    let fd = match call {
        Call::Read { path }
        | Call::Pread { path }
        | Call::Mmap { path }
        | Call::Ioctl { path }
        | Call::Fcntl { path }
        | Call::Flock { path } => open(path, libc::O_RDONLY),
        Call::Write { path } | Call::Pwrite { path } => open(path, libc::O_WRONLY | libc::O_CREAT),
        Call::Getdents { dir } => open(dir, libc::O_RDONLY | libc::O_DIRECTORY),
        Call::Setsockopt | Call::Getsockopt => {
            // SAFETY: plain syscall.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            assert!(fd >= 0, "socket: {}", Errno::last());
            fd
        }
        _ => -1,
    };
    Prepared { fd }
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn udp_socket() -> Result<i32, Errno> {
    // SAFETY: plain syscall.
    check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }.into())
        .map(|fd| fd as i32)
}

fn sockaddr(addr: &SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 addresses only: {addr}")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn close(fd: i32) {
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
}

fn once(call: &Call, prep: &Prepared, n: u32) -> Result<(), Errno> {
    let fd = prep.fd;
    let mut byte = [0u8; 1];
    // SAFETY (all blocks below): plain syscalls on descriptors and buffers this process owns.
    match call {
        Call::Openat { path } => {
            let c = cstr(path);
            let fd = unsafe { libc::openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY) };
            close_or_errno(fd as libc::c_long)
        }
        Call::Open { path } => {
            let c = cstr(path);
            // Through the raw syscall so that it is open(2), not openat(2).
            let fd = unsafe { libc::syscall(libc::SYS_open, c.as_ptr(), libc::O_RDONLY) };
            close_or_errno(fd)
        }
        Call::Connect { addr } => TcpStream::connect_timeout(addr, Duration::from_secs(5))
            .map(drop)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0))),
        Call::Read { .. } => {
            check(unsafe { libc::lseek(fd, 0, libc::SEEK_SET) })?;
            check(unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) } as libc::c_long).map(drop)
        }
        Call::Pread { .. } => {
            check(unsafe { libc::pread(fd, byte.as_mut_ptr().cast(), 1, 0) } as libc::c_long)
                .map(drop)
        }
        Call::Write { .. } => {
            check(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) } as libc::c_long).map(drop)
        }
        Call::Pwrite { .. } => {
            check(unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) } as libc::c_long).map(drop)
        }
        Call::Stat { path } => {
            let c = cstr(path);
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            check(unsafe { libc::syscall(libc::SYS_stat, c.as_ptr(), &mut st) }).map(drop)
        }
        Call::Unlink { dir } => {
            let path = dir.join(format!("f-{n}"));
            fs::write(&path, b"").expect("creating the file to unlink");
            let c = cstr(&path);
            check(unsafe { libc::syscall(libc::SYS_unlink, c.as_ptr()) }).map(drop)
        }
        Call::Mkdir { dir } => {
            let path = dir.join(format!("d-{n}"));
            let c = cstr(&path);
            let r = check(unsafe { libc::syscall(libc::SYS_mkdir, c.as_ptr(), 0o755) });
            let _ = fs::remove_dir(&path);
            r.map(drop)
        }
        Call::Rename { dir } => {
            let from = dir.join(format!("r-{n}"));
            fs::write(&from, b"").expect("creating the file to rename");
            let to = dir.join(format!("r-{n}.new"));
            let (a, b) = (cstr(&from), cstr(&to));
            check(unsafe { libc::syscall(libc::SYS_rename, a.as_ptr(), b.as_ptr()) }).map(drop)
        }
        Call::Truncate { path } => {
            let c = cstr(path);
            check(unsafe { libc::syscall(libc::SYS_truncate, c.as_ptr(), 1) }).map(drop)
        }
        Call::Chmod { path } => {
            let c = cstr(path);
            check(unsafe { libc::syscall(libc::SYS_chmod, c.as_ptr(), 0o644) }).map(drop)
        }
        Call::Getdents { .. } => {
            check(unsafe { libc::lseek(fd, 0, libc::SEEK_SET) })?;
            let mut buf = [0u8; 4096];
            check(unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) })
                .map(drop)
        }
        Call::Mmap { .. } => {
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(Errno::last());
            }
            unsafe { libc::munmap(p, 4096) };
            Ok(())
        }
        Call::Ioctl { .. } => {
            let mut n: libc::c_int = 0;
            check(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }.into()).map(drop)
        }
        Call::Fcntl { .. } => check(unsafe { libc::fcntl(fd, libc::F_GETFL) }.into()).map(drop),
        Call::Flock { .. } => {
            check(unsafe { libc::flock(fd, libc::LOCK_SH) }.into())?;
            unsafe { libc::flock(fd, libc::LOCK_UN) };
            Ok(())
        }
        Call::Fork => {
            let pid = check(unsafe { libc::syscall(libc::SYS_fork) })?;
            if pid == 0 {
                unsafe { libc::_exit(0) };
            }
            unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
            Ok(())
        }
        Call::Exec { path } => {
            // fork is not what is faulted here; execve in the child is.
            let c = cstr(path);
            let argv = [c.as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            let pid = check(unsafe { libc::fork() }.into())?;
            if pid == 0 {
                unsafe {
                    libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                    libc::_exit(100 + *libc::__errno_location());
                }
            }
            let mut status = 0;
            unsafe { libc::waitpid(pid as i32, &mut status, 0) };
            match libc::WEXITSTATUS(status) {
                0 => Ok(()),
                code if code > 100 => Err(Errno::from_raw(code - 100)),
                code => panic!("{} exited with {code}", path.display()),
            }
        }
        Call::Kill => check(unsafe { libc::kill(libc::getpid(), 0) }.into()).map(drop),
        Call::Socket => udp_socket().map(close),
        Call::Bind { addr } => {
            let sock = udp_socket()?;
            let sa = sockaddr(addr);
            let r = check(
                unsafe {
                    libc::bind(
                        sock,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of_val(&sa) as u32,
                    )
                }
                .into(),
            );
            close(sock);
            r.map(drop)
        }
        Call::Listen => {
            let sock =
                check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }.into())? as i32;
            let r = check(unsafe { libc::listen(sock, 1) }.into());
            close(sock);
            r.map(drop)
        }
        Call::Sendto { addr } => {
            let sock = udp_socket()?;
            let sa = sockaddr(addr);
            let r = check(unsafe {
                libc::sendto(
                    sock,
                    b"x".as_ptr().cast(),
                    1,
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of_val(&sa) as u32,
                )
            } as libc::c_long);
            close(sock);
            r.map(drop)
        }
        Call::Accept => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
            let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
            // The raw syscall: glibc may implement accept() with accept4.
            let r = check(unsafe {
                libc::syscall(
                    libc::SYS_accept,
                    std::os::fd::AsRawFd::as_raw_fd(&listener),
                    std::ptr::null_mut::<libc::sockaddr>(),
                    std::ptr::null_mut::<libc::socklen_t>(),
                )
            });
            if let Ok(fd) = r {
                close(fd as i32);
            }
            drop(client);
            r.map(drop)
        }
        Call::Recvfrom => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            sock.send_to(b"x", sock.local_addr().unwrap())
                .expect("send to self");
            check(unsafe {
                libc::recvfrom(
                    std::os::fd::AsRawFd::as_raw_fd(&sock),
                    byte.as_mut_ptr().cast(),
                    1,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            } as libc::c_long)
            .map(drop)
        }
        Call::Shutdown => {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            sock.connect("127.0.0.1:9").expect("udp connect");
            check(
                unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&sock), libc::SHUT_RDWR) }
                    .into(),
            )
            .map(drop)
        }
        Call::Setsockopt => {
            let one: libc::c_int = 1;
            check(
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_REUSEADDR,
                        (&one as *const libc::c_int).cast(),
                        4,
                    )
                }
                .into(),
            )
            .map(drop)
        }
        Call::Getsockopt => {
            let mut v: libc::c_int = 0;
            let mut len: libc::socklen_t = 4;
            check(
                unsafe {
                    libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_TYPE,
                        (&mut v as *mut libc::c_int).cast(),
                        &mut len,
                    )
                }
                .into(),
            )
            .map(drop)
        }
    }
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL")
}

fn close_or_errno(fd: libc::c_long) -> Result<(), Errno> {
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: we own the fd just opened.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Some(ready) = &args.ready {
        fs::write(ready, std::process::id().to_string()).expect("writing --ready file");
    }
    let prepared = prepare(&args.call);
    if let Some(go) = &args.wait_for {
        // stat(2), not open: waiting must not itself be a call the test faults.
        while !go.exists() {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let mut ok = 0u32;
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    // Each call's outcome in order ("ok" or the errno), for tests of exact schedules.
    let mut sequence = Vec::new();
    for n in 0..args.count {
        let outcome = match once(&args.call, &prepared, n) {
            Ok(()) => {
                ok += 1;
                "ok".to_owned()
            }
            Err(e) => {
                *errors.entry(format!("{e:?}")).or_default() += 1;
                format!("{e:?}")
            }
        };
        if args.count <= 1000 {
            sequence.push(outcome);
        }
    }
    let result = serde_json::json!({ "ok": ok, "errors": errors, "sequence": sequence });
    // Where a test fails every write of this process, the result goes to a file instead.
    match &args.result {
        Some(path) => {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, result.to_string()).expect("writing --result");
            fs::rename(&tmp, path).expect("publishing --result");
        }
        None => println!("{result}"),
    }
}
