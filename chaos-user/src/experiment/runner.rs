//! Running an experiment: steady state, method, steady state, faults removed, rollbacks.
//!
//! Faults are started on this thread and live in [`Runner::faults`]; every path out of
//! [`run`] (completion, deviation, error, interruption) goes through the one place that
//! removes them, and a panic or a kill removes them too because the kernel detaches links
//! when their file descriptors close. Other activities run on worker threads while this
//! thread samples the faults' counters and watches for an interruption.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Value, json};

use crate::engine::{StartedFault, TargetCheck};

use super::{
    credentials::RunAs,
    fault::RunningFault,
    format::{Activity, Experiment, HypothesisStrategy, Provider, RollbackStrategy},
    journal::{
        ActivityRun, FaultRecord, Journal, Status, SteadyState, SteadyStates, machine, timestamp,
    },
    live::LiveView,
    providers,
    tolerance::{self, Verdict},
};

/// Options of `chaos run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Faults count what they would fail and fail nothing.
    pub dry_run: bool,
    /// Overrides `runtime.rollbacks.strategy`.
    pub rollback_strategy: Option<RollbackStrategy>,
    /// Told of each fault the experiment starts (the daemon lists them and may stop them).
    pub observer: Option<FaultObserver>,
    /// Where the log lines go instead of stderr (see [`LiveView::recording`]).
    pub log: Option<Arc<Mutex<Vec<String>>>>,
    /// Whose rights process and python activities run with (the daemon's client); `None`:
    /// chaos's own.
    pub run_as: Option<Arc<RunAs>>,
    /// Decides on each fault's resolved target before it is attached (the daemon authorizes
    /// its client).
    pub fault_check: Option<FaultCheck>,
}

/// A shared [`TargetCheck`].
#[derive(Clone)]
pub struct FaultCheck(pub Arc<TargetCheck>);

impl std::fmt::Debug for FaultCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultCheck")
    }
}

/// Called with the action's name and the fault each time the experiment starts one. An error
/// refuses the fault: it is stopped again and the action fails with that message.
pub type ObserveFault = dyn Fn(&str, &Arc<StartedFault>) -> Result<(), String> + Send + Sync;

/// A shared [`ObserveFault`].
#[derive(Clone)]
pub struct FaultObserver(pub Arc<ObserveFault>);

impl std::fmt::Debug for FaultObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultObserver")
    }
}

