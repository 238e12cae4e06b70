//! `sse::publish_json!`: any `serde::Serialize` value, sent as JSON data, read back exactly by an
//! independent SSE parser and `serde_json`, line breaks inside strings included.

use std::collections::BTreeMap;

use axum::{extract::Path, http::StatusCode, routing::get, Router};
use serde::{Deserialize, Serialize};
use sse_tests::{eventually, Client};

#[sse::subscribe]
async fn group_events(Path(group): Path<String>) -> Result<sse::GroupName, StatusCode> {
    sse::GroupName::new(group).map_err(|_| StatusCode::BAD_REQUEST)
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Note {
    id: u64,
    from: String,
    text: String,
    tags: Vec<String>,
    reply_to: Option<u64>,
}

async fn open(group: &str) -> Client {
    let app = Router::new().route("/events/{group}", get(group_events));
    let addr = sse_tests::serve(app).await;
    let client = Client::open(&format!("http://{addr}/events/{group}"), &[]).await;
    eventually("subscribed", || {
        sse::hub().group_stats(group).subscribers == 1
    })
    .await;
    client
}

#[tokio::test]
async fn values_round_trip_line_breaks_included() {
    let mut client = open("json-roundtrip").await;
    let note = Note {
        id: 7,
        from: "alice".into(),
        text: "line one\nline two\r\nline three\rend\n\ndata: not a field\nid: 0".into(),
        tags: vec!["ünïcödé ✓".into(), "🎉".into(), String::new()],
        reply_to: None,
    };
    let id = sse::publish_json!("json-roundtrip", "note", &note).unwrap();
    let event = client.next().await.unwrap();
    assert_eq!(event.event, "note");
    assert_eq!(event.id, id.to_string());
    assert!(!event.data.contains('\n'), "compact JSON is one line");
    assert_eq!(serde_json::from_str::<Note>(&event.data).unwrap(), note);
}

#[tokio::test]
async fn the_message_form_and_plain_values() {
    let mut client = open("json-message").await;
    let mut map = BTreeMap::new();
    map.insert("b", 2);
    map.insert("a", 1);
    sse::publish_json!("json-message", &map).unwrap();
    sse::publish_json!("json-message", "text", "a string\nwith a break").unwrap();
    let group = String::from("json-message");
    sse::publish_json!(group, String::from("list"), &[1.5, -2.0]).unwrap();

    let event = client.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", r#"{"a":1,"b":2}"#)
    );
    let event = client.next().await.unwrap();
    assert_eq!(event.event, "text");
    assert_eq!(
        serde_json::from_str::<String>(&event.data).unwrap(),
        "a string\nwith a break"
    );
    let event = client.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("list", "[1.5,-2.0]")
    );
}

#[tokio::test]
async fn a_value_json_cannot_hold_is_an_error_and_sends_nothing() {
    let mut client = open("json-refused").await;
    let mut tuple_keys = BTreeMap::new();
    tuple_keys.insert((1, 2), "JSON keys are strings");
    let err = sse::publish_json!("json-refused", "bad", &tuple_keys).unwrap_err();
    assert!(matches!(err, sse::PublishError::Json(_)), "{err:?}");
    // What failed, then why, each said once.
    assert_eq!(err.to_string(), "event data could not be written as JSON");
    let why = std::error::Error::source(&err).expect("serde_json's error");
    assert_eq!(why.to_string(), "key must be a string");
    let err = sse::publish_json!("json-refused", String::from("bad\nname"), &1).unwrap_err();
    assert!(matches!(err, sse::PublishError::InvalidEvent(_)), "{err:?}");

    sse::publish_json!("json-refused", "good", &"after the refusals").unwrap();
    let event = client.next().await.unwrap();
    assert_eq!(event.event, "good", "the refused events were not sent");
}
