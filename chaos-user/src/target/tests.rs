//! Resolution against synthetic cgroup trees laid out as each runtime lays them out (the
//! layouts and their sources are in the docs of `container`, `pod` and `unit`), and the
//! guards.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::*;

/// A fake cgroup v2 hierarchy in a temporary directory: directories with a `cgroup.procs`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("cgroup.procs"), "").unwrap();
        Tree { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the cgroup `rel` (as /proc/PID/cgroup shows it) and its parents.
    fn cgroup(&self, rel: &str) -> PathBuf {
        let path = self.root().join(rel.trim_start_matches('/'));
        fs::create_dir_all(&path).unwrap();
        let mut dir = path.as_path();
        while dir != self.root() {
            fs::write(dir.join("cgroup.procs"), "").unwrap();
            dir = dir.parent().unwrap();
        }
        path
    }

    /// Resolves with no container engine reachable.
    fn resolve(&self, target: Target) -> Result<PathBuf, Error> {
        target
            .resolve_with(self.root(), &|| Err("no engine here".into()))
            .map(|t| t.path)
    }

    /// Resolves with an engine that lists `containers`.
    fn resolve_listing(
        &self,
        target: Target,
        containers: Vec<engine::EngineContainer>,
    ) -> Result<PathBuf, Error> {
        target
            .resolve_with(self.root(), &move || Ok(containers.clone()))
            .map(|t| t.path)
    }
}

const ID_A: &str = "1281e4808027b76fdfa9bb28066d1489d1e8a380e70395cf1164abc0b7016b38";
const ID_B: &str = "9f3c2a7d41be5c6e0d8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
/// Shares its first 6 digits with ID_A.
const ID_C: &str = "1281e4aa8027b76fdfa9bb28066d1489d1e8a380e70395cf1164abc0b7016b38";
const POD: &str = "0b8c5f6e-3b9d-4c1e-9a51-2f7d3c4e5a6b";
const POD_: &str = "0b8c5f6e_3b9d_4c1e_9a51_2f7d3c4e5a6b";

fn container(id: &str) -> Target {
    Target::Container(id.into())
}

fn message(err: Error) -> String {
    err.to_string()
}

#[test]
fn docker_cgroupfs_as_measured_on_the_project_machines() {
    // Docker 20.10, cgroupfs driver, hybrid host: /proc/PID/cgroup says `0::/docker/<id>`.
    let tree = Tree::new();
    let dir = tree.cgroup(&format!("/docker/{ID_A}"));
    tree.cgroup(&format!("/docker/{ID_B}"));
    assert_eq!(tree.resolve(container(ID_A)).unwrap(), dir);
    assert_eq!(tree.resolve(container(&ID_A[..12])).unwrap(), dir);
    assert_eq!(
        tree.resolve(container(&ID_A[..12].to_uppercase())).unwrap(),
        dir
    );
    assert_eq!(
        tree.resolve(container(&format!("docker://{ID_A}")))
            .unwrap(),
        dir
    );
    let level = Target::Container(ID_A.into())
        .resolve(tree.root())
        .unwrap()
        .level;
    assert_eq!(level, 2);
}

#[test]
fn docker_systemd_driver() {
    let tree = Tree::new();
    let dir = tree.cgroup(&format!("/system.slice/docker-{ID_A}.scope"));
    tree.cgroup("/system.slice/docker.service");
    assert_eq!(tree.resolve(container(&ID_A[..12])).unwrap(), dir);
}

#[test]
fn containerd_cri_both_drivers() {
    let tree = Tree::new();
    // cgroupfs: the pod's sandbox (pause) and its container side by side under the pod.
    tree.cgroup(&format!("/kubepods/burstable/pod{POD}/{ID_B}"));
    let cgroupfs = tree.cgroup(&format!("/kubepods/burstable/pod{POD}/{ID_A}"));
    assert_eq!(tree.resolve(container(&ID_A[..12])).unwrap(), cgroupfs);

    let tree = Tree::new();
    let systemd = tree.cgroup(&format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/\
         cri-containerd-{ID_A}.scope"
    ));
    assert_eq!(
        tree.resolve(container(&format!("containerd://{ID_A}")))
            .unwrap(),
        systemd
    );
}

