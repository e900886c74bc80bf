//! File, filesystem and process syscalls failed through BPF LSM hooks. The host kernel refuses
//! LSM programs, so these skip there (saying so) and run in the VM tier on 6.1 and 6.12.
use std::fs;

use chaos_tests::*;

fn file_with(name: &str, data: &[u8]) -> String {
    let path = scratch(name);
    fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_owned()
}

fn dir(name: &str) -> String {
    let path = scratch(name);
    fs::create_dir_all(&path).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn read_family_and_metadata_syscalls_fail_in_target_only() {
    if !need_root() {
        return;
    }
    let file = file_with("family-file", b"data");
    assert_target_only("read", "EIO", &[], &["read", &file]);
    assert_target_only("pread64", "EIO", &[], &["pread", &file]);
    assert_target_only("stat", "ENOENT", &[], &["stat", &file]);
    assert_target_only("truncate", "EPERM", &[], &["truncate", &file]);
    assert_target_only("chmod", "EPERM", &[], &["chmod", &file]);
    assert_target_only(
        "getdents64",
        "EIO",
        &[],
        &["getdents", &dir("family-dents")],
    );
    // Anonymous mappings (the allocator's) have no file: the kind filter leaves them alone.
    assert_target_only("mmap", "ENOMEM", &["--fd-kind", "file"], &["mmap", &file]);
    assert_target_only("ioctl", "ENOTTY", &[], &["ioctl", &file]);
    assert_target_only("fcntl", "EBADF", &[], &["fcntl", &file]);
    assert_target_only("flock", "ENOLCK", &[], &["flock", &file]);
}

#[test]
fn directory_syscalls_fail_in_target_only() {
    if !need_root() {
        return;
    }
    assert_target_only("unlink", "EBUSY", &[], &["unlink", &dir("dir-unlink")]);
    assert_target_only("mkdir", "ENOSPC", &[], &["mkdir", &dir("dir-mkdir")]);
    assert_target_only("rename", "EXDEV", &[], &["rename", &dir("dir-rename")]);
}

#[test]
fn process_and_socket_lsm_syscalls_fail_in_target_only() {
    if !need_root() {
        return;
    }
    assert_target_only("fork", "EAGAIN", &[], &["fork"]);
    assert_target_only("execve", "EACCES", &[], &["exec", "/bin/true"]);
    assert_target_only("kill", "EPERM", &[], &["kill"]);
    assert_target_only("listen", "EADDRINUSE", &[], &["listen"]);
    assert_target_only("sendto", "ENOBUFS", &[], &["sendto", "127.0.0.1:9"]);
}

#[test]
fn accept_recv_and_shutdown_fail_in_target_only() {
    if !need_root() {
        return;
    }
    assert_target_only("accept", "ECONNABORTED", &[], &["accept"]);
    assert_target_only("recvfrom", "EAGAIN", &[], &["recvfrom"]);
    assert_target_only("shutdown", "ENOTCONN", &[], &["shutdown"]);
}

#[test]
fn write_fails_only_under_the_path_prefix() {
    if !need_root() {
        return;
    }
    let hit = dir("prefix-hit");
    let miss = dir("prefix-miss");
    let go = scratch("prefix-go");
    let go_arg = go.to_str().unwrap();
    let cgroup = TestCgroup::new("prefix");
    let hit_file = format!("{hit}/sub/data");
    fs::create_dir_all(format!("{hit}/sub")).unwrap();
    let miss_file = format!("{miss}/data");
    let mut children = vec![
        cgroup.spawn(&mut workload(&[
            "--wait-for",
            go_arg,
            "--count",
            "5",
            "write",
            &hit_file,
        ])),
        cgroup.spawn(&mut workload(&[
            "--wait-for",
            go_arg,
            "--count",
            "5",
            "write",
            &miss_file,
        ])),
    ];
    let Some(run) = start_or_skip(
        &[
            "inject",
            "syscall",
            "--syscall",
            "write",
            "--errno",
            "ENOSPC",
            "--path",
            &hit,
            "--json",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
        ],
        &mut children,
    ) else {
        return;
    };
    // Outside the target, even under the prefix, writes succeed.
    let outside = workload_result(
        workload(&["--count", "5", "write", &hit_file])
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        (outside.ok, outside.failed()),
        (5, 0),
        "outside: {outside:?}"
    );
    fs::write(&go, b"").unwrap();
    let miss_result = workload_result(children.pop().unwrap());
    let hit_result = workload_result(children.pop().unwrap());
    let outcome = run.interrupt();
    assert_eq!(
        hit_result.failed_with("ENOSPC"),
        5,
        "under the prefix: {hit_result:?}"
    );
    // stdout (a pipe) and the other directory are not under the prefix.
    assert_eq!(
        (miss_result.ok, miss_result.failed()),
        (5, 0),
        "elsewhere: {miss_result:?}"
    );
    assert_eq!(outcome.counts(0), (5, 5), "report: {}", outcome.stdout);
    assert_nothing_left();
}

#[test]
fn read_rule_leaves_pread_and_the_kernels_exec_reads_alone() {
    if !need_root() {
        return;
    }
    let file = file_with("exact-file", b"data");
    let go = scratch("exact-go");
    let go_arg = go.to_str().unwrap();
    let cgroup = TestCgroup::new("exact");
    let mut children = vec![
        cgroup.spawn(&mut workload(&[
            "--wait-for",
            go_arg,
            "--count",
            "4",
            "read",
            &file,
        ])),
        cgroup.spawn(&mut workload(&[
            "--wait-for",
            go_arg,
            "--count",
            "4",
            "pread",
            &file,
        ])),
        // exec makes the kernel read the binary (kernel_read through the same hook).
        cgroup.spawn(&mut workload(&[
            "--wait-for",
            go_arg,
            "--count",
            "2",
            "exec",
            "/bin/true",
        ])),
    ];
    let Some(run) = start_or_skip(
        &[
            "inject",
            "syscall",
            "--syscall",
            "read",
            "--errno",
            "EIO",
            "--json",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
        ],
        &mut children,
    ) else {
        return;
    };
    fs::write(&go, b"").unwrap();
    let exec = workload_result(children.pop().unwrap());
    let pread = workload_result(children.pop().unwrap());
    let read = workload_result(children.pop().unwrap());
    let outcome = run.interrupt();
    assert_eq!(read.failed_with("EIO"), 4, "read: {read:?}");
    assert_eq!((pread.ok, pread.failed()), (4, 0), "pread64: {pread:?}");
    assert_eq!((exec.ok, exec.failed()), (2, 0), "exec: {exec:?}");
    // /bin/true is static busybox in the VM: no loader reads either, so exactly the
    // workload's four reads count.
    assert_eq!(outcome.counts(0), (4, 4), "report: {}", outcome.stdout);
    assert_nothing_left();
}

#[test]
fn schedule_after_every_max_hits_fails_exactly_the_predicted_calls() {
    if !need_root() {
        return;
    }
    let file = file_with("schedule-file", b"data");
    let go = scratch("schedule-go");
    let cgroup = TestCgroup::new("schedule");
    let mut children = vec![cgroup.spawn(&mut workload(&[
        "--wait-for",
        go.to_str().unwrap(),
        "--count",
        "12",
        "read",
        &file,
    ]))];
    // --after 2 --every 2 is strace's when=4+2; at most 3 hits: calls 4, 6, 8 fail.
    let Some(run) = start_or_skip(
        &[
            "inject",
            "syscall",
            "--syscall",
            "read",
            "--errno",
            "EIO",
            "--after",
            "2",
            "--every",
            "2",
            "--max-hits",
            "3",
            "--json",
            "--cgroup",
            cgroup.path.to_str().unwrap(),
        ],
        &mut children,
    ) else {
        return;
    };
    fs::write(&go, b"").unwrap();
    let result = workload_result(children.pop().unwrap());
    let outcome = run.interrupt();
    let want: Vec<&str> = (1..=12)
        .map(|n| if [4, 6, 8].contains(&n) { "EIO" } else { "ok" })
        .collect();
    assert_eq!(result.sequence, want);
    assert_eq!(outcome.counts(0), (12, 3), "report: {}", outcome.stdout);
    assert_nothing_left();
}
