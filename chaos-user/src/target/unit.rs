//! `--unit NAME.service`: the cgroup systemd made for a unit.
//!
//! systemd gives every service, scope and slice a cgroup named after the unit, under its
//! slice: `/system.slice/NAME.service` for system services, slices nested by their dashes
//! (`/a.slice/a-b.slice`), user services under `/user.slice/user-UID.slice/user@UID.service/`
//! (systemd.slice(5), "Control Group hierarchy" in systemd.special(7)). The hierarchy is
//! searched by name, so units in any slice are found.
use std::path::{Path, PathBuf};

use super::tree;
use crate::Error;

/// Unit types that have a cgroup of their own with processes to fault.
const TYPES: &[&str] = &[".service", ".scope", ".slice"];

/// A unit name as the user gave it, with `.service` added when it has no type, as systemctl
/// does.
pub(crate) fn normalise_name(given: &str) -> Result<String, Error> {
    let invalid = |expected: &str| Error::Invalid {
        field: "--unit",
        value: given.to_owned(),
        expected: expected.into(),
    };
    if given.is_empty() || given.contains('/') || given.starts_with('.') {
        return Err(invalid(
            "a systemd unit name such as nginx.service, session-2.scope or machine.slice",
        ));
    }
    if TYPES.iter().any(|t| given.ends_with(t)) {
        return Ok(given.to_owned());
    }
    match given.rsplit_once('.') {
        Some((_, kind)) if is_unit_type(kind) => Err(invalid(&format!(
            "a unit with a cgroup of its own: a .service, .scope or .slice (a .{kind} unit's \
             processes run in the cgroup of the service it activates)"
        ))),
        _ => Ok(format!("{given}.service")),
    }
}

fn is_unit_type(kind: &str) -> bool {
    matches!(
        kind,
        "socket" | "target" | "timer" | "path" | "mount" | "automount" | "swap" | "device"
    )
}

/// Finds the cgroup directory of unit `given` under `root`.
pub(super) fn find(root: &Path, given: &str) -> Result<PathBuf, Error> {
    let unit = normalise_name(given)?;
    let found = tree::find_dirs(root, |name| name == unit);
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Target {
            target: format!("unit {given}"),
            why: format!(
                "no cgroup named {unit} under {} (searched up to {} levels down); is the unit \
                 active (`systemctl status {unit}`)? Inactive units have no cgroup",
                root.display(),
                tree::MAX_DEPTH
            ),
        }),
        many => Err(Error::Target {
            target: format!("unit {given}"),
            why: format!(
                "{} cgroups are named {unit} (system and user managers): {}; give the one to \
                 fault with --cgroup",
                many.len(),
                tree::shown(root, many)
            ),
        }),
    }
}
