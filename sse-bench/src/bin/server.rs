//! Our side of the bench: `#[sse::subscribe]` streams and a route that publishes its body, as a
//! user of `sse` would write them. `GET /sub/{group}` listens, `POST /pub/{group}` publishes.
//!
//! Usage: `sse-bench-server 127.0.0.1:PORT`

use std::time::Duration;

use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};

#[sse::subscribe]
async fn sub(Path(group): Path<String>) -> Result<sse::GroupName, Response> {
    sse::GroupName::new(group).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

async fn publish(Path(group): Path<String>, data: String) -> Response {
    match sse::publish!(group, data) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: sse-bench-server 127.0.0.1:PORT");
    // Sized for the bench: up to 19k streams (the machine's 20k open files per process), and
    // queues deep enough that a publisher flooding one group does not cut healthy clients.
    let config = sse::Config::default()
        .max_streams(20_000)
        .subscriber_queue(8_192)
        .history(1_000, Duration::from_secs(60));
    sse::init(config).expect("nothing used the hub yet");
    let app = Router::new()
        .route("/sub/{group}", get(sub))
        .route("/pub/{group}", post(publish));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    sse::serve(listener, app).await.expect("server runs");
}
