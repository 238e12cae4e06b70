//! Settings of a [`Hub`](crate::Hub): keep-alive, history, limits, and the broker that shares
//! events between processes.

use std::time::Duration;

use crate::{engine, hooks::Hooks, BrokerError, CloseReason, StreamInfo};

/// The environment variable naming the broker: `redis://host:port/db` selects Redis,
/// `redis+cluster://host:port,host:port` a Redis Cluster, unset (or empty) keeps events inside
/// the process. The process-wide hub reads it (through
/// [`init`](crate::init), or on first use without it) unless the code chose a broker with
/// [`Config::broker`]; so does [`Config::from_env`].
///
/// ```
/// assert_eq!(sse::BROKER_URL_ENV, "SSE_BROKER_URL");
/// ```
pub const BROKER_URL_ENV: &str = "SSE_BROKER_URL";

/// How a [`Hub`](crate::Hub) behaves. Every setting has a sane default; change the ones you need.
///
/// ```
/// use std::time::Duration;
///
/// let config = sse::Config::default()
///     .keep_alive(Some(Duration::from_secs(30)))
///     .history(5_000, Duration::from_secs(600))
///     .max_streams(50_000);
/// let hub = sse::Hub::new(config);
/// assert_eq!(hub.stats().open_streams, 0);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) retry: Option<Duration>,
    pub(crate) history_events: usize,
    pub(crate) history_age: Duration,
    pub(crate) idempotency_window: Duration,
    pub(crate) subscriber_queue: usize,
    pub(crate) batch_window: Duration,
    pub(crate) max_streams: usize,
    pub(crate) max_event_bytes: usize,
    pub(crate) max_last_event_id_len: usize,
    pub(crate) shutdown_retry: Duration,
    pub(crate) hooks: Hooks,
    pub(crate) presence: PresenceSettings,
    /// `None`: the in-memory engine.
    pub(crate) broker: Option<engine::Url>,
}

/// The settings of presence and closing streams.
#[derive(Debug, Clone)]
pub(crate) struct PresenceSettings {
    pub(crate) events: bool,
    pub(crate) ttl: Duration,
    pub(crate) close_memory: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            events: false,
            ttl: Duration::from_secs(30),
            close_memory: Duration::from_secs(60),
        }
    }
}

impl Default for Config {
    /// Keep-alive every 15 s, `retry: 3000`, history of 1,000 events or 5 minutes, queues of 256
    /// events, a batch window of 1 ms, 10,000 open streams, events up to 1 MiB, `Last-Event-ID` up to 1,024 bytes (room for
    /// the id of a stream of several groups, which names each of them), idempotency keys kept 5 minutes.
    fn default() -> Self {
        Self {
            keep_alive: Some(Duration::from_secs(15)),
            retry: Some(Duration::from_secs(3)),
            history_events: 1_000,
            history_age: Duration::from_secs(300),
            idempotency_window: Duration::from_secs(300),
            subscriber_queue: 256,
            batch_window: Duration::from_millis(1),
            max_streams: 10_000,
            max_event_bytes: 1 << 20,
            max_last_event_id_len: 1024,
            shutdown_retry: Duration::from_millis(500),
            hooks: Hooks::default(),
            presence: PresenceSettings::default(),
            broker: None,
        }
    }
}

impl Config {
    /// How often an idle stream sends a `:` comment so proxies keep it open; `None` never does.
    ///
    /// ```
    /// let config = sse::Config::default().keep_alive(None);
    /// # let _ = config;
    /// ```
    pub fn keep_alive(mut self, every: Option<Duration>) -> Self {
        self.keep_alive = every;
        self
    }

    /// The `retry:` hint sent when a stream opens: how long a browser waits before reconnecting.
    /// `None` sends no hint (browsers then wait a few seconds of their own choosing).
    ///
    /// ```
    /// let config = sse::Config::default().retry(Some(std::time::Duration::from_secs(1)));
    /// # let _ = config;
    /// ```
    pub fn retry(mut self, after: Option<Duration>) -> Self {
        self.retry = after;
        self
    }

    /// How much of each group's past a reconnecting client can get back: the last `events`
    /// events, none older than `age`. `(0, _)` keeps no history.
    ///
    /// ```
    /// let config = sse::Config::default().history(10_000, std::time::Duration::from_secs(3600));
    /// # let _ = config;
    /// ```
    pub fn history(mut self, events: usize, age: Duration) -> Self {
        self.history_events = events;
        self.history_age = age;
        self
    }

