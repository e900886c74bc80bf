//! The report page: a verdict, the charts inline, and tables. No script, no external file.
use std::fmt::Write as _;

use serde_json::Value;

use super::{ActivityRun, Journal, SteadyState, chart};

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1000px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;font-size:.9em}\
td,th{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,pre{font-family:monospace;font-size:.9em}\
pre{margin:0;white-space:pre-wrap;word-break:break-all}\
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;color:#fff;font-weight:bold}\
.completed{background:#2e7d32}.deviated{background:#e65100}.failed{background:#c62828}\
.aborted{background:#616161}.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}\
.swatch{display:inline-block;width:1em;height:.8em;margin-right:.3em;vertical-align:middle}\
.legend span{margin-right:1.2em}.meta{color:#555}.note{color:#555;font-style:italic}";

/// The whole page for a journal.
pub fn render(journal: &Journal) -> String {
    let span = journal.span_secs();
    let mut page = String::new();
    let title = esc(journal.title());
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>chaos report: {title}</title><style>{STYLE}</style></head><body>\n\
         <h1>{title}</h1>\n"
    );
    let status = if journal.status.is_empty() {
        "unknown"
    } else {
        journal.status.as_str()
    };
    let _ = writeln!(
        page,
        "<p><span class=\"verdict {status}\">{}</span> {}</p>\
         <p class=\"meta\">started {} · ran {:.1} s · chaos {} · {} on {}</p>",
        esc(&status.to_uppercase()),
        esc(verdict_text(journal)),
        esc(&journal.start),
        journal.duration,
        esc(&journal.chaos_version),
        esc(&journal.platform),
        esc(&journal.node),
    );

    page.push_str("<h2>Timeline</h2>\n");
    page.push_str(
        "<p class=\"legend\"><span><i class=\"swatch\" style=\"background:#4caf50\"></i>probe \
         ok</span><span><i class=\"swatch\" style=\"background:#e53935\"></i>probe not \
         met</span><span><i class=\"swatch\" style=\"background:#4285f4\"></i>action</span>\
         <span><i class=\"swatch\" style=\"background:#fb8c00\"></i>fault active</span>\
         <span><i class=\"swatch\" style=\"background:#9e9e9e\"></i>rollback</span>\
         <span><i class=\"swatch\" style=\"background:#8e24aa\"></i>failed</span></p>\n",
    );
    page.push_str(&chart::timeline_chart(&journal.timeline(), span));

    page.push_str("\n<h2>Faults</h2>\n");
    if journal.faults.is_empty() {
        page.push_str("<p class=\"note\">No fault ran.</p>\n");
    } else {
        faults(&mut page, journal, span);
    }

    page.push_str("<h2>Steady state</h2>\n");
    steady_state(
        &mut page,
        "Before the method",
        &journal.steady_states.before,
    );
    for (i, during) in journal.steady_states.during.iter().enumerate() {
        steady_state(
            &mut page,
            &format!("During the method (check {})", i + 1),
            &Some(during.clone()),
        );
    }
    steady_state(&mut page, "After the method", &journal.steady_states.after);

    page.push_str("<h2>Method</h2>\n");
    activities(&mut page, journal, &journal.run);
    page.push_str("<h2>Rollbacks</h2>\n");
    activities(&mut page, journal, &journal.rollbacks);
    page.push_str("</body></html>\n");
    page
}

fn verdict_text(journal: &Journal) -> &'static str {
    match journal.status.as_str() {
        "completed" => "the steady state held",
        "deviated" => "the steady state did not hold during or after the method",
        "failed" => {
            "could not run as written: the steady state did not hold before the method, or a \
             fault could not start"
        }
        "aborted" => "interrupted",
        _ => "",
    }
}

fn faults(page: &mut String, journal: &Journal, span: f64) {
    page.push_str(
        "<table><tr><th></th><th>action</th><th>fault</th><th>target</th><th>active</th>\
         <th>matched</th><th>injected</th><th>peak injected/s</th><th>samples</th></tr>\n",
    );
    let injected = journal.rates(true);
    let bars = journal.timeline();
    for (i, f) in journal.faults.iter().enumerate() {
        let (matched, inj) = f.counters.last().map(|s| s.totals()).unwrap_or_default();
        let peak = injected[i].points.iter().map(|p| p.1).fold(0.0, f64::max);
        let window = bars
            .iter()
            .find(|b| b.label == format!("fault: {}", f.activity))
            .map_or_else(
                || "-".to_owned(),
                |b| format!("{:.1} s – {:.1} s", b.start, b.end),
            );
        let colour = chart::series_colour(i);
        let _ = writeln!(
            page,
            "<tr><td><i class=\"swatch\" style=\"background:rgb({},{},{})\"></i></td>\
             <td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{window}</td>\
             <td>{matched}</td><td>{inj}</td><td>{peak:.1}</td><td>{}</td></tr>",
            colour.0,
            colour.1,
            colour.2,
            esc(&f.activity),
            esc(&f.command),
            esc(&f.target),
            f.counters.len(),
        );
    }
    page.push_str("</table>\n");
    page.push_str(&chart::rate_chart(&injected, span, "injected"));
    page.push('\n');
    page.push_str(&chart::rate_chart(&journal.rates(false), span, "matched"));
    page.push('\n');
}

fn steady_state(page: &mut String, heading: &str, state: &Option<SteadyState>) {
    let _ = writeln!(page, "<h3>{}</h3>", esc(heading));
    let Some(state) = state else {
        page.push_str("<p class=\"note\">Not checked.</p>\n");
        return;
    };
    let (class, met) = if state.steady_state_met {
        ("ok", "met")
    } else {
        ("bad", "NOT met")
    };
    let _ = writeln!(
        page,
        "<p>Steady state <span class=\"{class}\">{met}</span>.</p>\
         <table><tr><th>probe</th><th>value</th><th>tolerance</th><th>within</th></tr>"
    );
    for p in &state.probes {
        let tolerance = p
            .activity
            .get("tolerance")
            .map_or_else(|| "-".to_owned(), compact);
        let (class, within) = match p.tolerance_met {
            Some(true) => ("ok", "yes"),
            Some(false) => ("bad", "no"),
            None => ("", "-"),
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td><pre>{}</pre></td><td><code>{}</code></td>\
             <td class=\"{class}\">{within}</td></tr>",
            esc(p.name()),
            esc(&value_or_error(p)),
            esc(&tolerance),
        );
    }
    page.push_str("</table>\n");
}

fn activities(page: &mut String, journal: &Journal, runs: &[ActivityRun]) {
    if runs.is_empty() {
        page.push_str("<p class=\"note\">None ran.</p>\n");
        return;
    }
    page.push_str(
        "<table><tr><th>activity</th><th>kind</th><th>at</th><th>took</th><th>status</th>\
         <th>output</th></tr>\n",
    );
    for r in runs {
        let at = journal
            .span(r)
            .map_or_else(|| "-".to_owned(), |(s, _)| format!("{s:.1} s"));
        let class = if r.status == "failed" { "bad" } else { "ok" };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{at}</td><td>{:.2} s</td>\
             <td class=\"{class}\">{}</td><td><pre>{}</pre></td></tr>",
            esc(r.name()),
            esc(r.kind()),
            r.duration,
            esc(&r.status),
            esc(&value_or_error(r)),
        );
    }
    page.push_str("</table>\n");
}

/// The output, or the exception when it failed, cut to what fits a table cell.
fn value_or_error(run: &ActivityRun) -> String {
    let text = match (&run.exception, &run.output) {
        (Some(why), _) => why.join("\n"),
        (None, Some(out)) => compact(out),
        (None, None) => "-".to_owned(),
    };
    if text.chars().count() > 400 {
        let mut cut: String = text.chars().take(400).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
