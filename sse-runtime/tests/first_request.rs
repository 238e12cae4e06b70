//! The first request of a connection, which `sse::serve` reads itself, fuzzed over real TCP:
//! whatever bytes come, cut in whatever pieces, nothing panics, every connection ends, what is
//! answered is HTTP, and the server goes on serving.

use std::{
    fmt,
    future::IntoFuture,
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use axum::{routing::get, Router};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{select, Index},
    test_runner::{TestCaseError, TestRunner},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Panics anywhere in this test's process, the server's tasks included (tokio would only
/// print those and close their connection).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The longest head the server accepts: small, so that generated heads cross it.
const MAX_HEAD: usize = 8 * 1024;
/// The server's header read timeout: a backstop, since every case ends what it sends.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server may take to close a connection whose client sent all it had.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

/// What a case sends: bytes, cut in pieces at `cuts`, sent one after the other.
#[derive(Clone)]
struct Sent {
    bytes: Vec<u8>,
    cuts: Vec<Index>,
}

impl Sent {
    fn pieces(&self) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .map(|cut| cut.index(self.bytes.len() + 1))
            .collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([self.bytes.len()]) {
            pieces.push(&self.bytes[from..cut]);
            from = cut;
        }
        pieces
    }
}

impl fmt::Debug for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pieces: Vec<String> = self
            .pieces()
            .iter()
            .map(|piece| piece.escape_ascii().to_string())
            .collect();
        write!(f, "{pieces:?}")
    }
}

/// One of `options`, as bytes.
fn one_of(options: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> + Clone {
    select(options).prop_map(|option| option.as_bytes().to_vec())
}

/// A request head built from parts that are often right and sometimes wrong: methods, targets,
/// versions, the headers `serve` looks at with good and bad values, any header bytes, line
/// ends of three kinds, padding around the size limit, with or without its empty line, and a
/// few bytes after.
fn head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        12 => one_of(&["GET"]),
        2 => one_of(&["POST", "HEAD", "PUT", "OPTIONS"]),
        1 => one_of(&["PRI", "get", "G ET", ""]),
    ];
    let target = prop_oneof![
        8 => one_of(&["/events", "/events?lastEventId=1", "/page", "/nowhere", "*", "http://x/events"]),
        1 => vec(any::<u8>(), 0..24),
    ];
    let version = prop_oneof![
        10 => one_of(&["HTTP/1.1", "HTTP/1.0"]),
        1 => one_of(&["HTTP/2.0", "HTTP/1.", "HTTP/0.9", "HTTP/1.1 x", ""]),
    ];
    let field = prop_oneof![
        12 => one_of(&[
            "Accept: text/event-stream",
            "Accept: text/html, Text/Event-Stream;q=0.5",
            "Host: x",
            "Content-Length: 0",
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            "Connection: upgrade",
            "Upgrade: h2c",
            "Expect: 100-continue",
            "Connection: close",
            "Last-Event-ID: 1",
        ]),
        1 => one_of(&[
            "Content-Length: -1",
            "Content-Length: 99999999999999999999",
            " folded onto the line before",
            "No-Colon",
            ": no name",
        ]),
        1 => (one_of(&["X-Any", "Accept", "Last-Event-ID", "Host"]), vec(any::<u8>(), 0..48))
            .prop_map(|(name, value)| [name, b": ".to_vec(), value].concat()),
        1 => vec(any::<u8>(), 0..48),
    ];
    let line_end = prop_oneof![
        16 => one_of(&["\r\n"]),
        2 => one_of(&["\n"]),
        1 => one_of(&["\r"]),
    ];
    let padding = prop_oneof![4 => Just(0), 1 => (MAX_HEAD - 160)..(MAX_HEAD + 160)];
    (
        (method, target, version),
        vec(field, 0..6),
        line_end,
        padding,
        proptest::bool::weighted(0.9),
        vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |((method, target, version), fields, eol, padding, ended, after)| {
                let mut head = [method, b" ".to_vec(), target, b" ".to_vec(), version].concat();
                head.extend_from_slice(&eol);
                for field in fields {
                    head.extend(field);
                    head.extend_from_slice(&eol);
                }
                if padding > 0 {
                    head.extend_from_slice(b"X-Padding: ");
                    head.resize(head.len() + padding.saturating_sub(head.len()), b'p');
                    head.extend_from_slice(&eol);
                }
                if ended {
                    head.extend_from_slice(&eol);
                }
                head.extend(after);
                head
            },
        )
}

