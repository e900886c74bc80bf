//! What chaos changed on network devices, written down under `/run/chaos/qdiscs/` before the
//! change and removed once the original is back, so that a chaos that was killed (SIGKILL,
//! OOM, a crash: no destructor runs) can be cleaned up after: the daemon puts back whatever
//! such a record names when it starts ([`restore_left_behind`]).
//!
//! Kernel programs attached by bpf_link need no record (nothing is pinned: their links die
//! with the process). Two changes outlive their maker: the fq root qdisc of net-delay and
//! net-rate (device state), and, on kernels before 6.6 (no TCX), the tc classifier of
//! net-corrupt and net-duplicate, a cls_bpf filter on a clsact qdisc that holds its program
//! (and so its maps) loaded and attached after the process is gone.
//!
//! One JSON file per change. A record whose owner (pid and start time) still runs is not
//! touched: a `chaos inject net-delay` in another terminal keeps its fq.
use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::qdisc;

/// Where the records go.
pub const RECORD_DIR: &str = "/run/chaos/qdiscs";

/// What chaos changed on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum Change {
    /// fq installed as the root qdisc in place of the kernel's default, which deleting the
    /// root qdisc brings back.
    FqRoot,
    /// A tc filter running `program` on egress, through a clsact qdisc chaos added (then
    /// removing the qdisc removes it all) or found there.
    TcFilter {
        /// The program's name, which its filter carries.
        program: String,
        /// Whether chaos added the clsact qdisc.
        clsact_added: bool,
    },
}

/// One change chaos made to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscRecord {
    /// The device, by name...
    pub device: String,
    /// ...and index, so that a device of the same name made since is left alone.
    pub ifindex: u32,
    /// The inode of the network namespace the device was in (/proc/thread-self/ns/net).
    pub netns: u64,
    /// The change.
    #[serde(flatten)]
    pub change: Change,
    /// The process that made the change...
    pub owner_pid: u32,
    /// ...and its start time (field 22 of /proc/PID/stat), so a reused pid is told apart.
    pub owner_start: u64,
}

impl QdiscRecord {
    /// A record of `change` about to be made to `dev` by this process, in the calling
    /// thread's network namespace.
    pub fn new(dev: &str, change: Change) -> io::Result<QdiscRecord> {
        let pid = std::process::id();
        Ok(QdiscRecord {
            device: dev.to_owned(),
            ifindex: qdisc::ifindex(dev)?,
            netns: current_netns()?,
            change,
            owner_pid: pid,
            owner_start: start_time(pid).ok_or_else(|| io::Error::other("no /proc/self/stat"))?,
        })
    }

