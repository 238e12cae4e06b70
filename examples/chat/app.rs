//! The chat example: an answer streamed token by token, as a group of its own, that survives a
//! reload and, with Redis, the death of the process that was writing it.
//!
//! - `POST /api/answers` (form field `prompt`) starts an answer: its group `answer.<id>` is held
//!   with room for all of it ([`sse::Hub::keep`]), its first event is `prompt`, then a fake
//!   generator publishes one `token` event per word, and finishes the group (`stream-end`).
//!   The generator is deterministic: the answer is a function of the prompt ([`tokens`]), so
//!   whoever knows the prompt and how many tokens were published can write the rest.
//! - `GET /answers/{id}/events` is the answer's stream, rewound in full: a page opened late or
//!   reloaded gets everything published so far, once, then the rest; a reconnecting
//!   `EventSource` resumes from its `Last-Event-ID`; after the end it gets `204`.
//! - `POST /api/answers/{id}/resume` continues an answer whose generator died (its process was
//!   killed): it reads the answer from its history (with Redis, any process can), up to a
//!   `resumed` event it publishes itself, and writes the tokens that are missing. Each token is
//!   published with an idempotency key (its position), so even two generators of one answer
//!   never publish a token twice.
//! - `GET /` is the form, `GET /answers/{id}` the answer's page.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Extension, Form, Json, Router,
};
use futures_util::StreamExt;
use serde::Deserialize;

/// How many tokens an answer has.
pub(crate) const ANSWER_TOKENS: usize = 40;
/// What a prompt may weigh.
const MAX_PROMPT: usize = 1_000;
/// What an answer's group keeps: far more than a prompt and its tokens.
const ANSWER_BYTES: usize = 256 * 1024;
/// How long `resume` waits to read an answer back from its history.
const READ_BACK: Duration = Duration::from_secs(5);
/// `rewind` for "everything the group kept".
const EVERYTHING: usize = 100_000;

/// The answer to `prompt`, token by token: its words in turn, each followed by a space.
/// `None` when the prompt has no word. `"a b"` is answered `"a b a b …"`.
pub(crate) fn tokens(prompt: &str) -> Option<Vec<String>> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    Some(
        (0..ANSWER_TOKENS)
            .map(|n| format!("{} ", words[n % words.len()]))
            .collect(),
    )
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Chat {
    /// The time between two tokens.
    pace: Duration,
    /// The answers this process is generating now.
    generating: Arc<Mutex<HashSet<String>>>,
}

impl Chat {
    /// A generator writing a token every `pace`.
    pub(crate) fn new(pace: Duration) -> Chat {
        Chat {
            pace,
            generating: Arc::default(),
        }
    }
}

/// The example's routes, on `hub`.
pub(crate) fn app(hub: &sse::Hub, chat: Chat) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/answers/{id}", get(page))
        .route("/answers/{id}/events", get(answer_events))
        .route("/api/answers", post(ask))
        .route("/api/answers/{id}/resume", post(resume))
        .with_state(chat)
        .layer(hub.layer())
}

/// Where the example listens and how fast it writes, from `CHAT_ADDR` and `CHAT_TOKEN_MS`.
pub(crate) struct Settings {
    /// Where to listen.
    pub(crate) addr: SocketAddr,
    /// The time between two tokens.
    pub(crate) pace: Duration,
}

impl Settings {
    /// Reads the environment; a malformed value is an error that says so.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let addr = std::env::var("CHAT_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
        let addr = addr
            .parse()
            .map_err(|e| format!("CHAT_ADDR={addr:?} is not an address: {e}"))?;
        let pace = std::env::var("CHAT_TOKEN_MS").unwrap_or_else(|_| "50".into());
        let pace = pace
            .parse()
            .map_err(|e| format!("CHAT_TOKEN_MS={pace:?} is not a number: {e}"))?;
        Ok(Settings {
            addr,
            pace: Duration::from_millis(pace),
        })
    }
}

/// The hub's settings: a short retry hint; with Redis, a history long enough for an answer.
pub(crate) fn hub_config() -> sse::Config {
    sse::Config::default()
        .retry(Some(Duration::from_secs(1)))
        .history(1_000, Duration::from_secs(600))
}

/// Runs the example until Ctrl-C, on Redis when `SSE_BROKER_URL` names one.
pub(crate) async fn run(settings: Settings) -> Result<(), String> {
    let hub = sse::init(hub_config()).map_err(|e| e.to_string())?;
    let app = app(hub, Chat::new(settings.pace));
    let listener = sse::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    tracing::info!("chat: open http://{}/ (Ctrl-C to stop)", settings.addr);
    sse::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            sse::hub().shutdown();
        })
        .await
        .map_err(|e| e.to_string())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The group of answer `id`, if `id` can name one.
fn answer_group(id: &str) -> Result<sse::GroupName, (StatusCode, String)> {
    sse::GroupName::new(format!("answer.{id}")).map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))
}

/// An answer's stream: everything it kept (after a reload too), then live tokens, then the end.
#[sse::subscribe(rewind = 100_000)]
async fn answer_events(Path(id): Path<String>) -> Result<sse::GroupName, (StatusCode, String)> {
    answer_group(&id)
}

#[derive(Deserialize)]
struct Ask {
    prompt: String,
}

/// A new answer's id, unique across processes: the time, the process, a counter.
fn new_id() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{n}", std::process::id())
}

