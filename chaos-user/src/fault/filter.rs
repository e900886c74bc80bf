//! Filters as users write them (`--path`, `--fd-kind`, `--port`, `--cidr`, `--comm`), checked
//! and turned into the kernel's [`Filter`].
use std::{
    fmt,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    str::FromStr,
};

use chaos_common::{
    Filter,
    filter::{
        AF_INET, AF_INET6, FILTER_CIDR, FILTER_COMM, FILTER_FD_KIND, FILTER_PATH, FILTER_PORT, kind,
    },
};

use crate::Error;

/// A kind of file descriptor, for `--fd-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A socket.
    Socket,
    /// A pipe or FIFO.
    Pipe,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A symbolic link.
    Symlink,
}

const FD_KINDS: &[(&str, FdKind, u32)] = &[
    ("file", FdKind::File, kind::FILE),
    ("dir", FdKind::Dir, kind::DIR),
    ("socket", FdKind::Socket, kind::SOCKET),
    ("pipe", FdKind::Pipe, kind::PIPE),
    ("char", FdKind::Char, kind::CHAR),
    ("block", FdKind::Block, kind::BLOCK),
    ("symlink", FdKind::Symlink, kind::SYMLINK),
];

impl FdKind {
    fn bit(self) -> u32 {
        FD_KINDS
            .iter()
            .find(|(_, k, _)| *k == self)
            .expect("listed")
            .2
    }

    fn name(self) -> &'static str {
        FD_KINDS
            .iter()
            .find(|(_, k, _)| *k == self)
            .expect("listed")
            .0
    }
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FdKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let want = match s {
            "regular" => "file",
            "fifo" => "pipe",
            other => other,
        };
        FD_KINDS
            .iter()
            .find(|(name, ..)| *name == want)
            .map(|(_, k, _)| *k)
            .ok_or_else(|| Error::Invalid {
                field: "fd-kind",
                value: s.to_owned(),
                expected: format!(
                    "one of {}",
                    FD_KINDS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
                ),
            })
    }
}

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address. Syscall filters (`--cidr`),
/// packet faults' peers, DNS servers and TCP resets' peers all take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits are ignored).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` lies in the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how an
    /// IPv4 peer of an IPv6 socket shows) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            }
        };
        let ip = match ip {
            IpAddr::V6(a) if self.addr.is_ipv4() => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            other => other,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let (net, width) = bits(self.addr);
        let (addr, _) = bits(ip);
        let prefix = u32::from(self.prefix_len).min(width);
        if prefix == 0 {
            return true;
        }
        let shift = width - prefix;
        (net >> shift) == (addr >> shift)
    }

    /// The family (4 or 6), network and mask as the packet programs compare them: the words of
    /// the address in packet (network) byte order.
    pub(crate) fn words(&self) -> (u32, [u32; 4], [u32; 4]) {
        let (family, bytes, bits): (u32, [u8; 16], u32) = match self.addr {
            IpAddr::V4(a) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&a.octets());
                (4, b, 32)
            }
            IpAddr::V6(a) => (6, a.octets(), 128),
        };
        let prefix = u32::from(self.prefix_len).min(bits);
        let mut mask_bytes = [0u8; 16];
        for (i, byte) in mask_bytes.iter_mut().enumerate() {
            let covered = prefix.saturating_sub(i as u32 * 8).min(8);
            *byte = if covered == 0 {
                0
            } else {
                0xffu8 << (8 - covered)
            };
        }
        let word = |b: &[u8; 16], i: usize| {
            u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        };
        let mut net = [0u32; 4];
        let mut mask = [0u32; 4];
        for i in 0..4 {
            mask[i] = word(&mask_bytes, i);
            net[i] = word(&bytes, i) & mask[i];
        }
        (family, net, mask)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::Invalid {
            field: "cidr",
            value: s.to_owned(),
            expected: "an IPv4 or IPv6 address with an optional prefix length, e.g. \
                       10.0.0.0/8, 127.0.0.1, fd00::/8"
                .into(),
        };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(Cidr { addr, prefix_len })
    }
}

/// Checks a thread name for `--comm`: the kernel keeps 15 bytes of it.
pub fn parse_comm(s: &str) -> Result<String, Error> {
    if s.is_empty() || s.len() > 15 || s.contains('\0') {
        return Err(Error::Invalid {
            field: "comm",
            value: s.to_owned(),
            expected: "a thread name of 1 to 15 bytes, as in /proc/PID/task/TID/comm".into(),
        });
    }
    Ok(s.to_owned())
}

/// The filters of a fault; empty matches every call of its syscalls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Files at or below this directory (resolved when the fault starts).
    pub path: Option<PathBuf>,
    /// Files of these kinds.
    pub fd_kinds: Vec<FdKind>,
    /// Socket address port (the peer for connect, the local one for bind).
    pub port: Option<u16>,
    /// Socket addresses in this block.
    pub cidr: Option<Cidr>,
    /// Threads of this name.
    pub comm: Option<String>,
}

impl FilterSpec {
    /// Whether it needs the file a call is about.
    pub fn needs_file(&self) -> bool {
        self.path.is_some() || !self.fd_kinds.is_empty()
    }

    /// Whether it needs the socket address of a call.
    pub fn needs_address(&self) -> bool {
        self.port.is_some() || self.cidr.is_some()
    }

    /// The option names in use that need a file, for messages.
    pub fn file_options(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.path.is_some() {
            out.push("--path");
        }
        if !self.fd_kinds.is_empty() {
            out.push("--fd-kind");
        }
        out
    }

