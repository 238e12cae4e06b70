//! One stream, several groups: the bare form returns an array of group names (a `Vec` works
//! too, see `extractors_and_state.rs`).

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// The user's own group and the public feed: one `EventSource` per page.
#[sse::subscribe]
async fn mine_and_feed(headers: HeaderMap) -> Result<[sse::GroupName; 2], Response> {
    let Some(user) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    };
    Ok([sse::GroupName::new(format!("yo.{user}"))?, sse::GroupName::new("yo")?])
}

fn main() {
    let _app: Router = Router::new()
        .route("/events/me", get(mine_and_feed));
}
