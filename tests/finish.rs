//! Streams that finish, over real TCP, under `sse::serve` and `axum::serve`: a finished group's
//! open streams get what remains, then its `stream-end`, and end; a client that comes back
//! with an earlier id gets what it missed, then the end; a new client gets what the group kept,
//! then the end; one that comes back with the end's id is answered 204; publishing after the
//! end is refused.

use std::time::Duration;

use axum::{extract::Path, routing::get, Router};
use sse_tests::{eventually, request, Client};

#[sse::subscribe("answer")]
async fn answer() {}

/// The groups named in the path, comma-separated: one stream of several groups.
#[sse::subscribe]
async fn answers(Path(groups): Path<String>) -> Result<sse::Join, String> {
    let groups: Result<Vec<sse::GroupName>, _> =
        groups.split(',').map(sse::GroupName::new).collect();
    Ok(sse::Join::groups(groups.map_err(|e| e.to_string())?))
}

/// A page's stream of an answer: all of it so far, then live tokens, then the end.
#[sse::subscribe("answer", rewind = 100_000)]
async fn answer_page() {}

async fn serve(hub: &sse::Hub, with_axum: bool) -> String {
    let app = Router::new()
        .route("/answer", get(answer))
        .route("/page", get(answer_page))
        .route("/answers/{groups}", get(answers))
        .layer(hub.layer());
    let addr = match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    };
    format!("http://{addr}")
}

