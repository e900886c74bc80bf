//! Throwaway cgroups: the one way chaos makes a cgroup of its own (for `-- CMD` and tests).
use std::{
    fs,
    io::Write as _,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use super::{CgroupTarget, cgroup2_root};
use crate::Error;

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
        // rmdir fails while the last task is still exiting; retry briefly. Someone else may
        // have removed it already.
        while fs::remove_dir(&self.target.path)
            .is_err_and(|e| e.kind() != std::io::ErrorKind::NotFound)
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(parent) = self.target.path.parent() {
            // Shared by concurrent runs: only goes when empty, which is fine.
            let _ = fs::remove_dir(parent);
        }
    }
}
