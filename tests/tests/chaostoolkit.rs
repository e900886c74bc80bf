//! Chaos Toolkit itself, from PyPI (pinned, in the venv scripts/setup makes), with this
//! repository's extension (`extensions/chaostoolkit`, module `chaosebpf`):
//!
//! - Chaos Toolkit's own `chaos run` injects a connect fault through the extension and the
//!   chaos daemon into a real HTTP service's cgroup; the steady state deviates as predicted,
//!   outsiders connect, a rollback stops the fault and the journal holds its counters.
//! - The same experiment files run under both runners (Chaos Toolkit's and `chaos run`)
//!   give the same journal status, per-activity status, outputs and `tolerance_met`, for
//!   every provider and tolerance kind both support (including a process provider whose
//!   arguments are one string, split as shell words).
//!
//! Host tier: the VM tier's guest has no Python (these tests say so and skip there).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use chaos_tests::{daemon::DaemonRun, service::HttpService, *};
use serde_json::{Value, json};

const CTK_VERSION: &str = "1.19.0";

/// The venv with Chaos Toolkit: `$CHAOS_CTK_VENV`, or where scripts/setup puts it.
fn ctk_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHAOS_CTK_VENV") {
        return dir.into();
    }
    let state = std::env::var_os("CHAOS_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share")
                })
                .join("chaos")
        });
    state.join(format!("chaostoolkit-{CTK_VERSION}"))
}

/// The venv's `chaos`, or None (skipped, saying why).
fn ctk() -> Option<PathBuf> {
    if host_only("python3 and Chaos Toolkit, which the VM guest lacks") {
        return None;
    }
    let chaos = ctk_venv().join("bin/chaos");
    if !chaos.exists() {
        skip(&format!(
            "no Chaos Toolkit at {} (scripts/setup installs chaostoolkit=={CTK_VERSION} there; \
             or set CHAOS_CTK_VENV)",
            chaos.display()
        ));
        return None;
    }
    Some(chaos)
}

fn extension_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../extensions/chaostoolkit")
}

