//! The hub: publishing, subscribing and the process-wide instance the macros use.

use std::{fmt, future::Future, sync::Arc};

use futures_util::future::Either;
use once_cell::sync::OnceCell;

use crate::{
    engine::{self, Engine, Entry, Sink, Taken},
    event::Draft,
    idempotency::{self, Seen},
    identity::Closing,
    presence::{Change, Presence, Present},
    registry::{Registry, Start},
    resume,
    subscription::Subscription,
    BrokerError, Config, EventId, GroupName, GroupStats, Join, Keep, LastEventId, PublishError,
    Stats, SubscribeError, STREAM_END,
};

/// Where events are published and streams subscribe: groups, their history and their subscribers.
///
/// [`#[sse::subscribe]`](crate::subscribe) and [`publish!`](crate::publish) use the process-wide
/// hub, [`sse::hub()`](crate::hub). A `Hub` of your own is for a custom endpoint or a test that
/// needs its own settings. Cloning a hub gives another handle to the same hub.
///
/// ```
/// let hub = sse::Hub::new(sse::Config::default());
/// let id = hub.publish("yo", Some("yo"), "yo from alice to bob")?;
/// assert!(id.get() > 0);
/// assert_eq!(hub.group_stats("yo").subscribers, 0);
/// # Ok::<(), sse::PublishError>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
    engine: Arc<dyn Engine>,
    presence: Arc<Presence>,
    /// The idempotency keys of the events numbered here (when the engine leaves them here).
    seen: Arc<Seen>,
    /// Stops the engine once the last handle is gone.
    _running: Arc<Running>,
}

/// Dropped with a hub's last handle: stops its engine, which then lets go of the hub's sink.
struct Running(Arc<dyn Engine>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Where what other processes publish and say enters a hub: the [`Sink`] its engine is given.
struct Inbound {
    registry: Arc<Registry>,
    presence: Arc<Presence>,
}

impl Sink for Inbound {
    fn event(&self, group: &str, id: u64, encoded: &[u8]) {
        self.registry.deliver(group, id, encoded);
    }

    fn complete_after(&self, group: &str, id: u64) {
        self.registry.complete_after(group, id);
    }

    fn presence_changed(&self, group: GroupName, changes: Vec<Entry>) {
        self.presence.changed(group, changes);
    }

    fn presence_here(&self) -> Vec<(GroupName, Vec<Entry>)> {
        self.presence.here()
    }

    fn close(&self, closing: Closing) {
        self.presence.close_here(closing);
    }
}

static GLOBAL: OnceCell<Hub> = OnceCell::new();

/// The process-wide hub, made on first use unless [`init`] ran first: with the default settings
/// and the broker named by the `SSE_BROKER_URL` environment variable, so a worker process that
/// only publishes needs no setup beyond that variable. If the variable holds a bad URL, every
/// publish returns that error ([`init`] would have reported it at startup).
///
/// ```
/// let _id = sse::publish!("docs-hub", "hi")?;
/// assert_eq!(sse::hub().group_stats("docs-hub").subscribers, 0);
/// # Ok::<(), sse::PublishError>(())
/// ```
pub fn hub() -> &'static Hub {
    GLOBAL.get_or_init(|| match Config::from_env() {
        Ok(config) => Hub::new(config),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "SSE_BROKER_URL is unusable: every publish will fail"
            );
            Hub::with_engine(Config::default(), Arc::new(engine::Unusable(error)))
        }
    })
}

/// Sets up the process-wide hub with `config`. Call it once at startup, before anything
/// subscribes or publishes; afterwards it returns [`InitError::AlreadyInitialized`]. Unless
/// `config` names a broker ([`Config::broker`]), the `SSE_BROKER_URL` environment variable
/// chooses it. With a broker it checks that the broker answers, and says so when it does not.
///
/// ```
/// use std::time::Duration;
///
/// sse::init(sse::Config::default().keep_alive(Some(Duration::from_secs(20))))?;
/// assert!(sse::init(sse::Config::default()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn init(config: Config) -> Result<&'static Hub, InitError> {
    let mut fresh = false;
    let hub = GLOBAL.get_or_try_init(|| {
        fresh = true;
        Hub::connect(config.or_broker_from_env()?)
    })?;
    if fresh {
        Ok(hub)
    } else {
        Err(InitError::AlreadyInitialized)
    }
}

