//! The API's handlers: faults (`/faults`), experiments (`/experiments`), the schema and the
//! metrics scrape. Each maps a request into the daemon's state and its answer into JSON;
//! who may call at all was settled by `authorize` before any of them runs.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use axum::{
    Json,
    extract::{ConnectInfo, Path as UrlPath, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tracing::{info, warn};

use super::{
    Daemon, Failure,
    access::Peer,
    api::{ExperimentStatus, FaultStatus, Removed, StartExperiment},
    experiments::PlannedExperiment,
    faults::{ActiveFault, Refusal},
    metrics,
    policy::Caller,
    stop_all,
};
use crate::experiment::{credentials::RunAs, runner::FaultCheck};

pub(super) async fn create(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<FaultStatus>), Failure> {
    let full = || Failure(StatusCode::TOO_MANY_REQUESTS, daemon.full());
    let full_for = || Failure(StatusCode::TOO_MANY_REQUESTS, daemon.full_for(peer.uid));
    let what = body.to_string();
    let refuse = |failure: Failure| {
        warn!(uid = peer.uid, pid = ?peer.pid, spec = %body, error = %failure.1, "fault refused");
        // A refusal of the policy was audited where it was decided.
        if failure.0 != StatusCode::FORBIDDEN {
            daemon.audit.record(
                &peer,
                "create-fault",
                what.clone(),
                "",
                false,
                failure.1.clone(),
            );
        }
        failure
    };
    {
        let faults = daemon.faults();
        if faults.len() >= daemon.max_faults {
            return Err(refuse(full()));
        }
        if faults.count_by(peer.uid) >= daemon.limits.faults_per_caller {
            return Err(refuse(full_for()));
        }
    }
    let spec = body.clone();
    let check = daemon.target_check(peer, "create-fault", what.clone());
    // Resolving the target reads the filesystem and starting loads and attaches programs:
    // blocking work, off the async threads.
    let started = tokio::task::spawn_blocking(move || {
        ActiveFault::start(spec, peer.uid, &*check).map_err(|refusal| match refusal {
            Refusal::Invalid(msg) => Failure(StatusCode::BAD_REQUEST, msg),
            Refusal::NotStarted(msg) => Failure(StatusCode::UNPROCESSABLE_ENTITY, msg),
            Refusal::Forbidden(refusal) => Failure(StatusCode::FORBIDDEN, refusal.to_string()),
        })
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let fault = started.map_err(refuse)?;
    let mut faults = daemon.faults();
    let over = if faults.len() >= daemon.max_faults {
        Some(full())
    } else if faults.count_by(peer.uid) >= daemon.limits.faults_per_caller {
        Some(full_for())
    } else {
        None
    };
    if let Some(failure) = over {
        drop(faults);
        fault.stop();
        return Err(refuse(failure));
    }
    let (target, description) = (fault.target().to_owned(), fault.description());
    let id = faults.insert(fault);
    let status = faults.get(id).expect("just inserted").status(id);
    info!(id, uid = peer.uid, pid = ?peer.pid, %target, fault = %description, "fault created");
    Ok((StatusCode::CREATED, Json(status)))
}

/// `GET /schema`: the JSON Schema of the fault spec `POST /faults` takes.
pub(super) async fn schema() -> Json<serde_json::Value> {
    Json(crate::spec::schema())
}

pub(super) async fn list(State(daemon): State<Arc<Daemon>>) -> Json<Vec<FaultStatus>> {
    let faults = daemon.faults();
    Json(faults.iter().map(|(id, f)| f.status(id)).collect())
}

pub(super) fn no_such(id: u64) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no active fault {id} (it may have ended; GET /faults lists the active ones)"),
    )
}

pub(super) async fn show(
    State(daemon): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<FaultStatus>, Failure> {
    let faults = daemon.faults();
    let fault = faults.get(id).ok_or_else(|| no_such(id))?;
    Ok(Json(fault.status(id)))
}

pub(super) async fn remove(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<FaultStatus>, Failure> {
    let fault = {
        let mut faults = daemon.faults();
        let creator = faults.get(id).ok_or_else(|| no_such(id))?.created_by();
        if let Err(message) = may_remove(&peer, creator, &format!("fault {id}")) {
            daemon.audit.record(
                &peer,
                "remove-fault",
                id.to_string(),
                "",
                false,
                message.clone(),
            );
            return Err(Failure(StatusCode::FORBIDDEN, message));
        }
        faults.remove(id).ok_or_else(|| no_such(id))?
    };
    daemon.audit.record(
        &peer,
        "remove-fault",
        id.to_string(),
        fault.target(),
        true,
        "",
    );
    // The last counters, then detach.
    let status = fault.status(id);
    fault.stop();
    info!(id, uid = peer.uid, pid = ?peer.pid, target = %status.target, fault = %status.description, matched = status.matched, injected = status.injected, "fault removed");
    Ok(Json(status))
}

/// Whether `peer` may remove or abort what `creator` started: root may remove anything, others
/// only their own.
pub(super) fn may_remove(peer: &Peer, creator: u32, what: &str) -> Result<(), String> {
    if peer.uid == 0 || peer.uid == creator {
        return Ok(());
    }
    Err(format!(
        "uid {} may not remove {what}: uid {creator} started it, and only root removes what \
         another user started [refused by rule: creator]",
        peer.uid
    ))
}

/// `DELETE /faults`: root removes everything; another caller what it started.
pub(super) async fn remove_all(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Json<Removed> {
    let why = format!("stop all by uid {}", peer.uid);
    let removed = if peer.uid == 0 {
        daemon.remove_all(&why)
    } else {
        let mut aborted_experiments = Vec::new();
        for (id, run) in daemon.experiments().iter() {
            if run.created_by() == peer.uid && !run.finished() {
                run.abort();
                aborted_experiments.push(id);
            }
        }
        let taken = daemon.faults().remove_created_by(peer.uid);
        stop_all(&taken, &why);
        Removed {
            removed: taken.iter().map(|(id, _)| *id).collect(),
            aborted_experiments,
        }
    };
    daemon.audit.record(
        &peer,
        "remove-all",
        format!(
            "faults {:?}, experiments {:?}",
            removed.removed, removed.aborted_experiments
        ),
        "",
        true,
        if peer.uid == 0 {
            "root"
        } else {
            "its own only"
        },
    );
    Json(removed)
}

/// The ids of the active faults of each experiment.
pub(super) fn faults_by_experiment(daemon: &Daemon) -> BTreeMap<u64, Vec<u64>> {
    let mut by = BTreeMap::<u64, Vec<u64>>::new();
    for (id, fault) in daemon.faults().iter() {
        if let Some(experiment) = fault.experiment() {
            by.entry(experiment).or_default().push(id);
        }
    }
    by
}

pub(super) fn no_such_experiment(id: u64) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no experiment {id} (GET /experiments lists the ones the daemon knows)"),
    )
}

pub(super) async fn start_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(body): Json<StartExperiment>,
) -> Result<(StatusCode, Json<ExperimentStatus>), Failure> {
    let name = body.name.clone().unwrap_or_default();
    let planned = PlannedExperiment::from_request(&body).map_err(|msg| {
        warn!(uid = peer.uid, pid = ?peer.pid, file = ?body.name, error = %msg, "experiment refused");
        daemon.audit.record(&peer, "start-experiment", name.clone(), "", false, msg.clone());
        Failure(
            StatusCode::BAD_REQUEST,
            format!("invalid experiment, nothing was run:\n{msg}"),
        )
    })?;
    let id = {
        let mut experiments = daemon.experiments();
        if experiments.running_by(peer.uid) >= daemon.limits.experiments_per_caller {
            let message = format!(
                "uid {} already runs its maximum of {} experiments \
                 (--max-experiments-per-caller); wait for one to end or abort it",
                peer.uid, daemon.limits.experiments_per_caller
            );
            daemon.audit.record(
                &peer,
                "start-experiment",
                name.clone(),
                "",
                false,
                message.clone(),
            );
            return Err(Failure(StatusCode::TOO_MANY_REQUESTS, message));
        }
        experiments.reserve_id()
    };
    info!(id, uid = peer.uid, pid = ?peer.pid, title = %planned.title(), "experiment started");
    daemon.audit.record(
        &peer,
        "start-experiment",
        format!("{name}: {}", planned.title()),
        "",
        true,
        format!("experiment {id}; its faults are authorized one by one"),
    );
    let run_as = RunAs {
        uid: peer.uid,
        gid: peer.gid,
        groups: Caller::of(peer.uid, peer.gid).groups,
        env: body.env.clone(),
        cwd: body.cwd.clone().map(PathBuf::from),
    };
    let check =
        FaultCheck(daemon.target_check(peer, "experiment-fault", format!("experiment {id}")));
    let run = planned.start(peer.uid, run_as, check, daemon.observer(id, peer));
    let status = run.status(id, Vec::new(), false);
    daemon.experiments().insert(id, run);
    Ok((StatusCode::CREATED, Json(status)))
}

pub(super) async fn list_experiments(
    State(daemon): State<Arc<Daemon>>,
) -> Json<Vec<ExperimentStatus>> {
    let mut faults = faults_by_experiment(&daemon);
    let experiments = daemon.experiments();
    Json(
        experiments
            .iter()
            .map(|(id, run)| run.status(id, faults.remove(&id).unwrap_or_default(), false))
            .collect(),
    )
}

pub(super) async fn show_experiment(
    State(daemon): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<ExperimentStatus>, Failure> {
    let faults = faults_by_experiment(&daemon)
        .remove(&id)
        .unwrap_or_default();
    let experiments = daemon.experiments();
    let run = experiments.get(id).ok_or_else(|| no_such_experiment(id))?;
    Ok(Json(run.status(id, faults, true)))
}

pub(super) async fn abort_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<ExperimentStatus>, Failure> {
    {
        let experiments = daemon.experiments();
        let run = experiments.get(id).ok_or_else(|| no_such_experiment(id))?;
        if let Err(message) = may_remove(&peer, run.created_by(), &format!("experiment {id}")) {
            daemon.audit.record(
                &peer,
                "abort-experiment",
                id.to_string(),
                "",
                false,
                message.clone(),
            );
            return Err(Failure(StatusCode::FORBIDDEN, message));
        }
        run.abort();
    }
    daemon
        .audit
        .record(&peer, "abort-experiment", id.to_string(), "", true, "");
    // Its faults go now, not at the runner's next check.
    let removed = daemon.faults().remove_experiment(id);
    stop_all(
        &removed,
        &format!("experiment {id} aborted by uid {}", peer.uid),
    );
    info!(id, uid = peer.uid, pid = ?peer.pid, "experiment aborted");
    let experiments = daemon.experiments();
    let run = experiments.get(id).ok_or_else(|| no_such_experiment(id))?;
    Ok(Json(run.status(id, Vec::new(), true)))
}

pub(super) async fn scrape(State(daemon): State<Arc<Daemon>>) -> Result<Response, Failure> {
    let text = metrics::render(&daemon.faults())?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
