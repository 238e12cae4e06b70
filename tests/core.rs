//! The core promise over real TCP: `#[sse::subscribe]` endpoints, `sse::publish!`, the wire
//! format as an independent parser reads it.

use std::{net::SocketAddr, sync::Once, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sse_tests::{eventually, raw_get, read_until, request, Client};

#[sse::subscribe("yo")]
async fn yo_events() {}

#[sse::subscribe]
async fn yo_for_user_events(headers: HeaderMap) -> Result<sse::GroupName, Response> {
    let Some(user) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    };
    sse::GroupName::new(format!("yo.{user}"))
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

#[derive(Clone)]
struct Gate {
    open: bool,
}

/// The fixed form with `State` that may refuse before subscribing.
#[sse::subscribe("gated")]
async fn gated_events(State(gate): State<Gate>) -> Result<(), (StatusCode, &'static str)> {
    if gate.open {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "gate closed"))
    }
}

#[sse::subscribe]
async fn any_group(
    axum::extract::Path(group): axum::extract::Path<String>,
) -> Result<sse::GroupName, Response> {
    sse::GroupName::new(group).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

const KEEP_ALIVE: Duration = Duration::from_millis(200);

async fn server(gate_open: bool) -> SocketAddr {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        sse::init(sse::Config::default().keep_alive(Some(KEEP_ALIVE))).unwrap();
    });
    let gated = Router::new()
        .route("/events/gated", get(gated_events))
        .with_state(Gate { open: gate_open });
    let app = Router::new()
        .route("/events/yo", get(yo_events))
        .route("/events/me", get(yo_for_user_events))
        .route("/events/g/{group}", get(any_group))
        .merge(gated);
    sse_tests::serve(app).await
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[tokio::test]
async fn a_subscribed_get_is_an_open_event_stream() {
    let addr = server(true).await;
    let mut client = Client::open(&url(addr, "/events/yo"), &[]).await;
    let headers = &client.response_headers;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");

    eventually("subscribed", || {
        sse::hub().group_stats("yo").subscribers >= 1
    })
    .await;
    let (from, to) = ("a", "b");
    let id = sse::publish!("yo", "yo", "yo from {} to {}", from, to).unwrap();
    let event = client.next().await.expect("an event");
    assert_eq!(event.event, "yo");
    assert_eq!(event.data, "yo from a to b");
    assert_eq!(event.id, id.to_string());
}

#[tokio::test]
async fn data_round_trips_exactly() {
    let addr = server(true).await;
    let mut client = Client::open(&url(addr, "/events/g/roundtrip"), &[]).await;
    eventually("subscribed", || {
        sse::hub().group_stats("roundtrip").subscribers == 1
    })
    .await;
    let cases = [
        ("line one\nline two", "line one\nline two"),
        ("crlf\r\nbreak", "crlf\nbreak"),
        ("cr\ronly", "cr\nonly"),
        ("", ""),
        ("\n", "\n"),
        ("trailing\n", "trailing\n"),
        ("  leading spaces", "  leading spaces"),
        ("ünïcödé ✓ 🎉 日本語", "ünïcödé ✓ 🎉 日本語"),
        (
            "data: not a field\nid: 0\n\nevent: forged",
            "data: not a field\nid: 0\n\nevent: forged",
        ),
    ];
    for (sent, _) in &cases {
        sse::publish!("roundtrip", "case", sent).unwrap();
    }
    // The message form: no event name.
    sse::publish!("roundtrip", "plain message").unwrap();
    for (_, expected) in &cases {
        let event = client.next().await.unwrap();
        assert_eq!(event.event, "case");
        assert_eq!(&event.data, expected);
    }
    let message = client.next().await.unwrap();
    assert_eq!(message.event, "message");
    assert_eq!(message.data, "plain message");
}

#[tokio::test]
async fn exact_wire_bytes() {
    let addr = server(true).await;
    let mut tcp = raw_get(addr, "/events/g/wire", "").await;
    let opening = "retry: 3000\n\nevent: stream-start\ndata: \nid: ";
    let mut head = read_until(&mut tcp, opening).await;
    if !head.ends_with("\n\n") {
        head += &read_until(&mut tcp, "\n\n").await;
    }
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    // Where the stream starts: the group's last id, before any event.
    let (head, start) = head.split_once(opening).unwrap();
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    let start: u64 = start.trim_end().parse().unwrap();
    eventually("subscribed", || {
        sse::hub().group_stats("wire").subscribers == 1
    })
    .await;
    let id = sse::publish!("wire", "yo", "a\r\nb").unwrap();
    assert_eq!(id.get(), start + 1, "the group's next id");
    let empty = sse::publish!("wire", "").unwrap();
    let expected = format!("event: yo\ndata: a\ndata: b\nid: {id}\n\ndata: \nid: {empty}\n\n");
    let body = read_until(&mut tcp, &format!("id: {empty}\n\n")).await;
    assert!(body.ends_with(&expected), "{body:?}");
    // Nothing published: a comment keeps the stream alive.
    let body = read_until(&mut tcp, ":\n\n").await;
    assert_eq!(body, ":\n\n");
}

#[tokio::test]
async fn hundred_subscribers_get_every_event_in_order() {
    let addr = server(true).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::open(&url(addr, "/events/g/hundred"), &[]).await);
    }
    eventually("all subscribed", || {
        sse::hub().group_stats("hundred").subscribers == 100
    })
    .await;
    let ids: Vec<String> = (0..200)
        .map(|i| sse::publish!("hundred", "n", "{i}").unwrap().to_string())
        .collect();
    let readers = clients.into_iter().map(|mut client| {
        tokio::spawn(async move {
            client
                .take(200)
                .await
                .into_iter()
                .map(|e| (e.id, e.data))
                .collect::<Vec<_>>()
        })
    });
    let expected: Vec<(String, String)> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i.to_string()))
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
}

