//! The target options every command that faults something takes, flattened into its args.
use std::path::PathBuf;

use anyhow::bail;

use crate::target::{CgroupTarget, Guards, Target, cgroup2_root};

/// Whom the fault hits: one of the target options, or a command after `--`.
#[derive(Debug, Default, clap::Args)]
#[group(skip)]
#[command(group(
    clap::ArgGroup::new("target")
        .args(["cgroup", "pid", "container", "unit", "pod"])
        .multiple(false)
))]
pub struct TargetArgs {
    /// A cgroup v2 directory (absolute, or relative to the v2 mount as in /proc/PID/cgroup);
    /// its descendants are hit too.
    #[arg(long, value_name = "PATH", help_heading = "Target")]
    pub cgroup: Option<PathBuf>,
    /// The cgroup of this process.
    #[arg(long, value_name = "PID", help_heading = "Target")]
    pub pid: Option<u32>,
    /// A container, by full or short id (Docker, containerd, CRI-O, Podman; cgroupfs or
    /// systemd driver), or by name or Compose service (asks the engine on its socket:
    /// $DOCKER_HOST, /var/run/docker.sock, Podman's).
    #[arg(long, value_name = "ID|NAME", help_heading = "Target")]
    pub container: Option<String>,
    /// The Compose project whose service --container names, when several projects have it.
    #[arg(
        long,
        value_name = "PROJECT",
        requires = "container",
        help_heading = "Target"
    )]
    pub compose_project: Option<String>,
    /// A systemd unit (NAME.service, .scope or .slice).
    #[arg(long, value_name = "NAME", help_heading = "Target")]
    pub unit: Option<String>,
    /// A Kubernetes pod on this node, by UID (all its containers).
    #[arg(long, value_name = "UID", help_heading = "Target")]
    pub pod: Option<String>,
    /// Target even the root cgroup, the cgroup of PID 1, or chaos's own cgroup or an ancestor
    /// of it, which are refused otherwise.
    #[arg(long, help_heading = "Target")]
    pub i_know_what_i_am_doing: bool,
    /// Run this command in a cgroup of its own, fault it, wait for it and exit with its status.
    #[arg(
        last = true,
        value_name = "CMD",
        conflicts_with_all = ["cgroup", "pid", "container", "unit", "pod"]
    )]
    pub command: Vec<String>,
}

impl TargetArgs {
    /// The target named by the options, if any (none with a command after `--`).
    pub fn target(&self) -> Option<Target> {
        if let Some(path) = &self.cgroup {
            Some(Target::Cgroup(path.clone()))
        } else if let Some(pid) = self.pid {
            Some(Target::Pid(pid))
        } else if let Some(given) = &self.container {
            Some(match &self.compose_project {
                Some(project) => Target::ComposeService {
                    project: project.clone(),
                    service: given.clone(),
                },
                None => Target::Container(given.clone()),
            })
        } else if let Some(name) = &self.unit {
            Some(Target::Unit(name.clone()))
        } else {
            self.pod.clone().map(Target::Pod)
        }
    }

    /// Resolves the target option to its cgroup and checks it against the blast-radius
    /// guards (unless `--i-know-what-i-am-doing`). For a command after `--`, which gets a
    /// cgroup of its own, use [`crate::target::ChildCgroup`] instead.
    pub fn resolve(&self) -> anyhow::Result<CgroupTarget> {
        let Some(target) = self.target() else {
            bail!(
                "no target: give --cgroup PATH, --pid PID, --container ID|NAME, --unit NAME.service, \
                 --pod UID, or a command after `--` \
                 (chaos inject syscall --syscall connect --errno ECONNREFUSED -- curl ...)"
            );
        };
        let root = cgroup2_root()?;
        let cgroup = target.resolve(&root)?;
        if !self.i_know_what_i_am_doing {
            Guards::current(&root)?.check(&cgroup, &target.to_string())?;
        }
        Ok(cgroup)
    }
}
