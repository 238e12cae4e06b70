//! Streams over HTTP/2 without TLS (h2c, prior knowledge), many on one connection; and streams
//! behind tower-http's `CorsLayer`, with the headers a credentialed cross-origin `EventSource`
//! needs.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum::{
    extract::Path,
    http::{header, HeaderValue, Method, StatusCode},
    routing::get,
    serve::ListenerExt,
    Router,
};
use sse_tests::{eventually, http_client, within, Client};
use tower_http::cors::{AllowOrigin, CorsLayer};

#[sse::subscribe]
async fn group_events(Path(group): Path<String>) -> Result<sse::GroupName, StatusCode> {
    sse::GroupName::new(group).map_err(|_| StatusCode::BAD_REQUEST)
}

fn app() -> Router {
    Router::new().route("/events/{group}", get(group_events))
}

/// Serves `app` and counts the connections it accepts.
async fn serve_counting(app: Router) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    tokio::spawn(async move { sse::serve(listener, app).await.unwrap() });
    (addr, connections)
}

#[tokio::test]
async fn many_streams_share_one_http2_connection() {
    const STREAMS: usize = 20;
    let (addr, connections) = serve_counting(app()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let response = within(client.get(format!("http://{addr}/events/h2.{i}")).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        streams.push(Client::from_response(response));
    }
    eventually("all subscribed", || {
        (0..STREAMS).all(|i| sse::hub().group_stats(&format!("h2.{i}")).subscribers == 1)
    })
    .await;
    for i in (0..STREAMS).rev() {
        sse::publish!(format!("h2.{i}"), "n", "for stream {i}").unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let event = stream.next().await.expect("an event");
        assert_eq!(event.data, format!("for stream {i}"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection");
}

const PAGE_ORIGIN: &str = "http://127.0.0.1:5173";

/// What a page served from another origin needs for `new EventSource(url, { withCredentials:
/// true })`: its exact origin (never `*` with credentials; a list echoes only the listed ones),
/// credentials allowed, and `Last-Event-ID` allowed for the reconnects.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list([HeaderValue::from_static(PAGE_ORIGIN)]))
        .allow_methods([Method::GET])
        .allow_headers([header::HeaderName::from_static("last-event-id")])
        .allow_credentials(true)
}

#[tokio::test]
async fn a_credentialed_cross_origin_event_source_is_allowed() {
    let addr = sse_tests::serve(app().layer(cors())).await;
    let url = format!("http://{addr}/events/cors");

    let mut client = Client::open(&url, &[("origin", PAGE_ORIGIN), ("cookie", "user=ann")]).await;
    let headers = &client.response_headers;
    assert_eq!(headers["access-control-allow-origin"], PAGE_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["content-type"], "text/event-stream");
    eventually("subscribed", || {
        sse::hub().group_stats("cors").subscribers == 1
    })
    .await;
    sse::publish!("cors", "yo", "across origins").unwrap();
    assert_eq!(client.next().await.unwrap().data, "across origins");

    // A reconnect sends Last-Event-ID, which is not a safelisted header: the browser asks first.
    let preflight = within(
        http_client()
            .request(Method::OPTIONS, &url)
            .header("origin", PAGE_ORIGIN)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "last-event-id")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], PAGE_ORIGIN);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-headers"], "last-event-id");
    assert_eq!(headers["access-control-allow-methods"], "GET");

    // Another origin gets no permission; the browser then refuses to hand the stream to the page.
    let other = sse_tests::request(&url, &[("origin", "http://127.0.0.1:6666")]).await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
