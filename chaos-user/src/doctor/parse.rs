//! Pure parsers for the files and command outputs the doctor reads, kept apart so that they
//! can be tested without a kernel.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
