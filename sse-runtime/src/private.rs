//! What the macros' expansions use. Not public API: it changes without notice.

use std::fmt;

use axum::response::IntoResponse;

pub use axum::response::Response;
pub use core::{format_args, future::Future, marker::Send, pin::pin, pin::Pin};
pub use sse_macros::__publish as publish_checked;
#[cfg(feature = "json")]
pub use sse_macros::__publish_json as publish_json_checked;

/// For the hub benchmark: how long the registry's locks were waited for and held.
#[cfg(feature = "lock-timing")]
pub use crate::lock_timing::{lock_totals, LockTotals};
pub use crate::LastEventId;

use crate::{hub, EventId, GroupName, PublishError};

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
    fn from_result<E: IntoResponse>(result: Result<G, E>) -> Self {
        match result {
            Ok(groups) => Outcome::Stream(groups),
            Err(response) => Outcome::Respond(response.into_response()),
        }
    }
}

/// What a `#[sse::subscribe("group")]` handler may return.
#[diagnostic::on_unimplemented(
    message = "a `#[sse::subscribe(\"group\")]` handler must return `()` or `Result<(), impl IntoResponse>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "return `Err(response)` to refuse the stream; the bare `#[sse::subscribe]` picks its group by returning `Result<sse::GroupName, Response>`"
)]
pub trait FixedOutput {
    /// `Ok` subscribes; `Err` is the response to send instead.
    fn into_outcome(self) -> Outcome<()>;
}

impl FixedOutput for () {
    fn into_outcome(self) -> Outcome<()> {
        Outcome::Stream(())
    }
}

impl<E: IntoResponse> FixedOutput for Result<(), E> {
    fn into_outcome(self) -> Outcome<()> {
        Outcome::from_result(self)
    }
}

/// What a bare `#[sse::subscribe]` handler may return.
#[diagnostic::on_unimplemented(
    message = "a bare `#[sse::subscribe]` handler must return `Result<sse::GroupName, impl IntoResponse>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "`Ok(group)` streams that group (or `Ok(vec![..])` several); `Err(response)` is sent as it is"
)]
pub trait BareOutput {
    /// `Ok` subscribes to these groups; `Err` is the response to send instead.
    fn into_groups(self) -> Outcome<Vec<GroupName>>;
}

impl<E: IntoResponse> BareOutput for Result<GroupName, E> {
    fn into_groups(self) -> Outcome<Vec<GroupName>> {
        Outcome::from_result(self.map(|group| vec![group]))
    }
}

impl<E: IntoResponse> BareOutput for Result<Vec<GroupName>, E> {
    fn into_groups(self) -> Outcome<Vec<GroupName>> {
        Outcome::from_result(self)
    }
}

impl<E: IntoResponse, const N: usize> BareOutput for Result<[GroupName; N], E> {
    fn into_groups(self) -> Outcome<Vec<GroupName>> {
        Outcome::from_result(self.map(Vec::from))
    }
}

/// The end of a `#[sse::subscribe("group")]` handler; `group` was checked at compile time.
pub fn respond_fixed(last: LastEventId, group: &'static str, outcome: Outcome<()>) -> Response {
    match outcome {
        Outcome::Stream(()) => hub().stream([GroupName::from_checked_literal(group)], &last),
        Outcome::Respond(response) => response,
    }
}

/// The end of a bare `#[sse::subscribe]` handler.
pub fn respond_bare(last: LastEventId, outcome: Outcome<Vec<GroupName>>) -> Response {
    match outcome {
        Outcome::Stream(groups) => hub().stream(groups, &last),
        Outcome::Respond(response) => response,
    }
}
