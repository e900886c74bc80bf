//! `chaos quickstart`: one experiment, start to finish, against a target chaos brings along.
//!
//! A TCP server runs inside chaos (outside any target). Two identical clients connect to it
//! over and over: the *target* runs in a cgroup of its own where some connects fail, the
//! *control* runs outside. The run shows the steady state, the fault, the live kernel
//! counters, how the target reacted while the control did not, and removes everything.
use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, ExitCode, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chaos_common::Schedule;

use crate::{
    fault::{Errno, FilterSpec, Syscall, SyscallFault},
    loader::Injector,
    target::ChildCgroup,
};

/// Options of `chaos quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// The errno the target's connects fail with.
    #[arg(long, default_value = "ECONNREFUSED")]
    pub errno: Errno,
    /// The share of the target's connects that fail, in (0, 1].
    #[arg(long, default_value = "0.3", value_parser = super::args::parse_probability)]
    pub probability: f64,
    /// Connects per client.
    #[arg(long, default_value_t = 30)]
    pub count: u32,
}

/// Options of the hidden client that quickstart runs twice.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Label for its output lines.
    #[arg(long)]
    pub name: String,
    /// The server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// How many connects.
    #[arg(long)]
    pub count: u32,
    /// Pause between connects, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
}

/// The quickstart's client: connects `count` times, says how each went, then sums up.
pub fn client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut ok = 0;
    let mut line = String::new();
    for i in 1..=args.count {
        match TcpStream::connect_timeout(&args.addr, Duration::from_secs(2)) {
            Ok(_) => {
                ok += 1;
                line.push('.');
            }
            Err(err) => {
                let errno = err.raw_os_error().map(|e| Errno::from_raw(e).to_string());
                line.push('x');
                println!(
                    "{:<7} connect #{i:<3} failed: {} ({err})",
                    args.name,
                    errno.unwrap_or_default()
                );
            }
        }
        thread::sleep(Duration::from_millis(args.interval_ms));
    }
    println!(
        "{:<7} done: {ok}/{} connects ok   [{line}]",
        args.name, args.count
    );
    Ok(ExitCode::SUCCESS)
}

fn spawn_client(
    name: &str,
    addr: SocketAddr,
    count: u32,
    cgroup: Option<&ChildCgroup>,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding chaos's own binary")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "quickstart-client",
        "--name",
        name,
        "--addr",
        &addr.to_string(),
    ])
    .args(["--count", &count.to_string()])
    .stdout(Stdio::piped());
    let procs = cgroup.map(|cg| cg.enter_on_exec(&mut cmd)).transpose()?;
    let child = cmd.spawn().context("starting a quickstart client")?;
    drop(procs);
    Ok(child)
}

/// Echoes a client's lines and returns its closing line.
fn relay(child: &mut Child) -> thread::JoinHandle<String> {
    let out = child.stdout.take().expect("piped");
    thread::spawn(move || {
        let mut last = String::new();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("  {line}");
            last = line;
        }
        last
    })
}

/// Runs `chaos quickstart`.
pub fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind("127.0.0.1:0").context("starting the quickstart server")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        // Accepting is all a connect needs to succeed; the connection is closed right away.
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    println!("chaos quickstart: a TCP server on {addr} and two clients that connect to it.");

    println!("\n1. Steady state: both clients, no fault.");
    let mut a = spawn_client("target", addr, 5, None)?;
    let mut b = spawn_client("control", addr, 5, None)?;
    let (ra, rb) = (relay(&mut a), relay(&mut b));
    a.wait()?;
    b.wait()?;
    let (_, _) = (ra.join(), rb.join());

    let cgroup = ChildCgroup::create(&format!("quickstart-{}", std::process::id()))?;
    let fault = SyscallFault {
        syscalls: vec!["connect".parse::<Syscall>()?],
        errno: args.errno,
        schedule: Schedule {
            probability: Schedule::probability_from_f64(args.probability),
            ..Schedule::ALWAYS
        },
        filter: FilterSpec::default(),
        dry_run: false,
        // Rolled back by chaos on exit; the kernel stops on its own should chaos be frozen.
        deadline: Some(Duration::from_secs(600)),
        mechanism: None,
    };
    let target = cgroup.target();
    println!(
        "\n2. Hypothesis: if {:.0}% of its connects fail with {}, the target sees exactly those \
         failures and the control none.",
        args.probability * 100.0,
        args.errno
    );
    println!(
        "   Injecting: connect -> {} (p={}) into cgroup {}",
        args.errno,
        args.probability,
        target.path.display()
    );
    let injector = Injector::start(&fault.rules(target)?)?;
    let mut a = spawn_client("target", addr, args.count, Some(&cgroup))?;
    let mut b = spawn_client("control", addr, args.count, None)?;
    let (ra, rb) = (relay(&mut a), relay(&mut b));
    let started = Instant::now();
    let mut last_print = Instant::now();
    while a.try_wait()?.is_none() || b.try_wait()?.is_none() {
        thread::sleep(Duration::from_millis(50));
        if last_print.elapsed() >= Duration::from_secs(1) {
            let c = injector.counters()?[0];
            println!(
                "  -- kernel counters at {:>4.1}s: connect matched {:>3}, injected {:>3}",
                started.elapsed().as_secs_f64(),
                c.matched,
                c.injected
            );
            last_print = Instant::now();
        }
    }
    let (target_line, control_line) =
        (ra.join().unwrap_or_default(), rb.join().unwrap_or_default());
    let c = injector.counters()?[0];

    println!("\n3. Roll back: detaching the programs and removing the cgroup.");
    drop(injector);
    drop(cgroup);

    println!("\n4. Result:");
    println!("  {target_line}");
    println!("  {control_line}");
    println!(
        "  kernel: connect matched {} in the target, injected {} ({:.0}%)",
        c.matched,
        c.injected,
        if c.matched > 0 {
            100.0 * c.injected as f64 / c.matched as f64
        } else {
            0.0
        }
    );
    let failed_in_target = u64::from(args.count) - ok_count(&target_line);
    let control_ok = ok_count(&control_line) == u64::from(args.count);
    let exact = failed_in_target == c.injected;
    println!(
        "  hypothesis {}: the target saw {failed_in_target} failures, the kernel injected {}; \
         the control {}.",
        if exact && control_ok {
            "holds"
        } else {
            "does NOT hold"
        },
        c.injected,
        if control_ok {
            "was untouched"
        } else {
            "was hit too"
        }
    );
    println!("\nNext: `chaos inject syscall --help`, `chaos doctor`.");
    Ok(if exact && control_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `N` of a client's closing line `name done: N/M connects ok`.
fn ok_count(line: &str) -> u64 {
    line.split("done: ")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
