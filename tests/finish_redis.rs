//! Streams that finish across processes: hubs on one real `redis-server`, each as a process of
//! its own would be, streams served over real TCP (`sse::serve` and `axum::serve`). A group
//! finished by one process ends the streams of another, which then refuses publishes to it
//! and answers a client back with the end's id 204; a third process, which never held the
//! group, gives a client back what it missed and the end, from Redis.

use axum::{routing::get, Router};
use sse_tests::{redis_servers::RedisServer, request, Client};

/// Serves `hub`'s streams of `group` at `/answer`, rewound through all the group kept for a
/// client without `Last-Event-ID` (a page that loads, or reloads, an answer).
async fn serve(hub: &sse::Hub, group: &'static str, with_axum: bool) -> String {
    let hub = hub.clone();
    let app = Router::new().route(
        "/answer",
        get(move |last: sse::LastEventId| async move {
            let join = sse::Join::group(sse::GroupName::new(group).unwrap()).rewind(100_000);
            hub.subscribe(join, &last)
        }),
    );
    let addr = match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    };
    format!("http://{addr}/answer")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_finished_in_one_process_ends_the_streams_of_others() {
    let redis = RedisServer::start().await;
    let config = || sse::Config::default().retry(None);
    let [streaming, generating, stranger] = [
        redis.hub(config()),
        redis.hub(config()),
        redis.hub(config()),
    ];
    let on_streaming = serve(&streaming, "answer-r", false).await;
    let mut open = Client::open(&on_streaming, &[]).await;
    redis.wait_listeners("answer-r", 1).await;

    let first = generating
        .publish("answer-r", Some("token"), "Hello")
        .unwrap();
    generating
        .publish("answer-r", Some("token"), " world")
        .unwrap();
    let end = generating
        .finish_async("answer-r")
        .await
        .unwrap()
        .to_string();
    let (seen, last) = open.to_the_end().await;
    assert_eq!(seen, ["Hello", " world", "END"]);
    assert_eq!(last, end);

    // The process that finished it, and the one that received the end, refuse more.
    for hub in [&generating, &streaming] {
        let late = hub.publish("answer-r", Some("token"), "late");
        assert!(matches!(late, Err(sse::PublishError::Finished)), "{late:?}");
    }
    let refused = request(&on_streaming, &[("last-event-id", &end)]).await;
    assert_eq!(refused.status(), 204);
    let mut reloaded = Client::open(&on_streaming, &[]).await;
    assert_eq!(reloaded.to_the_end().await.0, ["Hello", " world", "END"]);

    // A process that never held the group reads from Redis what a client missed, then the end.
    let on_stranger = serve(&stranger, "answer-r", true).await;
    let first = first.to_string();
    let mut back = Client::open(&on_stranger, &[("last-event-id", &first)]).await;
    assert_eq!(
        back.to_the_end().await,
        (vec![" world".into(), "END".into()], end.clone())
    );
    let mut reloaded = Client::open(&on_stranger, &[]).await;
    assert_eq!(reloaded.to_the_end().await.0, ["Hello", " world", "END"]);
    // It has seen the end by now: a client back with its id stops there.
    let refused = request(&on_stranger, &[("last-event-id", &end)]).await;
    assert_eq!(refused.status(), 204);
}
