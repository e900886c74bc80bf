//! `/proc/self/mountinfo`: where the kernel filesystems chaos needs are mounted.
use std::path::PathBuf;

/// One line of `/proc/self/mountinfo`, reduced to what chaos needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, with the kernel's octal escapes undone.
    pub mount_point: PathBuf,
    /// The filesystem type (`cgroup2`, `bpf`, `securityfs`, ...).
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo`. Lines that do not have the documented shape are skipped
/// rather than failing the whole read.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(mountinfo_line).collect()
}

fn mountinfo_line(line: &str) -> Option<Mount> {
    // `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`:
    // the optional fields vary in number, so the filesystem type is found after the `-`.
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    let fstype = fields.skip_while(|f| *f != "-").nth(1)?;
    Some(Mount {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        fstype: unescape_octal(fstype),
    })
}

/// Undoes the `\ooo` escapes the kernel uses for space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first mount point of filesystem type `fstype`.
pub fn mount_point_of(mounts: &[Mount], fstype: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.fstype == fstype)
        .map(|m| m.mount_point.clone())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 master:2 - ext4 /dev/vda rw
43 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw
44 23 0:7 / /sys/kernel/security rw,relatime - securityfs securityfs rw
";

    #[test]
    fn finds_cgroup2_in_a_hybrid_layout() {
        let mounts = parse(HYBRID);
        assert_eq!(
            mount_point_of(&mounts, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            mount_point_of(&mounts, "bpf"),
            Some(PathBuf::from("/sys/fs/bpf"))
        );
        assert_eq!(mount_point_of(&mounts, "tracefs"), None);
    }

    #[test]
    fn skips_optional_fields_before_the_separator() {
        let mounts = parse(HYBRID);
        let docker = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/var/lib/docker"))
            .unwrap();
        assert_eq!(docker.fstype, "ext4");
    }

    #[test]
    fn unescapes_mount_points_and_ignores_garbage() {
        let mounts = parse("1 2 0:1 / /mnt/with\\040space rw - cgroup2 none rw\nnonsense\n");
        assert_eq!(
            mounts,
            vec![Mount {
                mount_point: PathBuf::from("/mnt/with space"),
                fstype: "cgroup2".into()
            }]
        );
        assert_eq!(unescape_octal("a\\134b\\01"), "a\\b\\01");
    }
}
