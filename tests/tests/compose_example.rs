//! examples/compose/run, the one-command Compose example, runs to its verdict: Redis under
//! load, chaos as a service of the project dropping half of Redis's packets for 5 seconds,
//! the steady state (PING) holding before and after, and the counters printed. Host-only by
//! nature (a Docker engine and docker-compose).
use std::{path::Path, process::Command};

use chaos_tests::{docker::*, *};

#[test]
fn the_compose_example_runs_to_its_verdict() {
    if host_only("a Docker engine and docker-compose") || !need_root() {
        return;
    }
    if let Err(why) = docker_engine() {
        return skip(&format!("no Docker engine reachable: {why}"));
    }
    for tool in [
        "docker-compose",
        "redis-server",
        "redis-benchmark",
        "python3",
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return skip(&format!(
                "{tool} is not installed (scripts/setup installs it)"
            ));
        }
    }
    let project = format!("chaostest{}example", std::process::id());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/compose/run");
    let out = Command::new(script)
        .env("CHAOS_BIN", chaos_bin())
        .env("CHAOS_EXAMPLE_PROJECT", &project)
        .output()
        .expect("examples/compose/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run: {stdout}\n{stderr}");
    assert!(
        stdout.contains("verdict: completed (deviated: false)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("--container redis --compose-project {project}")),
        "{stdout}"
    );
    let counters = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("counters: "))
        .unwrap_or_else(|| panic!("no counters: {stdout}"));
    let sample: serde_json::Value = serde_json::from_str(counters).unwrap();
    let rule = &sample["counters"][0];
    let (matched, injected) = (
        rule["matched"].as_u64().unwrap(),
        rule["injected"].as_u64().unwrap(),
    );
    // Redis under load for 5 s sends and receives thousands of packets; about half of those
    // seen while the fault was on are dropped (the kernel stops at the deadline).
    assert!(injected > 20 && matched > injected, "{sample}");

    assert_nothing_left();
    let project_filter = format!("label=com.docker.compose.project={project}");
    assert_eq!(
        docker(&["ps", "--all", "--quiet", "--filter", &project_filter]).unwrap(),
        "",
        "containers left behind"
    );
    let image_filter = format!("label=chaos-example={project}");
    assert_eq!(
        docker(&["images", "--quiet", "--filter", &image_filter]).unwrap(),
        "",
        "images left behind"
    );
}
