//! Latency at syscall entry: the `sys_enter` tracepoint holds back the calls the schedule
//! picks, by one of the [`LatencyMode`]s.
use std::{fmt, str::FromStr, time::Duration};

use chaos_common::{Action, MAX_SPIN_NS, RULE_DRY_RUN, Schedule};
use syscalls::Sysno;

use super::{FilterSpec, signal::entry_rules};
use crate::{Error, loader::PlannedRule, target::CgroupTarget};

/// How a call is held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyMode {
    /// The calling thread busy-waits in the kernel before the call runs: exact, per thread,
    /// costs one CPU for the delay, at most 100ms.
    Spin,
    /// The whole process is stopped (SIGSTOP) and continued by chaos after the delay: any
    /// delay, no CPU, but every thread stops and some calls return EINTR.
    Pause,
    /// The calling thread sleeps in a FUSE request chaos answers after the delay: per
    /// thread, no CPU, any delay; open, connect, send and receive calls only, Linux 6.12+
    /// with BPF LSM (docs/latency-block-mode.md).
    Block,
}

impl LatencyMode {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LatencyMode::Spin => "spin",
            LatencyMode::Pause => "pause",
            LatencyMode::Block => "block",
        }
    }

    /// The mode chosen when none is given: spin when the delay fits under its cap (it is
    /// exact and per thread), pause otherwise.
    pub fn automatic(delay: Duration, jitter: Duration) -> LatencyMode {
        if spin_ns(delay, jitter) <= MAX_SPIN_NS {
            LatencyMode::Spin
        } else {
            LatencyMode::Pause
        }
    }
}

impl fmt::Display for LatencyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LatencyMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        <LatencyMode as clap::ValueEnum>::from_str(s, true).map_err(|_| Error::Invalid {
            field: "mode",
            value: s.to_owned(),
            expected: "spin, pause or block".into(),
        })
    }
}

fn spin_ns(delay: Duration, jitter: Duration) -> u64 {
    (delay + jitter).as_nanos().try_into().unwrap_or(u64::MAX)
}

/// Delay some syscalls of a target, like strace's `-e inject=SYSCALL:delay_enter=DELAY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyFault {
    /// The syscalls delayed.
    pub syscalls: Vec<Sysno>,
    /// The delay.
    pub delay: Duration,
    /// Each delay is drawn uniformly from `delay ± jitter`.
    pub jitter: Duration,
    /// How the call is held back.
    pub mode: LatencyMode,
    /// Which calls match, beyond the syscall (only `comm` is possible here).
    pub filter: FilterSpec,
    /// Which matching calls are delayed.
    pub schedule: Schedule,
    /// Count only.
    pub dry_run: bool,
    /// How long the kernel may act on the fault at most.
    pub deadline: Option<Duration>,
}

