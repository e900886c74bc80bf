//! Who may fault what through the daemon: every target is authorized for the caller that asked,
//! by the peer credentials of its connection, after the target is resolved to its cgroup and
//! before anything is attached.
//!
//! - Root may target anything the blast-radius guards allow.
//! - A grant of the policy file (`/etc/chaos/policy.toml`) lets the members of a group fault
//!   named systemd units, containers (by id or name) or cgroup subtrees.
//! - Otherwise a caller may target a cgroup it owns (delegated to it: the directory and every
//!   one below it belong to its uid, as systemd does for `user@UID.service`) or one whose
//!   processes all run as the caller. In both cases no process in it may run with another uid
//!   (real, effective, saved or filesystem): failing the calls of a set-user-ID program is a
//!   way to its privileges, which is why the kernel asks `no_new_privs` of an unprivileged
//!   seccomp filter.
//! - Only root may pass `--i-know-what-i-am-doing`.
//!
//! [`Policy::authorize`] is pure: [`ResolvedTarget::inspect`] gathers the facts (owners of the
//! directories, the uids of the processes, the containers' names) from the machine, and the
//! tests make them up.
use std::{
    collections::BTreeMap,
    fmt, fs,
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::target::{CgroupTarget, Target, container};

/// The policy file the daemon reads unless told otherwise (`--policy`).
pub const DEFAULT_POLICY: &str = "/etc/chaos/policy.toml";

/// Who asked, from the connection's peer credentials and the group database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its supplementary groups (from the group database, the primary one included).
    pub groups: Vec<u32>,
}

impl Caller {
    /// The caller with uid `uid` and gid `gid`, its groups read from the group database (none
    /// besides `gid` for a uid the database does not know).
    pub fn of(uid: u32, gid: u32) -> Caller {
        use nix::unistd::{Gid, Uid, User, getgrouplist};
        let mut groups = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .and_then(|user| {
                let name = std::ffi::CString::new(user.name).ok()?;
                getgrouplist(&name, Gid::from_raw(gid)).ok()
            })
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect::<Vec<_>>())
            .unwrap_or_default();
        if !groups.contains(&gid) {
            groups.push(gid);
        }
        Caller { uid, gid, groups }
    }

    /// Whether it is root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// A process in the target, with its uids as /proc/PID/status shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetProcess {
    /// Its pid.
    pub pid: u32,
    /// Real, effective, saved and filesystem uid.
    pub uids: [u32; 4],
}

/// A target resolved to its cgroup, with what authorization looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// The target as the caller named it (`pid 1234`, `unit web.service`).
    pub given: String,
    /// The cgroup, relative to the v2 mount (`/system.slice/web.service`).
    pub cgroup: PathBuf,
    /// The owner (uid) of the cgroup directory and of each one below it, by relative path.
    pub owners: BTreeMap<PathBuf, u32>,
    /// Every process in the cgroup and below it.
    pub processes: Vec<TargetProcess>,
    /// The containers whose cgroup is the target or holds it: full id and, where the runtime
    /// says, name.
    pub containers: Vec<(String, Option<String>)>,
    /// Whether the blast-radius guards were bypassed (`--i-know-what-i-am-doing`).
    pub guards_overridden: bool,
    /// Whether the subtree was too large to inspect whole (see [`MAX_INSPECTED`]).
    pub truncated: bool,
}

/// Most directories and processes read below a target, so that a huge subtree cannot stall
/// the daemon; past it the target is refused.
const MAX_INSPECTED: usize = 10_000;

