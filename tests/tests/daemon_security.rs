//! The daemon's security, as users of a shared host would meet it: real users and groups made
//! for the test, the real daemon (`--group`), real processes of each user. A member of the
//! group faults its own process and is refused root's and another user's (403, with the rule);
//! its experiment's commands run with its uid, groups, environment and directory, and its http
//! requests from a socket of its uid; a policy
//! file grants a group a unit; bad policy files are refused with line and column; limits answer
//! 413, 429 and 408, a silent client is disconnected, and the daemon keeps serving; the audit
//! log records who asked for what and why it was allowed or not.
use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use chaos::daemon::{api::FaultStatus, client::DaemonClient};
use chaos_tests::{daemon::DaemonRun, *};
use nix::unistd::{Gid, Group, Uid, User};
use serde_json::Value;

/// A group made for the test (`groupadd`), removed on drop.
struct TestGroup {
    name: String,
    gid: u32,
}

/// A user made for the test (`useradd`), removed on drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    /// Every group it is in, its own first.
    groups: Vec<u32>,
}

/// Whether the machine has shadow's tools; the VM guest (busybox) has not, and gets the same
/// entries written to its /etc/passwd and /etc/group.
fn has_useradd() -> bool {
    ["/usr/sbin/useradd", "/sbin/useradd", "/usr/bin/useradd"]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("running a user-database tool");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// Rewrites `file` without the line of entry `name`.
fn remove_entry(file: &str, name: &str) {
    let text = fs::read_to_string(file).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| l.split(':').next() != Some(name))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = fs::write(file, kept);
}

/// A free id (for the guest, which has no tool to pick one).
fn free_id(file: &str) -> u32 {
    let text = fs::read_to_string(file).unwrap_or_default();
    let used: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    (42000..).find(|id| !used.contains(id)).unwrap()
}

impl TestGroup {
    fn new(prefix: &str) -> TestGroup {
        let name = format!("{prefix}{}", std::process::id() % 100_000);
        if has_useradd() {
            let _ = Command::new("groupdel").arg(&name).output();
            run_ok(Command::new("groupadd").arg(&name));
        } else {
            let gid = free_id("/etc/group");
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open("/etc/group")
                .unwrap();
            writeln!(f, "{name}:x:{gid}:").unwrap();
        }
        let gid = Group::from_name(&name).unwrap().expect("group made").gid;
        TestGroup {
            name,
            gid: gid.as_raw(),
        }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if has_useradd() {
            let _ = Command::new("groupdel").arg(&self.name).output();
        } else {
            remove_entry("/etc/group", &self.name);
        }
    }
}

