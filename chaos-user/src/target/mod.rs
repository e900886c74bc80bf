//! Targets: which processes a fault applies to, always resolved to one cgroup v2 directory.
//!
//! A [`Target`] is what the user named (a cgroup, a process, a container, a systemd unit, a
//! Kubernetes pod); [`Target::resolve`] finds its cgroup in a given cgroup v2 hierarchy, so
//! that resolution can be tested against synthetic trees laid out as each runtime does.
//! [`Guards`] then refuse cgroups whose faulting would hit the whole machine or chaos itself.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::Error;

mod cgroup;
mod child;
pub mod container;
pub mod engine;
mod guard;
pub mod pod;
mod tree;
pub mod unit;

pub use cgroup::{CgroupTarget, cgroup_of_pid, cgroup2_root, own_cgroup};
pub use child::ChildCgroup;
pub use guard::Guards;

/// Whom a fault hits, as the user named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A cgroup v2 directory, absolute or relative to the v2 mount.
    Cgroup(PathBuf),
    /// The cgroup of a running process.
    Pid(u32),
    /// A container's cgroup, by full or short id (Docker, containerd, CRI-O, Podman), or by
    /// name or Compose service, which the container engine resolves ([`engine`]).
    Container(String),
    /// A container of a Compose project, by service or container name.
    ComposeService {
        /// The Compose project (`com.docker.compose.project`).
        project: String,
        /// The service, or a container's own name.
        service: String,
    },
    /// A systemd unit's cgroup (`nginx.service`).
    Unit(String),
    /// A Kubernetes pod's cgroup, by UID.
    Pod(String),
}

impl Target {
    /// Finds the target's cgroup in the cgroup v2 hierarchy mounted at `root`. Errors say what
    /// was searched.
    pub fn resolve(&self, root: &Path) -> Result<CgroupTarget, Error> {
        self.resolve_with(root, &engine::list_containers)
    }

    /// [`Target::resolve`], with the container engine's list of containers (used only for
    /// container names) coming from `engine`.
    pub fn resolve_with(
        &self,
        root: &Path,
        engine: &engine::Lister,
    ) -> Result<CgroupTarget, Error> {
        let dir = match self {
            Target::Cgroup(path) => path.clone(),
            Target::Pid(pid) => cgroup_of_pid(*pid)?,
            Target::Container(given) => container::find_named(root, given, None, engine)?,
            Target::ComposeService { project, service } => {
                container::find_named(root, service, Some(project), engine)?
            }
            Target::Unit(name) => unit::find(root, name)?,
            Target::Pod(uid) => pod::find(root, uid)?,
        };
        CgroupTarget::in_root(root, &dir)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cgroup(path) => write!(f, "cgroup {}", path.display()),
            Target::Pid(pid) => write!(f, "pid {pid}"),
            Target::Container(id) => write!(f, "container {id}"),
            Target::ComposeService { project, service } => {
                write!(f, "container {service} of compose project {project}")
            }
            Target::Unit(name) => write!(f, "unit {name}"),
            Target::Pod(uid) => write!(f, "pod {uid}"),
        }
    }
}

#[cfg(test)]
mod tests;
