//! Counting test results from libtest's output, so that one closing line can sum up every
//! test binary of every tier.
use std::fmt;

/// Passed, failed and ignored tests, summed over libtest `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Summary {
    /// Adds the counts of a libtest closing line such as
    /// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
    /// Returns whether `line` was one.
    pub fn add_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return false;
        };
        let mut found = false;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            // "ok. 3 passed" / "FAILED. 1 passed" / " 0 failed"
            let (Some(n), Some(what)) = (
                words
                    .iter()
                    .rev()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok()),
                words.last(),
            ) else {
                continue;
            };
            match *what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => continue,
            }
            found = true;
        }
        found
    }

    /// Adds another summary.
    pub fn add(&mut self, other: Summary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_lines() {
        let mut s = Summary::default();
        assert!(s.add_line(
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
        ));
        assert!(s.add_line(
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"
        ));
        assert!(!s.add_line("running 3 tests"));
        assert_eq!(
            s,
            Summary {
                passed: 4,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(s.to_string(), "4 passed, 2 failed, 1 skipped");
    }
}
