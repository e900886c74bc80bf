//! What the integration tests share: finding the binaries, test cgroups, running chaos and
//! reading what the kernel has loaded.
//!
//! The tests run as root against the running kernel, on the host and inside the VM tier
//! (`cargo xtask vm-test`), one at a time (`--test-threads=1`): they change kernel state.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos::target::ChildCgroup;
use serde_json::Value;

pub mod daemon;
pub mod dns;
pub mod docker;
pub mod events;
pub mod netns;
pub mod service;

/// Whether this run is one where every test must really run (the VM tier): skipping there
/// would hide that CI never exercised a fault.
pub fn skips_forbidden() -> bool {
    std::env::var("CHAOS_TIER").is_ok_and(|t| t == "vm")
}

/// Ends the current test as skipped, saying what is missing, or fails it where skipping is
/// forbidden. Call as `return skip(...)`.
pub fn skip(reason: &str) {
    assert!(!skips_forbidden(), "cannot skip in the VM tier: {reason}");
    eprintln!("SKIP: {reason}");
}

/// Leaves out a test that is host-only by nature: it needs a service that only the project's
/// machines run, not the VM tier's minimal guest (a Docker engine). In the VM tier this prints
/// a `SKIP:` line (counted as skipped, not failed) and returns true; the test then returns.
/// Elsewhere it returns false and the test goes on, using [`skip`] if the service is missing,
/// so that a host without it still says so. This is the one exception to "no skipping in the
/// VM tier": such tests run for real on the host tier, where CI has the service.
pub fn host_only(needs: &str) -> bool {
    if skips_forbidden() {
        eprintln!("SKIP: host-only test, not run in the VM tier: needs {needs}");
        return true;
    }
    false
}

/// Skips unless root: loading programs needs it. Also takes the machine-wide test lock.
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        hold_kernel_lock();
        return true;
    }
    skip("needs root (CAP_BPF, CAP_SYS_ADMIN) to load programs");
    false
}

/// Serialises kernel-touching tests across processes (several test binaries, or several
/// checkouts of chaos on one machine): the leftover checks list every chaos object in the
/// kernel, so two runs at once would see each other's programs. Held until the process exits.
fn hold_kernel_lock() {
    use std::sync::OnceLock;
    static LOCK: OnceLock<nix::fcntl::Flock<fs::File>> = OnceLock::new();
    LOCK.get_or_init(|| {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/chaos-kernel-tests.lock")
            .expect("opening /tmp/chaos-kernel-tests.lock");
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .expect("locking /tmp/chaos-kernel-tests.lock")
    });
}

/// What to run when a binary is missing or older than its sources.
const BUILD: &str = "cargo build -p chaos-user -p chaos-tests --bins";

fn sibling_binary(env: &str, name: &str, sources: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    // target/debug/deps/<test> -> target/debug/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build it first ({BUILD}) or set {env}",
        path.display()
    );
    assert_fresh(&path, sources);
    path
}

/// Refuses a binary older than any of its sources: `cargo test` builds the test binaries but
/// not the `chaos` they run, so a test would otherwise pass against yesterday's code. The
/// sources are found from where this crate was compiled; where they are absent (the VM tier's
/// guest holds binaries only) there is nothing to compare and the check is skipped.
fn assert_fresh(binary: &Path, sources: &[&str]) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !workspace.join("Cargo.toml").exists() {
        return;
    }
    if let Some(source) = newer_source(&workspace, binary, sources) {
        panic!(
            "{} is older than its source {}: run `{BUILD}` first, then the tests again",
            binary.display(),
            source.display()
        );
    }
}

/// The most recently changed of `sources` (files or directories under `workspace`) if it
/// changed after `binary` was built, relative to `workspace`.
fn newer_source(workspace: &Path, binary: &Path, sources: &[&str]) -> Option<PathBuf> {
    let built = fs::metadata(binary)
        .and_then(|m| m.modified())
        .expect("binary mtime");
    let (_, source) = sources
        .iter()
        .filter_map(|s| newest_file(&workspace.join(s)))
        .filter(|(t, _)| *t > built)
        .max_by_key(|(t, _)| *t)?;
    Some(
        source
            .strip_prefix(workspace)
            .unwrap_or(&source)
            .to_path_buf(),
    )
}

/// The most recently modified file at or under `path`, with its time.
fn newest_file(path: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((meta.modified().ok()?, path.to_path_buf()));
    }
    fs::read_dir(path)
        .ok()?
        .filter_map(|e| newest_file(&e.ok()?.path()))
        .max_by_key(|(t, _)| *t)
}