/// Why [`init`] did not set up the process-wide hub.
///
/// ```
/// let _ = sse::hub();
/// let err = sse::init(sse::Config::default()).unwrap_err();
/// assert!(matches!(err, sse::InitError::AlreadyInitialized));
/// assert_eq!(err.to_string(), "the SSE hub was already initialized: call sse::init before anything subscribes or publishes");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum InitError {
    /// The process-wide hub was already in use.
    AlreadyInitialized,
    /// The broker cannot be used: bad URL, or Redis unreachable.
    Broker(BrokerError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyInitialized => f.write_str(
                "the SSE hub was already initialized: call sse::init before anything subscribes or publishes",
            ),
            InitError::Broker(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Broker(e) => std::error::Error::source(e),
            InitError::AlreadyInitialized => None,
        }
    }
}

impl From<BrokerError> for InitError {
    fn from(error: BrokerError) -> Self {
        InitError::Broker(error)
    }
}

impl Hub {
    /// A hub of its own, with `config`. A broker in `config` is not contacted yet: publishes
    /// report it if it cannot be reached. [`Hub::connect`] checks it first.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default().max_streams(100));
    /// assert_eq!(hub.stats().groups, 0);
    /// ```
    pub fn new(config: Config) -> Self {
        let engine: Arc<dyn Engine> = match &config.broker {
            Some(url) => url.engine(engine::History {
                events: config.history_events,
                age: config.history_age,
                idempotency_window: config.idempotency_window,
                presence_ttl: config.presence.ttl,
            }),
            None => Arc::new(engine::Memory),
        };
        Self::with_engine(config, engine)
    }

    /// A hub of its own, with `config`, once its broker answered.
    ///
    /// ```
    /// let hub = sse::Hub::connect(sse::Config::default())?; // in memory: nothing to reach
    /// # let _ = hub;
    /// // Built without feature `redis`, the URL is refused; with it, nothing listens there.
    /// let unreachable = sse::Config::default().broker("redis://127.0.0.1:1/0");
    /// assert!(unreachable.and_then(sse::Hub::connect).is_err());
    /// # Ok::<(), sse::BrokerError>(())
    /// ```
    pub fn connect(config: Config) -> Result<Self, BrokerError> {
        let hub = Self::new(config);
        hub.engine.check()?;
        Ok(hub)
    }

    /// A hub of its own, with `config`, on `engine`.
    fn with_engine(config: Config, engine: Arc<dyn Engine>) -> Self {
        let watching = engine.clone();
        let watch = Box::new(move |group: &GroupName, held| watching.watch(group, held));
        let (hooks, settings) = (config.hooks.clone(), config.presence.clone());
        let seen = Arc::new(Seen::new(config.idempotency_window));
        let registry = Arc::new(Registry::new(config, engine.shared(), watch));
        let (to, by) = (registry.clone(), engine.clone());
        let announce = Arc::new(move |group: &GroupName, change: &Change| {
            announce(&to, &*by, group, change);
        });
        let presence = Presence::new(registry.clone(), hooks, settings, engine.clone(), announce);
        let presence = Arc::new(presence);
        engine.start(Arc::new(Inbound {
            registry: registry.clone(),
            presence: presence.clone(),
        }));
        Self {
            registry,
            _running: Arc::new(Running(engine.clone())),
            engine,
            presence,
            seen,
        }
    }

    /// Sends `data` as event `event` (`None`: a `message` event) to every subscriber of `group`.
    /// What [`publish!`](crate::publish) calls on the process-wide hub.
    ///
    /// Returns the event's id, or why it was refused: an invalid group or event name, an event
    /// larger than [`Config::max_event_bytes`], or a hub that is shut down.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// assert!(hub.publish("yo", Some("yo"), format_args!("{} + {}", 1, 2)).is_ok());
    /// assert!(hub.publish("yo", Some("bad\nname"), "x").is_err());
    /// ```
    pub fn publish(
        &self,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> Result<EventId, PublishError> {
        self.publish_keyed(None, group, event, data)
    }

    /// [`Hub::publish`] for async code: the same, except that it waits for the broker without
    /// blocking the thread. With Redis, publishing waits for one round trip, which `publish`
    /// spends blocked and `publish_async` suspended, leaving the thread to other tasks; the
    /// round trips of concurrent publishes are shared. In memory both return at once.
    ///
    /// The event is handed to the broker when `publish_async` is called, not when the future
    /// is first polled, and it is published even if the future is dropped unawaited. Events
    /// published at once, not awaited one after the other, may get their ids in any order.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse::PublishError> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let first = hub.publish_async("yo", Some("yo"), "yo from alice").await?;
    /// let tasks: Vec<_> = (0..8)
    ///     .map(|i| tokio::spawn(hub.publish_async("yo", Some("yo"), i)))
    ///     .collect();
    /// for task in tasks {
    ///     assert!(task.await.unwrap()?.get() > first.get());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn publish_async(
        &self,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        self.publish_keyed_async(None, group, event, data)
    }

