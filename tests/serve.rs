//! `sse::serve` over real TCP: streams it writes to their sockets itself, and everything else,
//! which hyper serves as under `axum::serve`.

use std::{
    future::IntoFuture,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::ConnectInfo,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    serve::{Listener, ListenerExt},
    Router,
};
use sse_tests::{eventually, one_page, raw_get, raw_get_bytes, read_to_close, read_until, within};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A hub of the test's own, its stream of group `g` at `/events`, and `/page`.
fn app(hub: &sse::Hub) -> Router {
    let hub = hub.clone();
    let group = sse::GroupName::new("g").unwrap();
    Router::new()
        .route(
            "/events",
            get(move |last: sse::LastEventId| async move { hub.subscribe([group], &last) }),
        )
        .route("/page", get(|| async { "a page" }))
}

/// A connection that loaded `/page`, kept alive, then sent `request`.
async fn after_a_page(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    one_page(&mut tcp).await;
    tcp.write_all(request).await.unwrap();
    tcp
}

/// A loopback listener whose sockets have a small send buffer, and how many it accepted.
async fn listen_counting() -> (
    impl Listener<Addr = SocketAddr>,
    SocketAddr,
    Arc<AtomicUsize>,
) {
    let (listener, addr) = sse_tests::listen().await;
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (listener, addr, connections)
}

