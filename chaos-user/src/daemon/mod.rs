//! `chaos daemon`: one process owns the kernel programs of every fault and serves an HTTP/JSON
//! API on a Unix socket (and Prometheus metrics on TCP).
//!
//! Each fault is its own [`crate::loader::Injector`]: attached all or nothing, detached when
//! removed (`DELETE`, its deadline, SIGTERM/SIGINT) and by the kernel if the daemon dies,
//! since nothing is pinned. The kernel programs also stop injecting at each fault's deadline
//! by themselves, so a frozen daemon cannot make a fault outlive it either.
//!
//! API (JSON bodies, see [`api`]): `POST /faults` with [`api::CreateFault`], `GET /faults`,
//! `GET /faults/{id}`, `DELETE /faults/{id}`, `DELETE /faults` (all).
use std::{
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
mod faults;
mod metrics;

use access::{AccessPolicy, Peer};
use api::{ApiError, CreateFault, FaultStatus, Removed};
use faults::{ActiveFaults, PlannedFault};

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
    access: AccessPolicy,
    max_faults: usize,
}

impl Daemon {
    fn faults(&self) -> MutexGuard<'_, ActiveFaults> {
        // A panic while holding the lock leaves the map consistent (inserts and removes are
        // single operations), so keep serving.
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes every fault, logging each; returns their ids.
    fn remove_all(&self, why: &str) -> Vec<u64> {
        let removed = self.faults().clear();
        let ids = removed.iter().map(|(id, _)| *id).collect();
        for (id, fault) in removed {
            info!(id, target = %fault.target(), fault = %fault.description(), why, "fault removed");
        }
        ids
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
        let expired = daemon.faults().remove_expired(Instant::now());
        for (id, fault) in expired {
            info!(id, target = %fault.target(), fault = %fault.description(), "fault removed: its duration passed");
        }
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
    Json(body): Json<CreateFault>,
) -> Result<(StatusCode, Json<FaultStatus>), Failure> {
    let full = || {
        Failure(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the daemon already runs its maximum of {} faults (--max-faults); stop one first",
                daemon.max_faults
            ),
        )
    };
    if daemon.faults().len() >= daemon.max_faults {
        return Err(full());
    }
    let args = body.args.clone();
    // Parsing resolves the target (filesystem) and starting loads and attaches programs:
    // blocking work, off the async threads.
    let started = tokio::task::spawn_blocking(move || {
        let plan = PlannedFault::from_args(&args)
            .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
        plan.start(peer.uid)
            .map_err(|e| Failure(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let fault = match started {
        Ok(fault) => fault,
        Err(failure) => {
            warn!(uid = peer.uid, pid = ?peer.pid, args = ?body.args, error = %failure.1, "fault refused");
            return Err(failure);
        }
    };
    let mut faults = daemon.faults();
    if faults.len() >= daemon.max_faults {
        return Err(full()); // Dropping `fault` detaches it again.
    }
    let (target, description) = (fault.target(), fault.description());
    let id = faults.insert(fault);
    let status = faults.get(id).expect("just inserted").status(id)?;
    info!(id, uid = peer.uid, pid = ?peer.pid, %target, fault = %description, "fault created");
    Ok((StatusCode::CREATED, Json(status)))
}

async fn list(State(daemon): State<Arc<Daemon>>) -> Result<Json<Vec<FaultStatus>>, Failure> {
    let faults = daemon.faults();
    let all = faults
        .iter()
        .map(|(id, f)| f.status(id))
        .collect::<anyhow::Result<_>>()?;
    Ok(Json(all))
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
    Ok(Json(fault.status(id)?))
}

async fn remove(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Json<FaultStatus>, Failure> {
    let fault = daemon.faults().remove(id).ok_or_else(|| no_such(id))?;
    // The last counters, then detach.
    let status = fault.status(id)?;
    drop(fault);
    info!(id, uid = peer.uid, pid = ?peer.pid, target = %status.target, fault = %status.description, "fault removed");
    Ok(Json(status))
}

async fn remove_all(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Json<Removed> {
    let removed = daemon.remove_all(&format!("stop all by uid {}", peer.uid));
    Json(Removed { removed })
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