/// `bytes` with a few bytes replaced, inserted or removed.
fn mutated(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<Index>(), any::<u8>(), 0..3u8);
    (bytes, vec(edit, 0..4)).prop_map(|(mut bytes, edits)| {
        for (at, byte, kind) in edits {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => drop(bytes.remove(at)),
                _ => {}
            }
        }
        bytes
    })
}

/// What clients may send first: heads, whole or damaged; any bytes; HTTP/2's preface.
fn sent() -> impl Strategy<Value = Sent> {
    let bytes = prop_oneof![
        4 => head(),
        2 => mutated(head()),
        1 => vec(any::<u8>(), 0..1024),
        1 => vec(any::<u8>(), 0..64)
            .prop_map(|frames| [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), frames].concat()),
    ];
    (bytes, vec(any::<Index>(), 0..4)).prop_map(|(bytes, cuts)| Sent { bytes, cuts })
}

/// Reads until the server closes the connection (or resets it), or has opened an event stream,
/// which stays open for as long as the client reads; returns what came.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0; 8192];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
        let head = all
            .split(|&byte| byte == b'\n')
            .take_while(|line| *line != b"\r");
        if all.windows(4).any(|end| end == b"\r\n\r\n")
            && head
                .into_iter()
                .any(|line| line.eq_ignore_ascii_case(b"content-type: text/event-stream\r"))
        {
            return all;
        }
    }
}

/// Sends `sent` in its pieces, then ends the connection's sending side; checks that the server
/// closes it or opens a stream, that what came back is HTTP, and that the server still serves.
async fn case(addr: SocketAddr, sent: Sent) -> Result<(), TestCaseError> {
    let panics = PANICS.load(Ordering::SeqCst);
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    for piece in sent.pieces() {
        // The server may have answered and closed already.
        if tcp.write_all(piece).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = tcp.shutdown().await;
    let answer = tokio::time::timeout(CLOSED_WITHIN, read_to_close(&mut tcp)).await;
    let Ok(answer) = answer else {
        return Err(TestCaseError::fail("neither closed nor a stream"));
    };
    // After HTTP/2's preface, hyper answers in HTTP/2 (where axum is built with it), starting
    // with a SETTINGS frame (type 4 at byte 3).
    let http2 = sent.bytes.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    prop_assert!(
        answer.is_empty()
            || answer.starts_with(b"HTTP/1.")
            || (http2 && answer.len() >= 9 && answer[3] == 4),
        "not an HTTP answer: {}",
        answer.escape_ascii()
    );
    prop_assert_eq!(PANICS.load(Ordering::SeqCst), panics, "something panicked");

    let mut page = TcpStream::connect(addr).await?;
    page.write_all(b"GET /page HTTP/1.0\r\n\r\n").await?;
    let answer = tokio::time::timeout(CLOSED_WITHIN, read_to_close(&mut page)).await;
    prop_assert!(
        answer.is_ok_and(|answer| answer.ends_with(b"\r\n\r\na page")),
        "the server stopped serving"
    );
    Ok(())
}

#[test]
fn whatever_comes_first_nothing_panics_nothing_hangs_and_the_server_goes_on() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = sse::Hub::new(sse::Config::default().keep_alive(None));
    let stream_hub = hub.clone();
    let app = Router::new()
        .route(
            "/events",
            get(move |last: sse::LastEventId| async move {
                stream_hub.subscribe([sse::GroupName::new("g").unwrap()], &last)
            }),
        )
        .route(
            "/page",
            get(|| async { "a page" }).post(|body: String| async { body }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = sse::serve(listener, app)
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_head_bytes(MAX_HEAD)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                hub.shutdown();
            });
        (addr, tokio::spawn(server.into_future()))
    });

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2_000,
        // The failing case is in the panic's message.
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    });
    let result = runner.run(&sent(), |sent| runtime.block_on(case(addr, sent)));

    stop.send(()).unwrap();
    let ended = runtime.block_on(async { tokio::time::timeout(CLOSED_WITHIN, server).await });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the server did not end: {ended:?}"
    );
}
