//! deploy/kubernetes parses as Kubernetes objects (client-side: `kubectl kustomize`, which
//! needs no cluster) and asks for what docs/containers.md says the agent needs, no more.
//! There is no cluster on the project's machines: the same pod spec is exercised under
//! Docker by tests/tests/container_agent.rs.
use std::{path::Path, process::Command};

use chaos_tests::*;

#[test]
fn the_daemonset_parses_and_asks_for_least_privileges() {
    if host_only("kubectl") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let out = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(out) => out,
        Err(err) => return skip(&format!("kubectl is not installed ({err}): scripts/setup")),
    };
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for wanted in [
        "kind: Namespace",
        "kind: DaemonSet",
        "hostPID: true",
        "- ALL",
        "- SYS_ADMIN",
        "- NET_ADMIN",
        "privileged: false",
        "readOnlyRootFilesystem: true",
        "type: RuntimeDefault",
        "mountPath: /sys/fs/cgroup",
        "mountPath: /sys/kernel/btf",
        "mountPath: /run/chaos",
        "path: /run/chaos",
        "containerPort: 9464",
        "- --metrics",
    ] {
        assert!(
            yaml.contains(wanted),
            "the manifests lack {wanted:?}:\n{yaml}"
        );
    }
    assert!(!yaml.contains("privileged: true"), "{yaml}");
    assert!(!yaml.contains("Unconfined"), "{yaml}");
}
