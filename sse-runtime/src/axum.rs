//! The axum side: from a request to an open stream.

use std::convert::Infallible;

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    event,
    registry::{Refused, Registry, Start},
    stream::EventStream,
    GroupName, Hub,
};

/// The id a reconnecting client last saw: the `Last-Event-ID` header that browsers resend, or
/// else a `lastEventId` query parameter for clients that cannot set headers.
///
/// An axum extractor; it never rejects. A value that is not an id this hub gave (garbage,
/// non-UTF-8, longer than [`Config::max_last_event_id_len`](crate::Config::max_last_event_id_len))
/// is not an error: the stream starts with a `stream-reset` event instead of a replay.
///
/// ```
/// use axum::{extract::Request, extract::FromRequestParts};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = Request::builder().uri("/events?lastEventId=42").body(()).unwrap();
/// let (mut parts, ()) = request.into_parts();
/// let last = sse::LastEventId::from_request_parts(&mut parts, &()).await.unwrap();
/// assert_eq!(last.as_bytes(), Some(&b"42"[..]));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct LastEventId(Option<Bytes>);

/// How a `Last-Event-ID` reads, once checked against the hub's limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resume {
    None,
    Id(u64),
    Invalid(&'static str),
}

impl LastEventId {
    /// The raw value, if the client sent one.
    ///
    /// ```
    /// assert_eq!(sse::LastEventId::default().as_bytes(), None);
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }

    pub(crate) fn resume(&self, max_len: usize) -> Resume {
        let Some(raw) = &self.0 else {
            return Resume::None;
        };
        if raw.len() > max_len {
            return Resume::Invalid("id too long");
        }
        match std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok()) {
            Some(id) => Resume::Id(id),
            None => Resume::Invalid("not an id"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get("last-event-id")
            .map(|value| Bytes::copy_from_slice(value.as_bytes()));
        let query = || {
            let query = parts.uri.query()?;
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "lastEventId")
                .map(|(_, value)| Bytes::from(value.into_owned()))
        };
        // Browsers send no header rather than an empty one; an empty value means "none".
        Ok(Self(header.or_else(query).filter(|raw| !raw.is_empty())))
    }
}

impl Hub {
    /// Opens a stream of `groups` for a client that last saw `last_event_id`: the response of an
    /// SSE endpoint. What [`#[sse::subscribe]`](crate::subscribe) handlers return; call it
    /// yourself for an endpoint the attribute does not fit.
    ///
    /// The response is `200 OK` with the SSE headers and a body that stays open, or
    /// `503 Service Unavailable` with `Retry-After` when [`Config::max_streams`](crate::Config::max_streams)
    /// streams are open or the hub is shut down.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    ///
    /// async fn events(last: sse::LastEventId) -> axum::response::Response {
    ///     let group = sse::GroupName::new("yo").unwrap();
    ///     sse::hub().stream([group], &last)
    /// }
    /// let app: Router = Router::new().route("/events", get(events));
    /// ```
    pub fn stream(
        &self,
        groups: impl IntoIterator<Item = GroupName>,
        last_event_id: &LastEventId,
    ) -> Response {
        respond(
            &self.registry,
            &groups.into_iter().collect::<Vec<_>>(),
            last_event_id,
        )
    }
}

fn respond(
    registry: &std::sync::Arc<Registry>,
    groups: &[GroupName],
    last: &LastEventId,
) -> Response {
    let config = &registry.config;
    let resume = last.resume(config.max_last_event_id_len);
    let (subscription, start) = match registry.subscribe(groups, resume) {
        Ok(opened) => opened,
        Err(refused) => {
            let why = match refused {
                Refused::TooManyStreams => "too many open streams, try again later",
                Refused::ShutDown => "shutting down, try again later",
            };
            tracing::warn!(?groups, why, "stream refused");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
                why,
            )
                .into_response();
        }
    };
    let mut first = BytesMut::new();
    if let Some(retry) = config.retry {
        first.put(event::retry_hint(retry));
    }
    let catch_up = match start {
        Start::Live => None,
        Start::Reset(reset) => {
            first.put(reset);
            None
        }
        Start::CatchUp(after) => Some(registry.broker.catch_up(groups.to_vec(), after)),
    };
    let body = EventStream::new(
        (!first.is_empty()).then(|| first.freeze()),
        catch_up,
        subscription,
        config.keep_alive,
        config.shutdown_retry,
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::new(body),
    )
        .into_response()
}
