//! `chaos daemon`: one process owns the kernel programs of every fault and serves an HTTP/JSON
//! API on a Unix socket (and Prometheus metrics on TCP).
//!
//! Each fault is its own [`crate::loader::Injector`]: attached all or nothing, detached when
//! removed (`DELETE`, its deadline, SIGTERM/SIGINT) and by the kernel if the daemon dies,
//! since nothing is pinned. The kernel programs also stop injecting at each fault's deadline
//! by themselves, so a frozen daemon cannot make a fault outlive it either.
//!
//! API (JSON bodies, see [`api`]): `POST /faults` with a [`crate::spec::FaultSpec`] (its JSON
//! Schema at `GET /schema`), `GET /faults`,
//! `GET /faults/{id}`, `DELETE /faults/{id}`, `DELETE /faults` (all); `POST /experiments`
//! with [`api::StartExperiment`], `GET /experiments`, `GET /experiments/{id}`,
//! `DELETE /experiments/{id}` (abort). Faults of every kind start through
//! [`crate::engine`], as experiments' faults do; an experiment's faults are registered here
//! too, so they are listed, counted in the metrics and removed by `DELETE /faults`.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use axum::{
    Json, Router,
    extract::{ConnectInfo, Path as UrlPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use nix::{
    sys::stat::{Mode, umask},
    unistd::{Uid, chown},
};
use tokio::{
    net::{TcpListener, UnixListener},
    signal::unix::{SignalKind, signal},
};
use tracing::{info, warn};

pub mod access;
pub mod api;
pub mod client;
mod experiments;
mod faults;
mod metrics;

use access::{AccessPolicy, Peer};
use api::{ApiError, ExperimentStatus, FaultStatus, Removed, StartExperiment};
use experiments::{Experiments, PlannedExperiment};
use faults::{ActiveFault, ActiveFaults, Refusal};

use crate::{engine::StartedFault, experiment::runner::FaultObserver};

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The API's Unix socket.
    pub socket: PathBuf,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Who besides root may use the API.
    pub access: AccessPolicy,
    /// The most faults active at once.
    pub max_faults: usize,
}

struct Daemon {
    faults: Mutex<ActiveFaults>,
    experiments: Mutex<Experiments>,
    access: AccessPolicy,
    max_faults: usize,
}

impl Daemon {
    fn faults(&self) -> MutexGuard<'_, ActiveFaults> {
        // A panic while holding the lock leaves the map consistent (inserts and removes are
        // single operations), so keep serving.
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn experiments(&self) -> MutexGuard<'_, Experiments> {
        self.experiments.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The message refusing a fault when `--max-faults` are active.
    fn full(&self) -> String {
        format!(
            "the daemon already runs its maximum of {} faults (--max-faults); stop one first",
            self.max_faults
        )
    }

    /// Aborts every running experiment and removes every fault, logging each; returns the
    /// ids of both.
    fn remove_all(&self, why: &str) -> Removed {
        // Experiments first, so that none starts a fault after the faults are gone.
        let mut aborted_experiments = Vec::new();
        for (id, run) in self.experiments().iter() {
            if !run.finished() {
                run.abort();
                aborted_experiments.push(id);
            }
        }
        let removed = self.faults().clear();
        stop_all(&removed, why);
        Removed {
            removed: removed.iter().map(|(id, _)| *id).collect(),
            aborted_experiments,
        }
    }

    /// What an experiment started as `experiment` by `uid` does with each fault it starts:
    /// register it (or refuse it past `--max-faults`).
    fn observer(self: &Arc<Daemon>, experiment: u64, uid: u32) -> FaultObserver {
        let daemon = Arc::clone(self);
        FaultObserver(Arc::new(
            move |activity: &str, fault: &Arc<StartedFault>| {
                let mut faults = daemon.faults();
                if faults.len() >= daemon.max_faults {
                    return Err(daemon.full());
                }
                let active = ActiveFault::started(Arc::clone(fault), uid, Some(experiment));
                let (target, description) = (active.target().to_owned(), active.description());
                let id = faults.insert(active);
                info!(id, experiment, activity, uid, %target, fault = %description, "fault created");
                Ok(())
            },
        ))
    }
}