    /// Ends `group`: publishes its [`stream-end`](crate::STREAM_END) event, after which the
    /// group takes no more events ([`PublishError::Finished`]). What
    /// [`finish!`](crate::finish) calls on the process-wide hub. Returns the end's id.
    ///
    /// Each open stream of the group gets the events it has not read yet, then the end, and
    /// ends. A client that comes back with an earlier `Last-Event-ID` gets what it missed, then
    /// the end; one that comes back with the end's id is answered `204 No Content`, so a
    /// browser's `EventSource` stops there; a new client (no `Last-Event-ID`) gets all the
    /// group kept ([`Hub::keep`]), then the end. A stream of several groups ends once each
    /// of them ended. The group is kept, end and all, until it has had no subscriber for the
    /// history's age ([`Config::history`]); then it is forgotten like any other.
    ///
    /// The end travels like any event: with Redis, the streams of every process end. The
    /// process that finished the group refuses publishes to it, as does each process that
    /// held the group (it has subscribers, or [`Hub::keep`] ran there) when the end arrived,
    /// or read the end from Redis's history since. A publish from a process that knows
    /// nothing of the end is numbered after it: no stream ever gets it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    ///
    /// let hub = sse::Hub::new(sse::Config::default().retry(None));
    /// let answer = sse::GroupName::new("answer.17")?;
    /// let mut tab = hub.subscribe(answer.clone(), &Default::default())?;
    /// tab.next().await; // stream-start
    /// hub.publish("answer.17", Some("token"), "Hello")?;
    /// let end = hub.finish("answer.17")?;
    /// assert_eq!(tab.next().await.unwrap(), format!(
    ///     "event: token\ndata: Hello\nid: {}\n\nevent: stream-end\ndata: \nid: {end}\n\n",
    ///     end.get() - 1,
    /// ));
    /// assert_eq!(tab.next().await, None); // the stream ended
    /// assert!(matches!(hub.publish("answer.17", None, "late"), Err(sse::PublishError::Finished)));
    /// // The browser comes back with the end's id: 204, it stops.
    /// let back = hub.subscribe(answer, &tab.last_event_id());
    /// assert!(matches!(back, Err(sse::SubscribeError::Finished)));
    /// # Ok(()) }
    /// ```
    pub fn finish(&self, group: &str) -> Result<EventId, PublishError> {
        let end = self.publish(group, Some(STREAM_END), "")?;
        finished(&self.registry, &*self.engine, group, end);
        Ok(end)
    }

    /// [`Hub::finish`] for async code, as [`Hub::publish_async`] is [`Hub::publish`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse::PublishError> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.publish_async("answer.18", Some("token"), "Hi").await?;
    /// hub.finish_async("answer.18").await?;
    /// assert!(hub.finish_async("answer.18").await.is_err()); // ended already
    /// # Ok(()) }
    /// ```
    pub fn finish_async(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        let publishing = self.publish_async(group, Some(STREAM_END), "");
        let (registry, engine, group) =
            (self.registry.clone(), self.engine.clone(), group.to_owned());
        async move {
            let end = publishing.await?;
            finished(&registry, &*engine, &group, end);
            Ok(end)
        }
    }

    /// Holds `group` in this hub from now on, with or without subscribers, keeping its events
    /// as `keep` says (rather than [`Config::history`]'s count): so an answer streamed as a
    /// group of its own, published before anyone subscribed, is there whole for the page that
    /// subscribes, or reloads, with a rewind ([`Join::rewind`]) or after its end. The group is
    /// forgotten once it has had no subscriber for the history's age, as any group is. Call it
    /// before the first publish; calling it again resizes what the group keeps.
    ///
    /// With Redis, `keep` sizes this process's copy of the group; the history Redis keeps for
    /// a reconnect served by another process is [`Config::history`]'s, the same for every
    /// group: size it for your longest answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    ///
    /// let hub = sse::Hub::new(sse::Config::default().retry(None));
    /// hub.keep("answer.19", sse::Keep::bytes(1 << 20))?;
    /// for token in ["The", " answer", " is", " 42"] {
    ///     hub.publish("answer.19", Some("token"), token)?;
    /// }
    /// // A page that opens now, rewound through all the group kept, gets the four tokens.
    /// let join = sse::Join::group(sse::GroupName::new("answer.19")?).rewind(1_000);
    /// let mut page = hub.subscribe(join, &Default::default())?;
    /// page.next().await; // stream-start
    /// let tokens = page.next().await.unwrap();
    /// assert_eq!(std::str::from_utf8(&tokens)?.matches("event: token").count(), 4);
    /// # Ok(()) }
    /// ```
    pub fn keep(&self, group: &str, keep: Keep) -> Result<(), PublishError> {
        let group = GroupName::new(group).map_err(PublishError::InvalidGroup)?;
        self.registry.keep(&group, keep);
        Ok(())
    }

