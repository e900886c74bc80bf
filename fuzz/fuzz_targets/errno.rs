//! Errno names and numbers (`--errno`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(errno) = text.parse::<chaos::fault::Errno>() {
        let _ = format!("{errno:?}");
    }
});
