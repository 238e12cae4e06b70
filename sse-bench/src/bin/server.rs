//! Our side of the bench: `#[sse::subscribe]` streams and a route that publishes its body, as a
//! user of `sse` would write them. `GET /sub/{group}` listens, `POST /pub/{group}` publishes,
//! `GET /page` is a small page (what a browser loads before its `EventSource`), and
//! `POST /batch/{groups}/{count}` publishes its body `count` times, each to a random group of
//! `g0` to `g{groups - 1}`, inside the process.
//!
//! Usage: `sse-bench-server 127.0.0.1:PORT [axum | app-runtime]`: served by `sse::serve`; with
//! `axum`, by `axum::serve` (to compare the two on the same app); with `app-runtime`, by
//! `sse::serve` with its streams written by the app's runtime (`writer_threads(false)`).

use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use axum::{
    extract::Path,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
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

const PAGE: &str = "<!doctype html>\n<title>yo</title>\n<ul id=yos></ul>\n<script>\n\
    new EventSource(\"/sub/yo\").onmessage = (e) => \
    document.getElementById(\"yos\").append(Object.assign(document.createElement(\"li\"), \
    { textContent: e.data }));\n</script>\n";

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Where the next batch's xorshift64 generator starts: random groups without a dependency.
static SEED: AtomicU64 = AtomicU64::new(1);

async fn batch(Path((groups, count)): Path<(u64, u64)>, data: String) -> Response {
    let mut random = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed) | 1;
    for _ in 0..count {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        if let Err(e) = sse::publish!(format!("g{}", random % groups.max(1)), data.as_str()) {
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

const USAGE: &str = "usage: sse-bench-server 127.0.0.1:PORT [axum | app-runtime]";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect(USAGE);
    let how = args.next();
    if let Some(other) = how
        .as_deref()
        .filter(|how| !["axum", "app-runtime"].contains(how))
    {
        panic!("{USAGE}, not {other:?}");
    }
    // Sized for the bench: up to 19k streams (the machine's 20k open files per process), and
    // queues deep enough that a publisher flooding one group does not cut healthy clients.
    let mut config = sse::Config::default()
        .max_streams(20_000)
        .subscriber_queue(8_192)
        .history(1_000, Duration::from_secs(60));
    // `SSE_BENCH_BATCH_WINDOW_US` sets another batch window, to measure the choice.
    if let Ok(window) = std::env::var("SSE_BENCH_BATCH_WINDOW_US") {
        let window = window
            .parse()
            .expect("SSE_BENCH_BATCH_WINDOW_US: microseconds");
        config = config.batch_window(Duration::from_micros(window));
    }
    sse::init(config).expect("nothing used the hub yet");
    let app = Router::new()
        .route("/sub/{group}", get(sub))
        .route("/pub/{group}", post(publish))
        .route("/page", get(page))
        .route("/batch/{groups}/{count}", post(batch));
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    match how.as_deref() {
        Some("axum") => axum::serve(listener, app).await,
        Some("app-runtime") => sse::serve(listener, app).writer_threads(false).await,
        _ => sse::serve(listener, app).await,
    }
    .expect("server runs");
}
