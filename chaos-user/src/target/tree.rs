//! Searching a cgroup v2 hierarchy for directories by name: how container, pod and unit names
//! are found whatever slice or parent their runtime put them under.
use std::{
    fs,
    path::{Path, PathBuf},
};

/// How deep below the root a search goes. The deepest real layouts (a container of a
/// Kubernetes pod under a systemd QoS slice, inside a kind node's own slice) are about 8
/// levels down.
pub(super) const MAX_DEPTH: usize = 12;

/// Directories strictly below `root`, at most [`MAX_DEPTH`] levels down, whose name `matches`,
/// sorted. Symlinks are not followed; unreadable directories are skipped (a cgroup may vanish
/// while it is being walked).
pub(super) fn find_dirs(root: &Path, matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_owned(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_str().is_some_and(&matches) {
                found.push(path.clone());
            }
            if depth + 1 < MAX_DEPTH {
                pending.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// `paths` relative to `root`, as /proc/PID/cgroup shows them, for messages.
pub(super) fn shown(root: &Path, paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| match p.strip_prefix(root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
