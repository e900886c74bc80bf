//! The live view of running faults on stderr, for `chaos inject` and `chaos status --watch`.
//!
//! On a terminal: one block redrawn in place (indicatif), a header and a row per fault with its
//! kind, what it does, matched, injected, injections per second, a sparkline of the last
//! minute's injections and the time left; `q` stops like Ctrl-C where keys are read.
//! Elsewhere (a pipe, CI): a plain line per fault when its counters change, at most once a
//! second per fault.
//!
//! The callers feed it a [`FaultRow`] per fault on every tick, as often as they like; it keeps
//! the history, throttles, and draws.
use std::{
    collections::VecDeque,
    io::IsTerminal as _,
    os::fd::AsFd as _,
    time::{Duration, Instant},
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{daemon::api::FaultStatus, report::Report};

/// One fault's counters at a tick.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRow {
    /// `syscall`, `net-drop`, ...
    pub kind: String,
    /// What it does: `connect -> ECONNREFUSED`, `drop 30%`.
    pub what: String,
    /// Calls (packets) of the target that matched.
    pub matched: u64,
    /// Calls failed, delayed, signalled; packets affected.
    pub injected: u64,
    /// Time until it ends, when it has an end.
    pub left: Option<Duration>,
}

/// The rows of a `chaos inject` report, one per syscall.
pub fn rows_of_report(report: &Report, left: Option<Duration>) -> Vec<FaultRow> {
    report
        .faults
        .iter()
        .map(|f| {
            let effect = f.effect.as_deref().unwrap_or(&f.errno);
            FaultRow {
                kind: f.kind.to_owned(),
                what: format!("{} -> {effect}{}", f.syscall, dry(f.dry_run)),
                matched: f.matched,
                injected: f.injected,
                left,
            }
        })
        .collect()
}

/// The rows of a daemon's fault listing, one per fault.
pub fn rows_of_status(faults: &[FaultStatus]) -> Vec<FaultRow> {
    faults
        .iter()
        .map(|f| FaultRow {
            kind: f.kind.clone(),
            // The daemon's description already says `(dry run)`.
            what: format!("#{} {}", f.id, f.description),
            matched: f.matched,
            injected: f.injected,
            left: Some(Duration::from_secs_f64(f.remaining_secs.max(0.0))),
        })
        .collect()
}

fn dry(dry_run: bool) -> &'static str {
    if dry_run { " (dry)" } else { "" }
}

/// How long the sparkline looks back, and its width in characters.
const SPARK_SPAN: Duration = Duration::from_secs(60);
const SPARK_WIDTH: usize = 30;
/// How often a fault's counters go into its history.
const HISTORY_EVERY: Duration = Duration::from_millis(250);
/// Off a terminal, the least time between two lines of one fault.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// One fault's recent counters, for its rate and sparkline.
#[derive(Debug, Default)]
pub struct History {
    /// `(when, injected)`, oldest first, covering the last minute.
    points: VecDeque<(Instant, u64)>,
}

impl History {
    /// Records `injected` at `now` (at most every 250 ms; the latest value always counts).
    pub fn record(&mut self, now: Instant, injected: u64) {
        // Points stay 250 ms apart but the newest, which moves forward with each call.
        let len = self.points.len();
        let before_last = len
            .checked_sub(2)
            .and_then(|i| self.points.get(i))
            .map(|p| p.0);
        match self.points.back_mut() {
            Some(last) if before_last.is_some_and(|t| now.duration_since(t) < HISTORY_EVERY) => {
                *last = (now, injected);
            }
            _ => self.points.push_back((now, injected)),
        }
        while self.points.len() > 2
            && self
                .points
                .get(1)
                .is_some_and(|p| now.duration_since(p.0) > SPARK_SPAN + Duration::from_secs(2))
        {
            self.points.pop_front();
        }
    }

    /// The count at `t`: the latest point at or before it.
    fn at(&self, t: Instant) -> Option<u64> {
        self.points
            .iter()
            .take_while(|p| p.0 <= t)
            .last()
            .map(|p| p.1)
    }