    /// Publishing with an idempotency key: a publish repeated with the same `key` in the same
    /// group, within [`Config::idempotency_window`] (5 minutes unless set), is answered with the
    /// first publish's id and publishes nothing, on every engine (with Redis, in every process).
    /// A publisher whose request timed out, or that cannot tell whether its publish went
    /// through, publishes again with the same key. A key is 1 to 255 bytes of visible ASCII
    /// (an order id, a UUID, an outbox row), else [`PublishError::InvalidKey`].
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let shipped = hub.idempotent("order-17:shipped");
    /// let first = shipped.publish("orders", Some("shipped"), "order 17 shipped")?;
    /// let again = shipped.publish("orders", Some("shipped"), "order 17 shipped")?;
    /// assert_eq!(first, again); // published once
    /// assert!(hub.idempotent("").publish("orders", None, "x").is_err());
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn idempotent(&self, key: impl Into<String>) -> Idempotent<'_> {
        Idempotent {
            hub: self,
            key: key.into(),
        }
    }

    fn publish_keyed(
        &self,
        key: Option<&str>,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> Result<EventId, PublishError> {
        let draft = self.draft(group, key, |max| Draft::new(event, data, max))?;
        self.send(group, draft, key)
    }

    fn publish_keyed_async(
        &self,
        key: Option<&str>,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        let draft = self.draft(group, key, |max| Draft::new(event, data, max));
        self.send_async(group, draft, key)
    }

    #[cfg(feature = "json")]
    fn publish_json_keyed(
        &self,
        key: Option<&str>,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> Result<EventId, PublishError> {
        let draft = self.draft(group, key, |max| Draft::json(event, value, max))?;
        self.send(group, draft, key)
    }

    #[cfg(feature = "json")]
    fn publish_json_keyed_async(
        &self,
        key: Option<&str>,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        let draft = self.draft(group, key, |max| Draft::json(event, value, max));
        self.send_async(group, draft, key)
    }

    /// Checks `group` and the idempotency `key`, then encodes the event with `encode`, given
    /// the most bytes it may take.
    pub(crate) fn draft(
        &self,
        group: &str,
        key: Option<&str>,
        encode: impl FnOnce(usize) -> Result<Draft, PublishError>,
    ) -> Result<Draft, PublishError> {
        sse_names::check_group(group).map_err(PublishError::InvalidGroup)?;
        key.map_or(Ok(()), idempotency::check)?;
        encode(self.max_event_bytes())
    }

    /// Hands an encoded event, with its idempotency key, to the engine, which gives it its id
    /// and carries it, or leaves it to its group here. `group` and `key` must be valid:
    /// [`Hub::publish`] checks them, the publish endpoint checks a whole batch before it sends
    /// any of it.
    pub(crate) fn send(
        &self,
        group: &str,
        draft: Draft,
        key: Option<&str>,
    ) -> Result<EventId, PublishError> {
        self.check_open(group)?;
        let once = key.map(|key| (&*self.seen, key));
        send(&self.registry, &*self.engine, group, draft, once)
    }

    /// [`Hub::send`] for async callers, with the draft or why there is none.
    pub(crate) fn send_async(
        &self,
        group: &str,
        draft: Result<Draft, PublishError>,
        key: Option<&str>,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        let publishing = draft.and_then(|draft| {
            self.check_open(group)?;
            Ok(match self.engine.publish_async(group, draft, key) {
                Taken::Here(draft) => {
                    let once = key.map(|key| (&*self.seen, key));
                    Either::Left(std::future::ready(here(&self.registry, group, draft, once)))
                }
                Taken::Sent(publishing) => Either::Right(publishing),
            })
        });
        let (registry, group) = (self.registry.clone(), group.to_owned());
        async move {
            let id = publishing?.await?;
            Ok(published(&registry, &group, id))
        }
    }

    /// Whether `group` takes events here: the hub runs, and the group did not end as far as
    /// this process knows. (In memory, the group's lock decides that; an engine shared by
    /// processes gives the event its id before any process sees it, so it is asked first.)
    fn check_open(&self, group: &str) -> Result<(), PublishError> {
        if self.registry.is_shut_down() {
            return Err(PublishError::ShutDown);
        }
        if self.engine.shared() && self.registry.is_finished(group) {
            return Err(PublishError::Finished);
        }
        Ok(())
    }

    /// The most bytes an event encoded for this hub may take ([`Config::max_event_bytes`]).
    pub(crate) fn max_event_bytes(&self) -> usize {
        self.registry.config.max_event_bytes
    }

    /// The hub's settings.
    pub(crate) fn config(&self) -> &Config {
        &self.registry.config
    }

    /// Sends `value` as JSON: like [`Hub::publish`], with the data written by `serde_json`
    /// straight into the event. What [`publish_json!`](crate::publish_json) calls.
    ///
    /// Compact JSON escapes the line breaks inside strings, so the data is one line and
    /// `JSON.parse(event.data)` in the browser gives the value back.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let yo = serde_json::json!({ "from": "alice", "to": "bob" });
    /// assert!(hub.publish_json("yo", Some("yo"), &yo).is_ok());
    /// ```
    #[cfg(feature = "json")]
    pub fn publish_json(
        &self,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> Result<EventId, PublishError> {
        self.publish_json_keyed(None, group, event, value)
    }

    /// [`Hub::publish_json`] for async code: see [`Hub::publish_async`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse::PublishError> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let yo = serde_json::json!({ "from": "alice", "to": "bob" });
    /// hub.publish_json_async("yo", Some("yo"), &yo).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn publish_json_async(
        &self,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        self.publish_json_keyed_async(None, group, event, value)
    }

    /// Opens a stream for a client that last saw `last_event_id`: a [`Subscription`] yielding
    /// the stream's bytes, to serve over any transport. `join` is one group ([`GroupName`]),
    /// several (an array or a `Vec` of them, [`Join::groups`] for any other iterator; a group
    /// named twice is streamed once), or a [`Join`] that says who opened the stream: that user
    /// then counts in [`Hub::presence`] while it is open, and [`Hub::close_user`] closes it.
    ///
    /// It starts where the id says: after it in each group when the history still holds what
    /// the client missed; else with a `stream-reset` event, then live. It is refused when
    /// [`Config::max_streams`] streams are open or the hub is shut down, and with
    /// [`SubscribeError::Closed`] when the client comes back to a stream the server closed.
    ///
    /// ```
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default().retry(None));
    /// let groups = [sse::GroupName::new("yo.bob")?, sse::GroupName::new("yo")?];
    /// let mut bob = hub.subscribe(groups, &sse::LastEventId::default())?;
    /// bob.next().await; // where the stream starts: `id: yo.bob:…,yo:…`
    /// let id = hub.publish("yo.bob", Some("yo"), "yo from alice")?;
    /// let event = String::from_utf8(bob.next().await.unwrap().to_vec())?;
    /// assert!(event.starts_with(&format!("event: yo\ndata: yo from alice\nid: yo.bob:{id},yo:")));
    ///
    /// let yo = sse::GroupName::new("yo")?;
    /// let tab = hub.subscribe(sse::Join::group(yo.clone()).user("alice"), &Default::default())?;
    /// assert_eq!(hub.presence("yo").await?[0].user, "alice");
    /// drop(tab);
    /// assert!(hub.presence("yo").await?.is_empty());
    ///
    /// let full = sse::Hub::new(sse::Config::default().max_streams(0));
    /// let refused = full.subscribe(yo, &sse::LastEventId::default());
    /// assert!(matches!(refused, Err(sse::SubscribeError::TooManyStreams)));
    /// # Ok(()) }
    /// ```
    ///
    /// Over HTTP, what it returns is the response: [`#[sse::subscribe]`](crate::subscribe)
    /// handlers end here, and an endpoint the attribute does not fit returns it from its
    /// handler (or calls `.into_response()` on it). A stream is `200 OK` with the SSE headers
    /// and the stream as the body; a refusal `503 Service Unavailable` with `Retry-After`, or,
    /// for [`SubscribeError::Closed`], `204 No Content`, on which a browser's `EventSource`
    /// stops for good.
    ///
    /// ```
    /// use axum::{extract::Path, response::IntoResponse, routing::get, Router};
    ///
    /// async fn room_events(
    ///     Path(room): Path<sse::GroupName>,
    ///     last: sse::LastEventId,
    /// ) -> Result<sse::Subscription, sse::SubscribeError> {
    ///     sse::hub().subscribe(room, &last)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app: Router = Router::new().route("/rooms/{room}/events", get(room_events));
    /// # let _ = app;
    /// let room = sse::GroupName::new("room.7")?;
    /// let response = room_events(Path(room), sse::LastEventId::default()).await.into_response();
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "text/event-stream");
    /// # Ok(()) }
    /// ```
    pub fn subscribe(
        &self,
        join: impl Into<Join>,
        last_event_id: &LastEventId,
    ) -> Result<Subscription, SubscribeError> {
        let Join {
            groups,
            identity,
            rewind,
            expires,
        } = join.into();
        let mut unique: Vec<GroupName> = Vec::new();
        for group in groups {
            if !unique.contains(&group) {
                unique.push(group);
            }
        }
        let mut groups = unique;
        if self
            .presence
            .refuses(&groups, identity.as_ref(), last_event_id)
        {
            return Err(SubscribeError::Closed);
        }
        let config = &self.registry.config;
        let resume = last_event_id.resume(&groups, config.max_last_event_id_len);
        let rewind = rewind.unwrap_or(0).min(resume::WHOLE);
        let (reader, start, finished) = self.registry.subscribe(&mut groups, resume, rewind)?;
        let catch_up = match &start {
            Start::CatchUp(from) => Some(self.engine.history(groups.clone(), from.clone())),
            _ => None,
        };
        let on_close = self
            .presence
            .opened(&groups, identity.clone(), reader.close_handle());
        let subscription = Subscription::new(groups, reader, start, finished, config.retry)
            .owned(identity, on_close)
            .expiring(expires);
        let subscription = match catch_up {
            Some(catch_up) => subscription.catching_up(catch_up),
            None => subscription,
        };
        Ok(subscription)
    }

    /// The users with streams of `group` open, by user id: each with their count of streams
    /// and the metadata of their latest one ([`Present`]). Only streams opened with an
    /// [`Identity`](crate::Identity) count. In memory, those of this hub; with Redis, those of
    /// every process on the same Redis, read from Redis (one round trip), where a process's
    /// entries expire [`Config::presence_ttl`] after it last refreshed them, so the users of a
    /// process that died vanish within that bound; reading it then fails when Redis cannot be
    /// reached ([`BrokerError`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let yo = sse::GroupName::new("yo")?;
    /// let _alice = hub.subscribe(sse::Join::group(yo.clone()).user("alice"), &Default::default())?;
    /// let _anonymous = hub.subscribe(yo, &Default::default())?;
    /// let present = hub.presence("yo").await?;
    /// assert_eq!(present.len(), 1);
    /// assert_eq!((present[0].user.as_str(), present[0].streams), ("alice", 1));
    /// # Ok(()) }
    /// ```
    ///
    /// With feature `json` (on by default), [`Present`] is `serde::Serialize`: an endpoint that
    /// says who is in a room answers with the list as it is.
    ///
    /// ```
    /// # #[cfg(feature = "json")]
    /// use axum::{extract::Path, http::StatusCode, Json};
    ///
    /// /// `[{"user":"alice","streams":1,"meta":"Alice"}]`, or why presence could not be read.
    /// # #[cfg(feature = "json")]
    /// async fn who_is_here(
    ///     Path(room): Path<String>,
    /// ) -> Result<Json<Vec<sse::Present>>, (StatusCode, String)> {
    ///     match sse::hub().presence(&room).await {
    ///         Ok(present) => Ok(Json(present)),
    ///         Err(unreachable) => Err((StatusCode::SERVICE_UNAVAILABLE, unreachable.to_string())),
    ///     }
    /// }
    ///
    /// # #[cfg(feature = "json")]
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let alice = sse::Identity::new("alice").with_meta("Alice");
    /// let room = sse::Join::group(sse::GroupName::new("room.7")?).identity(alice);
    /// let _tab = sse::hub().subscribe(room, &Default::default())?;
    /// let Json(present) = who_is_here(Path("room.7".into())).await.unwrap();
    /// let json = serde_json::to_string(&present)?;
    /// assert_eq!(json, r#"[{"user":"alice","streams":1,"meta":"Alice"}]"#);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "json"))] fn main() {}
    /// ```
    pub fn presence(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<Present>, BrokerError>> + Send + 'static {
        self.presence.presence(group)
    }

    /// Ends every stream of user `user` ([`Join::user`]), in this process and, with Redis, in
    /// every process (through a control channel; the future ends once Redis took it). Each
    /// stream ends with a [`stream-closed`](crate::STREAM_CLOSED) event, and its client, if it
    /// comes back, is answered `204 No Content`: a browser's `EventSource` then stops for good.
    /// The user's reconnections are refused so for [`Config::close_memory`]. Returns how many
    /// streams it closed in this process.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    ///
    /// let hub = sse::Hub::new(sse::Config::default().retry(None));
    /// let yo = sse::GroupName::new("yo")?;
    /// let mut tab = hub.subscribe(sse::Join::group(yo.clone()).user("alice"), &Default::default())?;
    /// tab.next().await; // stream-start
    /// assert_eq!(hub.close_user("alice").await?, 1);
    /// assert_eq!(tab.next().await.unwrap(), "event: stream-closed\ndata: \nid: closed\n\n");
    /// assert_eq!(tab.next().await, None);
    /// // The browser comes back with that id, or with another within the close memory: 204.
    /// let back = hub.subscribe(sse::Join::group(yo).user("alice"), &tab.last_event_id());
    /// assert!(matches!(back, Err(sse::SubscribeError::Closed)));
    /// # Ok(()) }
    /// ```
    pub fn close_user(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send + 'static {
        self.presence.close(Closing::User(user.to_owned()))
    }

    /// Ends every stream of `group` (all of each stream, also its other groups), as
    /// [`Hub::close_user`] ends a user's, in every process; reconnections to the group are
    /// refused for [`Config::close_memory`]. Returns how many streams it closed in this
    /// process: none for an invalid group name, as no stream can be in such a group.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let room = sse::GroupName::new("room.7")?;
    /// let _a = hub.subscribe(room.clone(), &Default::default())?;
    /// let _b = hub.subscribe(sse::Join::group(room).user("bob"), &Default::default())?;
    /// assert_eq!(hub.close_group("room.7").await?, 2);
    /// assert_eq!(hub.close_group("not a group").await?, 0);
    /// # Ok(()) }
    /// ```
    pub fn close_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send + 'static {
        let closing = GroupName::new(group)
            .ok()
            .map(|group| self.presence.close(Closing::Group(group)));
        async move {
            match closing {
                Some(closing) => closing.await,
                None => Ok(0),
            }
        }
    }

    /// A snapshot of `group` in this hub: how many streams listen to it. For the whole hub,
    /// see [`Hub::stats`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let _tab = hub.subscribe(sse::GroupName::new("yo")?, &Default::default())?;
    /// assert_eq!(hub.group_stats("yo").subscribers, 1);
    /// assert_eq!(hub.group_stats("nobody-listens"), sse::GroupStats::default());
    /// # Ok(()) }
    /// ```
    pub fn group_stats(&self, group: &str) -> GroupStats {
        GroupStats {
            subscribers: self.registry.subscriber_count(group),
        }
    }

    /// A snapshot of the hub: groups, open streams, and events published, delivered, replayed
    /// and streams dropped since it was made. Its `Display` is Prometheus' text format. For one
    /// group, see [`Hub::group_stats`].
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.publish("nobody-listens", None, "lost in the void")?;
    /// let stats = hub.stats();
    /// assert_eq!((stats.published, stats.delivered, stats.dropped), (1, 0, 0));
    /// assert_eq!((stats.groups, stats.open_streams), (0, 0)); // a group nobody listens to costs nothing
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        Stats::new(
            &self.registry.counters,
            self.registry.group_count(),
            self.registry.open_streams(),
            self.presence.hooks(),
        )
    }

    /// Ends every open stream with a short `retry:` hint, so browsers come back soon (to the
    /// next instance), and refuses new streams and events with [`PublishError::ShutDown`].
    /// Call it when the server is asked to stop, e.g. in axum's graceful-shutdown signal: an
    /// open stream would otherwise keep the server waiting.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.shutdown();
    /// assert!(matches!(hub.publish("yo", None, "late"), Err(sse::PublishError::ShutDown)));
    /// ```
    pub fn shutdown(&self) {
        self.registry.shut_down();
    }
}