impl LatencyFault {
    /// The kernel rules for this fault against `target`, one per syscall. Refuses a spin
    /// delay above the cap and a jitter larger than the delay.
    pub fn rules(&self, target: &CgroupTarget) -> Result<Vec<PlannedRule>, Error> {
        if self.delay.is_zero() {
            return Err(Error::Invalid {
                field: "delay",
                value: format!("{:?}", self.delay),
                expected: "a duration above zero, e.g. 50ms".into(),
            });
        }
        if self.jitter > self.delay {
            return Err(Error::Invalid {
                field: "jitter",
                value: humantime::format_duration(self.jitter).to_string(),
                expected: format!(
                    "at most the delay ({})",
                    humantime::format_duration(self.delay)
                ),
            });
        }
        if self.mode == LatencyMode::Spin && spin_ns(self.delay, self.jitter) > MAX_SPIN_NS {
            return Err(Error::Invalid {
                field: "delay",
                value: humantime::format_duration(self.delay + self.jitter).to_string(),
                expected: format!(
                    "at most {} (delay plus jitter) in spin mode: the thread holds its CPU \
                     while it waits; use --mode pause for longer delays",
                    humantime::format_duration(Duration::from_nanos(MAX_SPIN_NS))
                ),
            });
        }
        if self.mode == LatencyMode::Block {
            super::block::check_syscalls(&self.syscalls)?;
            if !self.jitter.is_zero() {
                return Err(Error::Invalid {
                    field: "jitter",
                    value: humantime::format_duration(self.jitter).to_string(),
                    expected: "none in block mode (not supported yet); use spin or pause".into(),
                });
            }
            if self.filter != FilterSpec::default() || self.schedule != Schedule::default() {
                return Err(Error::Invalid {
                    field: "filter",
                    value: "filters or a schedule".into(),
                    expected: "none in block mode (not supported yet: every call of the \
                               syscalls is delayed); use spin or pause"
                        .into(),
                });
            }
        }
        let mut rules = entry_rules(
            &self.syscalls,
            target,
            &self.filter,
            self.schedule,
            self.dry_run,
            self.deadline,
            "latency",
        )?;
        for planned in &mut rules {
            planned.rule.action = match self.mode {
                LatencyMode::Spin => Action::Spin,
                LatencyMode::Pause => Action::Pause,
                // The delay is the block programs' (fault::block); this rule only counts
                // the matching calls for the report.
                LatencyMode::Block => {
                    planned.rule.flags |= RULE_DRY_RUN;
                    Action::Spin
                }
            } as u32;
            planned.rule.delay_ns = self.delay.as_nanos().try_into().unwrap_or(u64::MAX);
            planned.rule.jitter_ns = self.jitter.as_nanos().try_into().unwrap_or(u64::MAX);
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CgroupTarget {
        CgroupTarget {
            path: "/sys/fs/cgroup/x".into(),
            id: 42,
            level: 1,
        }
    }

    fn fault(delay_ms: u64, mode: LatencyMode) -> LatencyFault {
        LatencyFault {
            syscalls: vec![Sysno::getppid],
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::ZERO,
            mode,
            filter: FilterSpec::default(),
            schedule: Schedule::ALWAYS,
            dry_run: false,
            deadline: None,
        }
    }

    #[test]
    fn spin_is_capped() {
        let rules = fault(100, LatencyMode::Spin).rules(&target()).unwrap();
        assert_eq!(rules[0].rule.action, Action::Spin as u32);
        assert_eq!(rules[0].rule.delay_ns, 100_000_000);
        let err = fault(101, LatencyMode::Spin)
            .rules(&target())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("delay") && err.contains("--mode pause"),
            "{err}"
        );
        assert!(fault(5000, LatencyMode::Pause).rules(&target()).is_ok());
    }

    #[test]
    fn block_takes_only_hooked_syscalls_and_only_counts_in_the_rules() {
        let mut f = fault(2000, LatencyMode::Block);
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(
            err.contains("getppid") && err.contains("openat"),
            "names the syscall and the valid ones: {err}"
        );
        f.syscalls = vec![Sysno::openat, Sysno::connect];
        let rules = f.rules(&target()).unwrap();
        assert!(rules.iter().all(|r| r.rule.flags & RULE_DRY_RUN != 0));
        f.jitter = Duration::from_millis(1);
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("jitter"), "{err}");
        f.jitter = Duration::ZERO;
        f.schedule.first = 3;
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("block mode"), "{err}");
        assert_eq!("block".parse::<LatencyMode>().unwrap(), LatencyMode::Block);
    }

    #[test]
    fn jitter_within_delay() {
        let mut f = fault(10, LatencyMode::Spin);
        f.jitter = Duration::from_millis(11);
        let err = f.rules(&target()).unwrap_err().to_string();
        assert!(err.contains("jitter"), "{err}");
        f.jitter = Duration::from_millis(3);
        assert_eq!(f.rules(&target()).unwrap()[0].rule.jitter_ns, 3_000_000);
    }

    #[test]
    fn automatic_mode() {
        let ms = Duration::from_millis;
        assert_eq!(LatencyMode::automatic(ms(50), ms(10)), LatencyMode::Spin);
        assert_eq!(LatencyMode::automatic(ms(500), ms(0)), LatencyMode::Pause);
    }
}