impl TestUser {
    /// A user with a group of its own, also in `groups`.
    fn new(prefix: &str, groups: &[&TestGroup]) -> TestUser {
        let name = format!("{prefix}{}", std::process::id() % 100_000);
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        if has_useradd() {
            let _ = Command::new("userdel").arg(&name).output();
            let mut cmd = Command::new("useradd");
            cmd.args(["--no-create-home", "--user-group", "--shell", "/bin/sh"]);
            if !names.is_empty() {
                cmd.args(["--groups", &names.join(",")]);
            }
            run_ok(cmd.arg(&name));
        } else {
            let id = free_id("/etc/passwd").max(free_id("/etc/group"));
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open("/etc/passwd")
                .unwrap();
            writeln!(f, "{name}:x:{id}:{id}::/nonexistent:/bin/sh").unwrap();
            let text = fs::read_to_string("/etc/group").unwrap();
            let mut out = String::new();
            for line in text.lines() {
                let group = line.split(':').next().unwrap_or_default();
                if names.contains(&group) {
                    let sep = if line.ends_with(':') { "" } else { "," };
                    out += &format!("{line}{sep}{name}\n");
                } else {
                    out += &format!("{line}\n");
                }
            }
            out += &format!("{name}:x:{id}:\n");
            fs::write("/etc/group", out).unwrap();
        }
        let user = User::from_name(&name).unwrap().expect("user made");
        let cname = std::ffi::CString::new(name.clone()).unwrap();
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .unwrap()
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        }
    }

    /// Makes `cmd` run as this user (after entering `cgroup`, if given): its groups, gid, uid.
    fn command<'a>(&self, cmd: &'a mut Command, cgroup: Option<&Path>) -> &'a mut Command {
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        let procs = cgroup.map(|c| {
            fs::OpenOptions::new()
                .write(true)
                .open(c.join("cgroup.procs"))
                .expect("cgroup.procs")
        });
        // SAFETY: the closure calls only async-signal-safe functions (write, setgroups,
        // setgid, setuid) on data prepared before the fork; the file stays open in the closure.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(procs) = &procs {
                    use std::os::fd::AsRawFd as _;
                    if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                nix::unistd::setgroups(&groups)?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
                Ok(())
            });
        }
        cmd
    }

    /// A directory of its own in the scratch dir.
    fn home(&self) -> PathBuf {
        let dir = scratch(&format!("home-{}", self.name));
        fs::create_dir_all(&dir).unwrap();
        nix::unistd::chown(
            &dir,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )
        .unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if has_useradd() {
            let _ = Command::new("userdel").arg(&self.name).output();
            let _ = Command::new("groupdel").arg(&self.name).output();
        } else {
            remove_entry("/etc/passwd", &self.name);
            remove_entry("/etc/group", &self.name);
        }
    }
}

/// Copies of the test programs that every user may run (the build tree may be closed to them).
struct Programs {
    chaos: PathBuf,
    workload: PathBuf,
}

fn programs() -> Programs {
    let dir = scratch("bin");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let copy = |from: PathBuf, name: &str| {
        let to = dir.join(name);
        if !to.exists() {
            // A link where the scratch dir shares the build tree's filesystem: no 100 MiB
            // copy left behind per run.
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).unwrap();
            }
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        }
        to
    };
    Programs {
        chaos: copy(chaos_bin(), "chaos"),
        workload: copy(workload_bin(), "chaos-workload"),
    }
}

/// A `chaos daemon` with its socket, policy and audit log in the scratch dir; killed on drop.
struct Daemon {
    run: DaemonRun,
    audit: PathBuf,
}

impl Daemon {
    fn start(name: &str, group: &TestGroup, policy: Option<&str>, extra: &[&str]) -> Daemon {
        let audit = scratch(&format!("{name}-audit.jsonl"));
        let policy_file = scratch(&format!("{name}-policy.toml"));
        if let Some(text) = policy {
            fs::write(&policy_file, text).unwrap();
        }
        let mut args = vec![
            "--group",
            &group.name,
            "--policy",
            policy_file.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ];
        args.extend(extra);
        let run = DaemonRun::start_with(name, false, &args, |cmd| {
            // Must not reach the callers' commands.
            cmd.env("DAEMON_ONLY_SECRET", "leaked");
        });
        // Once it answers, the socket has its final owner and mode (it is renamed into place
        // after chown and chmod): a client never meets a socket about to change.
        use std::os::unix::fs::MetadataExt as _;
        let meta = fs::metadata(&run.socket).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o660, 0, group.gid)
        );
        Daemon { run, audit }
    }

    fn client(&self) -> DaemonClient {
        self.run.client()
    }

    /// `chaos ARGS` run by `user` (in `cwd`), talking to this daemon.
    fn chaos_as(&self, user: &TestUser, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let programs = programs();
        let mut cmd = Command::new(&programs.chaos);
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("CHAOS_SOCKET", &self.run.socket)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        user.command(&mut cmd, None)
            .output()
            .expect("running chaos")
    }

    /// The audit log's records.
    fn audit(&self) -> Vec<Value> {
        fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }
}

/// A `sleep` of `user` (or root) in `cgroup`, killed with the cgroup.
fn sleeper(cgroup: &TestCgroup, user: Option<&TestUser>) -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg("300");
    match user {
        Some(user) => user.command(&mut cmd, Some(&cgroup.path)).spawn().unwrap(),
        None => cgroup.spawn(&mut cmd),
    }
}