/// A hub's ways to publish, each with one idempotency key: from [`Hub::idempotent`]. Each
/// method is the hub's method of the same name.
#[derive(Debug, Clone)]
pub struct Idempotent<'a> {
    hub: &'a Hub,
    key: String,
}

impl Idempotent<'_> {
    /// [`Hub::publish`], once per key.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let id = hub.idempotent("signup-42").publish("admin", Some("signup"), "user 42")?;
    /// assert_eq!(hub.idempotent("signup-42").publish("admin", Some("signup"), "user 42")?, id);
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn publish(
        &self,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> Result<EventId, PublishError> {
        self.hub.publish_keyed(Some(&self.key), group, event, data)
    }

    /// [`Hub::publish_async`], once per key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse::PublishError> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let retry = hub.idempotent("job-7-done");
    /// let id = retry.publish_async("jobs", Some("done"), 7).await?;
    /// assert_eq!(retry.publish_async("jobs", Some("done"), 7).await?, id);
    /// # Ok(()) }
    /// ```
    pub fn publish_async(
        &self,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        self.hub
            .publish_keyed_async(Some(&self.key), group, event, data)
    }

    /// [`Hub::publish_json`], once per key.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let order = serde_json::json!({ "id": 17, "status": "shipped" });
    /// let id = hub.idempotent("order-17:shipped").publish_json("orders", None, &order)?;
    /// # let _ = id;
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    #[cfg(feature = "json")]
    pub fn publish_json(
        &self,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> Result<EventId, PublishError> {
        self.hub
            .publish_json_keyed(Some(&self.key), group, event, value)
    }

    /// [`Hub::publish_json_async`], once per key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sse::PublishError> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let order = serde_json::json!({ "id": 17, "status": "shipped" });
    /// let keyed = hub.idempotent("order-17:shipped");
    /// let id = keyed.publish_json_async("orders", None, &order).await?;
    /// # let _ = id;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub fn publish_json_async(
        &self,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> impl Future<Output = Result<EventId, PublishError>> + Send + 'static {
        self.hub
            .publish_json_keyed_async(Some(&self.key), group, event, value)
    }
}

