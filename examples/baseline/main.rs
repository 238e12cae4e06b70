//! The baseline of the bench: the SSE pub/sub a Rust user would write by hand with axum's `Sse`
//! and one `tokio::sync::broadcast` channel per group. Same routes as the bench's server:
//! `GET /sub/{group}` listens, `POST /pub/{group}` publishes its body as a `message` event.
//!
//! Usage: `sse-bench-baseline 127.0.0.1:PORT` (built with `cargo build --release -p sse-bench`).

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::sse::{Event, KeepAlive, Sse},
    routing::{get, post},
    Router,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// Each group's channel. Deep enough that a flooding publisher does not make clients lag.
const CHANNEL_CAPACITY: usize = 8_192;

#[derive(Clone, Default)]
struct Groups(Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>);

async fn sub(
    State(groups): State<Groups>,
    Path(group): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = groups
        .0
        .lock()
        .unwrap()
        .entry(group)
        .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
        .subscribe();
    // A lagging receiver skips what it missed.
    let events = BroadcastStream::new(receiver)
        .filter_map(|data| async move { data.ok().map(|data| Ok(Event::default().data(&*data))) });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn publish(
    State(groups): State<Groups>,
    Path(group): Path<String>,
    data: String,
) -> StatusCode {
    if let Some(sender) = groups.0.lock().unwrap().get(&group) {
        // No receivers is not an error: nobody listens.
        let _ = sender.send(data.into());
    }
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: sse-bench-baseline 127.0.0.1:PORT");
    let app = Router::new()
        .route("/sub/{group}", get(sub))
        .route("/pub/{group}", post(publish))
        .with_state(Groups::default());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    axum::serve(listener, app).await.expect("server runs");
}
