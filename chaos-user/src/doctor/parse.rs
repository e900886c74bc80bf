//! Pure parsers for the files and command outputs the doctor reads, kept apart so that they
//! can be tested without a kernel.
use std::path::PathBuf;

/// One line of `/proc/self/mountinfo`, reduced to what the doctor needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, with the kernel's octal escapes undone.
    pub mount_point: PathBuf,
    /// The filesystem type (`cgroup2`, `bpf`, `securityfs`, ...).
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo`. Lines that do not have the documented shape are skipped
/// rather than failing the whole report.
pub fn mountinfo(text: &str) -> Vec<Mount> {
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

/// Parses `/sys/kernel/security/lsm`: a comma-separated list, in call order.
pub fn lsm_list(text: &str) -> Vec<String> {
    text.trim()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `lsm=` value of a kernel command line, if it has one (the last one wins, as in the
/// kernel).
pub fn cmdline_lsm(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .find_map(|arg| arg.strip_prefix("lsm="))
        .map(str::to_owned)
}

/// The `lsm=` boot parameter that keeps the LSMs active now, in order, and adds `bpf` last.
pub fn lsm_param_with_bpf(active: &[String]) -> String {
    let mut list: Vec<&str> = active
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "bpf")
        .collect();
    list.push("bpf");
    format!("lsm={}", list.join(","))
}

/// A kernel version as `(major, minor, patch)`, compared as a tuple.
pub type KernelVersion = (u32, u32, u32);

/// Parses a kernel release such as `6.18.44-fc-v657` or `6.1.0-47-amd64`; missing parts
/// count as 0.
pub fn kernel_version(release: &str) -> Option<KernelVersion> {
    let numeric = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().and_then(Result::ok).unwrap_or(0);
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
}

/// Linux capability numbers the doctor needs (from `linux/capability.h`).
pub mod cap {
    /// Configures interfaces and qdiscs (tc in the throw-away network namespace).
    pub const NET_ADMIN: u32 = 12;
    /// Mounts, namespaces, and BPF on kernels older than 5.8.
    pub const SYS_ADMIN: u32 = 21;
    /// BPF since 5.8.
    pub const BPF: u32 = 39;
}

/// The effective capability set (`CapEff:` of `/proc/self/status`) as a bit mask.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Whether capability `cap` is in mask `caps`.
pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// The `horizon` the fq qdisc reports in `tc qdisc show` output (e.g. `10s`), if any.
pub fn fq_horizon(tc_show: &str) -> Option<String> {
    let mut words = tc_show.split_whitespace();
    while let Some(word) = words.next() {
        if word == "horizon" {
            return words.next().map(str::to_owned);
        }
    }
    None
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
        let mounts = mountinfo(HYBRID);
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
        let mounts = mountinfo(HYBRID);
        let docker = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/var/lib/docker"))
            .unwrap();
        assert_eq!(docker.fstype, "ext4");
    }

    #[test]
    fn unescapes_mount_points_and_ignores_garbage() {
        let mounts = mountinfo("1 2 0:1 / /mnt/with\\040space rw - cgroup2 none rw\nnonsense\n");
        assert_eq!(
            mounts,
            vec![Mount {
                mount_point: PathBuf::from("/mnt/with space"),
                fstype: "cgroup2".into()
            }]
        );
        assert_eq!(unescape_octal("a\\134b\\01"), "a\\b\\01");
    }

    #[test]
    fn parses_the_lsm_list() {
        assert_eq!(
            lsm_list("lockdown,capability,landlock,yama,bpf\n"),
            ["lockdown", "capability", "landlock", "yama", "bpf"]
        );
        assert!(lsm_list("\n").is_empty());
    }

    #[test]
    fn builds_an_lsm_parameter_with_bpf_last() {
        let active = lsm_list("lockdown,capability,bpf,yama");
        assert_eq!(
            lsm_param_with_bpf(&active),
            "lsm=lockdown,capability,yama,bpf"
        );
        assert_eq!(lsm_param_with_bpf(&[]), "lsm=bpf");
    }

    #[test]
    fn reads_lsm_from_the_command_line() {
        assert_eq!(
            cmdline_lsm("console=ttyS0 lsm=a,b quiet lsm=lockdown,capability,bpf\n").as_deref(),
            Some("lockdown,capability,bpf")
        );
        assert_eq!(cmdline_lsm("quiet"), None);
    }

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18, 44)));
        assert_eq!(kernel_version("6.1.0-47-amd64"), Some((6, 1, 0)));
        assert_eq!(
            kernel_version("6.12.117+deb13-cloud-amd64"),
            Some((6, 12, 117))
        );
        assert_eq!(kernel_version("5.4"), Some((5, 4, 0)));
        assert_eq!(kernel_version("6.6-rc1"), Some((6, 6, 0)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn reads_effective_capabilities() {
        let status = "Name:\tchaos\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let caps = effective_caps(status).unwrap();
        assert!(has_cap(caps, cap::BPF));
        assert!(has_cap(caps, cap::SYS_ADMIN));
        assert!(has_cap(caps, cap::NET_ADMIN));
        // Bit 24 (CAP_SYS_RESOURCE) is the one missing from that mask.
        assert!(!has_cap(caps, 24));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn reads_the_fq_horizon() {
        let show = "qdisc fq 8001: root refcnt 2 limit 10000p flow_limit 100p buckets 1024 \
                    orphan_mask 1023 quantum 3028b initial_quantum 15140b low_rate_threshold \
                    550Kbit refill_delay 40ms timer_slack 10us horizon 10s horizon_drop\n";
        assert_eq!(fq_horizon(show).as_deref(), Some("10s"));
        assert_eq!(fq_horizon("qdisc noqueue 0: root refcnt 2\n"), None);
    }
}