/// Publishes `draft` to `group` through `engine`, or here when the engine leaves it to the
/// group's own sequence; `once`: the table of idempotency keys kept here, and the publish's key.
fn send(
    registry: &Arc<Registry>,
    engine: &dyn Engine,
    group: &str,
    draft: Draft,
    once: Option<(&Seen, &str)>,
) -> Result<EventId, PublishError> {
    let id = match engine.publish(group, draft, once.map(|(_, key)| key)) {
        Taken::Here(draft) => here(registry, group, draft, once)?,
        Taken::Sent(id) => id?,
    };
    Ok(published(registry, group, id))
}

/// Stores `draft` in `group` here, unless its idempotency key was published already.
fn here(
    registry: &Arc<Registry>,
    group: &str,
    draft: Draft,
    once: Option<(&Seen, &str)>,
) -> Result<EventId, PublishError> {
    match once {
        None => registry.publish(group, draft),
        Some((seen, key)) => seen.once(group, key, || registry.publish(group, draft)),
    }
}

/// Publishes a join or leave event (on the hooks' thread: with a shared engine it blocks for a
/// round trip).
fn announce(registry: &Arc<Registry>, engine: &dyn Engine, group: &GroupName, change: &Change) {
    let (event, data) = change.event();
    let draft = Draft::new(Some(event), data, registry.config.max_event_bytes);
    let sent = draft.and_then(|draft| send(registry, engine, group.as_str(), draft, None));
    match sent {
        Ok(_) => {}
        // The hub's own streams are ending, or the group's did: nobody is left to tell.
        Err(PublishError::ShutDown | PublishError::Finished) => {}
        Err(error) => tracing::warn!(
            %group, event, error = &error as &dyn std::error::Error,
            "presence event not published"
        ),
    }
}

/// `group` ended with event `end`, published by this process. In memory its ring knows that
/// already; an engine shared by processes delivers the end later, if this process listens to
/// the group at all, so the registry is told now.
fn finished(registry: &Registry, engine: &dyn Engine, group: &str, end: EventId) {
    if let (true, Ok(group)) = (engine.shared(), GroupName::new(group)) {
        registry.finished(&group, end.get());
    }
}

/// Counts an event published to `registry`'s groups.
fn published(registry: &Registry, group: &str, id: EventId) -> EventId {
    registry.counters.published();
    tracing::trace!(group, id = id.get(), "published");
    id
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("open_streams", &self.registry.open_streams())
            .finish_non_exhaustive()
    }
}
