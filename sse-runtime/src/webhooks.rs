//! Webhooks: streams opened and closed, users joining and leaving groups, POSTed to a URL of
//! the app in signed batches, from a queue of bounded size on a thread of their own, so a slow
//! or dead backend never holds up a stream or a publish.
//!
//! Telling the webhooks is pushing a line of JSON on a queue under a short lock; when the queue
//! is full its oldest event goes (and is counted). The `sse-webhooks` thread takes up to a
//! batch's worth, waits at most the batch's time for more, and POSTs them with a new connection
//! (HTTP/1.1, a request at a time: batches arrive in order), retrying with exponential backoff.

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::{header, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use once_cell::sync::OnceCell;
use ring::hmac;
use tokio::{net::TcpStream, sync::Notify, time::Instant};

use crate::{GroupName, Identity};

/// The header with the batch's signature: `sha256=` and the hex HMAC-SHA256, keyed with the
/// secret, of the timestamp header's value, a `.`, and the body.
///
/// ```
/// assert_eq!(sse::WEBHOOK_SIGNATURE, "x-sse-signature");
/// ```
pub const WEBHOOK_SIGNATURE: &str = "x-sse-signature";

/// The header with the Unix time, in seconds, at which the request was signed: an app refuses
/// a request signed too long ago (five minutes, say), so a recorded one cannot be replayed.
///
/// ```
/// assert_eq!(sse::WEBHOOK_TIMESTAMP, "x-sse-timestamp");
/// ```
pub const WEBHOOK_TIMESTAMP: &str = "x-sse-timestamp";

/// The header naming the batch, the same in each attempt to deliver it: an app that has seen it
/// already can ignore a retry whose first attempt it processed but did not answer in time.
///
/// ```
/// assert_eq!(sse::WEBHOOK_DELIVERY, "x-sse-delivery");
/// ```
pub const WEBHOOK_DELIVERY: &str = "x-sse-delivery";

/// Where and how a hub POSTs its webhooks ([`Config::webhooks`](crate::Config::webhooks); feature `webhooks`).
///
/// Each request's body is one batch, in JSON:
///
/// ```json
/// {"time_ms": 1765130000123, "hub": "5f0c9a1e77d2b6a3", "events": [
///   {"name": "stream-opened", "time_ms": 1765130000001, "stream": 7, "groups": ["room.1"], "user": "alice", "meta": "Alice"},
///   {"name": "presence-join", "time_ms": 1765130000001, "group": "room.1", "user": "alice", "meta": "Alice"},
///   {"name": "presence-leave", "time_ms": 1765130000090, "group": "room.1", "user": "alice"},
///   {"name": "stream-closed", "time_ms": 1765130000090, "stream": 7, "groups": ["room.1"], "user": "alice", "reason": "client-left"}
/// ]}
/// ```
///
/// `hub` names the hub that sent it (stream numbers count in each hub); `user` is `null` for a
/// stream without an [`Identity`](crate::Identity). A close's `reason` is `client-left`,
/// `fell-behind`, `shut-down`, `closed`, `broker-unavailable`, `expired` or `finished`
/// ([`CloseReason`](crate::CloseReason)). Joins and leaves are those of the whole deployment: with Redis, one hub
/// sends each. The headers [`WEBHOOK_SIGNATURE`], [`WEBHOOK_TIMESTAMP`] and
/// [`WEBHOOK_DELIVERY`] sign and name it. Any `2xx` answer delivers it; a `5xx`, `408`, `429`,
/// a failed connection or no answer within the timeout is retried; another `4xx` is the app
/// refusing it, and it is dropped.
///
/// ```
/// use std::time::Duration;
///
/// let webhooks = sse::Webhooks::new("http://127.0.0.1:8000/sse/webhooks", "a-secret-of-at-least-32-bytes-0123456789")?
///     .batch_events(100)
///     .batch_wait(Duration::from_millis(200))
///     .queue(10_000)
///     .attempts(5)
///     .backoff(Duration::from_millis(500))
///     .max_backoff(Duration::from_secs(30))
///     .timeout(Duration::from_secs(5));
/// let hub = sse::Hub::new(sse::Config::default().webhooks(webhooks));
/// # let _ = hub;
/// # Ok::<(), sse::WebhookError>(())
/// ```
#[derive(Clone)]
pub struct Webhooks {
    uri: Uri,
    host: String,
    port: u16,
    key: hmac::Key,
    batch_events: usize,
    batch_wait: Duration,
    queue: usize,
    attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl Webhooks {
    /// POSTs to `url` (`http://host:port/path`), signed with `secret` (at least 32 bytes). By
    /// default a batch is up to 100 events or 200 ms, the queue holds 10,000 events, a batch is
    /// tried 5 times, 0.5 s after the first failure and twice as long after each next one, up to
    /// 30 s, and each request has 5 s to be answered.
    ///
    /// ```
    /// let secret = "a-secret-of-at-least-32-bytes-0123456789";
    /// assert!(sse::Webhooks::new("http://app.internal:8000/hooks", secret).is_ok());
    /// let err = sse::Webhooks::new("ftp://app", secret).unwrap_err();
    /// assert_eq!(err.to_string(), "\"ftp://app\" is not an http:// URL");
    /// assert!(sse::Webhooks::new("http://app/hooks", "short").is_err());
    /// ```
    ///
    /// `https://` is refused: run the hub beside the app, on its network, or through a proxy
    /// that adds TLS.
    pub fn new(url: &str, secret: impl AsRef<[u8]>) -> Result<Self, WebhookError> {
        let not_http = || WebhookError::NotHttp(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| not_http())?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(WebhookError::Https(url.to_owned())),
            _ => return Err(not_http()),
        }
        let authority = uri.authority().ok_or_else(not_http)?;
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(WebhookError::ShortSecret(secret.len()));
        }
        Ok(Self {
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(80),
            uri,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            batch_events: 100,
            batch_wait: Duration::from_millis(200),
            queue: 10_000,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        })
    }

    /// A batch holds up to `events` events (at least 1).
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.batch_events(500);
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn batch_events(self, events: usize) -> Self {
        let batch_events = events.max(1);
        Self {
            batch_events,
            ..self
        }
    }

    /// A batch waits at most `wait` after its first event for more; zero sends each event as
    /// soon as the one before is delivered, with those that came meanwhile.
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.batch_wait(std::time::Duration::from_secs(1));
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn batch_wait(self, wait: Duration) -> Self {
        Self {
            batch_wait: wait,
            ..self
        }
    }

    /// The queue holds up to `events` events waiting to be sent; past it the oldest is dropped
    /// and counted ([`WebhookStats::dropped`]).
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.queue(100_000);
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn queue(self, events: usize) -> Self {
        let queue = events.max(1);
        Self { queue, ..self }
    }

    /// A batch is tried up to `attempts` times (at least 1); then its events are abandoned and
    /// counted ([`WebhookStats::abandoned`]).
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.attempts(8);
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn attempts(self, attempts: u32) -> Self {
        let attempts = attempts.max(1);
        Self { attempts, ..self }
    }

    /// The next attempt comes `first` after the first failure, and twice as long after each
    /// next one, up to [`Webhooks::max_backoff`].
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.backoff(std::time::Duration::from_secs(1));
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn backoff(self, first: Duration) -> Self {
        Self {
            first_backoff: first,
            ..self
        }
    }

    /// The longest wait between two attempts (never shorter than [`Webhooks::backoff`]).
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.max_backoff(std::time::Duration::from_secs(60));
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn max_backoff(self, max: Duration) -> Self {
        Self {
            max_backoff: max,
            ..self
        }
    }

    /// How long a request (connecting, sending, and the answer's status) may take before it
    /// counts as failed.
    ///
    /// ```
    /// # let webhooks = sse::Webhooks::new("http://app/hooks", [7; 32])?;
    /// let webhooks = webhooks.timeout(std::time::Duration::from_secs(2));
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    pub fn timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("url", &self.uri)
            .field("batch_events", &self.batch_events)
            .field("batch_wait", &self.batch_wait)
            .field("queue", &self.queue)
            .field("attempts", &self.attempts)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why [`Webhooks::new`] refused its settings.
///
/// ```
/// let err = sse::Webhooks::new("https://app/hooks", [7; 32]).unwrap_err();
/// assert!(matches!(err, sse::WebhookError::Https(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL is not `http://host[:port][/path]`.
    NotHttp(String),
    /// The URL is `https://`, which the hub does not speak.
    Https(String),
    /// The secret is shorter than 32 bytes (it has this many).
    ShortSecret(usize),
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::NotHttp(url) => write!(f, "{url:?} is not an http:// URL"),
            WebhookError::Https(url) => write!(
                f,
                "{url:?}: https is not supported; post to the app on its own network, or through a proxy that adds TLS"
            ),
            WebhookError::ShortSecret(len) => write!(
                f,
                "the webhook secret has {len} bytes; it needs at least 32"
            ),
        }
    }
}

