//! `--container ID|NAME` and `--compose-project` against real containers of the machine's
//! Docker engine: a fault in one container, while a second container running the same
//! program is untouched; names resolved through the engine's socket, and refused when
//! ambiguous or when no engine answers.
//!
//! Host-only by nature (the VM tier has no Docker engine): see `host_only`. The image is
//! built locally (no registry): `docker import` of a root filesystem holding chaos-workload
//! and the libraries `ldd` lists for it.
use std::{fs, path::Path, process::Command, sync::atomic::Ordering, time::Duration};

use chaos_tests::{docker::*, *};

/// The workload's argv in a container: wait for /sync/go, then connect `count` times to
/// `addr`, after writing /sync/`ready`.
fn connect_argv(workload: &Path, ready: &str, addr: &str) -> Vec<String> {
    let program = format!("/{}", workload.file_name().unwrap().to_str().unwrap());
    [
        program.as_str(),
        "--ready",
        &format!("/sync/{ready}"),
        "--wait-for",
        "/sync/go",
        "--count",
        "5",
        "connect",
        addr,
    ]
    .map(String::from)
    .to_vec()
}

/// The workload's result from a container's logs, once it has exited with 0.
fn result_of(id: &str) -> WorkloadResult {
    let code = docker(&["wait", id]).unwrap();
    let logs = docker(&["logs", id]).unwrap();
    assert_eq!(code, "0", "container {id} exited with {code}: {logs}");
    WorkloadResult::parse(&logs)
}

/// Whether the Docker tests can run here; skips (with the reason) when not.
fn docker_here() -> bool {
    if host_only("a Docker engine") || !need_root() {
        return false;
    }
    if let Err(why) = docker_engine() {
        skip(&format!("no Docker engine reachable: {why}"));
        return false;
    }
    true
}

#[test]
fn fault_in_one_container_leaves_its_twin_alone() {
    if docker_here() {
        twins(|target| target.short_id().to_owned());
    }
}

#[test]
fn a_container_is_found_by_its_name() {
    if docker_here() {
        twins(|target| target.name.clone());
    }
}

/// Two containers running the same connecting workload; the one `--container` names (from
/// `name_of`) gets ECONNREFUSED on every connect, the other connects.
fn twins(name_of: impl Fn(&Container) -> String) {
    let (addr, accepted) = tcp_server();
    let sync = scratch("container-sync");
    let _ = fs::remove_dir_all(&sync);
    fs::create_dir_all(&sync).unwrap();
    let workload = workload_bin();
    let image = Image::with_binary(&workload);
    let target_argv = connect_argv(&workload, "target-ready", &addr);
    let twin_argv = connect_argv(&workload, "twin-ready", &addr);
    let target = Container::run(&image, "target", &sync, &target_argv);
    let twin = Container::run(&image, "twin", &sync, &twin_argv);
    wait_for_file(&sync.join("target-ready"));
    wait_for_file(&sync.join("twin-ready"));
    // Where the engine really put the container (read while it runs).
    let target_cgroup = target.cgroup();
    assert_ne!(
        target_cgroup,
        twin.cgroup(),
        "each container has its own cgroup"
    );

    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--json",
        "--container",
        &name_of(&target),
    ]);
    run.wait_injecting().expect("chaos injecting");
    fs::write(sync.join("go"), b"").unwrap();
    let hit = result_of(&target.id);
    let untouched = result_of(&twin.id);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    assert_eq!(
        (hit.ok, hit.failed_with("ECONNREFUSED"), hit.failed()),
        (0, 5, 5),
        "targeted container: {hit:?}"
    );
    assert_eq!(
        (untouched.ok, untouched.failed()),
        (5, 0),
        "twin container: {untouched:?}"
    );
    assert_eq!(outcome.counts(0), (5, 5), "report: {}", outcome.stdout);
    // chaos found the cgroup the engine put the container in.
    assert_eq!(
        outcome.report()["faults"][0]["target"],
        target_cgroup.to_str().unwrap(),
        "report: {}",
        outcome.stdout
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 5, "only the twin connects");

    drop((target, twin, image));
    let _ = fs::remove_dir_all(&sync);
    assert_nothing_left();
    assert_no_docker_leftovers();
}

/// A Compose file with one service, `workload`, connecting to `addr` once /sync/go exists.
fn compose_file(image: &Image, sync: &Path, argv: &[String]) -> String {
    let command = serde_json::to_string(argv).unwrap();
    format!(
        "version: \"2.4\"\nservices:\n  workload:\n    image: {}\n    network_mode: host\n    \
         volumes: [\"{}:/sync\"]\n    labels: [\"{}\"]\n    command: {command}\n",
        image.tag,
        sync.display(),
        label()
    )
}