#[test]
fn crio_both_drivers_and_not_its_conmon() {
    let tree = Tree::new();
    let pod =
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice");
    tree.cgroup(&format!("{pod}/crio-conmon-{ID_A}.scope"));
    let systemd = tree.cgroup(&format!("{pod}/crio-{ID_A}.scope"));
    assert_eq!(tree.resolve(container(&ID_A[..12])).unwrap(), systemd);

    let tree = Tree::new();
    let cgroupfs = tree.cgroup(&format!("/kubepods/besteffort/pod{POD}/crio-{ID_A}"));
    assert_eq!(
        tree.resolve(container(&format!("cri-o://{}", &ID_A[..20])))
            .unwrap(),
        cgroupfs
    );
}

#[test]
fn podman_root_rootless_and_cgroupfs() {
    let tree = Tree::new();
    let scope = tree.cgroup(&format!("/machine.slice/libpod-{ID_A}.scope"));
    // The payload may sit in a sub-cgroup: targeting the scope covers it.
    tree.cgroup(&format!("/machine.slice/libpod-{ID_A}.scope/container"));
    tree.cgroup(&format!("/machine.slice/libpod-conmon-{ID_A}.scope"));
    assert_eq!(tree.resolve(container(&ID_A[..12])).unwrap(), scope);

    let tree = Tree::new();
    let rootless = tree.cgroup(&format!(
        "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID_B}.scope"
    ));
    assert_eq!(tree.resolve(container(ID_B)).unwrap(), rootless);

    let tree = Tree::new();
    let cgroupfs = tree.cgroup(&format!("/libpod_parent/libpod-{ID_B}"));
    assert_eq!(tree.resolve(container(&ID_B[..12])).unwrap(), cgroupfs);
}

#[test]
fn container_errors_say_what_was_searched() {
    let tree = Tree::new();
    tree.cgroup(&format!("/docker/{ID_A}"));
    tree.cgroup(&format!("/system.slice/docker-{ID_C}.scope"));

    let ambiguous = message(tree.resolve(container("1281e4")).unwrap_err());
    assert!(
        ambiguous.contains(&format!("/docker/{ID_A}")),
        "{ambiguous}"
    );
    assert!(
        ambiguous.contains(&format!("/system.slice/docker-{ID_C}.scope")),
        "{ambiguous}"
    );
    assert!(ambiguous.contains("give more of the id"), "{ambiguous}");

    let missing = message(tree.resolve(container("abcdef")).unwrap_err());
    assert!(
        missing.contains(&tree.root().display().to_string()),
        "{missing}"
    );
    assert!(missing.contains("docker-<id>.scope"), "{missing}");
    assert!(missing.contains("cri-containerd-<id>.scope"), "{missing}");
    assert!(missing.contains("`abcdef`"), "{missing}");

    let no_engine = message(tree.resolve(container("my-container")).unwrap_err());
    assert_eq!(no_engine, "target container my-container: no engine here");
}

fn engine_container(
    id: &str,
    name: &str,
    compose: Option<(&str, &str)>,
) -> engine::EngineContainer {
    engine::EngineContainer {
        id: id.into(),
        names: vec![format!("/{name}")],
        state: "running".into(),
        labels: compose.map(|(project, service)| {
            [
                (engine::PROJECT_LABEL.to_owned(), project.to_owned()),
                (engine::SERVICE_LABEL.to_owned(), service.to_owned()),
            ]
            .into()
        }),
    }
}

