//! Server-Sent Events pub/sub for axum, in one line.
//!
//! Mark an axum handler with [`#[sse::subscribe("group")]`](subscribe) and it becomes an SSE
//! endpoint whose clients listen to that group. Anywhere else in the program, sync or async,
//! [`sse::publish!("group", "event", "data")`](publish) sends an event to every one of them.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[sse::subscribe("yo")]
//! async fn yo_events() {}
//!
//! # #[tokio::main] async fn main() {
//! let app = Router::new().route("/events/yo", get(yo_events));
//! // elsewhere, e.g. in another handler or a background thread:
//! sse::publish!("yo", "yo", "yo from {} to {}", "alice", "bob").unwrap();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await.unwrap();
//! sse::serve(listener, app).await.unwrap(); // or axum::serve: streams cost more there
//! # }
//! ```
//!
//! In the browser:
//!
//! ```js
//! new EventSource("/events/yo").addEventListener("yo", (e) => console.log(e.data));
//! ```
//!
//! Each group keeps a short history, so a browser that reconnects with `Last-Event-ID` gets
//! what it missed. Several processes (behind a load balancer, or workers that only publish)
//! share their groups, ids and history through Redis: feature `redis`, then
//! `SSE_BROKER_URL=redis://127.0.0.1:6379/0` or [`Config::broker`]. Programs in other languages
//! (a Django or Celery worker, `curl`) publish over HTTP through a `PublishEndpoint` mounted on
//! your router (feature `publish-endpoint`, on by default). A stream may carry who opened it
//! ([`Join`], [`Identity`]): [`Hub::presence`] lists who is connected to a group, with
//! join and leave events if you like, [`Config::on_open`] and [`Config::on_close`] run your code
//! as streams come and go, and [`Hub::close_user`] ends a user's streams everywhere. A group
//! can be finished ([`Hub::finish`], [`finish!`]): its streams get a last event and end, as an
//! AI app's answer streamed as a group of its own would. See the
//! README for the guarantees, the wire format, the settings, "More than one process",
//! "Publishing from other languages", "Presence, hooks and closing streams" and "Streams that
//! finish".
//!
//! # Errors
//!
//! An error says what went wrong at its own level and gives the error beneath it, if any, as
//! its [`source()`](std::error::Error::source), never in its message as well: a
//! [`BrokerError`] says "cannot reach Redis at redis://…", its source says why. Print the chain
//! to see it all (anyhow's `{:#}`, tracing's `error = &err as &dyn std::error::Error`, or a loop
//! over `source()`). A variant that only passes another error on *is* that error, like
//! thiserror's `#[error(transparent)]`: [`PublishError::InvalidGroup`] has the [`NameError`]'s
//! message, [`PublishError::Broker`] and [`InitError::Broker`] the [`BrokerError`]'s message and
//! source.
//!
//! ```
//! # #[cfg(feature = "json")] {
//! use std::error::Error;
//!
//! let mut tuple_keys = std::collections::BTreeMap::new();
//! tuple_keys.insert((1, 2), "JSON keys are strings");
//! let err = sse::publish_json!("yo", "yo", &tuple_keys).unwrap_err();
//! assert_eq!(err.to_string(), "event data could not be written as JSON");
//! assert_eq!(err.source().unwrap().to_string(), "key must be a string");
//! # }
//! ```

// The two exceptions, with the reasons they are sound, are the registry's arena and the writer
// threads' wakers.
#![deny(unsafe_code)]
// Without every engine shared by processes, part of what such engines call has no caller (the
// sink, shared histories and their errors' sources without any; the relay's pieces without
// Postgres). Clippy, run with all features, finds what nothing calls.
#![cfg_attr(
    not(all(feature = "redis", feature = "postgres")),
    allow(dead_code, unused_variables)
)]

mod axum;
mod config;
mod cursor;
mod engine;
mod error;
mod event;
mod group;
mod hooks;
mod hub;
mod idempotency;
mod identity;
mod lock_timing;
mod one_or_many;
mod pacer;
#[cfg(feature = "postgres")]
pub mod postgres;
mod presence;
#[cfg(feature = "publish-endpoint")]
mod publish_endpoint;
mod registration;
mod registry;
mod resume;
mod serve;
mod stats;
mod subscription;
#[cfg(feature = "tokens")]
mod token;
#[cfg(feature = "webhooks")]
mod webhooks;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The README's Rust snippets, compiled and run as doctests so the guide cannot drift from the
/// API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub use crate::axum::metrics;
pub use config::{Config, Keep, BROKER_URL_ENV};
pub use error::{BrokerError, PublishError, SubscribeError};
pub use event::{
    EventId, EventName, CLOSED_ID, STREAM_CLOSED, STREAM_END, STREAM_RESET, STREAM_START,
};
pub use group::GroupName;
pub use hooks::{CloseReason, StreamInfo};
pub use hub::{hub, init, Hub, Idempotent, InitError};
pub use identity::{Identity, Join};
pub use presence::{Present, PRESENCE_JOIN, PRESENCE_LEAVE};
#[cfg(feature = "publish-endpoint")]
pub use publish_endpoint::{PublishEndpoint, TokenError, PUBLISH_TOKEN_ENV};
pub use resume::LastEventId;
pub use serve::{bind, serve, Serve, LISTEN_BACKLOG};
pub use sse_macros::subscribe;
pub use sse_names::NameError;
pub use stats::{GroupStats, Stats};
pub use subscription::Subscription;
#[cfg(feature = "tokens")]
pub use token::{Token, TokenKey, TokenKeyError, TokenKeys, TokenRefused, TOKEN_COOKIE};
#[cfg(feature = "webhooks")]
pub use webhooks::{
    WebhookError, WebhookStats, Webhooks, WEBHOOK_DELIVERY, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};

