//! No event lost, no client can hurt the others: replay, slow consumers, limits, hostile input,
//! shutdown. Each test is one line of the README's "Guarantees" section.

use std::{net::SocketAddr, sync::Once, time::Duration};

use axum::{
    extract::Path,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use sse_tests::{
    eventually, parse_events, raw_get_bytes, read_body_to_end, request, rss_bytes, within, Client,
    Event,
};

/// Any group, named in the path.
#[sse::subscribe]
async fn group_stream(Path(group): Path<String>) -> Result<sse::GroupName, Response> {
    sse::GroupName::new(group).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

const HISTORY: usize = 20_000;
const QUEUE: usize = 2_000;
const MAX_EVENT: usize = 256 * 1024;

async fn server() -> SocketAddr {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let config = sse::Config::default()
            .history(HISTORY, Duration::from_secs(300))
            .subscriber_queue(QUEUE)
            .max_event_bytes(MAX_EVENT)
            .max_last_event_id_len(32);
        sse::init(config).unwrap();
    });
    sse_tests::serve(Router::new().route("/events/{group}", get(group_stream))).await
}

/// A server for `hub` alone, streaming group `g` at `/g`, with graceful shutdown on `stop`.
async fn own_server(
    hub: &sse::Hub,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let handler_hub = hub.clone();
    let app = Router::new().route(
        "/g",
        get(move |last: sse::LastEventId| async move {
            handler_hub.subscribe([sse::GroupName::new("g").unwrap()], &last)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown_hub = hub.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                match stop {
                    Some(stop) => {
                        let _ = stop.await;
                        shutdown_hub.shutdown();
                    }
                    None => std::future::pending().await,
                }
            })
            .await
            .unwrap();
    });
    (addr, server)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

fn datas(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// Held by the tests that measure this process's memory, so they don't measure each other.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn subscribed(group: &str, n: usize) {
    eventually(&format!("{n} subscribers on {group}"), || {
        sse::hub().group_stats(group).subscribers == n
    })
    .await;
}

#[tokio::test]
async fn replay_resumes_after_the_last_event_id_from_header_or_query() {
    let addr = server().await;
    let stream = url(addr, "/events/replay");
    let mut first = Client::open(&stream, &[]).await;
    subscribed("replay", 1).await;
    let ids: Vec<String> = (0..5)
        .map(|i| sse::publish!("replay", "n", "{i}").unwrap().to_string())
        .collect();
    assert_eq!(datas(&first.take(5).await), ["0", "1", "2", "3", "4"]);
    drop(first);

    let mut again = Client::open(&stream, &[("last-event-id", &ids[1])]).await;
    let missed = again.take(3).await;
    assert_eq!(datas(&missed), ["2", "3", "4"]);
    assert_eq!(
        missed.iter().map(|e| &e.id).collect::<Vec<_>>(),
        ids[2..].iter().collect::<Vec<_>>()
    );
    sse::publish!("replay", "n", "5").unwrap();
    assert_eq!(again.next().await.unwrap().data, "5");

    let mut by_query = Client::open(&format!("{stream}?lastEventId={}", ids[3]), &[]).await;
    assert_eq!(datas(&by_query.take(2).await), ["4", "5"]);
}

#[tokio::test]
async fn no_gap_and_no_duplicate_across_reconnects_while_publishing() {
    let addr = server().await;
    let stream = url(addr, "/events/handover");
    const TOTAL: usize = 3_000;
    let mut client = Client::open(&stream, &[]).await;
    subscribed("handover", 1).await;
    let publisher = std::thread::spawn(|| {
        (0..TOTAL)
            .map(|i| {
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                sse::publish!("handover", "n", "{i}").unwrap().to_string()
            })
            .collect::<Vec<_>>()
    });
    let mut got: Vec<(String, String)> = Vec::new();
    let mut reconnects = 0;
    while got.len() < TOTAL {
        // Read a few hundred events, then hang up and come back with the last id.
        for _ in 0..400 {
            match client.next().await {
                Some(event) => got.push((event.id, event.data)),
                None => break,
            }
            if got.len() == TOTAL {
                break;
            }
        }
        reconnects += 1;
        assert!(reconnects < 100, "too many reconnects");
        let last = got.last().map(|(id, _)| id.clone()).unwrap_or_default();
        client = Client::open(&stream, &[("last-event-id", &last)]).await;
    }
    let ids = publisher.join().unwrap();
    let expected: Vec<(String, String)> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i.to_string()))
        .collect();
    assert_eq!(got, expected);
    assert!(reconnects >= 7);
}