/// Chaos Toolkit's `chaos run` on `file`, with the extension importable.
fn ctk_run(ctk: &Path, file: &Path, journal: &Path, extra_path: &Path) -> Output {
    let out = Command::new(ctk)
        .args(["--no-version-check", "--no-log-file", "run"])
        .args(["--rollback-strategy", "always", "--journal-path"])
        .arg(journal)
        .arg(file)
        .current_dir(file.parent().unwrap())
        .env("PYTHONPATH", join_paths(&[&extension_dir(), extra_path]))
        .env("PATH", path_with_venv())
        .output()
        .expect("running Chaos Toolkit");
    eprintln!("ctk: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("ctk: {}", String::from_utf8_lossy(&out.stdout));
    out
}

/// This repository's `chaos run` on `file` (standalone: no daemon).
fn our_run(file: &Path, journal: &Path, extra_path: &Path) -> Output {
    let out = Command::new(chaos_bin())
        .args([
            "run",
            "--standalone",
            "--rollback-strategy",
            "always",
            "--journal",
        ])
        .arg(journal)
        .arg(file)
        .current_dir(file.parent().unwrap())
        .env("PYTHONPATH", join_paths(&[&extension_dir(), extra_path]))
        .env("PATH", path_with_venv())
        .env("CHAOS_SOCKET", scratch("no-daemon.sock"))
        .output()
        .expect("running chaos run");
    eprintln!("chaos: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn join_paths(paths: &[&Path]) -> std::ffi::OsString {
    std::env::join_paths(paths).unwrap()
}

/// PATH with the venv's bin first, so that both runners' python activities use one Python.
fn path_with_venv() -> std::ffi::OsString {
    let mut paths = vec![ctk_venv().join("bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

fn activity<'j>(journal: &'j Value, name: &str) -> &'j Value {
    journal["run"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["activity"]["name"] == name)
        .unwrap_or_else(|| panic!("no activity {name} in the journal: {journal:#}"))
}

#[test]
fn chaos_toolkit_injects_through_the_extension_and_rolls_back() {
    let Some(ctk) = ctk() else { return };
    if !need_root() {
        return;
    }
    let service = HttpService::start("ctk");
    let daemon = DaemonRun::start("ctk", false, &[]);
    assert_eq!(service.health(), 200);
    let health = json!({"type": "http", "url": format!("http://127.0.0.1:{}/health", service.port), "timeout": 5});
    let experiment = json!({
        "version": "1.0.0",
        "title": "the web service survives refused backend connections",
        "description": "connect() from the service's cgroup fails with ECONNREFUSED",
        "configuration": {"chaos_socket": daemon.socket},
        "steady-state-hypothesis": {
            "title": "the service is healthy",
            "probes": [{"type": "probe", "name": "health", "tolerance": 200, "provider": health}]
        },
        "method": [
            {"type": "action", "name": "refuse-backend-connects", "provider": {
                "type": "python", "module": "chaosebpf.actions", "func": "inject",
                "arguments": {
                    "kind": "syscall", "syscalls": ["connect"], "errno": "ECONNREFUSED",
                    "target": {"cgroup": service.cgroup.path}, "duration": "2m"
                }
            }},
            {"type": "probe", "name": "health-under-fault", "provider": health},
            {"type": "probe", "name": "outsider-connects", "provider": {
                "type": "process", "path": workload_bin(),
                "arguments": ["--count", "3", "connect", service.backend]
            }},
            {"type": "probe", "name": "fault-counters", "provider": {
                "type": "python", "module": "chaosebpf.probes", "func": "counters"
            }}
        ],
        "rollbacks": [
            {"type": "action", "name": "stop-fault", "provider": {
                "type": "python", "module": "chaosebpf.actions", "func": "stop"
            }}
        ]
    });
    let file = scratch("ctk-experiment.json");
    fs::write(&file, serde_json::to_string_pretty(&experiment).unwrap()).unwrap();
    let journal_path = scratch("ctk-journal.json");
    let out = ctk_run(&ctk, &file, &journal_path, &scratch("ctk-py"));
    let journal: Value = serde_json::from_str(&fs::read_to_string(&journal_path).unwrap())
        .unwrap_or_else(|e| panic!("no journal ({e}): {out:?}"));

    // As predicted: the service's backend connects are refused, so it is unhealthy.
    assert_eq!(journal["status"], "completed", "{journal:#}");
    assert_eq!(journal["deviated"], true);
    assert_eq!(journal["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(journal["steady_states"]["after"]["steady_state_met"], false);
    let id = activity(&journal, "refuse-backend-connects")["output"]
        .as_u64()
        .unwrap_or_else(|| panic!("inject returns the fault id: {journal:#}"));
    let under = activity(&journal, "health-under-fault")["output"]["status"]
        .as_u64()
        .unwrap();
    assert_ne!(under, 200, "{journal:#}");
    // Outsiders connect to the same backend.
    let outsider = activity(&journal, "outsider-connects");
    assert_eq!(outsider["output"]["status"], 0, "{outsider:#}");
    let result = WorkloadResult::parse(outsider["output"]["stdout"].as_str().unwrap());
    assert_eq!((result.ok, result.failed()), (3, 0), "{outsider:#}");
    // The live counters, then the last ones from the rollback, are in the journal.
    let counters = &activity(&journal, "fault-counters")["output"];
    assert_eq!(counters["id"], id);
    assert_eq!(counters["kind"], "syscall");
    assert!(counters["injected"].as_u64().unwrap() >= 1, "{counters:#}");
    let rollback = &journal["rollbacks"][0];
    assert_eq!(rollback["status"], "succeeded", "{rollback:#}");
    let last = &rollback["output"][0];
    assert_eq!(last["id"], id);
    assert!(
        last["injected"].as_u64().unwrap() >= counters["injected"].as_u64().unwrap(),
        "{rollback:#}"
    );
    assert_eq!(last["counters"][0]["rule"], "connect");
    // Rolled back: the fault is gone and the service healthy again.
    assert!(daemon.client().list().unwrap().is_empty());
    assert_eq!(service.health(), 200);
    drop(daemon);
    drop(service);
    assert_nothing_left();
}

#[test]
fn a_bad_field_is_refused_by_its_path_through_the_extension() {
    let Some(ctk) = ctk() else { return };
    if !need_root() {
        return;
    }
    let daemon = DaemonRun::start("ctk-bad", false, &[]);
    let cgroup = TestCgroup::new("ctk-bad");
    let python = ctk.with_file_name("python");
    let script = format!(
        "import chaosebpf.actions as a\n\
         try:\n    a.inject(kind='syscall', syscalls=['connect'], errno='EIO', \
         schedule={{'probability': 1.5}}, target={{'cgroup': {:?}}}, \
         configuration={{'chaos_socket': {:?}}})\n\
         except Exception as e:\n    print(type(e).__name__, e)\n",
        cgroup.path.display().to_string(),
        daemon.socket.display().to_string()
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .env("PYTHONPATH", extension_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ChaosDaemonError")
            && text.contains("400")
            && text.contains("schedule.probability: 1.5 is not in (0, 1]"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(daemon.client().list().unwrap().is_empty());
    // `chaos discover` lists the activities from the module's discover().
    let out = Command::new(ctk.with_file_name("python"))
        .args([
            "-c",
            "import json, chaosebpf; print(json.dumps(chaosebpf.discover(False)))",
        ])
        .env("PYTHONPATH", extension_dir())
        .output()
        .unwrap();
    let discovery: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<(&str, &str)> = discovery["activities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["type"].as_str().unwrap(), a["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("action", "inject"),
            ("action", "stop"),
            ("action", "stop_all"),
            ("probe", "counters"),
            ("probe", "faults")
        ]
    );
}

/// What both runners must agree on in a journal: its status, and per activity (in order) its
/// name, status, output (HTTP: status and body) and `tolerance_met`.
fn comparable(journal: &Value) -> Value {
    let runs = |runs: &Value| -> Value {
        runs.as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        let mut output = r["output"].clone();
                        if let Some(headers) = output.get_mut("headers") {
                            // Dates and server names differ; the rest is compared.
                            *headers = Value::Null;
                        }
                        json!({
                            "name": r["activity"]["name"],
                            "status": r["status"],
                            "output": output,
                            "tolerance_met": r.get("tolerance_met").cloned().unwrap_or(Value::Null),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "status": journal["status"],
        "deviated": journal["deviated"],
        "before": runs(&journal["steady_states"]["before"]["probes"]),
        "after": runs(&journal["steady_states"]["after"]["probes"]),
        "run": runs(&journal["run"]),
        "rollbacks": runs(&journal["rollbacks"]),
    })
}

/// The experiments both runners run: every provider (process, http, python) and tolerance
/// kind (exact, list, range, regex, jsonpath) both support, completing and deviating.
fn side_by_side_experiments(dir: &Path, http_port: u16) -> Vec<(&'static str, Value)> {
    let marker = dir.join("marker");
    fs::write(&marker, "before\n").unwrap();
    let marker = marker.display().to_string();
    let url = format!("http://127.0.0.1:{http_port}/health");
    let hypothesis = json!({
        "title": "all is as before",
        "probes": [
            {"type": "probe", "name": "exit-status", "tolerance": 0,
             "provider": {"type": "process", "path": "true"}},
            {"type": "probe", "name": "list-of-values", "tolerance": [0, 1],
             "provider": {"type": "process", "path": "false"}},
            {"type": "probe", "name": "range", "tolerance": {"type": "range", "range": [0, 2], "target": "status"},
             "provider": {"type": "process", "path": "sh", "arguments": ["-c", "exit 2"]}},
            {"type": "probe", "name": "marker-says-before",
             "tolerance": {"type": "regex", "pattern": "^before", "target": "stdout"},
             "provider": {"type": "process", "path": "cat", "arguments": marker}},
            {"type": "probe", "name": "http-status", "tolerance": 200,
             "provider": {"type": "http", "url": url, "timeout": 5}},
            {"type": "probe", "name": "python-jsonpath",
             "tolerance": {"type": "jsonpath", "path": "$.answer", "expect": 42},
             "provider": {"type": "python", "module": "sbs_probes", "func": "answer", "arguments": {"n": 42}}},
            {"type": "probe", "name": "python-bool", "tolerance": true,
             "provider": {"type": "python", "module": "sbs_probes", "func": "is_even", "arguments": {"n": 4}}}
        ]
    });
    let method_ok = json!([
        {"type": "action", "name": "shell-words",
         "provider": {"type": "process", "path": "echo", "arguments": "{\"a\": 3} 'b  c' d\\ e"}},
        {"type": "probe", "name": "python-output",
         "provider": {"type": "python", "module": "sbs_probes", "func": "answer", "arguments": {"n": 7}}},
        {"type": "probe", "name": "failing-process",
         "provider": {"type": "process", "path": "sh", "arguments": "-c 'echo out; echo err >&2; exit 3'"}}
    ]);
    let method_deviate = json!([
        {"type": "action", "name": "change-marker",
         "provider": {"type": "process", "path": "sh", "arguments": format!("-c 'echo after > {marker}'")}}
    ]);
    let rollbacks = json!([
        {"type": "action", "name": "restore-marker",
         "provider": {"type": "process", "path": "sh", "arguments": format!("-c 'echo before > {marker}'")}}
    ]);
    let experiment = |title: &str, method: &Value| {
        json!({
            "version": "1.0.0",
            "title": title,
            "description": "run by Chaos Toolkit and by chaos, journals compared",
            "steady-state-hypothesis": hypothesis,
            "method": method,
            "rollbacks": rollbacks,
        })
    };
    vec![
        ("completes", experiment("everything holds", &method_ok)),
        (
            "deviates",
            experiment("the marker changes", &method_deviate),
        ),
    ]
}

#[test]
fn the_same_experiments_give_the_same_journals_under_both_runners() {
    let Some(ctk) = ctk() else { return };
    // A plain HTTP server (the service without a backend fault), outside every target.
    let service = HttpService::start("ctk-sbs");
    let dir = scratch("sbs").with_extension("d");
    fs::create_dir_all(&dir).unwrap();
    let py = dir.join("py");
    fs::create_dir_all(&py).unwrap();
    fs::write(
        py.join("sbs_probes.py"),
        "def answer(n: int) -> dict:\n    return {\"answer\": n, \"list\": [1, 2]}\n\n\
         def is_even(n: int) -> bool:\n    return n % 2 == 0\n",
    )
    .unwrap();
    for (name, experiment) in side_by_side_experiments(&dir, service.port) {
        let file = dir.join(format!("{name}.json"));
        fs::write(&file, serde_json::to_string_pretty(&experiment).unwrap()).unwrap();
        let theirs_path = dir.join(format!("{name}-ctk-journal.json"));
        let ours_path = dir.join(format!("{name}-chaos-journal.json"));
        let out = ctk_run(&ctk, &file, &theirs_path, &py);
        let theirs: Value = serde_json::from_str(&fs::read_to_string(&theirs_path).unwrap())
            .unwrap_or_else(|e| panic!("no Chaos Toolkit journal ({e}): {out:?}"));
        let out = our_run(&file, &ours_path, &py);
        let ours: Value = serde_json::from_str(&fs::read_to_string(&ours_path).unwrap())
            .unwrap_or_else(|e| panic!("no chaos journal ({e}): {out:?}"));
        let (theirs, ours) = (comparable(&theirs), comparable(&ours));
        assert_eq!(
            ours,
            theirs,
            "{name}: chaos run (left) and Chaos Toolkit (right) disagree:\n{}\n---\n{}",
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
        // Chaos Toolkit writes a deviation as completed, with deviated: true.
        assert_eq!(theirs["status"], "completed");
        assert_eq!(theirs["deviated"], name == "deviates");
        // The shell-words case: quotes group words and are removed, as shlex.split does.
        if name == "completes" {
            assert_eq!(
                activity(&ours_journal(&ours_path), "shell-words")["output"]["stdout"],
                "{a: 3} b  c d e\n"
            );
        }
    }
}

fn ours_journal(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}
