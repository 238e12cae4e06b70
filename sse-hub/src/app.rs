//! The hub's routes: streams authorized by tokens, publishing, metrics and health.

use axum::{
    extract::{Path, RawQuery},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tower_http::cors::CorsLayer;

use crate::settings::Settings;

/// The routes, on the process-wide hub.
pub(crate) fn router(settings: Settings) -> Router {
    let mut app = Router::new()
        .route("/events", get(events))
        .route("/events/{group}", get(group_events))
        .route("/publish", settings.publish.into_method_router())
        .route("/metrics", get(sse::metrics))
        .route("/health", get(health))
        .layer(settings.keys.layer());
    if !settings.cors.is_empty() {
        app = app.layer(CorsLayer::new().allow_origin(settings.cors));
    }
    app
}

/// `GET /events?group=a&group=b`: those groups, if the token allows each; without `group`,
/// every group the token names.
#[sse::subscribe]
async fn events(token: sse::Token, RawQuery(query): RawQuery) -> Result<sse::Join, Response> {
    let asked: Vec<_> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "group")
        .map(|(_, name)| sse::GroupName::new(name.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|bad| (StatusCode::BAD_REQUEST, bad.to_string()).into_response())?;
    let groups = match asked.is_empty() {
        true => token.named_groups(),
        false => asked,
    };
    token.join(groups).map_err(IntoResponse::into_response)
}

/// `GET /events/{group}`: that group, if the token allows it.
#[sse::subscribe]
async fn group_events(
    token: sse::Token,
    Path(group): Path<sse::GroupName>,
) -> Result<sse::Join, sse::TokenRefused> {
    token.join([group])
}

/// `GET /health`: `200 ok` while the hub runs.
async fn health() -> &'static str {
    "ok"
}
