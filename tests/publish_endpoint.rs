//! `sse::PublishEndpoint` over real TCP, under `sse::serve` and `axum::serve`: events POSTed as
//! JSON arrive on streams with the ids the answer gave; a wrong token, an oversized body or batch,
//! malformed JSON, and a batch with one bad event publish nothing. And the Python publisher in
//! `clients/python`, run as a process against the real endpoint.

use std::{net::SocketAddr, process::Stdio};

use axum::{extract::Path, routing::get, Router};
use serde_json::{json, Value};
use sse_tests::{eventually, http_client, within, Client};

const TOKEN: &str = "test-token-0123456789";

/// A server of `hub`'s: `/publish` (token [`TOKEN`], `endpoint` adjusting the rest) and a stream
/// of each group at `/events/{group}`.
async fn start(
    hub: &sse::Hub,
    with_axum: bool,
    endpoint: impl FnOnce(sse::PublishEndpoint) -> sse::PublishEndpoint,
) -> SocketAddr {
    let publish = endpoint(sse::PublishEndpoint::new(TOKEN).unwrap().hub(hub.clone()));
    let streams = hub.clone();
    let app = Router::new()
        .route("/publish", publish.into_method_router())
        .route(
            "/events/{group}",
            get(
                move |Path(group): Path<sse::GroupName>, last: sse::LastEventId| async move {
                    streams.subscribe([group], &last)
                },
            ),
        );
    if with_axum {
        sse_tests::serve_with_axum(app).await
    } else {
        sse_tests::serve(app).await
    }
}

/// Opens a stream of `group` and waits until the hub counts it.
async fn listen(hub: &sse::Hub, addr: SocketAddr, group: &str) -> Client {
    let client = Client::open(&format!("http://{addr}/events/{group}"), &[]).await;
    eventually("subscribed", || hub.group_stats(group).subscribers == 1).await;
    client
}

/// POSTs `body` as JSON with `token`; the status and the JSON answer.
async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = http_client()
        .post(format!("http://{addr}/publish"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = within(request.send()).await.unwrap();
    (answer.status().as_u16(), json_of(answer).await)
}

/// The body of `answer`, which must be JSON.
async fn json_of(answer: reqwest::Response) -> Value {
    serde_json::from_slice(&within(answer.bytes()).await.unwrap()).unwrap()
}

fn ids(answer: &Value) -> Vec<String> {
    serde_json::from_value(answer["ids"].clone()).unwrap()
}

async fn one_event_and_a_batch_arrive_in_order(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum, |endpoint| endpoint).await;
    let mut yo = listen(&hub, addr, "yo").await;
    let mut bob = listen(&hub, addr, "yo.bob").await;

    let one = json!({"group": "yo", "event": "yo", "data": "yo from a to b"});
    let (status, answer) = post(addr, Some(TOKEN), one.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let first = ids(&answer);

    // Spaces and key order as a Python client writes them: the data keeps the order, not the spaces.
    let batch = r#"{"events": [
        {"group": "yo.bob", "event": "yo", "data": {"to": "bob", "from": "alice", "n": 1.50}},
        {"group": "yo", "data": "line one\nline two"},
        {"group": "yo.bob", "event": null, "data": ["a", 2]}
    ]}"#;
    let (status, answer) = post(addr, Some(TOKEN), batch).await;
    assert_eq!(status, 200, "{answer}");
    let batch = ids(&answer);
    assert_eq!(batch.len(), 3);

    let read = |event: sse_tests::Event| (event.event, event.data, event.id);
    assert_eq!(
        read(yo.next().await.unwrap()),
        ("yo".into(), "yo from a to b".into(), first[0].clone())
    );
    assert_eq!(
        read(yo.next().await.unwrap()),
        (
            "message".into(),
            "line one\nline two".into(),
            batch[1].clone()
        )
    );
    assert_eq!(
        read(bob.next().await.unwrap()),
        (
            "yo".into(),
            r#"{"to":"bob","from":"alice","n":1.50}"#.into(),
            batch[0].clone()
        )
    );
    assert_eq!(
        read(bob.next().await.unwrap()),
        ("message".into(), r#"["a",2]"#.into(), batch[2].clone())
    );
    assert_eq!(hub.stats().published, 4);
}

#[tokio::test]
async fn one_event_and_a_batch_arrive_in_order_under_sse_serve() {
    one_event_and_a_batch_arrive_in_order(false).await;
}

