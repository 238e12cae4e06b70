//! Where a stream starts, proven from outside: a client cut before its first event (by the
//! network, or for falling behind) comes back with the id of its `stream-start` and gets exactly
//! what was published while it was away. The client is a real library, `reqwest-eventsource`:
//! like a browser it resends the last id it saw, and it takes ids only from events it dispatches.
//! Each case runs under `sse::serve` and `axum::serve`.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{routing::get, Router};
use futures_util::StreamExt;
use reqwest_eventsource::{retry::Constant, EventSource};
use sse::{Config, GroupName, Hub, LastEventId};
use sse_tests::{eventually, within, Relay};
use tokio::{sync::mpsc, task::JoinHandle};

/// The `retry:` hint, and the library's own delay: clients come back soon.
const RETRY: Duration = Duration::from_millis(100);
/// How far a client may fall behind in the falling-behind case.
const QUEUE: usize = 2;

#[tokio::test]
async fn cut_before_the_first_event_one_group_sse_serve() {
    cut_before_the_first_event(sse_tests::serve, &["g"]).await;
}

#[tokio::test]
async fn cut_before_the_first_event_one_group_axum_serve() {
    cut_before_the_first_event(sse_tests::serve_with_axum, &["g"]).await;
}

#[tokio::test]
async fn cut_before_the_first_event_two_groups_sse_serve() {
    cut_before_the_first_event(sse_tests::serve, &["a", "b"]).await;
}

#[tokio::test]
async fn cut_before_the_first_event_two_groups_axum_serve() {
    cut_before_the_first_event(sse_tests::serve_with_axum, &["a", "b"]).await;
}

#[tokio::test]
async fn cut_for_falling_behind_before_reading_anything_sse_serve() {
    // Its streams written by this test's runtime: `sse`'s writer threads would write them while
    // this thread publishes.
    cut_for_falling_behind_before_reading_anything(sse_tests::serve_on_app_runtime).await;
}

#[tokio::test]
async fn cut_for_falling_behind_before_reading_anything_axum_serve() {
    cut_for_falling_behind_before_reading_anything(sse_tests::serve_with_axum).await;
}

/// A client gets its stream's start and nothing else; then the network cuts it, and keeps it
/// away while events are published. It comes back by itself, resumes from its start, and gets
/// exactly what it missed, then the live events.
async fn cut_before_the_first_event<F>(serve: impl FnOnce(Router) -> F, groups: &[&str])
where
    F: Future<Output = SocketAddr>,
{
    let hub = Hub::new(Config::default().retry(Some(RETRY)));
    let relay = Relay::start(serve(app(&hub, groups)).await).await;
    let mut client = Library::open(&format!("http://{}/events", relay.addr()));
    let start = client.next().await;
    assert_eq!(start.event, sse::STREAM_START);

    relay.hold();
    relay.cut();
    eventually("the client to come back, and wait", || relay.waiting() > 0).await;
    let missed = publish(&hub, groups, "missed", 3);
    relay.release();

    resumes_with_what_it_missed(&mut client, &start.id, &hub, groups, &missed).await;
}

/// A client has read its stream's start and nothing else when it falls more than the queue
/// behind, and the publish that overflows it cuts its stream. It comes back with its start's id
/// and gets what it missed, which the history still holds.
async fn cut_for_falling_behind_before_reading_anything<F>(serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let hub = Hub::new(
        Config::default()
            .retry(Some(RETRY))
            .subscriber_queue(QUEUE)
            .history(10 * QUEUE, Duration::from_secs(60)),
    );
    let groups = ["g"];
    let addr = serve(app(&hub, &groups)).await;
    let mut client = Library::open(&format!("http://{addr}/events"));
    let start = client.next().await;
    assert_eq!(start.event, sse::STREAM_START);

    // Nothing else runs on this thread (`#[tokio::test]`'s) while these are published: the
    // server has written none of them when the last one overflows the stream's queue.
    let missed = publish(&hub, &groups, "missed", QUEUE + 1);
    assert_eq!(hub.stats().dropped, 1, "the stream was cut");

    resumes_with_what_it_missed(&mut client, &start.id, &hub, &groups, &missed).await;
}

/// The client's next stream starts where its first one did (so it sent that id), and carries
/// `missed`, in order, then a live event: nothing lost, nothing twice.
async fn resumes_with_what_it_missed(
    client: &mut Library,
    start_id: &str,
    hub: &Hub,
    groups: &[&str],
    missed: &[String],
) {
    let resumed = client.next().await;
    assert_eq!(
        (resumed.event.as_str(), resumed.id.as_str()),
        (sse::STREAM_START, start_id),
        "the stream resumes from its start"
    );
    let mut got = Vec::new();
    for _ in missed {
        got.push(client.next().await.data);
    }
    assert_eq!(got, missed);
    let live = publish(hub, groups, "live", 1);
    assert_eq!(client.next().await.data, live[0]);
}

/// One stream of `groups` of `hub`, at `/events`.
fn app(hub: &Hub, groups: &[&str]) -> Router {
    let hub = hub.clone();
    let groups: Vec<GroupName> = groups.iter().map(|g| GroupName::new(*g).unwrap()).collect();
    Router::new().route(
        "/events",
        get(move |last: LastEventId| std::future::ready(hub.subscribe(groups.clone(), &last))),
    )
}

/// Publishes `count` events named `name`, to each of `groups` in turn; returns their data.
fn publish(hub: &Hub, groups: &[&str], name: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let data = format!("{name} {i}");
            hub.publish(groups[i % groups.len()], Some(name), &data)
                .unwrap();
            data
        })
        .collect()
}

/// A `reqwest-eventsource` client, driven in the background as an application would drive it,
/// so it reconnects by itself while the test does something else.
struct Library {
    events: mpsc::UnboundedReceiver<sse_tests::Event>,
    driving: JoinHandle<()>,
}

impl Library {
    fn open(url: &str) -> Library {
        let mut source = EventSource::new(sse_tests::http_client().get(url)).unwrap();
        source.set_retry_policy(Box::new(Constant::new(RETRY, None)));
        let (sender, events) = mpsc::unbounded_channel();
        let driving = tokio::spawn(async move {
            while let Some(item) = source.next().await {
                match item {
                    Ok(reqwest_eventsource::Event::Message(event)) => {
                        if sender.send(event).is_err() {
                            return;
                        }
                    }
                    Ok(reqwest_eventsource::Event::Open) => {}
                    // A cut ends the stream with an error; the library tries again.
                    Err(error) => eprintln!("reqwest-eventsource: {error}"),
                }
            }
        });
        Library { events, driving }
    }

    /// The next event it dispatches (its parser is the harness's), `stream-start` included.
    async fn next(&mut self) -> sse_tests::Event {
        within(self.events.recv())
            .await
            .expect("reqwest-eventsource gave up")
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        self.driving.abort();
    }
}