/// The first event of a stream opened with `last_event_id` (as raw header bytes).
async fn first_event_with(addr: SocketAddr, group: &str, last_event_id: &[u8]) -> Event {
    use tokio::io::AsyncReadExt;

    let mut header = b"Last-Event-ID: ".to_vec();
    header.extend_from_slice(last_event_id);
    header.extend_from_slice(b"\r\n");
    let mut tcp = raw_get_bytes(addr, &format!("/events/{group}"), &header, None).await;
    let mut seen = Vec::new();
    within(async {
        loop {
            let mut buf = [0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            assert!(
                seen.starts_with(b"HTTP/1.0 200"),
                "{:?}",
                String::from_utf8_lossy(&seen)
            );
            let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if let Some(first) = parse_events(seen[at + 4..].to_vec())
                .await
                .into_iter()
                .next()
            {
                return first;
            }
        }
    })
    .await
}

#[tokio::test]
async fn unusable_last_event_ids_get_an_explicit_stream_reset() {
    let addr = server().await;
    let _listener = Client::open(&url(addr, "/events/reset"), &[]).await;
    subscribed("reset", 1).await;
    let now = sse::publish!("reset", "n", "now").unwrap().get();
    let cases: [(&[u8], &str); 6] = [
        (b"garbage", "not an id"),
        (b"-1", "not an id"),
        (b"99999999999999999999999", "not an id"),
        (b"\xff\xfe", "not an id"),
        (&[b'1'; 40], "id too long"),
        (
            format!("{}", now + 1_000_000).leak().as_bytes(),
            "unknown id",
        ),
    ];
    for (last_event_id, reason) in cases {
        let reset = first_event_with(addr, "reset", last_event_id).await;
        assert_eq!(reset.event, sse::STREAM_RESET, "{last_event_id:?}");
        assert_eq!(reset.data, format!("{{\"reason\":\"{reason}\"}}"));
        let id: u64 = reset.id.parse().unwrap();
        assert!(id >= now, "the reset's id resumes from now on");
    }

    // After a reset, the reset's own id resumes exactly.
    let mut client =
        Client::open(&url(addr, "/events/reset"), &[("last-event-id", "garbage")]).await;
    let reset = client.next().await.unwrap();
    let later = sse::publish!("reset", "n", "later").unwrap();
    assert_eq!(client.next().await.unwrap().data, "later");
    drop(client);
    let mut resumed =
        Client::open(&url(addr, "/events/reset"), &[("last-event-id", &reset.id)]).await;
    let event = resumed.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id),
        ("later", later.to_string())
    );
}