    /// Injections per second over about the last second.
    pub fn rate(&self) -> f64 {
        let Some(&(now, last)) = self.points.back() else {
            return 0.0;
        };
        let since = now.checked_sub(Duration::from_secs(1));
        let base = self
            .points
            .iter()
            .rev()
            .find(|p| since.is_none_or(|s| p.0 <= s))
            .or(self.points.front());
        match base {
            Some(&(at, before)) if now > at => {
                last.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// The last minute's injections as block characters, oldest left; blank before the
    /// first point.
    pub fn sparkline(&self) -> String {
        const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let (Some(&(first, _)), Some(&(now, _))) = (self.points.front(), self.points.back()) else {
            return " ".repeat(SPARK_WIDTH);
        };
        let bucket = SPARK_SPAN / SPARK_WIDTH as u32;
        let counts: Vec<Option<u64>> = (0..SPARK_WIDTH)
            .map(|i| {
                let end = now.checked_sub(bucket * (SPARK_WIDTH - 1 - i) as u32)?;
                let start = end.checked_sub(bucket)?;
                if end < first {
                    return None;
                }
                let before = self.at(start).unwrap_or(0);
                Some(self.at(end)?.saturating_sub(before))
            })
            .collect();
        let top = counts.iter().flatten().copied().max().unwrap_or(0);
        counts
            .iter()
            .map(|c| match c {
                None => ' ',
                Some(0) => LEVELS[0],
                Some(n) => LEVELS[((n * 7).div_ceil(top.max(1)) as usize).min(7)],
            })
            .collect()
    }
}

/// Whether the view reads `q` from the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Read keys: stdin is the user's (nothing else runs in the foreground).
    Read,
    /// Leave stdin alone (a command chaos started reads it).
    Ignore,
}

/// The view: fed rows per tick, drawn on stderr.
pub struct LiveView {
    started: Instant,
    /// Per fault, by kind and description, so that a fault keeps its history when others
    /// come and go (`chaos status --watch`).
    tracks: Vec<Track>,
    out: Output,
    keys: Option<RawKeys>,
}

/// One fault as the view follows it.
struct Track {
    key: String,
    history: History,
    /// Off a terminal: when its last line was printed, with which `(matched, injected)`.
    shown: Option<Instant>,
    counters: Option<(u64, u64)>,
}

enum Output {
    /// Redrawn in place.
    Terminal {
        multi: MultiProgress,
        header: ProgressBar,
        bars: Vec<ProgressBar>,
    },
    /// Plain lines, throttled per fault.
    Lines,
    /// Nothing (`--json` off a terminal: stdout is for the result, stderr stays quiet).
    Quiet,
}

impl LiveView {
    /// A view on stderr: in place on a terminal, lines elsewhere (none when `quiet_off_tty`).
    pub fn new(quiet_off_tty: bool, keys: Keys) -> LiveView {
        let terminal = std::io::stderr().is_terminal();
        let out = if terminal {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let header = multi.add(ProgressBar::new_spinner().with_style(plain_style()));
            Output::Terminal {
                multi,
                header,
                bars: Vec::new(),
            }
        } else if quiet_off_tty {
            Output::Quiet
        } else {
            Output::Lines
        };
        let keys = (terminal && keys == Keys::Read)
            .then(RawKeys::enable)
            .flatten();
        LiveView {
            started: Instant::now(),
            tracks: Vec::new(),
            out,
            keys,
        }
    }

    /// Shows this tick's counters.
    pub fn update(&mut self, rows: &[FaultRow]) {
        let now = Instant::now();
        let mut old = std::mem::take(&mut self.tracks);
        self.tracks = rows
            .iter()
            .map(|r| {
                let key = format!("{} {}", r.kind, r.what);
                let mut track = match old.iter().position(|t| t.key == key) {
                    Some(i) => old.swap_remove(i),
                    None => Track {
                        key,
                        history: History::default(),
                        shown: None,
                        counters: None,
                    },
                };
                track.history.record(now, r.injected);
                track
            })
            .collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        match &mut self.out {
            Output::Quiet => {}
            Output::Terminal {
                multi,
                header,
                bars,
            } => {
                while bars.len() < rows.len() {
                    bars.push(multi.add(ProgressBar::new_spinner().with_style(plain_style())));
                }
                // Faults that ended leave the block.
                for gone in bars.drain(rows.len()..) {
                    gone.finish_and_clear();
                    multi.remove(&gone);
                }
                let quit = if self.keys.is_some() {
                    "q or Ctrl-C stops"
                } else {
                    "Ctrl-C stops"
                };
                header.set_message(format!(
                    "{:<10} {:<30} {:>9} {:>9} {:>8}  {:<SPARK_WIDTH$} {:>6}   {elapsed:.0}s, {quit}",
                    "kind", "fault", "matched", "injected", "inj/s", "last minute", "left"
                ));
                for ((bar, row), t) in bars.iter().zip(rows).zip(&self.tracks) {
                    bar.set_message(format!(
                        "{} {} {:>6}",
                        columns(row, t.history.rate()),
                        t.history.sparkline(),
                        left(row.left)
                    ));
                }
            }
            Output::Lines => {
                for (row, t) in rows.iter().zip(&mut self.tracks) {
                    // The rate and time left change every tick; a line is due when the
                    // counters do, at most once a second.
                    let counters = Some((row.matched, row.injected));
                    if counters != t.counters
                        && t.shown.is_none_or(|s| now.duration_since(s) >= LINE_EVERY)
                    {
                        eprintln!(
                            "chaos: [{elapsed:>6.1}s] {} {} matched {} injected {} ({:.1}/s), {} left",
                            row.kind,
                            row.what,
                            row.matched,
                            row.injected,
                            t.history.rate(),
                            left(row.left)
                        );
                        t.shown = Some(now);
                        t.counters = counters;
                    }
                }
            }
        }
    }

    /// Whether `q` was pressed since the last call.
    pub fn quit_requested(&mut self) -> bool {
        self.keys.as_mut().is_some_and(RawKeys::quit_pressed)
    }

    /// Leaves the last drawing on the screen and restores the terminal.
    pub fn finish(self) {
        if let Output::Terminal { header, bars, .. } = &self.out {
            header.finish();
            for bar in bars {
                bar.finish();
            }
        }
    }
}

fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("a valid template")
}

/// `kind fault matched injected inj/s` in fixed columns.
fn columns(row: &FaultRow, rate: f64) -> String {
    format!(
        "{:<10} {:<30} {:>9} {:>9} {:>8.1} ",
        row.kind,
        cut(&row.what, 30),
        row.matched,
        row.injected,
        rate
    )
}

fn left(left: Option<Duration>) -> String {
    left.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.0}s", d.as_secs_f64().ceil()),
    )
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max - 1).chain(['…']).collect()
    }
}