impl std::error::Error for WebhookError {}

/// What a hub's webhooks have done so far ([`Stats::webhooks`](crate::Stats::webhooks)).
///
/// ```
/// let hub = sse::Hub::new(sse::Config::default());
/// assert_eq!(hub.stats().webhooks, None); // no webhooks configured
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Events waiting in the queue now.
    pub queued: usize,
    /// Events of the batch being sent now, or waiting to be tried again.
    pub sending: usize,
    /// Events delivered (their batch was answered `2xx`).
    pub delivered: u64,
    /// Events dropped from a full queue, the oldest first.
    pub dropped: u64,
    /// Events given up: their batch failed every attempt, or the app refused it with a `4xx`.
    pub abandoned: u64,
    /// Requests that failed: no connection, no answer in time, or not `2xx`.
    pub failed_attempts: u64,
}

impl fmt::Display for WebhookStats {
    /// Prometheus text exposition format, as [`Stats`](crate::Stats) writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metrics: [(&str, &str, &str, u64); 6] = [
            (
                "sse_webhook_events_queued",
                "gauge",
                "Webhook events waiting to be sent.",
                self.queued as u64,
            ),
            (
                "sse_webhook_events_sending",
                "gauge",
                "Webhook events of the batch on its way.",
                self.sending as u64,
            ),
            (
                "sse_webhook_events_delivered_total",
                "counter",
                "Webhook events delivered.",
                self.delivered,
            ),
            (
                "sse_webhook_events_dropped_total",
                "counter",
                "Webhook events dropped from a full queue.",
                self.dropped,
            ),
            (
                "sse_webhook_events_abandoned_total",
                "counter",
                "Webhook events given up after every attempt failed or the app refused them.",
                self.abandoned,
            ),
            (
                "sse_webhook_attempts_failed_total",
                "counter",
                "Webhook requests that failed.",
                self.failed_attempts,
            ),
        ];
        for (name, kind, help, value) in metrics {
            writeln!(
                f,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            )?;
        }
        Ok(())
    }
}