#[test]
fn a_compose_service_in_two_projects_needs_its_project() {
    if !docker_here() {
        return;
    }
    let (addr, accepted) = tcp_server();
    let sync = scratch("compose-sync");
    let _ = fs::remove_dir_all(&sync);
    fs::create_dir_all(&sync).unwrap();
    let workload = workload_bin();
    let image = Image::with_binary(&workload);
    let shop = Compose::up(
        "shop",
        &compose_file(&image, &sync, &connect_argv(&workload, "shop-ready", &addr)),
    )
    .expect("compose up shop");
    let blog = Compose::up(
        "blog",
        &compose_file(&image, &sync, &connect_argv(&workload, "blog-ready", &addr)),
    )
    .expect("compose up blog");
    wait_for_file(&sync.join("shop-ready"));
    wait_for_file(&sync.join("blog-ready"));
    let shop_id = shop.container("workload");
    let blog_id = blog.container("workload");
    // Where the engine really put it (read while it runs).
    let shop_cgroup = cgroup_of(&shop_id);

    let fault = [
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--json",
        "--container",
        "workload",
    ];
    // Both projects have the service: refused, naming both.
    let refused = chaos(&fault);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    for wanted in [
        "ambiguous",
        &format!("compose project {}", shop.project),
        &format!("compose project {}", blog.project),
        &shop_id[..12],
        &blog_id[..12],
        "--compose-project",
    ] {
        assert!(
            refused.stderr.contains(wanted),
            "stderr lacks {wanted:?}: {}",
            refused.stderr
        );
    }

    let mut args = fault.to_vec();
    args.extend(["--compose-project", &shop.project]);
    let mut run = ChaosRun::start(&args);
    run.wait_injecting().expect("chaos injecting");
    fs::write(sync.join("go"), b"").unwrap();
    let hit = result_of(&shop_id);
    let untouched = result_of(&blog_id);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert_eq!(
        (hit.ok, hit.failed_with("ECONNREFUSED")),
        (0, 5),
        "service workload of {}: {hit:?}",
        shop.project
    );
    assert_eq!(
        (untouched.ok, untouched.failed()),
        (5, 0),
        "service workload of {}: {untouched:?}",
        blog.project
    );
    assert_eq!(outcome.counts(0), (5, 5), "report: {}", outcome.stdout);
    assert_eq!(
        outcome.report()["faults"][0]["target"],
        shop_cgroup.to_str().unwrap(),
        "report: {}",
        outcome.stdout
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 5, "only blog's connects");

    drop((shop, blog, image));
    let _ = fs::remove_dir_all(&sync);
    assert_nothing_left();
    assert_no_docker_leftovers();
}

#[test]
fn a_name_with_no_engine_reachable_is_a_clear_error() {
    if !need_root() {
        return;
    }
    let socket = scratch("no-engine.sock");
    let out = Command::new(chaos_bin())
        .args([
            "inject",
            "syscall",
            "--syscall",
            "connect",
            "--errno",
            "EIO",
            "--container",
            "redis",
        ])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .expect("chaos");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for wanted in [
        "container redis",
        "no container engine reachable",
        "$DOCKER_HOST",
        socket.to_str().unwrap(),
        "give the container's id",
    ] {
        assert!(stderr.contains(wanted), "stderr lacks {wanted:?}: {stderr}");
    }
    assert_nothing_left();
}

#[test]
fn unknown_container_says_where_it_looked() {
    if !need_root() {
        return;
    }
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "EIO",
        "--container",
        "0123456789ab",
    ]);
    assert_eq!(outcome.status.code(), Some(2), "{outcome:?}");
    let root = chaos::target::cgroup2_root().unwrap();
    for wanted in [
        "container 0123456789ab",
        root.to_str().unwrap(),
        "docker-<id>.scope",
        "crio-<id>",
        "libpod-<id>",
    ] {
        assert!(
            outcome.stderr.contains(wanted),
            "stderr lacks {wanted:?}: {}",
            outcome.stderr
        );
    }
    assert_nothing_left();
}

#[test]
fn fault_ends_when_its_container_exits() {
    if host_only("a Docker engine") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    let sync = scratch("container-gone-sync");
    let _ = fs::remove_dir_all(&sync);
    fs::create_dir_all(&sync).unwrap();
    let workload = workload_bin();
    let image = Image::with_binary(&workload);
    let program = format!("/{}", workload.file_name().unwrap().to_str().unwrap());
    let argv = [
        program,
        "--ready".into(),
        "/sync/ready".into(),
        "--wait-for".into(),
        "/sync/go".into(),
        "--count".into(),
        "4".into(),
        "socket".into(),
    ];
    let container = Container::run(&image, "gone", &sync, &argv);
    wait_for_file(&sync.join("ready"));
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--every",
        "2",
        "--duration",
        "10m",
        "--json",
        "--container",
        container.short_id(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    fs::write(sync.join("go"), b"").unwrap();
    // The container makes its calls and exits; the engine removes its cgroup.
    let hit = result_of(&container.id);
    assert_eq!(hit.sequence, ["ok", "EMFILE", "ok", "EMFILE"], "{hit:?}");
    let outcome = run
        .exits_within(Duration::from_secs(60))
        .expect("chaos still running a minute after its container exited");
    assert!(outcome.status.success(), "chaos: {outcome:?}");
    assert!(
        outcome.stderr.contains("was removed") && outcome.stderr.contains("fault ended"),
        "{}",
        outcome.stderr
    );
    assert_eq!(outcome.counts(0), (4, 2), "report: {}", outcome.stdout);
    drop((container, image));
    let _ = fs::remove_dir_all(&sync);
    assert_nothing_left();
}