    /// The option names in use that need a socket address, for messages.
    pub fn address_options(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.port.is_some() {
            out.push("--port");
        }
        if self.cidr.is_some() {
            out.push("--cidr");
        }
        out
    }

    /// The kernel filter; resolves the path to its device and inode now.
    pub fn to_filter(&self) -> Result<Filter, Error> {
        let mut filter = Filter::default();
        if let Some(path) = &self.path {
            let (dev, ino) = resolve_dir(path)?;
            filter.flags |= FILTER_PATH;
            filter.path_dev = dev;
            filter.path_ino = ino;
        }
        if !self.fd_kinds.is_empty() {
            filter.flags |= FILTER_FD_KIND;
            filter.fd_kinds = self.fd_kinds.iter().fold(0, |bits, k| bits | k.bit());
        }
        if let Some(port) = self.port {
            filter.flags |= FILTER_PORT;
            filter.port = port;
        }
        if let Some(cidr) = self.cidr {
            filter.flags |= FILTER_CIDR;
            filter.prefix_len = u32::from(cidr.prefix_len);
            match cidr.addr {
                IpAddr::V4(a) => {
                    filter.family = AF_INET;
                    filter.addr[..4].copy_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    filter.family = AF_INET6;
                    filter.addr = a.octets();
                }
            }
        }
        if let Some(comm) = &self.comm {
            filter.flags |= FILTER_COMM;
            filter.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        }
        Ok(filter)
    }
}

/// The kernel's device number (`major << 20 | minor`) and inode number of directory `path`.
fn resolve_dir(path: &Path) -> Result<(u64, u64), Error> {
    let invalid = |expected: String| Error::Invalid {
        field: "path",
        value: path.display().to_string(),
        expected,
    };
    if !path.is_absolute() {
        return Err(invalid(
            "an absolute directory path (for a container's files: /proc/PID/root/DIR)".into(),
        ));
    }
    let meta =
        std::fs::metadata(path).map_err(|err| invalid(format!("an existing directory ({err})")))?;
    if !meta.is_dir() {
        return Err(invalid(
            "a directory: the filter matches the files at or below it".into(),
        ));
    }
    let dev = meta.dev();
    let kernel_dev = (u64::from(nix::sys::stat::major(dev) as u32) << 20)
        | u64::from(nix::sys::stat::minor(dev) as u32);
    Ok((kernel_dev, meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(c.prefix_len, 8);
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix_len, 128);
        assert_eq!("127.0.0.1".parse::<Cidr>().unwrap().prefix_len, 32);
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "::/129", "1.2.3.4/"] {
            let err = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(err.contains("cidr") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn cidr_words_are_packet_order() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        let (family, net, mask) = c.words();
        assert_eq!(family, 4);
        assert_eq!(net[0].to_ne_bytes(), [10, 0, 0, 0]);
        assert_eq!(mask[0].to_ne_bytes(), [255, 0, 0, 0]);
        assert_eq!(&mask[1..], &[0, 0, 0]);
        let c: Cidr = "fd00::1/12".parse().unwrap();
        let (family, net, mask) = c.words();
        assert_eq!(family, 6);
        assert_eq!(net[0].to_ne_bytes(), [0xfd, 0x00, 0, 0]);
        assert_eq!(mask[0].to_ne_bytes(), [0xff, 0xf0, 0, 0]);
    }

    #[test]
    fn cidr_contains_its_addresses_and_mapped_ones() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")) && c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")) && !c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.168.1.1")) && !all.contains(ip("fd00::1")));
        let c: Cidr = "fd00::/12".parse().unwrap();
        assert!(c.contains(ip("fd0f::1")) && !c.contains(ip("fd10::1")));
    }

    #[test]
    fn fd_kinds() {
        assert_eq!("socket".parse::<FdKind>().unwrap(), FdKind::Socket);
        assert_eq!("fifo".parse::<FdKind>().unwrap(), FdKind::Pipe);
        let err = "tty".parse::<FdKind>().unwrap_err().to_string();
        assert!(err.contains("tty") && err.contains("pipe"), "{err}");
    }

    #[test]
    fn comm_length() {
        assert!(parse_comm("worker").is_ok());
        assert!(parse_comm("0123456789abcde").is_ok());
        let err = parse_comm("0123456789abcdef").unwrap_err().to_string();
        assert!(err.contains("15 bytes"), "{err}");
    }

    #[test]
    fn kernel_filter() {
        let spec = FilterSpec {
            path: Some("/".into()),
            fd_kinds: vec![FdKind::File, FdKind::Pipe],
            port: Some(443),
            cidr: Some("10.1.0.0/16".parse().unwrap()),
            comm: Some("db".into()),
        };
        let f = spec.to_filter().unwrap();
        assert_eq!(
            f.flags,
            FILTER_PATH | FILTER_FD_KIND | FILTER_PORT | FILTER_CIDR | FILTER_COMM
        );
        assert_eq!(f.path_ino, std::fs::metadata("/").unwrap().ino());
        assert!(f.kind_matches(0o100644) && f.kind_matches(0o010000));
        assert_eq!(&f.addr[..2], &[10, 1]);
        assert_eq!(&f.comm[..3], b"db\0");
    }

    #[test]
    fn bad_paths_say_why() {
        let err = FilterSpec {
            path: Some("relative".into()),
            ..FilterSpec::default()
        }
        .to_filter()
        .unwrap_err()
        .to_string();
        assert!(err.contains("absolute"), "{err}");
        let err = FilterSpec {
            path: Some("/etc/hostname".into()),
            ..FilterSpec::default()
        }
        .to_filter()
        .unwrap_err()
        .to_string();
        assert!(err.contains("a directory"), "{err}");
    }
}
