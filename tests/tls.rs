//! `sse::serve` over TLS, with a listener that does the handshake, a certificate made here and
//! reqwest over rustls. TLS holds what is written until it is flushed, so this is where a
//! server that never flushed would hold events back.

use std::{future::IntoFuture, io, net::SocketAddr, sync::Arc};

use axum::{routing::get, serve::Listener, Router};
use sse_tests::{eventually, within};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    },
    server::TlsStream,
    TlsAcceptor,
};

/// A loopback listener whose connections are TLS, for `localhost`.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Listens on a free port with a self-signed certificate for `localhost`, made here;
    /// returns the certificate, for clients to trust.
    async fn bind() -> (TlsListener, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(["localhost".to_owned()]).unwrap();
        let certificate = made.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], PrivateKeyDer::Pkcs8(key))
        .unwrap();
        let listener = TlsListener {
            tcp: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        (listener, certificate)
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, peer)) = self.tcp.accept().await else {
                continue;
            };
            // Small, so a client that reads nothing for a while blocks the server's writes.
            let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(64 * 1024);
            // A failed handshake is that client's: the next one is accepted.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

#[tokio::test]
async fn events_arrive_at_once_over_tls() {
    // No keep-alive comments, which would push out what a server failed to flush, and a queue
    // deep enough for the burst below.
    let hub = sse::Hub::new(
        sse::Config::default()
            .keep_alive(None)
            .subscriber_queue(100_000),
    );
    let stream_hub = hub.clone();
    let group = sse::GroupName::new("g").unwrap();
    let app = Router::new().route(
        "/events",
        get(move |last: sse::LastEventId| async move { stream_hub.subscribe([group], &last) }),
    );
    let (listener, certificate) = TlsListener::bind().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sse::serve(listener, app).into_future());

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&certificate).unwrap())
        .resolve("localhost", addr)
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/events", addr.port());
    let response = within(client.get(url).header("accept", "text/event-stream").send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Written by `serve` itself: ended by the close of the connection, not chunked by hyper.
    assert_eq!(response.headers()["connection"], "close");
    assert!(!response.headers().contains_key("transfer-encoding"));
    let mut client = sse_tests::Client::from_response(response);
    eventually("subscribed", || hub.group_stats("g").subscribers == 1).await;

    // One at a time: each event arrives before the next is published.
    for n in 0..20 {
        let id = hub.publish("g", None, n.to_string()).unwrap();
        let event = client.next().await.unwrap();
        assert_eq!((event.data, event.id), (n.to_string(), id.to_string()));
    }
    // A burst the client is not reading yet: the socket blocks, and TLS keeps what it could
    // not send. The last event arrives all the same, though nothing is published after it.
    let chunk = "x".repeat(8 * 1024);
    let mut ids: Vec<String> = (0..1_000)
        .map(|_| hub.publish("g", None, &chunk).unwrap().to_string())
        .collect();
    ids.push(
        hub.publish("g", Some("last"), "the end")
            .unwrap()
            .to_string(),
    );
    let events = client.take(ids.len()).await;
    let received: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    assert_eq!(received, ids);
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.data.as_str()),
        ("last", "the end")
    );
}