#[tokio::test]
async fn an_id_older_than_the_history_is_a_reset_not_a_silent_gap() {
    let hub = sse::Hub::new(sse::Config::default().history(5, Duration::from_secs(300)));
    let (addr, _server) = own_server(&hub, None).await;
    let _listener = Client::open(&url(addr, "/g"), &[]).await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let ids: Vec<String> = (0..10)
        .map(|i| hub.publish("g", None, i).unwrap().to_string())
        .collect();
    let mut too_old = Client::open(&url(addr, "/g"), &[("last-event-id", &ids[1])]).await;
    let reset = too_old.next().await.unwrap();
    assert_eq!(reset.event, sse::STREAM_RESET);
    assert_eq!(reset.data, r#"{"reason":"id older than the history"}"#);
    let mut recent = Client::open(&url(addr, "/g"), &[("last-event-id", &ids[6])]).await;
    assert_eq!(datas(&recent.take(3).await), ["7", "8", "9"]);
}

#[tokio::test]
async fn an_id_of_several_groups_resumes_a_stream_of_one_of_them() {
    let addr = server().await;
    let _b = Client::open(&url(addr, "/events/o-b"), &[]).await;
    subscribed("o-b", 1).await;
    let b1 = sse::publish!("o-b", "b1").unwrap();
    sse::publish!("o-b", "b2").unwrap();
    // What a stream of `o-a` and `o-b` would have sent after `b1` (short names: this server
    // takes ids of up to 32 bytes).
    let id = format!("o-a:1,o-b:{b1}");
    let mut resumed = Client::open(&url(addr, "/events/o-b"), &[("last-event-id", &id)]).await;
    assert_eq!(datas(&resumed.take(1).await), ["b2"]);
    // An id that does not name the group cannot be resumed from.
    let mut other = Client::open(&url(addr, "/events/o-b"), &[("last-event-id", "o-a:1")]).await;
    let reset = other.next().await.unwrap();
    assert_eq!(reset.event, sse::STREAM_RESET);
    assert_eq!(reset.data, r#"{"reason":"id of another stream"}"#);
    // A forged id from before the group existed cannot be resumed from.
    let mut forged = Client::open(&url(addr, "/events/o-b"), &[("last-event-id", "1")]).await;
    assert_eq!(forged.next().await.unwrap().event, sse::STREAM_RESET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_cut_off_without_hurting_the_others_and_recovers_everything() {
    const EVENTS: usize = 10_000;
    let addr = server().await;
    let stream = url(addr, "/events/stall");
    let mut fast = Vec::new();
    for _ in 0..5 {
        fast.push(Client::open(&stream, &[]).await);
    }
    // Asks for the stream, then never reads: a tiny receive buffer makes it stall quickly.
    let mut stalled = raw_get_bytes(addr, "/events/stall", b"", Some(4096)).await;
    subscribed("stall", 6).await;
    let _measuring = MEMORY.lock().await;
    let rss_before = rss_bytes();

    // Publishing from a blocking thread, so the server's runtime is never blocked.
    let publisher = tokio::task::spawn_blocking(|| {
        let padding = "x".repeat(200);
        (0..EVENTS)
            .map(|i| {
                if i % 5 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                sse::publish!("stall", "n", "{i} {padding}")
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    });
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let events = client.take(EVENTS).await;
                (events, client)
            })
        })
        .collect();
    let ids = within(publisher).await.unwrap();
    let expected: Vec<(String, String)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), format!("{i} {}", "x".repeat(200))))
        .collect();
    let mut still_open = Vec::new();
    for reader in readers {
        let (events, client) = within(reader).await.unwrap();
        let got: Vec<(String, String)> = events.into_iter().map(|e| (e.id, e.data)).collect();
        assert!(got == expected, "a fast client missed or reordered events");
        still_open.push(client);
    }
    // Cut by the publishes that left it too far behind, though its socket is still open.
    assert_eq!(sse::hub().group_stats("stall").subscribers, 5);
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");

    // When it reads again, it finds the end of its stream, comes back, and misses nothing.
    let body = read_body_to_end(&mut stalled).await;
    assert!(body.ends_with(b": too far behind, reconnect\n\n"));
    let before_cut = parse_events(body).await;
    assert!(before_cut.len() < EVENTS, "it was not cut");
    let last_id = before_cut.last().map(|e| e.id.clone()).unwrap_or_default();
    let mut back = Client::open(&stream, &[("last-event-id", &last_id)]).await;
    let rest = back.take(EVENTS - before_cut.len()).await;
    let all: Vec<(String, String)> = before_cut
        .into_iter()
        .chain(rest)
        .map(|e| (e.id, e.data))
        .collect();
    assert!(all == expected, "the stalled client lost events");
}

#[tokio::test]
async fn too_many_streams_get_503_with_retry_after() {
    let hub = sse::Hub::new(sse::Config::default().max_streams(3));
    let (addr, _server) = own_server(&hub, None).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Client::open(&url(addr, "/g"), &[]).await);
    }
    let refused = request(&url(addr, "/g"), &[]).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(
        refused.text().await.unwrap(),
        "too many open streams, try again later"
    );
    open.pop();
    eventually("a slot is free", || hub.stats().open_streams == 2).await;
    Client::open(&url(addr, "/g"), &[]).await;
}

