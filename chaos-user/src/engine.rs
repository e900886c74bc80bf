//! A `chaos inject` fault of any kind, started on a resolved target by a process that keeps it
//! (an experiment's runner, the daemon) rather than by `chaos inject` in the foreground.
//!
//! This is the one place that turns a parsed `chaos inject` command into attached programs:
//! syscall-engine rules (syscall, signal, latency, with the resumer that continues paused
//! processes) or a packet fault (programs and the fq qdiscs it installed). It reads their
//! counters and stops them. A [`StartedFault`] can be shared (`Arc`): whichever owner stops
//! it first detaches it for all, so a fault an experiment started can be listed and removed
//! by the daemon too.
use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::{
    cli::{
        inject::{FaultRequest, InjectCommand, Running},
        net::NetInjection,
    },
    loader::Injector,
    target::{CgroupTarget, Target},
};

/// Where a fault would land, shown to a [`TargetCheck`] after the target is resolved and
/// before anything is attached.
pub struct Placement<'a> {
    /// The target as it was named.
    pub named: &'a Target,
    /// Its cgroup.
    pub cgroup: &'a CgroupTarget,
    /// Whether the blast-radius guards were bypassed (`--i-know-what-i-am-doing`).
    pub guards_overridden: bool,
}

/// Decides whether a fault may land where it would (the daemon authorizes its caller there);
/// an error refuses the fault with nothing attached.
pub type TargetCheck = dyn Fn(&Placement<'_>) -> anyhow::Result<()> + Send + Sync;

/// One rule's counters at one moment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuleCounters {
    /// What the rule hits: the syscall, or the packet fault's kind.
    pub rule: String,
    /// Calls (packets) from the target that matched.
    pub matched: u64,
    /// Calls failed, signalled or delayed; packets affected (would have been, in a dry run).
    pub injected: u64,
}

/// A fault whose programs are attached until [`StartedFault::stop`] or drop.
pub struct StartedFault {
    /// The `chaos inject` subcommand: `syscall`, `signal`, `latency`, `net-drop`, ...
    pub kind: &'static str,
    /// What it does, e.g. `connect -> ECONNREFUSED` or `drop`.
    pub description: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counts.
    pub dry_run: bool,
    /// Its `--duration`: the kernel programs of syscall-engine faults stop injecting then by
    /// themselves; the owner removes it then.
    pub duration: Duration,
    engine: Mutex<Option<Engine>>,
    /// The counters read when it was stopped.
    last: Mutex<Option<Vec<RuleCounters>>>,
}

impl StartedFault {
    /// Resolves the command's target (with its guards) and attaches the fault, all or nothing.
    /// `owner` says who runs it, for the message refusing a command after `--`, which only
    /// `chaos inject` itself can start and wait for.
    pub fn start(command: InjectCommand, owner: &str) -> anyhow::Result<StartedFault> {
        StartedFault::start_checked(command, owner, &|_| Ok(()))
    }

