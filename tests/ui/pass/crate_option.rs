// `crate = "..."` points the expansion at the `sse` crate under another path.
mod renamed {
    pub use sse as events;
}

#[sse::subscribe("yo", crate = "crate::renamed::events")]
async fn yo_events() {}

#[sse::subscribe(crate = "::sse")]
async fn mine() -> Result<sse::GroupName, axum::http::StatusCode> {
    sse::GroupName::new("yo").map_err(|_| axum::http::StatusCode::BAD_REQUEST)
}

fn main() {
    let _app: axum::Router = axum::Router::new()
        .route("/a", axum::routing::get(yo_events))
        .route("/b", axum::routing::get(mine));
}