/// Runs `exp` until it ends or `stop` is set (by SIGINT/SIGTERM), and returns its journal.
pub fn run(exp: &Experiment, opts: RunOptions, stop: Arc<AtomicBool>) -> Journal {
    let started = Instant::now();
    let view = match &opts.log {
        Some(record) => LiveView::recording(started, Arc::clone(record)),
        None => LiveView::new(started),
    };
    let rollback_strategy = opts.rollback_strategy;
    let mut runner = Runner {
        stop,
        started,
        faults: Vec::new(),
        view,
        last_sample: None,
        fault_failed: false,
        opts,
        cut_method: None,
    };
    let start_time = SystemTime::now();
    let strategy = exp.runtime.strategy;
    let mut states = SteadyStates::default();
    let mut run = Vec::new();
    let mut deviated = false;
    let mut before_failed = false;
    let mut method_started = false;

    let check_before = matches!(
        strategy,
        HypothesisStrategy::Default
            | HypothesisStrategy::BeforeMethodOnly
            | HypothesisStrategy::Continuously
    );
    let check_during = matches!(
        strategy,
        HypothesisStrategy::DuringMethodOnly | HypothesisStrategy::Continuously
    );
    let check_after = matches!(
        strategy,
        HypothesisStrategy::Default
            | HypothesisStrategy::AfterMethodOnly
            | HypothesisStrategy::Continuously
    );
    let has_hypothesis = !exp.hypothesis.is_empty();
    runner.view.log(&format!("experiment: {}", exp.title));

    if has_hypothesis && check_before {
        runner.view.phase("steady state before the method");
        let ss = runner.steady_state(&exp.hypothesis);
        before_failed = !ss.steady_state_met;
        if before_failed && !runner.interrupted() {
            runner
                .view
                .log("steady state not met before the method: the experiment fails here");
        }
        states.before = Some(ss);
    }

    if !before_failed && !runner.interrupted() {
        method_started = true;
        runner.view.phase("method");
        let during = (has_hypothesis && check_during).then(|| {
            DuringChecks::start(
                exp.hypothesis.clone(),
                exp.runtime.frequency,
                Arc::clone(&runner.stop),
                runner.opts.run_as.clone(),
            )
        });
        if let Some(d) = &during
            && exp.runtime.fail_fast
        {
            runner.cut_method = Some(Arc::clone(&d.deviated));
        }
        let mut background = Vec::new();
        for activity in &exp.method {
            if runner.interrupted() || runner.method_cut() {
                break;
            }
            if !runner.wait(activity.pause_before) {
                break;
            }
            if activity.background && !matches!(activity.provider, Provider::Chaos(_)) {
                runner.view.log(&format!(
                    "{} {} (background)",
                    kind(activity),
                    activity.name
                ));
                let (a, stop) = (activity.clone(), Arc::clone(&runner.stop));
                let run_as = runner.opts.run_as.clone();
                background.push(thread::spawn(move || execute(&a, &stop, run_as.as_deref())));
            } else {
                let r = runner.activity(activity);
                run.push(r);
            }
            if !runner.wait(activity.pause_after) {
                break;
            }
        }
        for handle in background {
            while !handle.is_finished() {
                runner.wait(Duration::from_millis(50));
            }
            if let Ok(r) = handle.join() {
                run.push(r);
            }
        }
        if runner.method_cut() {
            runner
                .view
                .log("steady state deviated during the method: fail_fast stopped the method");
        }
        runner.cut_method = None;
        if let Some(d) = during {
            let (checks, dev) = d.finish(&mut runner);
            deviated |= dev;
            states.during = checks;
        }
    }

    if method_started && has_hypothesis && check_after && !runner.interrupted() {
        runner.view.phase("steady state after the method");
        let ss = runner.steady_state(&exp.hypothesis);
        if !ss.steady_state_met && !runner.interrupted() {
            deviated = true;
        }
        states.after = Some(ss);
    }

    // The one place faults end: completion, deviation, failure and interruption all pass here.
    let faults = runner.remove_faults();

    let interrupted = runner.interrupted();
    let rollbacks_strategy = rollback_strategy.unwrap_or(exp.runtime.rollbacks);
    let play_rollbacks = match rollbacks_strategy {
        RollbackStrategy::Never => false,
        RollbackStrategy::Always => true,
        RollbackStrategy::Deviated => deviated,
        RollbackStrategy::Default => method_started && !interrupted,
    };
    let mut rollbacks = Vec::new();
    if play_rollbacks && !exp.rollbacks.is_empty() {
        runner.view.phase("rollbacks");
        // Rollbacks run to their end even after an interruption.
        runner.stop = Arc::new(AtomicBool::new(false));
        for activity in &exp.rollbacks {
            rollbacks.push(runner.activity(activity));
        }
        runner.remove_faults();
    }

    let status = if interrupted {
        Status::Aborted
    } else if before_failed || runner.fault_failed {
        Status::Failed
    } else if deviated {
        Status::Deviated
    } else {
        Status::Completed
    };
    runner.view.log(&format!(
        "experiment {}",
        match status {
            Status::Completed => "completed: the steady state held",
            Status::Deviated => "deviated: the steady state did not hold",
            Status::Failed => "failed",
            Status::Aborted => "interrupted; faults removed",
        }
    ));
    let (platform, node) = machine();
    Journal {
        chaos_version: env!("CARGO_PKG_VERSION"),
        platform,
        node,
        experiment: exp.raw.clone(),
        start: timestamp(start_time),
        end: timestamp(SystemTime::now()),
        duration: started.elapsed().as_secs_f64(),
        status,
        deviated,
        steady_states: states,
        run,
        rollbacks,
        faults,
    }
}

struct Runner {
    stop: Arc<AtomicBool>,
    started: Instant,
    faults: Vec<RunningFault>,
    view: LiveView,
    last_sample: Option<Instant>,
    fault_failed: bool,
    opts: RunOptions,
    /// Set by the during-method checks when fail_fast should cut the method short.
    cut_method: Option<Arc<AtomicBool>>,
}

