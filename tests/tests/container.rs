//! `--container ID` against real containers of the machine's Docker engine: a fault in one
//! container, while a second container running the same program is untouched.
//!
//! Host-only by nature (the VM tier has no Docker engine): see `host_only`. The image is
//! built locally (no registry): `docker import` of a root filesystem holding chaos-workload
//! and the libraries `ldd` lists for it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::Ordering,
    time::Duration,
};

use chaos_tests::*;

/// Runs `docker ARGS`, returning its trimmed stdout, or its stderr as the error.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("docker: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether a Docker engine answers, or why not.
fn docker_engine() -> Result<String, String> {
    docker(&["version", "--format", "{{.Server.Version}}"])
}

/// A label on everything this test process creates, to find (and check the removal of) it.
fn label() -> String {
    format!("chaos-test={}", std::process::id())
}

/// A locally built image, removed on drop.
struct Image {
    tag: String,
}

impl Image {
    /// An image holding `binary` at its own file name in `/`, plus its shared libraries.
    fn with_binary(binary: &Path) -> Image {
        let rootfs = scratch("rootfs");
        let _ = fs::remove_dir_all(&rootfs);
        fs::create_dir_all(&rootfs).unwrap();
        fs::copy(binary, rootfs.join(binary.file_name().unwrap())).unwrap();
        for lib in shared_libraries(binary) {
            let dest = rootfs.join(lib.strip_prefix("/").unwrap());
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
        }
        let tag = format!("chaos-test-workload:{}", std::process::id());
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let import = Command::new("docker")
            .args([
                "import",
                "--change",
                &format!("LABEL {}", label()),
                "-",
                &tag,
            ])
            .stdin(Stdio::from(tar.stdout.take().unwrap()))
            .output()
            .expect("docker import");
        assert!(tar.wait().unwrap().success(), "tar of {}", rootfs.display());
        let image = Image { tag };
        assert!(
            import.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        let _ = fs::remove_dir_all(&rootfs);
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}

/// The libraries the dynamic linker loads for `binary` (and the linker itself), from `ldd`.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A running container, removed (killed first) on drop, so that a failing test leaves none.
struct Container {
    id: String,
}

impl Container {
    fn run(image: &Image, name: &str, volume: &Path, argv: &[String]) -> Container {
        let name = format!("chaos-test-{}-{name}", std::process::id());
        let volume = format!("{}:/sync", volume.display());
        let mut args = vec!["run", "--detach", "--network", "host", "--label"];
        let label = label();
        args.extend([
            label.as_str(),
            "--name",
            &name,
            "--volume",
            &volume,
            &image.tag,
        ]);
        args.extend(argv.iter().map(String::as_str));
        let id = docker(&args).expect("docker run");
        Container { id }
    }

    /// The id as `docker ps` shows it.
    fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The cgroup v2 directory the engine put the container's main process in, from its
    /// /proc/PID/cgroup.
    fn cgroup(&self) -> PathBuf {
        let pid: u32 = docker(&["inspect", "--format", "{{.State.Pid}}", &self.id])
            .unwrap()
            .parse()
            .unwrap();
        let rel = chaos::target::cgroup_of_pid(pid).unwrap();
        chaos::target::CgroupTarget::from_path(&rel).unwrap().path
    }

    /// Waits for the container to exit and parses the workload result from its logs.
    fn result(&self) -> WorkloadResult {
        let code = docker(&["wait", &self.id]).unwrap();
        let logs = docker(&["logs", &self.id]).unwrap();
        assert_eq!(
            code, "0",
            "container {} exited with {code}: {logs}",
            self.id
        );
        WorkloadResult::parse(&logs)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.id]);
    }
}

#[test]
fn fault_in_one_container_leaves_its_twin_alone() {
    if host_only("a Docker engine") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    let (addr, accepted) = tcp_server();
    let sync = scratch("container-sync");
    let _ = fs::remove_dir_all(&sync);
    fs::create_dir_all(&sync).unwrap();
    let workload = workload_bin();
    let image = Image::with_binary(&workload);
    let program = format!("/{}", workload.file_name().unwrap().to_str().unwrap());
    let argv = |ready: &'static str| {
        [
            program.clone(),
            "--ready".into(),
            format!("/sync/{ready}"),
            "--wait-for".into(),
            "/sync/go".into(),
            "--count".into(),
            "5".into(),
            "connect".into(),
            addr.clone(),
        ]
    };
    let target_argv = argv("target-ready");
    let twin_argv = argv("twin-ready");
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
        target.short_id(),
    ]);
    run.wait_injecting().expect("chaos injecting");
    fs::write(sync.join("go"), b"").unwrap();
    let hit = target.result();
    let untouched = twin.result();
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
    let filter = format!("label={}", label());
    assert_eq!(
        docker(&["ps", "--all", "--quiet", "--filter", &filter]).unwrap(),
        "",
        "containers left behind"
    );
    assert_eq!(
        docker(&["images", "--quiet", "--filter", &filter]).unwrap(),
        "",
        "images left behind"
    );
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
    let hit = container.result();
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