/// Detaches faults taken out of the map (outside its lock), logging each with its last
/// counters.
fn stop_all(faults: &[(u64, ActiveFault)], why: &str) {
    for (id, fault) in faults {
        let last = fault.status(*id);
        fault.stop();
        info!(
            id,
            target = %last.target,
            fault = %last.description,
            why,
            matched = last.matched,
            injected = last.injected,
            "fault removed"
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then removes every fault and returns.
pub fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(config));
    // Do not wait for a fault still attaching: dropping the runtime's tasks drops it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(config: DaemonConfig) -> anyhow::Result<()> {
    let daemon = Arc::new(Daemon {
        faults: Mutex::default(),
        experiments: Mutex::default(),
        access: config.access.clone(),
        max_faults: config.max_faults,
    });
    let mut term = signal(SignalKind::terminate()).context("installing signal handlers")?;
    let mut int = signal(SignalKind::interrupt()).context("installing signal handlers")?;

    // Metrics first: failing to bind them must not leave a socket behind.
    let metrics = match config.metrics {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?;
            info!(%addr, "metrics on http://{addr}/metrics");
            let router = Router::new()
                .route("/metrics", get(scrape))
                .with_state(Arc::clone(&daemon));
            Some(axum::serve(listener, router))
        }
        None => None,
    };
    let listener = bind_socket(&config.socket, &config.access)?;
    let api = Router::new()
        .route("/faults", get(list).post(create).delete(remove_all))
        .route("/faults/{id}", get(show).delete(remove))
        .route("/schema", get(schema))
        .route("/experiments", get(list_experiments).post(start_experiment))
        .route(
            "/experiments/{id}",
            get(show_experiment).delete(abort_experiment),
        )
        .layer(middleware::from_fn_with_state(
            Arc::clone(&daemon),
            authorize,
        ))
        .with_state(Arc::clone(&daemon));
    let api = axum::serve(listener, api.into_make_service_with_connect_info::<Peer>());
    info!(
        socket = %config.socket.display(),
        max_faults = config.max_faults,
        "chaos daemon listening"
    );

    let reaper = tokio::spawn(reap_expired(Arc::clone(&daemon)));
    let outcome = tokio::select! {
        r = api.into_future() => r.context("serving the API"),
        r = async {
            match metrics {
                Some(m) => m.into_future().await,
                None => std::future::pending().await,
            }
        } => r.context("serving metrics"),
        _ = term.recv() => { info!("SIGTERM: removing every fault"); Ok(()) }
        _ = int.recv() => { info!("SIGINT: removing every fault"); Ok(()) }
    };
    reaper.abort();
    daemon.remove_all("daemon exiting");
    let _ = std::fs::remove_file(&config.socket);
    info!("chaos daemon stopped");
    outcome
}

/// Creates the socket 0660 root:GROUP, refusing to replace one a daemon still answers on.
fn bind_socket(path: &Path, access: &AccessPolicy) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another chaos daemon answers on {}; stop it first or give --socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // No moment where the socket is more open than 0660.
    let old = umask(Mode::from_bits_truncate(0o117));
    let listener = UnixListener::bind(path);
    umask(old);
    let listener = listener.with_context(|| format!("listening on {}", path.display()))?;
    let owned = chown(path, Some(Uid::from_raw(0)), Some(access.socket_gid()))
        .with_context(|| format!("giving {} to root and the group", path.display()))
        .and_then(|()| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("making {} 0660", path.display()))
        });
    if let Err(err) = owned {
        let _ = std::fs::remove_file(path);
        return Err(err);
    }
    Ok(listener)
}

async fn reap_expired(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (expired, removed) = daemon.faults().remove_ended(now);
        stop_all(&expired, "its duration passed");
        stop_all(&removed, "its experiment removed it");
        let gone = daemon.faults().remove_gone();
        stop_all(&gone, "its target cgroup was removed");
    }
}

/// An error answer: a status and a message.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"))
    }
}

async fn authorize(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(message) = daemon.access.check(&peer) {
        warn!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, method = %request.method(), path = %request.uri(), "refused");
        return Failure(StatusCode::FORBIDDEN, message).into_response();
    }
    request.extensions_mut().insert(peer);
    next.run(request).await
}