const SAMPLE_EVERY: Duration = Duration::from_millis(500);

impl Runner {
    fn interrupted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Samples counters (twice a second), ends faults whose duration passed, updates the view.
    fn tick(&mut self) {
        if self.last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            let at = self.at();
            for fault in &mut self.faults {
                if let Some(why) = fault.tick(at) {
                    let msg = format!("fault {}: {why}, removed", fault.activity);
                    self.view.log(&msg);
                }
            }
            self.last_sample = Some(Instant::now());
        }
        self.view.tick(&self.faults);
    }

    fn method_cut(&self) -> bool {
        self.cut_method
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Waits `d` while ticking; false when interrupted or the method is cut short.
    fn wait(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            self.tick();
            if self.interrupted() || self.method_cut() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// Runs `f` on a worker thread while this one ticks.
    /// Runs `f` on a worker thread while this one ticks. After an interruption the worker gets
    /// a second to notice (processes are killed); an HTTP request still in flight is left to
    /// its timeout and `interrupted()` answers instead, so that cleanup is not delayed.
    fn on_worker<T: Send + 'static>(
        &mut self,
        f: impl FnOnce() -> T + Send + 'static,
        interrupted: impl FnOnce() -> T,
    ) -> T {
        let handle = thread::spawn(f);
        let mut since: Option<Instant> = None;
        while !handle.is_finished() {
            self.tick();
            if self.interrupted()
                && since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1)
            {
                return interrupted();
            }
            thread::sleep(Duration::from_millis(20));
        }
        handle.join().expect("activity thread panicked")
    }

    fn activity(&mut self, activity: &Activity) -> ActivityRun {
        self.view
            .log(&format!("{} {}", kind(activity), activity.name));
        let run = if let Provider::Chaos(spec) = &activity.provider {
            let start = SystemTime::now();
            let clock = Instant::now();
            let result = RunningFault::start(
                &activity.name,
                spec,
                self.opts.dry_run,
                self.opts.fault_check.as_ref().map(|c| &*c.0),
            )
            .and_then(|fault| match &self.opts.observer {
                None => Ok(fault),
                Some(FaultObserver(observe)) => match observe(&activity.name, fault.shared()) {
                    Ok(()) => Ok(fault),
                    Err(refused) => {
                        fault.shared().stop();
                        Err(anyhow::anyhow!(refused))
                    }
                },
            });
            let (output, error) = match result {
                Ok(mut fault) => {
                    let _ = fault.tick(self.at());
                    let out = json!({"command": fault.command_line, "target": fault.target});
                    self.view.log(&format!(
                        "fault {} started: {}",
                        activity.name, fault.command_line
                    ));
                    self.faults.push(fault);
                    (Some(out), None)
                }
                Err(err) => {
                    self.fault_failed = true;
                    (None, Some(format!("{err:#}")))
                }
            };
            finished(activity, start, clock, output, error)
        } else {
            let (a, stop) = (activity.clone(), Arc::clone(&self.stop));
            let run_as = self.opts.run_as.clone();
            let (start, clock) = (SystemTime::now(), Instant::now());
            self.on_worker(
                move || execute(&a, &stop, run_as.as_deref()),
                || finished(activity, start, clock, None, Some("interrupted".into())),
            )
        };
        if let Some(e) = &run.exception {
            self.view.log(&format!(
                "{} {} failed: {}",
                kind(activity),
                activity.name,
                e.join(": ")
            ));
        } else if activity.kind == super::format::ActivityKind::Probe
            && let Some(status) = run.output.as_ref().and_then(|o| o.get("status"))
        {
            self.view
                .log(&format!("probe {}: status {status}", activity.name));
        }
        run
    }

    fn steady_state(&mut self, probes: &[Activity]) -> SteadyState {
        let (probes, stop) = (probes.to_vec(), Arc::clone(&self.stop));
        let run_as = self.opts.run_as.clone();
        let ss = self.on_worker(
            move || steady_state(&probes, &stop, run_as.as_deref()),
            || SteadyState {
                steady_state_met: false,
                probes: Vec::new(),
            },
        );
        for p in &ss.probes {
            let name = p.activity["name"].as_str().unwrap_or_default();
            let detail = p
                .exception
                .as_ref()
                .map(|e| e.join(": "))
                .unwrap_or_default();
            self.view
                .probe(name, p.tolerance_met == Some(true), &detail);
        }
        ss
    }

    fn remove_faults(&mut self) -> Vec<FaultRecord> {
        let at = self.at();
        let mut records = Vec::new();
        for mut fault in self.faults.drain(..) {
            let was_active = fault.active();
            fault.stop(at);
            if was_active {
                self.view.log(&format!("fault {} removed", fault.activity));
            }
            records.push(FaultRecord {
                activity: fault.activity.clone(),
                command: fault.command_line.clone(),
                target: fault.target.clone(),
                counters: std::mem::take(&mut fault.samples),
                events: std::mem::take(&mut fault.events),
                more_events: fault.more_events,
                events_lost: fault.events_lost,
            });
        }
        records
    }
}

