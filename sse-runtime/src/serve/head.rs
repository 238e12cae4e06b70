//! A connection's first request head, read by `serve` itself: is it a request a stream may
//! answer, anything else (hyper's), or more than the server accepts?

use std::{io, time::SystemTime};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version},
    response::Response,
};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Headers of a first request, at most; a head with more goes to hyper, which has its own bound.
const MAX_HEADERS: usize = 64;

/// What `serve` answers to a head longer than it accepts, before closing the connection (what
/// hyper answers on its side, with its own framing).
pub(super) const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\n\
content-length: 0\r\nconnection: close\r\n\r\n";

/// What the first bytes of a connection are.
pub(super) enum Head {
    /// A request `serve` may answer with a stream of its own.
    Stream(Box<Request>),
    /// Anything else, for hyper: another request, HTTP/2, an upgrade, bytes it cannot read.
    Other,
    /// No complete head within the bound.
    TooLarge,
}

/// Reads from `io` until the bytes read are a whole head (or clearly not HTTP/1's), or reach
/// `max_bytes`; returns them with what they are.
pub(super) async fn read<Io: AsyncRead + Unpin>(
    io: &mut Io,
    max_bytes: usize,
) -> io::Result<(BytesMut, Head)> {
    let mut read = BytesMut::with_capacity(1024.min(max_bytes));
    loop {
        let before = read.len();
        let room = max_bytes - before;
        // What the client sent so far, and never more than the bound: a slow client costs only
        // its bytes. Grown only once full: most heads fit the first 1 KiB, and the buffers of
        // the connections being opened are what the allocator keeps as their high-water mark.
        if read.len() == read.capacity() {
            read.reserve(room.min(read.capacity().max(1024)));
        }
        if io.read_buf(&mut (&mut read).limit(room)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // Parsed on the first read (to hand anything that is not HTTP/1 to hyper at once),
        // then only when the new bytes may end the head: a head sent a byte at a time costs
        // its length, not its length squared (hyper's `is_complete_fast` does the same).
        if before == 0 || may_end_head(&read, before) {
            if let Some(head) = parse(&read) {
                return Ok((read, head));
            }
        }
        if read.len() >= max_bytes {
            return Ok((read, Head::TooLarge));
        }
    }
}

/// Whether `read`, of which the first `before` bytes held no end of head, may hold one now: an
/// empty line after a line break, lines ending in CRLF or in LF alone.
fn may_end_head(read: &[u8], before: usize) -> bool {
    let new = &read[before.saturating_sub(3)..];
    new.windows(2).any(|pair| pair == b"\n\n") || new.windows(3).any(|three| three == b"\n\r\n")
}

/// What a head is, or `None` while it is incomplete.
fn parse(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => Some(
            stream_request(&head).map_or(Head::Other, |request| Head::Stream(Box::new(request))),
        ),
        Err(_) => Some(Head::Other),
    }
}

/// The request, if it is one a stream may answer: a `GET` with no body, no upgrade and no
/// expectation, over HTTP/1, that accepts `text/event-stream`.
fn stream_request(head: &httparse::Request<'_, '_>) -> Option<Request> {
    if head.method? != "GET" {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.version_mut() = match head.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    *request.uri_mut() = head.path?.parse().ok()?;
    let mut accepts_stream = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        if forbids_stream(&name, &value) {
            return None;
        }
        accepts_stream |= name == header::ACCEPT && accepts_event_stream(&value);
        request.headers_mut().append(name, value);
    }
    accepts_stream.then_some(request)
}

/// Whether a request hyper read may be answered by a stream `serve` writes itself: the same
/// test as for a first request, on a later request of a kept-alive HTTP/1 connection.
pub(super) fn may_stream<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    request.method() == Method::GET
        && matches!(request.version(), Version::HTTP_10 | Version::HTTP_11)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .any(accepts_event_stream)
        && !headers
            .iter()
            .any(|(name, value)| forbids_stream(name, value))
}

