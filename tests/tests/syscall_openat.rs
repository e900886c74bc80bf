//! openat(2) failing with EIO through the BPF LSM `file_open` hook. The host kernel refuses
//! LSM programs, so this skips there (saying so) and runs in the VM tier.
use std::fs;

use chaos_tests::*;

#[test]
fn openat_fails_in_target_only_and_open_is_untouched() {
    if !need_root() {
        return;
    }
    let file = scratch("openat-file");
    fs::write(&file, b"data").unwrap();
    let go = scratch("openat-go");
    let cgroup = TestCgroup::new("openat");
    let file_arg = file.to_str().unwrap();
    let go_arg = go.to_str().unwrap();
    // Both wait, so that everything they do before the calls (exec, loading libraries, all
    // opens) happens before chaos attaches and is neither failed nor counted.
    let openat_inside = cgroup.spawn(&mut workload(&[
        "--wait-for",
        go_arg,
        "--count",
        "4",
        "openat",
        file_arg,
    ]));
    let open_inside = cgroup.spawn(&mut workload(&[
        "--wait-for",
        go_arg,
        "--count",
        "2",
        "open",
        file_arg,
    ]));
    let mut run = ChaosRun::start(&[
        "inject",
        "syscall",
        "--syscall",
        "openat",
        "--errno",
        "EIO",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    if let Err(err) = run.wait_injecting() {
        for mut child in [openat_inside, open_inside] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let msg = err.to_string();
        if msg.contains("not supported by this kernel") {
            return skip(&format!("BPF LSM programs do not load here: {msg}"));
        }
        panic!("{msg}");
    }
    let outside = workload_result(
        workload(&["--count", "3", "openat", file_arg])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        (outside.ok, outside.failed()),
        (3, 0),
        "outside: {outside:?}"
    );

    fs::write(&go, b"").unwrap();
    let openat_inside = workload_result(openat_inside);
    let open_inside = workload_result(open_inside);
    let outcome = run.interrupt();
    assert!(outcome.status.success(), "chaos: {outcome:?}");

    assert_eq!(
        openat_inside.failed_with("EIO"),
        4,
        "openat inside: {openat_inside:?}"
    );
    assert_eq!(openat_inside.ok, 0);
    // Same hook (file_open), other syscall: a rule for openat must not fire for open.
    assert_eq!(
        (open_inside.ok, open_inside.failed()),
        (2, 0),
        "open inside: {open_inside:?}"
    );
    assert_eq!(outcome.counts(0), (4, 4), "report: {}", outcome.stdout);
    assert_nothing_left();
}
