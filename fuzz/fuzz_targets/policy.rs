//! The daemon's policy file: parsed and checked, errors placed at a line and column.
#![no_main]
use chaos::daemon::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let gid_of = |name: &str| (name == "loadtest").then_some(5000);
    if let Err(err) = Policy::parse("fuzz.toml", text, &gid_of) {
        assert!(err.line >= 1 && err.column >= 1, "{err}");
    }
});