/// A header that gives the request a body, an upgrade or an expectation: hyper's to serve.
fn forbids_stream(name: &HeaderName, value: &HeaderValue) -> bool {
    match *name {
        header::CONTENT_LENGTH => value != "0",
        header::TRANSFER_ENCODING | header::UPGRADE | header::EXPECT => true,
        _ => false,
    }
}

/// Whether an `Accept` value names `text/event-stream`.
fn accepts_event_stream(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .windows(b"text/event-stream".len())
        .any(|window| window.eq_ignore_ascii_case(b"text/event-stream"))
}

/// Whether `response` is a stream `serve` writes to the socket itself.
pub(super) fn is_stream(response: &Response) -> bool {
    let headers = response.headers();
    response.status() == StatusCode::OK
        && headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"))
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
}

/// The head of a `200` stream whose body ends with the connection.
pub(super) fn stream_head(version: Version, headers: &HeaderMap) -> Bytes {
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(match version {
        Version::HTTP_10 => b"HTTP/1.0 200 OK\r\n",
        _ => b"HTTP/1.1 200 OK\r\n",
    });
    let mut field = |name: &[u8], value: &[u8]| {
        head.put_slice(name);
        head.put_slice(b": ");
        head.put_slice(value);
        head.put_slice(b"\r\n");
    };
    for (name, value) in headers {
        // The connection is ours to describe.
        if name != header::CONNECTION && name.as_str() != "keep-alive" {
            field(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !headers.contains_key(header::DATE) {
        field(
            b"date",
            httpdate::fmt_http_date(SystemTime::now()).as_bytes(),
        );
    }
    field(b"connection", b"close");
    head.put_slice(b"\r\n");
    head.freeze()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn head(text: &str) -> Option<Head> {
        parse(text.as_bytes())
    }

    fn streams(text: &str) -> bool {
        matches!(head(text), Some(Head::Stream(_)))
    }

    #[test]
    fn only_a_plain_get_that_accepts_a_stream_is_answered_here() {
        let accept = "Accept: text/event-stream\r\n";
        assert!(streams(&format!(
            "GET /e HTTP/1.1\r\nHost: h\r\n{accept}\r\n"
        )));
        assert!(streams(
            "GET /e HTTP/1.1\r\nAccept: text/html, Text/Event-Stream;q=1\r\n\r\n"
        ));
        assert!(streams(&format!(
            "GET /e HTTP/1.1\r\nContent-Length: 0\r\n{accept}\r\n"
        )));
        for other in [
            "GET /e HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            format!("POST /e HTTP/1.1\r\n{accept}Content-Length: 0\r\n\r\n"),
            format!("HEAD /e HTTP/1.1\r\n{accept}\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Content-Length: 5\r\n\r\nhello"),
            format!("GET /e HTTP/1.1\r\n{accept}Transfer-Encoding: chunked\r\n\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Connection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
            format!("GET /e HTTP/1.1\r\n{accept}Expect: 100-continue\r\n\r\n"),
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_string(),
            "GET /e HTTP/1.1\r\nBad Header: x\r\n\r\n".to_string(),
        ] {
            assert!(matches!(head(&other), Some(Head::Other)), "{other:?}");
        }
        assert!(head("GET /e HTTP/1.1\r\nAccept: te").is_none());
    }

    #[test]
    fn a_later_request_hyper_read_may_stream_on_the_same_terms() {
        let request = |method: Method, version: Version, headers: &[(&str, &str)]| {
            let mut request = Request::new(());
            *request.method_mut() = method;
            *request.version_mut() = version;
            for (name, value) in headers {
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                request
                    .headers_mut()
                    .append(name, HeaderValue::from_str(value).unwrap());
            }
            request
        };
        let accept = ("accept", "text/html, Text/Event-Stream;q=1");
        assert!(may_stream(&request(
            Method::GET,
            Version::HTTP_11,
            &[accept]
        )));
        assert!(may_stream(&request(
            Method::GET,
            Version::HTTP_10,
            &[("content-length", "0"), accept]
        )));
        for (method, version, headers) in [
            (Method::GET, Version::HTTP_11, vec![("accept", "text/html")]),
            (Method::POST, Version::HTTP_11, vec![accept]),
            (Method::GET, Version::HTTP_2, vec![accept]),
            (
                Method::GET,
                Version::HTTP_11,
                vec![accept, ("content-length", "5")],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![accept, ("transfer-encoding", "chunked")],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![accept, ("upgrade", "websocket")],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                vec![accept, ("expect", "100-continue")],
            ),
        ] {
            assert!(
                !may_stream(&request(method.clone(), version, &headers)),
                "{method} {version:?} {headers:?}"
            );
        }
    }

    #[test]
    fn the_request_is_what_the_client_sent() {
        let Some(Head::Stream(request)) = head(
            "GET /events/yo?lastEventId=7 HTTP/1.0\r\nHost: h\r\nAccept: text/event-stream\r\nX-Two: a\r\nX-Two: b\r\n\r\n",
        ) else {
            panic!("a stream request");
        };
        assert_eq!(request.version(), Version::HTTP_10);
        assert_eq!(request.uri(), "/events/yo?lastEventId=7");
        assert_eq!(request.headers()["host"], "h");
        let twos: Vec<_> = request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["a", "b"]);
    }

    #[test]
    fn the_head_says_the_connection_ends_the_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            header::DATE,
            HeaderValue::from_static("Wed, 25 Nov 2026 06:00:00 GMT"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        assert_eq!(
            stream_head(Version::HTTP_11, &headers),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             date: Wed, 25 Nov 2026 06:00:00 GMT\r\nconnection: close\r\n\r\n"
        );
        headers.remove(header::DATE);
        let head = stream_head(Version::HTTP_10, &headers);
        assert!(head.starts_with(b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\ndate: "));
        assert!(head.ends_with(b" GMT\r\nconnection: close\r\n\r\n"));
    }

    #[test]
    fn an_end_of_head_is_seen_in_new_bytes_and_across_the_seam() {
        let head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        for before in 0..head.len() {
            assert!(may_end_head(head, before), "{before}");
        }
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: h\r\n", 0));
        assert!(may_end_head(b"GET / HTTP/1.1\nHost: h\n\n", 20));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\n\r\nHost: h\r\n", 25));
    }

    /// Reads `pieces`, sent one by one, with `max_bytes`; what `read` made of them.
    async fn read_pieces(pieces: &[&[u8]], max_bytes: usize) -> io::Result<(BytesMut, Head)> {
        let (mut near, mut far) = tokio::io::duplex(64 * 1024);
        let reading = read(&mut near, max_bytes);
        let sending = async {
            for piece in pieces {
                far.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            far.shutdown().await.unwrap();
        };
        tokio::join!(reading, sending).0
    }

    #[tokio::test]
    async fn a_head_sent_in_pieces_is_read_whole_and_nothing_more_than_the_bound() {
        let pieces: [&[u8]; 4] = [
            b"GET /e HT",
            b"TP/1.1\r\nAccept: text/ev",
            b"ent-stream\r",
            b"\n\r\n",
        ];
        let (read, head) = read_pieces(&pieces, 8192).await.unwrap();
        assert!(matches!(head, Head::Stream(_)));
        assert_eq!(read, pieces.concat());

        let long = format!("GET /e HTTP/1.1\r\nX: {}\r\n\r\n", "x".repeat(9000));
        let (read, head) = read_pieces(&[long.as_bytes()], 8192).await.unwrap();
        assert!(matches!(head, Head::TooLarge));
        assert_eq!(read.len(), 8192);

        let error = read_pieces(&[b"GET /e HTTP/1.1\r\n"], 8192).await.err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        let (_, head) = read_pieces(&[b"\x16\x03\x01\x02\x00"], 8192).await.unwrap();
        assert!(matches!(head, Head::Other), "TLS to a plain port: hyper's");
    }
}
