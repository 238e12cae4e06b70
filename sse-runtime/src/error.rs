//! Why a publish was refused.

use std::fmt;

use crate::NameError;

/// Why [`publish!`](crate::publish) refused an event. Nothing was sent when this is returned.
///
/// ```
/// let group = String::from("not a group!");
/// let err = sse::publish!(group, "yo", "hi").unwrap_err();
/// assert!(matches!(err, sse::PublishError::InvalidGroup(_)));
/// assert!(err.to_string().starts_with("invalid group name"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PublishError {
    /// The group name breaks the group-name rule.
    InvalidGroup(NameError),
    /// The event name contains CR, LF or NUL, is empty or too long.
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
    /// The value given to [`publish_json!`](crate::publish_json) could not be written as JSON
    /// (a map with non-string keys, or a `Serialize` impl that failed).
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// The broker that shares events between processes (Redis) could not take the event: it
    /// is unreachable, or its URL is wrong. Nothing is queued: publish again once it is back.
    Broker(BrokerError),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidGroup(e) | PublishError::InvalidEvent(e) => e.fmt(f),
            PublishError::TooLarge {
                max_bytes,
                at_least,
            } => write!(
                f,
                "event too large: at least {at_least} bytes encoded, at most {max_bytes} allowed"
            ),
            PublishError::ShutDown => f.write_str("the SSE hub is shut down"),
            #[cfg(feature = "json")]
            PublishError::Json(e) => write!(f, "event data is not JSON: {e}"),
            PublishError::Broker(e) => write!(f, "event not sent: {e}"),
        }
    }
}

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PublishError::InvalidGroup(e) | PublishError::InvalidEvent(e) => Some(e),
            #[cfg(feature = "json")]
            PublishError::Json(e) => Some(e),
            PublishError::Broker(e) => Some(e),
            _ => None,
        }
    }
}

/// What went wrong with the broker: a bad `SSE_BROKER_URL`, or a Redis that cannot be reached.
/// The message names the URL (without its password) and the cause.
///
/// ```
/// let err = sse::Config::default().broker("http://not-redis").unwrap_err();
/// assert!(err.to_string().contains("http://not-redis"), "{err}");
/// ```
#[derive(Debug, Clone)]
pub struct BrokerError(pub(crate) String);

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BrokerError {}

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
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubscribeError::TooManyStreams => "too many open streams, try again later",
            SubscribeError::ShutDown => "shutting down, try again later",
        })
    }
}

impl std::error::Error for SubscribeError {}