#[tokio::test]
async fn one_event_and_a_batch_arrive_in_order_under_axum_serve() {
    one_event_and_a_batch_arrive_in_order(true).await;
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_publishes_nothing() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, false, |endpoint| endpoint).await;
    let body = json!({"group": "yo", "data": "forged"}).to_string();

    let (status, answer) = post(addr, None, body.clone()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (
            401,
            Some("missing bearer token: send Authorization: Bearer <token>")
        )
    );
    for token in ["wrong", "test-token-012345678", "test-token-01234567890"] {
        let (status, answer) = post(addr, Some(token), body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (401, Some("wrong bearer token")),
            "{token}"
        );
    }
    let basic = within(
        http_client()
            .post(format!("http://{addr}/publish"))
            .basic_auth("user", Some(TOKEN))
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
    assert_eq!(hub.stats().published, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, true, |endpoint| endpoint.max_body_bytes(1024)).await;
    let body = json!({"group": "yo", "data": "x".repeat(2000)}).to_string();
    let (status, answer) = post(addr, Some(TOKEN), body).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "the body is larger than 1024 bytes");
    assert_eq!(hub.stats().published, 0);
}

#[tokio::test]
async fn a_batch_over_max_events_is_413() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, false, |endpoint| endpoint.max_events(3)).await;
    let event = json!({"group": "yo", "data": "x"});
    let (status, answer) = post(
        addr,
        Some(TOKEN),
        json!({"events": vec![event; 4]}).to_string(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        answer["error"],
        "a batch of 4 events; at most 3 per request"
    );
    assert_eq!(hub.stats().published, 0);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_publishes_none_of_it() {
    let hub = sse::Hub::new(sse::Config::default().max_event_bytes(256));
    let addr = start(&hub, false, |endpoint| endpoint).await;
    let mut stream = listen(&hub, addr, "yo").await;
    let bad_events = [
        (
            json!({"group": "a b", "data": "x"}),
            "event 1: invalid group name \"a b\": character ' ' at byte 1 is not allowed",
        ),
        (
            json!({"group": "yo", "event": "a\nb", "data": "x"}),
            "event 1: invalid event name",
        ),
        (
            json!({"group": "yo", "data": "x".repeat(300)}),
            "event 1: event too large: at least",
        ),
        (json!({"group": "yo"}), "event 1: missing field `data`"),
        (
            json!({"group": "yo", "evnt": "typo", "data": "x"}),
            "event 1: unknown field `evnt`",
        ),
        (json!("just a string"), "event 1: invalid type: string"),
    ];
    for (bad, why) in bad_events {
        let good = json!({"group": "yo", "data": "fine"});
        let batch = json!({"events": [good, bad, good]});
        let (status, answer) = post(addr, Some(TOKEN), batch.to_string()).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["index"], 1);
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with(why),
            "{error:?} does not start with {why:?}"
        );
    }
    assert_eq!(hub.stats().published, 0);
    // The stream saw nothing of them: the next event on it is the next one published.
    let (status, answer) = post(
        addr,
        Some(TOKEN),
        json!({"group": "yo", "data": "after"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id),
        ("after", ids(&answer)[0].clone())
    );
}

#[tokio::test]
async fn malformed_requests_are_answered_with_what_was_wrong() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, true, |endpoint| endpoint).await;

    let (status, answer) = post(addr, Some(TOKEN), r#"{"group": "yo", "data": "#).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "the body is not a JSON object: EOF while parsing a value at line 1 column 24"
    );
    let (status, answer) = post(addr, Some(TOKEN), "[1, 2]").await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = post(addr, Some(TOKEN), r#"{"events": {"group": "yo"}}"#).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("\"events\" is not a list of events"));
    let (status, answer) = post(addr, Some(TOKEN), r#"{"events": [], "group": "yo"}"#).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("a batch holds \"events\" and nothing else"))
    );

    let plain = within(
        http_client()
            .post(format!("http://{addr}/publish"))
            .bearer_auth(TOKEN)
            .body(r#"{"group": "yo", "data": "x"}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(plain.status(), 415);
    assert_eq!(
        json_of(plain).await["error"],
        "expected Content-Type: application/json"
    );
    let get = within(http_client().get(format!("http://{addr}/publish")).send())
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(hub.stats().published, 0);
}

#[tokio::test]
async fn a_shut_down_hub_is_503_and_says_what_was_published() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, true, |endpoint| endpoint).await;
    hub.shutdown();
    let batch = json!({"events": [{"group": "yo", "data": "late"}]});
    let (status, answer) = post(addr, Some(TOKEN), batch.to_string()).await;
    assert_eq!(status, 503);
    assert_eq!(
        answer,
        json!({"error": "event 0: the SSE hub is shut down; the 0 before it were published", "index": 0, "ids": []})
    );
}