async fn create(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(body): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<FaultStatus>), Failure> {
    let full = || Failure(StatusCode::TOO_MANY_REQUESTS, daemon.full());
    if daemon.faults().len() >= daemon.max_faults {
        return Err(full());
    }
    let spec = body.clone();
    // Resolving the target reads the filesystem and starting loads and attaches programs:
    // blocking work, off the async threads.
    let started = tokio::task::spawn_blocking(move || {
        ActiveFault::start(spec, peer.uid).map_err(|refusal| match refusal {
            Refusal::Invalid(msg) => Failure(StatusCode::BAD_REQUEST, msg),
            Refusal::NotStarted(msg) => Failure(StatusCode::UNPROCESSABLE_ENTITY, msg),
        })
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let fault = match started {
        Ok(fault) => fault,
        Err(failure) => {
            warn!(uid = peer.uid, pid = ?peer.pid, spec = %body, error = %failure.1, "fault refused");
            return Err(failure);
        }
    };
    let mut faults = daemon.faults();
    if faults.len() >= daemon.max_faults {
        drop(faults);
        fault.stop();
        return Err(full());
    }
    let (target, description) = (fault.target().to_owned(), fault.description());
    let id = faults.insert(fault);
    let status = faults.get(id).expect("just inserted").status(id);
    info!(id, uid = peer.uid, pid = ?peer.pid, %target, fault = %description, "fault created");
    Ok((StatusCode::CREATED, Json(status)))
}

/// `GET /schema`: the JSON Schema of the fault spec `POST /faults` takes.
async fn schema() -> Json<serde_json::Value> {
    Json(crate::spec::schema())
}

async fn list(State(daemon): State<Arc<Daemon>>) -> Json<Vec<FaultStatus>> {
    let faults = daemon.faults();
    Json(faults.iter().map(|(id, f)| f.status(id)).collect())
}

fn no_such(id: u64) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no active fault {id} (it may have ended; GET /faults lists the active ones)"),
    )
}

async fn show(
    State(daemon): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<FaultStatus>, Failure> {
    let faults = daemon.faults();
    let fault = faults.get(id).ok_or_else(|| no_such(id))?;
    Ok(Json(fault.status(id)))
}

async fn remove(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<FaultStatus>, Failure> {
    let fault = daemon.faults().remove(id).ok_or_else(|| no_such(id))?;
    // The last counters, then detach.
    let status = fault.status(id);
    fault.stop();
    info!(id, uid = peer.uid, pid = ?peer.pid, target = %status.target, fault = %status.description, matched = status.matched, injected = status.injected, "fault removed");
    Ok(Json(status))
}

async fn remove_all(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Json<Removed> {
    Json(daemon.remove_all(&format!("stop all by uid {}", peer.uid)))
}

/// The ids of the active faults of each experiment.
fn faults_by_experiment(daemon: &Daemon) -> BTreeMap<u64, Vec<u64>> {
    let mut by = BTreeMap::<u64, Vec<u64>>::new();
    for (id, fault) in daemon.faults().iter() {
        if let Some(experiment) = fault.experiment() {
            by.entry(experiment).or_default().push(id);
        }
    }
    by
}

fn no_such_experiment(id: u64) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!("no experiment {id} (GET /experiments lists the ones the daemon knows)"),
    )
}

async fn start_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Json(body): Json<StartExperiment>,
) -> Result<(StatusCode, Json<ExperimentStatus>), Failure> {
    let planned = PlannedExperiment::from_request(&body).map_err(|msg| {
        warn!(uid = peer.uid, pid = ?peer.pid, file = ?body.name, error = %msg, "experiment refused");
        Failure(
            StatusCode::BAD_REQUEST,
            format!("invalid experiment, nothing was run:\n{msg}"),
        )
    })?;
    let id = daemon.experiments().reserve_id();
    info!(id, uid = peer.uid, pid = ?peer.pid, title = %planned.title(), "experiment started");
    let run = planned.start(peer.uid, daemon.observer(id, peer.uid));
    let status = run.status(id, Vec::new(), false);
    daemon.experiments().insert(id, run);
    Ok((StatusCode::CREATED, Json(status)))
}

async fn list_experiments(State(daemon): State<Arc<Daemon>>) -> Json<Vec<ExperimentStatus>> {
    let mut faults = faults_by_experiment(&daemon);
    let experiments = daemon.experiments();
    Json(
        experiments
            .iter()
            .map(|(id, run)| run.status(id, faults.remove(&id).unwrap_or_default(), false))
            .collect(),
    )
}

async fn show_experiment(
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

async fn abort_experiment(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<ExperimentStatus>, Failure> {
    {
        let experiments = daemon.experiments();
        let run = experiments.get(id).ok_or_else(|| no_such_experiment(id))?;
        run.abort();
    }
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

async fn scrape(State(daemon): State<Arc<Daemon>>) -> Result<Response, Failure> {
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
