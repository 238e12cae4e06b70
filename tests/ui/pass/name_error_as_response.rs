//! A name the rule refuses is a response (`400` and why), so a bare handler may return
//! `sse::NameError` as its error; `Path<sse::GroupName>` checks a name from the URL.
//! (`?` into a `Response`: `several_groups.rs`.)

use axum::{extract::Path, http::HeaderMap, routing::get, Router};

#[sse::subscribe]
async fn own(headers: HeaderMap) -> Result<sse::GroupName, sse::NameError> {
    let user = headers.get("x-user").and_then(|v| v.to_str().ok());
    sse::GroupName::new(format!("yo.{}", user.unwrap_or_default()))
}

#[sse::subscribe]
async fn room(Path(room): Path<sse::GroupName>) -> Result<sse::GroupName, sse::NameError> {
    Ok(room)
}

fn main() {
    let _app: Router = Router::new()
        .route("/events/own", get(own))
        .route("/events/room/{room}", get(room));
}
