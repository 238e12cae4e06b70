//! Ids of streams of several groups, over HTTP with both servers: a client that reconnects again
//! and again while events are published to its groups gets every event once, in publish order;
//! an id from another stream or garbage gets a `stream-reset` that says why.

use std::{net::SocketAddr, time::Duration};

use axum::{extract::Path, routing::get, Router};
use sse_tests::{eventually, Client};

/// Any groups, from the path: `/events/a+b+c`.
#[sse::subscribe]
async fn listed(Path(list): Path<String>) -> Result<Vec<sse::GroupName>, sse::NameError> {
    list.split('+').map(sse::GroupName::new).collect()
}

fn app() -> Router {
    Router::new().route("/events/{list}", get(listed))
}

/// Both servers, each on its own port.
async fn servers() -> [SocketAddr; 2] {
    [
        sse_tests::serve(app()).await,
        sse_tests::serve_with_axum(app()).await,
    ]
}

async fn open(addr: SocketAddr, groups: &[&str], last_event_id: Option<&str>) -> Client {
    let url = format!("http://{addr}/events/{}", groups.join("+"));
    let headers: Vec<(&str, &str)> = last_event_id
        .map(|id| ("last-event-id", id))
        .into_iter()
        .collect();
    Client::open(&url, &headers).await
}

/// Publishes `events` events round-robin to `groups` and to a group nobody listens to, from a
/// thread of its own, with pauses so that clients come and go meanwhile. Returns what each
/// event's data is, for the listened groups, in publish order.
fn publish_round_robin(groups: &[&str], events: usize) -> std::thread::JoinHandle<Vec<String>> {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    std::thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..events {
            let group = &groups[i % groups.len()];
            let data = format!("{group} {i}");
            sse::publish!(group.as_str(), "n", "{data}").unwrap();
            sent.push(data);
            sse::publish!("composite-nobody", "n", "not for it {i}").unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        sent
    })
}

/// A client of `groups`, first on the stream `first`, that reads a few events, leaves, and comes
/// back with its last id, again and again, until it has `events` events; returns their data.
async fn come_and_go(
    addr: SocketAddr,
    groups: &[&str],
    events: usize,
    first: Client,
) -> Vec<String> {
    let mut got = Vec::new();
    let mut last_id: Option<String> = None;
    let mut first = Some(first);
    for visit in 0..events {
        let mut client = match first.take() {
            Some(client) => client,
            None => open(addr, groups, last_id.as_deref()).await,
        };
        let batch = client
            .take((7 + visit * 13 % 31).min(events - got.len()))
            .await;
        assert!(
            batch.iter().all(|event| event.event != sse::STREAM_RESET),
            "visit {visit} could not resume from {last_id:?}: {batch:?}"
        );
        last_id = batch
            .last()
            .map(|e| e.id.clone())
            .or(client.started_at.clone());
        got.extend(batch.into_iter().map(|event| event.data));
        if got.len() == events {
            return got;
        }
    }
    panic!("{} of {events} events after {events} visits", got.len());
}

async fn resume_across_reconnects_while_publishing(addr: SocketAddr, groups: &[&str]) {
    const EVENTS: usize = 600;
    // The first visit listens before the first event is published.
    let first = open(addr, groups, None).await;
    for group in groups {
        eventually("subscribed", || {
            sse::hub().group_stats(group).subscribers >= 1
        })
        .await;
    }
    let publisher = publish_round_robin(groups, EVENTS);
    let got = come_and_go(addr, groups, EVENTS, first).await;
    let sent = publisher.join().unwrap();
    assert_eq!(got, sent, "every event once, in publish order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_two_and_three_groups_resume_across_reconnects_while_publishing() {
    for (server, addr) in servers().await.into_iter().enumerate() {
        resume_across_reconnects_while_publishing(
            addr,
            &[&format!("two-a{server}"), &format!("two-b{server}")],
        )
        .await;
        let three = ["x", "y", "z"].map(|g| format!("three-{g}{server}"));
        let three: Vec<&str> = three.iter().map(String::as_str).collect();
        resume_across_reconnects_while_publishing(addr, &three).await;
    }
}

#[tokio::test]
async fn ids_from_another_stream_and_garbage_get_a_reset_that_says_why() {
    for (server, addr) in servers().await.into_iter().enumerate() {
        let [a, b, c] = ["a", "b", "c"].map(|g| format!("other-{g}{server}"));
        let (a, b, c) = (a.as_str(), b.as_str(), c.as_str());
        let mut ab = open(addr, &[a, b], None).await;
        eventually("subscribed", || sse::hub().group_stats(b).subscribers == 1).await;
        sse::publish!(a, "n", "first").unwrap();
        let id = ab.next().await.unwrap().id;
        assert!(
            id.starts_with(&format!("{a}:")) && id.contains(&format!(",{b}:")),
            "{id}"
        );

        // The same groups in another order: the id names each, so it resumes.
        let mut ba = open(addr, &[b, a], Some(&id)).await;
        sse::publish!(b, "n", "second").unwrap();
        assert_eq!(ba.next().await.unwrap().data, "second");

        for (groups, id, reason) in [
            (&[a, c][..], id.as_str(), "id of another stream"),
            (&[a, b], "17", "id of another stream"),
            (
                &[a, b],
                &format!("{a}:1,{b}:1"),
                "id older than the history",
            ),
            (&[a, b], "garbage", "not an id"),
            (&[a, b], &format!("{a}:1,,{b}:2"), "not an id"),
            (&[a, b], &format!("{a}:1,{a}:2"), "not an id"),
        ] {
            let mut client = open(addr, groups, Some(id)).await;
            let reset = client.next().await.unwrap();
            assert_eq!(reset.event, sse::STREAM_RESET, "{id}");
            assert_eq!(reset.data, format!("{{\"reason\":\"{reason}\"}}"), "{id}");
            // The reset's id is the stream's: reconnecting with it resumes.
            let resumed = open(addr, groups, Some(&reset.id)).await;
            let live = sse::publish!(groups[1], "n", "after the reset").unwrap();
            for mut client in [client, resumed] {
                let event = client.next().await.unwrap();
                assert_eq!(event.data, "after the reset", "{id}");
                assert!(event.id.ends_with(&format!(":{live}")), "{}", event.id);
            }
        }
    }
}
