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
//!
//! Security (see docs/daemon-security.md): who may connect is [`access`]'s (root and
//! `--group`); what each caller may fault is [`policy`]'s, decided on the resolved target
//! before anything is attached, for `POST /faults` and for each fault of an experiment alike;
//! an experiment's commands run with the caller's rights ([`crate::experiment::credentials`]);
//! every change asked for, allowed or refused, goes to the [`audit`] log. [`Limits`] bound
//! what one client can hold: body size (413), faults and running experiments per caller
//! (429), connections, and the time to send a request (a silent client is disconnected).
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
    body::Body,
    extract::{ConnectInfo, DefaultBodyLimit, Request, State},
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
    sync::Semaphore,
};
use tracing::{info, warn};

pub mod access;
pub mod api;
pub mod audit;
pub mod client;
mod events;
mod experiments;
mod faults;
mod metrics;
pub mod policy;
mod routes;

use access::{AccessPolicy, Peer};
use api::{ApiError, Removed};
use audit::AuditLog;
use experiments::Experiments;
use faults::{ActiveFault, ActiveFaults};
use policy::{Caller, Policy, ResolvedTarget};

use crate::{
    engine::{Placement, StartedFault, TargetCheck},
    experiment::runner::FaultObserver,
    target::cgroup2_root,
};

/// What one client may hold of the daemon.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body, in bytes (larger ones get 413).
    pub max_body: usize,
    /// The most faults one uid may have active at once (429 past it).
    pub faults_per_caller: usize,
    /// The most experiments one uid may have running at once (429 past it).
    pub experiments_per_caller: usize,
    /// How long a client has to send a request's headers, and then its body, before it is
    /// disconnected (408 for a body too slow).
    pub request_timeout: Duration,
    /// The most connections served at once; more wait to be accepted.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1 << 20,
            faults_per_caller: 16,
            experiments_per_caller: 4,
            request_timeout: Duration::from_secs(10),
            connections: 256,
        }
    }
}

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
    /// What each caller may fault besides its own.
    pub policy: Policy,
    /// Where the audit log goes, if anywhere.
    pub audit_log: Option<PathBuf>,
    /// What one client may hold.
    pub limits: Limits,
}

struct Daemon {
    faults: Mutex<ActiveFaults>,
    experiments: Mutex<Experiments>,
    access: AccessPolicy,
    max_faults: usize,
    policy: Policy,
    audit: AuditLog,
    limits: Limits,
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

    /// The message refusing a fault when `uid` has `--max-faults-per-caller` active.
    fn full_for(&self, uid: u32) -> String {
        format!(
            "uid {uid} already has its maximum of {} faults active \
             (--max-faults-per-caller); stop one first",
            self.limits.faults_per_caller
        )
    }

    /// Decides whether `peer` may fault a resolved target ([`Policy::authorize`]) and audits
    /// the decision as `action` on `what`.
    fn target_check(
        self: &Arc<Daemon>,
        peer: Peer,
        action: &'static str,
        what: String,
    ) -> Arc<TargetCheck> {
        let daemon = Arc::clone(self);
        let caller = Caller::of(peer.uid, peer.gid);
        Arc::new(move |place: &Placement<'_>| {
            let resolved = if caller.is_root() {
                // Root's targets need no inspection (the guards have had their say).
                ResolvedTarget {
                    given: place.named.to_string(),
                    cgroup: place.cgroup.path.clone(),
                    ..ResolvedTarget::default()
                }
            } else {
                let mut resolved =
                    ResolvedTarget::inspect(&cgroup2_root()?, place.named, place.cgroup);
                resolved.guards_overridden = place.guards_overridden;
                resolved
            };
            let decision = daemon.policy.authorize(&caller, &resolved);
            let target = format!("{} ({})", resolved.given, resolved.cgroup.display());
            let (allowed, reason) = match &decision {
                Ok(grant) => (true, format!("allowed by rule: {grant}")),
                Err(refusal) => (false, refusal.to_string()),
            };
            daemon
                .audit
                .record(&peer, action, what.clone(), target, allowed, reason);
            match decision {
                Ok(grant) => {
                    info!(uid = peer.uid, target = %resolved.given, %grant, "target authorized");
                    Ok(())
                }
                Err(refusal) => Err(refusal.into()),
            }
        })
    }

    /// What an experiment started as `experiment` by `peer` does with each fault it starts:
    /// register it (or refuse it past `--max-faults` or `--max-faults-per-caller`).
    fn observer(self: &Arc<Daemon>, experiment: u64, peer: Peer) -> FaultObserver {
        let daemon = Arc::clone(self);
        let uid = peer.uid;
        FaultObserver(Arc::new(
            move |activity: &str, fault: &Arc<StartedFault>| {
                let mut faults = daemon.faults();
                if faults.len() >= daemon.max_faults {
                    return Err(daemon.full());
                }
                if faults.count_by(uid) >= daemon.limits.faults_per_caller {
                    return Err(daemon.full_for(uid));
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
        policy: config.policy.clone(),
        audit: AuditLog::open(config.audit_log.as_deref())?,
        limits: config.limits.clone(),
    });
    restore_qdiscs_left_behind(&daemon.audit);
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
                .route("/metrics", get(routes::scrape))
                .with_state(Arc::clone(&daemon));
            Some(axum::serve(listener, router))
        }
        None => None,
    };
    let listener = bind_socket(&config.socket, &config.access)?;
    let api = Router::new()
        .route(
            "/faults",
            get(routes::list)
                .post(routes::create)
                .delete(routes::remove_all),
        )
        .route("/faults/{id}", get(routes::show).delete(routes::remove))
        .route("/faults/{id}/events", get(events::events))
        .route("/schema", get(routes::schema))
        .route(
            "/experiments",
            get(routes::list_experiments).post(routes::start_experiment),
        )
        .route(
            "/experiments/{id}",
            get(routes::show_experiment).delete(routes::abort_experiment),
        )
        .layer(middleware::from_fn_with_state(
            Arc::clone(&daemon),
            authorize,
        ))
        // The body is read (within the limit) by `authorize`, not by axum's extractors.
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::clone(&daemon));
    let api = serve_connections(listener, api, config.limits.clone());
    info!(
        socket = %config.socket.display(),
        max_faults = config.max_faults,
        grants = config.policy.len(),
        "chaos daemon listening"
    );

    let reaper = tokio::spawn(reap_expired(Arc::clone(&daemon)));
    let outcome = tokio::select! {
        r = api => r.context("serving the API"),
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

/// Undoes what a chaos that was killed left on network devices (the fq root qdisc of
/// net-delay and net-rate; before 6.6, the tc filter of net-corrupt and net-duplicate; see
/// [`crate::packet::qdisc_record`]), logging and auditing each as done by the daemon itself.
fn restore_qdiscs_left_behind(audit: &AuditLog) {
    let dir = Path::new(crate::packet::qdisc_record::RECORD_DIR);
    let me = Peer {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        pid: Some(std::process::id() as i32),
    };
    for restored in crate::packet::qdisc_record::restore_left_behind(dir) {
        let device = restored
            .record
            .as_ref()
            .map_or_else(|| restored.path.display().to_string(), |r| r.device.clone());
        if restored.done {
            info!(%device, outcome = %restored.outcome, "qdisc left by a killed chaos restored");
        } else {
            warn!(%device, outcome = %restored.outcome, record = %restored.path.display(), "qdisc left by a killed chaos not restored");
        }
        audit.record(
            &me,
            "restore-qdisc",
            restored.path.display().to_string(),
            device,
            restored.done,
            restored.outcome,
        );
    }
}

/// Serves the API on every connection `listener` accepts, each on a task of its own with the
/// client's peer credentials ([`Peer`]) attached to its requests. A connection that does not
/// send a request's headers within the limit is closed, so a silent client holds a socket
/// for that long and no worker at all; at most `limits.connections` are served at once.
async fn serve_connections(
    listener: UnixListener,
    api: Router,
    limits: Limits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;
    let slots = Arc::new(Semaphore::new(limits.connections));
    loop {
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: pass, and keep serving.
            Err(err) => {
                warn!(%err, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = Peer::of(&stream);
        let api = api.clone();
        let timeout = limits.request_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    api.clone().oneshot(request.map(Body::new))
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(uid = peer.uid, %err, "connection ended");
            }
        });
    }
}