/// The queue of a hub's webhooks, and the thread that sends it, started with the first event.
pub(crate) struct Sender {
    shared: Arc<Shared>,
    thread: OnceCell<()>,
}

/// What the hub and the `sse-webhooks` thread share.
struct Shared {
    settings: Webhooks,
    /// Names this hub in each batch, and begins each delivery's name.
    hub: String,
    queue: Mutex<VecDeque<String>>,
    ready: Notify,
    /// The sender is gone: send what is queued and stop.
    closed: AtomicBool,
    /// The events of the batch on its way.
    sending: AtomicUsize,
    delivered: AtomicU64,
    dropped: AtomicU64,
    abandoned: AtomicU64,
    failed_attempts: AtomicU64,
}

impl Sender {
    pub(crate) fn new(settings: Webhooks) -> Self {
        let shared = Shared {
            settings,
            hub: random_hex(),
            queue: Mutex::default(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            sending: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
        };
        Self {
            shared: Arc::new(shared),
            thread: OnceCell::new(),
        }
    }

    /// Stream `number` of `groups`, opened by `who`, opened.
    pub(crate) fn opened(&self, number: u64, groups: &[GroupName], who: Option<&Identity>) {
        let event = StreamEvent {
            name: "stream-opened",
            time_ms: now_ms(),
            stream: number,
            groups,
            user: who.map(Identity::user),
            meta: who.map(Identity::meta),
            reason: None,
        };
        self.push(&event);
    }

    /// Stream `number` of `groups`, opened by `who`, closed for `reason` (a
    /// [`CloseReason`](crate::CloseReason)'s name).
    pub(crate) fn closed(
        &self,
        number: u64,
        groups: &[GroupName],
        who: Option<&Identity>,
        reason: &str,
    ) {
        let event = StreamEvent {
            name: "stream-closed",
            time_ms: now_ms(),
            stream: number,
            groups,
            user: who.map(Identity::user),
            meta: None,
            reason: Some(reason),
        };
        self.push(&event);
    }

    /// A user joined or left `group`: `name` is the presence event's, `data` its JSON object
    /// (`{"user":…}`), whose fields the webhook's event takes after its own.
    pub(crate) fn presence(&self, group: &GroupName, name: &str, data: &str) {
        let Some(fields) = data.strip_prefix('{').filter(|rest| rest.len() > 1) else {
            return tracing::error!(data, "a presence event's data is not a JSON object");
        };
        let head = PresenceEvent {
            name,
            time_ms: now_ms(),
            group: group.as_str(),
        };
        let Some(mut line) = json(&head) else { return };
        line.pop(); // its `}`: the data's fields follow
        line.push(',');
        line.push_str(fields);
        self.push_line(line);
    }

    pub(crate) fn stats(&self) -> WebhookStats {
        let shared = &self.shared;
        WebhookStats {
            queued: shared.lock().len(),
            sending: shared.sending.load(Relaxed),
            delivered: shared.delivered.load(Relaxed),
            dropped: shared.dropped.load(Relaxed),
            abandoned: shared.abandoned.load(Relaxed),
            failed_attempts: shared.failed_attempts.load(Relaxed),
        }
    }

    fn push(&self, event: &impl serde::Serialize) {
        if let Some(line) = json(event) {
            self.push_line(line);
        }
    }

    /// Queues one event, written in JSON, and wakes the sending thread if it waits for it: for
    /// a batch's first event, or its last.
    fn push_line(&self, line: String) {
        self.thread.get_or_init(|| self.start());
        let shared = &self.shared;
        let queued = {
            let mut queue = shared.lock();
            if queue.len() >= shared.settings.queue {
                queue.pop_front();
                shared.dropped.fetch_add(1, Relaxed);
            }
            queue.push_back(line);
            queue.len()
        };
        if queued == 1 || queued == shared.settings.batch_events {
            shared.ready.notify_one();
        }
    }

    fn start(&self) {
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("sse-webhooks".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(send_all(shared)),
                    Err(error) => tracing::error!(%error, "webhooks cannot run: no runtime"),
                }
            });
        if let Err(error) = started {
            // Events then wait in the queue, the oldest dropped and counted as it fills.
            tracing::error!(%error, "cannot start the sse-webhooks thread: no webhook will be sent");
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
        self.shared.ready.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<String>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed(&self) -> bool {
        self.closed.load(Relaxed)
    }
}

/// A stream opened or closed, as a webhook's event.
#[derive(serde::Serialize)]
struct StreamEvent<'a> {
    name: &'static str,
    time_ms: u64,
    stream: u64,
    #[serde(serialize_with = "names")]
    groups: &'a [GroupName],
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// The first fields of a join or a leave, as a webhook's event.
#[derive(serde::Serialize)]
struct PresenceEvent<'a> {
    name: &'a str,
    time_ms: u64,
    group: &'a str,
}