    /// How long a publish's idempotency key is remembered ([`Hub::idempotent`](crate::Hub::idempotent)):
    /// a publish repeated with the same key within it gets the first one's id and publishes
    /// nothing. Default 5 minutes; with Redis, every process should use the same.
    ///
    /// ```
    /// let config = sse::Config::default().idempotency_window(std::time::Duration::from_secs(60));
    /// # let _ = config;
    /// ```
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        // Redis's `PX` takes at least a millisecond.
        self.idempotency_window = window.max(Duration::from_millis(1));
        self
    }

    /// How many events a client may fall behind before it is disconnected. It then reconnects
    /// and gets what it missed from the history, so keep this below the history's size.
    ///
    /// ```
    /// let config = sse::Config::default().subscriber_queue(1_024);
    /// # let _ = config;
    /// ```
    pub fn subscriber_queue(mut self, events: usize) -> Self {
        self.subscriber_queue = events.max(1);
        self
    }

    /// How long a group gathers events before it wakes its streams again: an event that comes
    /// alone is written at once, and those that follow it within the window are written
    /// together at its end, one write per stream however many they are, instead of a write
    /// each (what a busy group costs is then its streams' writes per window, not per event).
    /// It delays an event by at most the window, and only one that follows another to the
    /// same group that closely. Default 1 ms; zero wakes the streams at every event; at most
    /// one second.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = sse::Config::default().batch_window(Duration::from_millis(5));
    /// # let _ = config;
    /// ```
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window.min(Duration::from_secs(1));
        self
    }

    /// How many streams may be open at once; past it a new one is answered
    /// `503 Service Unavailable` with `Retry-After`.
    ///
    /// ```
    /// let config = sse::Config::default().max_streams(19_000);
    /// # let _ = config;
    /// ```
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    /// The largest encoded event, in bytes; [`publish!`](crate::publish) refuses larger ones.
    ///
    /// ```
    /// let config = sse::Config::default().max_event_bytes(64 * 1024);
    /// # let _ = config;
    /// ```
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The longest `Last-Event-ID` looked at; a longer one is treated as unknown.
    ///
    /// ```
    /// let config = sse::Config::default().max_last_event_id_len(32);
    /// # let _ = config;
    /// ```
    pub fn max_last_event_id_len(mut self, bytes: usize) -> Self {
        self.max_last_event_id_len = bytes;
        self
    }

    /// Shares events between processes through the broker at `url` (feature `redis`):
    /// `redis://host:port/db` for one Redis, `redis+cluster://host:port,host:port` (or several
    /// `redis://` URLs separated by commas) for a Redis Cluster, through its seed nodes. Every
    /// process configured with the same URL sees the same groups, the same ids and the same
    /// history; see the README, "More than one process". The URL is only parsed here;
    /// [`sse::init`](crate::init) checks that Redis answers.
    ///
    /// ```
    /// let err = sse::Config::default().broker("mysql://db").unwrap_err();
    /// assert!(err.to_string().contains("mysql://db"));
    /// ```
    pub fn broker(self, url: &str) -> Result<Self, BrokerError> {
        let broker = Some(engine::Url::parse(url)?);
        Ok(Self { broker, ..self })
    }

    /// The default settings, with the broker named by the `SSE_BROKER_URL` environment variable
    /// when it is set (see [`Config::broker`]).
    ///
    /// ```
    /// // With SSE_BROKER_URL unset, events stay in this process.
    /// let config = sse::Config::from_env()?.keep_alive(None);
    /// # let _ = config;
    /// # Ok::<(), sse::BrokerError>(())
    /// ```
    pub fn from_env() -> Result<Self, BrokerError> {
        Self::default().or_broker_from_env()
    }

    /// These settings, with the broker of `SSE_BROKER_URL` if they name none: what the
    /// process-wide hub runs with, so the environment chooses without a code change.
    pub(crate) fn or_broker_from_env(self) -> Result<Self, BrokerError> {
        if self.broker.is_some() {
            return Ok(self);
        }
        match std::env::var(BROKER_URL_ENV) {
            Ok(url) if !url.is_empty() => self.broker(&url),
            _ => Ok(self),
        }
    }
}

/// Stream hooks, presence and closing streams: README, "Presence, hooks and closing streams".
impl Config {
    /// Runs `hook` whenever a stream opens, with its groups and identity. Hooks run one at a
    /// time, in the order streams open and close, on a thread of the hub's own (`sse-hooks`),
    /// never on the path of an event; a hook that panics is logged and nothing else is
    /// affected. A hook that blocks delays the hooks after it, not the streams. For async
    /// work, capture a `tokio::runtime::Handle` and spawn onto it.
    ///
    /// ```
    /// let config = sse::Config::default().on_open(|stream| {
    ///     tracing::info!(groups = ?stream.groups(), user = ?stream.identity(), "stream opened");
    /// });
    /// # let _ = config;
    /// ```
    pub fn on_open(mut self, hook: impl Fn(&StreamInfo) + Send + Sync + 'static) -> Self {
        self.hooks.on_open = Some(std::sync::Arc::new(hook));
        self
    }