fn kind(a: &Activity) -> &'static str {
    match a.kind {
        super::format::ActivityKind::Action => "action",
        super::format::ActivityKind::Probe => "probe",
    }
}

fn finished(
    activity: &Activity,
    start: SystemTime,
    clock: Instant,
    output: Option<Value>,
    error: Option<String>,
) -> ActivityRun {
    ActivityRun {
        activity: activity.raw.clone(),
        status: if error.is_none() {
            "succeeded"
        } else {
            "failed"
        },
        start: timestamp(start),
        end: timestamp(SystemTime::now()),
        duration: clock.elapsed().as_secs_f64(),
        output,
        exception: error.map(|e| vec![e]),
        tolerance_met: None,
    }
}

/// Runs an http, process or python activity (not a fault) to its end.
fn execute(activity: &Activity, stop: &AtomicBool, run_as: Option<&RunAs>) -> ActivityRun {
    let start = SystemTime::now();
    let clock = Instant::now();
    let result = match &activity.provider {
        // In the daemon (run_as set), as the caller: the request may reach nothing the caller
        // could not reach itself (a firewall's per-uid rules apply to its socket).
        Provider::Http(spec) => match run_as {
            Some(who) => who.run_on_own_thread(|| providers::http(spec)),
            None => providers::http(spec),
        },
        Provider::Process(spec) => providers::process(spec, stop, run_as),
        Provider::Python(spec) => providers::python(spec, stop, run_as),
        Provider::Chaos(_) => Err("faults start on the runner's thread".into()),
    };
    match result {
        Ok(out) => finished(activity, start, clock, Some(out), None),
        Err(err) => finished(activity, start, clock, None, Some(err)),
    }
}

/// Runs the probes and judges each against its tolerance. A probe that fails is not within
/// tolerance. As Chaos Toolkit does, the first probe out of tolerance ends the check: the
/// probes after it do not run.
fn steady_state(probes: &[Activity], stop: &AtomicBool, run_as: Option<&RunAs>) -> SteadyState {
    let mut runs = Vec::new();
    let mut met = true;
    for probe in probes {
        if stop.load(Ordering::Relaxed) {
            met = false;
            break;
        }
        let mut run = execute(probe, stop, run_as);
        let within = match (&run.output, &probe.tolerance) {
            (Some(output), Some(t)) => match tolerance::check(t, output) {
                Verdict::Decided(ok, why) => {
                    if let Some(why) = why {
                        run.exception
                            .get_or_insert_with(Vec::new)
                            .push(format!("not within tolerance: {why}"));
                    }
                    ok
                }
                Verdict::NeedsProbe(_) => match &probe.tolerance_probe {
                    Some(judge) => {
                        let judged = execute(&with_value(judge, output), stop, run_as);
                        let ok = judged.status == "succeeded";
                        if let Some(e) = judged.exception {
                            run.exception.get_or_insert_with(Vec::new).extend(e);
                        }
                        ok
                    }
                    None => false,
                },
            },
            _ => false,
        };
        run.tolerance_met = Some(within);
        met &= within;
        runs.push(run);
        if !within {
            break;
        }
    }
    SteadyState {
        steady_state_met: met,
        probes: runs,
    }
}

