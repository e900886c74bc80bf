//! The benchmark's ratios as an SVG chart (plotters), drawn from its JSON: one row per
//! configuration with the paired ratio's median (dot) and min–max (whisker), and a line at 1,
//! the baseline. Overhead (CPU time) and the injection path are two panels, since strace's
//! ratios are an order of magnitude above the overhead's.
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::{
    coord::ranged1d::{IntoSegmentedCoord as _, SegmentValue},
    prelude::*,
};
use serde_json::Value;

/// One row: a configuration's paired ratio to its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Ratio {
    /// `socket: bystander 100 rules`.
    pub label: String,
    /// Median over repetitions.
    pub median: f64,
    /// Smallest and largest over repetitions.
    pub min: f64,
    pub max: f64,
}

/// A figure's paired ratio, from its `part` (`cpu` or `wall`) where it has one, else from the
/// figure itself (the host tier's injection path is wall time at the top level, as
/// BENCHMARKS.md's table shows it).
fn ratio(label: String, figure: &Value, part: &str) -> Option<Ratio> {
    let figure = figure.get(part).unwrap_or(figure);
    let get = |k: &str| figure.get(k).and_then(Value::as_f64);
    Some(Ratio {
        label,
        median: get("paired_ratio_median")?,
        min: get("paired_ratio_min")?,
        max: get("paired_ratio_max")?,
    })
}

fn words(key: &str) -> String {
    key.replace("_rules", " rules").replace('_', " ")
}

/// The overhead rows: every operation measured, every configuration but the baseline.
pub fn overhead(bench: &Value) -> Vec<Ratio> {
    let Some(ops) = bench.get("overhead").and_then(Value::as_object) else {
        return Vec::new();
    };
    ops.iter()
        .flat_map(|(op, configs)| {
            configs
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(config, _)| *config != "baseline")
                .filter_map(move |(config, figure)| {
                    ratio(format!("{op}: {}", words(config)), figure, "cpu")
                })
        })
        .collect()
}

/// The injection path rows: chaos, and strace where it was measured.
pub fn injection(bench: &Value) -> Vec<Ratio> {
    let Some(path) = bench.get("injection_path") else {
        return Vec::new();
    };
    let op = path.get("op").and_then(Value::as_str).unwrap_or("?");
    ["chaos", "strace", "strace_seccomp_bpf"]
        .into_iter()
        .filter_map(|who| {
            ratio(
                format!("{op}, every 10th fails: {}", words(who)),
                path.get(who)?,
                "wall",
            )
        })
        .collect()
}

/// The chart for one benchmark result.
pub fn chart(bench: &Value) -> anyhow::Result<String> {
    let panels = [
        (
            "Overhead: CPU time, paired ratio to baseline",
            overhead(bench),
        ),
        (
            "Injection path: wall time, paired ratio to baseline",
            injection(bench),
        ),
    ];
    let panels: Vec<_> = panels
        .into_iter()
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    anyhow::ensure!(!panels.is_empty(), "no ratios in this benchmark result");
    let heights: Vec<u32> = panels
        .iter()
        .map(|(_, rows)| 70 + 24 * rows.len() as u32)
        .collect();
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (900, heights.iter().sum())).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut rest = root;
        for ((title, rows), height) in panels.iter().zip(&heights) {
            let (area, below) = rest.split_vertically(*height);
            panel(&area, title, rows).map_err(|e| anyhow::anyhow!("{e}"))?;
            rest = below;
        }
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn panel(area: &Area<'_>, title: &str, rows: &[Ratio]) -> Result<(), Box<dyn std::error::Error>> {
    let lo = rows.iter().map(|r| r.min).fold(1.0, f64::min);
    let hi = rows.iter().map(|r| r.max).fold(1.0, f64::max);
    let pad = (hi - lo).max(0.1) * 0.05;
    let n = rows.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(300)
        .build_cartesian_2d((lo - pad)..(hi + pad), (0..n).into_segmented())?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => (n - 1)
            .checked_sub(*i)
            .and_then(|row| rows.get(row))
            .map(|r| r.label.clone())
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .label_style(("sans-serif", 12))
        .draw()?;
    // The baseline.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
        BLACK.mix(0.5).stroke_width(1),
    )))?;
    let blue = RGBColor(0x1f, 0x77, 0xb4);
    for (i, r) in rows.iter().enumerate() {
        let row = SegmentValue::CenterOf(n - 1 - i);
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(r.min, row.clone()), (r.max, row.clone())],
            blue.stroke_width(2),
        )))?;
        chart.draw_series(std::iter::once(Circle::new(
            (r.median, row),
            4,
            blue.filled(),
        )))?;
    }
    // No present() here: the SVG backend closes its document there, and the panels share one
    // (the root presents it on drop).
    Ok(())
}

/// Writes `json`'s chart beside it (`bench/host.json` → `bench/host.svg`) and returns its path.
pub fn write_beside(json: &Path) -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let bench: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a benchmark result", json.display()))?;
    let out = json.with_extension("svg");
    std::fs::write(
        &out,
        chart(&bench).with_context(|| json.display().to_string())?,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn figure(median: f64) -> Value {
        json!({"paired_ratio_median": median, "paired_ratio_min": median - 0.1,
               "paired_ratio_max": median + 0.1})
    }

    #[test]
    fn every_configuration_but_the_baseline_is_a_row_in_order() {
        let bench = json!({
            "overhead": {
                "socket": {"family": "x", "iterations": 1, "baseline": {"cpu": figure(1.0)},
                           "bystander_1_rules": {"cpu": figure(1.02)},
                           "target_1000_rules_never_fire": {"cpu": figure(1.08)}},
                "openat": {"family": "lsm", "skipped": "no BPF LSM"}
            },
            "injection_path": {"op": "socket", "chaos": figure(1.0), "strace": figure(8.0)}
        });
        let rows = overhead(&bench);
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "socket: bystander 1 rules",
                "socket: target 1000 rules never fire"
            ]
        );
        assert_eq!(rows[1].median, 1.08);
        assert_eq!(injection(&bench).len(), 2);
        let svg = chart(&bench).unwrap();
        // A dot per row, both panels, in one document.
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert_eq!(svg.matches("</svg>").count(), 1, "one document: {svg}");
        assert_eq!(svg.matches("</svg>").count(), 1, "{svg}");
    }

    #[test]
    fn the_committed_results_chart() {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
        for name in ["host.json", "vm-6.12.json"] {
            let text = std::fs::read_to_string(bench.join(name)).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            assert!(!overhead(&value).is_empty(), "{name}");
            chart(&value).unwrap();
        }
    }
}
