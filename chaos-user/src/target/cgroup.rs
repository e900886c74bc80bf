//! Cgroup v2 directories as targets: the mount, a path, the cgroup of a process.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::{Error, mountinfo};

/// The cgroup v2 mount point, from /proc/self/mountinfo. Hybrid layouts mount it at
/// /sys/fs/cgroup/unified, pure v2 systems at /sys/fs/cgroup.
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|source| Error::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    mountinfo::mount_point_of(&mountinfo::parse(&text), "cgroup2").ok_or_else(|| {
        Error::Unsupported {
            fault: "cgroup targets".into(),
            why: "no cgroup2 filesystem is mounted; mount one with \
              `mount -t cgroup2 none /sys/fs/cgroup/unified`"
                .into(),
        }
    })
}

/// A cgroup v2 directory, resolved to what the kernel programs match on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupTarget {
    /// The directory.
    pub path: PathBuf,
    /// The cgroup id (the directory's inode number).
    pub id: u64,
    /// Depth below the v2 root; the root is 0.
    pub level: u32,
}

impl CgroupTarget {
    /// Resolves a cgroup directory, given as a path under the v2 mount or as a path relative
    /// to it (`/system.slice/foo.service`, as in /proc/PID/cgroup).
    pub fn from_path(path: &Path) -> Result<CgroupTarget, Error> {
        CgroupTarget::in_root(&cgroup2_root()?, path)
    }

    /// [`CgroupTarget::from_path`] against the cgroup v2 hierarchy mounted at `root`.
    pub fn in_root(root: &Path, path: &Path) -> Result<CgroupTarget, Error> {
        let candidate = if path.starts_with(root) {
            path.to_owned()
        } else {
            root.join(path.strip_prefix("/").unwrap_or(path))
        };
        let invalid = |why: String| Error::Target {
            target: path.display().to_string(),
            why,
        };
        let root = root.canonicalize().map_err(|source| Error::Io {
            path: root.to_owned(),
            source,
        })?;
        let dir = candidate.canonicalize().map_err(|err| {
            invalid(format!(
                "{}: {err}; give a cgroup v2 directory under {}",
                candidate.display(),
                root.display()
            ))
        })?;
        let rel = dir.strip_prefix(&root).map_err(|_| {
            invalid(format!(
                "{} is not under the cgroup v2 mount {}",
                dir.display(),
                root.display()
            ))
        })?;
        if !dir.join("cgroup.procs").exists() {
            return Err(invalid(format!(
                "{} is not a cgroup v2 directory (it has no cgroup.procs)",
                dir.display()
            )));
        }
        let meta = fs::metadata(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(CgroupTarget {
            level: rel.components().count() as u32,
            id: meta.ino(),
            path: dir,
        })
    }

    /// The cgroup v2 of a running process.
    pub fn from_pid(pid: u32) -> Result<CgroupTarget, Error> {
        CgroupTarget::in_root(&cgroup2_root()?, &cgroup_of_pid(pid)?)
    }

    /// Whether the cgroup was removed since it was resolved (its directory is gone, or a new
    /// cgroup with another id took its path): a container that exited, a unit that stopped.
    /// Its processes are gone with it, so a fault on it has nothing left to act on.
    pub fn is_gone(&self) -> bool {
        match fs::metadata(&self.path) {
            Ok(meta) => meta.ino() != self.id,
            Err(err) => err.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Whether `other` is this cgroup or one of its descendants, i.e. whether a fault on this
    /// cgroup reaches the processes of `other`.
    pub fn contains(&self, other: &Path) -> bool {
        other.starts_with(&self.path)
    }
}

/// The cgroup v2 path of a process relative to the v2 mount (`/system.slice/x.service`), from
/// the `0::` line of /proc/PID/cgroup, or else from the hierarchy itself (see
/// [`in_mounted_hierarchy`]).
pub fn cgroup_of_pid(pid: u32) -> Result<PathBuf, Error> {
    let path = cgroup_of_process(&pid.to_string(), &format!("pid {pid}"))?;
    Ok(in_mounted_hierarchy(pid, path))
}

/// The cgroup v2 path of chaos itself, relative to the v2 mount.
pub fn own_cgroup() -> Result<PathBuf, Error> {
    let path = cgroup_of_process("self", "chaos itself")?;
    Ok(in_mounted_hierarchy(std::process::id(), path))
}

/// `path` (from /proc/PID/cgroup) if the mounted hierarchy's directory of that name lists
/// `pid`; otherwise the directory of the mounted hierarchy that does list it.
///
/// /proc/PID/cgroup shows paths relative to the reader's cgroup namespace. When chaos runs in
/// a container with a cgroup namespace of its own (Docker's `--cgroupns private`, the default
/// on cgroup v2 hosts) but with the host's hierarchy mounted, those paths are not paths of
/// the mounted tree (`/`, or `/../../docker/<id>` for a process outside the namespace), so
/// the process is looked up in the tree's `cgroup.procs` files instead, which list pids as
/// chaos's PID namespace numbers them (the host's, with `--pid host`).
fn in_mounted_hierarchy(pid: u32, path: PathBuf) -> PathBuf {
    let Ok(root) = cgroup2_root() else {
        return path;
    };
    let lists = |dir: &Path| {
        fs::read_to_string(dir.join("cgroup.procs"))
            .is_ok_and(|procs| procs.lines().any(|l| l.trim().parse() == Ok(pid)))
    };
    let rel = path.strip_prefix("/").unwrap_or(&path);
    let as_shown = root.join(rel);
    if !rel
        .components()
        .any(|c| c == std::path::Component::ParentDir)
        && lists(&as_shown)
    {
        return path;
    }
    let found = if lists(&root) {
        Some(root.clone())
    } else {
        super::tree::find_dirs(&root, |_| true)
            .into_iter()
            .find(|dir| lists(dir))
    };
    match found.as_deref().map(|dir| dir.strip_prefix(&root)) {
        Some(Ok(rel)) => Path::new("/").join(rel),
        _ => path,
    }
}

fn cgroup_of_process(proc_name: &str, what: &str) -> Result<PathBuf, Error> {
    let file = format!("/proc/{proc_name}/cgroup");
    let text = fs::read_to_string(&file).map_err(|err| Error::Target {
        target: what.to_owned(),
        why: format!("cannot read {file}: {err} (is the process running?)"),
    })?;
    parse_proc_cgroup(&text)
        .map(PathBuf::from)
        .ok_or_else(|| Error::Target {
            target: what.to_owned(),
            why: format!("{file} has no cgroup v2 line (0::...)"),
        })
}

/// The path on the `0::` (cgroup v2) line of a /proc/PID/cgroup text. A process whose cgroup
/// was removed shows ` (deleted)` after the path; that is kept, so resolution fails clearly.
fn parse_proc_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v2_line_of_a_hybrid_process() {
        let text = "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n";
        assert_eq!(parse_proc_cgroup(text), Some("/docker/abc"));
        assert_eq!(parse_proc_cgroup("4:memory:/x\n"), None);
    }
}
