//! What chaos changed on devices' root qdiscs, written down under `/run/chaos/qdiscs/` before
//! the change and removed once the original is back, so that a chaos that was killed
//! (SIGKILL, OOM, a crash: no destructor runs) can be cleaned up after: the daemon puts back
//! whatever such a record names when it starts ([`restore_left_behind`]).
//!
//! Kernel programs need no such record (nothing is pinned: their links die with the process),
//! but a qdisc is device state that outlives its maker.
//!
//! One JSON file per device and network namespace. A record whose owner (pid and start time)
//! still runs is not touched: a `chaos inject net-delay` in another terminal keeps its fq.
use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::qdisc;

/// Where the records go.
pub const RECORD_DIR: &str = "/run/chaos/qdiscs";

/// One change chaos made: fq installed as the root qdisc of `device` in place of the kernel's
/// default, which deleting the root qdisc brings back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscRecord {
    /// The device, by name...
    pub device: String,
    /// ...and index, so that a device of the same name made since is left alone.
    pub ifindex: u32,
    /// The inode of the network namespace the device was in (/proc/thread-self/ns/net).
    pub netns: u64,
    /// The qdisc chaos installed (`fq`).
    pub installed: String,
    /// What was there before, which restoring brings back.
    pub original: String,
    /// The process that made the change...
    pub owner_pid: u32,
    /// ...and its start time (field 22 of /proc/PID/stat), so a reused pid is told apart.
    pub owner_start: u64,
}

impl QdiscRecord {
    /// A record of fq about to replace the default root qdisc of `dev`, by this process, in
    /// the calling thread's network namespace.
    pub fn fq_on(dev: &str) -> io::Result<QdiscRecord> {
        let pid = std::process::id();
        Ok(QdiscRecord {
            device: dev.to_owned(),
            ifindex: qdisc::ifindex(dev)?,
            netns: current_netns()?,
            installed: "fq".into(),
            original: "the kernel's default root qdisc (0:)".into(),
            owner_pid: pid,
            owner_start: start_time(pid).ok_or_else(|| io::Error::other("no /proc/self/stat"))?,
        })
    }

    /// The file the record goes to in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}-{}.json", self.netns, self.device))
    }

    /// Writes the record to `dir` (created if missing, 0700); returns its path.
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let path = self.path_in(dir);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        // A rename, so that a kill mid-write leaves no half record.
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Whether the process that made the change still runs.
    fn owner_alive(&self) -> bool {
        start_time(self.owner_pid) == Some(self.owner_start)
    }
}

/// What [`restore_left_behind`] did about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restoration {
    /// The record's file.
    pub path: PathBuf,
    /// The record, if it could be read.
    pub record: Option<QdiscRecord>,
    /// Whether the original qdisc is back (or nothing needed doing) and the record is gone.
    pub done: bool,
    /// What happened, for the log.
    pub outcome: String,
}

/// Puts back what the records in `dir` name, for records whose owner no longer runs and whose
/// device is in the calling thread's network namespace. Each record is removed once its device
/// is as it was (or gone). Returns one [`Restoration`] per record looked at.
pub fn restore_left_behind(dir: &Path) -> Vec<Restoration> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let netns = current_netns().ok();
    paths
        .into_iter()
        .filter_map(|path| {
            let record = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<QdiscRecord>(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => record,
                Err(why) => {
                    return Some(Restoration {
                        path,
                        record: None,
                        done: false,
                        outcome: format!("unreadable record, left in place: {why}"),
                    });
                }
            };
            if record.owner_alive() {
                // Its maker is running and will restore it itself.
                return None;
            }
            if Some(record.netns) != netns {
                return Some(Restoration {
                    path,
                    record: Some(record.clone()),
                    done: false,
                    outcome: format!(
                        "{} is in another network namespace (inode {}) than this daemon; \
                         not restored, record kept",
                        record.device, record.netns
                    ),
                });
            }
            let (done, outcome) = restore(&record);
            if done {
                let _ = std::fs::remove_file(&path);
            }
            Some(Restoration {
                path,
                record: Some(record),
                done,
                outcome,
            })
        })
        .collect()
}

/// Puts the default root qdisc back on the record's device if chaos's fq is still there.
fn restore(record: &QdiscRecord) -> (bool, String) {
    let dev = &record.device;
    match qdisc::ifindex(dev) {
        Ok(index) if index == record.ifindex => {}
        _ => {
            return (
                true,
                format!(
                    "{dev} (index {}) is gone; nothing to restore",
                    record.ifindex
                ),
            );
        }
    }
    let root = match qdisc::list(dev) {
        Ok(qdiscs) => qdiscs.into_iter().find(|q| q.parent == qdisc::ROOT),
        Err(err) => return (false, format!("cannot list the qdiscs of {dev}: {err}")),
    };
    match root {
        Some(q) if q.kind == record.installed && q.handle != 0 => {
            match qdisc::delete(dev, qdisc::ROOT) {
                Ok(()) => (
                    true,
                    format!(
                        "removed the {} {} a killed chaos (pid {}) left on {dev}: {} is back",
                        q.kind,
                        q.shown_handle(),
                        record.owner_pid,
                        record.original
                    ),
                ),
                Err(err) => (
                    false,
                    format!(
                        "could not remove the {} chaos left on {dev}: {err}; run \
                         `tc qdisc del dev {dev} root`",
                        q.kind
                    ),
                ),
            }
        }
        other => (
            true,
            format!(
                "{dev}'s root qdisc is {} now, not chaos's {}; left alone",
                other.map_or("none".to_owned(), |q| format!(
                    "{} {}",
                    q.kind,
                    q.shown_handle()
                )),
                record.installed
            ),
        ),
    }
}

/// The inode of the calling thread's network namespace.
fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_tricky_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1 2";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert!(start_time(std::process::id()).is_some());
    }

    fn record(owner_pid: u32, owner_start: u64, netns: u64) -> QdiscRecord {
        QdiscRecord {
            device: "veth-test0".into(),
            ifindex: 4000,
            netns,
            installed: "fq".into(),
            original: "the kernel's default root qdisc (0:)".into(),
            owner_pid,
            owner_start,
        }
    }

    #[test]
    fn a_live_owners_record_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let live = record(me, start_time(me).unwrap(), current_netns().unwrap());
        let path = live.write(dir.path()).unwrap();
        assert!(restore_left_behind(dir.path()).is_empty());
        assert!(path.exists());
    }

    #[test]
    fn a_dead_owners_record_of_a_vanished_device_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Start time 1 is nobody's: the owner is gone.
        let dead = record(std::process::id(), 1, current_netns().unwrap());
        let path = dead.write(dir.path()).unwrap();
        let done = restore_left_behind(dir.path());
        assert_eq!(done.len(), 1, "{done:?}");
        assert!(done[0].done, "{done:?}");
        assert!(done[0].outcome.contains("is gone"), "{done:?}");
        assert!(!path.exists());
    }

    #[test]
    fn records_of_other_namespaces_and_unreadable_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = record(std::process::id(), 1, 1);
        let kept = elsewhere.write(dir.path()).unwrap();
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, b"{").unwrap();
        let done = restore_left_behind(dir.path());
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(done.iter().all(|r| !r.done), "{done:?}");
        assert!(kept.exists() && junk.exists());
    }
}
