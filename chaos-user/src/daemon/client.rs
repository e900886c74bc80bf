//! Talking to a running daemon over its socket, for the CLI (blocking calls).
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, body::Bytes};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::UnixStream;

use super::api::{
    ApiError, CreateFault, DEFAULT_SOCKET, ExperimentStatus, FaultStatus, Removed, SOCKET_ENV,
    StartExperiment,
};

/// A daemon's socket.
#[derive(Clone, Debug)]
pub struct DaemonClient {
    socket: PathBuf,
}

impl DaemonClient {
    /// The daemon at `socket`, or `$CHAOS_SOCKET`, or the default path.
    pub fn new(socket: Option<&Path>) -> DaemonClient {
        let socket = socket.map(Path::to_path_buf).unwrap_or_else(|| {
            std::env::var_os(SOCKET_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
        });
        DaemonClient { socket }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a daemon answers on the socket (it exists and accepts a connection).
    pub fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    /// Creates a fault from its spec.
    pub fn create(&self, spec: &CreateFault) -> anyhow::Result<FaultStatus> {
        self.call(Method::POST, "/faults", Some(spec))
    }

    /// Creates a fault from a JSON body as any client sends it (checked by the daemon).
    pub fn create_json(&self, body: &serde_json::Value) -> anyhow::Result<FaultStatus> {
        self.call(Method::POST, "/faults", Some(body))
    }

    /// The JSON Schema of the fault spec the daemon takes.
    pub fn schema(&self) -> anyhow::Result<serde_json::Value> {
        self.call::<(), _>(Method::GET, "/schema", None)
    }

    /// Every active fault with its counters.
    pub fn list(&self) -> anyhow::Result<Vec<FaultStatus>> {
        self.call::<(), _>(Method::GET, "/faults", None)
    }

    /// Removes one fault; its last counters.
    pub fn remove(&self, id: u64) -> anyhow::Result<FaultStatus> {
        self.call::<(), _>(Method::DELETE, &format!("/faults/{id}"), None)
    }

    /// Removes every fault.
    pub fn remove_all(&self) -> anyhow::Result<Removed> {
        self.call::<(), _>(Method::DELETE, "/faults", None)
    }

    /// Starts an experiment.
    pub fn start_experiment(&self, request: &StartExperiment) -> anyhow::Result<ExperimentStatus> {
        self.call(Method::POST, "/experiments", Some(request))
    }

    /// Every experiment the daemon knows, without logs and journals.
    pub fn experiments(&self) -> anyhow::Result<Vec<ExperimentStatus>> {
        self.call::<(), _>(Method::GET, "/experiments", None)
    }

    /// One experiment with its log so far and, once finished, its journal.
    pub fn experiment(&self, id: u64) -> anyhow::Result<ExperimentStatus> {
        self.call::<(), _>(Method::GET, &format!("/experiments/{id}"), None)
    }

    /// Aborts an experiment: its faults are removed at once.
    pub fn abort_experiment(&self, id: u64) -> anyhow::Result<ExperimentStatus> {
        self.call::<(), _>(Method::DELETE, &format!("/experiments/{id}"), None)
    }

    /// Follows fault `id`'s events (`GET /faults/{id}/events`), handing each JSON line to
    /// `each`, until the fault ends.
    pub fn follow_events(
        &self,
        id: u64,
        mut each: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("/faults/{id}/events"))
            .header(hyper::header::HOST, "chaos")
            .body(Full::new(Bytes::new()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime
            .block_on(async {
                let stream = UnixStream::connect(&self.socket).await?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                let response = sender.send_request(request).await?;
                let status = response.status();
                let mut body = response.into_body();
                if !status.is_success() {
                    let bytes = body.collect().await?.to_bytes();
                    let message = serde_json::from_slice::<ApiError>(&bytes)
                        .map(|e| e.error)
                        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
                    bail!("the chaos daemon refused ({status}): {message}");
                }
                let mut pending = Vec::new();
                while let Some(frame) = body.frame().await {
                    let Ok(data) = frame?.into_data() else {
                        continue;
                    };
                    pending.extend_from_slice(&data);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        each(String::from_utf8_lossy(&line[..end]).as_ref())?;
                    }
                }
                Ok(())
            })
            .with_context(|| format!("following fault {id} on {}", self.socket.display()))
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "chaos")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, bytes) = runtime
            .block_on(self.send(request))
            .with_context(|| format!("talking to the chaos daemon on {}", self.socket.display()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            bail!("the chaos daemon refused ({status}): {message}");
        }
        serde_json::from_slice(&bytes).context("reading the chaos daemon's answer")
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let stream = UnixStream::connect(&self.socket).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}
