//! Publishing over HTTP: an endpoint that programs in any language (a Django or Celery worker,
//! a cron job, `curl`) POST events to, authorized by a bearer token.
//!
//! A request is one event or a batch, as JSON:
//!
//! ```text
//! {"group": "yo", "event": "yo", "data": "yo from alice to bob"}
//! {"events": [{"group": "yo", "data": {"from": "alice"}}, ...]}
//! ```
//!
//! A batch is all or nothing: every event is checked (its shape, group and event names,
//! idempotency key, encoded size) before the first is sent, so one bad event publishes none of
//! them.

use std::{collections::BTreeMap, fmt, sync::Arc};

use axum::{
    extract::{DefaultBodyLimit, FromRequest, Request},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{post, MethodRouter},
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::{event::Draft, idempotency, EventId, GroupName, Hub, PublishError};

/// The environment variable [`PublishEndpoint::from_env`] reads the token from; the Python
/// publisher in `clients/python` reads it too.
///
/// ```
/// assert_eq!(sse::PUBLISH_TOKEN_ENV, "SSE_PUBLISH_TOKEN");
/// ```
pub const PUBLISH_TOKEN_ENV: &str = "SSE_PUBLISH_TOKEN";

/// An HTTP endpoint that publishes the events POSTed to it: mount it on your router, and any
/// program that speaks HTTP and JSON can publish.
///
/// ```
/// use axum::Router;
///
/// # fn main() -> Result<(), sse::TokenError> {
/// # std::env::set_var(sse::PUBLISH_TOKEN_ENV, "docs-only-token");
/// let publish = sse::PublishEndpoint::from_env()?; // the token in SSE_PUBLISH_TOKEN
/// let app: Router = Router::new().route("/sse/publish", publish.into_method_router());
/// # Ok(()) }
/// ```
///
/// Then, from anywhere:
///
/// ```text
/// curl -H "Authorization: Bearer $SSE_PUBLISH_TOKEN" -H "Content-Type: application/json" \
///      -d '{"group": "yo", "event": "yo", "data": "yo from a to b"}' https://example.com/sse/publish
/// {"ids":["17"]}
/// ```
///
/// The body is one event `{"group": …, "event": …, "data": …}` or a batch
/// `{"events": [event, …]}`. `event` may be left out (or `null`) for a `message` event. `data`
/// is a string, sent as it is, or any other JSON value, sent as compact JSON (key order and
/// numbers as given), like [`publish_json!`](crate::publish_json). An event may carry
/// `"key": "…"`, its idempotency key ([`Hub::idempotent`]); a body of one event may give it as
/// an `Idempotency-Key` header instead. A request retried with its keys gets the same ids and
/// publishes nothing again.
///
/// The answers, with a JSON body (`{"error": "…"}` for a refusal):
///
/// | Status | When |
/// |---|---|
/// | `200` | published: `{"ids": ["17", …]}`, one id per event in order, as strings (they are `u64`) |
/// | `400` | the body is not a JSON object |
/// | `401` | no bearer token, or the wrong one (with `WWW-Authenticate: Bearer`) |
/// | `413` | the body is over [`max_body_bytes`](Self::max_body_bytes), or the batch over [`max_events`](Self::max_events) |
/// | `415` | the `Content-Type` is not `application/json` |
/// | `422` | an event is refused (shape, names, key, size): `{"error": "event 3: invalid group name …", "index": 3}`, or an `Idempotency-Key` header came with a batch; nothing was published |
/// | `503` | the hub is shut down or its broker unreachable: `{"error", "index", "ids"}` say which event failed and the ids of those before it, which were published |
///
/// The token is compared in constant time. Serve the endpoint over TLS only (the token is a
/// password), and keep the token out of the code: [`PublishEndpoint::from_env`].
#[derive(Clone)]
pub struct PublishEndpoint {
    token: Arc<[u8]>,
    /// `None`: the hub a layer put in the request ([`Hub::layer`]), else the process-wide hub,
    /// looked up per request so that `sse::init` may run later.
    hub: Option<Hub>,
    max_body_bytes: usize,
    max_events: usize,
}

impl PublishEndpoint {
    /// An endpoint that accepts `Authorization: Bearer <token>`, publishing on the process-wide
    /// hub ([`sse::hub()`](crate::hub)), with bodies up to 1 MiB and batches up to 1,000 events.
    ///
    /// The token must be 1 or more visible ASCII characters (no spaces): an empty one would let
    /// anyone publish.
    ///
    /// ```
    /// let publish = sse::PublishEndpoint::new("a-long-random-secret")?;
    /// # let _ = publish;
    /// assert_eq!(sse::PublishEndpoint::new("").unwrap_err(), sse::TokenError::Empty);
    /// assert!(sse::PublishEndpoint::new("two words").is_err());
    /// # Ok::<(), sse::TokenError>(())
    /// ```
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        let token = token.into();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(at) = token.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii { at });
        }
        Ok(Self {
            token: token.into_bytes().into(),
            hub: None,
            max_body_bytes: 1 << 20,
            max_events: 1_000,
        })
    }

    /// [`PublishEndpoint::new`] with the token in the environment variable
    /// [`SSE_PUBLISH_TOKEN`](PUBLISH_TOKEN_ENV).
    ///
    /// ```
    /// std::env::remove_var(sse::PUBLISH_TOKEN_ENV);
    /// let err = sse::PublishEndpoint::from_env().unwrap_err();
    /// assert_eq!(err.to_string(), "SSE_PUBLISH_TOKEN is not set: the publish endpoint needs a token");
    /// ```
    pub fn from_env() -> Result<Self, TokenError> {
        let token = std::env::var(PUBLISH_TOKEN_ENV).map_err(|_| TokenError::NotSet)?;
        Self::new(token)
    }

    /// Publishes on `hub`. Without it, the endpoint publishes on the hub a [`Hub::layer`] put in
    /// the request, else on the process-wide hub.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let publish = sse::PublishEndpoint::new("secret")?.hub(hub.clone());
    /// # let _ = publish;
    /// # Ok::<(), sse::TokenError>(())
    /// ```
    pub fn hub(mut self, hub: Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The largest body accepted, in bytes (default 1 MiB); a larger one is answered `413`.
    /// Each event is also bounded by the hub's [`Config::max_event_bytes`](crate::Config::max_event_bytes).
    ///
    /// ```
    /// let publish = sse::PublishEndpoint::new("secret")?.max_body_bytes(8 << 20);
    /// # let _ = publish;
    /// # Ok::<(), sse::TokenError>(())
    /// ```
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The most events a batch may hold (default 1,000); a larger batch is answered `413`.
    ///
    /// ```
    /// let publish = sse::PublishEndpoint::new("secret")?.max_events(100);
    /// # let _ = publish;
    /// # Ok::<(), sse::TokenError>(())
    /// ```
    pub fn max_events(mut self, events: usize) -> Self {
        self.max_events = events;
        self
    }

    /// The endpoint as an axum route that answers `POST` (and `405` to other methods), for
    /// [`Router::route`](axum::Router::route) at the path of your choice.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    ///
    /// let publish = sse::PublishEndpoint::new("secret")?;
    /// let app: Router = Router::new()
    ///     .route("/metrics", get(sse::metrics))
    ///     .route("/sse/publish", publish.into_method_router());
    /// # Ok::<(), sse::TokenError>(())
    /// ```
    pub fn into_method_router<S: Clone + Send + Sync + 'static>(self) -> MethodRouter<S> {
        let limit = DefaultBodyLimit::max(self.max_body_bytes);
        let endpoint = Arc::new(self);
        post(move |request: Request| async move {
            match endpoint.publish(request).await {
                Ok(ids) => json_answer(
                    StatusCode::OK,
                    serde_json::json!({ "ids": id_strings(&ids) }),
                ),
                Err(refusal) => refusal.into_response(),
            }
        })
        .layer(limit)
    }

    /// Checks the request, then every event, then publishes them all, in order.
    async fn publish(&self, request: Request) -> Result<Vec<EventId>, Refusal> {
        self.authorize(request.headers())?;
        require_json(request.headers())?;
        let headers = request.headers().clone();
        let request_hub = request.extensions().get::<Hub>().cloned();
        let body = Bytes::from_request(request, &())
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Refusal::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is larger than {} bytes", self.max_body_bytes),
                    )
                } else {
                    Refusal::new(rejection.status(), rejection.body_text())
                }
            })?;
        let layered = || request_hub.unwrap_or_else(|| crate::hub().clone());
        let hub = self.hub.clone().unwrap_or_else(layered);
        let mut drafts = self.drafts(&body, hub.max_event_bytes())?;
        if let Some(key) = header_key(&headers)? {
            match drafts.as_mut_slice() {
                [(_, _, from_body @ None)] => *from_body = Some(key),
                [(_, _, Some(_))] => {}
                _ => {
                    return Err(Refusal::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Idempotency-Key is for a body of one event: give each event of a batch its \"key\"",
                    ))
                }
            }
        }
        send_all(&hub, drafts).await
    }

    /// Whether the request carries the token, compared in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(given) = given else {
            return Err(Refusal::unauthorized(
                "Bearer",
                "missing bearer token: send Authorization: Bearer <token>",
            ));
        };
        // Only the length can be told apart by timing, not how much of the token matched.
        if bool::from(given.as_bytes().ct_eq(&self.token)) {
            Ok(())
        } else {
            Err(Refusal::unauthorized(
                "Bearer error=\"invalid_token\"",
                "wrong bearer token",
            ))
        }
    }

    /// Every event of the body, checked and encoded: the first that is refused refuses them all.
    fn drafts(&self, body: &[u8], max_event_bytes: usize) -> Result<Vec<Outgoing>, Refusal> {
        let not_an_object = |e: serde_json::Error| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not a JSON object: {e}"),
            )
        };
        let whole: &RawValue = serde_json::from_slice(body).map_err(not_an_object)?;
        let fields: BTreeMap<String, &RawValue> =
            serde_json::from_str(whole.get()).map_err(not_an_object)?;
        let events: Vec<&RawValue> = match fields.get("events") {
            None => vec![whole],
            Some(_) if fields.len() > 1 => {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "a batch holds \"events\" and nothing else",
                ))
            }
            Some(events) => serde_json::from_str(events.get()).map_err(|e| {
                Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("\"events\" is not a list of events: {e}"),
                )
            })?,
        };
        if events.len() > self.max_events {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a batch of {} events; at most {} per request",
                    events.len(),
                    self.max_events
                ),
            ));
        }
        events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                draft(event, max_event_bytes).map_err(|why| Refusal::of_event(index, why))
            })
            .collect()
    }
}