/// `count` socket() calls by `user` in `cgroup`.
fn sockets_as(user: &TestUser, cgroup: &TestCgroup, count: u32) -> WorkloadResult {
    let programs = programs();
    let mut cmd = Command::new(&programs.workload);
    cmd.args(["--count", &count.to_string(), "socket"])
        .stdout(Stdio::piped());
    workload_result(user.command(&mut cmd, Some(&cgroup.path)).spawn().unwrap())
}

fn inject_args<'a>(target: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--duration",
        "60s",
        "--json",
    ];
    args.extend_from_slice(target);
    args
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_caller_faults_its_own_process_and_is_refused_others() {
    if !need_root() {
        return;
    }
    let users = TestGroup::new("csec-u");
    let alice = TestUser::new("csec-a", &[&users]);
    let bob = TestUser::new("csec-b", &[&users]);
    let daemon = Daemon::start("own", &users, None, &[]);
    let home = alice.home();

    let mine = TestCgroup::new("sec-alice");
    let roots = TestCgroup::new("sec-root");
    let bobs = TestCgroup::new("sec-bob");
    let mut sleepers = vec![
        sleeper(&mine, Some(&alice)),
        sleeper(&roots, None),
        sleeper(&bobs, Some(&bob)),
    ];
    let pid = |i: usize| sleepers[i].id().to_string();

    // Her own process: allowed, and it is her calls that fail.
    let (alice_pid, root_pid, bob_pid) = (pid(0), pid(1), pid(2));
    let out = daemon.chaos_as(&alice, &home, &inject_args(&["--pid", &alice_pid]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fault: FaultStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fault.created_by, alice.uid);
    let inside = sockets_as(&alice, &mine, 3);
    assert_eq!(
        (inside.ok, inside.failed_with("EMFILE")),
        (0, 3),
        "{inside:?}"
    );
    let outside = sockets_as(&alice, &roots, 3);
    assert_eq!((outside.ok, outside.failed()), (3, 0), "{outside:?}");

    // Root's process and bob's: 403 with the rule, nothing attached.
    for (target, whose) in [
        (&root_pid, "uid 0"),
        (&bob_pid, &*format!("uid {}", bob.uid)),
    ] {
        let out = daemon.chaos_as(&alice, &home, &inject_args(&["--pid", target]), &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("403"), "{err}");
        assert!(err.contains("refused by rule: foreign-process"), "{err}");
        assert!(err.contains(&format!("runs as {whose}")), "{err}");
    }
    let cgroup = bobs.path.to_str().unwrap();
    let out = daemon.chaos_as(&alice, &home, &inject_args(&["--cgroup", cgroup]), &[]);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let by_root = sockets_as(&bob, &bobs, 2);
    assert_eq!((by_root.ok, by_root.failed()), (2, 0), "{by_root:?}");
    // Only root bypasses the guards.
    let out = daemon.chaos_as(
        &alice,
        &home,
        &inject_args(&["--pid", &alice_pid, "--i-know-what-i-am-doing"]),
        &[],
    );
    assert!(
        stderr(&out).contains("refused by rule: guards-override"),
        "{}",
        stderr(&out)
    );

    // Bob may not remove alice's fault; alice may.
    let id = fault.id.to_string();
    let out = daemon.chaos_as(&bob, &home_of(&bob), &["stop", &id], &[]);
    assert!(
        stderr(&out).contains("403") && stderr(&out).contains("creator"),
        "{}",
        stderr(&out)
    );
    assert_eq!(daemon.client().list().unwrap().len(), 1);
    let out = daemon.chaos_as(&bob, &home_of(&bob), &["stop", "--all"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        daemon.client().list().unwrap().len(),
        1,
        "bob's stop --all is his own only"
    );
    let out = daemon.chaos_as(&alice, &home, &["stop", &id], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(daemon.client().list().unwrap().is_empty());

    // Every decision is in the audit log: who, what, target, allowed or why not.
    let audit = daemon.audit();
    let created = audit
        .iter()
        .find(|r| r["action"] == "create-fault" && r["allowed"] == true)
        .expect("the allowed fault is audited");
    assert_eq!(created["uid"], alice.uid);
    assert!(
        created["target"]
            .as_str()
            .unwrap()
            .contains(&format!("pid {alice_pid}"))
    );
    assert!(
        created["reason"].as_str().unwrap().contains("same-uid"),
        "{created}"
    );
    let refused = audit
        .iter()
        .find(|r| {
            r["action"] == "create-fault"
                && r["target"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("pid {root_pid}"))
        })
        .expect("the refusal is audited");
    assert_eq!(refused["allowed"], false);
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("foreign-process")
    );
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "remove-fault" && r["uid"] == bob.uid && r["allowed"] == false)
    );

    for child in &mut sleepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(daemon);
    assert_nothing_left();
}