#[test]
fn names_and_compose_services_resolve_through_the_engine_to_the_id_cgroup() {
    let tree = Tree::new();
    let redis = tree.cgroup(&format!("/docker/{ID_A}"));
    let web = tree.cgroup(&format!("/system.slice/docker-{ID_B}.scope"));
    let listed = vec![
        engine_container(ID_A, "shop_redis_1", Some(("shop", "redis"))),
        engine_container(ID_B, "web", None),
        engine_container(ID_C, "blog_redis_1", Some(("blog", "redis"))),
    ];
    let resolve = |target| tree.resolve_listing(target, listed.clone());
    assert_eq!(resolve(container("web")).unwrap(), web);
    assert_eq!(resolve(container("shop_redis_1")).unwrap(), redis);
    let compose = |project: &str, service: &str| Target::ComposeService {
        project: project.into(),
        service: service.into(),
    };
    assert_eq!(resolve(compose("shop", "redis")).unwrap(), redis);
    // An id still needs no engine.
    assert_eq!(tree.resolve(container(&ID_B[..12])).unwrap(), web);

    let ambiguous = message(resolve(container("redis")).unwrap_err());
    assert!(ambiguous.contains("ambiguous"), "{ambiguous}");
    assert!(ambiguous.contains("--compose-project"), "{ambiguous}");
    // The engine knows it, the hierarchy does not (another host's cgroups mounted?).
    let lost = message(resolve(compose("blog", "redis")).unwrap_err());
    assert!(
        lost.contains(&format!(
            "knows it as blog_redis_1 ({ID_C}), but its cgroup is not found"
        )),
        "{lost}"
    );
    // An id that is no container's is reported as an id, even with an engine.
    let missing = message(resolve(container("abcdef")).unwrap_err());
    assert!(missing.contains("no container cgroup found"), "{missing}");
}

#[test]
fn pods_in_every_qos_class_with_both_drivers() {
    let layouts = [
        format!("/kubepods/pod{POD}"),
        format!("/kubepods/burstable/pod{POD}"),
        format!("/kubepods/besteffort/pod{POD}"),
        format!("/kubepods.slice/kubepods-pod{POD_}.slice"),
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice"),
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice"),
        // kind: the node is a container whose kubelet nests everything in its own slice.
        format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{POD_}.slice"
        ),
    ];
    for layout in layouts {
        let tree = Tree::new();
        let pod = tree.cgroup(&layout);
        tree.cgroup(&format!("{layout}/{ID_A}"));
        // Another pod in the same class.
        tree.cgroup(&layout.replace("0b8c5f6e", "11111111"));
        for given in [POD, POD_, &POD.to_uppercase()] {
            assert_eq!(
                tree.resolve(Target::Pod(given.into())).unwrap(),
                pod,
                "{layout} as {given}"
            );
        }
    }
}

#[test]
fn pod_errors_say_what_was_searched() {
    let tree = Tree::new();
    tree.cgroup("/kubepods/burstable");
    let missing = message(tree.resolve(Target::Pod(POD.into())).unwrap_err());
    assert!(missing.contains(&format!("pod{POD}")), "{missing}");
    assert!(missing.contains(&format!("*-pod{POD_}.slice")), "{missing}");
    assert!(
        missing.contains(&tree.root().display().to_string()),
        "{missing}"
    );
    let bad = message(tree.resolve(Target::Pod("nginx-7d9f".into())).unwrap_err());
    assert!(bad.starts_with("invalid --pod `nginx-7d9f`"), "{bad}");
}

#[test]
fn systemd_units_in_their_slices() {
    let tree = Tree::new();
    let nginx = tree.cgroup("/system.slice/nginx.service");
    let nested = tree.cgroup("/app.slice/app-web.slice/web@1.service");
    let scope = tree.cgroup("/user.slice/user-1000.slice/session-2.scope");
    assert_eq!(
        tree.resolve(Target::Unit("nginx.service".into())).unwrap(),
        nginx
    );
    assert_eq!(tree.resolve(Target::Unit("nginx".into())).unwrap(), nginx);
    assert_eq!(
        tree.resolve(Target::Unit("web@1.service".into())).unwrap(),
        nested
    );
    assert_eq!(
        tree.resolve(Target::Unit("session-2.scope".into()))
            .unwrap(),
        scope
    );

    let missing = message(tree.resolve(Target::Unit("redis".into())).unwrap_err());
    assert!(
        missing.contains("no cgroup named redis.service"),
        "{missing}"
    );
    assert!(
        missing.contains(&tree.root().display().to_string()),
        "{missing}"
    );
    let socket = message(
        tree.resolve(Target::Unit("nginx.socket".into()))
            .unwrap_err(),
    );
    assert!(
        socket.starts_with("invalid --unit `nginx.socket`"),
        "{socket}"
    );
}