#[tokio::test]
async fn oversized_events_and_hostile_names_are_refused_and_inject_nothing() {
    let addr = server().await;
    let mut client = Client::open(&url(addr, "/events/hostile"), &[]).await;
    subscribed("hostile", 1).await;

    let huge = "x".repeat(MAX_EVENT + 1);
    let err = sse::publish!("hostile", "big", huge).unwrap_err();
    assert!(
        matches!(
            err,
            sse::PublishError::TooLarge {
                max_bytes: MAX_EVENT,
                ..
            }
        ),
        "{err}"
    );
    for name in ["a\nevent: forged", "a\rb", "a\0b", ""] {
        let err = sse::publish!("hostile", name, "x").unwrap_err();
        assert!(
            matches!(err, sse::PublishError::InvalidEvent(_)),
            "{name:?}: {err}"
        );
    }
    for group in ["hostile\n", "hostile group", "", &"g".repeat(100)] {
        let err = sse::publish!(group, "n", "x").unwrap_err();
        assert!(
            matches!(err, sse::PublishError::InvalidGroup(_)),
            "{group:?}: {err}"
        );
    }
    // The largest event that fits is delivered intact, and is the first thing the client sees.
    let big = "é".repeat((MAX_EVENT - 100) / 2);
    sse::publish!("hostile", "big", &big).unwrap();
    let event = client.next().await.unwrap();
    assert_eq!((event.event.as_str(), event.data.len()), ("big", big.len()));
    assert!(event.data == big);

    // A hostile group name in a URL is the handler's 400, not a panic.
    let bad = request(&url(addr, "/events/a%0Aevent:%20forged"), &[]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    // Line breaks smuggled through the query string are only an unusable id.
    let mut smuggled = Client::open(
        &url(
            addr,
            "/events/hostile?lastEventId=1%0D%0Aevent:%20forged%0D%0A",
        ),
        &[],
    )
    .await;
    let reset = smuggled.next().await.unwrap();
    assert_eq!(reset.event, sse::STREAM_RESET);
    sse::publish!("hostile", "n", "after").unwrap();
    assert_eq!(smuggled.next().await.unwrap().data, "after");
}

#[tokio::test]
async fn ten_thousand_connects_and_disconnects_leak_nothing() {
    let hub = sse::Hub::new(sse::Config::default().history(0, Duration::ZERO));
    let (addr, _server) = own_server(&hub, None).await;
    let cycle = |n: usize| async move {
        for _ in 0..n {
            let mut tcp = raw_get_bytes(addr, "/g", b"", None).await;
            sse_tests::read_until(&mut tcp, "retry: 3000\n\n").await;
        }
    };
    let run = |total: usize| {
        futures_util::future::join_all((0..8).map(move |_| tokio::spawn(cycle(total / 8))))
    };
    let _measuring = MEMORY.lock().await;
    run(800).await;
    eventually("warm-up streams closed", || hub.stats().open_streams == 0).await;
    let baseline = rss_bytes();
    run(10_000).await;
    eventually("all streams closed", || hub.stats().open_streams == 0).await;
    assert_eq!(hub.group_stats("g").subscribers, 0);
    assert_eq!(hub.stats().groups, 0);
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(
        grown < 16 << 20,
        "memory grew by {grown} bytes over 10,000 cycles"
    );
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_retry_hint_and_refuses_publishers() {
    let hub = sse::Hub::new(sse::Config::default());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, server) = own_server(&hub, Some(stopped)).await;
    let mut raw = raw_get_bytes(addr, "/g", b"", None).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::open(&url(addr, "/g"), &[]).await);
    }
    eventually("subscribed", || hub.group_stats("g").subscribers == 4).await;

    stop.send(()).unwrap();
    within(server).await.unwrap();
    let body = read_body_to_end(&mut raw).await;
    assert!(
        body.ends_with(b"retry: 500\n\n"),
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    for mut client in clients {
        assert!(client.next().await.is_none(), "the stream ended");
    }
    let err = hub.publish("g", None, "too late").unwrap_err();
    assert!(matches!(err, sse::PublishError::ShutDown));
    assert_eq!(hub.stats().open_streams, 0);
}
