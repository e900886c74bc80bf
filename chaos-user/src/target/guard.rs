//! Blast-radius guards: cgroups whose faulting would hit far more than one workload, or chaos
//! itself, are refused unless the user insists (`--i-know-what-i-am-doing`).
use std::path::{Path, PathBuf};

use super::{CgroupTarget, cgroup};
use crate::Error;

/// The cgroups that are refused as targets, and why.
#[derive(Clone, Debug)]
pub struct Guards {
    root: PathBuf,
    pid1: Option<PathBuf>,
    own: Option<PathBuf>,
}

impl Guards {
    /// The guards of this machine, for the cgroup v2 hierarchy mounted at `root`: its root,
    /// the cgroup of PID 1 and the cgroup chaos runs in.
    pub fn current(root: &Path) -> Result<Guards, Error> {
        // Without these the guards cannot be checked: refuse rather than guess.
        let unknown = |err: Error| Error::Target {
            target: "(blast-radius guards)".into(),
            why: format!("cannot tell which cgroups to protect: {err}"),
        };
        Ok(Guards::new(
            root,
            Some(&cgroup::cgroup_of_pid(1).map_err(unknown)?),
            Some(&cgroup::own_cgroup().map_err(unknown)?),
        ))
    }

    /// Guards for the hierarchy at `root`, with PID 1 and chaos in the given cgroups (paths
    /// relative to `root`, as /proc/PID/cgroup shows them); `None` where unknown.
    pub fn new(root: &Path, pid1: Option<&Path>, own: Option<&Path>) -> Guards {
        let absolute = |rel: &Path| {
            let rel = rel.strip_prefix("/").unwrap_or(rel);
            let path = root.join(rel);
            path.canonicalize().unwrap_or(path)
        };
        Guards {
            root: root.canonicalize().unwrap_or_else(|_| root.to_owned()),
            pid1: pid1.map(absolute),
            own: own.map(absolute),
        }
    }

    /// Refuses `target` (described as the user gave it, e.g. `pid 1234`) if faulting it
    /// would hit the whole machine, PID 1 or chaos itself.
    pub fn check(&self, target: &CgroupTarget, given: &str) -> Result<(), Error> {
        let refuse = |why: String| {
            Err(Error::Refused {
                target: given.to_owned(),
                cgroup: target.path.clone(),
                why,
            })
        };
        if target.level == 0 || target.path == self.root {
            return refuse(
                "it is the root cgroup, which holds every process of the machine; give the \
                 cgroup of the service or container to fault, or run a command after `--`"
                    .into(),
            );
        }
        if let Some(pid1) = &self.pid1
            && target.contains(pid1)
        {
            let how = if *pid1 == target.path {
                "it is the cgroup of PID 1 (init)".to_owned()
            } else {
                format!("it contains the cgroup of PID 1 (init), {}", pid1.display())
            };
            return refuse(format!(
                "{how}: failing init's calls can take the whole machine down"
            ));
        }
        if let Some(own) = &self.own
            && target.contains(own)
        {
            let how = if *own == target.path {
                "it is chaos's own cgroup".to_owned()
            } else {
                format!("it contains chaos's own cgroup, {}", own.display())
            };
            return refuse(format!(
                "{how}: the fault would hit chaos itself, which then may not be able to \
                 report or remove it"
            ));
        }
        Ok(())
    }
}
