//! Why a publish was refused, or a broker failed. How an error carries its cause (in its
//! message or as its source, never both): the crate docs, "Errors".

use std::{error::Error, fmt, sync::Arc};

use crate::NameError;

/// Why [`publish!`](crate::publish) refused an event. Nothing was sent when this is returned.
///
/// `InvalidGroup`, `InvalidEvent` and `Broker` are the error they hold (message and source);
/// `Json` says what failed and gives `serde_json`'s error as its source (see
/// [Errors](crate#errors)).
///
/// ```
/// let group = String::from("not a group!");
/// let err = sse::publish!(group, "yo", "hi").unwrap_err();
/// assert!(matches!(err, sse::PublishError::InvalidGroup(_)));
/// assert_eq!(
///     err.to_string(),
///     "invalid group name \"not a group!\": character ' ' at byte 3 is not allowed \
///      (allowed: ASCII letters, digits, '-', '_', '.')"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// The group name breaks the group-name rule. Transparent: the [`NameError`]'s message.
    InvalidGroup(NameError),
    /// The event name contains CR, LF or NUL, is empty or too long. Transparent: the
    /// [`NameError`]'s message.
    InvalidEvent(NameError),
    /// The encoded event would be larger than [`Config::max_event_bytes`](crate::Config::max_event_bytes).
    TooLarge {
        /// The limit.
        max_bytes: usize,
        /// How large the event was found to be before encoding stopped.
        at_least: usize,
    },
    /// The hub was shut down ([`Hub::shutdown`](crate::Hub::shutdown)).
    ShutDown,
    /// The group ended ([`Hub::finish`](crate::Hub::finish)): it takes no more events. In
    /// memory, refused for as long as the group is kept; with Redis, by each process that
    /// holds the group and received its end.
    Finished,
    /// The idempotency key ([`Hub::idempotent`](crate::Hub::idempotent)) is empty, longer than
    /// 255 bytes, or holds a character that is not visible ASCII.
    InvalidKey {
        /// Why, as the message says it.
        reason: &'static str,
    },
    /// The value given to [`publish_json!`](crate::publish_json) could not be written as JSON
    /// (a map with non-string keys, or a `Serialize` impl that failed). The message says so;
    /// `serde_json`'s error, which says why, is the source.
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// The broker that shares events between processes (Redis) could not take the event: it
    /// is unreachable, or its URL is wrong. Nothing is queued: publish again once it is back.
    /// Transparent: the [`BrokerError`]'s message and source.
    Broker(BrokerError),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidGroup(e) | PublishError::InvalidEvent(e) => e.fmt(f),
            PublishError::Broker(e) => e.fmt(f),
            PublishError::TooLarge {
                max_bytes,
                at_least,
            } => write!(
                f,
                "event too large: at least {at_least} bytes encoded, at most {max_bytes} allowed"
            ),
            PublishError::ShutDown => f.write_str("the SSE hub is shut down"),
            PublishError::Finished => {
                f.write_str("the group was finished: it takes no more events")
            }
            PublishError::InvalidKey { reason } => write!(f, "invalid idempotency key: {reason}"),
            #[cfg(feature = "json")]
            PublishError::Json(_) => f.write_str("event data could not be written as JSON"),
        }
    }
}

impl Error for PublishError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PublishError::InvalidGroup(e) | PublishError::InvalidEvent(e) => e.source(),
            PublishError::Broker(e) => e.source(),
            #[cfg(feature = "json")]
            PublishError::Json(e) => Some(e),
            PublishError::TooLarge { .. }
            | PublishError::ShutDown
            | PublishError::Finished
            | PublishError::InvalidKey { .. } => None,
        }
    }
}

