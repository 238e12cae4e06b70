//! Many hostile clients at once against `sse::serve`: heads that never end, heads that never
//! stop, bytes that are not HTTP. They are closed within the server's bounds, while everyone
//! else is served and memory stays bounded.

use std::{
    future::IntoFuture,
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use sse_tests::{eventually, one_page, read_to_close, rss_bytes, within, Client};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet};

/// How long a head may take.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Hostile clients of each kind.
const EACH: usize = 300;

/// Header lines of 1 KiB that never end a head, to write as many as wanted.
static PADDING: [u8; 64 * 1024] = {
    let mut padding = [b'p'; 64 * 1024];
    let mut at = 1022;
    while at + 4 <= padding.len() {
        padding[at] = b'\r';
        padding[at + 1] = b'\n';
        padding[at + 2] = b'X';
        padding[at + 3] = b':';
        at += 1024;
    }
    padding
};

const STREAM_HEAD_START: &[u8] =
    b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nX: ";

/// 8 KiB of a head that never ends, then nothing: what the server answered, and how long
/// after the last byte it closed.
async fn slow_head(mut tcp: TcpStream, kept_alive: bool) -> (String, Duration) {
    if kept_alive {
        one_page(&mut tcp).await;
    }
    tcp.write_all(STREAM_HEAD_START).await.unwrap();
    tcp.write_all(&PADDING[..8 * 1024]).await.unwrap();
    let since = Instant::now();
    (read_to_close(&mut tcp).await, since.elapsed())
}

/// A head that never stops: header bytes written as fast as the server takes them, up to
/// 1 MiB; what the server answered.
async fn endless_head(mut tcp: TcpStream, kept_alive: bool) -> String {
    if kept_alive {
        one_page(&mut tcp).await;
    }
    let (mut reading, mut writing) = tcp.into_split();
    let write = async move {
        let _ = writing.write_all(STREAM_HEAD_START).await;
        for _ in 0..16 {
            if writing.write_all(&PADDING).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(write, read_to_close(&mut reading)).1
}

/// Bytes that are not HTTP (the start of a TLS handshake); what the server answered.
async fn garbage(mut tcp: TcpStream, kept_alive: bool) -> String {
    if kept_alive {
        one_page(&mut tcp).await;
    }
    tcp.write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_and_endless_heads_leave_the_others_served_and_memory_bounded() {
    let hub = sse::Hub::new(sse::Config::default());
    let stream_hub = hub.clone();
    let group = sse::GroupName::new("g").unwrap();
    let app = Router::new()
        .route(
            "/events",
            get(move |last: sse::LastEventId| async move { stream_hub.subscribe([group], &last) }),
        )
        .route("/page", get(|| async { "a page" }));
    let (listener, addr) = sse_tests::listen().await;
    let server = sse::serve(listener, app)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_head_bytes(MAX_HEAD);
    tokio::spawn(server.into_future());
    let mut healthy = Client::open(&format!("http://{addr}/events"), &[]).await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let baseline = rss_bytes();

    // Half of each kind on the first request, which `serve` reads, half on a later one, which
    // hyper reads. Connected one after the other: a burst of 900 would overflow the listen
    // queue, and the kernel would drop some before the server sees them.
    let mut slow = JoinSet::new();
    let mut endless = JoinSet::new();
    let mut garbled = JoinSet::new();
    let connect = || async { TcpStream::connect(addr).await.unwrap() };
    for n in 0..EACH {
        let kept_alive = n % 2 == 1;
        slow.spawn(slow_head(connect().await, kept_alive));
        endless.spawn(endless_head(connect().await, kept_alive));
        garbled.spawn(garbage(connect().await, kept_alive));
    }

    // Meanwhile, everyone else is served: the stream gets every event, pages are answered.
    let pages = sse_tests::http_client();
    for n in 0..50 {
        let id = hub.publish("g", None, n.to_string()).unwrap();
        let event = healthy.next().await.unwrap();
        assert_eq!((event.data, event.id), (n.to_string(), id.to_string()));
        let page = within(pages.get(format!("http://{addr}/page")).send()).await;
        assert_eq!(page.unwrap().text().await.unwrap(), "a page");
    }

    // Heads that stop are closed at the timeout, unanswered; heads that go on are refused at
    // the limit; what is not HTTP gets 400.
    let slow = within(slow.join_all()).await;
    for (answer, took) in &slow {
        assert_eq!(answer, "");
        assert!(*took < 2 * HEADER_READ_TIMEOUT, "closed after {took:?}");
    }
    for answer in within(endless.join_all()).await {
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{answer:?}"
        );
    }
    for answer in within(garbled.join_all()).await {
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer:?}"
        );
    }
    // 300 heads that never stop, unbounded, would be 300 MiB; bounded, they are 5 MiB.
    let grown = rss_bytes().saturating_sub(baseline);
    assert!(grown < 64 << 20, "memory grew by {grown} bytes");
    // The stream is still served.
    let id = hub.publish("g", None, "after").unwrap();
    let event = healthy.next().await.unwrap();
    assert_eq!((event.data.as_str(), event.id), ("after", id.to_string()));
}
