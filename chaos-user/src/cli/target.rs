//! The target options every command that faults something takes, flattened into its args.
use std::path::PathBuf;

use anyhow::bail;

use crate::spec::TargetSpec;

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
    pub fn target(&self) -> Option<TargetSpec> {
        if let Some(path) = &self.cgroup {
            Some(TargetSpec::Cgroup(path.clone()))
        } else if let Some(pid) = self.pid {
            Some(TargetSpec::Pid(pid))
        } else if let Some(given) = &self.container {
            Some(match &self.compose_project {
                Some(project) => TargetSpec::Compose {
                    project: project.clone(),
                    service: given.clone(),
                },
                None => TargetSpec::Container(given.clone()),
            })
        } else if let Some(name) = &self.unit {
            Some(TargetSpec::Unit(name.clone()))
        } else {
            self.pod.clone().map(TargetSpec::Pod)
        }
    }

    /// The spec's `target`: the one named, or an empty cgroup that the runner replaces with
    /// the command's own cgroup (and [`FaultSpec::check`](crate::spec::FaultSpec::check)
    /// refuses if it does not).
    pub fn spec(&self) -> TargetSpec {
        self.target()
            .unwrap_or_else(|| TargetSpec::Cgroup(PathBuf::new()))
    }

    /// Refuses options that name no target and no command.
    pub fn require(&self) -> anyhow::Result<()> {
        if self.target().is_none() && self.command.is_empty() {
            bail!(
                "no target: give --cgroup PATH, --pid PID, --container ID|NAME, --unit NAME.service, \
                 --pod UID, or a command after `--` \
                 (chaos inject syscall --syscall connect --errno ECONNREFUSED -- curl ...)"
            );
        }
        Ok(())
    }
}
