//! The Python package in `clients/python`, tested by its own pytest suite against a real server,
//! under `sse::serve` and under `axum::serve`: publishing (sync, asyncio, keys, refusals),
//! tokens it signs opening streams, and its Django helpers. Needs `python3` with pytest and
//! Django (`scripts/test` installs Debian's); `SSE_PYTHON` names another interpreter.

use std::process::Stdio;

use axum::{extract::Path, routing::get, Router};
use sse_tests::within;

const PUBLISH_TOKEN: &str = "python-publish-token-0123456789";
const TOKEN_SECRET: &str = "python-token-secret-of-32-bytes-or-more";

#[sse::subscribe]
async fn group_events(
    token: sse::Token,
    Path(group): Path<sse::GroupName>,
) -> Result<sse::Join, sse::TokenRefused> {
    token.join([group])
}

async fn the_pytest_suite_passes(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256(TOKEN_SECRET).unwrap());
    let app = Router::new()
        .route("/events/{group}", get(group_events))
        .route(
            "/publish",
            sse::PublishEndpoint::new(PUBLISH_TOKEN)
                .unwrap()
                .into_method_router(),
        )
        .layer(keys.layer())
        .layer(hub.layer());
    let addr = match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    };
    let python = std::env::var("SSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python/tests");
    let child = tokio::process::Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", tests])
        .env("SSE_TEST_EVENTS_URL", format!("http://{addr}/events/"))
        .env("SSE_PUBLISH_URL", format!("http://{addr}/publish"))
        .env("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN)
        .env("SSE_TOKEN_SECRET", TOKEN_SECRET)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let out = within(child.wait_with_output()).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "pytest failed:\n{stdout}\n{stderr}");
    // Every test ran: none was skipped for want of pytest's or Django's parts.
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{summary}"
    );
}

#[tokio::test]
async fn the_pytest_suite_passes_under_sse_serve() {
    the_pytest_suite_passes(false).await;
}

#[tokio::test]
async fn the_pytest_suite_passes_under_axum_serve() {
    the_pytest_suite_passes(true).await;
}
