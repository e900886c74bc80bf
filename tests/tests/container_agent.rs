//! chaos itself in a container, as the Kubernetes DaemonSet (deploy/kubernetes) runs it: the
//! daemon with the host's PID namespace, the host's cgroup hierarchy mounted read-only, the
//! engine's socket, a cgroup namespace of its own and no capability but CAP_SYS_ADMIN; a user
//! injects with `docker exec AGENT chaos inject ... --container NAME` (as `kubectl exec` would)
//! and a sibling container is faulted while its twin is not.
//!
//! The image here holds the test build of chaos and its libraries (`docker import`); the
//! release image (Dockerfile, scripts/image) has the same layout with a static binary.
//! Host-only by nature (the VM tier has no Docker engine).
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::Ordering,
};

use chaos_tests::{docker::*, *};
use serde_json::Value;

/// The options the DaemonSet's pod spec amounts to under Docker (docs/containers.md).
fn agent_options(socket_dir: &Path) -> Vec<String> {
    [
        "--pid",
        "host",
        "--cgroupns",
        "private",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "SYS_ADMIN",
        "--read-only",
        "--volume",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "--volume",
        "/var/run/docker.sock:/var/run/docker.sock",
        "--volume",
        &format!("{}:/run/chaos", socket_dir.display()),
    ]
    .map(String::from)
    .to_vec()
}

/// `docker exec AGENT /chaos ARGS`: stdout, or the failure with stderr.
fn in_agent(agent: &Container, args: &[&str]) -> String {
    let mut argv = vec!["exec", agent.id.as_str(), "/chaos"];
    argv.extend(args);
    docker(&argv).unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn the_agent_in_a_container_faults_a_sibling_by_name() {
    if host_only("a Docker engine") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    let (addr, accepted) = tcp_server();
    let sync = scratch("agent-sync");
    let socket_dir = scratch("agent-socket");
    for dir in [&sync, &socket_dir] {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).unwrap();
    }
    let workload = workload_bin();
    let image = Image::with_binaries("agent", &[&chaos_bin(), &workload]);
    let program = format!("/{}", workload.file_name().unwrap().to_str().unwrap());
    let argv = |ready: &str| {
        [
            program.as_str(),
            "--ready",
            &format!("/sync/{ready}"),
            "--wait-for",
            "/sync/go",
            "--count",
            "5",
            "connect",
            &addr,
        ]
        .map(String::from)
        .to_vec()
    };
    let target = Container::run(&image, "redis", &sync, &argv("target-ready"));
    let twin = Container::run(&image, "twin", &sync, &argv("twin-ready"));
    let mut options = agent_options(&socket_dir);
    options.extend(["--entrypoint".into(), "/chaos".into()]);
    // The root filesystem is read-only: the audit log goes beside the socket, as in the image.
    let agent = Container::run_with(
        &image,
        "agent",
        &options,
        &["daemon", "--audit-log", "/run/chaos/audit.jsonl"].map(String::from),
    );
    wait_for_file(&sync.join("target-ready"));
    wait_for_file(&sync.join("twin-ready"));
    wait_for_file(&socket_dir.join("chaos.sock"));
    let target_cgroup = target.cgroup();

    // As a user would: `kubectl exec` (here `docker exec`) into the agent, naming the
    // container; the CLI hands the fault to the agent's daemon.
    let created: Value = serde_json::from_str(&in_agent(
        &agent,
        &[
            "inject",
            "syscall",
            "--syscall",
            "connect",
            "--errno",
            "ECONNREFUSED",
            "--duration",
            "2m",
            "--json",
            "--container",
            &target.name,
        ],
    ))
    .expect("the daemon's answer");
    assert_eq!(
        created["target"],
        target_cgroup.to_str().unwrap(),
        "resolved in the agent as on the host: {created}"
    );

    fs::write(sync.join("go"), b"").unwrap();
    let (hit, untouched) = (result_of(&target), result_of(&twin));
    // The target exited, so the engine removed its cgroup and the daemon ends the fault,
    // logging its last counters.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let removed = loop {
        let logs = daemon_log(&agent);
        if let Some(line) = logs.lines().find(|l| l.contains("fault removed")) {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fault removed: {logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    in_agent(&agent, &["stop", "--all"]);
    assert_eq!(
        (hit.ok, hit.failed_with("ECONNREFUSED")),
        (0, 5),
        "faulted container: {hit:?}"
    );
    assert_eq!(
        (untouched.ok, untouched.failed()),
        (5, 0),
        "twin: {untouched:?}"
    );
    assert!(
        removed.contains("its target cgroup was removed")
            && removed.contains("matched=5")
            && removed.contains("injected=5"),
        "{removed}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 5, "only the twin connects");

    // The agent's own log shows the daemon served (and nothing panicked).
    let logs = daemon_log(&agent);
    assert!(!logs.contains("panicked"), "agent log: {logs}");
    drop((target, twin, agent, image));
    for dir in [&sync, &socket_dir] {
        let _ = fs::remove_dir_all(dir);
    }
    assert_nothing_left();
    assert_no_docker_leftovers();
}

/// What the agent's daemon logged: on its stderr, which `docker logs` passes on as its own
/// (the `docker` helper keeps stdout only).
fn daemon_log(agent: &Container) -> String {
    let out = Command::new("docker")
        .args(["logs", &agent.id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The workload's result from a container's logs, once it has exited with 0.
fn result_of(container: &Container) -> WorkloadResult {
    let (code, logs) = container.wait();
    assert_eq!(
        code, "0",
        "container {} exited with {code}: {logs}",
        container.name
    );
    WorkloadResult::parse(&logs)
}

/// The release image (Dockerfile) runs: built from the static binary when it is there.
#[test]
fn the_release_image_runs_the_daemon_by_default() {
    if host_only("a Docker engine") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binary = root.join("target/x86_64-unknown-linux-musl/release/chaos");
    if !binary.exists() {
        return skip(&format!(
            "no static binary at {}: build it with scripts/image",
            binary.display()
        ));
    }
    let tag = format!("chaos-test-release:{}", std::process::id());
    let label = label();
    let built = Command::new("docker")
        .args(["build", "--quiet", "--label", &label, "--tag", &tag])
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .expect("docker build");
    assert!(
        built.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let image = Image { tag };
    let socket_dir = scratch("release-socket");
    let _ = fs::remove_dir_all(&socket_dir);
    fs::create_dir_all(&socket_dir).unwrap();
    let agent = Container::run_with(&image, "release", &agent_options(&socket_dir), &[]);
    wait_for_file(&socket_dir.join("chaos.sock"));
    let mut logs = Command::new("docker")
        .args(["logs", "--follow", &agent.id])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(logs.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("listening"))
        .unwrap_or_default();
    let _ = logs.kill();
    let _ = logs.wait();
    assert!(line.contains("chaos daemon listening"), "log: {line}");
    let status = in_agent(&agent, &["status"]);
    assert!(status.contains("no active faults"), "status: {status}");
    drop((agent, image));
    let _ = fs::remove_dir_all(&socket_dir);
    assert_no_docker_leftovers();
}
