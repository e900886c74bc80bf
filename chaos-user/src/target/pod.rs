//! `--pod UID`: the cgroup the kubelet made for a Kubernetes pod, which holds all its
//! containers (and its sandbox).
//!
//! The kubelet puts pods under `kubepods`, in a sub-cgroup per QoS class except Guaranteed
//! (kubelet pkg/kubelet/cm/qos_container_manager_linux.go, pod_container_manager_linux.go;
//! systemd names from cgroup_manager_linux.go, which escapes the UID's `-` as `_`):
//!
//! | QoS class  | cgroupfs driver                 | systemd driver                                                                 |
//! |------------|---------------------------------|--------------------------------------------------------------------------------|
//! | Guaranteed | `/kubepods/pod<uid>`            | `/kubepods.slice/kubepods-pod<uid_>.slice`                                     |
//! | Burstable  | `/kubepods/burstable/pod<uid>`  | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice`   |
//! | BestEffort | `/kubepods/besteffort/pod<uid>` | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice` |
//!
//! The kubelet's `--cgroup-root` or a node that is itself a container (kind:
//! `/kubelet.slice/kubelet-kubepods.slice/...`) moves the whole tree, so the hierarchy is
//! searched by name rather than at these exact paths.
use std::path::{Path, PathBuf};

use super::tree;
use crate::Error;

/// A pod UID as the user gave it, normalised to the dashed lower-case form (`kubectl get pod
/// -o jsonpath='{.metadata.uid}'`). Static pods have a hash for a UID, without dashes.
pub(super) fn normalise_uid(given: &str) -> Result<String, Error> {
    let uid = given.to_ascii_lowercase().replace('_', "-");
    let hex_and_dashes = uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if uid.len() < 8 || !hex_and_dashes || uid.starts_with('-') || uid.ends_with('-') {
        return Err(Error::Invalid {
            field: "--pod",
            value: given.to_owned(),
            expected: "a pod UID, e.g. 0b8c5f6e-3b9d-4c1e-9a51-2f7d3c4e5a6b (`kubectl get pod \
                       NAME -o jsonpath='{.metadata.uid}'`)"
                .into(),
        });
    }
    Ok(uid)
}

/// Finds the cgroup directory of the pod with UID `given` under `root`.
pub(super) fn find(root: &Path, given: &str) -> Result<PathBuf, Error> {
    let uid = normalise_uid(given)?;
    let cgroupfs = format!("pod{uid}");
    let systemd = format!("-pod{}.slice", uid.replace('-', "_"));
    let found = tree::find_dirs(root, |name| name == cgroupfs || name.ends_with(&systemd));
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Target {
            target: format!("pod {given}"),
            why: format!(
                "no pod cgroup found: searched {} (up to {} levels down) for directories named \
                 {cgroupfs} (cgroupfs driver) or *{systemd} (systemd driver), in every QoS \
                 class; is the pod running on this node?",
                root.display(),
                tree::MAX_DEPTH
            ),
        }),
        many => Err(Error::Target {
            target: format!("pod {given}"),
            why: format!(
                "{} cgroups are named after this pod: {}; give the one to fault with --cgroup",
                many.len(),
                tree::shown(root, many)
            ),
        }),
    }
}