    /// The file the record goes to in `dir`: one per device for fq (there is one root
    /// qdisc), one per filter for tc (each fault attaches its own).
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static FILTERS: AtomicU64 = AtomicU64::new(0);
        let what = match &self.change {
            Change::FqRoot => "fq".to_owned(),
            Change::TcFilter { .. } => format!(
                "tc-{}-{}",
                self.owner_pid,
                FILTERS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        dir.join(format!("{}-{}-{what}.json", self.netns, self.device))
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

/// A record written, removed when this is dropped (once the change is undone).
#[derive(Debug, Default)]
pub struct Recorded(Option<PathBuf>);

impl Recorded {
    /// Records `change` about to be made to `dev` under [`RECORD_DIR`]. If it cannot be
    /// written, says so and goes on: the fault still works, only a killed chaos would then
    /// leave the change for someone to undo by hand (`undo` says how).
    pub fn write(dev: &str, change: Change, undo: &str) -> Recorded {
        let dir = Path::new(RECORD_DIR);
        match QdiscRecord::new(dev, change).and_then(|r| r.write(dir)) {
            Ok(path) => Recorded(Some(path)),
            Err(err) => {
                eprintln!(
                    "chaos: cannot record the change about to be made to {dev} under {}: \
                     {err}; if chaos is killed, undo it with `{undo}`",
                    dir.display()
                );
                Recorded(None)
            }
        }
    }

    /// Keeps the record on disk (the change could not be undone): the daemon's next start
    /// retries.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
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
    let records: Vec<(PathBuf, Result<QdiscRecord, String>)> = paths
        .into_iter()
        .map(|path| {
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<QdiscRecord>(&b).map_err(|e| e.to_string()));
            (path, record)
        })
        .collect();
    // tc filters are removed by program name, which would take a live chaos's too.
    let live_filters: Vec<(u64, String)> = records
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|r| matches!(r.change, Change::TcFilter { .. }) && r.owner_alive())
        .map(|r| (r.netns, r.device.clone()))
        .collect();
    records
        .into_iter()
        .filter_map(|(path, record)| {
            let record = match record {
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
            if matches!(record.change, Change::TcFilter { .. })
                && live_filters.contains(&(record.netns, record.device.clone()))
            {
                return Some(Restoration {
                    path,
                    record: Some(record.clone()),
                    done: false,
                    outcome: format!(
                        "a running chaos has a tc filter on {} too; record kept for later",
                        record.device
                    ),
                });
            }
            if Some(record.netns) != netns && !netns_exists(record.netns) {
                // Its devices went with it.
                let _ = std::fs::remove_file(&path);
                return Some(Restoration {
                    path,
                    record: Some(record.clone()),
                    done: true,
                    outcome: format!(
                        "the network namespace of {} (inode {}) is gone; nothing to restore",
                        record.device, record.netns
                    ),
                });
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

/// Undoes the record's change if it is still there.
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
    match &record.change {
        Change::FqRoot => restore_fq(record),
        Change::TcFilter {
            program,
            clsact_added,
        } => restore_tc(record, program, *clsact_added),
    }
}

/// Removes the tc filters running `program` (and the clsact qdisc, if chaos added it).
fn restore_tc(record: &QdiscRecord, program: &str, clsact_added: bool) -> (bool, String) {
    use aya::programs::{TcAttachType, tc};
    let dev = &record.device;
    let pid = record.owner_pid;
    match qdisc::list(dev) {
        Ok(qdiscs) if !qdiscs.iter().any(|q| q.kind == "clsact") => {
            return (
                true,
                format!("{dev} has no clsact qdisc: no tc filter left"),
            );
        }
        Ok(_) => {}
        Err(err) => return (false, format!("cannot list the qdiscs of {dev}: {err}")),
    }
    let detached = match tc::qdisc_detach_program(dev, TcAttachType::Egress, program) {
        Ok(()) => format!("detached the {program} tc filter a killed chaos (pid {pid}) left"),
        // Gone already: nothing of this name on the device.
        Err(tc::TcError::IoError(err)) if err.kind() == io::ErrorKind::NotFound => {
            format!("no {program} tc filter left")
        }
        Err(err) => {
            return (
                false,
                format!(
                    "could not detach the {program} tc filter a killed chaos (pid {pid}) left \
                     on {dev}: {err}; run `tc filter del dev {dev} egress`"
                ),
            );
        }
    };
    if !clsact_added {
        return (true, format!("{detached} on {dev}"));
    }
    match qdisc::delete(dev, qdisc::CLSACT) {
        Ok(()) => (
            true,
            format!("{detached} on {dev} and removed the clsact qdisc it added"),
        ),
        Err(err) => (
            false,
            format!(
                "{detached} on {dev}; could not remove the clsact qdisc it added: {err}; run \
                 `tc qdisc del dev {dev} clsact`"
            ),
        ),
    }
}

/// Puts the default root qdisc back on the record's device if chaos's fq is still there.
fn restore_fq(record: &QdiscRecord) -> (bool, String) {
    let dev = &record.device;
    let root = match qdisc::list(dev) {
        Ok(qdiscs) => qdiscs.into_iter().find(|q| q.parent == qdisc::ROOT),
        Err(err) => return (false, format!("cannot list the qdiscs of {dev}: {err}")),
    };
    match root {
        Some(q) if q.kind == "fq" && q.handle != 0 => match qdisc::delete(dev, qdisc::ROOT) {
            Ok(()) => (
                true,
                format!(
                    "removed the {} {} a killed chaos (pid {}) left on {dev}: the \
                         kernel's default root qdisc is back",
                    q.kind,
                    q.shown_handle(),
                    record.owner_pid,
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
        },
        other => (
            true,
            format!(
                "{dev}'s root qdisc is {} now, not chaos's fq; left alone",
                other.map_or("none".to_owned(), |q| format!(
                    "{} {}",
                    q.kind,
                    q.shown_handle()
                )),
            ),
        ),
    }
}

/// Whether a network namespace with this inode still exists: named under /run/netns or
/// some process's.
fn netns_exists(inode: u64) -> bool {
    let named = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.metadata().is_ok_and(|m| m.ino() == inode));
    named
        || std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::metadata(e.path().join("ns/net")).is_ok_and(|m| m.ino() == inode))
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
            change: Change::FqRoot,
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
    fn records_of_other_namespaces_and_unreadable_ones_are_kept_until_the_namespace_goes() {
        let dir = tempfile::tempdir().unwrap();
        // /proc/1's namespace exists; when it is not ours (a container), the record stays.
        let init_ns = std::fs::metadata("/proc/1/ns/net").ok().map(|m| m.ino());
        let ours = current_netns().unwrap();
        let gone = record(std::process::id(), 1, 1);
        let removed = gone.write(dir.path()).unwrap();
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, b"{").unwrap();
        let done = restore_left_behind(dir.path());
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(
            !removed.exists(),
            "a record of a namespace that is gone stays: {done:?}"
        );
        assert!(junk.exists());
        if let Some(init) = init_ns.filter(|i| *i != ours) {
            let kept = record(std::process::id(), 1, init)
                .write(dir.path())
                .unwrap();
            let done = restore_left_behind(dir.path());
            assert!(done.iter().any(|r| !r.done && r.path == kept), "{done:?}");
            assert!(kept.exists());
        }
    }
}