/// What went wrong with the broker: a bad `SSE_BROKER_URL`, or a Redis that cannot be reached.
///
/// The message says what failed and names the URL (without its password); the Redis error that
/// says why, when there is one, is the [`source()`](Error::source), not repeated in the message.
///
/// ```
/// let err = sse::Config::default().broker("http://not-redis").unwrap_err();
/// assert!(err.to_string().contains("http://not-redis"), "{err}");
/// ```
///
/// ```
/// use std::error::Error;
///
/// // Nothing listens there (and without feature `redis`, the URL itself is refused).
/// let config = sse::Config::default().broker("redis://127.0.0.1:1/0");
/// let err = config.and_then(sse::Hub::connect).err().expect("unreachable");
/// assert!(err.to_string().contains("redis://127.0.0.1:1/0"), "{err}");
/// if let Some(why) = err.source() {
///     println!("because: {why}"); // the Redis error
/// }
/// ```
#[derive(Debug, Clone)]
pub struct BrokerError {
    message: String,
    /// The engine's own error (Redis's), shared so the error stays `Clone`.
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl BrokerError {
    /// An error whose message says it all.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// `message` says what failed; `source`, kept whole, says why.
    pub(crate) fn caused_by(
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for BrokerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        let source = self.source.as_deref()?;
        Some(source)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use crate::{Config, Hub, PublishError};

    /// No message down the chain repeats the one of its source.
    fn assert_each_cause_once(error: &dyn Error) {
        let mut error = error;
        while let Some(source) = error.source() {
            let (message, cause) = (error.to_string(), source.to_string());
            assert!(!message.contains(&cause), "{message:?} repeats {cause:?}");
            error = source;
        }
    }

    #[test]
    fn refused_names_are_the_name_error_itself() {
        let hub = Hub::new(Config::default());
        let group = hub.publish("a b", Some("yo"), "x").unwrap_err();
        let event = hub.publish("yo", Some("a\nb"), "x").unwrap_err();
        for err in [group, event] {
            let (PublishError::InvalidGroup(name) | PublishError::InvalidEvent(name)) = &err else {
                panic!("{err:?}");
            };
            assert_eq!(err.to_string(), name.to_string());
            assert!(err.source().is_none(), "{err:?}");
        }
    }

    #[test]
    fn every_error_gives_each_cause_once() {
        let hub = Hub::new(Config::default());
        let mut errors: Vec<Box<dyn Error>> = vec![
            Box::new(hub.publish("a b", Some("yo"), "x").unwrap_err()),
            Box::new(hub.publish("yo", Some(""), "x").unwrap_err()),
            // With feature `redis` the URL is parsed by redis, whose error is the source.
            Box::new(Config::default().broker("mysql://db").unwrap_err()),
        ];
        #[cfg(feature = "json")]
        errors.push(Box::new(
            hub.publish_json("yo", None, &std::collections::HashMap::from([((1, 2), 3)]))
                .unwrap_err(),
        ));
        hub.shutdown();
        errors.push(Box::new(hub.publish("yo", None, "late").unwrap_err()));
        for error in &errors {
            assert_each_cause_once(error.as_ref());
        }
    }
}

/// Why [`Hub::subscribe`](crate::Hub::subscribe) opened no stream. Over HTTP it answers
/// `503 Service Unavailable` with `Retry-After: 5` and this message.
///
/// ```
/// let hub = sse::Hub::new(sse::Config::default());
/// hub.shutdown();
/// let err = hub.subscribe([sse::GroupName::new("yo")?], &sse::LastEventId::default()).unwrap_err();
/// assert_eq!(err, sse::SubscribeError::ShutDown);
/// assert_eq!(err.to_string(), "shutting down, try again later");
/// # Ok::<(), sse::NameError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// [`Config::max_streams`](crate::Config::max_streams) streams are open.
    TooManyStreams,
    /// The hub was shut down ([`Hub::shutdown`](crate::Hub::shutdown)).
    ShutDown,
    /// The client comes back to a stream the server closed
    /// ([`Hub::close_user`](crate::Hub::close_user), [`Hub::close_group`](crate::Hub::close_group)):
    /// its `Last-Event-ID` is [`CLOSED_ID`](crate::CLOSED_ID), or it is a reconnection within
    /// [`Config::close_memory`](crate::Config::close_memory) of the close. Answered
    /// `204 No Content`, on which a browser's `EventSource` stops reconnecting.
    Closed,
    /// The client comes back with the id of its groups' end ([`Hub::finish`](crate::Hub::finish)),
    /// or a later one: it has it all. Answered `204 No Content`, on which a browser's
    /// `EventSource` stops reconnecting.
    Finished,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubscribeError::TooManyStreams => "too many open streams, try again later",
            SubscribeError::ShutDown => "shutting down, try again later",
            SubscribeError::Closed => "this stream was closed by the server",
            SubscribeError::Finished => "this stream's groups were finished",
        })
    }
}

impl std::error::Error for SubscribeError {}
