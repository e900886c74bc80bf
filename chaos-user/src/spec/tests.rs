use serde_json::json;

use super::*;

fn parse(v: Value) -> Result<FaultSpec, String> {
    FaultSpec::parse(v).map_err(|e| e.to_string())
}

fn syscall(extra: Value) -> Value {
    let mut v = json!({"kind": "syscall", "syscalls": ["connect"], "errno": "ECONNREFUSED",
                       "target": {"cgroup": "/chaos/web"}});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn a_spec_reads_checks_and_round_trips() {
    let spec = parse(syscall(
        json!({"schedule": {"probability": 0.5, "max_hits": 3},
                                    "filter": {"port": 80}, "duration": "30s"}),
    ))
    .unwrap();
    let checked = spec.check().unwrap();
    assert_eq!(checked.kind, FaultKind::Syscall);
    assert_eq!(checked.duration, Duration::from_secs(30));
    assert_eq!(checked.target, Target::Cgroup("/chaos/web".into()));
    assert_eq!(FaultSpec::from_value(spec.to_value()).unwrap(), spec);
    // The derived serde reads what from_value reads.
    assert_eq!(
        serde_json::from_value::<FaultSpec>(spec.to_value()).unwrap(),
        spec
    );
    assert_eq!(
        spec.command_line(),
        "chaos inject syscall --syscall connect --errno ECONNREFUSED --port 80 \
         --probability 0.5 --max-hits 3 --cgroup /chaos/web --duration 30s"
    );
}

#[test]
fn every_kind_checks() {
    let t = json!({"pid": 1});
    for v in [
        json!({"kind": "syscall", "syscalls": "openat,%net", "errno": 5, "target": t}),
        json!({"kind": "signal", "syscalls": ["fsync"], "signal": "SIGABRT", "thread": true, "target": t}),
        json!({"kind": "latency", "syscalls": ["read"], "delay": "20ms", "jitter": "5ms", "mode": "spin", "target": t}),
        json!({"kind": "net-drop", "filter": {"protocol": "udp", "direction": "ingress"}, "schedule": {"probability": 0.1}, "target": t}),
        json!({"kind": "net-delay", "delay": "100ms", "devices": ["lo"], "target": t}),
        json!({"kind": "net-rate", "rate": "1mbit", "target": t}),
        json!({"kind": "net-duplicate", "target": t}),
        json!({"kind": "net-corrupt", "fix_checksum": true, "target": t}),
        json!({"kind": "dns", "domains": ["example.com"], "rcode": "nxdomain", "server": "10.0.0.0/8", "schedule": {"probability": 0.5}, "target": t}),
        json!({"kind": "dns", "domain": ["a.test"], "drop": true, "target": t}),
        json!({"kind": "dns", "delay": "2s", "port": 5353, "target": t}),
        json!({"kind": "tcp-reset", "port": 6379, "direction": "outbound", "cidr": "10.0.0.0/8", "schedule": {"after": 10, "every": 2, "probability": 0.5}, "target": t}),
        json!({"kind": "tcp-reset", "once": true, "target": t}),
    ] {
        let spec = parse(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(spec.kind().name(), v["kind"]);
    }
}

#[test]
fn errors_name_the_field_as_a_json_path() {
    let cases: &[(Value, &str)] = &[
        (
            syscall(json!({"schedule": {"probability": 1.5}})),
            "schedule.probability: 1.5 is not in (0, 1]",
        ),
        (
            syscall(json!({"errno": "EWHAT"})),
            "errno: `EWHAT` is not valid",
        ),
        (
            syscall(json!({"syscalls": ["connect", "nosuch"]})),
            "syscalls[1]: `nosuch`",
        ),
        (
            syscall(json!({"duration": "soon"})),
            "duration: `soon` is not a duration",
        ),
        (
            syscall(json!({"filter": {"cidr": "10.0.0.0/99"}})),
            "filter.cidr: `10.0.0.0/99`",
        ),
        (
            syscall(json!({"schedule": {"probabilty": 0.5}})),
            "schedule.probabilty: unknown field `probabilty`, expected one of",
        ),
        (
            syscall(json!({"colour": "red"})),
            "colour: unknown field `colour`",
        ),
        (
            syscall(json!({"target": {"host": "x"}})),
            "target: unknown variant `host`",
        ),
        (
            syscall(json!({"mechanism": "kprobe"})),
            "mechanism: unknown variant `kprobe`",
        ),
        (
            json!({"kind": "syscall", "errno": "EIO", "target": {"pid": 1}}),
            "syscalls: missing",
        ),
        (json!({"syscalls": "connect"}), "kind: missing"),
        (
            json!({"kind": "net-loss"}),
            "kind: `net-loss` is not a fault kind: one of syscall",
        ),
        (
            json!({"kind": "net-delay", "delay": "10ms", "jitter": "20ms", "target": {"pid": 1}}),
            "jitter: `20ms` is not valid: at most the delay",
        ),
        (
            json!({"kind": "net-duplicate", "filter": {"direction": "both"}, "target": {"pid": 1}}),
            "filter.direction: `both` is not valid: egress",
        ),
        (
            json!({"kind": "net-drop", "schedule": {"after": 3}, "target": {"pid": 1}}),
            "schedule.after: not available to net-drop",
        ),
        (
            json!({"kind": "dns", "target": {"pid": 1}}),
            "rcode: missing",
        ),
        (
            json!({"kind": "dns", "rcode": "NOERROR", "target": {"pid": 1}}),
            "rcode: `NOERROR` is not valid: one of NXDOMAIN",
        ),
        (
            json!({"kind": "dns", "drop": true, "delay": "1s", "target": {"pid": 1}}),
            "rcode, drop and delay exclude each other",
        ),
        (
            json!({"kind": "dns", "drop": true, "domains": ["ok", "a..b"], "target": {"pid": 1}}),
            "domains[1]: `a..b` is not valid",
        ),
        (
            json!({"kind": "dns", "drop": true, "server": "nine", "target": {"pid": 1}}),
            "server: `nine` is not valid",
        ),
        (
            json!({"kind": "dns", "drop": true, "schedule": {"every": 2}, "target": {"pid": 1}}),
            "schedule.every: not available to dns",
        ),
        (
            json!({"kind": "tcp-reset", "direction": "up", "target": {"pid": 1}}),
            "direction: `up` is not valid: outbound",
        ),
        (
            json!({"kind": "tcp-reset", "schedule": {"max_hits": 1}, "target": {"pid": 1}}),
            "schedule.max_hits: not available to tcp-reset",
        ),
        (
            json!({"kind": "tcp-reset", "cidr": "1.2.3.4/40", "target": {"pid": 1}}),
            "cidr: `1.2.3.4/40` is not valid",
        ),
    ];
    for (v, wanted) in cases {
        let err = parse(v.clone()).unwrap_err();
        assert!(
            err.starts_with(wanted),
            "{v}:\n  got    {err}\n  wanted {wanted}..."
        );
    }
}

/// The committed schema is the one the type makes. To regenerate it after changing the spec:
/// `cargo run -p chaos-user -- schema > docs/fault-spec.schema.json`.
#[test]
fn the_committed_schema_is_current() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/fault-spec.schema.json"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == schema_text(),
        "docs/fault-spec.schema.json is not the schema of FaultSpec; regenerate it with \
         `cargo run -p chaos-user -- schema > docs/fault-spec.schema.json`"
    );
}

#[test]
fn the_schema_lists_every_kind() {
    let text = schema_text();
    for kind in FaultKind::ALL {
        assert!(text.contains(&format!("\"{}\"", kind.name())), "{kind}");
    }
}