#[tokio::test]
async fn without_a_hub_of_its_own_it_publishes_on_the_process_wide_hub() {
    use futures_util::StreamExt;

    let publish = sse::PublishEndpoint::new(TOKEN).unwrap();
    let addr =
        sse_tests::serve(Router::new().route("/publish", publish.into_method_router())).await;
    let group = sse::GroupName::new("publish-endpoint-global").unwrap();
    let mut subscription = sse::hub()
        .subscribe([group], &sse::LastEventId::default())
        .unwrap();
    within(subscription.next()).await.unwrap(); // stream-start
    let event = json!({"group": "publish-endpoint-global", "event": "yo", "data": "hi"});
    let (status, answer) = post(addr, Some(TOKEN), event.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let bytes = within(subscription.next()).await.unwrap();
    let expected = format!("event: yo\ndata: hi\nid: {}\n\n", ids(&answer)[0]);
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
}

/// Where the Python package is (put on `PYTHONPATH`).
const PYTHON_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python");

/// Runs `python3` with `args`, the endpoint at `addr` and `token` in its environment; its exit
/// status, stdout and stderr.
async fn python(addr: SocketAddr, token: &str, args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new("python3")
        .args(args)
        .env("PYTHONPATH", PYTHON_CLIENT)
        .env("SSE_PUBLISH_URL", format!("http://{addr}/publish"))
        .env("SSE_PUBLISH_TOKEN", token)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let out = within(child.wait_with_output()).await.unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test]
async fn the_python_publisher_publishes_and_reports_refusals() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, false, |endpoint| endpoint).await;
    let mut stream = listen(&hub, addr, "yo").await;

    // The command line: publish(group, event, data) as the Django package calls it.
    let command = ["-m", "sse_publish", "yo", "yo"];
    let (ok, stdout, stderr) =
        python(addr, TOKEN, &[&command[..], &["yo from a to b"]].concat()).await;
    assert!(ok, "{stderr}");
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("yo", "yo from a to b")
    );
    assert_eq!(event.id, stdout.trim());

    // The module: a batch, with JSON data.
    let program = r#"
import sse_publish as sse
print(" ".join(sse.publish_many([("yo", None, "one"), ("yo", "n", {"two": 2})])))
try:
    sse.publish_many([("yo", None, "three"), ("not a group", "yo", "x")])
except sse.PublishError as refused:
    print(refused.status, refused.index, refused)
"#;
    let (ok, stdout, stderr) = python(addr, TOKEN, &["-c", program]).await;
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let refusal = lines.next().unwrap();
    assert!(
        refusal.starts_with("422 1 422: event 1: invalid group name \"not a group\""),
        "{refusal}"
    );
    let events = stream.take(2).await;
    let read: Vec<_> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str(), e.id.as_str()))
        .collect();
    assert_eq!(
        read,
        [("message", "one", ids[0]), ("n", r#"{"two":2}"#, ids[1])]
    );

    let (ok, _, stderr) = python(addr, "wrong-token", &[&command[..], &["forged"]].concat()).await;
    assert!(!ok);
    assert_eq!(stderr.trim(), "sse_publish: 401: wrong bearer token");
    assert_eq!(hub.stats().published, 3);
}

/// Publishes what a retry of `body` (with the `Idempotency-Key` header `key`) answers.
async fn post_keyed(addr: SocketAddr, key: &str, body: Value) -> (u16, Value) {
    let request = http_client()
        .post(format!("http://{addr}/publish"))
        .bearer_auth(TOKEN)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string());
    let answer = within(request.send()).await.unwrap();
    (answer.status().as_u16(), json_of(answer).await)
}