/// A probe tolerance's activity with the judged output given to it: as the `value` keyword
/// argument of a python function (as Chaos Toolkit does), or as JSON in `CHAOS_VALUE` for a
/// process.
fn with_value(judge: &Activity, output: &Value) -> Activity {
    let mut judge = judge.clone();
    match &mut judge.provider {
        Provider::Python(spec) => {
            spec.arguments.insert("value".into(), output.clone());
        }
        Provider::Process(spec) => spec.env.push(("CHAOS_VALUE".into(), output.to_string())),
        Provider::Http(spec) => spec.body = Some(output.clone()),
        Provider::Chaos(_) => {}
    }
    judge
}

/// Steady-state checks repeated while the method runs.
struct DuringChecks {
    done: Arc<AtomicBool>,
    deviated: Arc<AtomicBool>,
    checks: Arc<Mutex<Vec<SteadyState>>>,
    handle: thread::JoinHandle<()>,
}

impl DuringChecks {
    fn start(
        probes: Vec<Activity>,
        every: Duration,
        stop: Arc<AtomicBool>,
        run_as: Option<Arc<RunAs>>,
    ) -> DuringChecks {
        let done = Arc::new(AtomicBool::new(false));
        let deviated = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(Mutex::new(Vec::new()));
        let (d, dev, c) = (
            Arc::clone(&done),
            Arc::clone(&deviated),
            Arc::clone(&checks),
        );
        let handle = thread::spawn(move || {
            while !d.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                let next = Instant::now() + every;
                let ss = steady_state(&probes, &stop, run_as.as_deref());
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if !ss.steady_state_met {
                    dev.store(true, Ordering::Relaxed);
                }
                c.lock().expect("during checks").push(ss);
                while Instant::now() < next
                    && !d.load(Ordering::Relaxed)
                    && !stop.load(Ordering::Relaxed)
                {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        });
        DuringChecks {
            done,
            deviated,
            checks,
            handle,
        }
    }

    fn finish(self, runner: &mut Runner) -> (Vec<SteadyState>, bool) {
        self.done.store(true, Ordering::Relaxed);
        while !self.handle.is_finished() {
            runner.tick();
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.handle.join();
        let checks = std::mem::take(&mut *self.checks.lock().expect("during checks"));
        let failed = checks.iter().filter(|ss| !ss.steady_state_met).count();
        runner.view.log(&format!(
            "steady state during the method: {} checks, {failed} not met",
            checks.len()
        ));
        (checks, self.deviated.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::document::Document;

    /// An experiment whose steady state is "the file FLAG does not exist" and whose method
    /// creates it, so the steady state breaks after the method.
    fn experiment(flag: &str, runtime: &str, method_extra: &str) -> Experiment {
        experiment_paused(flag, runtime, method_extra, 0.3)
    }

    fn experiment_paused(
        flag: &str,
        runtime: &str,
        method_extra: &str,
        first_pause: f64,
    ) -> Experiment {
        let yaml = format!(
            "title: t
steady-state-hypothesis:
  title: no flag
  probes:
    - type: probe
      name: no-flag
      tolerance: 0
      provider: {{type: process, path: sh, arguments: [-c, 'test ! -e {flag}']}}
method:
  - type: action
    name: set-flag
    provider: {{type: process, path: touch, arguments: [{flag}]}}
    pauses: {{after: {first_pause}}}
{method_extra}
rollbacks:
  - type: action
    name: clear-flag
    provider: {{type: process, path: rm, arguments: [-f, {flag}]}}
runtime:
{runtime}
"
        );
        let doc = Document::parse("t.yaml", &yaml, false).unwrap();
        Experiment::from_document(&doc, &|_| None).unwrap()
    }

    fn flag(name: &str) -> String {
        let path = std::env::temp_dir().join(format!("chaos-runner-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path.display().to_string()
    }

    fn go(exp: &Experiment) -> Journal {
        run(exp, RunOptions::default(), Arc::new(AtomicBool::new(false)))
    }

    #[test]
    fn default_strategy_checks_before_and_after_and_rolls_back() {
        let f = flag("default");
        let j = go(&experiment(&f, "  hypothesis: {strategy: default}", ""));
        assert_eq!(j.status, Status::Deviated);
        assert!(j.deviated);
        assert!(j.steady_states.before.as_ref().unwrap().steady_state_met);
        assert!(!j.steady_states.after.as_ref().unwrap().steady_state_met);
        assert!(j.steady_states.during.is_empty());
        assert_eq!(j.rollbacks.len(), 1);
        assert!(!std::path::Path::new(&f).exists(), "the rollback ran");
    }

    #[test]
    fn before_method_only_does_not_check_after() {
        let f = flag("before");
        let j = go(&experiment(
            &f,
            "  hypothesis: {strategy: before-method-only}",
            "",
        ));
        assert_eq!(j.status, Status::Completed);
        assert!(j.steady_states.after.is_none());
    }

    #[test]
    fn after_method_only_and_never_rolling_back() {
        let f = flag("after");
        let j = go(&experiment(
            &f,
            "  hypothesis: {strategy: after-method-only}\n  rollbacks: {strategy: never}",
            "",
        ));
        assert_eq!(j.status, Status::Deviated);
        assert!(j.steady_states.before.is_none());
        assert!(j.rollbacks.is_empty());
        assert!(std::path::Path::new(&f).exists());
        let _ = std::fs::remove_file(&f);
    }

    #[test]
    fn a_failed_steady_state_before_skips_the_method() {
        let f = flag("failed");
        std::fs::write(&f, "").unwrap();
        let j = go(&experiment(&f, "  rollbacks: {strategy: default}", ""));
        assert_eq!(j.status, Status::Failed);
        assert!(j.run.is_empty() && j.rollbacks.is_empty());
        assert_eq!(j.status.exit_code(), 1);
        let _ = std::fs::remove_file(&f);
    }

    #[test]
    fn continuous_checks_with_fail_fast_stop_the_method() {
        let f = flag("continuous");
        let j = go(&experiment_paused(
            &f,
            "  hypothesis: {strategy: continuously, frequency: 0.1, fail_fast: true}",
            "  - type: action\n    name: long\n    provider: {type: process, path: sleep, arguments: ['0.1']}\n    pauses: {after: 30}\n  - type: action\n    name: never-reached\n    provider: {type: process, path: 'true'}",
            30.0,
        ));
        assert_eq!(j.status, Status::Deviated);
        assert!(j.steady_states.during.iter().any(|s| !s.steady_state_met));
        assert!(
            j.run.iter().all(|r| r.activity["name"] != "never-reached"),
            "fail_fast should stop the method"
        );
        assert!(
            j.duration < 20.0,
            "the 30 s pause was cut short: {}",
            j.duration
        );
    }

    #[test]
    fn interruption_aborts_and_skips_default_rollbacks() {
        let f = flag("interrupt");
        let exp = experiment(&f, "  rollbacks: {strategy: default}", "");
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(150));
            s.store(true, Ordering::Relaxed);
        });
        let exp = Experiment {
            method: {
                let mut m = exp.method.clone();
                m[0].pause_after = Duration::from_secs(30);
                m
            },
            ..exp
        };
        let j = run(&exp, RunOptions::default(), stop);
        t.join().unwrap();
        assert_eq!(j.status, Status::Aborted);
        assert_eq!(j.status.exit_code(), 130);
        assert!(j.rollbacks.is_empty());
        let _ = std::fs::remove_file(&f);
    }

    #[test]
    fn interruption_does_not_wait_for_a_hanging_http_request() {
        // A server that accepts and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = thread::spawn(move || {
            let conns: Vec<_> = listener.incoming().take(1).collect();
            thread::sleep(Duration::from_secs(60));
            drop(conns);
        });
        let yaml = format!(
            "title: t\nmethod:\n  - type: probe\n    name: hangs\n    provider: {{type: http, url: 'http://127.0.0.1:{port}/', timeout: 30}}\n"
        );
        let doc = Document::parse("t.yaml", &yaml, false).unwrap();
        let exp = Experiment::from_document(&doc, &|_| None).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            s.store(true, Ordering::Relaxed);
        });
        let j = run(&exp, RunOptions::default(), stop);
        assert_eq!(j.status, Status::Aborted);
        assert!(
            j.duration < 10.0,
            "cleanup waited for the request: {}",
            j.duration
        );
        assert_eq!(
            j.run[0].exception.as_deref(),
            Some(&["interrupted".to_owned()][..])
        );
    }
}
