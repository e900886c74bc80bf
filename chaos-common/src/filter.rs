//! Filters that narrow a rule beyond its target and syscall: the calling thread's name, the
//! file's kind and place in the tree, the peer address and port.
//!
//! The kernel programs gather the facts (lazily, only for rules that ask) and call the pure
//! functions here, which are unit-tested on the host.

/// [`Filter::flags`]: match the thread name in [`Filter::comm`].
pub const FILTER_COMM: u32 = 1 << 0;
/// [`Filter::flags`]: match files whose kind is in [`Filter::fd_kinds`].
pub const FILTER_FD_KIND: u32 = 1 << 1;
/// [`Filter::flags`]: match files at or below the directory [`Filter::path_ino`] on
/// [`Filter::path_dev`].
pub const FILTER_PATH: u32 = 1 << 2;
/// [`Filter::flags`]: match the socket address port [`Filter::port`].
pub const FILTER_PORT: u32 = 1 << 3;
/// [`Filter::flags`]: match socket addresses inside [`Filter::addr`]/[`Filter::prefix_len`].
pub const FILTER_CIDR: u32 = 1 << 4;

/// Address family values as the kernel uses them.
pub const AF_INET: u16 = 2;
/// IPv6.
pub const AF_INET6: u16 = 10;

/// How many ancestors of a file the kernel side compares against [`Filter::path_ino`]; files
/// deeper than this below the filter's directory do not match.
pub const PATH_DEPTH: usize = 16;

/// The `S_IFMT` kind of an inode mode, as a bit for [`Filter::fd_kinds`].
#[inline(always)]
pub const fn kind_bit(mode: u32) -> u32 {
    1 << ((mode >> 12) & 0xf)
}

/// `S_IFREG` etc. as [`kind_bit`]s.
pub mod kind {
    use super::kind_bit;
    /// Regular file.
    pub const FILE: u32 = kind_bit(0o100000);
    /// Directory.
    pub const DIR: u32 = kind_bit(0o040000);
    /// Socket.
    pub const SOCKET: u32 = kind_bit(0o140000);
    /// Pipe or FIFO.
    pub const PIPE: u32 = kind_bit(0o010000);
    /// Character device.
    pub const CHAR: u32 = kind_bit(0o020000);
    /// Block device.
    pub const BLOCK: u32 = kind_bit(0o060000);
    /// Symbolic link.
    pub const SYMLINK: u32 = kind_bit(0o120000);
}

/// The filters of one rule; a rule with `flags == 0` matches every call of its syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `FILTER_*` bits: which of the fields below apply (all that apply must match).
    pub flags: u32,
    /// [`kind_bit`]s of the file kinds that match.
    pub fd_kinds: u32,
    /// Thread name (`comm`), NUL-padded.
    pub comm: [u8; 16],
    /// Device of the directory, in the kernel's encoding (`major << 20 | minor`).
    pub path_dev: u64,
    /// Inode number of the directory.
    pub path_ino: u64,
    /// Port, host byte order.
    pub port: u16,
    /// [`AF_INET`] or [`AF_INET6`], for the CIDR.
    pub family: u16,
    /// CIDR prefix length in bits.
    pub prefix_len: u32,
    /// CIDR address, network byte order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl Filter {
    /// Whether any of `bits` is set.
    #[inline(always)]
    pub const fn has(&self, bits: u32) -> bool {
        self.flags & bits != 0
    }

    /// Whether the thread name `comm` (NUL-padded, as the kernel keeps it) is the filter's.
    #[inline(always)]
    pub fn comm_matches(&self, comm: &[u8; 16]) -> bool {
        // Two word compares instead of a byte loop: cheaper, and far easier on the verifier.
        let words = |c: &[u8; 16]| {
            // SAFETY: 16 bytes read as two unaligned u64s.
            unsafe { core::ptr::read_unaligned(c.as_ptr().cast::<[u64; 2]>()) }
        };
        words(&self.comm) == words(comm)
    }

    /// Whether an inode `mode` is of a kind the filter takes.
    #[inline(always)]
    pub const fn kind_matches(&self, mode: u32) -> bool {
        self.fd_kinds & kind_bit(mode) != 0
    }

    /// Whether a socket address passes the port and CIDR filters that are set.
    #[inline(always)]
    pub fn addr_matches(&self, family: u16, addr: &[u8; 16], port: u16) -> bool {
        if self.has(FILTER_PORT) && port != self.port {
            return false;
        }
        if self.has(FILTER_CIDR) {
            if family != self.family {
                return false;
            }
            // Two masked 64-bit compares instead of a loop over 16 bytes: the same test, but
            // straight-line code, which the verifier walks once instead of once per byte and
            // per prefix length it cannot rule out (the loop cost connect4 ~120k verified
            // instructions on 6.18).
            let (mask_hi, mask_lo) = prefix_masks(self.prefix_len);
            let (a_hi, a_lo) = words(addr);
            let (f_hi, f_lo) = words(&self.addr);
            if (a_hi ^ f_hi) & mask_hi != 0 || (a_lo ^ f_lo) & mask_lo != 0 {
                return false;
            }
        }
        true
    }
}

