//! Group names taken from requests, over real TCP: `Path<sse::GroupName>` checks the name, and
//! a name the rule refuses is a `400` that says why, with no `map_err` in the handler.

use std::net::SocketAddr;

use axum::{
    extract::Path,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sse_tests::{eventually, request, Client};

/// The group is a path segment, checked by its type before the handler runs.
#[sse::subscribe]
async fn by_path(Path(group): Path<sse::GroupName>) -> Result<sse::GroupName, sse::NameError> {
    Ok(group)
}

/// The group is made from a header; the `NameError` is the answer when it breaks the rule.
#[sse::subscribe]
async fn inbox(headers: HeaderMap) -> Result<sse::GroupName, sse::NameError> {
    let user = headers.get("x-user").and_then(|v| v.to_str().ok());
    sse::GroupName::new(format!("inbox.{}", user.unwrap_or_default()))
}

/// With refusals of its own: `?` makes the `NameError` the same response.
#[sse::subscribe]
async fn logged_in_inbox(headers: HeaderMap) -> Result<sse::GroupName, Response> {
    let Some(user) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    };
    let group = sse::GroupName::new(format!("inbox.{user}"))?;
    Ok(group)
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/events/path/{group}", get(by_path))
        .route("/events/inbox", get(inbox))
        .route("/events/logged-in", get(logged_in_inbox));
    sse_tests::serve(app).await
}

/// `GET http://{addr}{path}` with `headers`: the status, the content type and the body.
async fn refusal(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let response = request(&format!("http://{addr}{path}"), headers).await;
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// Opens `path` and checks that an event published to `group` arrives on it.
async fn streams(addr: SocketAddr, path: &str, headers: &[(&str, &str)], group: &str) {
    let mut client = Client::open(&format!("http://{addr}{path}"), headers).await;
    eventually("subscribed", || {
        sse::hub().group_stats(group).subscribers == 1
    })
    .await;
    let id = sse::publish!(group, "yo", "for {group}").unwrap();
    let event = client.next().await.expect("an event");
    assert_eq!(
        (event.id, event.data),
        (id.to_string(), format!("for {group}"))
    );
}

#[tokio::test]
async fn a_group_in_the_path_is_checked_by_its_type() {
    let addr = server().await;
    streams(addr, "/events/path/room.42", &[], "room.42").await;

    let (status, content_type, body) = refusal(addr, "/events/path/room%2042", &[]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "text/plain; charset=utf-8")
    );
    // axum's own words, then the rule's.
    assert_eq!(
        body,
        "Invalid URL: invalid group name \"room 42\": character ' ' at byte 4 is not allowed \
         (allowed: ASCII letters, digits, '-', '_', '.')"
    );
    let too_long = format!("/events/path/{}", "a".repeat(100));
    let (status, _, body) = refusal(addr, &too_long, &[]).await;
    assert_eq!(status, 400);
    assert!(
        body.ends_with("invalid group name: 100 bytes long, at most 99 allowed"),
        "{body}"
    );
}

#[tokio::test]
async fn a_refused_name_is_a_400_that_says_why() {
    let addr = server().await;
    streams(addr, "/events/inbox", &[("x-user", "alice")], "inbox.alice").await;
    let (status, content_type, body) =
        refusal(addr, "/events/inbox", &[("x-user", "al ice")]).await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "text/plain; charset=utf-8")
    );
    assert_eq!(
        body,
        "invalid group name \"inbox.al ice\": character ' ' at byte 8 is not allowed \
         (allowed: ASCII letters, digits, '-', '_', '.')"
    );

    // `?` into `Response` gives the same answer, beside the handler's own refusals.
    streams(addr, "/events/logged-in", &[("x-user", "bob")], "inbox.bob").await;
    let refused = refusal(addr, "/events/logged-in", &[("x-user", "al ice")]).await;
    assert_eq!(refused, (status, content_type, body));
    let (status, _, body) = refusal(addr, "/events/logged-in", &[]).await;
    assert_eq!((status, body.as_str()), (403, "Please login"));
}