#[tokio::test]
async fn groups_are_isolated() {
    let addr = server(true).await;
    let mut a = Client::open(&url(addr, "/events/g/iso-a"), &[]).await;
    let mut b = Client::open(&url(addr, "/events/g/iso-b"), &[]).await;
    eventually("subscribed", || {
        sse::hub().group_stats("iso-a").subscribers == 1
            && sse::hub().group_stats("iso-b").subscribers == 1
    })
    .await;
    sse::publish!("iso-a", "x", "for a").unwrap();
    sse::publish!("iso-b", "x", "for b").unwrap();
    sse::publish!("iso-a", "x", "for a again").unwrap();
    let got_a: Vec<String> = a.take(2).await.into_iter().map(|e| e.data).collect();
    let got_b: Vec<String> = b.take(1).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got_a, ["for a", "for a again"]);
    assert_eq!(got_b, ["for b"]);
}

#[tokio::test]
async fn bare_form_picks_the_group_or_answers_itself() {
    let addr = server(true).await;
    let refused = request(&url(addr, "/events/me"), &[]).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(refused.text().await.unwrap(), "Please login");

    let bad = request(&url(addr, "/events/me"), &[("x-user", "a b")]).await;
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("invalid group name \"yo.a b\""));

    let mut alice = Client::open(&url(addr, "/events/me"), &[("x-user", "alice")]).await;
    eventually("subscribed", || {
        sse::hub().group_stats("yo.alice").subscribers == 1
    })
    .await;
    sse::publish!("yo.bob", "yo", "not for alice").unwrap();
    sse::publish!(format!("yo.{}", "alice"), "yo", "for alice").unwrap();
    assert_eq!(alice.next().await.unwrap().data, "for alice");
}

#[tokio::test]
async fn fixed_form_may_refuse_with_state() {
    let closed = server(false).await;
    let refused = request(&url(closed, "/events/gated"), &[]).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.text().await.unwrap(), "gate closed");
    assert_eq!(sse::hub().group_stats("gated").subscribers, 0);

    let open = server(true).await;
    let mut client = Client::open(&url(open, "/events/gated"), &[]).await;
    eventually("subscribed", || {
        sse::hub().group_stats("gated").subscribers == 1
    })
    .await;
    sse::publish!("gated", "ok").unwrap();
    assert_eq!(client.next().await.unwrap().data, "ok");
}

#[tokio::test]
async fn publish_from_a_plain_thread() {
    let addr = server(true).await;
    let mut client = Client::open(&url(addr, "/events/g/from-thread"), &[]).await;
    eventually("subscribed", || {
        sse::hub().group_stats("from-thread").subscribers == 1
    })
    .await;
    let ids = std::thread::spawn(|| {
        (0..3)
            .map(|i| sse::publish!("from-thread", "tick", "tick {i}").unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let events = client.take(3).await;
    for (i, (event, id)) in events.iter().zip(&ids).enumerate() {
        assert_eq!(event.data, format!("tick {i}"));
        assert_eq!(event.id, id.to_string());
    }
}

#[tokio::test]
async fn closed_clients_are_unsubscribed() {
    let addr = server(true).await;
    let leaving = url(addr, "/events/g/leaving");
    let clients: Vec<Client> =
        futures_util::future::join_all((0..10).map(|_| Client::open(&leaving, &[]))).await;
    eventually("subscribed", || {
        sse::hub().group_stats("leaving").subscribers == 10
    })
    .await;
    drop(clients);
    eventually("unsubscribed", || {
        sse::hub().group_stats("leaving").subscribers == 0
    })
    .await;
    // Publishing to the now empty group still works and reaches nobody.
    assert!(sse::publish!("leaving", "anyone?").is_ok());
}

#[tokio::test]
async fn a_group_whose_last_subscriber_left_is_freed() {
    // A hub that keeps no history frees a group as soon as nobody listens.
    let hub = sse::Hub::new(sse::Config::default().history(0, Duration::ZERO));
    let addr = sse_tests::serve_hub(&hub, "own").await;
    let client = Client::open(&url(addr, "/"), &[]).await;
    eventually("subscribed", || hub.group_stats("own").subscribers == 1).await;
    assert_eq!(hub.stats().groups, 1);
    assert_eq!(hub.stats().open_streams, 1);
    drop(client);
    eventually("freed", || {
        hub.stats().groups == 0 && hub.stats().open_streams == 0
    })
    .await;
}

#[tokio::test]
async fn only_get_opens_a_stream() {
    let addr = server(true).await;
    let response = sse_tests::http_client()
        .post(url(addr, "/events/yo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn runtime_names_are_checked_and_errors_say_why() {
    let err = sse::publish!(String::from("yo yo"), "yo", "x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid group name \"yo yo\": character ' ' at byte 2 is not allowed \
         (allowed: ASCII letters, digits, '-', '_', '.')"
    );
    let err = sse::publish!("yo", String::from("yo\r\nid: 1"), "x").unwrap_err();
    assert!(matches!(err, sse::PublishError::InvalidEvent(_)), "{err:?}");
    let group = sse::GroupName::new("yo").unwrap();
    let event = sse::EventName::new("yo").unwrap();
    assert!(sse::publish!(&group, event.as_str(), "typed names").is_ok());
    assert!(sse::publish!(group, "x".repeat(1 << 21)).is_err());
}