/// Creates the socket 0660 root:GROUP, refusing to replace one a daemon still answers on.
///
/// The socket is bound under a temporary name and renamed into place only once its owner and
/// mode are final: a client that can connect to `path` meets the final permissions. (Binding
/// at `path` itself let a client connect between listen() and chmod(); a test that opened the
/// socket to everyone in that window had its chmod undone by the daemon's, and its uid-65534
/// client got EACCES. Under the VM tier's emulation that window was milliseconds wide.)
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
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| "chaos.sock".into(), |n| n.to_string_lossy().into_owned());
    let staging = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    // No moment where the socket is more open than 0660.
    let old = umask(Mode::from_bits_truncate(0o117));
    let listener = UnixListener::bind(&staging);
    umask(old);
    let listener = listener.with_context(|| format!("listening on {}", staging.display()))?;
    let placed = chown(&staging, Some(Uid::from_raw(0)), Some(access.socket_gid()))
        .with_context(|| format!("giving {} to root and the group", staging.display()))
        .and_then(|()| {
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("making {} 0660", staging.display()))
        })
        .and_then(|()| {
            std::fs::rename(&staging, path)
                .with_context(|| format!("moving the socket to {}", path.display()))
        });
    if let Err(err) = placed {
        let _ = std::fs::remove_file(&staging);
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

/// Lets in root and the group's members ([`AccessPolicy`]), then reads the body within the
/// size and time limits (413, 408) before any handler sees it.
async fn authorize(
    State(daemon): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(message) = daemon.access.check(&peer) {
        warn!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, method = %request.method(), path = %request.uri(), "refused");
        if request.method() != axum::http::Method::GET {
            daemon.audit.record(
                &peer,
                "connect",
                format!("{} {}", request.method(), request.uri()),
                "",
                false,
                message.clone(),
            );
        }
        return Failure(StatusCode::FORBIDDEN, message).into_response();
    }
    let (mut parts, body) = request.into_parts();
    let limits = &daemon.limits;
    let too_large = || {
        Failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than the daemon accepts ({} bytes); \
                 send a smaller experiment or fault",
                limits.max_body
            ),
        )
        .into_response()
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        warn!(uid = peer.uid, ?declared, "request body too large");
        return too_large();
    }
    let read =
        http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limits.max_body));
    let bytes = match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            warn!(uid = peer.uid, "request body too large");
            return too_large();
        }
        Ok(Err(err)) => {
            return Failure(
                StatusCode::BAD_REQUEST,
                format!("reading the request: {err}"),
            )
            .into_response();
        }
        Err(_) => {
            warn!(uid = peer.uid, "request body too slow");
            return Failure(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:?}",
                    limits.request_timeout
                ),
            )
            .into_response();
        }
    };
    parts.extensions.insert(peer);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
