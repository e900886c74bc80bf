//! Whole experiments run by `chaos run` against a real HTTP service in a target cgroup: its
//! `/health` connects to a backend, and the experiment's fault refuses those connects. The
//! fault uses the cgroup sock_addr hooks, so these run on the host and in the VM tier.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use chaos_tests::{service::HttpService, *};
use serde_json::Value;

/// The experiment the tests run; `duration` of the fault and the pause after the method's
/// probes vary.
fn experiment(duration: &str, pause: f64) -> String {
    format!(
        r#"title: the service recovers once its backend accepts connections again
description: connect() from the service's cgroup fails with ECONNREFUSED for a while.
tags: [test]
configuration:
  port: {{type: env, key: EXP_PORT, env_var_type: int}}
  cgroup: {{type: env, key: EXP_CGROUP}}
  backend: {{type: env, key: EXP_BACKEND}}
  workload: {{type: env, key: EXP_WORKLOAD}}
  health_url: "http://127.0.0.1:${{port}}/health"
steady-state-hypothesis:
  title: health answers 200 and says ok
  probes:
    - type: probe
      name: health
      tolerance: 200
      provider: {{type: http, url: "${{health_url}}", timeout: 5}}
    - type: probe
      name: health-body
      tolerance: {{type: jsonpath, target: body, path: "$.status", expect: ok}}
      provider: {{type: http, url: "${{health_url}}", timeout: 5}}
method:
  - type: action
    name: refuse-backend
    provider:
      type: chaos
      func: syscall
      arguments:
        syscalls: [connect]
        errno: ECONNREFUSED
        duration: {duration}
        target: {{cgroup: "${{cgroup}}"}}
  - ref: health
  - type: probe
    name: outsider-connects
    provider:
      type: process
      path: "${{workload}}"
      arguments: ["--count", "3", "connect", "${{backend}}"]
    pauses: {{after: {pause}}}
rollbacks:
  - type: action
    name: rollback-runs
    provider: {{type: process, path: "true"}}
"#
    )
}

fn chaos_run(service: &HttpService, file: &Path, journal: &Path) -> Command {
    let mut cmd = Command::new(chaos_bin());
    cmd.args([
        "run",
        file.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ])
    .env("EXP_PORT", service.port.to_string())
    .env("EXP_CGROUP", &service.cgroup.path)
    .env("EXP_BACKEND", &service.backend)
    .env("EXP_WORKLOAD", workload_bin())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

fn run_to_end(service: &HttpService, name: &str, yaml: &str) -> (ExitStatus, String, Value) {
    run_to_end_with(service, name, yaml, &[])
}

fn run_to_end_with(
    service: &HttpService,
    name: &str,
    yaml: &str,
    extra: &[&str],
) -> (ExitStatus, String, Value) {
    let file = scratch(&format!("{name}.yaml"));
    fs::write(&file, yaml).unwrap();
    let journal = scratch(&format!("{name}-journal.json"));
    let out = chaos_run(service, &file, &journal)
        .args(extra)
        .output()
        .expect("chaos run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let journal: Value = serde_json::from_str(
        &fs::read_to_string(&journal).unwrap_or_else(|e| panic!("no journal ({e}): {stderr}")),
    )
    .expect("journal JSON");
    (out.status, stderr, journal)
}

/// The last counters of fault `i`: (matched, injected).
fn final_counts(journal: &Value, i: usize) -> (u64, u64) {
    let samples = journal["faults"][i]["counters"]
        .as_array()
        .expect("counters");
    let last = &samples.last().expect("at least one sample")["counters"][0];
    (
        last["matched"].as_u64().unwrap(),
        last["injected"].as_u64().unwrap(),
    )
}

fn activity<'j>(journal: &'j Value, name: &str) -> &'j Value {
    journal["run"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["activity"]["name"] == name)
        .unwrap_or_else(|| panic!("no run of {name} in {journal:#}"))
}

/// The outsider's connects all succeeded while the fault was on.
fn assert_outsider_untouched(journal: &Value) {
    let out = &activity(journal, "outsider-connects")["output"];
    assert_eq!(out["status"], 0, "{out}");
    let result = WorkloadResult::parse(out["stdout"].as_str().unwrap());
    assert_eq!(
        (result.ok, result.failed()),
        (3, 0),
        "outside the target: {result:?}"
    );
}

