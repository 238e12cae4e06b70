//! The hub: publishing, subscribing and the process-wide instance the macros use.

use std::{fmt, sync::Arc};

use once_cell::sync::OnceCell;

use crate::{event::Draft, registry::Registry, Config, EventId, PublishError, Stats};

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
/// assert_eq!(hub.subscriber_count("yo"), 0);
/// # Ok::<(), sse::PublishError>(())
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) registry: Arc<Registry>,
}

static GLOBAL: OnceCell<Hub> = OnceCell::new();

/// The process-wide hub, made with [`Config::default()`] on first use unless [`init`] ran first.
///
/// ```
/// let _id = sse::publish!("docs-hub", "hi")?;
/// assert_eq!(sse::hub().subscriber_count("docs-hub"), 0);
/// # Ok::<(), sse::PublishError>(())
/// ```
pub fn hub() -> &'static Hub {
    GLOBAL.get_or_init(|| Hub::new(Config::default()))
}

/// Sets up the process-wide hub with `config`. Call it once at startup, before anything
/// subscribes or publishes; afterwards it returns [`AlreadyInitialized`].
///
/// ```
/// use std::time::Duration;
///
/// sse::init(sse::Config::default().keep_alive(Some(Duration::from_secs(20))))?;
/// assert!(sse::init(sse::Config::default()).is_err());
/// # Ok::<(), sse::AlreadyInitialized>(())
/// ```
pub fn init(config: Config) -> Result<&'static Hub, AlreadyInitialized> {
    let mut fresh = false;
    let hub = GLOBAL.get_or_init(|| {
        fresh = true;
        Hub::new(config)
    });
    if fresh {
        Ok(hub)
    } else {
        Err(AlreadyInitialized)
    }
}

/// [`init`] was called after the process-wide hub was already in use.
///
/// ```
/// let _ = sse::hub();
/// let err = sse::init(sse::Config::default()).unwrap_err();
/// assert_eq!(err.to_string(), "the SSE hub was already initialized: call sse::init before anything subscribes or publishes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyInitialized;

impl fmt::Display for AlreadyInitialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the SSE hub was already initialized: call sse::init before anything subscribes or publishes",
        )
    }
}

impl std::error::Error for AlreadyInitialized {}

impl Hub {
    /// A hub of its own, with `config`.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default().max_streams(100));
    /// assert_eq!(hub.group_count(), 0);
    /// ```
    pub fn new(config: Config) -> Self {
        Self {
            registry: Arc::new(Registry::new(config)),
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
        sse_names::check_group(group).map_err(PublishError::InvalidGroup)?;
        let draft = Draft::new(event, data, self.registry.config.max_event_bytes)?;
        self.registry.publish(group, draft)
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
        sse_names::check_group(group).map_err(PublishError::InvalidGroup)?;
        let draft = Draft::json(event, value, self.registry.config.max_event_bytes)?;
        self.registry.publish(group, draft)
    }

    /// How many open streams listen to `group`.
    ///
    /// ```
    /// assert_eq!(sse::hub().subscriber_count("nobody-listens"), 0);
    /// ```
    pub fn subscriber_count(&self, group: &str) -> usize {
        self.registry.subscriber_count(group)
    }

    /// How many groups are held: those with subscribers, and those whose history is still kept
    /// for clients that may come back.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.publish("nobody-listens", None, "lost in the void")?;
    /// assert_eq!(hub.group_count(), 0); // a group nobody listens to costs nothing
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn group_count(&self) -> usize {
        self.registry.group_count()
    }

    /// How many streams are open.
    ///
    /// ```
    /// assert_eq!(sse::Hub::new(sse::Config::default()).open_streams(), 0);
    /// ```
    pub fn open_streams(&self) -> usize {
        self.registry.open_streams()
    }

    /// A snapshot of the hub: groups, open streams, and events published, delivered, replayed
    /// and streams dropped since it was made. Its `Display` is Prometheus' text format.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// hub.publish("yo", None, "hi")?;
    /// let stats = hub.stats();
    /// assert_eq!((stats.published, stats.delivered, stats.dropped), (1, 0, 0));
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        Stats::new(
            &self.registry.counters,
            self.group_count(),
            self.open_streams(),
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

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("open_streams", &self.open_streams())
            .finish_non_exhaustive()
    }
}
