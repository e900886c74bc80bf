//! A `chaos` provider of an experiment (the JSON the daemon receives in an experiment): checked
//! into `chaos inject` arguments and parsed by the CLI's parser, as the runner does before it
//! resolves the target. Every fault kind's options (errnos, durations, CIDRs, signals, rates)
//! pass through here.
#![no_main]
use chaos::experiment::fault::FaultSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(serde_json::Value::Object(provider)) = serde_json::from_str(text) else {
        return;
    };
    if let Ok(spec) = FaultSpec::from_provider(&provider) {
        let _ = spec.command_line();
    }
});
