//! One stream, several groups: a bare `#[sse::subscribe]` handler returns the user's own group
//! and a shared feed, so a page needs one `EventSource`. Events of both arrive on it in the
//! order they were published, and a reconnect with `Last-Event-ID` replays exactly what was
//! missed in either group.

use std::net::SocketAddr;

use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sse_tests::{eventually, request, Client};

/// The user's own group and the public feed, on one stream.
#[sse::subscribe]
async fn mine_and_feed(Path(user): Path<String>) -> Result<[sse::GroupName; 2], Response> {
    let bad_request = |e: sse::NameError| (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    let own = sse::GroupName::new(format!("inbox.{user}")).map_err(bad_request)?;
    let feed = sse::GroupName::new(format!("feed.{user}")).map_err(bad_request)?;
    Ok([own, feed])
}

/// Any number of groups, from the path: `/events/a+b+c`.
#[sse::subscribe]
async fn listed(Path(list): Path<String>) -> Result<Vec<sse::GroupName>, (StatusCode, String)> {
    list.split('+')
        .map(sse::GroupName::new)
        .collect::<Result<_, _>>()
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/events/user/{user}", get(mine_and_feed))
        .route("/events/list/{list}", get(listed));
    sse_tests::serve(app).await
}

async fn subscribed(groups: &[&str]) {
    eventually("subscribed", || {
        groups
            .iter()
            .all(|group| sse::hub().group_stats(group).subscribers == 1)
    })
    .await;
}

fn pairs(events: Vec<sse_tests::Event>) -> Vec<(String, String)> {
    events.into_iter().map(|e| (e.event, e.data)).collect()
}

/// The id a stream of these groups sends at these positions: `inbox.ann:17,feed.ann:40`.
fn composite(positions: &[(&str, u64)]) -> String {
    let parts: Vec<String> = positions
        .iter()
        .map(|(g, id)| format!("{g}:{id}"))
        .collect();
    parts.join(",")
}

#[tokio::test]
async fn one_stream_carries_both_groups_in_publish_order() {
    let addr = server().await;
    let mut client = Client::open(&format!("http://{addr}/events/user/ann"), &[]).await;
    subscribed(&["inbox.ann", "feed.ann"]).await;

    let ids = [
        sse::publish!("inbox.ann", "yo", "one").unwrap().get(),
        sse::publish!("feed.ann", "feed", "two").unwrap().get(),
        sse::publish!("inbox.someone-else", "yo", "not for ann")
            .unwrap()
            .get(),
        sse::publish!("feed.ann", "feed", "three").unwrap().get(),
        sse::publish!("inbox.ann", "yo", "four").unwrap().get(),
    ];
    let events = client.take(4).await;
    let got_ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    // Each event's id says where the stream is in both of its groups, each numbering its own
    // events one by one.
    let (inbox, feed) = ("inbox.ann", "feed.ann");
    let expected_ids = [
        composite(&[(inbox, ids[0]), (feed, ids[1] - 1)]),
        composite(&[(inbox, ids[0]), (feed, ids[1])]),
        composite(&[(inbox, ids[0]), (feed, ids[3])]),
        composite(&[(inbox, ids[4]), (feed, ids[3])]),
    ];
    assert_eq!(got_ids, expected_ids);
    assert_eq!(
        pairs(events),
        [
            ("yo", "one"),
            ("feed", "two"),
            ("feed", "three"),
            ("yo", "four")
        ]
        .map(|(e, d)| (e.to_owned(), d.to_owned()))
    );
}

#[tokio::test]
async fn replay_across_two_groups_is_exact() {
    let addr = server().await;
    let url = format!("http://{addr}/events/user/bea");
    let mut first = Client::open(&url, &[]).await;
    subscribed(&["inbox.bea", "feed.bea"]).await;
    let mut inbox = sse::publish!("inbox.bea", "yo", "seen 1").unwrap().get();
    let mut feed = sse::publish!("feed.bea", "feed", "seen 2").unwrap().get();
    let seen = first.take(2).await;
    let last_seen = seen[1].id.clone();
    assert_eq!(
        last_seen,
        composite(&[("inbox.bea", inbox), ("feed.bea", feed)])
    );
    drop(first);
    eventually("unsubscribed", || {
        sse::hub().group_stats("inbox.bea").subscribers == 0
    })
    .await;

    // Missed while away, interleaved across both groups and one unrelated group.
    let missed = [
        ("feed.bea", "missed 1"),
        ("inbox.bea", "missed 2"),
        ("inbox.other", "never for bea"),
        ("feed.bea", "missed 3"),
        ("inbox.bea", "missed 4"),
    ];
    let mut missed_ids = Vec::new();
    for (group, data) in missed {
        let id = sse::publish!(group, "x", data).unwrap().get();
        match group {
            "inbox.bea" => inbox = id,
            "feed.bea" => feed = id,
            _ => continue,
        }
        missed_ids.push(composite(&[("inbox.bea", inbox), ("feed.bea", feed)]));
    }

    let mut again = Client::open(&url, &[("last-event-id", &last_seen)]).await;
    subscribed(&["inbox.bea", "feed.bea"]).await;
    let live = sse::publish!("feed.bea", "x", "live again").unwrap().get();
    missed_ids.push(composite(&[("inbox.bea", inbox), ("feed.bea", live)]));
    let events = again.take(5).await;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let data: Vec<String> = events.into_iter().map(|e| e.data).collect();
    assert_eq!(
        ids, missed_ids,
        "no stream-reset, nothing twice, nothing lost"
    );
    assert_eq!(
        data,
        ["missed 1", "missed 2", "missed 3", "missed 4", "live again"]
    );
}

#[tokio::test]
async fn a_vec_of_groups_works_and_bad_names_are_refused() {
    let addr = server().await;
    let mut client = Client::open(&format!("http://{addr}/events/list/l.a+l.b+l.c"), &[]).await;
    subscribed(&["l.a", "l.b", "l.c"]).await;
    for group in ["l.c", "l.a", "l.b"] {
        sse::publish!(group, "to {group}").unwrap();
    }
    let data: Vec<String> = client.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["to l.c", "to l.a", "to l.b"]);

    let refused = request(&format!("http://{addr}/events/list/l.a+l%20b"), &[]).await;
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .starts_with("invalid group name \"l b\""));
}

