//! When a matching call gets the fault: strace's `when=first..last+step` plus a probability.

/// Which of a rule's matching calls are injected.
///
/// Matching calls are numbered from 0 across the whole target. Call `n` is injected when
/// `n >= after`, `(n - after) % every == 0`, fewer than `max_hits` calls were injected so far
/// and a random draw falls under `probability`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Matching calls to let through before the first injection.
    pub after: u64,
    /// Inject every Nth eligible call; 0 and 1 both mean every call.
    pub every: u64,
    /// Stop injecting after this many; `u64::MAX` for no limit.
    pub max_hits: u64,
    /// Chance of injecting an eligible call, scaled so that `u32::MAX` is always.
    pub probability: u32,
    /// Reserved, keeps the layout 8-byte aligned.
    pub _pad: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::ALWAYS
    }
}

impl Schedule {
    /// Every matching call.
    pub const ALWAYS: Schedule = Schedule {
        after: 0,
        every: 1,
        max_hits: u64::MAX,
        probability: u32::MAX,
        _pad: 0,
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
        if n < self.after {
            return false;
        }
        let every = if self.every == 0 { 1 } else { self.every };
        (n - self.after).is_multiple_of(every)
    }

    /// Whether a uniformly random `draw` falls under the probability.
    #[inline(always)]
    pub fn draw_hits(&self, draw: u32) -> bool {
        self.probability == u32::MAX || draw < self.probability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(s: &Schedule, upto: u64) -> [bool; 12] {
        let mut out = [false; 12];
        for n in 0..upto.min(12) {
            out[n as usize] = s.selects(n);
        }
        out
    }

    #[test]
    fn always_selects_everything() {
        assert!(selected(&Schedule::ALWAYS, 12).iter().all(|x| *x));
        assert!(Schedule::ALWAYS.draw_hits(u32::MAX));
    }

    #[test]
    fn after_and_every_are_strace_when() {
        // strace when=3+2 (1-based): calls 3, 5, 7, ... → 0-based 2, 4, 6, ...
        let s = Schedule {
            after: 2,
            every: 2,
            ..Schedule::ALWAYS
        };
        let got = selected(&s, 12);
        let want = [
            false, false, true, false, true, false, true, false, true, false, true, false,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn every_zero_means_every_call() {
        let s = Schedule {
            every: 0,
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
