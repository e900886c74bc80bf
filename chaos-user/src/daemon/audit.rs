//! The daemon's audit log: one JSON object per line for every request that asks it to change
//! something (create or remove a fault, start or abort an experiment, each fault an
//! experiment starts), allowed or refused: who (uid, gid, pid from the socket's peer
//! credentials), what, the target, and the rule that allowed or refused it. Kept apart from
//! the tracing log on stderr, so that it can be shipped and kept on its own.
use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    sync::Mutex,
    time::SystemTime,
};

use anyhow::Context as _;
use serde::Serialize;

use super::access::Peer;

/// Where the daemon writes its audit log unless told otherwise (`--audit-log`).
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/chaos/audit.jsonl";

/// One audit record.
#[derive(Clone, Debug, Serialize)]
pub struct Record<'a> {
    /// Seconds since the epoch.
    pub time: f64,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// The caller's pid when it connected.
    pub pid: Option<i32>,
    /// `create-fault`, `remove-fault`, `remove-all`, `start-experiment`, `experiment-fault`,
    /// `abort-experiment`, and `restore-qdisc` (the daemon itself, at start, putting back a
    /// qdisc a killed chaos left).
    pub action: &'a str,
    /// What was asked (the fault's arguments, the experiment's title).
    pub what: String,
    /// The target, as named or resolved; empty where there is none.
    pub target: String,
    /// Whether it was done.
    pub allowed: bool,
    /// The rule that allowed it, or why not.
    pub reason: String,
}

/// The audit log file, appended to.
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Opens (creating, 0600) the log at `path` for appending; `None` keeps no log.
    pub fn open(path: Option<&Path>) -> anyhow::Result<AuditLog> {
        let Some(path) = path else {
            return Ok(AuditLog { file: None });
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening the audit log {}", path.display()))?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
        })
    }

    /// Appends one record for `peer`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        peer: &Peer,
        action: &str,
        what: impl Into<String>,
        target: impl Into<String>,
        allowed: bool,
        reason: impl Into<String>,
    ) {
        let record = Record {
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
            action,
            what: what.into(),
            target: target.into(),
            allowed,
            reason: reason.into(),
        };
        tracing::info!(
            target: "chaos::audit",
            uid = record.uid,
            action,
            what = %record.what,
            target = %record.target,
            allowed,
            reason = %record.reason,
            "audit"
        );
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_string(&record) else {
            return;
        };
        line.push('\n');
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line, on an O_APPEND file: lines never interleave.
        if let Err(err) = file.write_all(line.as_bytes()) {
            tracing::warn!(%err, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let log = AuditLog::open(Some(&path)).unwrap();
        let peer = Peer {
            uid: 1001,
            gid: 1001,
            pid: Some(42),
        };
        log.record(
            &peer,
            "create-fault",
            "syscall --syscall connect",
            "pid 7",
            false,
            "refused by rule: foreign-process",
        );
        log.record(&peer, "remove-fault", "3", "", true, "creator");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["uid"], 1001);
        assert_eq!(lines[0]["allowed"], false);
        assert_eq!(lines[0]["target"], "pid 7");
        assert_eq!(lines[1]["action"], "remove-fault");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