    /// [`StartedFault::start`], with `check` deciding on the resolved target before anything
    /// is attached.
    pub fn start_checked(
        command: InjectCommand,
        owner: &str,
        check: &TargetCheck,
    ) -> anyhow::Result<StartedFault> {
        let kind = command.kind();
        let request = command.into_request()?;
        let (target_args, run) = match &request {
            FaultRequest::Rules(r) => (&r.target, &r.run),
            FaultRequest::Net(r) => (&r.target, &r.run),
        };
        if !target_args.command.is_empty() {
            bail!(
                "{owner} needs a target (--cgroup, --pid, --container, --unit or --pod), not a \
                 command after `--`: only `chaos inject --standalone` starts and waits for one"
            );
        }
        let (duration, dry_run) = (run.duration, run.dry_run);
        let target = target_args.resolve()?;
        if let Some(named) = target_args.target() {
            check(&Placement {
                named: &named,
                cgroup: &target,
                guards_overridden: target_args.i_know_what_i_am_doing,
            })?;
        }
        let (description, engine) = match request {
            FaultRequest::Rules(request) => {
                let planned = request.fault.rules(&target)?;
                let mut injector = Injector::start(&planned)?;
                let resumer = request.fault.started(&mut injector, &target)?;
                (
                    request.fault.describe(),
                    Engine::Rules {
                        labels: planned.iter().map(|r| r.label.clone()).collect(),
                        injector,
                        _resumer: resumer,
                    },
                )
            }
            FaultRequest::Net(request) => {
                if request.devices.netns.is_some() {
                    bail!(
                        "--netns is not available to {owner}: it would move the whole process \
                         into another network namespace; give the devices of the target's \
                         namespace with --device instead, or run `chaos inject --standalone`"
                    );
                }
                let injection =
                    NetInjection::start(&request.fault, &request.devices.device, &target)?;
                (
                    request.fault.describe(),
                    Engine::Net {
                        kind: request.fault.effect.kind(),
                        injection,
                    },
                )
            }
        };
        Ok(StartedFault {
            kind,
            description,
            target: target.path.display().to_string(),
            dry_run,
            duration,
            engine: Mutex::new(Some(engine)),
            last: Mutex::new(None),
        })
    }

    fn engine(&self) -> MutexGuard<'_, Option<Engine>> {
        // Taking or reading the engine cannot leave it half changed: keep going after a panic.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether its programs are still attached.
    pub fn active(&self) -> bool {
        self.engine().is_some()
    }

    /// The counters now, one entry per syscall (the hooks of one syscall added up) or per
    /// packet fault; once stopped, those read when it stopped.
    pub fn counters(&self) -> Option<Vec<RuleCounters>> {
        let engine = self.engine();
        match engine.as_ref() {
            Some(engine) => engine.counters(),
            None => self.last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// Detaches it (a no-op when already stopped), keeping its last counters; true if this
    /// call stopped it. Packet faults that installed fq wait here for the packets fq still
    /// holds before restoring the qdiscs.
    pub fn stop(&self) -> bool {
        let engine = {
            let mut slot = self.engine();
            let engine = slot.take();
            if let Some(engine) = &engine {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = engine.counters();
            }
            engine
        };
        // Dropped out of the lock, so that readers are not held up by the detaching.
        let stopped = engine.is_some();
        drop(engine);
        stopped
    }
}

/// What keeps a fault in place; dropping it removes the fault.
enum Engine {
    /// Rules of the syscall engine.
    Rules {
        /// What each rule stands for, in rule order.
        labels: Vec<String>,
        injector: Injector,
        // What runs beside the programs (the resumer that continues paused processes, block
        // mode's FUSE server): must outlive the injector, so it is declared (and dropped)
        // after it.
        _resumer: Option<Running>,
    },
    /// A packet fault (programs, and fq qdiscs it installed).
    Net {
        kind: &'static str,
        injection: NetInjection,
    },
}

impl Engine {
    /// The counters now, as matched (calls, packets seen) and injected (affected).
    fn counters(&self) -> Option<Vec<RuleCounters>> {
        match self {
            Engine::Rules {
                labels, injector, ..
            } => {
                let counters = injector.counters().ok()?;
                // A syscall with several hooks (unlinkat) has one rule per hook: one entry.
                let mut merged: Vec<RuleCounters> = Vec::new();
                for (label, c) in labels.iter().zip(counters) {
                    match merged.iter_mut().find(|m| &m.rule == label) {
                        Some(m) => {
                            m.matched += c.matched;
                            m.injected += c.injected;
                        }
                        None => merged.push(RuleCounters {
                            rule: label.clone(),
                            matched: c.matched,
                            injected: c.injected,
                        }),
                    }
                }
                Some(merged)
            }
            Engine::Net { kind, injection } => {
                let report = injection.report().ok()??;
                Some(
                    report
                        .faults
                        .iter()
                        .map(|f| RuleCounters {
                            rule: (*kind).to_owned(),
                            matched: f.seen,
                            injected: f.affected,
                        })
                        .collect(),
                )
            }
        }
    }
}