#[tokio::test]
async fn when_one_group_lost_the_history_the_stream_starts_with_one_reset() {
    // A hub of its own that keeps 2 events per group.
    let hub = sse::Hub::new(sse::Config::default().history(2, std::time::Duration::from_secs(60)));
    let handler_hub = hub.clone();
    let app = Router::new().route(
        "/",
        get(move |last: sse::LastEventId| async move {
            let groups = ["kept", "lost"].map(|name| sse::GroupName::new(name).unwrap());
            handler_hub.subscribe(groups, &last)
        }),
    );
    let url = format!("http://{}/", sse_tests::serve(app).await);
    let mut first = Client::open(&url, &[]).await;
    eventually("subscribed", || hub.group_stats("lost").subscribers == 1).await;
    hub.publish("kept", None, "seen").unwrap();
    let seen = first.next().await.unwrap().id;
    drop(first);
    eventually("unsubscribed", || hub.group_stats("lost").subscribers == 0).await;
    for i in 0..3 {
        hub.publish("lost", None, format_args!("lost {i}")).unwrap();
    }

    let mut again = Client::open(&url, &[("last-event-id", &seen)]).await;
    let reset = again.next().await.unwrap();
    assert_eq!(reset.event, sse::STREAM_RESET);
    assert_eq!(reset.data, r#"{"reason":"id older than the history"}"#);
    eventually("subscribed", || hub.group_stats("lost").subscribers == 1).await;
    hub.publish("kept", None, "live").unwrap();
    let next = again.next().await.unwrap();
    assert_eq!(
        next.data, "live",
        "after the reset, live events only: no partial replay"
    );
}
