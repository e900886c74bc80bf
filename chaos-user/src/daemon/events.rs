//! `GET /faults/{id}/events`: a fault's events as JSON lines, streamed (chunked) while it
//! runs. The kernel writes them only while someone listens; the stream ends with the fault.
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Path as UrlPath, State},
    response::Response,
};
use hyper::body::{Bytes, Frame};
use tokio::sync::mpsc;

use super::{Daemon, Failure, routes::no_such};
use crate::{engine::StartedFault, events::Clock};

/// How often the stream reads the fault's events.
const POLL: Duration = Duration::from_millis(20);

/// Streams fault `id`'s events, one JSON object per line, until it ends or the client goes.
pub(super) async fn events(
    State(daemon): State<Arc<Daemon>>,
    UrlPath(id): UrlPath<u64>,
) -> Result<Response, Failure> {
    let fault = daemon
        .faults()
        .get(id)
        .map(|f| f.shared())
        .ok_or_else(|| no_such(id))?;
    let clock = Clock::now().map_err(internal)?;
    fault
        .listen_events(true)
        .map_err(|e| internal(format!("{e:#}")))?;
    let (lines, rx) = mpsc::channel(64);
    tokio::spawn(follow(fault, clock, lines));
    Response::builder()
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::new(EventLines(rx)))
        .map_err(internal)
}

fn internal(err: impl std::fmt::Display) -> Failure {
    Failure::from(anyhow::anyhow!("{err}"))
}

/// Sends the fault's events as they come, until it ends or the client hangs up; then asks
/// the kernel to stop writing them.
async fn follow(fault: Arc<StartedFault>, clock: Clock, lines: mpsc::Sender<Bytes>) {
    let mut tick = tokio::time::interval(POLL);
    'follow: loop {
        tick.tick().await;
        let active = fault.active();
        let mut chunk = Vec::new();
        for event in fault.events(&clock) {
            if let Ok(line) = serde_json::to_vec(&event) {
                chunk.extend_from_slice(&line);
                chunk.push(b'\n');
            }
        }
        if !chunk.is_empty() && lines.send(Bytes::from(chunk)).await.is_err() {
            break 'follow;
        }
        if !active || lines.is_closed() {
            break;
        }
    }
    let _ = fault.listen_events(false);
}

/// The response body: the lines [`follow`] sends, each chunk as it comes.
struct EventLines(mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventLines {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}
