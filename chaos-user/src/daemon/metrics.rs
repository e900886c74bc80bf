//! The Prometheus exposition: per fault `chaos_fault_matched_total` and
//! `chaos_fault_injected_total` (labels id, kind, target), `chaos_faults_active`, `chaos_up`.
//!
//! The counters live in the kernel's maps, so each scrape builds a fresh registry from them:
//! the values are the kernel's at scrape time, and removed faults disappear.
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::faults::ActiveFaults;

/// The labels of a fault's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    id: String,
    kind: String,
    target: String,
}

/// The metrics text for the faults active now.
pub fn render(faults: &ActiveFaults) -> anyhow::Result<String> {
    let matched = Family::<FaultLabels, Counter>::default();
    let injected = Family::<FaultLabels, Counter>::default();
    for (id, fault) in faults.iter() {
        let status = fault.status(id);
        let labels = FaultLabels {
            id: id.to_string(),
            kind: status.kind,
            target: status.target,
        };
        matched.get_or_create(&labels).inc_by(status.matched);
        injected.get_or_create(&labels).inc_by(status.injected);
    }
    let active = Gauge::<i64>::default();
    active.set(faults.len() as i64);
    let up = Gauge::<i64>::default();
    up.set(1);

    let mut registry = Registry::with_prefix("chaos");
    registry.register(
        "fault_matched",
        "Calls (packets) from the target that matched the fault",
        matched,
    );
    registry.register(
        "fault_injected",
        "Calls the fault failed, signalled or delayed, packets it affected (would have, in a dry run)",
        injected,
    );
    registry.register("faults_active", "Faults the daemon has attached", active);
    registry.register("up", "1 while the daemon runs", up);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}
