//! Signal names and numbers (`chaos inject signal --signal`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(signal) = text.parse::<chaos::fault::SignalNumber>() {
        let _ = format!("{signal:?}");
    }
});
