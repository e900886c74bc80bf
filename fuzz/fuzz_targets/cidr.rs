//! CIDRs (`--cidr`, packet peers, DNS servers): whatever parses, shows and parses again to
//! the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(cidr) = text.parse::<chaos::fault::Cidr>() {
        let shown = cidr.to_string();
        assert_eq!(shown.parse::<chaos::fault::Cidr>().ok(), Some(cidr), "{text:?} shown as {shown:?}");
    }
});