/// One event of a request, as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming<'a> {
    group: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
    /// Its idempotency key ([`Hub::idempotent`]).
    #[serde(default)]
    key: Option<String>,
}

/// One event of a request, checked and encoded: its group, the event, its idempotency key.
type Outgoing = (GroupName, Draft, Option<String>);

/// The `Idempotency-Key` header, checked, if the request has one.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let refused = |why: String| Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, why);
    let key = value
        .to_str()
        .map_err(|e| refused(format!("Idempotency-Key: {e}")))?;
    idempotency::check(key).map_err(|e| refused(format!("Idempotency-Key: {e}")))?;
    Ok(Some(key.to_owned()))
}

/// Checks one event of a request and encodes it.
fn draft(event: &RawValue, max_bytes: usize) -> Result<Outgoing, String> {
    let event: Incoming<'_> = serde_json::from_str(event.get()).map_err(|e| e.to_string())?;
    let group = GroupName::new(event.group).map_err(|e| e.to_string())?;
    if let Some(key) = &event.key {
        idempotency::check(key).map_err(|e| e.to_string())?;
    }
    let name = event.event.as_deref();
    let data = event.data.get();
    let draft = if data.starts_with('"') {
        let text: String = serde_json::from_str(data).map_err(|e| e.to_string())?;
        Draft::new(name, text, max_bytes)
    } else {
        Draft::new(name, Compact(data), max_bytes)
    };
    Ok((group, draft.map_err(|e| e.to_string())?, event.key))
}

