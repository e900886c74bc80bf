//! `--container ID`: the cgroup a container runtime made for a container.
//!
//! Runtimes name a container's cgroup directory after its full 64-hex-digit id, with a prefix
//! and suffix that depend on the runtime and on its cgroup driver; the parent depends on the
//! runtime's configuration (a `--cgroup-parent`, the pod of a Kubernetes container), so the
//! whole hierarchy is searched by name. The layouts, from the runtimes' sources and measured
//! where a runtime was at hand:
//!
//! | runtime, driver                     | directory                                                     |
//! |-------------------------------------|---------------------------------------------------------------|
//! | Docker, cgroupfs (measured: 20.10)  | `/docker/<id>`                                                |
//! | Docker, systemd                     | `/system.slice/docker-<id>.scope`                             |
//! | containerd CRI, cgroupfs            | `/kubepods/<qos>/pod<uid>/<id>`                               |
//! | containerd CRI, systemd             | `/kubepods.slice/.../kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | CRI-O, cgroupfs                     | `/kubepods/<qos>/pod<uid>/crio-<id>`                          |
//! | CRI-O, systemd                      | `/kubepods.slice/.../crio-<id>.scope` (its monitor: `crio-conmon-<id>.scope`, not matched) |
//! | Podman, cgroupfs                    | `/libpod_parent/libpod-<id>`                                  |
//! | Podman, systemd (root, rootless)    | `/machine.slice/libpod-<id>.scope`, `/user.slice/.../user@UID.service/user.slice/libpod-<id>.scope` |
//!
//! runc derives systemd scope names as `<prefix>-<id>.scope` from a `slice:prefix:id`
//! cgroupsPath (runc libcontainer/cgroups/systemd); the prefixes are the ones Docker
//! (`docker`), containerd's CRI plugin (`cri-containerd`), CRI-O (`crio`) and Podman
//! (`libpod`) pass. Directories below the match (Podman's `container` sub-cgroup) are covered,
//! as a fault on a cgroup reaches its descendants.
use std::path::{Path, PathBuf};

use super::{engine, tree};
use crate::Error;

/// What may come before a container id in a directory name, by runtime.
const PREFIXES: &[&str] = &["", "docker-", "cri-containerd-", "crio-", "libpod-"];

/// The naming patterns searched, for messages.
pub(super) const PATTERNS: &str = "<id>, docker-<id>.scope, cri-containerd-<id>.scope, \
    crio-<id>[.scope], libpod-<id>[.scope]";

/// A container id as the user gave it, normalised: lower case, without the `docker://`,
/// `containerd://` or `cri-o://` that Kubernetes puts in front in a pod's status.
pub(super) fn normalise_id(given: &str) -> Result<String, Error> {
    let id = ["docker://", "containerd://", "cri-o://", "podman://"]
        .iter()
        .find_map(|scheme| given.strip_prefix(scheme))
        .unwrap_or(given)
        .to_ascii_lowercase();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            field: "--container",
            value: given.to_owned(),
            expected: "a container id: 1 to 64 hex digits, short or full, as `docker ps \
                       --no-trunc`, `crictl ps` or `podman ps` show it"
                .into(),
        });
    }
    Ok(id)
}

/// The full id in a directory name, if the name is one a runtime gives a container's cgroup.
pub(crate) fn id_in_dir_name(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    PREFIXES.iter().find_map(|prefix| {
        let id = stem.strip_prefix(prefix)?;
        (id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
    })
}

/// Finds the cgroup directory of the container whose id starts with `given` under `root`.
pub(super) fn find(root: &Path, given: &str) -> Result<PathBuf, Error> {
    let id = normalise_id(given)?;
    let found = tree::find_dirs(root, |name| {
        id_in_dir_name(name).is_some_and(|full| full.starts_with(&id))
    });
    let target = || format!("container {given}");
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Target {
            target: target(),
            why: format!(
                "no container cgroup found: searched {} (up to {} levels down) for directories \
                 named {PATTERNS} with an id starting with `{id}`; is the container running, \
                 and does its runtime use this cgroup v2 hierarchy?",
                root.display(),
                tree::MAX_DEPTH
            ),
        }),
        many => Err(Error::Target {
            target: target(),
            why: format!(
                "`{id}` matches {} container cgroups under {}: {}; give more of the id",
                many.len(),
                root.display(),
                tree::shown(root, many)
            ),
        }),
    }
}

/// Finds the cgroup directory of the container that `given` names: an id (found in the
/// cgroup hierarchy, no engine needed), else a container name or Compose service (in
/// `project` when given) that the container engine resolves to an id. A hex string that
/// matches no container id is tried as a name too, when an engine answers.
pub(super) fn find_named(
    root: &Path,
    given: &str,
    project: Option<&str>,
    list: &engine::Lister,
) -> Result<PathBuf, Error> {
    let by_id = match project {
        Some(_) => None,
        None => normalise_id(given).ok().map(|_| find(root, given)),
    };
    let by_id_error = match by_id {
        Some(Ok(dir)) => return Ok(dir),
        Some(Err(err)) => Some(err),
        None => None,
    };
    let target = || match project {
        Some(project) => format!("container {given} of compose project {project}"),
        None => format!("container {given}"),
    };
    let containers = match list() {
        Ok(containers) => containers,
        // An id-like value with no engine to ask: the id search's error says more.
        Err(why) => {
            return Err(by_id_error.unwrap_or(Error::Target {
                target: target(),
                why,
            }));
        }
    };
    let container = match engine::pick(&containers, given, project) {
        Ok(container) => container,
        Err(why) => {
            return Err(by_id_error.unwrap_or(Error::Target {
                target: target(),
                why,
            }));
        }
    };
    find(root, &container.id).map_err(|err| Error::Target {
        target: target(),
        why: format!(
            "the container engine knows it as {} ({}), but its cgroup is not found: {err}",
            container.name(),
            container.id
        ),
    })
}
