//! `chaos run --report` and `chaos report` after a real experiment (the shipped example that
//! refuses the demo service's connects): the page has one series per fault with a point per
//! counter sample, and headless Chromium renders it to a PNG without a console message.
//! Host tier only: the demo service is python and Chromium is a Debian package the VM tier's
//! guest does not have.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use chaos_tests::*;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the example with `--report`; returns the journal and the page.
fn run_with_report() -> (Value, String, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let journal = scratch("report.journal.json");
    let page = scratch("report.html");
    let out = Command::new(chaos_bin())
        .arg("run")
        .arg("--standalone")
        .arg(examples_dir().join("backend-refused-recovers.yaml"))
        .arg("--journal")
        .arg(&journal)
        .arg("--report")
        .arg(&page)
        .env("CHAOS_DEMO", examples_dir().join("demo_service.py"))
        .env("CHAOS_DEMO_PORT", port.to_string())
        .env(
            "CHAOS_DEMO_CGROUP",
            format!("chaos/report-{}", std::process::id()),
        )
        .output()
        .expect("chaos run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("report written to"), "{stderr}");
    let journal: Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).expect("journal")).unwrap();
    let html = std::fs::read_to_string(&page).expect("the report");
    (journal, html, page)
}

/// Each `<svg>...</svg>` of the page.
fn svgs(html: &str) -> Vec<&str> {
    html.split("<svg")
        .skip(1)
        .map(|s| s.split("</svg>").next().unwrap())
        .collect()
}

/// The number of points of each coloured polyline (axes and ticks are black).
fn series_points(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|p| p.split("/>").next().unwrap())
        .filter(|p| !p.contains("stroke=\"#000000\""))
        .map(|p| {
            p.split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .split_whitespace()
                .count()
        })
        .collect()
}

fn ready() -> bool {
    if !need_root() {
        return false;
    }
    if host_only("python3 for the demo service and Chromium") {
        return false;
    }
    if !installed("python3") {
        skip("python3 is not installed (the example's demo service needs it)");
        return false;
    }
    true
}

#[test]
fn the_report_has_a_series_per_fault_with_a_point_per_sample() {
    if !ready() {
        return;
    }
    let (journal, html, _) = run_with_report();
    let faults = journal["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{journal:#}");
    let samples: Vec<usize> = faults
        .iter()
        .map(|f| f["counters"].as_array().unwrap().len())
        .collect();
    assert!(samples[0] >= 2, "{faults:#?}");
    let charts = svgs(&html);
    // The timeline, then injected/s and matched/s.
    assert_eq!(charts.len(), 3, "{html}");
    for chart in &charts[1..] {
        assert_eq!(series_points(chart), samples);
    }
    assert!(html.contains("COMPLETED"));
    assert!(html.contains("fault: refuse-backend-connections"));
    // The same page from `chaos report`.
    let again = scratch("again.html");
    let journal_file = scratch("again.journal.json");
    std::fs::write(&journal_file, journal.to_string()).unwrap();
    let out = chaos(&[
        "report",
        journal_file.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);
    assert_nothing_left();
}

#[test]
fn chromium_renders_the_report_without_console_messages() {
    if !ready() {
        return;
    }
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| installed(c))
    else {
        return skip("chromium is not installed (scripts/setup installs Debian's package)");
    };
    let (_, _, page) = run_with_report();
    let png = scratch("report.png");
    let profile = scratch("chromium-profile");
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        Command::new(chromium)
            .args([
                "--headless",
                // As root, Chromium refuses its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1100,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium")
    };
    let shot = headless(&[&format!("--screenshot={}", png.display())]);
    let stderr = String::from_utf8_lossy(&shot.stderr);
    assert!(shot.status.success(), "{stderr}");
    // Chromium logs every console message (errors included) as `CONSOLE(line)`.
    assert!(!stderr.contains("CONSOLE"), "{stderr}");
    let image = std::fs::read(&png).expect("a screenshot");
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n") && image.len() > 10_000);
    // What Chromium parsed: three SVG charts with their series, nothing lost to a parse error.
    let dom = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    // Chromium's profile is tens of megabytes.
    let _ = std::fs::remove_dir_all(&profile);
    assert_eq!(dom.matches("<svg").count(), 3, "{dom}");
    assert!(dom.contains("<polyline"), "{dom}");
}
