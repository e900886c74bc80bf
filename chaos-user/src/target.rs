//! Targets: which processes a fault applies to, as a cgroup v2 directory.
use std::{
    fs,
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
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
        let root = cgroup2_root()?;
        let candidate = if path.starts_with(&root) {
            path.to_owned()
        } else {
            root.join(path.strip_prefix("/").unwrap_or(path))
        };
        let invalid = |why: String| Error::Target {
            target: path.display().to_string(),
            why,
        };
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
                "{} is not a cgroup v2 directory",
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
        let file = format!("/proc/{pid}/cgroup");
        let text = fs::read_to_string(&file).map_err(|err| Error::Target {
            target: format!("pid {pid}"),
            why: format!("cannot read {file}: {err} (is the process running?)"),
        })?;
        let rel = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| Error::Target {
                target: format!("pid {pid}"),
                why: format!("{file} has no cgroup v2 line (0::...)"),
            })?;
        if rel == "/" {
            return Err(Error::Target {
                target: format!("pid {pid}"),
                why: "the process is in the root cgroup: targeting it would hit every process \
                      of the machine; run it with `chaos inject ... -- CMD` or move it to a \
                      cgroup of its own"
                    .into(),
            });
        }
        CgroupTarget::from_path(Path::new(rel))
    }
}

/// A cgroup made for one command, removed (with anything still in it) on drop.
#[derive(Debug)]
pub struct ChildCgroup {
    target: CgroupTarget,
}

impl ChildCgroup {
    /// Creates `<v2 root>/chaos/<name>`.
    pub fn create(name: &str) -> Result<ChildCgroup, Error> {
        let dir = cgroup2_root()?.join("chaos").join(name);
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let target = CgroupTarget::from_path(&dir);
        match target {
            Ok(target) => Ok(ChildCgroup { target }),
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                Err(err)
            }
        }
    }

    /// The cgroup as a target.
    pub fn target(&self) -> &CgroupTarget {
        &self.target
    }

    /// Path of `cgroup.procs`, which a child writes "0" to in order to move itself in.
    pub fn procs_file(&self) -> PathBuf {
        self.target.path.join("cgroup.procs")
    }

    /// Makes `command` move itself into this cgroup between fork and exec, so that even its
    /// first syscall is covered. Keep the returned file open until the command is spawned.
    pub fn enter_on_exec(&self, command: &mut Command) -> Result<fs::File, Error> {
        let path = self.procs_file();
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| Error::Io { path, source })?;
        let fd = procs.as_raw_fd();
        // SAFETY: the closure only calls write(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(procs)
    }

    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn kill_all(&self) {
        // cgroup.kill (5.14+) kills everything, including processes forked meanwhile.
        if let Ok(mut f) = fs::OpenOptions::new()
            .write(true)
            .open(self.target.path.join("cgroup.kill"))
            && f.write_all(b"1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids().is_empty() && Instant::now() < deadline {
            self.kill_all();
            thread::sleep(Duration::from_millis(20));
        }
        // rmdir fails while the last task is still exiting; retry briefly.
        while fs::remove_dir(&self.target.path).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = self.target.path.parent() {
            // Shared by concurrent runs: only goes when empty, which is fine.
            let _ = fs::remove_dir(parent);
        }
    }
}
