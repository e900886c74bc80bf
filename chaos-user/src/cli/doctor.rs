//! `chaos doctor`: renders what [`crate::doctor`] found, as a table or as JSON.
use std::process::ExitCode;

use crate::doctor::{self, Check, FaultSupport, Report};

/// Options of `chaos doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `chaos doctor`. Exits 0 whatever the kernel lacks: the report is the result. Fails
/// only when the probes cannot run at all (missing privileges).
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    doctor::require_privileges()?;
    let report = Report::from_facts(&doctor::examine());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

const WIDTH: usize = 100;
const KIND_COLUMN: usize = 17;
const WORKS_COLUMN: usize = 6;
const CHECK_COLUMN: usize = 32;

fn render(report: &Report) -> String {
    let mut out = format!("chaos doctor: kernel {}\n\n", report.kernel);
    out.push_str(&format!(
        "{:KIND_COLUMN$}{:WORKS_COLUMN$}HOW / WHY NOT\n",
        "FAULT", "WORKS"
    ));
    for fault in &report.faults {
        out.push_str(&render_fault(fault));
    }
    out.push_str("\nchecks:\n");
    for check in &report.checks {
        out.push_str(&render_check(check));
    }
    out
}

fn render_fault(fault: &FaultSupport) -> String {
    let indent = KIND_COLUMN + WORKS_COLUMN;
    let mut lines = vec![fault.mechanism.clone()];
    if !fault.syscalls.is_empty() {
        lines.push(format!("syscalls: {}", fault.syscalls.join(", ")));
    }
    if let Some(why) = &fault.why {
        lines.push(format!("why: {why}"));
    }
    if let Some(fix) = &fault.fix {
        lines.push(format!("fix: {fix}"));
    }
    let body: Vec<String> = lines.iter().flat_map(|l| wrap(l, WIDTH - indent)).collect();
    let mut out = format!(
        "{:KIND_COLUMN$}{:WORKS_COLUMN$}",
        fault.kind,
        if fault.works { "yes" } else { "NO" }
    );
    out.push_str(&indent_after_first(&body, indent));
    out
}

fn render_check(check: &Check) -> String {
    let indent = 2 + 5 + CHECK_COLUMN;
    let body = wrap(&check.detail, WIDTH - indent);
    let mut out = format!(
        "  {:5}{:CHECK_COLUMN$}",
        if check.ok { "ok" } else { "FAIL" },
        check.name
    );
    out.push_str(&indent_after_first(&body, indent));
    out
}

/// Joins `lines`, each on its own line, every one but the first indented by `indent`.
fn indent_after_first(lines: &[String], indent: usize) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(line);
        out.push('\n');
    }
    if lines.is_empty() {
        out.push('\n');
    }
    out
}

/// Greedy word wrap; words longer than `width` get a line of their own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
        assert!(wrap("   ", 5).is_empty());
    }

    #[test]
    fn renders_a_row_with_why_and_fix() {
        let row = render_fault(&FaultSupport {
            kind: "syscall-file",
            works: false,
            mechanism: "BPF LSM".into(),
            why: Some("refused".into()),
            fix: Some("another kernel".into()),
            hook_mechanism: None,
            syscalls: vec!["read", "write"],
        });
        let pad = " ".repeat(KIND_COLUMN + WORKS_COLUMN);
        assert_eq!(
            row,
            format!(
                "syscall-file     NO    BPF LSM\n{pad}syscalls: read, write\n{pad}why: refused\n\
                 {pad}fix: another kernel\n"
            )
        );
    }
}
