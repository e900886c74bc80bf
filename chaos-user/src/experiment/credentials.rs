//! Whose rights an experiment's commands run with. `chaos run` runs them as itself; the daemon,
//! which is root, runs them as the client that sent the experiment: its uid, gid and
//! supplementary groups, a clean environment holding only what the client sent, and its
//! working directory when the client may enter it.
use std::{
    collections::BTreeMap,
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, process::CommandExt as _},
    path::PathBuf,
    process::Command,
};

/// The identity and environment a command runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// The supplementary groups.
    pub groups: Vec<u32>,
    /// The whole environment (nothing of the spawner's is inherited).
    pub env: BTreeMap<String, String>,
    /// The working directory, entered with the rights above; `/` when it cannot be.
    pub cwd: Option<PathBuf>,
}

/// Where commands look for programs when the client sent no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl RunAs {
    /// Makes `command` run as this identity: the environment is replaced, and the child drops
    /// to the groups, gid and uid (in that order: after setuid it could not change the
    /// others) before it enters the working directory and execs.
    pub fn apply(&self, command: &mut Command) {
        command.env_clear().envs(&self.env);
        if !self.env.contains_key("PATH") {
            command.env("PATH", DEFAULT_PATH);
        }
        let groups: Vec<libc::gid_t> = self.groups.clone();
        let (uid, gid) = (self.uid, self.gid);
        let cwd = self
            .cwd
            .as_ref()
            .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok());
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (setgroups, setgid, setuid, chdir) on memory prepared
        // before the fork; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // With the caller's rights: a directory it may not enter is not entered.
                let entered = cwd
                    .as_ref()
                    .is_some_and(|dir| libc::chdir(dir.as_ptr()) == 0);
                if !entered && libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl RunAs {
    /// Runs `work` on a thread of its own that has dropped to this identity (supplementary
    /// groups, gid, uid: real, effective and saved, so it cannot come back), for what runs in
    /// the daemon's process rather than as a command: the `http` provider. Sockets it opens
    /// belong to the caller (`uid` in /proc/net/tcp, iptables' `--uid-owner`), and threads it
    /// starts inherit the identity. The daemon's other threads keep theirs: the raw
    /// syscalls change only the calling thread's credentials (glibc's `setuid` would change
    /// every thread's, by signalling each).
    pub fn run_on_own_thread<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        let groups: Vec<libc::gid_t> = self.groups.clone();
        let (uid, gid) = (self.uid, self.gid);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: plain syscalls on this thread's credentials, with a pointer to a
                    // vector that outlives the call.
                    let dropped = unsafe {
                        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
                            && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                            && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
                    };
                    if !dropped {
                        return Err(format!(
                            "cannot take the caller's identity (uid {uid}, gid {gid}): {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    work()
                })
                .join()
                .unwrap_or_else(|_| Err("the activity's thread panicked".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_takes_the_identity_and_the_others_keep_theirs() {
        if !nix::unistd::getuid().is_root() {
            // Only root may take another identity.
            return;
        }
        let run_as = RunAs {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            ..RunAs::default()
        };
        let seen = run_as
            .run_on_own_thread(|| {
                let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
                let inner = std::thread::spawn(|| nix::unistd::geteuid().as_raw())
                    .join()
                    .unwrap();
                Ok((
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::geteuid().as_raw(),
                    status
                        .lines()
                        .find(|l| l.starts_with("Groups:"))
                        .map(str::to_owned),
                    inner,
                ))
            })
            .unwrap();
        assert_eq!((seen.0, seen.1, seen.3), (65534, 65534, 65534));
        assert_eq!(seen.2.as_deref().map(str::trim), Some("Groups:\t65534"));
        assert!(
            nix::unistd::geteuid().is_root(),
            "the other threads kept root"
        );
    }

    #[test]
    fn the_environment_is_only_what_was_sent() {
        let run_as = RunAs {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            env: [("ONLY".to_owned(), "this".to_owned())].into(),
            cwd: Some("/nonexistent/dir".into()),
        };
        if !nix::unistd::getuid().is_root() && run_as.groups.is_empty() {
            // setgroups needs CAP_SETGID even to keep the same groups: checked as root only.
            return;
        }
        let mut command = Command::new("sh");
        command.args(["-c", "env; pwd"]);
        run_as.apply(&mut command);
        let out = match command.output() {
            Ok(out) => out,
            // Unprivileged: setgroups is refused (EPERM); the integration tests run as root.
            Err(err) if err.raw_os_error() == Some(libc::EPERM) => return,
            Err(err) => panic!("{err}"),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ONLY=this"), "{text}");
        assert!(text.contains(&format!("PATH={DEFAULT_PATH}")), "{text}");
        assert!(
            !text.contains("CARGO"),
            "the spawner's environment leaked: {text}"
        );
        assert!(
            text.trim_end().ends_with("\n/"),
            "unreadable cwd falls back to /: {text}"
        );
    }
}
