//! A fault of any kind, started from its [`FaultSpec`] on a resolved target, by whoever keeps
//! it: `chaos inject` in the foreground, an experiment's runner, the daemon.
//!
//! This is the one place that turns a spec into attached programs: syscall-engine rules
//! (syscall, signal, latency, with the resumer that continues paused processes) or a packet
//! fault (programs and the fq qdiscs it installed). It reads their counters and stops them. A
//! [`StartedFault`] can be shared (`Arc`): whichever owner stops it first detaches it for all,
//! so a fault an experiment started can be listed and removed by the daemon too.
use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    dns::DnsInjection,
    events::{Clock, EventRecord},
    fault::{Injectable, Running},
    loader::{Injector, MechanismChoice, PlannedRule},
    packet::NetInjection,
    report::AnyReport,
    spec::{CheckedFault, Fault, FaultKind, FaultSpec},
    target::{CgroupTarget, Guards, Target, cgroup2_root},
    tcp_reset::TcpResetInjection,
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
    /// Its kind.
    pub kind: FaultKind,
    /// What it does, e.g. `connect -> ECONNREFUSED` or `drop`.
    pub description: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counts.
    pub dry_run: bool,
    /// Its `--duration`: the kernel programs of syscall-engine faults stop injecting then by
    /// themselves; the owner removes it then.
    pub duration: Duration,
    /// How its programs reach the kernel's security hooks, and why, for faults that use them.
    pub mechanism: Option<MechanismChoice>,
    engine: Mutex<Option<Engine>>,
    /// The resolved target, to notice when it goes away.
    cgroup: CgroupTarget,
    /// The counters read when it was stopped.
    last: Mutex<Option<Vec<RuleCounters>>>,
    /// How many listen to its events (the kernel writes them while one does).
    listeners: Mutex<usize>,
}

impl StartedFault {
    /// Checks the spec, resolves its target (with the blast-radius guards unless the spec
    /// says `i_know_what_i_am_doing`) and attaches the fault, all or nothing.
    pub fn start(spec: &FaultSpec) -> anyhow::Result<StartedFault> {
        StartedFault::start_checked(spec, &|_| Ok(()))
    }

    /// [`StartedFault::start`], with `check` deciding on the resolved target before anything
    /// is attached.
    pub fn start_checked(spec: &FaultSpec, check: &TargetCheck) -> anyhow::Result<StartedFault> {
        let checked = spec.check()?;
        let root = cgroup2_root()?;
        let target = checked.target.resolve(&root)?;
        if !checked.unguarded {
            Guards::current(&root)?.check(&target, &checked.target.to_string())?;
        }
        check(&Placement {
            named: &checked.target,
            cgroup: &target,
            guards_overridden: checked.unguarded,
        })?;
        StartedFault::start_on(checked, &target)
    }

    /// Attaches a checked fault to `target`, resolved by the caller (`chaos inject` with a
    /// command after `--` makes a cgroup for it).
    pub fn start_on(checked: CheckedFault, target: &CgroupTarget) -> anyhow::Result<StartedFault> {
        let mut mechanism = None;
        let (description, engine) = match checked.fault {
            Fault::Rules(fault) => {
                let planned = fault.rules(target)?;
                let mut injector = Injector::start_with(&planned, fault.mechanism())?;
                mechanism = injector.mechanism_choice().cloned();
                let resumer = fault.started(&mut injector, target)?;
                (
                    fault.describe(),
                    Engine::Rules {
                        target: target.clone(),
                        planned,
                        injector,
                        fault,
                        _resumer: resumer,
                    },
                )
            }
            Fault::Net { fault, devices } => {
                let injection = NetInjection::start(&fault, &devices, target)?;
                (fault.describe(), Engine::Net { injection })
            }
            Fault::Dns(fault) => {
                let injection = DnsInjection::start(&fault, target, Some(checked.duration))?;
                (fault.describe(), Engine::Dns { injection })
            }
            Fault::TcpReset(fault) => {
                let injection = TcpResetInjection::start(&fault, target, checked.duration)?;
                (fault.describe(), Engine::TcpReset { injection })
            }
        };
        Ok(StartedFault {
            kind: checked.kind,
            description,
            target: target.path.display().to_string(),
            dry_run: checked.dry_run,
            duration: checked.duration,
            mechanism,
            engine: Mutex::new(Some(engine)),
            cgroup: target.clone(),
            last: Mutex::new(None),
            listeners: Mutex::new(0),
        })
    }

    /// The full report now (per syscall; packets with their bytes); `None` once stopped.
    pub fn report(&self) -> anyhow::Result<Option<AnyReport>> {
        let engine = self.engine();
        Ok(match engine.as_ref() {
            None => None,
            Some(Engine::Rules {
                target,
                planned,
                injector,
                fault,
                ..
            }) => {
                let mut report = fault.report(target, planned, &injector.counters()?);
                for f in &mut report.faults {
                    f.mechanism = injector.mechanism();
                }
                Some(AnyReport::Rules(report))
            }
            Some(Engine::Net { injection }) => injection.report()?.map(AnyReport::Net),
            Some(Engine::Dns { injection }) => Some(AnyReport::Dns(injection.report()?)),
            Some(Engine::TcpReset { injection }) => Some(AnyReport::TcpReset(injection.report())),
        })
    }

