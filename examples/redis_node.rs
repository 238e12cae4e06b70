//! One of several server processes sharing groups through Redis. Start a few on different ports
//! with the same `SSE_BROKER_URL`, put a load balancer in front, and any of them serves any
//! client: a browser may reconnect to another one and still get what it missed.
//!
//! ```sh
//! SSE_BROKER_URL=redis://127.0.0.1:6379/0 PORT=8001 \
//!   cargo run -p sse-examples --features redis --example redis_node
//! ```
//!
//! - `GET /events/{group}`: the stream of any group.
//! - `GET /events/{group}/as/{user}`: the same, opened by `user` (metadata `node`): it counts
//!   in the group's presence, and its first and last stream publish `presence-join` and
//!   `presence-leave`.
//! - `GET /status/{group}`: how many streams of this process listen to it.
//! - `GET /groups`: how many groups this process holds (and listens to in Redis).
//! - `POST /publish/{group}/{count}`: publishes `count` `tick` events from this process (data
//!   `<process id>-<n>`); answers their ids, one a line.
//!
//! `PORT` 0 (the default) picks a free port; the first line printed says which. `KEEP_ALIVE_MS`
//! sets the keep-alive period, `HISTORY_MS` how long groups keep their history (and how long an
//! idle group is held), `PRESENCE_TTL_MS` how long this process's presence entries outlive it.

use std::{error::Error, fmt::Write, process::ExitCode, time::Duration};

use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};

#[sse::subscribe]
async fn events(Path(group): Path<sse::GroupName>) -> Result<sse::GroupName, sse::NameError> {
    Ok(group) // checked by its type: an invalid name is axum's 400
}

#[sse::subscribe]
async fn events_as(
    Path((group, user)): Path<(sse::GroupName, String)>,
) -> Result<sse::Join, sse::NameError> {
    Ok(sse::Join::group(group).identity(sse::Identity::new(user).with_meta("node")))
}

async fn status(Path(group): Path<String>) -> String {
    sse::hub().group_stats(&group).subscribers.to_string()
}

async fn groups() -> String {
    sse::hub().stats().groups.to_string()
}

async fn publish(Path((group, count)): Path<(String, u32)>) -> Response {
    let process = std::process::id();
    let mut ids = String::new();
    for i in 0..count {
        // In async code the awaitable form: the worker serves other requests meanwhile.
        let publishing = sse::hub().publish_async(&group, Some("tick"), format!("{process}-{i}"));
        match publishing.await {
            Ok(id) => {
                let _ = writeln!(ids, "{id}");
            }
            Err(error) => {
                return (StatusCode::SERVICE_UNAVAILABLE, explained(&error)).into_response()
            }
        }
    }
    ids.into_response()
}

/// `error`'s message, then its deepest source's: sse's errors say what failed and keep why (the
/// Redis error) as their source. The sources in between are skipped: Redis's own error repeats
/// the message of its source.
fn explained(error: &dyn Error) -> String {
    match std::iter::successors(error.source(), |&cause| cause.source()).last() {
        Some(why) => format!("{error}: {why}"),
        None => error.to_string(),
    }
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = env_number("PORT", 0).and_then(|port| {
        let keep_alive = env_number("KEEP_ALIVE_MS", 15_000)?;
        let history = env_number("HISTORY_MS", 300_000)?;
        Ok((
            port,
            keep_alive,
            history,
            env_number("PRESENCE_TTL_MS", 30_000)?,
        ))
    });
    let (port, keep_alive, history, presence_ttl) = match settings {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("redis_node: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `init` reads SSE_BROKER_URL, and fails if Redis does not answer.
    let config = sse::Config::default()
        .keep_alive(Some(Duration::from_millis(keep_alive)))
        .history(1_000, Duration::from_millis(history))
        .presence_events(true)
        .presence_ttl(Duration::from_millis(presence_ttl));
    if let Err(error) = sse::init(config) {
        eprintln!("redis_node: {}", explained(&error));
        return ExitCode::FAILURE;
    }
    let app = Router::new()
        .route("/events/{group}", get(events))
        .route("/events/{group}/as/{user}", get(events_as))
        .route("/status/{group}", get(status))
        .route("/groups", get(groups))
        .route("/publish/{group}/{count}", post(publish));
    let listener = match sse::bind(("127.0.0.1", port as u16)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("redis_node: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(error) => eprintln!("redis_node: {error}"),
    }
    if let Err(error) = sse::serve(listener, app).await {
        eprintln!("redis_node: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
