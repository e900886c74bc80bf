use super::*;

fn load(yaml: &str) -> Result<Experiment, Invalid> {
    let doc = Document::parse("e.yaml", yaml, false)?;
    Experiment::from_document(&doc, &|k| (k == "PORT").then(|| "8080".to_owned()))
}

const FULL: &str = "\
title: web survives refused backend connections
description: d
tags: [web]
configuration:
  port: {type: env, key: PORT, env_var_type: int}
  cgroup: /chaos/web
steady-state-hypothesis:
  title: healthy
  probes:
    - type: probe
      name: health
      tolerance: 200
      provider: {type: http, url: 'http://127.0.0.1:${port}/health', timeout: 2}
method:
  - type: action
    name: refuse
    provider:
      type: chaos
      func: syscall
      arguments: {syscall: connect, errno: ECONNREFUSED, duration: 5s}
      target: {cgroup: '${cgroup}'}
    pauses: {after: 1.5}
  - ref: health
  - type: probe
    name: listing
    background: true
    provider: {type: process, path: ls, arguments: -l /}
rollbacks: []
runtime:
  hypothesis: {strategy: continuously, frequency: 0.5, fail_fast: true}
  rollbacks: {strategy: always}
";

#[test]
fn process_arguments_split_as_shell_words() {
    // Chaos Toolkit splits a string with shlex.split: quotes group and are removed.
    let doc = serde_json::json!({"title": "t", "description": "d", "method": [{
            "type": "action", "name": "echo", "provider": {"type": "process", "path": "echo",
            "arguments": r#"{"a": 3} 'b c' d\ e"#}}]})
    .to_string();
    let doc = doc.as_str();
    let e = load(doc).unwrap();
    let Provider::Process(p) = &e.method[0].provider else {
        panic!()
    };
    // `echo` then prints `{a: 3} b c d e`, as under Chaos Toolkit.
    assert_eq!(p.arguments, ["{a:", "3}", "b c", "d e"]);
}

#[test]
fn a_full_experiment_loads_with_substitution() {
    let e = load(FULL).unwrap();
    assert_eq!(e.title, "web survives refused backend connections");
    assert_eq!(e.hypothesis.len(), 1);
    let Provider::Http(h) = &e.hypothesis[0].provider else {
        panic!()
    };
    assert_eq!(h.url, "http://127.0.0.1:8080/health");
    assert_eq!(h.timeout, Duration::from_secs(2));
    assert_eq!(e.method.len(), 3);
    let Provider::Chaos(f) = &e.method[0].provider else {
        panic!()
    };
    assert!(
        f.command_line().contains("--cgroup /chaos/web"),
        "{}",
        f.command_line()
    );
    assert_eq!(e.method[0].pause_after, Duration::from_millis(1500));
    assert_eq!(e.method[1].name, "health");
    assert!(e.method[2].background);
    let Provider::Process(p) = &e.method[2].provider else {
        panic!()
    };
    assert_eq!(p.arguments, ["-l", "/"]);
    assert_eq!(e.runtime.strategy, HypothesisStrategy::Continuously);
    assert_eq!(e.runtime.frequency, Duration::from_millis(500));
    assert!(e.runtime.fail_fast);
    assert_eq!(e.runtime.rollbacks, RollbackStrategy::Always);
}

#[test]
fn every_problem_is_reported_with_location_path_value_and_what_is_allowed() {
    let bad = FULL
        .replace("tags: [web]", "tags: [web]\ntitel: typo")
        .replace("errno: ECONNREFUSED", "errno: ECONNREFUZED")
        .replace("strategy: always", "strategy: sometimes")
        .replace("type: process", "type: shell");
    let err = load(&bad).unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines.contains(&"e.yaml:4:1: titel: `titel`: unknown key; allowed here: version, title, description, tags, contributions, configuration, secrets, steady-state-hypothesis, method, rollbacks, runtime, controls, extensions"), "{text}");
    assert!(
            lines.iter().any(|l| l.starts_with("e.yaml:21:44: method[0].provider.arguments.errno: `\"ECONNREFUZED\"`: `ECONNREFUZED` is not valid")),
            "{text}"
        );
    assert!(
        lines.iter().any(|l| l.starts_with(
            "e.yaml:28:22: method[2].provider.type: `shell`: one of http, process, python, chaos"
        )),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("e.yaml:32:25: runtime.rollbacks.strategy: `sometimes`: one of default, always, never, deviated")), "{text}");
}

#[test]
fn required_fields_and_shapes() {
    let err = load("description: no title\n").unwrap_err().to_string();
    assert!(err.contains("title: missing"), "{err}");
    assert!(err.contains("method: missing"), "{err}");
    let err = load("title: t\nmethod:\n  - type: probe\n    name: p\n    provider: {type: http}\n    tolerance: 1\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("method[0].provider.url: missing"), "{err}");
    assert!(err.contains("method[0].tolerance: `tolerance`: a tolerance belongs to steady-state-hypothesis probes only"), "{err}");
    let err = load("title: t\nsteady-state-hypothesis:\n  title: h\n  probes:\n    - type: probe\n      name: p\n      provider: {type: process, path: 'true'}\n      tolerance: {type: regex, pattern: '('}\nmethod: []\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("e.yaml:8:41: steady-state-hypothesis.probes[0].tolerance.pattern: `(`: a regular expression"), "{err}");
    let err = load("title: t\nmethod:\n  - ref: nothing\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("method[0].ref: `nothing`"), "{err}");
}

#[test]
fn controls_are_refused_where_they_stand_never_ignored() {
    let yaml = "\
title: t
controls:
  - name: tracing
    provider: {type: python, module: chaostracing.control}
steady-state-hypothesis:
  title: ok
  controls: []
  probes:
    - type: probe
      name: p
      tolerance: 0
      provider: {type: process, path: 'true'}
method:
  - type: action
    name: a
    provider: {type: process, path: 'true'}
    controls: [{name: c, provider: {type: python, module: m}}]
";
    let err = load(yaml).unwrap_err().to_string();
    for (at, path) in [
        ("e.yaml:2:1", "controls"),
        ("e.yaml:7:3", "steady-state-hypothesis.controls"),
        ("e.yaml:17:5", "method[0].controls"),
    ] {
        let line = err
            .lines()
            .find(|l| l.starts_with(at))
            .unwrap_or_else(|| panic!("nothing at {at}: {err}"));
        assert!(
            line.contains(path) && line.contains("not run by chaos"),
            "{line}"
        );
    }
    let without: String = yaml
        .lines()
        .filter(|l| {
            !l.contains("controls") && !l.contains("tracing") && !l.contains("chaostracing")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(load(&without).is_ok(), "{without}");
}

#[test]
fn seconds_past_a_year_are_refused_not_a_panic() {
    // Found by the experiment_json fuzz target: Duration::from_secs_f64 panicked on it.
    for huge in ["166666666666666666666666665", "1e300", "31536001"] {
        let yaml = format!(
            "title: t\nmethod:\n  - type: action\n    name: a\n    provider: {{type: process, path: 'true', timeout: {huge}}}\n    pauses: {{after: {huge}}}\n"
        );
        let err = load(&yaml).unwrap_err().to_string();
        assert!(err.contains("method[0].provider.timeout"), "{err}");
        assert!(err.contains("method[0].pauses.after"), "{err}");
        assert!(err.contains("0 to 31536000 (a year)"), "{err}");
    }
    let ok = "title: t\nmethod:\n  - type: action\n    name: a\n    provider: {type: process, path: 'true', timeout: 31536000}\n";
    assert!(load(ok).is_ok());
}
