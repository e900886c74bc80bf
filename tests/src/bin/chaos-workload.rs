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
}

fn once(call: &Call) -> Result<(), Errno> {
    match call {
        Call::Openat { path } => {
            let c = cstr(path);
            // SAFETY: a valid C string; the fd is closed right away.
            let fd = unsafe { libc::openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY) };
            close_or_errno(fd as libc::c_long)
        }
        Call::Open { path } => {
            let c = cstr(path);
            // SAFETY: as above, through the raw syscall so that it is open(2), not openat(2).
            let fd = unsafe { libc::syscall(libc::SYS_open, c.as_ptr(), libc::O_RDONLY) };
            close_or_errno(fd)
        }
        Call::Connect { addr } => TcpStream::connect_timeout(addr, Duration::from_secs(5))
            .map(drop)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0))),
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
    if let Some(go) = &args.wait_for {
        // stat(2), not open: waiting must not itself be a call the test faults.
        while !go.exists() {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let mut ok = 0u32;
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..args.count {
        match once(&args.call) {
            Ok(()) => ok += 1,
            Err(e) => *errors.entry(format!("{e:?}")).or_default() += 1,
        }
    }
    println!("{}", serde_json::json!({ "ok": ok, "errors": errors }));
}
