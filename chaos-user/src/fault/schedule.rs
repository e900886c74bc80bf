//! Which matching calls a fault acts on, as users write it: strace's `when=` expression, or
//! `--after A --every N`, turned into the kernel's [`Schedule`].
use std::{fmt, str::FromStr};

use chaos_common::Schedule;

use crate::Error;

/// strace's `when=FIRST[..LAST][+[STEP]]`, with calls counted from 1 as strace counts them.
///
/// - `FIRST`: call FIRST only;
/// - `FIRST..LAST`: calls FIRST to LAST (inclusive);
/// - `FIRST+`: call FIRST and every call after it;
/// - `FIRST+STEP`: calls FIRST, FIRST+STEP, FIRST+2·STEP, ...;
/// - `FIRST..LAST+` and `FIRST..LAST+STEP`: the same, up to call LAST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct When {
    /// The first call acted on, from 1.
    pub first: u64,
    /// The last call acted on (inclusive), if any.
    pub last: Option<u64>,
    /// Calls between two acted on, at least 1.
    pub step: u64,
}

impl When {
    /// Every call.
    pub const ALWAYS: When = When {
        first: 1,
        last: None,
        step: 1,
    };

    /// `--after A --every N`: let A calls through, then act on every Nth call after them,
    /// i.e. calls A+N, A+2N, ... (`--every 3` alone: calls 3, 6, 9, as strace's `when=3+3`).
    pub fn after_every(after: u64, every: u64) -> When {
        let step = every.max(1);
        When {
            first: after.saturating_add(step),
            last: None,
            step,
        }
    }

    /// The kernel schedule: these calls, at most `max_hits` of them (`None`: no limit), each
    /// with `probability` (scaled as [`Schedule::probability`]).
    pub fn schedule(&self, max_hits: Option<u64>, probability: u32) -> Schedule {
        Schedule {
            // The kernel counts from 0.
            first: self.first.saturating_sub(1),
            last: self.last.map_or(u64::MAX, |l| l.saturating_sub(1)),
            step: self.step,
            max_hits: max_hits.unwrap_or(u64::MAX),
            probability,
            per_process: 0,
        }
    }
}

impl Default for When {
    fn default() -> Self {
        When::ALWAYS
    }
}

fn invalid(value: &str, why: &str) -> Error {
    Error::Invalid {
        field: "--when",
        value: value.to_string(),
        expected: format!(
            "{why}; expected strace's FIRST[..LAST][+[STEP]] with calls counted from 1, e.g. 3 \
             (the 3rd call only), 3..5 (3rd to 5th), 3+ (3rd and after), 3+3 (3rd, 6th, ...)"
        ),
    }
}

impl FromStr for When {
    type Err = Error;

    fn from_str(s: &str) -> Result<When, Error> {
        let number = |text: &str, what: &str| -> Result<u64, Error> {
            match text.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(invalid(
                    s,
                    &format!("{what} `{text}` is not a whole number from 1"),
                )),
            }
        };
        let (range, step) = match s.split_once('+') {
            Some((range, "")) => (range, Some(1)),
            Some((range, step)) => (range, Some(number(step, "STEP")?)),
            None => (s, None),
        };
        let (first, last) = match range.split_once("..") {
            Some((first, last)) => (number(first, "FIRST")?, Some(number(last, "LAST")?)),
            None => (number(range, "FIRST")?, None),
        };
        if let Some(last) = last
            && last < first
        {
            return Err(invalid(s, &format!("LAST {last} is before FIRST {first}")));
        }
        Ok(match (last, step) {
            // strace: FIRST alone is that call only.
            (None, None) => When {
                first,
                last: Some(first),
                step: 1,
            },
            // FIRST..LAST is every call in the range.
            (last, step) => When {
                first,
                last,
                step: step.unwrap_or(1),
            },
        })
    }
}

impl fmt::Display for When {
    /// strace's spelling, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(last) if last == self.first => write!(f, "{}", self.first),
            Some(last) if self.step == 1 => write!(f, "{}..{last}", self.first),
            Some(last) => write!(f, "{}..{last}+{}", self.first, self.step),
            None if self.step == 1 => write!(f, "{}+", self.first),
            None => write!(f, "{}+{}", self.first, self.step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls among the first 12 (counted from 1) that `when` selects.
    fn calls(when: &str) -> Vec<u64> {
        let s = when.parse::<When>().unwrap().schedule(None, u32::MAX);
        (0..12).filter(|n| s.selects(*n)).map(|n| n + 1).collect()
    }

    #[test]
    fn strace_expressions_select_the_calls_strace_fails() {
        // Each as strace 6.1 failed calls of `chaos-workload --count 10 socket` (see
        // tests/tests/strace.rs, which compares against the real strace).
        assert_eq!(calls("3"), [3]);
        assert_eq!(calls("3+"), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(calls("3+3"), [3, 6, 9, 12]);
        assert_eq!(calls("2..5"), [2, 3, 4, 5]);
        assert_eq!(calls("2..7+2"), [2, 4, 6]);
        assert_eq!(calls("1..3+"), [1, 2, 3]);
        assert_eq!(calls("5..5"), [5]);
        assert_eq!(calls("2..4+3"), [2]);
    }

    #[test]
    fn after_and_every_count_like_strace() {
        let calls = |w: When| -> Vec<u64> {
            let s = w.schedule(None, u32::MAX);
            (0..12).filter(|n| s.selects(*n)).map(|n| n + 1).collect()
        };
        // --every 3: the 3rd, 6th, ... call, as strace's when=3+3.
        assert_eq!(calls(When::after_every(0, 3)), [3, 6, 9, 12]);
        // --after 2 --every 3: calls 5, 8, 11.
        assert_eq!(calls(When::after_every(2, 3)), [5, 8, 11]);
        // --after 2 alone: the 3rd call and every one after.
        assert_eq!(calls(When::after_every(2, 1)), (3..=12).collect::<Vec<_>>());
        assert_eq!(When::after_every(0, 1), When::ALWAYS);
    }

    #[test]
    fn display_parses_back() {
        for s in ["3", "3+", "3+3", "2..5", "2..7+2"] {
            assert_eq!(s.parse::<When>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn bad_expressions_name_the_part_and_the_syntax() {
        for (bad, part) in [
            ("0", "FIRST"),
            ("x", "FIRST"),
            ("", "FIRST"),
            ("3+0", "STEP"),
            ("3..", "LAST"),
            ("5..3", "before FIRST"),
            ("3+3+3", "STEP"),
        ] {
            let err = bad.parse::<When>().unwrap_err().to_string();
            assert!(
                err.contains("--when") && err.contains(part) && err.contains("FIRST[..LAST]"),
                "{bad}: {err}"
            );
        }
    }
}
