use serde_json::json;

use super::*;

/// A journal as `chaos run` writes it: a probe before and after, one action starting two
/// faults' worth of activities, a rollback.
pub(crate) fn sample_journal() -> Journal {
    let sample = |at: f64, matched: u64, injected: u64| json!({"at": at, "counters": [{"rule": "connect", "matched": matched, "injected": injected}]});
    let run = |name: &str, kind: &str, start: &str, end: &str| {
        json!({"activity": {"name": name, "type": kind, "tolerance": 200}, "status": "succeeded",
               "start": start, "end": end, "duration": 0.1, "output": {"status": 200},
               "tolerance_met": true})
    };
    serde_json::from_value(json!({
        "chaos-version": "0.1.0",
        "platform": "Linux 6.18",
        "node": "n",
        "experiment": {"title": "backend <refused>"},
        "start": "2026-11-30T10:00:00.000Z",
        "end": "2026-11-30T10:00:06.000Z",
        "duration": 6.0,
        "status": "deviated",
        "deviated": true,
        "steady_states": {
            "before": {"steady_state_met": true,
                       "probes": [run("api-up", "probe", "2026-11-30T10:00:00.000Z", "2026-11-30T10:00:00.100Z")]},
            "after": {"steady_state_met": false,
                      "probes": [{"activity": {"name": "api-up", "type": "probe", "tolerance": 200},
                                  "status": "succeeded", "start": "2026-11-30T10:00:05.000Z",
                                  "end": "2026-11-30T10:00:05.100Z", "duration": 0.1,
                                  "output": {"status": 503}, "tolerance_met": false}]},
            "during": []
        },
        "run": [
            run("refuse-connects", "action", "2026-11-30T10:00:00.200Z", "2026-11-30T10:00:00.250Z"),
            run("drop-packets", "action", "2026-11-30T10:00:00.300Z", "2026-11-30T10:00:00.350Z"),
        ],
        "rollbacks": [run("restart", "action", "2026-11-30T10:00:05.500Z", "2026-11-30T10:00:05.600Z")],
        "faults": [
            {"activity": "refuse-connects", "command": "chaos inject syscall --syscall connect",
             "target": "/sys/fs/cgroup/unified/x",
             "counters": [sample(0.7, 10, 5), sample(1.2, 30, 15), sample(1.7, 50, 25),
                          sample(2.2, 60, 30), sample(2.7, 60, 30)]},
            {"activity": "drop-packets", "command": "chaos inject net-drop",
             "target": "/sys/fs/cgroup/unified/x",
             "counters": [sample(0.7, 4, 4), sample(1.2, 8, 8), sample(1.7, 8, 8)]},
        ]
    }))
    .expect("a journal")
}

/// The `points` of every coloured `<polyline>` in an SVG (axes and ticks are black).
pub(crate) fn series_polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .filter(|rest| !rest.contains("stroke=\"#000000\""))
        .map(|rest| {
            let rest = rest.split("/>").next().unwrap_or(rest);
            let points = rest
                .split("points=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .expect("a points attribute");
            points
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').expect("x,y");
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn each_fault_is_one_series_with_a_point_per_sample() {
    let journal = sample_journal();
    for injected in [true, false] {
        let series = journal.rates(injected);
        let svg = rate_chart(&series, journal.span_secs(), "injected");
        let lines = series_polylines(&svg);
        assert_eq!(lines.len(), journal.faults.len(), "{svg}");
        for (line, fault) in lines.iter().zip(&journal.faults) {
            assert_eq!(line.len(), fault.counters.len(), "{}", fault.activity);
        }
    }
}

#[test]
fn rates_are_the_counters_differences_over_time() {
    let journal = sample_journal();
    let injected = &journal.rates(true)[0].points;
    // 5 injected in the 0.5 s since the action started at 0.2 s, then 10 per 0.5 s, then 5.
    let expected = [
        (0.7, 10.0),
        (1.2, 20.0),
        (1.7, 20.0),
        (2.2, 10.0),
        (2.7, 0.0),
    ];
    for ((at, rate), (want_at, want)) in injected.iter().zip(expected) {
        assert!(
            (at - want_at).abs() < 1e-9 && (rate - want).abs() < 1e-6,
            "{injected:?}"
        );
    }
    let matched = &journal.rates(false)[0].points;
    assert!((matched[1].1 - 40.0).abs() < 1e-6, "{matched:?}");
}

#[test]
fn the_timeline_has_every_probe_activity_fault_and_rollback_in_order() {
    let bars = sample_journal().timeline();
    let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "before: api-up",
            "action: refuse-connects",
            "action: drop-packets",
            "fault: refuse-connects",
            "fault: drop-packets",
            "after: api-up",
            "rollback: restart",
        ]
    );
    let fault = &bars[3];
    assert_eq!(fault.kind, BarKind::Fault);
    assert!((fault.start - 0.2).abs() < 1e-9 && (fault.end - 2.7).abs() < 1e-9);
    assert_eq!(bars[5].kind, BarKind::ProbeNotMet);
    assert!((bars[6].start - 5.5).abs() < 1e-9);
}

#[test]
fn the_page_is_self_contained_and_says_the_verdict() {
    let page = render(&sample_journal());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("DEVIATED"));
    // Escaped, not markup.
    assert!(page.contains("backend &lt;refused&gt;"));
    assert!(!page.contains("<refused>"));
    // Probe values and tolerances in the steady-state tables.
    assert!(page.contains("{&quot;status&quot;:503}"), "{page}");
    assert!(page.contains("<td><code>200</code></td>"));
    // Timeline plus two rate charts, all inline; nothing fetched.
    assert_eq!(page.matches("<svg").count(), 3);
    for external in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!page.contains(external), "{external} in the page");
    }
}

#[test]
fn a_journal_without_faults_or_timestamps_still_renders() {
    let journal: Journal = serde_json::from_value(json!({"status": "failed"})).unwrap();
    let page = render(&journal);
    assert!(page.contains("No fault ran."));
    assert!(page.contains("FAILED"));
}

#[test]
fn checks_during_the_method_share_a_row_per_probe() {
    let mut journal = sample_journal();
    let check = |at: &str, met: bool| SteadyState {
        steady_state_met: met,
        probes: vec![ActivityRun {
            activity: json!({"name": "api-up", "type": "probe"}),
            status: "succeeded".into(),
            start: format!("2026-11-30T10:00:{at}Z"),
            end: format!("2026-11-30T10:00:{at}Z"),
            tolerance_met: Some(met),
            ..ActivityRun::default()
        }],
    };
    journal.steady_states.during = vec![
        check("01.000", true),
        check("01.500", false),
        check("02.000", true),
    ];
    let bars = journal.timeline();
    let during: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.label == "during: api-up")
        .collect();
    assert_eq!(during.len(), 3);
    assert_eq!(during[1].kind, BarKind::ProbeNotMet);
    let rows = rows(&bars);
    assert_eq!(rows.len(), 8, "{rows:?}");
    assert_eq!(rows[1], "during: api-up");
    // One rectangle per bar (after the background), in 8 rows.
    let svg = timeline_chart(&bars, journal.span_secs());
    assert_eq!(svg.matches("<rect").count(), 1 + bars.len(), "{svg}");
}
