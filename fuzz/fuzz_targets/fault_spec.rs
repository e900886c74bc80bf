//! The fault spec as the daemon's `POST /faults` receives it, and a `chaos` provider of an
//! experiment (the JSON the daemon receives in an experiment): read and checked as the engine
//! does before it resolves the target. Every fault kind's fields (errnos, durations, CIDRs,
//! signals, rates, schedules) pass through here.
#![no_main]
use chaos::{experiment::fault::from_provider, spec::FaultSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if let Ok(spec) = FaultSpec::parse(value.clone()) {
        let _ = spec.check();
        let _ = spec.command_line();
    }
    if let serde_json::Value::Object(provider) = value
        && let Ok(spec) = from_provider(&provider)
    {
        let _ = spec.check();
    }
});