/// What the `chaos` binary is built from.
const CHAOS_SOURCES: &[&str] = &[
    "Cargo.lock",
    "chaos-common/src",
    "chaos-common/Cargo.toml",
    "chaos-ebpf/src",
    "chaos-ebpf/Cargo.toml",
    "chaos-user/src",
    "chaos-user/build.rs",
    "chaos-user/Cargo.toml",
];

/// The `chaos` binary under test, refused if older than its sources.
pub fn chaos_bin() -> PathBuf {
    sibling_binary("CHAOS_BIN", "chaos", CHAOS_SOURCES)
}

/// The `chaos-workload` binary.
pub fn workload_bin() -> PathBuf {
    sibling_binary(
        "CHAOS_WORKLOAD",
        "chaos-workload",
        &["tests/src/bin/chaos-workload.rs"],
    )
}

/// A cgroup the test makes and removes (with its processes) on drop.
pub struct TestCgroup {
    cgroup: ChildCgroup,
    /// Its directory.
    pub path: PathBuf,
}

impl TestCgroup {
    /// Creates `<v2 root>/chaos/test-<name>-<pid>`.
    pub fn new(name: &str) -> TestCgroup {
        TestCgroup::named(&format!("test-{name}-{}", std::process::id()))
    }

    /// Creates `<v2 root>/chaos/<name>`, for a test that needs a cgroup named as a runtime or
    /// systemd names one (`x.service`, `...-pod<uid>.slice`). Include the test's pid in it.
    pub fn named(name: &str) -> TestCgroup {
        let cgroup = ChildCgroup::create(name).expect("creating test cgroup");
        let path = cgroup.target().path.clone();
        TestCgroup { cgroup, path }
    }

    /// Starts `command` inside this cgroup.
    pub fn spawn(&self, command: &mut Command) -> Child {
        let procs = self
            .cgroup
            .enter_on_exec(command)
            .expect("opening cgroup.procs");
        let child = command.spawn().expect("spawning in test cgroup");
        drop(procs);
        child
    }
}

/// A workload command (`chaos-workload ARGS`) with stdout captured.
pub fn workload(args: &[&str]) -> Command {
    let mut cmd = Command::new(workload_bin());
    cmd.args(args).stdout(Stdio::piped());
    cmd
}

/// What a workload reported: `{"ok": N, "errors": {"EIO": N}}`.
#[derive(Debug)]
pub struct WorkloadResult {
    /// Calls that succeeded.
    pub ok: u64,
    /// Failed calls by errno name.
    pub errors: serde_json::Map<String, Value>,
    /// Each call's outcome in order: "ok" or the errno name (runs of up to 1000 calls).
    pub sequence: Vec<String>,
}

impl WorkloadResult {
    /// Parses the last JSON line of `output`.
    pub fn parse(output: &str) -> WorkloadResult {
        let line = output
            .lines()
            .rev()
            .find(|l| l.starts_with('{') && l.contains("\"ok\":"))
            .unwrap_or_else(|| panic!("no workload result in output: {output:?}"));
        let v: Value = serde_json::from_str(line).expect("workload JSON");
        WorkloadResult {
            ok: v["ok"].as_u64().expect("ok"),
            errors: v["errors"].as_object().expect("errors").clone(),
            sequence: v["sequence"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// How many calls failed with `errno`.
    pub fn failed_with(&self, errno: &str) -> u64 {
        self.errors.get(errno).and_then(Value::as_u64).unwrap_or(0)
    }

    /// Calls failed with any errno.
    pub fn failed(&self) -> u64 {
        self.errors.values().filter_map(Value::as_u64).sum()
    }
}

/// Waits for a child and parses its workload result from stdout.
pub fn workload_result(child: Child) -> WorkloadResult {
    let out = child.wait_with_output().expect("waiting for workload");
    assert!(out.status.success(), "workload failed: {:?}", out.status);
    WorkloadResult::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A file path private to this test process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-test-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    path
}

/// A running `chaos` with stderr read line by line.
pub struct ChaosRun {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// The stderr lines read so far.
    pub stderr_lines: Vec<String>,
    finished: bool,
}

/// How a chaos run ended.
#[derive(Debug)]
pub struct ChaosOutcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ChaosOutcome {
    /// The `--json` report on stdout.
    pub fn report(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("{\"faults\""))
            .unwrap_or_else(|| panic!("no JSON report on stdout: {self:?}"));
        serde_json::from_str(line).expect("report JSON")
    }

    /// `matched` and `injected` of fault `i` in the report.
    pub fn counts(&self, i: usize) -> (u64, u64) {
        let report = self.report();
        let fault = &report["faults"][i];
        (
            fault["matched"].as_u64().expect("matched"),
            fault["injected"].as_u64().expect("injected"),
        )
    }
}

impl ChaosRun {
    /// Starts `chaos ARGS` with stdout and stderr piped.
    pub fn start(args: &[&str]) -> ChaosRun {
        let mut child = Command::new(chaos_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning chaos");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        ChaosRun {
            child,
            stderr,
            stderr_lines: Vec::new(),
            finished: false,
        }
    }

    /// Reads stderr until chaos says it is injecting. Errors (with chaos's own message) if it
    /// exits first, e.g. because this kernel cannot run the fault.
    pub fn wait_injecting(&mut self) -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            if self
                .stderr
                .read_line(&mut line)
                .context("reading chaos stderr")?
                == 0
            {
                let status = self.child.wait()?;
                bail!(
                    "chaos exited with {status} before injecting: {}",
                    self.stderr_lines.join("")
                );
            }
            let done = line.starts_with("chaos: injecting");
            self.stderr_lines.push(line);
            if done {
                return Ok(());
            }
        }
    }