#[test]
fn experiment_completes_when_the_service_recovers() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-complete");
    // Long enough that loading the programs on a busy machine does not use it up.
    let (status, stderr, journal) = run_to_end(&service, "complete", &experiment("3s", 4.0));
    assert_eq!(status.code(), Some(0), "{stderr}\n{journal:#}");
    assert_eq!(journal["status"], "completed");
    assert_eq!(journal["deviated"], false);
    assert_eq!(journal["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(journal["steady_states"]["after"]["steady_state_met"], true);
    // While the fault was on, the service's connects to its backend were refused.
    let during = &activity(&journal, "health")["output"];
    assert_eq!(during["status"], 503, "{during}");
    assert!(
        during["body"]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{during}"
    );
    assert_outsider_untouched(&journal);
    let (matched, injected) = final_counts(&journal, 0);
    assert!(
        matched >= 1 && injected == matched,
        "counters: {:#}",
        journal["faults"]
    );
    // The journal keeps the fault's first events and counts the rest: every injection.
    let fault = &journal["faults"][0];
    let events = fault["events"].as_array().expect("events in the journal");
    let more = fault["more_events"].as_u64().unwrap_or(0);
    assert_eq!(events.len() as u64 + more, injected, "{fault:#}");
    assert!(events.len() <= 100);
    for event in events {
        assert_eq!(event["call"], "connect", "{event}");
        assert_eq!(event["errno"], "ECONNREFUSED", "{event}");
    }
    assert_eq!(journal["rollbacks"][0]["status"], "succeeded");
    assert_eq!(service.health(), 200);
    assert_nothing_left();
}

#[test]
fn experiment_deviates_when_the_fault_breaks_the_hypothesis() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-deviate");
    let (status, stderr, journal) = run_to_end(&service, "deviate", &experiment("10m", 0.0));
    assert_eq!(status.code(), Some(1), "{stderr}\n{journal:#}");
    assert_eq!(journal["status"], "completed");
    assert_eq!(journal["deviated"], true);
    assert_eq!(journal["steady_states"]["before"]["steady_state_met"], true);
    let after = &journal["steady_states"]["after"];
    assert_eq!(after["steady_state_met"], false, "{after:#}");
    assert_eq!(after["probes"][0]["output"]["status"], 503);
    assert_eq!(after["probes"][0]["tolerance_met"], false);
    assert_outsider_untouched(&journal);
    let (matched, injected) = final_counts(&journal, 0);
    // The method's probe and the first steady-state probe after it were refused (as in Chaos
    // Toolkit, the first probe out of tolerance ends the check).
    assert!(
        injected >= 2 && injected == matched,
        "counters: {:#}",
        journal["faults"]
    );
    // Default rollback strategy: played after a deviation.
    assert_eq!(journal["rollbacks"][0]["status"], "succeeded");
    // The fault went with the experiment.
    assert_eq!(service.health(), 200);
    assert_nothing_left();
}

#[test]
fn dry_run_counts_what_the_fault_would_fail_and_fails_nothing() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-dry");
    let (status, stderr, journal) =
        run_to_end_with(&service, "dry", &experiment("10m", 0.0), &["--dry-run"]);
    assert_eq!(status.code(), Some(0), "{stderr}\n{journal:#}");
    assert_eq!(journal["status"], "completed");
    assert_eq!(activity(&journal, "health")["output"]["status"], 200);
    assert!(
        journal["faults"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("--dry-run")
    );
    let (matched, injected) = final_counts(&journal, 0);
    assert!(
        injected >= 3 && injected == matched,
        "counters: {:#}",
        journal["faults"]
    );
    assert_nothing_left();
}

#[test]
fn interrupted_experiment_removes_its_fault_even_on_a_second_ctrl_c() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-interrupt");
    let file = scratch("interrupt.yaml");
    fs::write(&file, experiment("10m", 60.0)).unwrap();
    let journal_path: PathBuf = scratch("interrupt-journal.json");
    let mut child = chaos_run(&service, &file, &journal_path).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Mid-method: the fault is on and the 60 s pause after the probes has begun.
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "chaos ended early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("probe outsider-connects") {
            break;
        }
    }
    thread::sleep(Duration::from_millis(500));
    assert_eq!(service.health(), 503, "the fault should be on: {seen}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    let journal: Value = serde_json::from_str(&fs::read_to_string(&journal_path).unwrap()).unwrap();
    assert_eq!(journal["status"], "aborted", "{journal:#}");
    assert!(journal["steady_states"]["after"].is_null());
    // Default rollback strategy: not played after an interruption.
    assert_eq!(journal["rollbacks"], Value::Array(vec![]));
    let (matched, injected) = final_counts(&journal, 0);
    assert!(
        injected >= 1 && injected == matched,
        "counters: {:#}",
        journal["faults"]
    );
    assert_eq!(service.health(), 200);
    assert_nothing_left();
}