/// Sends checked events in order; stops at the first the hub cannot take (shut down, broker
/// unreachable), saying which and the ids of those before it. Each is sent once the one before
/// has its id, so their ids are in order; waiting for the broker suspends the request.
async fn send_all(hub: &Hub, drafts: Vec<Outgoing>) -> Result<Vec<EventId>, Refusal> {
    let mut ids = Vec::with_capacity(drafts.len());
    for (index, (group, draft, key)) in drafts.into_iter().enumerate() {
        match hub
            .send_async(group.as_str(), Ok(draft), key.as_deref())
            .await
        {
            Ok(id) => ids.push(id),
            Err(failed) => return Err(Refusal::not_taken(index, &failed, &ids)),
        }
    }
    Ok(ids)
}

/// JSON that serde_json accepted, written without the whitespace between its tokens: one line,
/// as `publish_json!` writes it, with the sender's key order and numbers kept as they were.
struct Compact<'a>(&'a str);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut in_string, mut escaped) = (false, false);
        let mut run_start = 0;
        for (at, c) in self.0.char_indices() {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
            } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
                f.write_str(&self.0[run_start..at])?;
                run_start = at + 1;
            }
        }
        f.write_str(&self.0[run_start..])
    }
}

/// `415` unless the body is declared as JSON.
fn require_json(headers: &HeaderMap) -> Result<(), Refusal> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        ))
    }
}

