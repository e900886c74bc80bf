//! Reading a run's result from the guest's console.
//!
//! `/init` frames each test binary with marker lines (`CHAOS-VM: run NAME`, `CHAOS-VM: exit
//! NAME CODE`) and ends with `CHAOS-VM: done`; in between, libtest prints its own `test
//! result:` line. Markers are searched anywhere in a line, not only at its start, because
//! kernel messages can land in the middle of a line the guest is writing.
use std::collections::HashMap;

use super::qemu::Outcome;
use crate::summary::Summary;

/// Prefix of every line `/init` prints for the host.
pub const MARKER: &str = "CHAOS-VM:";

/// Counts and, if the run failed, why.
#[derive(Debug, Default)]
pub struct Verdict {
    /// libtest counts summed over every test binary.
    pub summary: Summary,
    /// Everything that makes the run a failure; empty when it passed.
    pub problems: Vec<String>,
}

/// What the console said about one test binary.
#[derive(Debug, Default)]
struct Binary {
    exit_code: Option<String>,
    results: usize,
}

/// Judges a run that was expected to run the test binaries `tests`.
pub fn judge(outcome: &Outcome, tests: &[&str], timeout_secs: u64) -> Verdict {
    let mut verdict = Verdict::default();
    let mut binaries: HashMap<&str, Binary> = HashMap::new();
    let mut current: Option<&str> = None;
    let mut done = false;
    let mut panic = None;
    let mut setup_errors = Vec::new();

    let mut host_only = 0;
    for line in &outcome.lines {
        if panic.is_none() && line.contains("Kernel panic") {
            panic = Some(line.trim());
        }
        // Tests that make sense on the host only (Docker) return early in the VM saying so;
        // they count as skipped, not passed (visible with --show-output).
        if line.contains("SKIP: host-only") {
            host_only += 1;
        }
        if let Some(at) = line.find("test result: ")
            && verdict.summary.add_line(&line[at..])
            && let Some(name) = current
        {
            binaries.entry(name).or_default().results += 1;
        }
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let words: Vec<&str> = line[at + MARKER.len()..].split_whitespace().collect();
        match words.as_slice() {
            ["run", name] => current = Some(name),
            ["exit", name, code] => {
                binaries.entry(name).or_default().exit_code = Some((*code).to_owned());
                current = None;
            }
            ["done"] => done = true,
            ["error", what @ ..] => setup_errors.push(what.join(" ")),
            _ => {}
        }
    }

    verdict.summary.passed = verdict.summary.passed.saturating_sub(host_only);
    verdict.summary.ignored += host_only;
    let problems = &mut verdict.problems;
    if outcome.timed_out {
        problems.push(format!(
            "the VM did not finish within {timeout_secs} s and was killed"
        ));
    }
    if let Some(line) = panic {
        problems.push(format!("the guest kernel panicked: {line}"));
    }
    for error in setup_errors {
        problems.push(format!("guest setup step failed: {error}"));
    }
    if verdict.summary.failed > 0 {
        problems.push(format!("{} test(s) failed", verdict.summary.failed));
    }
    for name in tests {
        match binaries.get(name) {
            None
            | Some(Binary {
                exit_code: None, ..
            }) => {
                problems.push(format!("test binary {name} did not finish"));
            }
            Some(Binary {
                exit_code: Some(code),
                results,
            }) => {
                if code != "0" {
                    problems.push(format!("test binary {name} exited with code {code}"));
                }
                if *results == 0 {
                    problems.push(format!(
                        "test binary {name} printed no libtest `test result:` line"
                    ));
                }
            }
        }
    }
    if !done {
        problems.push(format!("the guest never printed `{MARKER} done`"));
    }
    if let Some(status) = outcome.status.filter(|s| !s.success()) {
        problems.push(format!("qemu-system-x86_64 exited with {status}"));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(console: &str) -> Outcome {
        Outcome {
            lines: console.lines().map(str::to_owned).collect(),
            ..Outcome::default()
        }
    }

    const PASSING: &str = "\
CHAOS-VM: run lsm
running 2 tests
test a ... ok
test b ... ok

test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s

CHAOS-VM: exit lsm 0
CHAOS-VM: done";

    #[test]
    fn a_clean_run_passes() {
        let verdict = judge(&outcome(PASSING), &["lsm"], 1);
        assert_eq!(verdict.problems, Vec::<String>::new());
        assert_eq!(verdict.summary.to_string(), "2 passed, 0 failed, 1 skipped");
    }

    #[test]
    fn failures_are_reported() {
        let failing = PASSING
            .replace(
                "test result: ok. 2 passed; 0 failed",
                "test result: FAILED. 1 passed; 1 failed",
            )
            .replace("exit lsm 0", "exit lsm 101");
        let verdict = judge(&outcome(&failing), &["lsm"], 1);
        assert_eq!(
            verdict.problems,
            ["1 test(s) failed", "test binary lsm exited with code 101"]
        );
    }

    #[test]
    fn missing_markers_and_results_are_failures() {
        let verdict = judge(
            &outcome("CHAOS-VM: run lsm\nCHAOS-VM: exit lsm 0\n"),
            &["lsm", "tc"],
            1,
        );
        assert_eq!(
            verdict.problems,
            [
                "test binary lsm printed no libtest `test result:` line",
                "test binary tc did not finish",
                "the guest never printed `CHAOS-VM: done`"
            ]
        );
    }

    #[test]
    fn panics_timeouts_and_interleaved_markers() {
        let mut run = outcome(
            "[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n[ 2.1] x CHAOS-VM: done",
        );
        run.timed_out = true;
        let verdict = judge(&run, &[], 5);
        assert_eq!(
            verdict.problems,
            [
                "the VM did not finish within 5 s and was killed",
                "the guest kernel panicked: [ 1.0] Kernel panic - not syncing: Attempted to kill init!"
            ]
        );
    }
}
