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
    // DNS faults use cgroup sock_addr hooks too; TCP resets need no program, only sock_diag's
    // SOCK_DESTROY, which Debian's kernels and the host's enable (the rows load and destroy
    // for real: see doctor::examine).
    assert!(works(&report, "dns"), "{report}");
    assert!(works(&report, "tcp-reset"), "{report}");
    let file = works(&report, "syscall-file");
    assert_eq!(
        file,
        openat_fault_attaches(),
        "doctor says syscall-file works={file}: {report}"
    );
    if skips_forbidden() {
        // The VM tier's kernels run file faults: through BPF LSM where it is active, through
        // fmod_ret where it is not (lsm=lockdown,capability,yama,apparmor).
        assert!(file, "file faults must work in the VM tier: {report}");
    }
    if file {
        // What the doctor says runs is what runs: the mechanism, and a fault that fires.
        let row = report["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "syscall-file")
            .unwrap();
        assert_eq!(row["hook_mechanism"], expected_mechanism(), "{row}");
        let file = scratch("doctor-file");
        std::fs::write(&file, b"data").unwrap();
        assert_target_only("openat", "EIO", &[], &["openat", file.to_str().unwrap()]);
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
