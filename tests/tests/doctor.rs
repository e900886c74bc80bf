//! `chaos doctor` tells the truth: what it says about a fault kind agrees with what happens
//! when chaos actually tries it on this kernel.
use chaos_tests::*;
use serde_json::Value;

fn doctor() -> Value {
    let outcome = chaos(&["doctor", "--json"]);
    assert!(outcome.status.success(), "{outcome:?}");
    serde_json::from_str(&outcome.stdout).expect("doctor --json")
}

fn works(report: &Value, kind: &str) -> bool {
    report["faults"]
        .as_array()
        .expect("faults")
        .iter()
        .find(|f| f["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} row in {report}"))["works"]
        .as_bool()
        .expect("works")
}

/// Whether an openat fault really attaches here.
fn openat_fault_attaches() -> bool {
    let cgroup = TestCgroup::new("doctor");
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "openat",
        "--errno",
        "EIO",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    let attached = run.wait_injecting().is_ok();
    if attached {
        run.interrupt();
    }
    attached
}

#[test]
fn doctor_agrees_with_what_loads() {
    if !need_root() {
        return;
    }
    let table = chaos(&["doctor"]);
    assert!(table.status.success(), "{table:?}");
    println!("{}", table.stdout);
    let report = doctor();
    assert!(report["kernel"].as_str().is_some_and(|k| !k.is_empty()));
    // Socket faults go through cgroup hooks, which every kernel this project targets has.
    assert!(works(&report, "syscall-socket"), "{report}");
    let file = works(&report, "syscall-file");
    assert_eq!(
        file,
        openat_fault_attaches(),
        "doctor says syscall-file works={file}: {report}"
    );
    if skips_forbidden() {
        // The VM tier boots kernels with BPF LSM on purpose.
        assert!(file, "BPF LSM must work in the VM tier: {report}");
    }
    if !file {
        let row = report["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "syscall-file")
            .unwrap();
        assert!(row["why"].as_str().is_some_and(|w| !w.is_empty()), "{row}");
        assert!(row["fix"].as_str().is_some_and(|w| !w.is_empty()), "{row}");
    }
    assert_nothing_left();
}
