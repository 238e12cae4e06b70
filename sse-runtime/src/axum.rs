//! The axum side: the `Last-Event-ID` extractor, a subscription (or why there is none) as a
//! response, the metrics handler.

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame};

use crate::{Hub, LastEventId, SubscribeError, Subscription};

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
        Ok(header
            .or_else(query)
            .map(LastEventId::new)
            .unwrap_or_default())
    }
}

impl Hub {
    /// A layer that puts this hub in every request under it: the
    /// [`#[sse::subscribe]`](crate::subscribe) handlers there open their streams on it instead
    /// of the process-wide [`sse::hub()`](crate::hub), other handlers reach it as
    /// `Extension<sse::Hub>` to publish on it, and so does a publish endpoint without a hub of
    /// its own. So an app (or each of many apps in one process,
    /// as tests run in parallel) has groups of its own, whatever their names.
    ///
    /// ```
    /// use axum::{routing::{get, post}, Extension, Router};
    ///
    /// #[sse::subscribe("yo")]
    /// async fn yo_events() {}
    ///
    /// async fn send_yo(Extension(hub): Extension<sse::Hub>) -> Result<String, String> {
    ///     let id = hub.publish("yo", Some("yo"), "yo").map_err(|e| e.to_string())?;
    ///     Ok(id.to_string())
    /// }
    ///
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let app: Router = Router::new()
    ///     .route("/events/yo", get(yo_events))
    ///     .route("/yo", post(send_yo))
    ///     .layer(hub.layer());
    /// ```
    pub fn layer(&self) -> axum::Extension<Hub> {
        axum::Extension(self.clone())
    }
}

impl IntoResponse for Subscription {
    /// `200 OK`, `text/event-stream`, not to be cached nor buffered by proxies, and the
    /// subscription as the body.
    fn into_response(self) -> Response {
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
            axum::body::Body::new(EventBody(self)),
        )
            .into_response()
    }
}

impl IntoResponse for SubscribeError {
    /// `503 Service Unavailable`, `Retry-After: 5`, and why; for
    /// [`SubscribeError::Closed`] and [`SubscribeError::Finished`], `204 No Content`:
    /// `EventSource` fails the connection on it and does not reconnect.
    fn into_response(self) -> Response {
        if matches!(self, SubscribeError::Closed | SubscribeError::Finished) {
            tracing::debug!(why = %self, "a client came back to an ended stream: 204, it stops there");
            return StatusCode::NO_CONTENT.into_response();
        }
        tracing::warn!(why = %self, "stream refused");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            self.to_string(),
        )
            .into_response()
    }
}

/// A subscription as an HTTP body: each chunk it yields is one data frame.
struct EventBody(Subscription);

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// An axum handler serving the process-wide hub's [`Stats`](crate::Stats) in Prometheus' text
/// format.
///
/// ```
/// use axum::{routing::get, Router};
///
/// let app: Router = Router::new().route("/metrics", get(sse::metrics));
/// ```
pub async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::hub().stats().to_string(),
    )
        .into_response()
}