impl ResolvedTarget {
    /// Gathers the facts about `cgroup` (in the v2 hierarchy mounted at `root`) from the
    /// machine: owners of its directories, its processes' uids (from /proc), the containers
    /// that hold it.
    pub fn inspect(root: &Path, given: &Target, cgroup: &CgroupTarget) -> ResolvedTarget {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
        let rel = |dir: &Path| Path::new("/").join(dir.strip_prefix(&root).unwrap_or(dir));
        let mut owners = BTreeMap::new();
        let mut processes = Vec::new();
        let mut pending = vec![cgroup.path.clone()];
        let mut truncated = false;
        while let Some(dir) = pending.pop() {
            if owners.len() + processes.len() >= MAX_INSPECTED {
                // Refused below unless root or granted: what was not read cannot be vouched for.
                truncated = true;
                break;
            }
            let owner = fs::metadata(&dir).map_or(u32::MAX, |m| m.uid());
            owners.insert(rel(&dir), owner);
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                    if let Some(uids) = process_uids(pid) {
                        processes.push(TargetProcess { pid, uids });
                    }
                }
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        pending.push(entry.path());
                    }
                }
            }
        }
        let cgroup_rel = rel(&cgroup.path);
        let containers = cgroup_rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => {
                    container::id_in_dir_name(name.to_str()?).map(str::to_owned)
                }
                _ => None,
            })
            .map(|id| {
                let name = docker_name(&id);
                (id, name)
            })
            .collect();
        ResolvedTarget {
            given: given.to_string(),
            cgroup: cgroup_rel,
            owners,
            processes,
            containers,
            guards_overridden: false,
            truncated,
        }
    }

    /// The first process that runs (in any of its uids) as someone other than `uid`.
    fn foreign_process(&self, uid: u32) -> Option<&TargetProcess> {
        self.processes
            .iter()
            .find(|p| p.uids.iter().any(|u| *u != uid))
    }
}

/// The name Docker gave container `id` (its `config.v2.json`), if Docker runs it.
fn docker_name(id: &str) -> Option<String> {
    let path = format!("/var/lib/docker/containers/{id}/config.v2.json");
    let config: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
    let name = config.get("Name")?.as_str()?;
    Some(name.trim_start_matches('/').to_owned())
}

/// The uids on the `Uid:` line of /proc/PID/status; `None` when the process is gone.
fn process_uids(pid: u32) -> Option<[u32; 4]> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_uids(&status)
}

/// The four uids of a /proc/PID/status text.
fn parse_status_uids(status: &str) -> Option<[u32; 4]> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut uids = line.split_whitespace().map(|u| u.parse::<u32>().ok());
    Some([uids.next()??, uids.next()??, uids.next()??, uids.next()??])
}

/// Why a target is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The caller is root.
    Root,
    /// The cgroup is delegated to the caller.
    Owner,
    /// Every process in the cgroup runs as the caller.
    SameUid,
    /// A grant of the policy file.
    Policy {
        /// The group it grants to.
        group: String,
        /// What it grants (`unit web.service`, `container web`, `cgroup /loadtest.slice`).
        grants: String,
        /// Where it is in the file.
        at: String,
    },
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Root => f.write_str("root"),
            Grant::Owner => f.write_str("owner: the cgroup is delegated to the caller"),
            Grant::SameUid => f.write_str("same-uid: every process in it runs as the caller"),
            Grant::Policy { group, grants, at } => {
                write!(f, "policy: {grants} granted to group {group} ({at})")
            }
        }
    }
}

/// Why a target is refused: the rule that refused it and a message for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} [refused by rule: {rule}]")]
pub struct Refusal {
    /// The rule: `guards-override`, `too-large`, `foreign-process` or `ownership`.
    pub rule: &'static str,
    /// What was refused and what would be allowed.
    pub message: String,
}

/// The grants of the policy file, by group.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    grants: Vec<PolicyGrant>,
    /// The file they come from, for messages.
    source: String,
}

#[derive(Clone, Debug)]
struct PolicyGrant {
    group: String,
    gid: u32,
    line: usize,
    units: Vec<String>,
    containers: Vec<String>,
    cgroups: Vec<PathBuf>,
}

/// The policy file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    grant: Vec<Spanned<GrantEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    group: Spanned<String>,
    #[serde(default)]
    units: Vec<Spanned<String>>,
    #[serde(default)]
    containers: Vec<Spanned<String>>,
    #[serde(default)]
    cgroups: Vec<Spanned<String>>,
}