async fn ask(
    State(chat): State<Chat>,
    Extension(hub): Extension<sse::Hub>,
    Form(ask): Form<Ask>,
) -> Response {
    if ask.prompt.len() > MAX_PROMPT {
        let too_long = format!("a prompt is at most {MAX_PROMPT} bytes");
        return (StatusCode::UNPROCESSABLE_ENTITY, too_long).into_response();
    }
    // One line: the `prompt` event's data, from which the answer can be written again.
    let prompt = ask.prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    if prompt.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "the prompt is empty").into_response();
    }
    let id = new_id();
    let group = format!("answer.{id}");
    let started = match hub.keep(&group, sse::Keep::bytes(ANSWER_BYTES)) {
        Ok(()) => hub.publish_async(&group, Some("prompt"), &prompt).await,
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
    }
    generate(hub, chat, id.clone(), prompt, 0);
    (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response()
}

/// Writes the answer to `prompt` from token `from` on, then finishes it, in a task.
fn generate(hub: sse::Hub, chat: Chat, id: String, prompt: String, from: usize) {
    let Some(tokens) = tokens(&prompt) else {
        return;
    };
    if let Ok(mut generating) = chat.generating.lock() {
        generating.insert(id.clone());
    }
    tokio::spawn(async move {
        let group = format!("answer.{id}");
        // Unfinished when a publish fails: the answer stays resumable.
        if let Err(e) = write(&hub, &group, &tokens, from, chat.pace).await {
            tracing::warn!(%group, "the answer stops: {e}");
        }
        if let Ok(mut generating) = chat.generating.lock() {
            generating.remove(&id);
        }
    });
}

/// Publishes `tokens` from `from` on in `group`, a token every `pace`, then finishes the group;
/// also when every token was there already (the writer died before the end).
async fn write(
    hub: &sse::Hub,
    group: &str,
    tokens: &[String],
    from: usize,
    pace: Duration,
) -> Result<(), sse::PublishError> {
    for (n, token) in tokens.iter().enumerate().skip(from) {
        tokio::time::sleep(pace).await;
        // Keyed by position: a token published by another generator too is not repeated.
        let keyed = hub.idempotent(format!("token:{n}"));
        keyed.publish_async(group, Some("token"), token).await?;
    }
    hub.finish_async(group).await.map(|_| ())
}

/// How far an answer got, as read back from its history.
enum SoFar {
    /// Its prompt and how many tokens were published.
    Written { prompt: String, tokens: usize },
    /// It has ended already.
    Finished,
    /// Its history has no prompt: no such answer, or forgotten.
    Unknown,
}

async fn resume(
    State(chat): State<Chat>,
    Extension(hub): Extension<sse::Hub>,
    Path(id): Path<String>,
) -> Response {
    let group = match answer_group(&id) {
        Ok(group) => group,
        Err(refused) => return refused.into_response(),
    };
    if chat.generating.lock().is_ok_and(|ids| ids.contains(&id)) {
        return (StatusCode::CONFLICT, "this answer is being written here").into_response();
    }
    let so_far = match tokio::time::timeout(READ_BACK, read_back(&hub, group)).await {
        Ok(Ok(so_far)) => so_far,
        Ok(Err(e)) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
        Err(_) => {
            let slow = "the answer's history could not be read in time";
            return (StatusCode::SERVICE_UNAVAILABLE, slow).into_response();
        }
    };
    match so_far {
        SoFar::Written { prompt, tokens } => {
            generate(hub, chat, id, prompt, tokens);
            Json(serde_json::json!({ "from": tokens })).into_response()
        }
        SoFar::Finished => (StatusCode::CONFLICT, "this answer is complete").into_response(),
        SoFar::Unknown => (StatusCode::NOT_FOUND, "no such answer").into_response(),
    }
}

/// Reads the answer in `group` from its history: subscribes with everything it kept, publishes
/// a `resumed` marker of its own, and counts what comes before the marker, which is all that
/// was published before it, in whatever process.
async fn read_back(hub: &sse::Hub, group: sse::GroupName) -> Result<SoFar, String> {
    hub.keep(group.as_str(), sse::Keep::bytes(ANSWER_BYTES))
        .map_err(|e| e.to_string())?;
    let join = sse::Join::group(group.clone()).rewind(EVERYTHING);
    let mut stream = hub
        .subscribe(join, &sse::LastEventId::default())
        .map_err(|e| e.to_string())?;
    let marker = new_id();
    match hub
        .publish_async(group.as_str(), Some("resumed"), &marker)
        .await
    {
        Ok(_) => {}
        Err(sse::PublishError::Finished) => return Ok(SoFar::Finished),
        Err(e) => return Err(e.to_string()),
    }
    let (mut prompt, mut tokens) = (None, 0);
    // Bytes until a frame is whole, so no character is cut between two chunks.
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let frame = String::from_utf8_lossy(&frame);
            let (event, data) = event_of(&frame);
            match event {
                "prompt" => prompt = Some(data),
                "token" => tokens += 1,
                sse::STREAM_END => return Ok(SoFar::Finished),
                "resumed" if data == marker => {
                    return Ok(match prompt {
                        Some(prompt) => SoFar::Written { prompt, tokens },
                        None => SoFar::Unknown,
                    })
                }
                _ => {}
            }
        }
    }
    Err("the answer's stream ended before its marker".into())
}

/// The event name and data of one SSE frame (`message` when it has no name).
fn event_of(frame: &str) -> (&str, String) {
    let mut event = "message";
    let mut data: Vec<&str> = Vec::new();
    for line in frame.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.strip_prefix(' ').unwrap_or(name);
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (event, data.join("\n"))
}