fn home_of(user: &TestUser) -> PathBuf {
    user.home()
}

/// An HTTP server on 127.0.0.1 that answers `200 ok` and records, for each connection, the
/// uid owning the client's socket (from /proc/net/tcp, where the kernel lists it).
fn uid_recording_http_server() -> (String, Arc<Mutex<Vec<u32>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let uids = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&uids);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let peer = conn.peer_addr().unwrap();
            // The client's own entry: local = its address, remote = ours. Fields: sl,
            // local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid.
            let want = (
                format!(":{:04X}", peer.port()),
                format!(":{:04X}", addr.port()),
            );
            let table = fs::read_to_string("/proc/net/tcp").unwrap();
            let uid = table.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 7 && f[1].ends_with(&want.0) && f[2].ends_with(&want.1))
                    .then(|| f[7].parse::<u32>().ok())
                    .flatten()
            });
            seen.lock().unwrap().push(uid.unwrap_or(u32::MAX));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (addr.to_string(), uids)
}

#[test]
fn experiment_commands_run_as_the_caller() {
    if !need_root() {
        return;
    }
    let users = TestGroup::new("csec-e");
    let alice = TestUser::new("csec-x", &[&users]);
    let daemon = Daemon::start("run-as", &users, None, &[]);
    let home = alice.home();
    let roots = TestCgroup::new("sec-exp-root");
    let mut root_sleeper = sleeper(&roots, None);
    let out_file = home.join("who");
    let (http_addr, http_uids) = uid_recording_http_server();
    let experiment = home.join("who.yaml");
    fs::write(
        &experiment,
        format!(
            "title: who runs this
configuration:
  mark: {{type: env, key: CALLER_MARK}}
method:
  - type: action
    name: who-am-i
    provider:
      type: process
      path: sh
      arguments: ['-c', 'id -u > who; id -G >> who; pwd >> who; echo \"mark=$CALLER_MARK secret=$DAEMON_ONLY_SECRET\" >> who']
  - type: action
    name: http-as-caller
    provider:
      type: http
      url: http://{http_addr}/who
  - type: action
    name: fault-roots-process
    provider:
      type: chaos
      func: syscall
      arguments: {{syscall: socket, errno: EMFILE, duration: 30s}}
      target: {{pid: {}}}
",
            root_sleeper.id()
        ),
    )
    .unwrap();
    nix::unistd::chown(&experiment, Some(Uid::from_raw(alice.uid)), None).unwrap();
    let out = daemon.chaos_as(
        &alice,
        &home,
        &["run", experiment.to_str().unwrap()],
        &[("CALLER_MARK", "from-alice")],
    );
    let err = stderr(&out);
    let who = fs::read_to_string(&out_file).unwrap_or_else(|e| panic!("{e}: {err}"));
    let lines: Vec<&str> = who.lines().collect();
    assert_eq!(lines[0], alice.uid.to_string(), "{who}");
    let groups: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&users.gid) && !groups.contains(&0), "{who}");
    assert_eq!(Path::new(lines[2]), home, "{who}");
    assert_eq!(lines[3], "mark=from-alice secret=", "{who}");
    let meta = fs::metadata(&out_file).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(meta.uid(), alice.uid, "the file is alice's");
    // The http action's socket was hers, not root's.
    assert_eq!(*http_uids.lock().unwrap(), vec![alice.uid], "{err}");
    // Her experiment's fault on root's process is refused like a direct one.
    assert!(err.contains("foreign-process"), "{err}");
    assert!(daemon.client().list().unwrap().is_empty());
    let audit = daemon.audit();
    assert!(
        audit.iter().any(|r| r["action"] == "experiment-fault"
            && r["allowed"] == false
            && r["uid"] == alice.uid),
        "{audit:?}"
    );
    let _ = root_sleeper.kill();
    let _ = root_sleeper.wait();
    drop(daemon);
    assert_nothing_left();
}