#[test]
fn a_unit_of_both_managers_is_ambiguous() {
    let tree = Tree::new();
    tree.cgroup("/system.slice/worker.service");
    tree.cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/worker.service");
    let err = message(
        tree.resolve(Target::Unit("worker.service".into()))
            .unwrap_err(),
    );
    assert!(err.contains("/system.slice/worker.service"), "{err}");
    assert!(err.contains("--cgroup"), "{err}");
}

#[test]
fn cgroup_paths_absolute_or_relative() {
    let tree = Tree::new();
    let dir = tree.cgroup("/system.slice/db.service");
    assert_eq!(
        tree.resolve(Target::Cgroup("/system.slice/db.service".into()))
            .unwrap(),
        dir
    );
    assert_eq!(tree.resolve(Target::Cgroup(dir.clone())).unwrap(), dir);
    let target = Target::Cgroup(dir.clone()).resolve(tree.root()).unwrap();
    assert_eq!(target.level, 2);
    let missing = message(tree.resolve(Target::Cgroup("/nope".into())).unwrap_err());
    assert!(missing.contains("/nope"), "{missing}");
    fs::create_dir(tree.root().join("plain")).unwrap();
    let plain = message(tree.resolve(Target::Cgroup("/plain".into())).unwrap_err());
    assert!(plain.contains("not a cgroup v2 directory"), "{plain}");
}

fn guard_check(guards: &Guards, tree: &Tree, rel: &str) -> Result<(), String> {
    let target = CgroupTarget::in_root(tree.root(), Path::new(rel)).unwrap();
    guards.check(&target, rel).map_err(message)
}

#[test]
fn guards_refuse_root_init_and_chaos_itself() {
    let tree = Tree::new();
    tree.cgroup("/init.slice/init.scope");
    tree.cgroup("/system.slice/chaos.service");
    tree.cgroup("/system.slice/db.service");
    let guards = Guards::new(
        tree.root(),
        Some(Path::new("/init.slice/init.scope")),
        Some(Path::new("/system.slice/chaos.service")),
    );

    let root = guard_check(&guards, &tree, "/").unwrap_err();
    assert!(root.contains("root cgroup"), "{root}");
    assert!(root.contains("--i-know-what-i-am-doing"), "{root}");

    let init = guard_check(&guards, &tree, "/init.slice/init.scope").unwrap_err();
    assert!(init.contains("cgroup of PID 1"), "{init}");
    assert!(init.contains("init.scope"), "{init}");
    let above_init = guard_check(&guards, &tree, "/init.slice").unwrap_err();
    assert!(
        above_init.contains("contains the cgroup of PID 1"),
        "{above_init}"
    );

    let own = guard_check(&guards, &tree, "/system.slice/chaos.service").unwrap_err();
    assert!(own.contains("chaos's own cgroup"), "{own}");
    let above_own = guard_check(&guards, &tree, "/system.slice").unwrap_err();
    assert!(
        above_own.contains("contains chaos's own cgroup"),
        "{above_own}"
    );
    assert!(above_own.contains("chaos.service"), "{above_own}");

    // A sibling, or something next to init, is fine.
    guard_check(&guards, &tree, "/system.slice/db.service").unwrap();
}

#[test]
fn guards_with_init_in_the_root_refuse_only_the_root() {
    // As on the project's hosts: PID 1 and chaos both in `/`.
    let tree = Tree::new();
    tree.cgroup("/docker/x");
    let guards = Guards::new(tree.root(), Some(Path::new("/")), Some(Path::new("/")));
    assert!(guard_check(&guards, &tree, "/").is_err());
    guard_check(&guards, &tree, "/docker/x").unwrap();
    guard_check(&guards, &tree, "/docker").unwrap();
}
