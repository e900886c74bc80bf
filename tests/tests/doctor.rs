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

/// `--json` lists what the verifier spent on every program: the cgroup programs load on
/// every kernel this project targets, so they carry a count (Linux 5.16+); programs this
/// kernel refuses (LSM on the host) say why instead.
#[test]
fn doctor_reports_verified_instructions_per_program() {
    if !need_root() {
        return;
    }
    let report = doctor();
    let programs = report["programs"].as_array().expect("programs");
    let program = |name: &str| {
        programs
            .iter()
            .find(|p| p["program"] == name)
            .unwrap_or_else(|| panic!("no {name} in {programs:?}"))
    };
    for name in [
        "chaos_connect4",
        "chaos_sock_create",
        "chaos_skb_egress",
        "chaos_tc_egress",
    ] {
        let insns = program(name)["verified_insns"].as_u64();
        assert!(
            insns.is_some_and(|n| n > 0 && n < 100_000),
            "{name}: {}",
            program(name)
        );
    }
    for p in programs {
        assert!(
            p["verified_insns"].is_u64() || p["error"].as_str().is_some_and(|e| !e.is_empty()),
            "neither a count nor a reason: {p}"
        );
        if skips_forbidden() {
            assert!(p["error"].is_null(), "refused in the VM tier: {p}");
        }
    }
    assert_nothing_left();
}