/// The terminal in non-canonical mode without echo, so that `q` arrives without Enter; Ctrl-C
/// still sends SIGINT (ISIG stays on). Restored on drop.
struct RawKeys {
    saved: nix::sys::termios::Termios,
}

impl RawKeys {
    fn enable() -> Option<RawKeys> {
        use nix::sys::termios::{
            LocalFlags, SetArg, SpecialCharacterIndices, tcgetattr, tcsetattr,
        };
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        // In the background (`chaos inject ... &`), changing the terminal would stop chaos
        // with SIGTTOU, and the keys are the foreground job's anyway.
        if nix::unistd::tcgetpgrp(stdin.as_fd()).ok() != Some(nix::unistd::getpgrp()) {
            return None;
        }
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        // Reads return at once, with or without a key.
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 0;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawKeys { saved })
    }

    fn quit_pressed(&mut self) -> bool {
        let mut buf = [0u8; 16];
        let stdin = std::io::stdin();
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(n) => buf[..n].iter().any(|&b| b == b'q' || b == b'Q'),
            Err(_) => false,
        }
    }
}

impl Drop for RawKeys {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: &[(u64, u64)]) -> History {
        // (milliseconds after t0, injected)
        let t0 = Instant::now();
        let mut h = History::default();
        for &(ms, n) in points {
            h.record(t0 + Duration::from_millis(ms), n);
        }
        h
    }

    #[test]
    fn the_rate_is_over_the_last_second() {
        let h = history(&[(0, 0), (500, 50), (1000, 100), (1500, 300), (2000, 500)]);
        assert!((h.rate() - 400.0).abs() < 1e-6, "{}", h.rate());
        assert_eq!(history(&[(0, 7)]).rate(), 0.0);
        // Half a second in: over what there is.
        assert!((history(&[(0, 0), (500, 10)]).rate() - 20.0).abs() < 1e-6);
    }

    #[test]
    fn history_keeps_about_a_minute_and_points_four_times_a_second() {
        let h = history(&(0..1000u64).map(|i| (i * 100, i)).collect::<Vec<_>>());
        // 100 s of points every 100 ms: a minute's worth, a few a second.
        assert!(h.points.len() <= 64 * 5, "{}", h.points.len());
        let span = h.points.back().unwrap().0 - h.points.front().unwrap().0;
        assert!(
            span >= SPARK_SPAN && span <= SPARK_SPAN + Duration::from_secs(3),
            "{span:?}"
        );
    }

    #[test]
    fn the_sparkline_is_a_minute_wide_and_rises_with_the_rate() {
        // 10 s idle, then 10 s of 10/s, then 10 s of 100/s.
        let mut points = vec![];
        let mut n = 0;
        for s in 0..=30u64 {
            points.push((s * 1000, n));
            n += match s {
                0..10 => 0,
                10..20 => 10,
                _ => 100,
            };
        }
        let line = history(&points).sparkline();
        assert_eq!(line.chars().count(), SPARK_WIDTH);
        let chars: Vec<char> = line.chars().collect();
        // The first half is before the fault started; then flat, low, high.
        assert_eq!(chars[0], ' ');
        assert_eq!(chars[SPARK_WIDTH - 1], '█');
        assert!(chars.contains(&'▁'));
        let low = chars[SPARK_WIDTH - 8];
        assert!(low > '▁' && low < '█', "{line}");
        assert_eq!(History::default().sparkline(), " ".repeat(SPARK_WIDTH));
    }

    #[test]
    fn rows_name_the_fault_and_its_effect() {
        let report = Report {
            faults: vec![crate::report::FaultReport {
                kind: "syscall",
                syscall: "connect".into(),
                errno: "ECONNREFUSED".into(),
                effect: None,
                target: "/sys/fs/cgroup/x".into(),
                dry_run: true,
                matched: 3,
                injected: 2,
            }],
        };
        let rows = rows_of_report(&report, Some(Duration::from_millis(4200)));
        assert_eq!(rows[0].what, "connect -> ECONNREFUSED (dry)");
        let line = columns(&rows[0], 2.0);
        assert!(
            line.starts_with("syscall    connect -> ECONNREFUSED (dry)"),
            "{line}"
        );
        assert_eq!(left(rows[0].left), "5s");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
