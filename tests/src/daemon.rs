//! A `chaos daemon` for tests: started on a socket of its own, its log collected, killed on drop.
use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use chaos::daemon::client::DaemonClient;

use crate::{chaos_bin, scratch};

/// A `chaos daemon` child with its socket under the scratch dir; killed on drop.
pub struct DaemonRun {
    /// The daemon process.
    pub child: Child,
    /// Its API socket.
    pub socket: PathBuf,
    /// Where it serves metrics, if asked to.
    pub metrics: Option<String>,
    /// Its log (stderr) so far, also echoed to the test's stderr.
    pub log: Arc<Mutex<String>>,
}

impl DaemonRun {
    /// Starts `chaos daemon EXTRA` (with `--metrics` on a free port if `metrics`) and waits
    /// until it answers.
    pub fn start(name: &str, metrics: bool, extra: &[&str]) -> DaemonRun {
        DaemonRun::start_in(None, name, metrics, extra)
    }

    /// [`DaemonRun::start`] in network namespace `netns` (a name under /run/netns), where its
    /// packet faults find their devices.
    pub fn start_in(netns: Option<&str>, name: &str, metrics: bool, extra: &[&str]) -> DaemonRun {
        DaemonRun::start_with(name, metrics, extra, |cmd| {
            if let Some(ns) = netns {
                enter_netns(cmd, ns);
            }
        })
    }

    /// [`DaemonRun::start`] with `setup` applied to its command first (environment, ...).
    pub fn start_with(
        name: &str,
        metrics: bool,
        extra: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> DaemonRun {
        let socket = scratch(&format!("{name}.sock"));
        let mut cmd = Command::new(chaos_bin());
        setup(&mut cmd);
        cmd.args(["daemon", "--socket", socket.to_str().unwrap()]);
        // A port free now (the kernel's pick), for the daemon to bind.
        let metrics = metrics.then(|| {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().to_string()
        });
        if let Some(addr) = &metrics {
            cmd.args(["--metrics", addr]);
        }
        let mut child = cmd
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chaos daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("daemon: {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut run = DaemonRun {
            child,
            socket,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run.client().answers() {
            assert!(Instant::now() < deadline, "the daemon never answered");
            if let Some(status) = run.child.try_wait().unwrap() {
                panic!("the daemon exited: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        run
    }

    /// The first line of its log that `wanted` accepts, waiting up to 5 s for it.
    pub fn log_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(line) = log.lines().find(|l| wanted(l)) {
                return line.to_owned();
            }
            assert!(Instant::now() < deadline, "not in the daemon's log:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client of its socket.
    pub fn client(&self) -> DaemonClient {
        DaemonClient::new(Some(&self.socket))
    }

    /// `chaos ARGS` talking to this daemon.
    pub fn chaos(&self, args: &[&str]) -> Output {
        Command::new(chaos_bin())
            .args(args)
            .env("CHAOS_SOCKET", &self.socket)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .expect("running chaos")
    }

    /// The metrics as `series{labels} -> value`.
    pub fn scrape(&self) -> BTreeMap<String, f64> {
        let mut stream = TcpStream::connect(self.metrics.as_ref().unwrap()).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: chaos\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }
}

/// Makes `cmd` start in network namespace `ns` (a name under /run/netns).
pub fn enter_netns(cmd: &mut Command, ns: &str) {
    let file = std::fs::File::open(Path::new("/run/netns").join(ns)).expect("netns");
    // SAFETY: setns is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
}

impl DaemonRun {
    /// SIGKILLs the daemon and reaps it: no destructor of its runs.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reaping the daemon");
    }
}

impl Drop for DaemonRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
