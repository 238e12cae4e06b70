//! What the macros' expansions use. Not public API: it changes without notice.

use std::fmt;

use std::convert::Infallible;

use axum::{extract::FromRequestParts, http::request::Parts, response::IntoResponse};

pub use axum::response::Response;
pub use core::{format_args, future::Future, marker::Send, pin::pin, pin::Pin};
pub use sse_macros::__publish as publish_checked;
#[cfg(feature = "json")]
pub use sse_macros::__publish_json as publish_json_checked;

/// For the hub benchmark: how long the registry's locks were waited for and held.
#[cfg(feature = "lock-timing")]
pub use crate::lock_timing::{lock_totals, LockTotals};

use crate::{hub, EventId, GroupName, Hub, Identity, Join, LastEventId, PublishError};

/// `publish!(group, event, data)`.
pub fn publish(
    group: impl AsRef<str>,
    event: impl AsRef<str>,
    data: impl fmt::Display,
) -> Result<EventId, PublishError> {
    hub().publish(group.as_ref(), Some(event.as_ref()), data)
}

/// `publish!(group, data)`: a `message` event.
pub fn publish_message(
    group: impl AsRef<str>,
    data: impl fmt::Display,
) -> Result<EventId, PublishError> {
    hub().publish(group.as_ref(), None, data)
}

/// `publish_json!(group, event, value)`.
#[cfg(feature = "json")]
pub fn publish_json(
    group: impl AsRef<str>,
    event: impl AsRef<str>,
    value: &(impl serde::Serialize + ?Sized),
) -> Result<EventId, PublishError> {
    hub().publish_json(group.as_ref(), Some(event.as_ref()), value)
}

/// `publish_json!(group, value)`: a `message` event.
#[cfg(feature = "json")]
pub fn publish_json_message(
    group: impl AsRef<str>,
    value: &(impl serde::Serialize + ?Sized),
) -> Result<EventId, PublishError> {
    hub().publish_json(group.as_ref(), None, value)
}

/// What a handler's return value says: stream these groups, or send this response instead.
pub enum Outcome<G> {
    /// Open the stream.
    Stream(G),
    /// Send this instead of a stream.
    Respond(Response),
}

impl<G> Outcome<G> {
    fn map<H>(self, f: impl FnOnce(G) -> H) -> Outcome<H> {
        match self {
            Outcome::Stream(groups) => Outcome::Stream(f(groups)),
            Outcome::Respond(response) => Outcome::Respond(response),
        }
    }

    fn from_result<E: IntoResponse>(result: Result<G, E>) -> Self {
        match result {
            Ok(groups) => Outcome::Stream(groups),
            Err(response) => Outcome::Respond(response.into_response()),
        }
    }
}

/// What a `#[sse::subscribe("group")]` handler may return.
#[diagnostic::on_unimplemented(
    message = "a `#[sse::subscribe(\"group\")]` handler must return `()`, `sse::Identity` or `Result<(), impl IntoResponse>` / `Result<sse::Identity, impl IntoResponse>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "return `Err(response)` to refuse the stream; the bare `#[sse::subscribe]` picks its group by returning `Result<sse::GroupName, Response>`"
)]
pub trait FixedOutput {
    /// `Ok` subscribes, as this user if one is given; `Err` is the response to send instead.
    fn into_outcome(self) -> Outcome<Option<Identity>>;
}

impl FixedOutput for () {
    fn into_outcome(self) -> Outcome<Option<Identity>> {
        Outcome::Stream(None)
    }
}

impl FixedOutput for Identity {
    fn into_outcome(self) -> Outcome<Option<Identity>> {
        Outcome::Stream(Some(self))
    }
}

impl<E: IntoResponse> FixedOutput for Result<(), E> {
    fn into_outcome(self) -> Outcome<Option<Identity>> {
        Outcome::from_result(self.map(|()| None))
    }
}

impl<E: IntoResponse> FixedOutput for Result<Identity, E> {
    fn into_outcome(self) -> Outcome<Option<Identity>> {
        Outcome::from_result(self.map(Some))
    }
}

/// What a bare `#[sse::subscribe]` handler may return.
#[diagnostic::on_unimplemented(
    message = "a bare `#[sse::subscribe]` handler must return `Result<sse::GroupName, impl IntoResponse>` or `Result<sse::Join, impl IntoResponse>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "`Ok(group)` streams that group (or `Ok(vec![..])` several, `Ok(sse::Join::groups(..).user(id))` as a user); `Err(response)` is sent as it is"
)]
pub trait BareOutput {
    /// `Ok` subscribes to these groups; `Err` is the response to send instead.
    fn into_groups(self) -> Outcome<Join>;
}

// One impl per type rather than one for `Into<Join>`, so a wrong type gets the message above.
impl<E: IntoResponse> BareOutput for Result<Join, E> {
    fn into_groups(self) -> Outcome<Join> {
        Outcome::from_result(self)
    }
}

impl<E: IntoResponse> BareOutput for Result<GroupName, E> {
    fn into_groups(self) -> Outcome<Join> {
        Outcome::from_result(self.map(Join::group))
    }
}

impl<E: IntoResponse> BareOutput for Result<Vec<GroupName>, E> {
    fn into_groups(self) -> Outcome<Join> {
        Outcome::from_result(self.map(Join::groups))
    }
}

impl<E: IntoResponse, const N: usize> BareOutput for Result<[GroupName; N], E> {
    fn into_groups(self) -> Outcome<Join> {
        Outcome::from_result(self.map(Join::groups))
    }
}

/// What a `#[sse::subscribe]` handler opens its stream with: the client's `Last-Event-ID`, and
/// the hub a layer put in the request ([`Hub::layer`]), if one did.
pub struct Opening {
    last: LastEventId,
    hub: Option<Hub>,
}

impl<S: Send + Sync> FromRequestParts<S> for Opening {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let last = LastEventId::from_request_parts(parts, state).await?;
        let hub = parts.extensions.get::<Hub>().cloned();
        Ok(Opening { last, hub })
    }
}

/// The end of a `#[sse::subscribe("group", rewind = N)]` handler; `group` was checked at
/// compile time.
pub fn respond_fixed(
    opening: Opening,
    group: &'static str,
    rewind: usize,
    outcome: Outcome<Option<Identity>>,
) -> Response {
    let group = GroupName::from_checked_literal(group);
    respond_bare(
        opening,
        rewind,
        outcome.map(|identity| match identity {
            Some(identity) => Join::group(group).identity(identity),
            None => Join::group(group),
        }),
    )
}

/// The end of a bare `#[sse::subscribe(rewind = N)]` handler: the stream, on the request's hub or
/// else the process-wide one, rewound as the attribute says unless the handler's `Join` says.
pub fn respond_bare(opening: Opening, rewind: usize, outcome: Outcome<Join>) -> Response {
    let Opening { last, hub: own } = opening;
    match outcome {
        Outcome::Stream(join) => own
            .as_ref()
            .unwrap_or_else(|| hub())
            .subscribe(join.rewind_unless_set(rewind), &last)
            .into_response(),
        Outcome::Respond(response) => response,
    }
}
