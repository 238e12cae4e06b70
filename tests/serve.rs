//! `sse::serve` over real TCP: streams it writes to their sockets itself, and everything else,
//! which hyper serves as under `axum::serve`.

use std::{
    future::IntoFuture,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::ConnectInfo,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt,
    Router,
};
use sse_tests::{eventually, raw_get, raw_get_bytes, read_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hub of the test's own, its stream of group `g` at `/events`, and `/page`.
fn app(hub: &sse::Hub) -> Router {
    let hub = hub.clone();
    let group = sse::GroupName::new("g").unwrap();
    Router::new()
        .route(
            "/events",
            get(move |last: sse::LastEventId| async move { hub.stream([group], &last) }),
        )
        .route("/page", get(|| async { "a page" }))
}

/// Serves `app` with `serve` and counts the connections it accepts.
async fn serve_counting(app: Router, stall_timeout: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |tcp| {
        counter.fetch_add(1, Ordering::SeqCst);
        // Small, so a client that reads nothing stalls the server soon.
        let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(64 * 1024);
    });
    let server = sse::serve(listener, app).stall_timeout(stall_timeout);
    tokio::spawn(async move { server.await.unwrap() });
    (addr, connections)
}

async fn serve(app: Router) -> SocketAddr {
    serve_counting(app, Duration::from_secs(60)).await.0
}

/// Reads until the server closes the connection (or resets it); returns what came.
async fn read_to_close(tcp: &mut tokio::net::TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0; 64 * 1024];
    within(async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn a_stream_is_raw_event_bytes_that_end_with_the_connection() {
    let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
    let addr = serve(app(&hub)).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
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

    eventually("subscribed", || hub.subscriber_count("g") == 1).await;
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
    let (addr, connections) = serve_counting(app, Duration::from_secs(60)).await;
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
    // A stream asked for on a connection hyper serves is served by hyper, and still a stream.
    let stream = within(
        client
            .get(format!("http://{addr}/events"))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["transfer-encoding"], "chunked");
    let mut client = sse_tests::Client::from_response(stream);
    eventually("subscribed", || hub.subscriber_count("g") == 1).await;
    let id = hub.publish("g", Some("yo"), "through hyper").unwrap();
    let event = client.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id),
        ("through hyper", id.to_string())
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
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
    let addr = serve(app).await;
    let tcp = raw_get(addr, "/events/mine", "").await;
    let port = tcp.local_addr().unwrap().port();
    eventually("subscribed by port", || {
        sse::hub().subscriber_count(&format!("port.{port}")) == 1
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
    let (addr, _) = serve_counting(app(&hub), Duration::from_millis(300)).await;
    let mut stalled = raw_get_bytes(addr, "/events", b"", Some(4096)).await;
    eventually("subscribed", || hub.subscriber_count("g") == 1).await;
    let chunk = "x".repeat(8 * 1024);
    for _ in 0..1_000 {
        hub.publish("g", None, &chunk).unwrap();
    }
    eventually("stalled stream closed", || hub.open_streams() == 0).await;
    // What the socket held arrives, then the end: 8 MB were published, far less came.
    let received = read_to_close(&mut stalled).await;
    assert!(received.len() < 4 * 1024 * 1024, "{}", received.len());
}

#[tokio::test]
async fn a_client_that_sends_more_on_a_stream_is_disconnected() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = serve(app(&hub)).await;
    let mut tcp = raw_get(addr, "/events", "").await;
    read_until(&mut tcp, "retry: 3000\n\n").await;
    eventually("subscribed", || hub.open_streams() == 1).await;
    tcp.write_all(b"GET /page HTTP/1.1\r\n\r\n").await.unwrap();
    eventually("closed", || hub.open_streams() == 0).await;
    assert!(!read_to_close(&mut tcp).await.contains("a page"));
}

#[tokio::test]
async fn a_head_too_long_to_read_here_is_served_by_hyper() {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = serve(app(&hub)).await;
    let padding = format!("X-Padding: {}\r\n", "p".repeat(20 * 1024));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{padding}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let head = read_until(&mut tcp, "retry: 3000\n\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    eventually("subscribed", || hub.subscriber_count("g") == 1).await;
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
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    // A kept-alive connection that hyper serves, between two requests.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut kept, "a page").await;
    eventually("subscribed", || hub.open_streams() == 1).await;

    stop.send(()).unwrap();
    within(server).await.unwrap().unwrap();
    assert!(read_to_close(&mut stream).await.ends_with("retry: 500\n\n"));
    assert_eq!(read_to_close(&mut idle).await, "");
    assert_eq!(read_to_close(&mut kept).await, "");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
