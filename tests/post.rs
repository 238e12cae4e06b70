//! Streams asked for with a `POST` and a body, as fetch-based SSE clients send them: the
//! handler reads the body to choose the stream, and a retry of the same `POST` with
//! `Last-Event-ID` resumes it; under `sse::serve` and `axum::serve`.

use axum::{http::StatusCode, routing::post, Json, Router};
use sse_tests::{eventually, http_client, within, Client};

#[derive(serde::Deserialize)]
struct Ask {
    answer: String,
}

/// Streams the answer the body names.
#[sse::subscribe]
async fn answer_events(Json(ask): Json<Ask>) -> Result<sse::GroupName, (StatusCode, String)> {
    let group = sse::GroupName::new(format!("answer.{}", ask.answer));
    group.map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
}

/// POSTs `body` as fetch-event-source does, with `last` as its `Last-Event-ID`.
async fn ask(url: &str, body: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = http_client()
        .post(url)
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    within(request.send()).await.unwrap()
}

async fn a_posted_stream_streams_and_resumes(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let app = Router::new()
        .route("/answers", post(answer_events))
        .layer(hub.layer());
    let addr = match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    };
    let url = format!("http://{addr}/answers");

    let answer = ask(&url, r#"{"answer": "42"}"#, None).await;
    assert_eq!(answer.status(), 200);
    let mut stream = Client::from_response(answer);
    eventually("the posted stream is open", || {
        hub.group_stats("answer.42").subscribers == 1
    })
    .await;
    for token in ["The", "answer", "is"] {
        hub.publish("answer.42", Some("token"), token).unwrap();
    }
    let seen = stream.take(3).await;
    assert_eq!(
        seen.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["The", "answer", "is"]
    );
    drop(stream);

    // The page reloads mid-answer: the same POST with the last id it saw gets the rest.
    hub.publish("answer.42", Some("token"), "42").unwrap();
    let again = ask(&url, r#"{"answer": "42"}"#, Some(&seen[2].id)).await;
    let mut resumed = Client::from_response(again);
    assert_eq!(resumed.next().await.unwrap().data, "42");

    // A body the handler refuses is answered as it says; a GET is not a route here.
    let refused = ask(&url, r#"{"answer": "no spaces"}"#, None).await;
    assert_eq!(refused.status(), 422);
    let unknown = ask(&url, r#"{"question": 1}"#, None).await;
    assert_eq!(unknown.status(), 422, "axum's own rejection of the body");
    let get = within(http_client().get(&url).send()).await.unwrap();
    assert_eq!(get.status(), 405);
}

#[tokio::test]
async fn a_posted_stream_streams_and_resumes_under_sse_serve() {
    a_posted_stream_streams_and_resumes(false).await;
}

#[tokio::test]
async fn a_posted_stream_streams_and_resumes_under_axum_serve() {
    a_posted_stream_streams_and_resumes(true).await;
}
