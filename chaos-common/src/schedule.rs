//! When a matching call gets the fault: strace's `when=first..last+step` plus a probability.

/// Which of a rule's matching calls are injected.
///
/// Matching calls are numbered from 0 across the whole target, or per process with
/// `per_process` (strace numbers them from 1, per traced process). Call `n` is injected when `first <= n <= last`, `(n - first) % step == 0`,
/// fewer than `max_hits` calls were injected so far and a random draw falls under
/// `probability`. strace's `when=3+3` is `first: 2, step: 3`: calls 3, 6, 9, ... counted
/// from 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The first eligible matching call, counted from 0.
    pub first: u64,
    /// The last eligible matching call, counted from 0 and inclusive; `u64::MAX` for none.
    pub last: u64,
    /// Calls between two eligible ones; 0 and 1 both mean every call from `first`.
    pub step: u64,
    /// Stop injecting after this many; `u64::MAX` for no limit.
    pub max_hits: u64,
    /// Chance of injecting an eligible call, scaled so that `u32::MAX` is always.
    pub probability: u32,
    /// Nonzero: number the calls per process (thread group), as strace does per tracee,
    /// instead of across the target; `matched` and `max_hits` stay per rule.
    pub per_process: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::ALWAYS
    }
}

impl Schedule {
    /// Every matching call.
    pub const ALWAYS: Schedule = Schedule {
        first: 0,
        last: u64::MAX,
        step: 1,
        max_hits: u64::MAX,
        probability: u32::MAX,
        per_process: 0,
    };

    /// Scales a probability in `0.0..=1.0` to the `probability` field.
    #[cfg(feature = "user")]
    pub fn probability_from_f64(p: f64) -> u32 {
        if p >= 1.0 {
            u32::MAX
        } else if p <= 0.0 {
            0
        } else {
            (p * u32::MAX as f64) as u32
        }
    }

    /// Whether matching call number `n` (0-based) is eligible, before the hit limit and the
    /// random draw are applied.
    #[inline(always)]
    pub fn selects(&self, n: u64) -> bool {
        if n < self.first || n > self.last {
            return false;
        }
        let step = if self.step == 0 { 1 } else { self.step };
        (n - self.first).is_multiple_of(step)
    }

    /// Whether a uniformly random `draw` falls under the probability.
    #[inline(always)]
    pub fn draw_hits(&self, draw: u32) -> bool {
        self.probability == u32::MAX || draw < self.probability
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    /// The calls `s` selects among the first 12, counted from 1 as strace counts them.
    fn selected(s: &Schedule) -> Vec<u64> {
        (0..12).filter(|n| s.selects(*n)).map(|n| n + 1).collect()
    }

    #[test]
    fn always_selects_everything() {
        assert_eq!(selected(&Schedule::ALWAYS), (1..=12).collect::<Vec<_>>());
        assert!(Schedule::ALWAYS.draw_hits(u32::MAX));
    }

    #[test]
    fn first_and_step_are_strace_when() {
        // strace when=3+3: calls 3, 6, 9, 12.
        let s = Schedule {
            first: 2,
            step: 3,
            ..Schedule::ALWAYS
        };
        assert_eq!(selected(&s), [3, 6, 9, 12]);
    }

    #[test]
    fn last_is_inclusive() {
        // strace when=2..7+2: calls 2, 4, 6.
        let s = Schedule {
            first: 1,
            last: 6,
            step: 2,
            ..Schedule::ALWAYS
        };
        assert_eq!(selected(&s), [2, 4, 6]);
        // strace when=5: call 5 only.
        let once = Schedule {
            first: 4,
            last: 4,
            ..Schedule::ALWAYS
        };
        assert_eq!(selected(&once), [5]);
    }

    #[test]
    fn step_zero_means_every_call() {
        let s = Schedule {
            step: 0,
            ..Schedule::ALWAYS
        };
        assert!(s.selects(0) && s.selects(7));
    }

    #[test]
    fn probability_draw() {
        let s = Schedule {
            probability: 100,
            ..Schedule::ALWAYS
        };
        assert!(s.draw_hits(99));
        assert!(!s.draw_hits(100));
        let never = Schedule {
            probability: 0,
            ..Schedule::ALWAYS
        };
        assert!(!never.draw_hits(0));
    }
}