async fn a_retried_request_with_its_keys_publishes_nothing_again(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum, |endpoint| endpoint).await;
    let mut stream = listen(&hub, addr, "orders").await;

    // Keys in the body, a batch sent twice (its answer lost, say): the same ids, nothing new.
    let batch = json!({ "events": [
        { "group": "orders", "event": "paid", "data": "17", "key": "order-17:paid" },
        { "group": "orders", "event": "shipped", "data": "17", "key": "order-17:shipped" },
    ]});
    let (status, first) = post(addr, Some(TOKEN), batch.to_string()).await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = post(addr, Some(TOKEN), batch.to_string()).await;
    assert_eq!((status, ids(&again)), (200, ids(&first)));

    // The header, for a body of one event.
    let one = json!({ "group": "orders", "event": "delivered", "data": "17" });
    let (status, delivered) = post_keyed(addr, "order-17:delivered", one.clone()).await;
    assert_eq!(status, 200, "{delivered}");
    let (_, again) = post_keyed(addr, "order-17:delivered", one.clone()).await;
    assert_eq!(ids(&again), ids(&delivered));

    let events = stream.take(3).await;
    let read: Vec<_> = events
        .iter()
        .map(|e| (e.event.as_str(), e.id.clone()))
        .collect();
    let mut expected = ids(&first);
    expected.extend(ids(&delivered));
    assert_eq!(
        read.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        read.iter().map(|(event, _)| *event).collect::<Vec<_>>(),
        ["paid", "shipped", "delivered"]
    );
    // Nothing else came: the next event is the one published now.
    let (_, last) = post(
        addr,
        Some(TOKEN),
        json!({ "group": "orders", "data": "end" }).to_string(),
    )
    .await;
    assert_eq!(stream.next().await.unwrap().id, ids(&last)[0]);

    // A bad key is refused, and so is the header on a batch: nothing published.
    let (status, refused) = post_keyed(addr, "has space", one).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("invalid idempotency key"),
        "{refused}"
    );
    let (status, refused) = post_keyed(addr, "k", batch).await;
    assert_eq!(status, 422, "{refused}");
    let bad = json!({ "group": "orders", "data": "x", "key": "" });
    let (status, refused) = post(addr, Some(TOKEN), bad.to_string()).await;
    assert_eq!(
        (status, refused["index"].as_u64()),
        (422, Some(0)),
        "{refused}"
    );
    assert_eq!(
        hub.stats().published,
        2 + 2 + 2 + 1,
        "every answered publish counts"
    );
}

#[tokio::test]
async fn a_retried_request_with_its_keys_publishes_nothing_again_under_sse_serve() {
    a_retried_request_with_its_keys_publishes_nothing_again(false).await;
}

#[tokio::test]
async fn a_retried_request_with_its_keys_publishes_nothing_again_under_axum_serve() {
    a_retried_request_with_its_keys_publishes_nothing_again(true).await;
}

#[tokio::test]
async fn the_python_publisher_retries_with_a_key_and_says_every_failure_as_a_publish_error() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, false, |endpoint| endpoint).await;
    let mut stream = listen(&hub, addr, "orders").await;
    // A server that takes the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/publish", silent.local_addr().unwrap());

    let program = r#"
import sys
import sse_publish as sse
first = sse.publish("orders", "shipped", {"id": 17}, key="order-17:shipped")
again = sse.publish("orders", "shipped", {"id": 17}, key="order-17:shipped")
print(first, again)
print(" ".join(sse.publish_many([("orders", "a", "1", "k-1"), ("orders", "a", "1", "k-1")])))
try:
    sse.Publisher(sys.argv[1], "t", timeout=0.5).publish("orders", None, "x")
except sse.PublishError as error:
    print("PublishError", error.status, type(error.__cause__).__name__)
"#;
    let args = ["-c", program, &silent_url];
    let (ok, stdout, stderr) = python(addr, TOKEN, &args).await;
    drop(silent);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    let (first, again) = lines.next().unwrap().split_once(' ').unwrap();
    assert_eq!(first, again);
    let batch: Vec<&str> = lines.next().unwrap().split(' ').collect();
    assert_eq!(batch[0], batch[1], "one key twice in a batch: one event");
    let timed_out = lines.next().unwrap();
    assert!(timed_out.starts_with("PublishError None "), "{timed_out}");

    let events = stream.take(2).await;
    assert_eq!(
        (events[0].id.as_str(), events[1].id.as_str()),
        (first, batch[0])
    );
    assert_eq!(hub.stats().published, 4);
}

/// Publishing `stream-end` over HTTP finishes the group: its streams end, and what is
/// published to it next is refused with 409, which no retry changes.
async fn a_group_is_finished_over_http(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum, |endpoint| endpoint).await;
    let mut job = listen(&hub, addr, "job.7").await;
    let done = json!({"group": "job.7", "event": "done", "data": "42"});
    let end = json!({"group": "job.7", "event": sse::STREAM_END, "data": ""});
    let (status, answer) = post(
        addr,
        Some(TOKEN),
        json!({"events": [done, end]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let events = job.take(2).await;
    assert_eq!(
        (events[0].data.as_str(), events[1].event.as_str()),
        ("42", sse::STREAM_END)
    );
    assert_eq!(events[1].id, ids(&answer)[1]);
    assert!(job.next().await.is_none(), "the stream ends");

    let late = json!({"group": "job.7", "data": "late"});
    let (status, answer) = post(addr, Some(TOKEN), late.to_string()).await;
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("the group was finished"), "{error}");
}

#[tokio::test]
async fn a_group_is_finished_over_http_under_sse_serve() {
    a_group_is_finished_over_http(false).await;
}

#[tokio::test]
async fn a_group_is_finished_over_http_under_axum_serve() {
    a_group_is_finished_over_http(true).await;
}