    /// The chaos process's pid.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends SIGINT (as Ctrl-C would) and collects the outcome.
    pub fn interrupt(mut self) -> ChaosOutcome {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("SIGINT chaos");
        self.finish_mut()
    }

    /// Waits up to `limit` for chaos to exit by itself; the outcome if it did. `limit` is a
    /// bound for a hang, far above the expected time, not a measurement.
    pub fn exits_within(mut self, limit: Duration) -> Option<ChaosOutcome> {
        let deadline = Instant::now() + limit;
        while self.child.try_wait().expect("polling chaos").is_none() {
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
        Some(self.finish_mut())
    }

    /// Waits for chaos to exit and collects the outcome.
    pub fn finish(mut self) -> ChaosOutcome {
        self.finish_mut()
    }

    fn finish_mut(&mut self) -> ChaosOutcome {
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).expect("stderr");
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut stdout)
            .expect("stdout");
        let status = self.child.wait().expect("waiting for chaos");
        self.finished = true;
        ChaosOutcome {
            status,
            stdout,
            stderr: self.stderr_lines.concat() + &rest,
        }
    }
}

impl Drop for ChaosRun {
    // A failed assertion must not leave chaos running into the next test.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `chaos ARGS` to completion.
pub fn chaos(args: &[&str]) -> ChaosOutcome {
    ChaosRun::start(args).finish()
}

/// Names of chaos's programs and maps the kernel still has loaded (by their `chaos_` and
/// `CHAOS_` prefixes), from the kernel's own listing.
pub fn leftover_chaos_objects() -> Vec<String> {
    let mut left = Vec::new();
    for prog in aya::programs::loaded_programs().flatten() {
        let name = prog.name_as_str().unwrap_or_default().to_owned();
        if name.starts_with("chaos_") {
            left.push(format!("program {name} (id {})", prog.id()));
        }
    }
    for map in aya::maps::loaded_maps().flatten() {
        let name = map.name_as_str().unwrap_or_default().to_owned();
        if name.starts_with("CHAOS_") {
            left.push(format!("map {name} (id {})", map.id()));
        }
    }
    left
}

/// Asserts that each of `lines` (printed events, kernel lines) matches `pattern`, a regex,
/// naming the first that does not.
pub fn assert_each_line_matches<'a>(lines: impl IntoIterator<Item = &'a str>, pattern: &str) {
    let shape = regex::Regex::new(pattern).expect("a valid pattern");
    for line in lines {
        assert!(shape.is_match(line), "{line:?} does not match {pattern}");
    }
}

