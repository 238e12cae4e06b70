//! The hub's counters, as a running hub sees real clients: published, delivered, replayed,
//! dropped; the Prometheus route; and the `tracing` events a hub emits.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{routing::get, Router};
use sse_tests::{eventually, raw_get, Client};
use tokio::io::AsyncReadExt;
use tracing::{
    field::{Field, Visit},
    span,
};

/// A hub of its own, so the counts are this test's alone, streaming group `g`.
async fn serve(hub: &sse::Hub) -> String {
    format!("http://{}/", sse_tests::serve_hub(hub, "g").await)
}

#[tokio::test]
async fn published_delivered_and_replayed_are_counted() {
    let hub = sse::Hub::new(sse::Config::default());
    let url = serve(&hub).await;
    hub.publish("g", None, "nobody listens yet").unwrap();

    let mut a = Client::open(&url, &[]).await;
    let mut b = Client::open(&url, &[]).await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 2).await;
    let first = hub.publish("g", Some("n"), "to both").unwrap();
    a.next().await.unwrap();
    b.next().await.unwrap();
    eventually("delivered twice", || hub.stats().delivered == 2).await;
    let stats = hub.stats();
    assert_eq!((stats.groups, stats.open_streams), (1, 2));
    assert_eq!((stats.published, stats.replayed, stats.dropped), (2, 0, 0));

    drop(a);
    eventually("a left", || hub.group_stats("g").subscribers == 1).await;
    for i in 0..3 {
        hub.publish("g", Some("n"), format_args!("missed {i}"))
            .unwrap();
    }
    b.take(3).await;
    let mut a = Client::open(&url, &[("last-event-id", &first.to_string())]).await;
    let replayed: Vec<String> = a.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(replayed, ["missed 0", "missed 1", "missed 2"]);
    eventually("all counted", || hub.stats().delivered == 2 + 3 + 3).await;
    let stats = hub.stats();
    assert_eq!(
        (stats.published, stats.replayed, stats.open_streams),
        (5, 3, 2)
    );
}

#[tokio::test]
async fn a_stream_cut_for_lagging_counts_as_dropped() {
    // A queue of 4 events; the client does not read while 200 events of 60 KB are published,
    // far more than the sockets' buffers hold, so the stream falls behind and is cut.
    let hub = sse::Hub::new(
        sse::Config::default()
            .subscriber_queue(4)
            .history(8, Duration::from_secs(60)),
    );
    let addr = sse_tests::serve_hub(&hub, "g").await;
    let mut tcp = raw_get(addr, "/", "").await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        hub.publish("g", None, &big).unwrap();
    }
    // Now read: the server finds the stream too far behind and ends it.
    let mut end = Vec::new();
    sse_tests::within(async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            end.extend_from_slice(&buf[..n]);
            let keep = end.len().saturating_sub(64);
            end.drain(..keep);
        }
    })
    .await;
    assert!(
        String::from_utf8_lossy(&end).ends_with(": too far behind, reconnect\n\n"),
        "{:?}",
        String::from_utf8_lossy(&end)
    );
    eventually("dropped counted", || hub.stats().dropped == 1).await;
    let stats = hub.stats();
    assert_eq!(stats.published, 200);
    assert!(stats.delivered < 200, "{stats:?}");
}

#[tokio::test]
async fn the_metrics_route_serves_prometheus_text() {
    let app = Router::new().route("/metrics", get(sse::metrics));
    let addr = sse_tests::serve(app).await;
    sse::publish!("metrics-test", "counted").unwrap();
    let response = sse_tests::request(&format!("http://{addr}/metrics"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for name in [
        "sse_groups",
        "sse_open_streams",
        "sse_events_published_total",
        "sse_events_delivered_total",
        "sse_events_replayed_total",
        "sse_streams_dropped_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} in {text}"
        );
    }
    let published: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("sse_events_published_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(published >= 1, "{text}");
}

/// Keeps the message of every `tracing` event of the `sse` crate.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn saw(&self, message: &str) -> bool {
        self.0.lock().unwrap().iter().any(|seen| seen == message)
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("sse")
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// One thread (`#[tokio::test]`'s runtime): server, client and the recorder all on it.
#[tokio::test]
async fn subscribe_publish_replay_cut_and_unsubscribe_are_traced() {
    // With a single Dispatch in the process, tracing-core caches a callsite's interest from
    // whichever thread reaches it first, here another test publishing without a subscriber
    // (tokio-rs/tracing#3611): a second live Dispatch makes it ask every subscriber.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let hub = sse::Hub::new(
        sse::Config::default()
            .subscriber_queue(1)
            .history(10, Duration::from_secs(60)),
    );
    // Streams written on this thread too, not by `sse`'s writer threads.
    let addr = sse_tests::serve_on_app_runtime(sse_tests::hub_app(&hub, "g")).await;
    let url = format!("http://{addr}/");

    let mut client = Client::open(&url, &[]).await;
    let first = hub.publish("g", None, "one").unwrap();
    client.next().await.unwrap();
    assert!(recorder.saw("subscribed"));
    assert!(recorder.saw("published"));
    drop(client);
    eventually("unsubscribed", || recorder.saw("unsubscribed")).await;

    hub.publish("g", None, "missed").unwrap();
    let mut client = Client::open(&url, &[("last-event-id", &first.to_string())]).await;
    assert_eq!(client.next().await.unwrap().data, "missed");
    assert!(recorder.saw("replaying what the client missed"));

    // Nothing else runs on this thread while these are published: the client falls behind.
    for i in 0..3 {
        hub.publish("g", None, format_args!("too many {i}"))
            .unwrap();
    }
    assert!(recorder.saw("subscribers too far behind: cut, they will resume"));
    assert_eq!(hub.stats().dropped, 1);
}
