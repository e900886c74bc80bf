//! A process for the signal and latency tests: makes syscalls that those faults act on and
//! prints, as one JSON line, what it observed of them.
use std::{
    fs::{self, File},
    io::Write as _,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use nix::{
    sys::signal::{SigSet, Signal},
    time::{ClockId, clock_gettime},
};

#[derive(Parser)]
struct Args {
    /// Create this file once running.
    #[arg(long)]
    ready: Option<PathBuf>,
    /// Wait until this file exists before making the calls.
    #[arg(long)]
    wait_for: Option<PathBuf>,
    #[command(subcommand)]
    call: Call,
}

#[derive(Subcommand)]
enum Call {
    /// Before each of COUNT fsyncs of FILE, write the number of that fsync (1, 2, ...) into
    /// FILE, so that the file says which fsync the process reached.
    FsyncCount {
        file: PathBuf,
        #[arg(long)]
        count: u64,
    },
    /// With SIGUSR1 blocked everywhere, a second thread fsyncs FILE once and reports whether
    /// SIGUSR1 is then pending for that thread alone or for the whole process.
    ThreadSignal { file: PathBuf },
    /// THREADS threads named `worker-N` each make COUNT calls of CALL (getppid, or socket
    /// of a UDP socket, closed again); prints the process id and each thread's id and name.
    Threads {
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        count: usize,
        #[arg(long, value_enum, default_value = "getppid")]
        call: ThreadCall,
    },
    /// A thread named `slow` times COUNT getppid calls (wall and its own CPU time) while a
    /// thread named `fast` keeps timing getuid calls.
    Latency {
        #[arg(long)]
        count: usize,
        /// What the slow thread times instead of getppid.
        #[arg(long, value_enum, default_value = "getppid")]
        call: SlowCall,
    },
}

/// The call the `threads` workers make.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ThreadCall {
    Getppid,
    Socket,
}

/// The call the `slow` thread times.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SlowCall {
    Getppid,
    /// open(2) of /etc/hosts (closed after the timing).
    Open,
    /// connect(2) of a fresh UDP socket to 127.0.0.1:9 (made and closed outside the timing).
    Connect,
    /// sendto(2) of one UDP datagram to a socket of this process (made outside the timing).
    Send,
}