#[test]
fn the_policy_file_grants_a_group_a_unit() {
    if !need_root() {
        return;
    }
    let users = TestGroup::new("csec-p");
    let testers = TestGroup::new("csec-t");
    let alice = TestUser::new("csec-pa", &[&users, &testers]);
    let bob = TestUser::new("csec-pb", &[&users]);
    let unit = format!("csec-web-{}.service", std::process::id());
    let web = TestCgroup::named(&unit);
    let mut nginx = sleeper(&web, None);
    let policy = format!(
        "# load testers may fault the web tier\n[[grant]]\ngroup = \"{}\"\nunits = [\"{unit}\"]\n",
        testers.name
    );
    let daemon = Daemon::start("policy", &users, Some(&policy), &[]);
    let home = alice.home();
    let out = daemon.chaos_as(&alice, &home, &inject_args(&["--unit", &unit]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fault: FaultStatus = serde_json::from_slice(&out.stdout).unwrap();
    // The root process in the granted unit is faulted.
    let mut cmd = Command::new(programs().workload);
    cmd.args(["--count", "2", "socket"]).stdout(Stdio::piped());
    let inside = workload_result(web.spawn(&mut cmd));
    assert_eq!(
        (inside.ok, inside.failed_with("EMFILE")),
        (0, 2),
        "{inside:?}"
    );
    // Bob is not in the group the file grants it to.
    let pid = nginx.id().to_string();
    let out = daemon.chaos_as(&bob, &bob.home(), &inject_args(&["--pid", &pid]), &[]);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let audit = daemon.audit();
    let granted = audit
        .iter()
        .find(|r| r["allowed"] == true && r["action"] == "create-fault")
        .unwrap();
    assert!(
        granted["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("unit {unit} granted to group {}", testers.name)),
        "{granted}"
    );
    daemon.client().remove(fault.id).unwrap();
    let _ = nginx.kill();
    let _ = nginx.wait();
    drop(daemon);
    assert_nothing_left();
}

#[test]
fn bad_policy_files_are_refused_with_line_and_column() {
    if !need_root() {
        return;
    }
    for (text, at, words) in [
        (
            "[[grant]]\ngroup = \"root\"\nunits = [\"a\"\n",
            ":3:",
            "array",
        ),
        (
            "[[grant]]\ngroup = \"no-such-group-here\"\nunits = [\"a\"]\n",
            ":2:9:",
            "no-such-group-here",
        ),
        (
            "[[grant]]\ngroup = \"root\"\ncgroups = [\"../etc\"]\n",
            ":3:12:",
            "not a cgroup subtree",
        ),
        (
            "[[grant]]\ngroup = \"root\"\nunits = [\"web.socket\"]\n",
            ":3:10:",
            ".socket",
        ),
        (
            "[[grant]]\ngroup = \"root\"\nsubtrees = [\"/x\"]\n",
            ":3:1:",
            "subtrees",
        ),
    ] {
        let policy = scratch("bad-policy.toml");
        fs::write(&policy, text).unwrap();
        let socket = scratch("bad-policy.sock");
        let out = Command::new(chaos_bin())
            .args(["daemon", "--socket", socket.to_str().unwrap()])
            .args(["--policy", policy.to_str().unwrap()])
            .args([
                "--audit-log",
                scratch("bad-policy-audit.jsonl").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("invalid policy file, the daemon did not start"),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}{at}", policy.display())),
            "{at}: {err}"
        );
        assert!(err.contains(words), "{words}: {err}");
        assert!(!socket.exists(), "no socket is left");
    }
}

/// Sends `head` and `body` on a new connection and returns the status line of the answer.
fn raw_request(socket: &Path, head: &str, body: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn limits_answer_413_429_408_and_the_daemon_keeps_serving() {
    if !need_root() {
        return;
    }
    let users = TestGroup::new("csec-l");
    let daemon = Daemon::start(
        "limits",
        &users,
        None,
        &[
            "--max-body",
            "4096",
            "--max-faults-per-caller",
            "1",
            "--max-experiments-per-caller",
            "1",
            "--request-timeout",
            "1s",
        ],
    );
    let client = daemon.client();

    // A silent client holds nothing: others are served meanwhile, and it is disconnected.
    let mut silent = UnixStream::connect(&daemon.run.socket).unwrap();
    assert!(client.list().unwrap().is_empty());
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = silent
        .read(&mut buf)
        .expect("closed, not timed out on our side");
    let waited = started.elapsed();
    assert_eq!(
        n, 0,
        "the daemon closes a silent connection without an answer"
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(9),
        "{waited:?}"
    );

    // Too large: 413, declared or not.
    let big = vec![b'x'; 10_000];
    let head = format!(
        "POST /experiments HTTP/1.1\r\nHost: chaos\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    assert!(raw_request(&daemon.run.socket, &head, &big).contains("413"));
    let chunked = "POST /experiments HTTP/1.1\r\nHost: chaos\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let mut body = format!("{:x}\r\n", big.len()).into_bytes();
    body.extend_from_slice(&big);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    assert!(raw_request(&daemon.run.socket, chunked, &body).contains("413"));
    // A body that never completes: 408 after the timeout.
    let slow = "POST /faults HTTP/1.1\r\nHost: chaos\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
    assert!(raw_request(&daemon.run.socket, slow, b"{\"kind\":").contains("408"));

    // Faults per caller: the second is 429.
    let cgroup = TestCgroup::new("sec-limits");
    let fault = |errno: &str| {
        serde_json::json!({
            "kind": "syscall",
            "syscalls": ["socket"],
            "errno": errno,
            "target": {"cgroup": cgroup.path},
        })
    };
    let first = client.create_json(&fault("EMFILE")).unwrap();
    let err = client.create_json(&fault("ENFILE")).unwrap_err();
    assert!(
        format!("{err:#}").contains("429")
            && format!("{err:#}").contains("--max-faults-per-caller"),
        "{err:#}"
    );
    client.remove(first.id).unwrap();

    // Experiments per caller: the second running one is 429.
    let sleepy = chaos::daemon::api::StartExperiment {
        text: "title: t\nmethod:\n  - type: action\n    name: wait\n    provider: {type: process, path: sleep, arguments: ['30']}\n".into(),
        name: Some("t.yaml".into()),
        ..Default::default()
    };
    let running = client.start_experiment(&sleepy).unwrap();
    let err = client.start_experiment(&sleepy).unwrap_err();
    assert!(format!("{err:#}").contains("429"), "{err:#}");
    client.abort_experiment(running.id).unwrap();

    // Still serving, and the audit log saw the refusals.
    assert!(client.list().unwrap().is_empty());
    let audit = daemon.audit();
    assert!(audit.iter().any(|r| {
        r["allowed"] == false
            && r["reason"]
                .as_str()
                .unwrap()
                .contains("--max-faults-per-caller")
    }));
    drop(daemon);
    assert_nothing_left();
}
