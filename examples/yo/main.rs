//! The seed's demo in its simplest form: a page that listens for `yo` events, and a form that
//! sends one. Run it with `cargo run --example yo` and open the URL it prints.

use axum::{
    extract::Form,
    http::StatusCode,
    response::{Html, IntoResponse},
    routing::{get, post},
    Router,
};

/// The stream: every `EventSource` on `/events/yo` joins group `yo`.
#[sse::subscribe("yo")]
async fn yo_events() {}

#[derive(serde::Deserialize)]
struct Yo {
    from: String,
    to: String,
}

/// Sending a yo publishes it to everyone listening.
async fn send_yo(Form(yo): Form<Yo>) -> impl IntoResponse {
    match sse::publish!("yo", "yo", "yo from {} to {}", yo.from, yo.to) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route("/", get(page))
        .route("/events/yo", get(yo_events))
        .route("/yo", post(send_yo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000")
        .await
        .expect("127.0.0.1:8000 is free");
    println!("yo demo: open http://127.0.0.1:8000/ (Ctrl-C to stop)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            sse::hub().shutdown();
        })
        .await
        .expect("server runs");
}