/// A 128-bit address in network order as two big-endian words (high, low).
#[inline(always)]
fn words(addr: &[u8; 16]) -> (u64, u64) {
    // SAFETY: 16 bytes read as two unaligned u64s.
    let [hi, lo] = unsafe { core::ptr::read_unaligned(addr.as_ptr().cast::<[u64; 2]>()) };
    (u64::from_be(hi), u64::from_be(lo))
}

/// The masks of a `prefix_len`-bit prefix over [`words`] (lengths past 128 count as 128).
#[inline(always)]
const fn prefix_masks(prefix_len: u32) -> (u64, u64) {
    let bits = if prefix_len > 128 { 128 } else { prefix_len };
    (word_mask(bits), word_mask(bits.saturating_sub(64)))
}

/// A mask of the `n` high bits of a word (all of them from 64 on).
#[inline(always)]
const fn word_mask(n: u32) -> u64 {
    if n == 0 {
        0
    } else if n >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(s: &str) -> [u8; 16] {
        let mut out = [0; 16];
        out[..s.len()].copy_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn comm_is_exact() {
        let f = Filter {
            comm: comm("worker"),
            ..Filter::default()
        };
        assert!(f.comm_matches(&comm("worker")));
        assert!(!f.comm_matches(&comm("worker2")));
        assert!(!f.comm_matches(&comm("work")));
    }

    #[test]
    fn kinds() {
        let f = Filter {
            fd_kinds: kind::FILE | kind::PIPE,
            ..Filter::default()
        };
        assert!(f.kind_matches(0o100644));
        assert!(f.kind_matches(0o010600));
        assert!(!f.kind_matches(0o140777));
        assert!(!f.kind_matches(0o040755));
    }

    #[test]
    fn cidr_and_port() {
        let mut net = [0; 16];
        net[..4].copy_from_slice(&[10, 1, 0, 0]);
        let f = Filter {
            flags: FILTER_CIDR | FILTER_PORT,
            family: AF_INET,
            prefix_len: 17,
            addr: net,
            port: 443,
            ..Filter::default()
        };
        let ip = |a: [u8; 4]| {
            let mut out = [0; 16];
            out[..4].copy_from_slice(&a);
            out
        };
        assert!(f.addr_matches(AF_INET, &ip([10, 1, 127, 9]), 443));
        assert!(!f.addr_matches(AF_INET, &ip([10, 1, 128, 9]), 443));
        assert!(!f.addr_matches(AF_INET, &ip([10, 1, 0, 1]), 80));
        assert!(!f.addr_matches(AF_INET6, &ip([10, 1, 0, 1]), 443));
        let any = Filter {
            flags: FILTER_CIDR,
            family: AF_INET,
            prefix_len: 0,
            ..Filter::default()
        };
        assert!(any.addr_matches(AF_INET, &ip([1, 2, 3, 4]), 1));
    }

    /// The word compare agrees with a plain bit-by-bit prefix compare, for every prefix
    /// length and addresses that differ in one bit anywhere.
    #[test]
    fn cidr_is_exact_at_every_prefix_length() {
        let net: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22,
            0x33, 0x44,
        ];
        let bit = |a: &[u8; 16], i: u32| a[(i / 8) as usize] >> (7 - i % 8) & 1;
        for prefix_len in 0..=130 {
            let f = Filter {
                flags: FILTER_CIDR,
                family: AF_INET6,
                prefix_len,
                addr: net,
                ..Filter::default()
            };
            assert!(f.addr_matches(AF_INET6, &net, 0));
            for flip in 0..128u32 {
                let mut addr = net;
                addr[(flip / 8) as usize] ^= 0x80 >> (flip % 8);
                let expected = (0..prefix_len.min(128)).all(|i| bit(&addr, i) == bit(&net, i));
                assert_eq!(
                    f.addr_matches(AF_INET6, &addr, 0),
                    expected,
                    "/{prefix_len}, bit {flip}"
                );
            }
        }
    }
}
