//! The experiments in examples/ run as shipped (only the demo service's port and cgroup are
//! moved out of the way through their env configuration entries). They need python3 for the
//! demo service, which the VM tier's initramfs lacks: they run on the host tier.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use chaos_tests::*;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn python3() -> bool {
    Command::new("python3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

fn run_example(name: &str) -> (Option<i32>, String, Value) {
    let port = free_port();
    let dir = examples_dir();
    let file = dir.join(name);
    let validate = Command::new(chaos_bin())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let journal = scratch(&format!("{name}.journal.json"));
    let out = Command::new(chaos_bin())
        .arg("run")
        .arg(&file)
        .arg("--journal")
        .arg(&journal)
        .env("CHAOS_DEMO", dir.join("demo_service.py"))
        .env("CHAOS_DEMO_PORT", port.to_string())
        .env(
            "CHAOS_DEMO_CGROUP",
            format!("chaos/example-{}", std::process::id()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("no journal ({e}): {stderr}")),
    )
    .unwrap();
    (out.status.code(), stderr, journal)
}

fn injected(journal: &Value) -> u64 {
    journal["faults"][0]["counters"]
        .as_array()
        .and_then(|s| s.last())
        .map_or(0, |s| s["counters"][0]["injected"].as_u64().unwrap_or(0))
}

fn ready() -> bool {
    if !need_root() {
        return false;
    }
    if !python3() {
        // The examples' demo service is python; the host tier runs them.
        if host_only("python3 for the examples' demo service") {
            return false;
        }
        skip("python3 is not installed (the examples' demo service needs it)");
        return false;
    }
    true
}

#[test]
fn example_backend_refused_recovers_completes() {
    if !ready() {
        return;
    }
    let (code, stderr, journal) = run_example("backend-refused-recovers.yaml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(journal["status"], "completed");
    let during = journal["run"][1]["output"]["status"].clone();
    assert_eq!(during, 503, "{stderr}");
    assert!(injected(&journal) >= 1, "{:#}", journal["faults"]);
    assert_nothing_left();
}

#[test]
fn example_backend_refused_deviates_deviates() {
    if !ready() {
        return;
    }
    let (code, stderr, journal) = run_example("backend-refused-deviates.json");
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(journal["status"], "completed");
    assert!(injected(&journal) >= 1, "{:#}", journal["faults"]);
    assert_eq!(journal["rollbacks"][0]["status"], "succeeded");
    assert_nothing_left();
}

#[test]
fn example_flaky_backend_continuous_completes() {
    if !ready() {
        return;
    }
    let (code, stderr, journal) = run_example("flaky-backend-continuous.yaml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(journal["status"], "completed");
    assert!(
        journal["steady_states"]["during"].as_array().unwrap().len() >= 2,
        "{stderr}"
    );
    assert_eq!(journal["run"][1]["output"], true, "{stderr}");
    assert_nothing_left();
}
