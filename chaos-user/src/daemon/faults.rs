//! The daemon's active faults: each one a [`StartedFault`] of its own (attached all or nothing,
//! detached when stopped), with its deadline, who asked for it and the experiment that started
//! it, if one did.
use std::{collections::BTreeMap, sync::Arc, time::Instant};

use serde_json::Value;

use super::api::FaultStatus;
use crate::{
    engine::{StartedFault, TargetCheck},
    spec::FaultSpec,
};

/// Why a fault could not be created.
pub enum Refusal {
    /// The spec is not valid (the field as a JSON path and what is wrong).
    Invalid(String),
    /// The target could not be resolved or guarded it, or the kernel refused the programs.
    NotStarted(String),
    /// The caller may not fault the target ([`super::policy`]).
    Forbidden(super::policy::Refusal),
}

/// A fault whose programs are attached.
pub struct ActiveFault {
    fault: Arc<StartedFault>,
    deadline: Instant,
    created_by: u32,
    experiment: Option<u64>,
}

impl ActiveFault {
    /// Reads and checks a fault spec (JSON), resolves the target (with its guards), lets
    /// `check` decide on it and attaches the fault (blocking: loads and attaches kernel
    /// programs).
    pub fn start(
        body: Value,
        created_by: u32,
        check: &TargetCheck,
    ) -> Result<ActiveFault, Refusal> {
        let spec = FaultSpec::parse(body).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let fault =
            StartedFault::start_checked(&spec, check).map_err(|e| match e
                .downcast::<super::policy::Refusal>()
            {
                Ok(refusal) => Refusal::Forbidden(refusal),
                Err(e) => Refusal::NotStarted(format!("{e:#}")),
            })?;
        Ok(ActiveFault::started(Arc::new(fault), created_by, None))
    }

    /// The fault itself, shared.
    pub fn shared(&self) -> Arc<StartedFault> {
        Arc::clone(&self.fault)
    }

    /// A fault started elsewhere (by an experiment), from now until its duration passes.
    pub fn started(
        fault: Arc<StartedFault>,
        created_by: u32,
        experiment: Option<u64>,
    ) -> ActiveFault {
        ActiveFault {
            deadline: Instant::now() + fault.duration,
            fault,
            created_by,
            experiment,
        }
    }

    /// What it does, for logs and listings (with `(dry run)` when it only counts).
    pub fn description(&self) -> String {
        self.fault.description.clone()
    }

    /// The target cgroup directory.
    pub fn target(&self) -> &str {
        &self.fault.target
    }

    /// The uid that created it.
    pub fn created_by(&self) -> u32 {
        self.created_by
    }

    /// The experiment that started it, if any.
    pub fn experiment(&self) -> Option<u64> {
        self.experiment
    }

    /// Whether its deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Detaches it (a no-op if its experiment already did).
    pub fn stop(&self) {
        self.fault.stop();
    }

    /// Its state with the counters read from the kernel now.
    pub fn status(&self, id: u64) -> FaultStatus {
        let counters = self.fault.counters().unwrap_or_default();
        FaultStatus {
            id,
            kind: self.fault.kind.name().to_owned(),
            description: self.description(),
            target: self.fault.target.clone(),
            dry_run: self.fault.dry_run,
            created_by: self.created_by,
            experiment: self.experiment,
            remaining_secs: self
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
            matched: counters.iter().map(|c| c.matched).sum(),
            injected: counters.iter().map(|c| c.injected).sum(),
            counters,
            mechanism: self.fault.mechanism.as_ref().map(|c| c.mechanism),
        }
    }
}

/// Faults taken out of [`ActiveFaults`], with their ids, for the taker to stop.
pub type Taken = Vec<(u64, ActiveFault)>;

/// The active faults by id. A fault taken out of here must be stopped by the taker (outside
/// the lock: stopping a packet fault with fq waits for the packets fq holds).
#[derive(Default)]
pub struct ActiveFaults {
    next_id: u64,
    faults: BTreeMap<u64, ActiveFault>,
}

impl ActiveFaults {
    /// How many are active.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// How many of them `uid` created.
    pub fn count_by(&self, uid: u32) -> usize {
        self.faults.values().filter(|f| f.created_by == uid).count()
    }

    /// Adds a started fault and returns its id.
    pub fn insert(&mut self, fault: ActiveFault) -> u64 {
        self.next_id += 1;
        self.faults.insert(self.next_id, fault);
        self.next_id
    }

    /// The fault with this id.
    pub fn get(&self, id: u64) -> Option<&ActiveFault> {
        self.faults.get(&id)
    }

    /// Every fault, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &ActiveFault)> {
        self.faults.iter().map(|(id, f)| (*id, f))
    }

    /// Takes one fault out.
    pub fn remove(&mut self, id: u64) -> Option<ActiveFault> {
        self.faults.remove(&id)
    }

    /// Takes out the faults whose deadline passed, then those their experiment already stopped.
    pub fn remove_ended(&mut self, now: Instant) -> (Taken, Taken) {
        let expired = self.take(|f| f.expired(now));
        (expired, self.take(|f| !f.fault.active()))
    }

    /// Takes out the faults whose target cgroup was removed.
    pub fn remove_gone(&mut self) -> Taken {
        self.take(|f| f.fault.target_gone())
    }

    /// Takes out the faults `uid` created.
    pub fn remove_created_by(&mut self, uid: u32) -> Taken {
        self.take(|f| f.created_by == uid)
    }

    /// Takes out the faults of one experiment.
    pub fn remove_experiment(&mut self, experiment: u64) -> Vec<(u64, ActiveFault)> {
        self.take(|f| f.experiment == Some(experiment))
    }

    /// Takes out everything.
    pub fn clear(&mut self) -> Vec<(u64, ActiveFault)> {
        std::mem::take(&mut self.faults).into_iter().collect()
    }

    fn take(&mut self, which: impl Fn(&ActiveFault) -> bool) -> Vec<(u64, ActiveFault)> {
        let ids: Vec<u64> = self
            .faults
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.faults.remove(&id).map(|f| (id, f)))
            .collect()
    }
}
