//! The report's charts, drawn by plotters into SVG strings. Legends are left to the page (HTML
//! swatches), so that every coloured `<polyline>` in a rate chart is one fault's series
//! (axes and ticks are black).
use plotters::{
    coord::ranged1d::{IntoSegmentedCoord as _, SegmentValue},
    prelude::*,
};

use super::{Bar, BarKind, Series, rows as timeline_rows};

const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";

/// The colour of the `i`th fault, in charts and in the page's legend.
pub fn series_colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 8] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    COLOURS[i % COLOURS.len()]
}

fn bar_colour(kind: BarKind) -> RGBColor {
    match kind {
        BarKind::Probe => RGBColor(0x4c, 0xaf, 0x50),
        BarKind::ProbeNotMet => RGBColor(0xe5, 0x39, 0x35),
        BarKind::Action => RGBColor(0x42, 0x85, 0xf4),
        BarKind::Fault => RGBColor(0xfb, 0x8c, 0x00),
        BarKind::Rollback => RGBColor(0x9e, 0x9e, 0x9e),
        BarKind::Failed => RGBColor(0x8e, 0x24, 0xaa),
    }
}

/// Errors of plotters' SVG backend only come from writing into the string, which cannot fail;
/// a chart that could not be drawn becomes a note instead of failing the report.
fn or_note(drawn: Result<String, String>) -> String {
    drawn.unwrap_or_else(|e| format!("<p class=\"note\">chart not drawn: {e}</p>"))
}

/// The timeline: one row per bar, seconds across.
pub fn timeline_chart(bars: &[Bar], span: f64) -> String {
    or_note(draw_timeline(bars, span))
}

fn draw_timeline(bars: &[Bar], span: f64) -> Result<String, String> {
    let mut svg = String::new();
    let labels = timeline_rows(bars);
    let rows = labels.len().max(1);
    let height = 60 + 26 * rows as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(260)
            .build_cartesian_2d(0f64..span, (0..rows).into_segmented())
            .map_err(|e| e.to_string())?;
        // The first row on top: rows count from the bottom.
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => (rows - 1)
                .checked_sub(*i)
                .and_then(|row| labels.get(row))
                .map(|l| shorten(l, 38))
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            .y_label_formatter(&label)
            .x_desc("seconds since the start")
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().map(|b| {
                let i = labels.iter().position(|l| *l == b.label).unwrap_or(0);
                let row = rows - 1 - i;
                // A bar too short to see (a probe of a few ms) still gets a visible sliver.
                let end = b.end.max(b.start + span / 400.0);
                Rectangle::new(
                    [
                        (b.start, SegmentValue::Exact(row)),
                        (end, SegmentValue::Exact(row + 1)),
                    ],
                    bar_colour(b.kind).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One fault's `what` per second over time, one `<polyline>` per series.
pub fn rate_chart(series: &[Series], span: f64, what: &str) -> String {
    or_note(draw_rates(series, span, what))
}

fn draw_rates(series: &[Series], span: f64, what: &str) -> Result<String, String> {
    let mut svg = String::new();
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    // Headroom above the highest point, and a visible axis when nothing happened.
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .caption(format!("{what} per second"), (FONT, 16))
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..span, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc(format!("{what}/s"))
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in series.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    series_colour(i).stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
