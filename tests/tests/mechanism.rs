//! The two ways to the kernel's security hooks: BPF LSM programs, which run only where `bpf`
//! is an active LSM, and fmod_ret programs on the `security_*` functions, which run
//! everywhere BPF trampolines do. The host kernel refuses both (no trampolines), so these
//! skip there and run in the VM tier: on 6.1 and 6.12 with BPF LSM active, and on 6.12 booted
//! without it (`lsm=lockdown,capability,yama,apparmor`, as Ubuntu runs).
use std::fs;

use chaos_tests::*;

fn file_with(name: &str, data: &[u8]) -> String {
    let path = scratch(name);
    fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn fmod_ret_fails_file_calls_in_target_only_when_forced() {
    if !need_root() {
        return;
    }
    let file = file_with("fmod-file", b"data");
    let forced = ["--mechanism", "fmod-ret"];
    assert_target_only("openat", "EIO", &forced, &["openat", &file]);
    assert_target_only("read", "EIO", &forced, &["read", &file]);
    // pread64 shares read's hook: a read rule must leave it alone, as through BPF LSM.
    assert_target_only("pread64", "ENOSPC", &forced, &["pread", &file]);
    assert_target_only("fork", "EAGAIN", &forced, &["fork"]);
}

#[test]
fn bpf_lsm_works_when_forced_where_active_and_is_refused_with_the_reason_elsewhere() {
    if !need_root() {
        return;
    }
    let file = file_with("lsm-file", b"data");
    if bpf_lsm_active() {
        assert_target_only("openat", "EIO", &["--mechanism", "lsm"], &["openat", &file]);
        return;
    }
    // BPF LSM is compiled in but not active: its programs would load and never run. chaos
    // must refuse rather than report a fault that cannot fire.
    let cgroup = TestCgroup::new("lsm-refused");
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "openat",
        "--errno",
        "EIO",
        "--mechanism",
        "lsm",
        "--json",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    assert!(!outcome.status.success(), "{outcome:?}");
    let lsms = active_lsms().join(",");
    assert!(
        outcome.stderr.contains("BPF LSM is not active")
            && outcome.stderr.contains(&lsms)
            && outcome.stderr.contains("--mechanism fmod-ret"),
        "the refusal must name the active LSMs and the way out: {}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("--mechanism lsm"),
        "{}",
        outcome.stderr
    );
    assert_nothing_left();
}

#[test]
fn the_report_says_which_mechanism_runs() {
    if !need_root() {
        return;
    }
    let file = file_with("which-file", b"data");
    // No --mechanism: BPF LSM where active, else fmod_ret (checked in assert_target_only).
    assert_target_only("openat", "EACCES", &[], &["openat", &file]);
}

#[test]
fn a_mechanism_for_syscalls_on_cgroup_hooks_only_is_refused() {
    if !need_root() {
        return;
    }
    let cgroup = TestCgroup::new("mechanism-cgroup-only");
    let outcome = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--mechanism",
        "fmod-ret",
        "--cgroup",
        cgroup.path.to_str().unwrap(),
    ]);
    assert!(!outcome.status.success(), "{outcome:?}");
    assert!(
        outcome.stderr.contains("mechanism") && outcome.stderr.contains("cgroup hooks"),
        "{}",
        outcome.stderr
    );
    assert_nothing_left();
}