/// Asserts that nothing of chaos remains loaded. Maps and programs are freed asynchronously
/// after their last reference goes, so this waits a little before failing.
pub fn assert_nothing_left() {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftover_chaos_objects();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chaos objects left in the kernel: {left:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `chaos ARGS` (an inject command given `--json` and a target) and waits until it
/// injects. Returns `None` after printing a SKIP line when this kernel cannot run the fault
/// (BPF LSM refused, as on the development hosts); the children are killed then.
pub fn start_or_skip(args: &[&str], children: &mut [Child]) -> Option<ChaosRun> {
    let mut run = ChaosRun::start(args);
    match run.wait_injecting() {
        Ok(()) => Some(run),
        Err(err) => {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let msg = err.to_string();
            if msg.contains("not supported by this kernel") {
                skip(&format!("this kernel cannot run the fault: {msg}"));
                return None;
            }
            panic!("{msg}");
        }
    }
}

/// One syscall fault, checked end to end: `count` calls of workload `op` in a target cgroup
/// all fail with `errno` while `chaos inject syscall --syscall SYSCALL --errno ERRNO EXTRA`
/// runs, the same calls from a process outside the target all succeed, and the report counts
/// exactly the target's calls. Skips where the kernel lacks the hook's mechanism.
pub fn assert_target_only(syscall: &str, errno: &str, extra: &[&str], op: &[&str]) {
    let count = 3;
    let go = scratch(&format!("{syscall}-go"));
    let cgroup = TestCgroup::new(syscall);
    let mut inside_args = vec!["--wait-for", go.to_str().unwrap(), "--count", "3"];
    inside_args.extend_from_slice(op);
    let inside = cgroup.spawn(&mut workload(&inside_args));
    let mut args = vec![
        "inject",
        "syscall",
        "--syscall",
        syscall,
        "--errno",
        errno,
        "--json",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--cgroup", cgroup.path.to_str().unwrap()]);
    let mut children = vec![inside];
    let Some(run) = start_or_skip(&args, &mut children) else {
        return;
    };
    let inside = children.pop().expect("one child");
    let mut outside_args = vec!["--count", "3"];
    outside_args.extend_from_slice(op);
    let outside = workload_result(workload(&outside_args).spawn().unwrap());
    assert_eq!(
        (outside.ok, outside.failed()),
        (count, 0),
        "{syscall}: outside the target: {outside:?}"
    );
    fs::write(&go, b"").unwrap();
    let inside = workload_result(inside);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "{syscall}: chaos: {outcome:?}");
    assert_eq!(
        (inside.failed_with(errno), inside.ok),
        (count, 0),
        "{syscall}: inside the target: {inside:?}"
    );
    assert_eq!(
        outcome.counts(0),
        (count, count),
        "{syscall}: report: {}",
        outcome.stdout
    );
    // Faults on the kernel's security hooks say how they ran: what was forced, else BPF LSM
    // where it is active and fmod_ret elsewhere.
    if let Some(ran) = outcome.report()["faults"][0]["mechanism"].as_str() {
        let expected = match extra.iter().position(|a| *a == "--mechanism") {
            Some(i) => extra[i + 1],
            None => expected_mechanism(),
        };
        assert_eq!(ran, expected, "{syscall}: mechanism: {}", outcome.stdout);
    }
    assert_nothing_left();
}

/// The kernel's active LSMs, from securityfs (empty if it cannot be read).
pub fn active_lsms() -> Vec<String> {
    fs::read_to_string("/sys/kernel/security/lsm")
        .unwrap_or_default()
        .trim()
        .split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `bpf` is an active LSM. Where securityfs is not mounted (the development hosts)
/// this is unknown and taken as true: chaos itself reads the list through a temporary mount.
pub fn bpf_lsm_active() -> bool {
    let lsms = active_lsms();
    lsms.is_empty() || lsms.iter().any(|l| l == "bpf")
}

/// The mechanism chaos picks by itself for the security hooks on this kernel.
pub fn expected_mechanism() -> &'static str {
    if bpf_lsm_active() { "lsm" } else { "fmod-ret" }
}

/// A TCP server on 127.0.0.1, outside every target: its address and the number of connections
/// it has accepted so far.
pub fn tcp_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if conn.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, accepted)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn a_binary_older_than_a_source_is_named_with_that_source() {
        let dir = std::env::temp_dir().join(format!("chaos-fresh-{}", std::process::id()));
        let src = dir.join("chaos-common/src");
        fs::create_dir_all(&src).unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        let set = |path: &Path, t: SystemTime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(t)
                .unwrap()
        };
        let rule = src.join("rule.rs");
        let binary = dir.join("chaos");
        fs::write(&rule, "").unwrap();
        fs::write(&binary, "").unwrap();
        set(&rule, old);
        let sources = &["chaos-common/src", "chaos-user/src"];
        assert_eq!(newer_source(&dir, &binary, sources), None, "fresh binary");
        // Edited after the build, as in a contributor's tree.
        set(&rule, SystemTime::now() + Duration::from_secs(1));
        assert_eq!(
            newer_source(&dir, &binary, sources),
            Some(PathBuf::from("chaos-common/src/rule.rs"))
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