/// A stream's groups as a list of their names.
fn names<S: serde::Serializer>(groups: &&[GroupName], to: S) -> Result<S::Ok, S::Error> {
    to.collect_seq(groups.iter().map(GroupName::as_str))
}

/// `event` in JSON; its fields, strings and numbers, always can be.
fn json(event: &impl serde::Serialize) -> Option<String> {
    let written = serde_json::to_string(event);
    written
        .map_err(|error| tracing::error!(%error, "a webhook event could not be written"))
        .ok()
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Eight random bytes in hex (a fixed name if the system has no randomness to give).
fn random_hex() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The `sse-webhooks` thread: batches, in order, until the sender is gone and its queue empty.
async fn send_all(shared: Arc<Shared>) {
    let settings = &shared.settings;
    let mut deliveries = 0u64;
    loop {
        // The first event of a batch, or the end.
        loop {
            let more = shared.ready.notified();
            if !shared.lock().is_empty() {
                break;
            }
            if shared.closed() {
                return;
            }
            more.await;
        }
        // The rest of it: until it is full, its time is up, or the sender is gone.
        let deadline = Instant::now() + settings.batch_wait;
        loop {
            let more = shared.ready.notified();
            if shared.lock().len() >= settings.batch_events || shared.closed() {
                break;
            }
            if tokio::time::timeout_at(deadline, more).await.is_err() {
                break;
            }
        }
        let batch: Vec<String> = {
            let mut queue = shared.lock();
            let take = queue.len().min(settings.batch_events);
            shared.sending.store(take, Relaxed);
            queue.drain(..take).collect()
        };
        deliveries += 1;
        deliver(&shared, &batch, &format!("{}-{deliveries}", shared.hub)).await;
        shared.sending.store(0, Relaxed);
    }
}

/// Tries to deliver one batch, as often as the settings allow.
async fn deliver(shared: &Shared, batch: &[String], delivery: &str) {
    let settings = &shared.settings;
    let body = format!(
        "{{\"time_ms\":{},\"hub\":\"{}\",\"events\":[{}]}}",
        now_ms(),
        shared.hub,
        batch.join(",")
    );
    let events = batch.len() as u64;
    let mut backoff = settings.first_backoff;
    for attempt in 1..=settings.attempts {
        let answer = tokio::time::timeout(settings.timeout, post(settings, &body, delivery)).await;
        let status = match answer {
            Ok(Ok(status)) if status.is_success() => {
                shared.delivered.fetch_add(events, Relaxed);
                return;
            }
            Ok(Ok(status)) if refused_for_good(status) => {
                tracing::error!(%status, delivery, events, url = %settings.uri, "the app refused a webhook batch; dropped");
                shared.failed_attempts.fetch_add(1, Relaxed);
                shared.abandoned.fetch_add(events, Relaxed);
                return;
            }
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", settings.timeout),
        };
        shared.failed_attempts.fetch_add(1, Relaxed);
        tracing::warn!(attempt, delivery, why = status, url = %settings.uri, "a webhook batch failed");
        if attempt < settings.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(settings.max_backoff.max(settings.first_backoff));
        }
    }
    tracing::error!(delivery, events, attempts = settings.attempts, url = %settings.uri, "a webhook batch failed every attempt; dropped");
    shared.abandoned.fetch_add(events, Relaxed);
}

/// A `4xx` other than a timeout or a rate limit: trying again would get the same.
fn refused_for_good(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

/// POSTs `body`, signed now, on a new connection; the answer's status.
async fn post(
    settings: &Webhooks,
    body: &str,
    delivery: &str,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let timestamp = since_epoch().as_secs().to_string();
    let signed = [timestamp.as_bytes(), b".", body.as_bytes()].concat();
    let signature = format!(
        "sha256={}",
        hex(hmac::sign(&settings.key, &signed).as_ref())
    );
    let path = settings
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let authority = settings
        .uri
        .authority()
        .map_or("", |authority| authority.as_str());
    let request = Request::post(path)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "sse-webhooks")
        .header(WEBHOOK_TIMESTAMP, timestamp)
        .header(WEBHOOK_SIGNATURE, signature)
        .header(WEBHOOK_DELIVERY, delivery)
        .body(body.to_owned())?;
    let tcp = TcpStream::connect((settings.host.as_str(), settings.port)).await?;
    let (mut sending, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // The connection is driven here, not spawned: a timeout drops it with the request.
    tokio::select! {
        answer = sending.send_request(request) => Ok(answer?.status()),
        ended = connection => {
            ended?;
            Err("the connection closed without an answer".into())
        }
    }
}
