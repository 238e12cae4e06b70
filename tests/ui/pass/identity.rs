//! Streams that say who opened them: the bare form returns an `sse::Join`, the fixed form an
//! `sse::Identity`, plainly or in a `Result`.

use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

#[sse::subscribe]
async fn as_user(Path(user): Path<String>) -> Result<sse::Join, Response> {
    if user.is_empty() {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    }
    let groups = [sse::GroupName::new(format!("yo.{user}"))?, sse::GroupName::new("yo")?];
    Ok(sse::Join::groups(groups).identity(sse::Identity::new(user).with_meta("{}")))
}

#[sse::subscribe("lobby")]
async fn lobby(Path(user): Path<String>) -> sse::Identity {
    sse::Identity::new(user)
}

#[sse::subscribe("lobby")]
async fn lobby_checked(Path(user): Path<String>) -> Result<sse::Identity, StatusCode> {
    match user.as_str() {
        "" => Err(StatusCode::FORBIDDEN),
        _ => Ok(sse::Identity::new(user)),
    }
}

fn main() {
    let _app: Router = Router::new()
        .route("/events/{user}", get(as_user))
        .route("/lobby/{user}", get(lobby))
        .route("/lobby-checked/{user}", get(lobby_checked));
}
