//! What `chaos inject` shows while a fault runs. On a terminal (tmux, read like a person looks
//! at it): one block that stays the same size while its counters change in place, and `q`
//! stops the fault. Through a pipe: at most one line per second per fault.
//! Host tier only: the VM tier's guest has no tmux.
use std::{
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use chaos_tests::*;

/// A workload in its own cgroup that calls socket() a few times every 20 ms until dropped.
struct SteadyLoad {
    cgroup: TestCgroup,
    child: Child,
}

impl SteadyLoad {
    fn start(name: &str) -> SteadyLoad {
        let cgroup = TestCgroup::new(name);
        let script = format!(
            "while :; do {} --count 5 socket >/dev/null; sleep 0.02; done",
            workload_bin().display()
        );
        let child = cgroup.spawn(Command::new("sh").args(["-c", &script]));
        SteadyLoad { cgroup, child }
    }

    fn cgroup(&self) -> &str {
        self.cgroup.path.to_str().unwrap()
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tmux server of this test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, one string per line, trailing blank lines dropped.
    fn screen(&self) -> Vec<String> {
        let text = self.run(&["capture-pane", "-p", "-t", "live"]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The injected count in the fault's row of the block.
fn injected_in(row: &str) -> u64 {
    // `syscall    socket -> EMFILE    MATCHED  INJECTED  RATE  SPARK  LEFT`
    let after = row.split("EMFILE").nth(1).expect("the fault's row");
    after
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no injected count in {row:?}"))
}

#[test]
fn on_a_terminal_the_block_stays_put_while_its_counters_change_and_q_stops() {
    if !need_root() || host_only("tmux") {
        return;
    }
    if !tmux_installed() {
        return skip("tmux is not installed (scripts/setup installs it)");
    }
    let load = SteadyLoad::start("live-tty");
    let tmux = Tmux {
        socket: format!("chaos-test-{}", std::process::id()),
    };
    let command = format!(
        "{} inject syscall --standalone --syscall socket --errno EMFILE --cgroup {} \
         --duration 60s; echo EXIT=$?; sleep 60",
        chaos_bin().display(),
        load.cgroup()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "live",
        "-x",
        "150",
        "-y",
        "40",
        &command,
    ]);
    let started = Instant::now();
    let mut counts = Vec::new();
    let mut row_at = None;
    while started.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(500));
        let screen = tmux.screen();
        // The announcement, the header, one row per fault: nothing scrolls.
        assert!(screen.len() <= 3, "{screen:#?}");
        let Some(i) = screen.iter().position(|l| l.starts_with("syscall ")) else {
            continue;
        };
        assert_eq!(*row_at.get_or_insert(i), i, "the row moved: {screen:#?}");
        assert!(screen[i - 1].contains("inj/s"), "{screen:#?}");
        counts.push(injected_in(&screen[i]));
    }
    counts.dedup();
    assert!(
        counts.len() >= 3,
        "the counters did not change in place: {counts:?}"
    );
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");

    tmux.run(&["send-keys", "-t", "live", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let screen = loop {
        let screen = tmux.screen();
        if screen.iter().any(|l| l.starts_with("EXIT=")) || Instant::now() > deadline {
            break screen;
        }
        thread::sleep(Duration::from_millis(100));
    };
    // q ended the 60 s fault at once, as Ctrl-C does, with the final report.
    assert!(screen.iter().any(|l| l == "EXIT=0"), "{screen:#?}");
    assert!(screen.iter().any(|l| l.starts_with("kind ")), "{screen:#?}");
    drop(load);
    assert_nothing_left();
}

#[test]
fn through_a_pipe_a_fault_gets_at_most_a_line_a_second() {
    if !need_root() {
        return;
    }
    let load = SteadyLoad::start("live-pipe");
    let out = chaos(&[
        "inject",
        "syscall",
        "--standalone",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--cgroup",
        load.cgroup(),
        "--duration",
        "4s",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    // `chaos: [   1.0s] syscall socket -> EMFILE matched N injected N (R/s), 3s left`
    let times: Vec<f64> = out
        .stderr
        .lines()
        .filter(|l| l.contains("-> EMFILE matched"))
        .map(|l| {
            l.split('[')
                .nth(1)
                .and_then(|r| r.split('s').next())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(times.len() >= 3, "{}", out.stderr);
    assert!(
        times.len() <= 5,
        "more than a line a second: {}",
        out.stderr
    );
    for pair in times.windows(2) {
        // Printed with one decimal.
        assert!(pair[1] - pair[0] >= 0.95, "{}", out.stderr);
    }
    drop(load);
    assert_nothing_left();
}

#[test]
fn status_watch_shows_the_daemons_faults_in_place() {
    if !need_root() || host_only("tmux") {
        return;
    }
    if !tmux_installed() {
        return skip("tmux is not installed (scripts/setup installs it)");
    }
    let load = SteadyLoad::start("live-status");
    let socket = scratch("live.sock");
    let mut daemon = Command::new(chaos_bin())
        .args(["daemon", "--socket", socket.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chaos daemon");
    let client = chaos::daemon::client::DaemonClient::new(Some(&socket));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.answers() {
        assert!(Instant::now() < deadline, "the daemon never answered");
        thread::sleep(Duration::from_millis(20));
    }
    let handed = Command::new(chaos_bin())
        .args([
            "inject",
            "syscall",
            "--syscall",
            "socket",
            "--errno",
            "EMFILE",
        ])
        .args(["--cgroup", load.cgroup(), "--duration", "60s"])
        .env("CHAOS_SOCKET", &socket)
        .output()
        .expect("chaos inject");
    assert!(handed.status.success(), "{handed:?}");

    let tmux = Tmux {
        socket: format!("chaos-test-status-{}", std::process::id()),
    };
    let command = format!(
        "{} status --watch --socket {}; echo EXIT=$?; sleep 60",
        chaos_bin().display(),
        socket.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "live",
        "-x",
        "150",
        "-y",
        "40",
        &command,
    ]);
    let mut counts = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        thread::sleep(Duration::from_millis(500));
        let screen = tmux.screen();
        // The header and the daemon's one fault.
        assert!(screen.len() <= 2, "{screen:#?}");
        if let Some(row) = screen.iter().find(|l| l.starts_with("syscall ")) {
            assert!(row.contains("#1 socket -> EMFILE"), "{row}");
            counts.push(injected_in(row));
        }
    }
    counts.dedup();
    assert!(
        counts.len() >= 3,
        "the counters did not change in place: {counts:?}"
    );
    tmux.run(&["send-keys", "-t", "live", "q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tmux.screen().iter().any(|l| l == "EXIT=0") {
        assert!(Instant::now() < deadline, "{:#?}", tmux.screen());
        thread::sleep(Duration::from_millis(100));
    }
    // Watching removed nothing: the daemon still runs the fault.
    assert_eq!(client.list().expect("listing").len(), 1);
    let _ = daemon.kill();
    let _ = daemon.wait();
    drop(load);
    assert_nothing_left();
}
