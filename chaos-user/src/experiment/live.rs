//! What `chaos run` shows while it runs: on a terminal, a block redrawn in place (phase,
//! elapsed time, each fault's counters and time left, the last probe results) under the log;
//! otherwise plain `chaos: [t] ...` lines, with fault counters when they change.
use std::{
    io::{IsTerminal as _, Write as _},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::fault::RunningFault;

/// The view on stderr.
pub struct LiveView {
    live: bool,
    started: Instant,
    phase: String,
    probes: Vec<String>,
    drawn: usize,
    last_draw: Option<Instant>,
    last_counters: Vec<String>,
    last_counter_line: Option<Instant>,
    /// Where log lines go instead of stderr (an experiment run by the daemon).
    record: Option<Arc<Mutex<Vec<String>>>>,
}

impl LiveView {
    /// A view that redraws in place when stderr is a terminal.
    pub fn new(started: Instant) -> LiveView {
        LiveView {
            live: std::io::stderr().is_terminal(),
            started,
            phase: "starting".into(),
            probes: Vec::new(),
            drawn: 0,
            last_draw: None,
            last_counters: Vec::new(),
            last_counter_line: None,
            record: None,
        }
    }

    /// A view that writes nothing to stderr and appends its log lines (`[  1.2s] msg`) to
    /// `record` instead, for an experiment the daemon runs for a client.
    pub fn recording(started: Instant, record: Arc<Mutex<Vec<String>>>) -> LiveView {
        LiveView {
            live: false,
            record: Some(record),
            ..LiveView::new(started)
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Enters a phase (steady state before, method, ...).
    pub fn phase(&mut self, phase: &str) {
        self.phase = phase.to_owned();
        self.log(phase);
    }

    /// A line for the log.
    pub fn log(&mut self, msg: &str) {
        if let Some(record) = &self.record {
            let line = format!("[{:>6.1}s] {msg}", self.elapsed());
            record.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            return;
        }
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
        let _ = writeln!(err, "chaos: [{:>6.1}s] {msg}", self.elapsed());
        self.drawn = 0;
        self.last_draw = None;
    }

    /// Remembers a probe's result for the live block.
    pub fn probe(&mut self, name: &str, met: bool, detail: &str) {
        let line = format!("{name}: {}{detail}", if met { "ok" } else { "NOT MET " });
        self.log(&format!("probe {line}"));
        self.probes.retain(|p| !p.starts_with(&format!("{name}:")));
        self.probes.push(line);
        if self.probes.len() > 5 {
            self.probes.remove(0);
        }
    }

    /// Shows the faults' counters: redrawn a few times a second on a terminal, printed as a
    /// line at most once a second and only when they change otherwise.
    pub fn tick(&mut self, faults: &[RunningFault]) {
        if self.record.is_some() {
            // The daemon's clients read the counters from its fault listing.
            return;
        }
        let lines: Vec<String> = faults
            .iter()
            .map(|f| {
                let counters: Vec<String> = f
                    .last()
                    .iter()
                    .map(|c| format!("{} matched {} injected {}", c.rule, c.matched, c.injected))
                    .collect();
                let state = match (f.active(), f.remaining()) {
                    (false, _) => " (removed)".to_owned(),
                    (true, Some(left)) => format!(" ({:.0}s left)", left.as_secs_f64().ceil()),
                    (true, None) => String::new(),
                };
                format!("fault {}: {}{state}", f.activity, counters.join("; "))
            })
            .collect();
        if self.live {
            if self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
            {
                return;
            }
            let mut err = std::io::stderr().lock();
            self.clear(&mut err);
            let mut block = vec![format!("  {} | {:.1}s elapsed", self.phase, self.elapsed())];
            block.extend(lines.iter().map(|l| format!("  {l}")));
            block.extend(self.probes.iter().map(|p| format!("  last probe {p}")));
            for line in &block {
                let _ = writeln!(err, "\x1b[2K{line}");
            }
            self.drawn = block.len();
            self.last_draw = Some(Instant::now());
        } else if lines != self.last_counters
            && self
                .last_counter_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            for line in &lines {
                eprintln!("chaos: [{:>6.1}s] {line}", self.elapsed());
            }
            self.last_counters = lines;
            self.last_counter_line = Some(Instant::now());
        }
    }

    fn clear(&self, err: &mut impl std::io::Write) {
        if self.live && self.drawn > 0 {
            // Up over the block and clear it.
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
        }
    }
}