    /// Runs `hook` whenever a stream closes, with its groups, identity and why it closed; as
    /// [`Config::on_open`] runs its hook, and after the open hook of the same stream.
    ///
    /// ```
    /// let config = sse::Config::default().on_close(|stream, reason| {
    ///     if reason == sse::CloseReason::FellBehind {
    ///         tracing::warn!(number = stream.number(), "a slow client was cut");
    ///     }
    /// });
    /// # let _ = config;
    /// ```
    pub fn on_close(
        mut self,
        hook: impl Fn(&StreamInfo, CloseReason) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_close = Some(std::sync::Arc::new(hook));
        self
    }

    /// POSTs streams opened and closed, and users joining and leaving groups (whether or not
    /// [`Config::presence_events`] publishes them too), to the app, as
    /// [`Webhooks`](crate::Webhooks) says. A hub made from this config (or a clone of it) sends
    /// them; what is queued when the process exits is lost, so treat them as news, and
    /// [`Hub::presence`](crate::Hub::presence) as the truth. Feature `webhooks`; README,
    /// "Webhooks".
    ///
    /// ```
    /// let webhooks = sse::Webhooks::new("http://127.0.0.1:8000/sse/webhooks", [7; 32])?;
    /// let config = sse::Config::default().webhooks(webhooks);
    /// # let _ = config;
    /// # Ok::<(), sse::WebhookError>(())
    /// ```
    #[cfg(feature = "webhooks")]
    pub fn webhooks(mut self, webhooks: crate::Webhooks) -> Self {
        let sender = crate::webhooks::Sender::new(webhooks);
        self.hooks.webhooks = Some(std::sync::Arc::new(sender));
        self
    }

    /// Publishes [`presence-join`](crate::PRESENCE_JOIN) to a group when a user's first stream
    /// of it opens and [`presence-leave`](crate::PRESENCE_LEAVE) when their last one closes
    /// (in the whole deployment, with Redis). Off by default.
    ///
    /// ```
    /// let config = sse::Config::default().presence_events(true);
    /// # let _ = config;
    /// ```
    pub fn presence_events(mut self, on: bool) -> Self {
        self.presence.events = on;
        self
    }

    /// With Redis: how long a process's presence entries last unless refreshed. Each process
    /// refreshes its own every third of it, so the users of a process that died vanish from
    /// [`Hub::presence`](crate::Hub::presence) at most this long after its last refresh.
    /// Default 30 s.
    ///
    /// ```
    /// let config = sse::Config::default().presence_ttl(std::time::Duration::from_secs(10));
    /// # let _ = config;
    /// ```
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence.ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// How long, after [`Hub::close_user`](crate::Hub::close_user) or
    /// [`Hub::close_group`](crate::Hub::close_group), the reconnections of that user or to that
    /// group are refused with `204 No Content` (in every process that got the close). Only
    /// reconnections, requests with a `Last-Event-ID`, are refused: a page loaded afresh (after
    /// logging in again) is served, and from then on that user's reconnections are served in
    /// that process again. Default 60 s; zero remembers nothing (the stream's own
    /// [`stream-closed`](crate::STREAM_CLOSED) event still stops its browser).
    ///
    /// ```
    /// let config = sse::Config::default().close_memory(std::time::Duration::from_secs(300));
    /// # let _ = config;
    /// ```
    pub fn close_memory(mut self, memory: Duration) -> Self {
        self.presence.close_memory = memory;
        self
    }
}

/// How much history one group keeps, for [`Hub::keep`](crate::Hub::keep): up to a number of
/// bytes of events, the encoded events as clients receive them, however many that is (a whole
/// answer streamed token by token), and if you like at most a number of events. Events older
/// than [`Config::history`]'s age go all the same. The newest event always stays, even when it
/// alone passes the bound.
///
/// ```
/// let answer = sse::Keep::bytes(1 << 20); // up to 1 MiB, however many events
/// let bounded = sse::Keep::bytes(1 << 20).events(10_000);
/// assert_ne!(answer, bounded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
}

impl Keep {
    /// Up to `bytes` bytes of events, however many events that is.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.keep("answer.17", sse::Keep::bytes(256 * 1024))?;
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn bytes(bytes: usize) -> Self {
        Self {
            events: usize::MAX,
            bytes,
        }
    }

    /// At most `events` events as well.
    ///
    /// ```
    /// let keep = sse::Keep::bytes(64 * 1024).events(500);
    /// # let _ = keep;
    /// ```
    pub fn events(self, events: usize) -> Self {
        Self { events, ..self }
    }
}

impl Config {
    /// What every group keeps unless [`Hub::keep`](crate::Hub::keep) sized it: the last
    /// [`Config::history`] events, whatever their bytes.
    pub(crate) fn keep(&self) -> Keep {
        Keep {
            events: self.history_events,
            bytes: usize::MAX,
        }
    }
}
