//! Durations as the CLI, the daemon and experiments read them (humantime), then as the
//! delay and jitter of latency and packet-delay faults in an experiment.
#![no_main]
use chaos::experiment::fault::from_provider;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(d) = humantime::parse_duration(text) {
        let _ = humantime::format_duration(d).to_string();
    }
    let (delay, jitter) = text.split_once(',').unwrap_or((text, "0s"));
    for (func, extra) in [
        (
            "latency",
            serde_json::json!({"syscall": "getppid", "delay": delay, "jitter": jitter, "duration": delay}),
        ),
        (
            "net-delay",
            serde_json::json!({"delay": delay, "jitter": jitter}),
        ),
    ] {
        let provider = serde_json::json!({
            "func": func, "arguments": extra, "target": {"cgroup": "/fuzz"}
        });
        if let Ok(spec) = from_provider(provider.as_object().unwrap()) {
            let _ = spec.check();
        }
    }
});
