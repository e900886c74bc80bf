//! Which cgroups one shared cgroup program is attached to.
//!
//! A cgroup's effective programs are its own plus every ancestor's, all run (bpf_links are
//! always multi-attach, kernel/bpf/cgroup.c), without removing duplicates. One program
//! attached to a cgroup and to its descendant therefore runs twice for a task in the
//! descendant, and every rule it walks counts (and acts) twice. So the faults' target cgroups
//! are counted as *wanted*, and links go only to the wanted cgroups with no wanted ancestor:
//! a link there covers its descendants, whose rules the program finds by the task's
//! ancestors (the rule index).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The cgroups one program is wanted on, with how many faults want each.
#[derive(Debug, Default)]
pub(crate) struct CgroupCover {
    wanted: BTreeMap<PathBuf, usize>,
}

impl CgroupCover {
    /// One more fault wants the program on `dir`.
    pub fn want(&mut self, dir: &Path) {
        *self.wanted.entry(dir.to_path_buf()).or_default() += 1;
    }

    /// One fault less wants it on `dir`.
    pub fn unwant(&mut self, dir: &Path) {
        if let Some(users) = self.wanted.get_mut(dir) {
            *users -= 1;
            if *users == 0 {
                self.wanted.remove(dir);
            }
        }
    }

    /// Where links belong: each wanted cgroup that has no wanted ancestor.
    ///
    /// One pass: paths order by component, so a cgroup's descendants follow it directly
    /// (`a`, `a/b`, `a/b/c`, `a/c`, `a2`), and a wanted cgroup has a wanted ancestor exactly
    /// when it lies below the last cgroup kept before it. (Comparing every pair made each
    /// daemon fault cost more than the one before: 8 ms at the 64th.)
    pub fn minimal(&self) -> BTreeSet<PathBuf> {
        let mut minimal = BTreeSet::new();
        let mut top: Option<&PathBuf> = None;
        for dir in self.wanted.keys() {
            if top.is_some_and(|top| is_below(dir, top)) {
                continue;
            }
            minimal.insert(dir.clone());
            top = Some(dir);
        }
        minimal
    }

    /// Which of the existing links `linked` to keep: those of [`Self::minimal`], except that
    /// a wanted cgroup whose own link is missing (its attach failed) keeps the highest link
    /// above it instead, and the links below that one go. No kept link is below another
    /// (nothing runs twice) and every wanted cgroup with any link on its path keeps one.
    pub fn keep(&self, linked: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
        let minimal = self.minimal();
        let mut keep: BTreeSet<PathBuf> = minimal.intersection(linked).cloned().collect();
        // Lookups of the cgroup and each of its ancestors, not scans of the sets.
        let covered =
            |keep: &BTreeSet<PathBuf>, dir: &Path| dir.ancestors().any(|a| keep.contains(a));
        for dir in self.wanted.keys() {
            if covered(&keep, dir) {
                continue;
            }
            let highest = dir.ancestors().filter(|a| linked.contains(*a)).last();
            if let Some(top) = highest {
                keep.retain(|k| !is_below(k, top));
                keep.insert(top.to_path_buf());
            }
        }
        keep
    }

    /// Brings the links `linked` to [`Self::minimal`]: calls `attach` for each missing link
    /// (stopping at the first error) and returns the links to drop now, with that error.
    /// Links are added before any is dropped, so no wanted cgroup is ever left uncovered;
    /// after a failed attach the links above it stay ([`Self::keep`]).
    pub fn relink<E>(
        &self,
        linked: &BTreeSet<PathBuf>,
        mut attach: impl FnMut(&Path) -> Result<(), E>,
    ) -> (BTreeSet<PathBuf>, Result<(), E>) {
        let mut now = linked.clone();
        let mut result = Ok(());
        for dir in self.minimal().difference(linked) {
            if let Err(err) = attach(dir) {
                result = Err(err);
                break;
            }
            now.insert(dir.clone());
        }
        let keep = self.keep(&now);
        (now.difference(&keep).cloned().collect(), result)
    }

    /// Whether no fault wants the program anywhere.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }
}