impl SlowCall {
    /// Makes one call; returns when its timing starts and ends.
    fn timed(self) -> (Instant, Instant) {
        match self {
            SlowCall::Getppid => {
                let start = Instant::now();
                nix::unistd::getppid();
                (start, Instant::now())
            }
            SlowCall::Open => {
                let start = Instant::now();
                let file = File::open("/etc/hosts").expect("opening /etc/hosts");
                let end = Instant::now();
                drop(file);
                (start, end)
            }
            SlowCall::Connect => {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
                let start = Instant::now();
                socket.connect("127.0.0.1:9").expect("connect");
                (start, Instant::now())
            }
            SlowCall::Send => {
                let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
                let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
                let to = rx.local_addr().expect("local address");
                let start = Instant::now();
                tx.send_to(b"x", to).expect("sendto");
                (start, Instant::now())
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    if let Some(ready) = &args.ready {
        fs::write(ready, b"").expect("writing the ready file");
    }
    if let Some(go) = &args.wait_for {
        while !go.exists() {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let line = match args.call {
        Call::FsyncCount { file, count } => fsync_count(&file, count),
        Call::ThreadSignal { file } => thread_signal(&file),
        Call::Latency { count, call } => latency(count, call),
        Call::Threads {
            threads,
            count,
            call,
        } => threads_calling(threads, count, call),
    };
    println!("{line}");
}

fn fsync_count(path: &Path, count: u64) -> String {
    let file = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .expect("opening the counter file");
    for i in 1..=count {
        // Fixed width, so that each write replaces the whole previous number.
        file.write_all_at(format!("{i:>20}\n").as_bytes(), 0)
            .expect("writing the counter");
        file.sync_all().expect("fsync");
    }
    format!("{{\"fsyncs\":{count}}}")
}

fn threads_calling(threads: usize, count: usize, call: ThreadCall) -> String {
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let name = format!("worker-{i}");
            thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    for _ in 0..count {
                        match call {
                            ThreadCall::Getppid => {
                                nix::unistd::getppid();
                            }
                            ThreadCall::Socket => {
                                // Failing is what the fault makes it do.
                                let _ = std::net::UdpSocket::bind("127.0.0.1:0");
                            }
                        }
                    }
                    format!("{{\"tid\":{},\"name\":\"{name}\"}}", nix::unistd::gettid())
                })
                .expect("spawning")
        })
        .collect();
    let threads: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    format!(
        "{{\"pid\":{},\"threads\":[{}]}}",
        std::process::id(),
        threads.join(",")
    )
}

fn thread_signal(path: &Path) -> String {
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    // Blocked before the thread exists, so that both threads block it and it stays pending
    // where the kernel put it.
    usr1.thread_block().expect("blocking SIGUSR1");
    let mut file = File::create(path).expect("creating the file");
    let worker = thread::Builder::new()
        .name("syncer".into())
        .spawn(move || {
            file.write_all(b"x").expect("write");
            file.sync_all().expect("fsync");
            fs::read_to_string("/proc/thread-self/status").expect("reading thread status")
        })
        .expect("spawning");
    let status = worker.join().expect("worker");
    let pending = |field: &str| {
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex mask"))
            .expect("field in status");
        mask & (1 << (Signal::SIGUSR1 as u64 - 1)) != 0
    };
    format!(
        "{{\"thread_pending\":{},\"shared_pending\":{}}}",
        pending("SigPnd:"),
        pending("ShdPnd:")
    )
}

fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Whether some instant of `sorted` lies in the middle eight tenths of `window`.
fn ran_during(sorted: &[Instant], window: (Instant, Instant)) -> bool {
    let tenth = (window.1 - window.0) / 10;
    let (from, to) = (window.0 + tenth, window.1 - tenth);
    let i = sorted.partition_point(|t| *t <= from);
    sorted.get(i).is_some_and(|t| *t < to)
}

fn latency(count: usize, call: SlowCall) -> String {
    let done = Arc::new(AtomicBool::new(false));
    let fast_done = Arc::clone(&done);
    let fast = thread::Builder::new()
        .name("fast".into())
        .spawn(move || {
            let mut times = Vec::new();
            let mut calls = Vec::new();
            while !fast_done.load(Ordering::Relaxed) {
                let start = Instant::now();
                nix::unistd::getuid();
                let end = Instant::now();
                times.push((end - start).as_nanos() as u64);
                calls.push(end);
                // Leave the CPU to the others now and then: this thread shows that it runs,
                // not how fast it can spin.
                if calls.len() % 64 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            (times, calls)
        })
        .expect("spawning fast");
    let slow = thread::Builder::new()
        .name("slow".into())
        .spawn(move || {
            let mut windows = Vec::new();
            let cpu_start = thread_cpu_ns();
            for _ in 0..count {
                windows.push(call.timed());
            }
            (windows, thread_cpu_ns() - cpu_start)
        })
        .expect("spawning slow");
    let started = Instant::now();
    let (windows, slow_cpu) = slow.join().expect("slow");
    let wall = started.elapsed().as_nanos() as u64;
    done.store(true, Ordering::Relaxed);
    let (fast_times, fast_calls) = fast.join().expect("fast");
    let slow_times: Vec<u64> = windows
        .iter()
        .map(|(start, end)| (*end - *start).as_nanos() as u64)
        .collect();
    // In how many of the slow thread's calls the fast thread made calls of its own: all of
    // them when only the slow thread waits, none when the whole process is stopped.
    let fast_ran = windows
        .iter()
        .filter(|w| ran_during(&fast_calls, **w))
        .count();
    format!(
        "{{\"slow_p50_ns\":{},\"slow_min_ns\":{},\"slow_cpu_ns\":{},\"slow_calls\":{},\"wall_ns\":{},\
         \"fast_calls\":{},\"fast_p50_ns\":{},\"fast_ran_during\":{}}}",
        median(slow_times.clone()),
        slow_times.iter().min().copied().unwrap_or(0),
        slow_cpu,
        slow_times.len(),
        wall,
        fast_times.len(),
        median(fast_times),
        fast_ran
    )
}