async fn a_finished_group_ends_its_streams(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    let base = serve(&hub, with_axum).await;
    hub.keep("answer", sse::Keep::bytes(1 << 20)).unwrap();
    let mut open = Client::open(&format!("{base}/answer"), &[]).await;
    eventually("the stream is open", || {
        hub.group_stats("answer").subscribers == 1
    })
    .await;
    let ids: Vec<String> = ["The", " answer", " is 42"]
        .iter()
        .map(|token| {
            hub.publish("answer", Some("token"), token)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(open.next().await.unwrap().data, "The");
    let end = hub.finish("answer").unwrap().to_string();

    // The open stream: what remains, the end, and the body ends.
    assert_eq!(open.to_the_end().await.0, [" answer", " is 42", "END"]);
    assert!(matches!(
        hub.publish("answer", Some("token"), "late"),
        Err(sse::PublishError::Finished)
    ));
    assert!(matches!(
        hub.finish("answer"),
        Err(sse::PublishError::Finished)
    ));

    // Back with an earlier id: what it missed, then the end.
    let mut back = Client::open(&format!("{base}/answer"), &[("last-event-id", &ids[0])]).await;
    assert_eq!(back.to_the_end().await.0, [" answer", " is 42", "END"]);
    // New: all the group kept, then the end.
    let mut late = Client::open(&format!("{base}/answer"), &[]).await;
    assert_eq!(
        late.to_the_end().await.0,
        ["The", " answer", " is 42", "END"]
    );
    // Back with the end's id (or a later one): 204, on which EventSource stops.
    for id in [end.clone(), (end.parse::<u64>().unwrap() + 1).to_string()] {
        let refused = request(&format!("{base}/answer"), &[("last-event-id", &id)]).await;
        assert_eq!(refused.status(), 204, "{id}");
    }
    eventually("no stream left", || hub.stats().open_streams == 0).await;
}

#[tokio::test]
async fn a_finished_group_ends_its_streams_under_sse_serve() {
    a_finished_group_ends_its_streams(false).await;
}

#[tokio::test]
async fn a_finished_group_ends_its_streams_under_axum_serve() {
    a_finished_group_ends_its_streams(true).await;
}

/// A stream of several groups gives each group's end and goes on until every group ended.
async fn a_stream_of_several_groups_ends_with_its_last_group(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    let base = serve(&hub, with_axum).await;
    let url = format!("{base}/answers/q.1,q.2");
    let mut both = Client::open(&url, &[]).await;
    eventually("the stream is open", || {
        hub.group_stats("q.2").subscribers == 1
    })
    .await;
    hub.publish("q.1", Some("token"), "one").unwrap();
    hub.finish("q.1").unwrap();
    hub.publish("q.2", Some("token"), "two").unwrap();
    let seen = both.take(3).await;
    let after_first_end = seen[1].id.clone();
    assert_eq!(seen[1].event, sse::STREAM_END);
    assert!(after_first_end.starts_with("q.1:"), "{after_first_end}");
    assert_eq!(seen[2].data, "two");
    hub.finish("q.2").unwrap();
    let (rest, both_ends) = both.to_the_end().await;
    assert_eq!(rest, ["END"]);

    // Back after q.1's end: the rest of q.2, its end, and no more.
    let mut back = Client::open(&url, &[("last-event-id", &after_first_end)]).await;
    assert_eq!(
        back.to_the_end().await,
        (vec!["two".to_owned(), "END".to_owned()], both_ends.clone())
    );
    // Back with both ends: 204.
    let refused = request(&url, &[("last-event-id", &both_ends)]).await;
    assert_eq!(refused.status(), 204, "{both_ends}");
    // New: all of both groups, in the order they were published, then no more.
    let mut late = Client::open(&url, &[]).await;
    let (all, _) = late.to_the_end().await;
    assert_eq!(all, ["one", "END", "two", "END"]);
}

#[tokio::test]
async fn a_stream_of_several_groups_ends_with_its_last_group_under_sse_serve() {
    a_stream_of_several_groups_ends_with_its_last_group(false).await;
}

#[tokio::test]
async fn a_stream_of_several_groups_ends_with_its_last_group_under_axum_serve() {
    a_stream_of_several_groups_ends_with_its_last_group(true).await;
}

fn group(name: &str) -> sse::GroupName {
    sse::GroupName::new(name).unwrap()
}

/// Everything a subscription yields until it ends, after its start; panics if it does not end.
async fn read_to_the_end(mut subscription: sse::Subscription) -> String {
    use futures_util::StreamExt;
    let mut all = String::new();
    while let Some(chunk) = sse_tests::within(subscription.next()).await {
        all.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let start_ends = all.find("\n\n").unwrap() + 2;
    assert!(all.starts_with("event: stream-start\n"), "{all}");
    all.split_off(start_ends)
}

/// The data of each event in `wire`.
fn data(wire: &str) -> Vec<&str> {
    wire.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect()
}

/// A group finished while nobody listened keeps its end for a new client, until it has had no
/// subscriber for the history's age like any group; then it is forgotten, and takes events.
#[tokio::test]
async fn a_finished_group_expires_like_any_other() {
    let age = Duration::from_millis(300);
    let hub = sse::Hub::new(sse::Config::default().retry(None).history(1_000, age));
    hub.publish("lonely", Some("token"), "unheard").unwrap(); // nobody holds it: not kept
    let end = hub.finish("lonely").unwrap();
    assert_eq!(hub.stats().groups, 1, "the end holds the group");
    let late = hub
        .subscribe(group("lonely"), &sse::LastEventId::default())
        .unwrap();
    let wire = read_to_the_end(late).await;
    assert_eq!(wire, format!("event: stream-end\ndata: \nid: {end}\n\n"));
    assert!(matches!(
        hub.publish("lonely", None, "late"),
        Err(sse::PublishError::Finished)
    ));
    eventually("the finished group is freed", || hub.stats().groups == 0).await;
    assert!(hub.publish("lonely", None, "a new life").is_ok());
}

/// A group sized with `Keep` keeps the newest events that fit in its bytes (and its count),
/// however many the settings' history holds.
#[tokio::test]
async fn a_kept_group_holds_as_many_bytes_as_it_was_told() {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    let tokens: Vec<String> = (0..10).map(|i| format!("token-{i}")).collect();
    for (name, keep) in [
        ("by-bytes", sse::Keep::bytes(150)),
        ("by-count", sse::Keep::bytes(1 << 20).events(3)),
        ("whole", sse::Keep::bytes(1 << 20)),
    ] {
        hub.keep(name, keep).unwrap();
        for token in &tokens {
            hub.publish(name, Some("token"), token).unwrap();
        }
        hub.finish(name).unwrap();
    }
    let kept = |name| {
        let late = hub.subscribe(group(name), &sse::LastEventId::default());
        read_to_the_end(late.unwrap())
    };
    let by_bytes = kept("by-bytes").await;
    assert!(by_bytes.len() <= 150, "{by_bytes}");
    let by_bytes = data(&by_bytes);
    assert!((2..10).contains(&by_bytes.len()), "{by_bytes:?}");
    let fit = by_bytes.len() - 1;
    assert_eq!(by_bytes[..fit], tokens[10 - fit..], "the newest ones");
    assert_eq!(by_bytes[fit], "", "then the end");
    assert_eq!(data(&kept("by-count").await), ["token-8", "token-9", ""]);
    let whole = kept("whole").await;
    assert_eq!(data(&whole)[..10], tokens, "{whole}");
}

/// A client whose id cannot be resumed from (too old, or garbage) gets a `stream-reset` past
/// the end: its page fetches afresh, and the stream ends there rather than waiting forever.
#[tokio::test]
async fn a_reset_past_the_end_ends_the_stream() {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    hub.publish("reset", Some("token"), "unheard").unwrap();
    let end = hub.finish("reset").unwrap();
    let garbage = sse::LastEventId::new("not an id");
    let mut back = hub.subscribe(group("reset"), &garbage).unwrap();
    use futures_util::StreamExt;
    let reset = sse_tests::within(back.next()).await.unwrap();
    assert_eq!(
        std::str::from_utf8(&reset).unwrap(),
        format!("event: stream-reset\ndata: {{\"reason\":\"not an id\"}}\nid: {end}\n\n")
    );
    assert_eq!(sse_tests::within(back.next()).await, None);
    // Back with that id: 204.
    let again = hub.subscribe(group("reset"), &back.last_event_id());
    assert!(matches!(again, Err(sse::SubscribeError::Finished)));
}

/// An answer as the README streams it: kept before anyone subscribed, a page that reloads
/// mid-answer gets the whole answer so far exactly once, then the rest, then the end.
async fn a_page_reloaded_mid_answer_gets_it_whole_once(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    let base = serve(&hub, with_axum).await;
    hub.keep("answer", sse::Keep::bytes(1 << 20)).unwrap();
    let tokens = ["The", " answer", " is", " 42"];
    for token in &tokens[..2] {
        hub.publish("answer", Some("token"), token).unwrap();
    }
    let mut page = Client::open(&format!("{base}/page"), &[]).await;
    let first: Vec<String> = page.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(first, tokens[..2]);
    hub.publish("answer", Some("token"), tokens[2]).unwrap();
    assert_eq!(page.next().await.unwrap().data, tokens[2]);
    drop(page); // the reload
    let mut reloaded = Client::open(&format!("{base}/page"), &[]).await;
    let again: Vec<String> = reloaded.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(again, tokens[..3], "the whole answer so far, once");
    hub.publish("answer", Some("token"), tokens[3]).unwrap();
    hub.finish("answer").unwrap();
    assert_eq!(reloaded.to_the_end().await.0, [tokens[3], "END"]);
}

#[tokio::test]
async fn a_page_reloaded_mid_answer_gets_it_whole_once_under_sse_serve() {
    a_page_reloaded_mid_answer_gets_it_whole_once(false).await;
}

#[tokio::test]
async fn a_page_reloaded_mid_answer_gets_it_whole_once_under_axum_serve() {
    a_page_reloaded_mid_answer_gets_it_whole_once(true).await;
}