/// Whether `dir` is strictly below `ancestor`, compared by path components (`a/b` is below
/// `a`; `a2` is not).
pub(crate) fn is_below(dir: &Path, ancestor: &Path) -> bool {
    dir != ancestor && dir.starts_with(ancestor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dirs: &[&str]) -> BTreeSet<PathBuf> {
        dirs.iter().map(PathBuf::from).collect()
    }

    fn cover(dirs: &[&str]) -> CgroupCover {
        let mut cover = CgroupCover::default();
        for dir in dirs {
            cover.want(Path::new(dir));
        }
        cover
    }

    #[test]
    fn below_compares_components_not_strings() {
        assert!(is_below(Path::new("/cg/a/b"), Path::new("/cg/a")));
        assert!(is_below(Path::new("/cg/a/b/c"), Path::new("/cg/a/")));
        assert!(!is_below(Path::new("/cg/a2"), Path::new("/cg/a")));
        assert!(!is_below(Path::new("/cg/a"), Path::new("/cg/a")));
        assert!(!is_below(Path::new("/cg/a"), Path::new("/cg/a/b")));
    }

    #[test]
    fn only_cgroups_without_a_wanted_ancestor_get_links() {
        let cover = cover(&["/cg/a/b", "/cg/a", "/cg/a2", "/cg/a/b/c", "/cg/x/y"]);
        assert_eq!(cover.minimal(), set(&["/cg/a", "/cg/a2", "/cg/x/y"]));
    }

    #[test]
    fn an_ancestor_arriving_replaces_its_descendants_links() {
        let mut cover = cover(&["/cg/a/b", "/cg/a/c", "/cg/d"]);
        let linked = cover.minimal();
        cover.want(Path::new("/cg/a"));
        let target = cover.minimal();
        let to_attach: Vec<_> = target.difference(&linked).collect();
        assert_eq!(to_attach, [Path::new("/cg/a")]);
        // Attached first, then the descendants' links go.
        let after: BTreeSet<PathBuf> = linked.union(&target).cloned().collect();
        assert_eq!(cover.keep(&after), set(&["/cg/a", "/cg/d"]));
    }

    #[test]
    fn the_last_ancestor_fault_going_relinks_the_descendants_first() {
        let mut cover = cover(&["/cg/a", "/cg/a", "/cg/a/b", "/cg/a/b/c", "/cg/a/d"]);
        let linked = cover.minimal();
        assert_eq!(linked, set(&["/cg/a"]));
        cover.unwant(Path::new("/cg/a"));
        assert_eq!(cover.minimal(), linked, "another fault still wants /cg/a");
        cover.unwant(Path::new("/cg/a"));
        let target = cover.minimal();
        assert_eq!(target, set(&["/cg/a/b", "/cg/a/d"]));
        let after: BTreeSet<PathBuf> = linked.union(&target).cloned().collect();
        assert_eq!(cover.keep(&after), target);
    }

    #[test]
    fn a_failed_descendant_attach_keeps_the_ancestor_link() {
        let mut cover = cover(&["/cg/a", "/cg/a/b", "/cg/a/c"]);
        cover.unwant(Path::new("/cg/a"));
        // /cg/a/c attached, /cg/a/b did not: /cg/a still covers /cg/a/b, and /cg/a/c's own
        // link would run the program a second time there.
        let linked = set(&["/cg/a", "/cg/a/c"]);
        assert_eq!(cover.keep(&linked), set(&["/cg/a"]));
    }

    #[test]
    fn relinking_attaches_what_is_missing_and_names_what_to_drop() {
        let mut cover = cover(&["/cg/a/b", "/cg/a/c"]);
        cover.want(Path::new("/cg/a"));
        let linked = set(&["/cg/a/b", "/cg/a/c"]);
        let mut attached = Vec::new();
        let (drop, result) = cover.relink(&linked, |dir| {
            attached.push(dir.to_path_buf());
            Ok::<(), ()>(())
        });
        assert_eq!((attached, result), (vec![PathBuf::from("/cg/a")], Ok(())));
        assert_eq!(drop, linked);

        // The ancestor's attach fails: the descendants keep their links, the error comes back.
        let (drop, result) = cover.relink(&linked, |_| Err("refused"));
        assert_eq!((drop, result), (set(&[]), Err("refused")));

        // Its fault goes: nothing to attach, nothing to drop.
        cover.unwant(Path::new("/cg/a"));
        let (drop, result) = cover.relink(&linked, |_| Err("not called"));
        assert_eq!((drop, result), (set(&[]), Ok(())));
    }

    #[test]
    fn the_one_pass_agrees_with_comparing_every_pair() {
        // Names that sort between a cgroup and its descendants as strings ('-' and '.' sort
        // before '/'), but not as paths.
        let dirs = [
            "/cg/a",
            "/cg/a-b",
            "/cg/a.b",
            "/cg/a/b",
            "/cg/a-b/c",
            "/cg/a2/x",
            "/cg/a/b/c",
            "/cg/ab",
            "/cg/a.b/c/d",
            "/cg/b/a",
            "/cg/b",
            "/cg/c/d/e",
            "/cg/c/d",
        ];
        for n in 0..dirs.len() {
            let cover = cover(&dirs[n..]);
            let pairwise: BTreeSet<PathBuf> = cover
                .wanted
                .keys()
                .filter(|dir| !cover.wanted.keys().any(|other| is_below(dir, other)))
                .cloned()
                .collect();
            assert_eq!(cover.minimal(), pairwise, "wanted: {:?}", &dirs[n..]);
        }
    }

    #[test]
    fn links_nobody_wants_go() {
        let mut cover = cover(&["/cg/a"]);
        cover.unwant(Path::new("/cg/a"));
        assert!(cover.is_empty());
        assert!(cover.keep(&set(&["/cg/a", "/cg/b"])).is_empty());
        // Unwanting what nobody wanted changes nothing.
        cover.unwant(Path::new("/cg/a"));
        assert!(cover.is_empty());
    }
}
