//! An experiment file in YAML: parsed with node locations and validated, as `chaos validate`,
//! `chaos run` and the daemon's `POST /experiments` do. Errors are fine; panics are not.
#![no_main]
use chaos::experiment::{Experiment, document::Document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(doc) = Document::parse("fuzz.yaml", text, false) {
        let _ = Experiment::from_document(&doc, &|key| Some(format!("env-{key}")));
    }
});