    fn engine(&self) -> MutexGuard<'_, Option<Engine>> {
        // Taking or reading the engine cannot leave it half changed: keep going after a panic.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether its target cgroup was removed (see [`CgroupTarget::is_gone`]): its owner then
    /// stops it, since nothing is left to fault.
    pub fn target_gone(&self) -> bool {
        self.cgroup.is_gone()
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

    /// Starts (or, for the last listener, stops) the kernel reporting each call or packet
    /// this fault acts on; a fault nobody listens to writes no events. Listeners share one
    /// stream: each event goes to whichever reads [`StartedFault::events`] first.
    pub fn listen_events(&self, on: bool) -> anyhow::Result<()> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let before = *listeners;
        *listeners = if on {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        if (on && before > 0) || (!on && *listeners > 0) {
            return Ok(());
        }
        match self.engine().as_mut() {
            Some(Engine::Rules { injector, .. }) => injector.listen_events(on)?,
            Some(Engine::Net { injection }) => injection.listen_events(on)?,
            // Their decisions are made in user space (the DNS responder, the socket
            // destroyer), not by a kernel rule: they write no kernel events.
            Some(Engine::Dns { .. } | Engine::TcpReset { .. }) | None => {}
        }
        Ok(())
    }

    /// The events since the last call, oldest first (none once stopped); times converted
    /// with `clock`.
    pub fn events(&self, clock: &Clock) -> Vec<EventRecord> {
        match self.engine().as_mut() {
            Some(Engine::Rules {
                injector, planned, ..
            }) => injector
                .events()
                .iter()
                .map(|(rule, e)| {
                    let label = planned.get(*rule).map_or("?", |p| p.label.as_str());
                    EventRecord::new(clock, *rule, label, e)
                })
                .collect(),
            Some(Engine::Net { injection }) => {
                let kind = injection.fault().effect.kind();
                injection
                    .events()
                    .iter()
                    .map(|(rule, e)| EventRecord::new(clock, *rule, kind, e))
                    .collect()
            }
            Some(Engine::Dns { .. } | Engine::TcpReset { .. }) | None => Vec::new(),
        }
    }

    /// Events lost so far: the kernel's ring was full, or they were read too late (0 once
    /// stopped).
    pub fn events_lost(&self) -> u64 {
        match self.engine().as_ref() {
            Some(Engine::Rules { injector, .. }) => injector.events_lost().unwrap_or(0),
            Some(Engine::Net { injection }) => injection.events_lost().unwrap_or(0),
            Some(Engine::Dns { .. } | Engine::TcpReset { .. }) | None => 0,
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
// One per fault, never moved around in bulk: the size difference (an `Injector` is only its
// slots in the shared loaded object) does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    /// Rules of the syscall engine.
    Rules {
        target: CgroupTarget,
        /// The rules, whose labels say what each stands for.
        planned: Vec<PlannedRule>,
        injector: Injector,
        fault: Box<dyn Injectable + Send + Sync>,
        // What runs beside the programs (the resumer that continues paused processes, block
        // mode's FUSE server): must outlive the injector, so it is declared (and dropped)
        // after it.
        _resumer: Option<Running>,
    },
    /// A packet fault (programs, and fq qdiscs it installed).
    Net { injection: NetInjection },
    /// A DNS fault (redirect programs and the responder).
    Dns { injection: DnsInjection },
    /// A TCP reset fault (its sock_diag thread).
    TcpReset { injection: TcpResetInjection },
}

impl Engine {
    /// The counters now, as matched (calls, packets seen) and injected (affected): one entry
    /// per syscall (the rules of its hooks added up) or per packet fault. Built from the same
    /// report `chaos inject` prints.
    fn counters(&self) -> Option<Vec<RuleCounters>> {
        match self {
            Engine::Rules {
                target,
                planned,
                injector,
                fault,
                ..
            } => {
                let report = fault.report(target, planned, &injector.counters().ok()?);
                Some(
                    report
                        .faults
                        .into_iter()
                        .map(|f| RuleCounters {
                            rule: f.syscall,
                            matched: f.matched,
                            injected: f.injected,
                        })
                        .collect(),
                )
            }
            Engine::Net { injection } => {
                let report = injection.report().ok()??;
                Some(
                    report
                        .faults
                        .iter()
                        .map(|f| RuleCounters {
                            rule: f.kind.to_owned(),
                            matched: f.seen,
                            injected: f.affected,
                        })
                        .collect(),
                )
            }
            Engine::Dns { injection } => {
                let counts = injection.counts().ok()?;
                Some(vec![RuleCounters {
                    rule: "dns".to_owned(),
                    matched: counts.matched,
                    injected: counts.injected,
                }])
            }
            Engine::TcpReset { injection } => {
                let counts = injection.counts();
                Some(vec![RuleCounters {
                    rule: "tcp-reset".to_owned(),
                    matched: counts.matched,
                    injected: counts.injected,
                }])
            }
        }
    }
}
