//! Procedural macros of `sse`. Use them through the `sse` crate: `#[sse::subscribe]` and
//! `sse::publish!`; this crate's items are not meant to be named directly.

mod attr;
mod expand;
mod names;
mod publish;

use proc_macro::TokenStream;

/// Turns an async axum handler into a Server-Sent Events endpoint.
///
/// `#[sse::subscribe("group")]` streams that group; the handler may take any axum extractors and
/// return `()` or `Result<(), impl IntoResponse>` (`Err` is sent instead of the stream).
///
/// Bare `#[sse::subscribe]` lets the handler choose: it returns
/// `Result<sse::GroupName, impl IntoResponse>` (or `Result<Vec<sse::GroupName>, _>` for several
/// groups on one stream); `Ok` streams, `Err` is sent as it is.
///
/// The stream opens on the hub a `Hub::layer` put in the request, else on the process-wide hub.
///
/// Options:
/// - `rewind = N`: a client without `Last-Event-ID` first gets the last `N` events of each of
///   its groups (`#[sse::subscribe("ticker", rewind = 1)]`: the current price at once); a
///   handler's own `Join::rewind` wins.
/// - `crate = "path"` names the `sse` crate when it was renamed in `Cargo.toml`.
#[proc_macro_attribute]
pub fn subscribe(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::subscribe(args.into(), item.into()).into()
}

/// The checking half of `sse::publish!`, which calls it with its own `$crate` first.
#[doc(hidden)]
#[proc_macro]
pub fn __publish(input: TokenStream) -> TokenStream {
    publish::expand(input.into()).into()
}

/// The checking half of `sse::publish_json!`, which calls it with its own `$crate` first.
#[doc(hidden)]
#[proc_macro]
pub fn __publish_json(input: TokenStream) -> TokenStream {
    publish::expand_json(input.into()).into()
}