/// Sends an event to every subscriber of a group, from sync or async code, on any thread.
///
/// ```
/// # let (from, to) = ("alice", "bob");
/// // group, event, data
/// sse::publish!("yo", "yo", "yo from alice to bob")?;
/// // group, event, format string and its arguments
/// sse::publish!("yo", "yo", "yo from {} to {}", from, to)?;
/// sse::publish!("yo", "yo", "yo from {from} to {to}")?;
/// // group, data: a `message` event (`EventSource.onmessage`)
/// sse::publish!("yo", "plain message")?;
/// // group and event may be values checked at run time: &str, String, GroupName, EventName
/// let group = sse::GroupName::new(format!("yo.{to}"))?;
/// let id = sse::publish!(group, String::from("yo"), "just for bob")?;
/// println!("sent event {id}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It returns the event's [`EventId`], or a [`PublishError`] saying why nothing was sent.
/// Literal group and event names are checked when the program compiles:
///
/// ```compile_fail
/// sse::publish!("yo yo", "yo", "spaces are not allowed in group names");
/// ```
///
/// ```compile_fail
/// sse::publish!("yo", "yo\n", "event names cannot hold a line break");
/// ```
///
/// A format string in the event name's place is taken for what it is, a mistake in the order of
/// the arguments (a literal event name cannot hold `{` or `}`; a value can):
///
/// ```compile_fail
/// # let n = 1;
/// sse::publish!("yo", "x = {}", n); // write sse::publish!("yo", "event", "x = {}", n)
/// ```
#[macro_export]
macro_rules! publish {
    ($($args:tt)*) => {
        $crate::__private::publish_checked!($crate, $($args)*)
    };
}

/// Sends a [`serde::Serialize`] value as JSON: `publish_json!(group, event, &value)`, or
/// `publish_json!(group, &value)` for a `message` event. Like [`publish!`] otherwise: no
/// `.await`, any thread, literal names checked when the program compiles. (Feature `json`, on
/// by default.)
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Yo<'a> { id: u64, from: &'a str, to: &'a str }
///
/// let yo = Yo { id: 1, from: "alice", to: "bob" };
/// sse::publish_json!("yo.bob", "yo", &yo)?;         // data: {"id":1,"from":"alice","to":"bob"}
/// sse::publish_json!("yo", &["a", "list"])?;       // a `message` event
/// let group = format!("yo.{}", yo.to);
/// sse::publish_json!(group, "yo", &yo)?;           // runtime names are checked at run time
/// # Ok::<(), sse::PublishError>(())
/// ```
///
/// In the browser: `source.addEventListener("yo", (e) => show(JSON.parse(e.data)))`.
/// A value `serde_json` cannot write (a map with non-string keys) is
/// [`PublishError::Json`]; nothing is sent then.
///
/// ```compile_fail
/// sse::publish_json!("yo yo", "yo", &1);
/// ```
///
/// ```compile_fail
/// sse::publish_json!("yo", "x = {}", &1); // no format string: the event name goes there
/// ```
#[cfg(feature = "json")]
#[macro_export]
macro_rules! publish_json {
    ($($args:tt)*) => {
        $crate::__private::publish_json_checked!($crate, $($args)*)
    };
}

/// Ends a group on the process-wide hub, from sync or async code, on any thread: publishes
/// its [`stream-end`](STREAM_END) event, after which its streams end and it takes no more
/// events. [`Hub::finish`] on [`sse::hub()`](hub); see there what streams and reconnecting
/// clients get. Returns the end's [`EventId`], or a [`PublishError`]
/// ([`PublishError::Finished`] when the group ended already).
///
/// ```
/// # let id = 17;
/// sse::publish!("answer.16", "token", "Hello")?;
/// sse::finish!("answer.16")?;
/// assert!(matches!(sse::publish!("answer.16", "token", "late"), Err(sse::PublishError::Finished)));
/// sse::finish!(format!("answer.{id}"))?; // a group name made at run time
/// # Ok::<(), sse::PublishError>(())
/// ```
///
/// A literal group name is checked when the program compiles:
///
/// ```compile_fail
/// sse::finish!("answer 16");
/// ```
#[macro_export]
macro_rules! finish {
    // One token (a literal, a variable) reaches the checks of `publish!` as it is written.
    ($group:tt $(,)?) => {
        $crate::__private::publish_checked!($crate, $group, "stream-end", "")
    };
    ($group:expr $(,)?) => {
        $crate::hub().finish(::core::convert::AsRef::<str>::as_ref(&$group))
    };
}
