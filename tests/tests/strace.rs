//! chaos's schedules against the real strace: the same program under
//! `strace -e inject=socket:error=EMFILE:when=EXPR` and under `chaos inject syscall ... --when
//! EXPR` (or `--after/--every`) fails the same calls. Host tier only: the VM guest has no strace.
use std::{fs, process::Command};

use chaos_tests::*;

const CALLS: &str = "10";

/// The 1-based numbers of the calls that failed with EMFILE.
fn emfile_calls(result: &WorkloadResult) -> Vec<usize> {
    let failed: Vec<usize> = (1..)
        .zip(&result.sequence)
        .filter(|(_, r)| *r == "EMFILE")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        failed.len() as u64 + result.ok,
        CALLS.parse::<u64>().unwrap(),
        "only EMFILE or success expected: {result:?}"
    );
    failed
}

/// The calls strace fails with `when=EXPR`.
fn under_strace(when: &str) -> Vec<usize> {
    let out = scratch("strace-result");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject=socket:error=EMFILE:when={when}"))
        .arg("--")
        .arg(workload_bin())
        .args([
            "--result",
            out.to_str().unwrap(),
            "--count",
            CALLS,
            "socket",
        ])
        .status()
        .expect("running strace");
    assert!(status.success(), "strace when={when}: {status}");
    emfile_calls(&WorkloadResult::parse(&fs::read_to_string(&out).unwrap()))
}

/// The calls chaos fails with the schedule options `schedule`, checking its counters too.
fn under_chaos(schedule: &[&str]) -> Vec<usize> {
    let out = scratch("chaos-result");
    let workload = workload_bin();
    let mut args = vec![
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
    ];
    args.extend(schedule);
    args.extend([
        "--json",
        "--",
        workload.to_str().unwrap(),
        "--result",
        out.to_str().unwrap(),
        "--count",
        CALLS,
        "socket",
    ]);
    let outcome = chaos(&args);
    assert!(outcome.status.success(), "chaos {schedule:?}: {outcome:?}");
    let failed = emfile_calls(&WorkloadResult::parse(&fs::read_to_string(&out).unwrap()));
    assert_eq!(
        outcome.counts(0),
        (CALLS.parse().unwrap(), failed.len() as u64),
        "{schedule:?}: {}",
        outcome.stdout
    );
    failed
}

fn have_strace() -> bool {
    if host_only("strace") {
        return false;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        skip("strace is not installed (scripts/setup installs it)");
        return false;
    }
    need_root()
}

#[test]
fn when_fails_the_calls_strace_fails() {
    if !have_strace() {
        return;
    }
    for when in [
        "3", "3+", "3+3", "2..5", "2..7+2", "1..3+", "4..4", "2..4+3",
    ] {
        let strace = under_strace(when);
        assert!(!strace.is_empty(), "strace when={when} failed nothing");
        assert_eq!(under_chaos(&["--when", when]), strace, "when={when}");
    }
    assert_nothing_left();
}

#[test]
fn every_and_after_are_strace_steps() {
    if !have_strace() {
        return;
    }
    // --every 3 fails the 3rd, 6th, 9th call: strace's when=3+3.
    assert_eq!(under_chaos(&["--every", "3"]), under_strace("3+3"));
    assert_eq!(under_chaos(&["--every", "3"]), [3, 6, 9]);
    // --after 2 --every 3: calls 5 and 8, strace's when=5+3.
    assert_eq!(
        under_chaos(&["--after", "2", "--every", "3"]),
        under_strace("5+3")
    );
    // --after 2 alone: the 3rd call and every one after, strace's when=3+.
    assert_eq!(under_chaos(&["--after", "2"]), under_strace("3+"));
    // --max-hits caps a when= range the way strace's LAST does here.
    assert_eq!(
        under_chaos(&["--when", "2+2", "--max-hits", "2"]),
        under_strace("2..4+2")
    );
    assert_nothing_left();
}

#[test]
fn a_bad_when_is_named_and_changes_nothing() {
    if !need_root() {
        return;
    }
    for bad in ["0", "5..3", "3+0", "x"] {
        let outcome = chaos(&[
            "inject",
            "syscall",
            "--syscall",
            "socket",
            "--errno",
            "EMFILE",
            "--when",
            bad,
            "--",
            "true",
        ]);
        assert_eq!(outcome.status.code(), Some(2), "{bad}: {outcome:?}");
        assert!(
            outcome.stderr.contains("--when") && outcome.stderr.contains("FIRST[..LAST][+[STEP]]"),
            "{bad}: {}",
            outcome.stderr
        );
    }
    let both = chaos(&[
        "inject",
        "syscall",
        "--syscall",
        "socket",
        "--errno",
        "EMFILE",
        "--when",
        "3",
        "--every",
        "2",
        "--",
        "true",
    ]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
    assert_nothing_left();
}

/// The calls of each of two processes started one after the other by a shell, as
/// `(first, second)` 1-based numbers of their EMFILE calls, with `wrap` running the shell.
fn two_processes(wrap: &[&str], name: &str) -> (Vec<usize>, Vec<usize>) {
    let (a, b) = (scratch(&format!("{name}-a")), scratch(&format!("{name}-b")));
    let w = workload_bin();
    let script = format!(
        "{w} --result {a} --count 4 socket && {w} --result {b} --count 4 socket",
        w = w.display(),
        a = a.display(),
        b = b.display()
    );
    let status = Command::new(wrap[0])
        .args(&wrap[1..])
        .args(["--", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running");
    assert!(status.success(), "{wrap:?}: {status}");
    let read = |p: &std::path::Path| {
        emfile_calls_of(&WorkloadResult::parse(&fs::read_to_string(p).unwrap()))
    };
    (read(&a), read(&b))
}

fn emfile_calls_of(result: &WorkloadResult) -> Vec<usize> {
    (1..)
        .zip(&result.sequence)
        .filter(|(_, r)| *r == "EMFILE")
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn per_process_counts_each_process_as_strace_does() {
    if !have_strace() {
        return;
    }
    let strace = [
        "strace",
        "-f",
        "-qq",
        "-o",
        "/dev/null",
        "-e",
        "inject=socket:error=EMFILE:when=3+3",
    ];
    let chaos_bin = chaos_bin();
    let chaos_args = |per_process: bool| {
        let mut args = vec![
            chaos_bin.to_str().unwrap().to_owned(),
            "inject".into(),
            "syscall".into(),
            "--syscall".into(),
            "socket".into(),
            "--errno".into(),
            "EMFILE".into(),
            "--when".into(),
            "3+3".into(),
        ];
        if per_process {
            args.push("--per-process".into());
        }
        args
    };
    let by_strace = two_processes(&strace, "pp-strace");
    assert_eq!(by_strace, (vec![3], vec![3]));
    let per_process = chaos_args(true);
    let per_process: Vec<&str> = per_process.iter().map(String::as_str).collect();
    assert_eq!(two_processes(&per_process, "pp-chaos"), by_strace);
    // Counted across the cgroup: the second process's calls are calls 5 to 8, so call 6
    // is its 2nd.
    let across = chaos_args(false);
    let across: Vec<&str> = across.iter().map(String::as_str).collect();
    assert_eq!(two_processes(&across, "pp-across"), (vec![3], vec![2]));
    assert_nothing_left();
}