/// Ids as strings: they are `u64`, which JavaScript numbers cannot all hold.
fn id_strings(ids: &[EventId]) -> Vec<String> {
    ids.iter().map(EventId::to_string).collect()
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A request the endpoint did not (wholly) publish, and the answer that says why.
struct Refusal {
    status: StatusCode,
    body: serde_json::Value,
    www_authenticate: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self::with_body(status, serde_json::json!({ "error": error.into() }))
    }

    fn with_body(status: StatusCode, body: serde_json::Value) -> Self {
        Self {
            status,
            body,
            www_authenticate: None,
        }
    }

    fn unauthorized(challenge: &'static str, error: &str) -> Self {
        Self {
            www_authenticate: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, error)
        }
    }

    /// Event `index` was refused, so none was published.
    fn of_event(index: usize, why: String) -> Self {
        let body = serde_json::json!({ "error": format!("event {index}: {why}"), "index": index });
        Self::with_body(StatusCode::UNPROCESSABLE_ENTITY, body)
    }

    /// The hub could not take event `index`, its group being finished (`409`, for good) or the
    /// hub unavailable (`503`, for now); those before it were published as `ids`.
    fn not_taken(index: usize, failed: &PublishError, ids: &[EventId]) -> Self {
        let error = format!(
            "event {index}: {failed}; the {} before it were published",
            ids.len()
        );
        let body = serde_json::json!({ "error": error, "index": index, "ids": id_strings(ids) });
        let status = match failed {
            PublishError::Finished => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::with_body(status, body)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, answer = %self.body, "publish refused");
        let mut response = json_answer(self.status, self.body);
        if let Some(challenge) = self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl fmt::Debug for PublishEndpoint {
    /// Everything but the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishEndpoint")
            .field("hub", &self.hub)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_events", &self.max_events)
            .finish_non_exhaustive()
    }
}

/// Why a [`PublishEndpoint`] was not made: its token would not keep strangers out, or is missing.
///
/// ```
/// let err = sse::PublishEndpoint::new("").unwrap_err();
/// assert_eq!(err.to_string(), "the publish token is empty: anyone could publish");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty.
    Empty,
    /// The token holds a byte that is not visible ASCII (a space, a control character, or
    /// non-ASCII), which an `Authorization` header cannot carry as it is.
    NotVisibleAscii {
        /// Where, in bytes.
        at: usize,
    },
    /// [`PUBLISH_TOKEN_ENV`] is not set (or not UTF-8).
    NotSet,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Empty => f.write_str("the publish token is empty: anyone could publish"),
            TokenError::NotVisibleAscii { at } => write!(
                f,
                "the publish token holds a byte at {at} that is not visible ASCII \
                 (a bearer token has no spaces or control characters)"
            ),
            TokenError::NotSet => write!(
                f,
                "{PUBLISH_TOKEN_ENV} is not set: the publish endpoint needs a token"
            ),
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::Compact;

    #[test]
    fn compact_drops_whitespace_between_tokens_only() {
        let json = "{ \"a b\" : [1, 2.50 ,\n\t\"x \\\" y\\\\\"] ,\r\n \"c\": {} }";
        assert_eq!(
            Compact(json).to_string(),
            r#"{"a b":[1,2.50,"x \" y\\"],"c":{}}"#
        );
    }
}