/// A policy file that cannot be used, with where and why.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Policy {
    /// No grants: root, owners and same-uid callers only.
    pub fn empty() -> Policy {
        Policy::default()
    }

    /// Reads the policy file at `path`; a missing file is an empty policy.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        match fs::read_to_string(path) {
            Ok(text) => Policy::parse(&path.display().to_string(), &text, &|name| {
                nix::unistd::Group::from_name(name)
                    .ok()
                    .flatten()
                    .map(|g| g.gid.as_raw())
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Policy {
                grants: Vec::new(),
                source: path.display().to_string(),
            }),
            Err(err) => Err(PolicyError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read it: {err}"),
            }),
        }
    }

    /// Parses and checks a policy file's `text`; `gid_of` looks groups up by name.
    pub fn parse(
        file: &str,
        text: &str,
        gid_of: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Policy, PolicyError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            PolicyError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let parsed: PolicyFile = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |s| s.start);
            at(offset, err.message().trim().to_owned())
        })?;
        let mut grants = Vec::new();
        for entry in parsed.grant {
            let line = line_column(text, entry.span().start).0;
            let entry = entry.into_inner();
            let group = entry.group.get_ref().clone();
            let gid = gid_of(&group).ok_or_else(|| {
                at(
                    entry.group.span().start,
                    format!(
                        "group: `{group}` is not a group of this machine (see /etc/group); \
                         expected an existing group's name"
                    ),
                )
            })?;
            let mut units = Vec::new();
            for unit in &entry.units {
                let name = crate::target::unit::normalise_name(unit.get_ref())
                    .map_err(|err| at(unit.span().start, format!("units: {err}")))?;
                units.push(name);
            }
            let mut containers = Vec::new();
            for c in &entry.containers {
                let value = c.get_ref();
                let valid_name = !value.is_empty()
                    && value.len() <= 128
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !valid_name {
                    return Err(at(
                        c.span().start,
                        format!(
                            "containers: `{value}` is neither a container id nor a name; \
                             expected hex digits (12 or more of the id) or a name of letters, \
                             digits, `_`, `.` and `-`"
                        ),
                    ));
                }
                containers.push(value.to_ascii_lowercase());
            }
            let mut cgroups = Vec::new();
            for c in &entry.cgroups {
                let path = Path::new(c.get_ref());
                let fine = path.is_absolute()
                    && path.components().count() > 1
                    && path
                        .components()
                        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
                if !fine {
                    return Err(at(
                        c.span().start,
                        format!(
                            "cgroups: `{}` is not a cgroup subtree; expected an absolute path \
                             below the cgroup v2 root as /proc/PID/cgroup shows it, without \
                             `..`, e.g. /loadtest.slice (the root itself is not grantable)",
                            c.get_ref()
                        ),
                    ));
                }
                cgroups.push(path.to_owned());
            }
            if units.is_empty() && containers.is_empty() && cgroups.is_empty() {
                return Err(at(
                    entry.group.span().start,
                    format!(
                        "the grant to group {group} grants nothing; expected units, containers \
                         or cgroups"
                    ),
                ));
            }
            grants.push(PolicyGrant {
                group,
                gid,
                line,
                units,
                containers,
                cgroups,
            });
        }
        Ok(Policy {
            grants,
            source: file.to_owned(),
        })
    }

    /// How many grants it has.
    pub fn len(&self) -> usize {
        self.grants.len()
    }

    /// Whether it grants nothing.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Whether `caller` may fault `target`, and by which rule.
    pub fn authorize(&self, caller: &Caller, target: &ResolvedTarget) -> Result<Grant, Refusal> {
        if caller.is_root() {
            return Ok(Grant::Root);
        }
        let who = format!("uid {}", caller.uid);
        let what = format!("{} (cgroup {})", target.given, target.cgroup.display());
        if target.guards_overridden {
            return Err(Refusal {
                rule: "guards-override",
                message: format!(
                    "{who} may not bypass the blast-radius guards \
                     (--i-know-what-i-am-doing is for root only)"
                ),
            });
        }
        if let Some(grant) = self.granted(caller, target) {
            return Ok(grant);
        }
        if target.truncated {
            return Err(Refusal {
                rule: "too-large",
                message: format!(
                    "{who} may not fault {what}: it has more than {MAX_INSPECTED} cgroups and \
                     processes, too many to check that they are all its own; {} can grant it",
                    self.source_name()
                ),
            });
        }
        if let Some(p) = target.foreign_process(caller.uid) {
            return Err(Refusal {
                rule: "foreign-process",
                message: format!(
                    "{who} may not fault {what}: pid {} in it runs as uid {} (real, effective, \
                     saved, fs uids {:?}); a caller other than root may fault only processes \
                     running as itself, or what {} grants its groups",
                    p.pid,
                    p.uids
                        .iter()
                        .find(|u| **u != caller.uid)
                        .unwrap_or(&p.uids[0]),
                    p.uids,
                    self.source_name()
                ),
            });
        }
        let owned =
            !target.owners.is_empty() && target.owners.values().all(|owner| *owner == caller.uid);
        if owned {
            return Ok(Grant::Owner);
        }
        if !target.processes.is_empty() {
            return Ok(Grant::SameUid);
        }
        let (dir, owner) = target
            .owners
            .iter()
            .find(|(_, o)| **o != caller.uid)
            .map(|(d, o)| (d.display().to_string(), *o))
            .unwrap_or_default();
        Err(Refusal {
            rule: "ownership",
            message: format!(
                "{who} may not fault {what}: it has no process running as {who} and is not \
                 delegated to it ({dir} belongs to uid {owner}); a caller other than root may \
                 fault cgroups it owns, cgroups whose processes all run as itself, or what {} \
                 grants its groups",
                self.source_name()
            ),
        })
    }

    fn source_name(&self) -> &str {
        if self.source.is_empty() {
            DEFAULT_POLICY
        } else {
            &self.source
        }
    }

    /// The first grant of the file that covers `target` for one of `caller`'s groups.
    fn granted(&self, caller: &Caller, target: &ResolvedTarget) -> Option<Grant> {
        let names: Vec<&str> = target
            .cgroup
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => name.to_str(),
                _ => None,
            })
            .collect();
        for grant in self
            .grants
            .iter()
            .filter(|g| caller.groups.contains(&g.gid))
        {
            let found = grant
                .units
                .iter()
                .find(|u| names.contains(&u.as_str()))
                .map(|u| format!("unit {u}"))
                .or_else(|| {
                    grant.containers.iter().find_map(|c| {
                        target
                            .containers
                            .iter()
                            .any(|(id, name)| {
                                name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(c))
                                    || (c.len() >= 12 && id.starts_with(c.as_str()))
                            })
                            .then(|| format!("container {c}"))
                    })
                })
                .or_else(|| {
                    grant
                        .cgroups
                        .iter()
                        .find(|c| target.cgroup.starts_with(c))
                        .map(|c| format!("cgroup subtree {}", c.display()))
                });
            if let Some(grants) = found {
                return Some(Grant::Policy {
                    group: grant.group.clone(),
                    grants,
                    at: format!("{}:{}", self.source_name(), grant.line),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: u32 = 1001;
    const BOB: u32 = 1002;

    fn alice() -> Caller {
        Caller {
            uid: ALICE,
            gid: ALICE,
            groups: vec![ALICE, 5000],
        }
    }

    fn gids(name: &str) -> Option<u32> {
        match name {
            "loadtest" => Some(5000),
            "other" => Some(6000),
            _ => None,
        }
    }

    /// A made-up target: the cgroup, its directories' owners, its processes' uids.
    fn target(cgroup: &str, dirs: &[(&str, u32)], procs: &[(u32, [u32; 4])]) -> ResolvedTarget {
        ResolvedTarget {
            given: format!("cgroup {cgroup}"),
            cgroup: cgroup.into(),
            owners: dirs.iter().map(|(d, o)| (PathBuf::from(d), *o)).collect(),
            processes: procs
                .iter()
                .map(|(pid, uids)| TargetProcess {
                    pid: *pid,
                    uids: *uids,
                })
                .collect(),
            ..ResolvedTarget::default()
        }
    }

    const USER_SVC: &str = "/user.slice/user-1001.slice/user@1001.service/app.slice/web.service";

    #[test]
    fn root_may_target_anything() {
        let root = Caller {
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        let t = target(
            "/system.slice/nginx.service",
            &[("/system.slice/nginx.service", 0)],
            &[(7, [0; 4])],
        );
        assert_eq!(Policy::empty().authorize(&root, &t), Ok(Grant::Root));
    }

    #[test]
    fn a_delegated_subtree_is_its_owners() {
        let t = target(
            USER_SVC,
            &[(USER_SVC, ALICE), ("/x/sub", ALICE)],
            &[(10, [ALICE; 4])],
        );
        assert_eq!(Policy::empty().authorize(&alice(), &t), Ok(Grant::Owner));
        // Empty and delegated: still its own.
        let t = target(USER_SVC, &[(USER_SVC, ALICE)], &[]);
        assert_eq!(Policy::empty().authorize(&alice(), &t), Ok(Grant::Owner));
        // A sub-cgroup root made below it holds root's processes: refused, naming the pid.
        let t = target(
            USER_SVC,
            &[(USER_SVC, ALICE), ("/x/rooted", 0)],
            &[(10, [ALICE; 4]), (11, [0; 4])],
        );
        let refused = Policy::empty().authorize(&alice(), &t).unwrap_err();
        assert_eq!(refused.rule, "foreign-process");
        assert!(
            refused.message.contains("pid 11") && refused.message.contains("uid 0"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_cgroup_of_only_the_callers_processes_is_allowed() {
        let t = target(
            "/test/alice",
            &[("/test/alice", 0)],
            &[(20, [ALICE; 4]), (21, [ALICE; 4])],
        );
        assert_eq!(Policy::empty().authorize(&alice(), &t), Ok(Grant::SameUid));
    }

    #[test]
    fn root_and_other_users_processes_are_refused() {
        let t = target(
            "/system.slice/nginx.service",
            &[("/system.slice/nginx.service", 0)],
            &[(30, [0; 4]), (31, [33; 4])],
        );
        let refused = Policy::empty().authorize(&alice(), &t).unwrap_err();
        assert_eq!(refused.rule, "foreign-process");
        assert!(
            refused
                .message
                .contains("uid 1001 may not fault cgroup /system.slice/nginx.service"),
            "{}",
            refused.message
        );
        let t = target("/test/bob", &[("/test/bob", BOB)], &[(40, [BOB; 4])]);
        assert_eq!(
            Policy::empty().authorize(&alice(), &t).unwrap_err().rule,
            "foreign-process"
        );
    }

    #[test]
    fn a_set_user_id_process_of_the_caller_is_refused() {
        // alice runs a set-user-ID root program: its effective uid is 0.
        let t = target(
            "/test/alice",
            &[("/test/alice", ALICE)],
            &[(50, [ALICE, 0, 0, 0])],
        );
        let refused = Policy::empty().authorize(&alice(), &t).unwrap_err();
        assert_eq!(refused.rule, "foreign-process");
    }

    #[test]
    fn an_empty_cgroup_of_someone_else_is_refused() {
        let t = target("/test/empty", &[("/test/empty", 0)], &[]);
        let refused = Policy::empty().authorize(&alice(), &t).unwrap_err();
        assert_eq!(refused.rule, "ownership");
        assert!(
            refused.message.contains("belongs to uid 0"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_subtree_too_large_to_inspect_is_refused() {
        let mut t = target(USER_SVC, &[(USER_SVC, ALICE)], &[(10, [ALICE; 4])]);
        t.truncated = true;
        assert_eq!(
            Policy::empty().authorize(&alice(), &t).unwrap_err().rule,
            "too-large"
        );
    }

    #[test]
    fn only_root_bypasses_the_guards() {
        let mut t = target(USER_SVC, &[(USER_SVC, ALICE)], &[]);
        t.guards_overridden = true;
        assert_eq!(
            Policy::empty().authorize(&alice(), &t).unwrap_err().rule,
            "guards-override"
        );
    }

    const POLICY: &str = r#"
# load testers may fault the web tier
[[grant]]
group = "loadtest"
units = ["nginx", "api.service"]
containers = ["redis", "3f2a9c4d5e6f"]
cgroups = ["/loadtest.slice"]

[[grant]]
group = "other"
units = ["db.service"]
"#;

    fn policy() -> Policy {
        Policy::parse("policy.toml", POLICY, &gids).unwrap()
    }

    #[test]
    fn the_policy_grants_units_containers_and_subtrees_to_its_groups() {
        let p = policy();
        let root_procs: &[(u32, [u32; 4])] = &[(60, [0; 4])];
        let nginx = target("/system.slice/nginx.service", &[], root_procs);
        match p.authorize(&alice(), &nginx) {
            Ok(Grant::Policy { group, grants, at }) => {
                assert_eq!(
                    (group.as_str(), grants.as_str(), at.as_str()),
                    ("loadtest", "unit nginx.service", "policy.toml:3")
                );
            }
            other => panic!("{other:?}"),
        }
        // Inside the unit too (a pid of the unit resolves to a sub-cgroup).
        let inner = target("/system.slice/api.service/worker", &[], root_procs);
        assert!(p.authorize(&alice(), &inner).is_ok());
        let sub = target("/loadtest.slice/run-7.scope", &[], root_procs);
        assert!(matches!(
            p.authorize(&alice(), &sub),
            Ok(Grant::Policy { .. })
        ));
        // Not a prefix of a path component.
        let near = target("/loadtest.slicex", &[], root_procs);
        assert!(p.authorize(&alice(), &near).is_err());
        let mut redis = target(
            "/docker/3f2a9c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b",
            &[],
            root_procs,
        );
        redis.containers = vec![(
            "3f2a9c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b".into(),
            None,
        )];
        assert!(p.authorize(&alice(), &redis).is_ok(), "by id");
        redis.containers = vec![("aa".repeat(32), Some("redis".into()))];
        assert!(p.authorize(&alice(), &redis).is_ok(), "by name");
        // db.service is granted to `other`, which alice is not in.
        let db = target("/system.slice/db.service", &[], root_procs);
        assert_eq!(
            p.authorize(&alice(), &db).unwrap_err().rule,
            "foreign-process"
        );
    }

    fn parse_error(text: &str) -> PolicyError {
        Policy::parse("p.toml", text, &gids).unwrap_err()
    }

    #[test]
    fn bad_policy_files_name_line_and_column() {
        let e = parse_error("[[grant]]\ngroup = \"loadtest\"\nunits = [\"a\"\n");
        assert_eq!(e.line, 3, "{e}");
        let e = parse_error("[[grant]]\ngroup = \"nosuch\"\nunits = [\"a\"]\n");
        assert_eq!((e.line, e.column), (2, 9), "{e}");
        assert!(
            e.to_string().starts_with("p.toml:2:9: group: `nosuch`"),
            "{e}"
        );
        let e =
            parse_error("[[grant]]\ngroup = \"loadtest\"\ncgroups = [\"/ok.slice\", \"../etc\"]\n");
        assert_eq!((e.line, e.column), (3, 25), "{e}");
        assert!(e.message.contains("../etc"), "{e}");
        let e = parse_error("[[grant]]\ngroup = \"loadtest\"\nunits = [\"x.socket\"]\n");
        assert_eq!((e.line, e.column), (3, 10), "{e}");
        let e = parse_error("[[grant]]\ngroup = \"loadtest\"\nunit = [\"x\"]\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("unit"), "{e}");
        let e = parse_error("[[grant]]\ngroup = \"loadtest\"\n");
        assert!(e.message.contains("grants nothing"), "{e}");
        let e = parse_error("[[grant]]\ngroup = \"loadtest\"\ncontainers = [\"a b\"]\n");
        assert_eq!((e.line, e.column), (3, 15), "{e}");
    }

    #[test]
    fn status_uids_are_read() {
        let status = "Name:\tsh\nUid:\t1001\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_status_uids(status), Some([1001, 0, 0, 0]));
        assert_eq!(parse_status_uids("Name: x\n"), None);
    }
}