#[tokio::test]
async fn a_stream_is_raw_event_bytes_that_end_with_the_connection() {
    let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
    let addr = sse_tests::serve(app(&hub)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let head = read_until(&mut tcp, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for field in [
        "content-type: text/event-stream\r\n",
        "cache-control: no-cache\r\n",
        "connection: close\r\n",
        "date: ",
    ] {
        assert!(head.contains(field), "{field:?} in {head}");
    }
    assert!(!head.contains("transfer-encoding"), "{head}");

    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let first = hub.publish("g", Some("yo"), "a\nb").unwrap();
    let second = hub.publish("g", None, "").unwrap();
    hub.shutdown();
    // No chunk framing: the body is the events, and the close of the connection ends it.
    let all = head + &read_to_close(&mut tcp).await;
    let (_, body) = all.split_once("\r\n\r\n").unwrap();
    assert_eq!(
        body,
        format!("retry: 3000\n\nevent: stream-start\ndata: \nid: {start}\n\nevent: yo\ndata: a\ndata: b\nid: {first}\n\ndata: \nid: {second}\n\nretry: 500\n\n", start = first.get() - 1)
    );
}

#[tokio::test]
async fn other_requests_and_refusals_are_served_by_hyper_on_a_kept_alive_connection() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[sse::subscribe]
    async fn refused() -> Result<sse::GroupName, Response> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        Err((StatusCode::FORBIDDEN, "Please login").into_response())
    }

    let hub = sse::Hub::new(sse::Config::default());
    let app = app(&hub).route("/refused", get(refused));
    let (listener, addr, connections) = listen_counting().await;
    tokio::spawn(sse::serve(listener, app).into_future());
    // One pooled client: every request below reuses the first connection.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = within(
        client
            .get(format!("http://{addr}/refused"))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(answer.text().await.unwrap(), "Please login");
    assert_eq!(CALLS.load(Ordering::SeqCst), 1, "the handler ran once");
    for _ in 0..2 {
        let page = within(client.get(format!("http://{addr}/page")).send())
            .await
            .unwrap();
        assert_eq!(page.text().await.unwrap(), "a page");
    }
    let post = within(client.post(format!("http://{addr}/page")).body("x").send())
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    // A stream asked for on a connection hyper serves: hyper hands the socket back, and the
    // stream is written as a first request's is, without chunked framing.
    let stream = within(
        client
            .get(format!("http://{addr}/events"))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["connection"], "close");
    assert!(!stream.headers().contains_key("transfer-encoding"));
    let mut client = sse_tests::Client::from_response(stream);
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let id = hub.publish("g", Some("yo"), "handed back").unwrap();
    let event = client.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id),
        ("handed back", id.to_string())
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stream_asked_for_after_other_requests_is_written_like_a_first_one() {
    const STREAM: &[u8] = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
    let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
    let big = "x".repeat(1 << 20) + "end of page";
    let app = app(&hub).route("/big", get(move || std::future::ready(big.clone())));
    let addr = sse_tests::serve(app).await;
    // After a page, as a browser's `EventSource` on the page's connection; and sent together
    // with another request (pipelined), whose answer, far larger than the socket's buffers,
    // comes whole before the stream.
    let mut after = after_a_page(addr, STREAM).await;
    let mut pipelined = TcpStream::connect(addr).await.unwrap();
    pipelined
        .write_all(&[b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", STREAM].concat())
        .await
        .unwrap();
    let page = read_until(&mut pipelined, "end of page").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &page[..100]);
    let (_, body) = page.split_once("\r\n\r\n").unwrap();
    let (whole, read_past_the_page) = body.split_once("end of page").unwrap();
    assert!(whole.len() == 1 << 20 && whole.bytes().all(|b| b == b'x'));
    let read_past_the_page = read_past_the_page.to_owned();
    eventually("both subscribed", || hub.group_stats("g").subscribers == 2).await;
    let id = hub.publish("g", Some("yo"), "kept alive").unwrap();
    hub.shutdown();
    for (what, tcp, read) in [
        ("after a page", &mut after, String::new()),
        ("pipelined", &mut pipelined, read_past_the_page),
    ] {
        let all = read + &read_to_close(tcp).await;
        let (head, body) = all.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{what}: {head}");
        assert!(head.contains("connection: close"), "{what}: {head}");
        assert!(!head.contains("transfer-encoding"), "{what}: {head}");
        assert_eq!(
            body,
            format!("retry: 3000\n\nevent: stream-start\ndata: \nid: {start}\n\nevent: yo\ndata: kept alive\nid: {id}\n\nretry: 500\n\n", start = id.get() - 1),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_request_sent_after_a_handed_back_stream_closes_it() {
    let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
    let addr = sse_tests::serve(app(&hub)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    one_page(&mut tcp).await;
    tcp.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\nGET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Not answered: a stream's connection carries nothing more.
    assert_eq!(read_to_close(&mut tcp).await, "");
    eventually("no stream left", || hub.group_stats("g").subscribers == 0).await;
}

#[tokio::test]
async fn handlers_get_the_peer_address_on_both_paths() {
    #[sse::subscribe]
    async fn by_port(
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ) -> Result<sse::GroupName, StatusCode> {
        sse::GroupName::new(format!("port.{}", peer.port())).map_err(|_| StatusCode::BAD_REQUEST)
    }

    let app = Router::new().route("/events/mine", get(by_port)).route(
        "/who",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let addr = sse_tests::serve(app).await;
    let tcp = raw_get(addr, "/events/mine", "").await;
    let port = tcp.local_addr().unwrap().port();
    eventually("subscribed by port", || {
        sse::hub().group_stats(&format!("port.{port}")).subscribers == 1
    })
    .await;
    let who = sse_tests::http_client()
        .get(format!("http://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert!(who.text().await.unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn a_client_that_takes_nothing_is_disconnected_after_the_stall_timeout() {
    // A queue so deep that the subscription is never cut: only the stall timeout can end it.
    let hub = sse::Hub::new(
        sse::Config::default()
            .subscriber_queue(100_000)
            .history(10, Duration::from_secs(60)),
    );
    let (listener, addr) = sse_tests::listen().await;
    let server = sse::serve(listener, app(&hub)).stall_timeout(Duration::from_millis(300));
    tokio::spawn(server.into_future());
    let mut stalled = raw_get_bytes(addr, "/events", b"", Some(4096)).await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let chunk = "x".repeat(8 * 1024);
    for _ in 0..1_000 {
        hub.publish("g", None, &chunk).unwrap();
    }
    eventually("stalled stream closed", || hub.stats().open_streams == 0).await;
    // What the socket held arrives, then the end: 8 MB were published, far less came.
    let received = read_to_close(&mut stalled).await;
    assert!(received.len() < 4 * 1024 * 1024, "{}", received.len());
}

#[tokio::test]
async fn a_client_that_sends_more_on_a_stream_is_disconnected() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = sse_tests::serve(app(&hub)).await;
    let mut tcp = raw_get(addr, "/events", "").await;
    read_until(&mut tcp, "retry: 3000\n\n").await;
    eventually("subscribed", || hub.stats().open_streams == 1).await;
    tcp.write_all(b"GET /page HTTP/1.1\r\n\r\n").await.unwrap();
    eventually("closed", || hub.stats().open_streams == 0).await;
    assert!(!read_to_close(&mut tcp).await.contains("a page"));
}

/// The start of a request for a stream that never ends: no empty line.
const HALF_A_HEAD: &[u8] = b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n";

/// Sends `bytes` one at a time, 50 ms apart, until the server closes the connection; returns
/// what it answered.
async fn trickle(tcp: &mut TcpStream, bytes: impl Iterator<Item = u8>) -> String {
    let mut answer = Vec::new();
    within(async {
        for byte in bytes {
            if tcp.write_all(&[byte]).await.is_err() {
                break;
            }
            let mut buf = [0; 1024];
            match tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_head_not_received_in_time_is_closed_on_both_paths() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let hub = sse::Hub::new(sse::Config::default());
    let (listener, addr) = sse_tests::listen().await;
    let server = sse::serve(listener, app(&hub)).header_read_timeout(TIMEOUT);
    tokio::spawn(server.into_future());

    let silent = async {
        let since = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        (read_to_close(&mut tcp).await, since.elapsed())
    };
    let half = async {
        let since = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(HALF_A_HEAD).await.unwrap();
        (read_to_close(&mut tcp).await, since.elapsed())
    };
    // The timeout bounds the whole head, however often bytes come.
    let trickling = async {
        let since = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let bytes = HALF_A_HEAD.iter().copied().cycle();
        (trickle(&mut tcp, bytes).await, since.elapsed())
    };
    // Hyper's side: the head of a second request on a kept-alive connection.
    let kept = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        one_page(&mut tcp).await;
        let since = Instant::now();
        tcp.write_all(b"GET /page HTTP/1.1\r\nHo").await.unwrap();
        (read_to_close(&mut tcp).await, since.elapsed())
    };
    let (silent, half, trickling, kept) = tokio::join!(silent, half, trickling, kept);
    for (what, (answer, took)) in [
        ("silent", silent),
        ("half a head", half),
        ("trickling", trickling),
        ("kept alive", kept),
    ] {
        assert_eq!(answer, "", "{what}: closed without an answer");
        assert!(
            took >= TIMEOUT / 2 && took < 2 * TIMEOUT,
            "{what}: closed after {took:?}"
        );
    }
    // The server still serves.
    let page = within(
        sse_tests::http_client()
            .get(format!("http://{addr}/page"))
            .send(),
    )
    .await;
    assert_eq!(page.unwrap().text().await.unwrap(), "a page");
}

#[tokio::test]
async fn a_head_over_the_limit_is_refused_with_431_on_both_paths() {
    const LIMIT: usize = 16 * 1024;
    let hub = sse::Hub::new(sse::Config::default());
    let (listener, addr) = sse_tests::listen().await;
    tokio::spawn(
        sse::serve(listener, app(&hub))
            .max_head_bytes(LIMIT)
            .into_future(),
    );
    let padded = |path: &str, padding: usize| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nX-Padding: {}\r\n\r\n",
            "p".repeat(padding)
        )
    };

    // Just under the limit: a stream, written by `serve` itself (no chunked framing).
    let mut under = TcpStream::connect(addr).await.unwrap();
    let request = padded("/events", LIMIT - 200);
    assert!(request.len() < LIMIT);
    under.write_all(request.as_bytes()).await.unwrap();
    let head = read_until(&mut under, "retry: 3000").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // Over it: 431, to a first request, which `serve` reads, and to a later one, which hyper
    // reads.
    let first = TcpStream::connect(addr).await.unwrap();
    let mut later = TcpStream::connect(addr).await.unwrap();
    one_page(&mut later).await;
    for (mut tcp, path) in [(first, "/events"), (later, "/page")] {
        tcp.write_all(padded(path, LIMIT).as_bytes()).await.unwrap();
        let answer = read_to_close(&mut tcp).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{path}: {answer}"
        );
    }
    eventually("the stream still open", || {
        hub.group_stats("g").subscribers == 1
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_ends_every_connection_and_then_the_server() {
    let hub = sse::Hub::new(sse::Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal_hub = hub.clone();
    let server = tokio::spawn(
        sse::serve(listener, app(&hub))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                signal_hub.shutdown();
            })
            .into_future(),
    );
    let mut stream = raw_get(addr, "/events", "").await;
    read_until(&mut stream, "retry: 3000\n\n").await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // A kept-alive connection that hyper serves, between two requests.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    one_page(&mut kept).await;
    eventually("subscribed", || hub.stats().open_streams == 1).await;

    stop.send(()).unwrap();
    within(server).await.unwrap().unwrap();
    assert!(read_to_close(&mut stream).await.ends_with("retry: 500\n\n"));
    assert_eq!(read_to_close(&mut idle).await, "");
    assert_eq!(read_to_close(&mut kept).await, "");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_lets_the_requests_under_way_finish_on_both_paths() {
    let started = Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let slow = {
        let started = started.clone();
        get(move || {
            started.fetch_add(1, Ordering::SeqCst);
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|released| *released).await;
                "finished"
            }
        })
    };
    let hub = sse::Hub::new(sse::Config::default());
    let (listener, addr) = sse_tests::listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = sse::serve(listener, app(&hub).route("/slow", get(slow))).with_graceful_shutdown(
        async move {
            let _ = stopped.await;
        },
    );
    let server = tokio::spawn(server.into_future());

    // The first request of a connection, which `serve` reads (it accepts a stream)...
    let mut first = TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // ...and a later one on a kept-alive connection, which hyper reads.
    let mut later = after_a_page(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // A connection still sending its head has no request under way.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(HALF_A_HEAD).await.unwrap();
    eventually("both slow requests under way", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;

    stop.send(()).unwrap();
    assert_eq!(read_to_close(&mut half).await, "");
    assert!(!server.is_finished(), "two requests are still under way");
    release.send_replace(true);
    for (what, tcp) in [("first", &mut first), ("later", &mut later)] {
        let answer = read_to_close(tcp).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{what}: {answer}"
        );
        assert!(answer.ends_with("\r\n\r\nfinished"), "{what}: {answer}");
    }
    within(server).await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_ends_within_its_timeout_however_clients_stall() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
    let started = Arc::new(AtomicUsize::new(0));
    let never = {
        let started = started.clone();
        get(move || {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>()
        })
    };
    // A queue so deep that the stalled stream below is never cut.
    let hub = sse::Hub::new(
        sse::Config::default()
            .subscriber_queue(100_000)
            .history(10, Duration::from_secs(60)),
    );
    let app = app(&hub)
        .route("/never", get(never))
        .route("/big", get(|| async { "x".repeat(16 << 20) }));
    let (listener, addr) = sse_tests::listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal_hub = hub.clone();
    let server = sse::serve(listener, app)
        .shutdown_timeout(SHUTDOWN_TIMEOUT)
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
            signal_hub.shutdown();
        });
    let server = tokio::spawn(server.into_future());

    // A stream whose client reads nothing: the retry hint that would end it cannot be written.
    let mut stalled = raw_get_bytes(addr, "/events", b"", Some(4096)).await;
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;
    let chunk = "x".repeat(8 * 1024);
    for _ in 0..1_000 {
        hub.publish("g", None, &chunk).unwrap();
    }
    // A handler that never answers, on the first request of its connection...
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting
        .write_all(b"GET /never HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    eventually("the handler called", || started.load(Ordering::SeqCst) == 1).await;
    // ...and an answer too big for a client that reads nothing past its head, which hyper
    // writes.
    let mut big = raw_get_bytes(addr, "/big", b"", Some(4096)).await;
    read_until(&mut big, "\r\n\r\n").await;

    let since = Instant::now();
    stop.send(()).unwrap();
    within(server).await.unwrap().unwrap();
    let took = since.elapsed();
    // Without the timeout the stalled clients would hold the server forever; the margin above it
    // is for a loaded machine, where the closing itself can take seconds.
    assert!(
        took >= SHUTDOWN_TIMEOUT && took < SHUTDOWN_TIMEOUT + Duration::from_secs(20),
        "the server ended {took:?} after the signal"
    );
    // Every connection is closed, the stalled ones before all was sent.
    assert_eq!(read_to_close(&mut waiting).await, "");
    assert!(read_to_close(&mut stalled).await.len() < 8 << 20);
    assert!(read_to_close(&mut big).await.len() < 16 << 20);
}

#[tokio::test]
async fn a_listener_from_bind_holds_a_reconnection_storm_until_it_is_served() {
    for server in ["sse::serve", "axum::serve"] {
        // 3,000 clients connect while nothing accepts, as the clients of a restarted process
        // come back all at once. Past `TcpListener::bind`'s backlog of 1,024, the kernel would
        // drop their requests and `connect` would not return.
        let listener = sse::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3_000 {
            clients.push(within(TcpStream::connect(addr)).await.unwrap());
        }
        let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
        let app = app(&hub);
        match server {
            "sse::serve" => tokio::spawn(sse::serve(listener, app).into_future()),
            _ => tokio::spawn(axum::serve(listener, app).into_future()),
        };
        // The last one to come is served, once the server takes it.
        let last = clients.last_mut().unwrap();
        last.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(last).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{server}: {answer}"
        );
        assert!(answer.ends_with("a page"), "{server}: {answer}");
    }
}

/// `/thread`: a stream whose one event is the name of the thread that polled its body; and
/// `/page`.
fn thread_app() -> Router {
    let named = || async {
        let polled = futures_util::stream::once(async {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            Ok::<_, std::convert::Infallible>(axum::response::sse::Event::default().data(name))
        });
        axum::response::Sse::new(polled)
    };
    Router::new()
        .route("/thread", get(named))
        .route("/page", get(|| async { "a page" }))
}

#[tokio::test]
async fn streams_are_written_by_the_writer_threads_unless_the_app_runtime_is_asked_for() {
    let here = std::thread::current().name().unwrap().to_owned();
    for (writer_threads, expected) in [(true, "sse-writer"), (false, here.as_str())] {
        let (listener, addr) = sse_tests::listen().await;
        let server = sse::serve(listener, thread_app()).writer_threads(writer_threads);
        tokio::spawn(server.into_future());
        let mut first = raw_get(addr, "/thread", "").await;
        let request = b"GET /thread HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
        let mut after_page = after_a_page(addr, request).await;
        for tcp in [&mut first, &mut after_page] {
            let written = read_to_close(tcp).await;
            assert!(written.contains("connection: close\r\n"), "{written}");
            assert!(
                written.ends_with(&format!("\r\n\r\ndata: {expected}\n\n")),
                "writer threads {writer_threads}: {written}"
            );
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_stream_over_a_unix_socket_is_written_by_the_writer_threads_too() {
    let path = std::env::temp_dir().join(format!("sse-serve-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(sse::serve(listener, thread_app()).into_future());
    let mut unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    unix.write_all(b"GET /thread HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let written = read_to_close(&mut unix).await;
    std::fs::remove_file(&path).unwrap();
    assert!(written.contains("connection: close\r\n"), "{written}");
    assert!(
        written.ends_with("\r\n\r\ndata: sse-writer\n\n"),
        "{written}"
    );
}

#[tokio::test]
async fn many_streams_over_the_writer_threads_get_every_publish_and_keep_alive_and_end_with_their_clients(
) {
    // More streams than a writer thread's chunk of slots, twice: the second round reuses the
    // slots the first one left.
    const STREAMS: usize = 150;
    let hub = sse::Hub::new(sse::Config::default().keep_alive(Some(Duration::from_millis(200))));
    let addr = sse_tests::serve(app(&hub)).await;
    for round in ["one", "two"] {
        let mut clients = Vec::with_capacity(STREAMS);
        for _ in 0..STREAMS {
            let mut tcp = raw_get(addr, "/events", "").await;
            read_until(&mut tcp, "retry: 3000\n\n").await;
            clients.push(tcp);
        }
        eventually("all open", || hub.stats().open_streams == STREAMS).await;
        hub.publish("g", None, round).unwrap();
        for tcp in &mut clients {
            read_until(tcp, &format!("data: {round}\n")).await;
        }
        // Timers fire on the writer threads' streams, idle as they are now.
        for tcp in &mut clients {
            read_until(tcp, ":\n\n").await;
        }
        drop(clients);
        eventually("all closed", || hub.stats().open_streams == 0).await;
    }
}