#[test]
fn invalid_experiment_injects_nothing_and_says_where() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-invalid");
    let yaml = experiment("1s", 0.0).replace("errno: ECONNREFUSED", "errno: ECONNREFUZED");
    let file = scratch("invalid.yaml");
    fs::write(&file, &yaml).unwrap();
    let journal = scratch("invalid-journal.json");
    let out = chaos_run(&service, &file, &journal).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Located at the value, named by its path through the spec's fields.
    let (line, text) = yaml
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("ECONNREFUZED"))
        .unwrap();
    let at = format!(
        "{}:{}:{}: method[0].provider.arguments.errno:",
        file.display(),
        line + 1,
        text.find("ECONNREFUZED").unwrap() + 1
    );
    assert!(
        stderr.contains(&at) && stderr.contains("`ECONNREFUZED` is not valid"),
        "{stderr}"
    );
    assert!(!journal.exists(), "an invalid experiment must not run");
    assert_eq!(service.health(), 200);
    assert_nothing_left();
}

#[test]
fn network_faults_run_in_experiments_too() {
    if !need_root() {
        return;
    }
    let service = HttpService::start("exp-net");
    let backend_port = service.backend.rsplit(':').next().unwrap().to_owned();
    // Every packet between the service and its backend is dropped: its connects time out.
    let yaml = experiment("10m", 0.0).replace(
        "      func: syscall\n      arguments:\n        syscalls: [connect]\n        errno: ECONNREFUSED\n        duration: 10m\n",
        &format!(
            "      func: net-drop\n      arguments:\n        filter: {{protocol: tcp, port: {backend_port}, direction: both}}\n"
        ),
    );
    assert!(yaml.contains("net-drop"), "{yaml}");
    let (status, stderr, journal) = run_to_end(&service, "net", &yaml);
    assert_eq!(status.code(), Some(1), "{stderr}\n{journal:#}");
    assert_eq!(journal["status"], "completed", "{journal:#}");
    assert_eq!(journal["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(journal["steady_states"]["after"]["steady_state_met"], false);
    assert_outsider_untouched(&journal);
    let (seen, affected) = final_counts(&journal, 0);
    assert!(
        affected >= 1 && affected == seen,
        "counters: {:#}",
        journal["faults"]
    );
    assert_eq!(service.health(), 200);
    assert_nothing_left();
}

#[test]
fn a_fault_whose_target_cgroup_goes_away_is_ended_and_logged_with_its_counters() {
    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("exp-gone");
    let target = cgroup.path.to_str().unwrap();
    let workload = workload_bin();
    // The method makes two calls in the target, then removes the cgroup as a runtime would,
    // then waits: the fault must end in that wait, not with the experiment.
    let yaml = format!(
        r#"title: the target goes away
method:
  - type: action
    name: refuse-sockets
    provider:
      type: chaos
      func: syscall
      arguments: {{syscall: socket, errno: EMFILE, duration: 10m}}
      target: {{cgroup: "{target}"}}
  - type: action
    name: sockets-in-target
    provider:
      type: process
      path: sh
      arguments: ["-c", "echo $$ > {target}/cgroup.procs && exec {workload} --count 2 socket"]
  - type: action
    name: target-removed
    provider: {{type: process, path: rmdir, arguments: ["{target}"]}}
    pauses: {{after: 3}}
"#,
        workload = workload.display()
    );
    let file = scratch("gone.yaml");
    fs::write(&file, yaml).unwrap();
    let journal_path = scratch("gone-journal.json");
    let out = Command::new(chaos_bin())
        .args(["run", file.to_str().unwrap(), "--journal"])
        .arg(&journal_path)
        .output()
        .expect("chaos run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let journal: Value = serde_json::from_str(&fs::read_to_string(&journal_path).unwrap()).unwrap();
    let sockets = &activity(&journal, "sockets-in-target")["output"];
    let result = WorkloadResult::parse(sockets["stdout"].as_str().unwrap());
    assert_eq!(result.failed_with("EMFILE"), 2, "{result:?}");
    assert_eq!(activity(&journal, "target-removed")["status"], "succeeded");
    assert!(
        stderr.contains("fault refuse-sockets: its target cgroup was removed, removed"),
        "{stderr}"
    );
    assert_eq!(final_counts(&journal, 0), (2, 2), "{journal:#}");
    assert_nothing_left();
}
