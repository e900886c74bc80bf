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

#[cfg(test)]
mod tests {
    use super::*;

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
