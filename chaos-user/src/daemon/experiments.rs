//! Experiments the daemon runs for its clients: each on a thread of its own through the same
//! runner as `chaos run`, its log recorded for `GET /experiments/{id}`, its faults registered
//! among the daemon's (so `GET /faults` lists them and `chaos stop` removes them).
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use clap::ValueEnum as _;

use super::api::{ExperimentState, ExperimentStatus, StartExperiment};
use crate::experiment::{
    Experiment,
    credentials::RunAs,
    document::Document,
    format::RollbackStrategy,
    runner::{self, FaultCheck, FaultObserver, RunOptions},
};

/// How many finished experiments stay readable; older ones are forgotten.
const FINISHED_KEPT: usize = 32;

/// An experiment checked and ready to run.
pub struct PlannedExperiment {
    experiment: Experiment,
    file: String,
    options: RunOptions,
}

impl PlannedExperiment {
    /// Parses and validates a `POST /experiments` body. Errors are the messages `chaos run`
    /// and `chaos validate` give.
    pub fn from_request(request: &StartExperiment) -> Result<PlannedExperiment, String> {
        let file = request
            .name
            .clone()
            .unwrap_or_else(|| "experiment".to_owned());
        let json = match request.format.as_deref() {
            Some("json") => true,
            Some("yaml") | Some("yml") => false,
            Some(other) => {
                return Err(format!(
                    "format: `{other}` is not an experiment format; expected yaml or json"
                ));
            }
            None => file.ends_with(".json"),
        };
        let rollback_strategy = request
            .rollback_strategy
            .as_deref()
            .map(|s| {
                RollbackStrategy::from_str(s, true).map_err(|_| {
                    format!(
                        "rollback_strategy: `{s}` is not a strategy; expected one of {}",
                        RollbackStrategy::value_variants()
                            .iter()
                            .filter_map(|v| v.to_possible_value())
                            .map(|v| v.get_name().to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .transpose()?;
        let doc = Document::parse(&file, &request.text, json).map_err(|e| e.to_string())?;
        let experiment = Experiment::from_document(&doc, &|k| request.env.get(k).cloned())
            .map_err(|e| e.to_string())?;
        Ok(PlannedExperiment {
            experiment,
            file,
            options: RunOptions {
                dry_run: request.dry_run,
                rollback_strategy,
                ..RunOptions::default()
            },
        })
    }

    /// Its title.
    pub fn title(&self) -> &str {
        &self.experiment.title
    }

    /// Runs it on a thread of its own: its process and python activities as `run_as`,
    /// each fault's target decided by `check` before it is attached, `observer` told of each
    /// fault it starts.
    pub fn start(
        self,
        created_by: u32,
        run_as: RunAs,
        check: FaultCheck,
        observer: FaultObserver,
    ) -> ExperimentRun {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let outcome = Arc::new(Mutex::new(None));
        let options = RunOptions {
            observer: Some(observer),
            log: Some(Arc::clone(&log)),
            run_as: Some(Arc::new(run_as)),
            fault_check: Some(check),
            ..self.options
        };
        let (thread_stop, thread_outcome) = (Arc::clone(&stop), Arc::clone(&outcome));
        let experiment = self.experiment;
        let title = experiment.title.clone();
        std::thread::spawn(move || {
            let journal = runner::run(&experiment, options, thread_stop);
            let ended = Outcome {
                status: serde_json::to_value(journal.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                exit_code: journal.status.exit_code(),
                journal: serde_json::to_value(&journal).unwrap_or_default(),
            };
            tracing::info!(title = %experiment.title, status = %ended.status, "experiment ended");
            *thread_outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(ended);
        });
        ExperimentRun {
            title,
            file: self.file,
            created_by,
            stop,
            log,
            outcome,
        }
    }
}

/// How an experiment ended.
struct Outcome {
    status: String,
    exit_code: u8,
    journal: serde_json::Value,
}

/// An experiment running or finished.
pub struct ExperimentRun {
    title: String,
    file: String,
    created_by: u32,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

impl ExperimentRun {
    /// The uid that started it.
    pub fn created_by(&self) -> u32 {
        self.created_by
    }

    /// Whether it has ended.
    pub fn finished(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Asks it to end: it stops at its next check (within about 50 ms), removes its faults
    /// and runs its rollbacks as its strategy says for an interrupted experiment.
    pub fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Its state; with its log and journal when `full`. `faults` are its active faults' ids.
    pub fn status(&self, id: u64, faults: Vec<u64>, full: bool) -> ExperimentStatus {
        let outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        let state = match (&*outcome, self.stop.load(Ordering::Relaxed)) {
            (Some(_), _) => ExperimentState::Finished,
            (None, true) => ExperimentState::Aborting,
            (None, false) => ExperimentState::Running,
        };
        ExperimentStatus {
            id,
            title: self.title.clone(),
            file: self.file.clone(),
            created_by: self.created_by,
            state,
            status: outcome.as_ref().map(|o| o.status.clone()),
            exit_code: outcome.as_ref().map(|o| o.exit_code),
            faults,
            log: if full {
                self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
            } else {
                Vec::new()
            },
            journal: outcome.as_ref().filter(|_| full).map(|o| o.journal.clone()),
        }
    }
}

/// The experiments by id.
#[derive(Default)]
pub struct Experiments {
    next_id: u64,
    runs: BTreeMap<u64, ExperimentRun>,
}

impl Experiments {
    /// The id the next experiment gets (its faults are registered before it is inserted).
    pub fn reserve_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a started experiment under an id from [`Experiments::reserve_id`], forgetting the
    /// oldest finished ones beyond [`FINISHED_KEPT`].
    pub fn insert(&mut self, id: u64, run: ExperimentRun) {
        self.runs.insert(id, run);
        let finished: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, r)| r.finished())
            .map(|(id, _)| *id)
            .collect();
        for id in finished
            .iter()
            .take(finished.len().saturating_sub(FINISHED_KEPT))
        {
            self.runs.remove(id);
        }
    }

    /// How many experiments `uid` started are still running.
    pub fn running_by(&self, uid: u32) -> usize {
        self.runs
            .values()
            .filter(|r| r.created_by == uid && !r.finished())
            .count()
    }

    /// The experiment with this id.
    pub fn get(&self, id: u64) -> Option<&ExperimentRun> {
        self.runs.get(&id)
    }

    /// Every experiment, by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &ExperimentRun)> {
        self.runs.iter().map(|(id, r)| (*id, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> StartExperiment {
        StartExperiment {
            text: text.to_owned(),
            name: Some("e.yaml".into()),
            ..StartExperiment::default()
        }
    }

    const VALID: &str = "title: t\nconfiguration:\n  who: {type: env, key: WHO}\nmethod:\n  - type: action\n    name: a\n    provider: {type: process, path: echo, arguments: ['${who}']}\n";

    #[test]
    fn env_comes_from_the_request_not_the_daemon() {
        let mut req = request(VALID);
        req.env.insert("WHO".into(), "client".into());
        let planned = PlannedExperiment::from_request(&req).unwrap();
        assert_eq!(planned.title(), "t");
        // Without it, the required variable is missing: the validator says which.
        let err = PlannedExperiment::from_request(&request(VALID))
            .err()
            .expect("refused");
        assert!(err.contains("WHO"), "{err}");
    }

    #[test]
    fn bad_options_are_named_with_what_is_valid() {
        let mut req = request(VALID);
        req.env.insert("WHO".into(), "x".into());
        req.format = Some("toml".into());
        let err = PlannedExperiment::from_request(&req)
            .err()
            .expect("refused");
        assert!(err.contains("format") && err.contains("toml") && err.contains("yaml or json"));
        req.format = None;
        req.rollback_strategy = Some("sometimes".into());
        let err = PlannedExperiment::from_request(&req)
            .err()
            .expect("refused");
        assert!(
            err.contains("rollback_strategy")
                && err.contains("sometimes")
                && err.contains("always"),
            "{err}"
        );
    }

    #[test]
    fn a_json_name_means_json() {
        let mut req = request(
            "{\"title\": \"j\", \"method\": [{\"type\": \"action\", \"name\": \"a\", \"provider\": {\"type\": \"process\", \"path\": \"true\"}}]}",
        );
        req.name = Some("e.json".into());
        assert_eq!(PlannedExperiment::from_request(&req).unwrap().title(), "j");
    }
}
