use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

#[derive(Clone)]
struct AppState {
    allowed: bool,
}

/// Doc comments and attributes stay on the handler.
#[sse::subscribe("yo")]
#[allow(clippy::unused_async)]
pub async fn yo_events() {}

#[sse::subscribe("room.lobby")]
pub(crate) async fn lobby(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<(), StatusCode> {
    let _ = (headers, query);
    if state.allowed {
        Ok(())
    } else {
        Err(StatusCode::FORBIDDEN)
    }
}

#[sse::subscribe]
async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<sse::GroupName, Response> {
    if !state.allowed {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    }
    // `?` works as in any fn returning this type (a `NameError` becomes a `400`).
    let group = sse::GroupName::new(format!("room.{room}"))?;
    Ok(group)
}

#[sse::subscribe]
async fn several(headers: HeaderMap) -> Result<Vec<sse::GroupName>, StatusCode> {
    let user = headers.get("x-user").ok_or(StatusCode::FORBIDDEN)?;
    let user = user.to_str().map_err(|_| StatusCode::BAD_REQUEST)?;
    let own = sse::GroupName::new(format!("yo.{user}")).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(vec![own, sse::GroupName::new("yo").unwrap()])
}

fn main() {
    let _app: Router = Router::new()
        .route("/events/yo", get(yo_events))
        .route("/events/lobby", get(lobby))
        .route("/events/room/{room}", get(room))
        .route("/events/mine", get(several))
        .with_state(AppState { allowed: true });
}
