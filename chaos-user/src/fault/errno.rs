//! Errno values as users write them: a name (`EIO`) or a number.
use std::{fmt, str::FromStr};

use nix::errno::Errno as NixErrno;

use crate::Error;

/// A positive errno value, parsed from a name (`EIO`) or a number (`5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(u32);

impl Errno {
    /// The largest errno the kernel passes back from a hook.
    pub const MAX: u32 = 4095;

    /// An errno from a raw OS error number, as found in `std::io::Error`.
    pub fn from_raw(n: i32) -> Errno {
        Errno(n.unsigned_abs())
    }

    /// The errno's number.
    pub fn number(self) -> u32 {
        self.0
    }

    /// The errno's symbolic name (`EIO`), if libc knows one.
    pub fn name(self) -> Option<String> {
        let e = NixErrno::from_raw(self.0 as i32);
        (e != NixErrno::UnknownErrno).then(|| format!("{e:?}"))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(&name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for Errno {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |expected: &str| Error::Invalid {
            field: "errno",
            value: s.to_owned(),
            expected: expected.to_owned(),
        };
        if let Ok(n) = s.parse::<i64>() {
            return if (1..=i64::from(Errno::MAX)).contains(&n) {
                Ok(Errno(n as u32))
            } else {
                Err(invalid(
                    "a number in 1..=4095 or a name such as EIO, ENOSPC, ECONNREFUSED",
                ))
            };
        }
        let want = s.to_ascii_uppercase();
        (1..=200)
            .map(Errno)
            .find(|e| e.name().as_deref() == Some(want.as_str()))
            .ok_or_else(|| invalid("an errno name such as EIO, ENOSPC, EACCES, ECONNREFUSED, ETIMEDOUT, EAGAIN, or a number in 1..=4095"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_by_name_and_number() {
        assert_eq!("EIO".parse::<Errno>().unwrap().number(), 5);
        assert_eq!("econnrefused".parse::<Errno>().unwrap().number(), 111);
        assert_eq!("28".parse::<Errno>().unwrap().to_string(), "ENOSPC");
        assert_eq!("4095".parse::<Errno>().unwrap().to_string(), "4095");
    }

    #[test]
    fn errno_out_of_range_names_the_range() {
        for bad in ["0", "4096", "-5", "EWHATEVER"] {
            let err = bad.parse::<Errno>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("errno"), "{err}");
        }
        assert!(
            "0".parse::<Errno>()
                .unwrap_err()
                .to_string()
                .contains("1..=4095")
        );
    }
}
