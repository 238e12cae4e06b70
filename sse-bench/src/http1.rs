//! The little HTTP/1.1 a subscriber speaks: a `GET`, the answer's head, and its body as it
//! comes, de-chunked in place. One read of the socket is one pass over its bytes, with no
//! channel between a connection and its body, so the loader spends on each delivery as little
//! as it can, and the systems' rates are not bounded by it (see BENCHMARKS.md, "The floor").

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The longest answer head read.
const MAX_HEAD: usize = 64 * 1024;

/// A connection that sent a `GET` and read its answer's head; its body is read with
/// [`Connection::read_body`].
pub(crate) struct Connection {
    socket: TcpStream,
    /// Read and not yet used.
    read: BytesMut,
    body: Body,
}

/// How the body of an answer ends.
enum Body {
    /// In chunks: `left` bytes of the current one are to come, then its CRLF (`crlf` bytes of
    /// it); at 0, a size line.
    Chunked { left: usize, crlf: usize },
    /// After this many bytes.
    Length(usize),
    /// When the connection closes.
    UntilClose,
}

impl Connection {
    /// Sends `GET path` on `socket` with `accept`, and reads the answer's head: the connection
    /// on a `2xx`, else what the server answered.
    pub(crate) async fn get(
        socket: TcpStream,
        host: &str,
        path: &str,
        accept: &str,
    ) -> Result<Self, String> {
        let mut connection = Self {
            socket,
            read: BytesMut::with_capacity(8 * 1024),
            body: Body::UntilClose,
        };
        connection.ask(host, path, accept).await?;
        Ok(connection)
    }

    /// Asks for `path` again on the same connection, once the last body was read whole.
    pub(crate) async fn ask(&mut self, host: &str, path: &str, accept: &str) -> Result<(), String> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: {accept}\r\n\r\n");
        (self.socket.write_all(request.as_bytes()).await).map_err(|e| format!("send: {e}"))?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut answer = httparse::Response::new(&mut headers);
            match answer.parse(&self.read) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = answer.code.unwrap_or(0);
                    let body = body_of(answer.headers)?;
                    if !(200..300).contains(&status) {
                        return Err(format!("answered {status}"));
                    }
                    self.read.advance(head_len);
                    self.body = body;
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if self.read.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => return Err("answer head too long".to_owned()),
                Err(e) => return Err(format!("answer: {e}")),
            }
            if self.fill().await? == 0 {
                return Err("connection ended before the answer".to_owned());
            }
        }
    }

    /// Reads what the socket has into `read`; 0 at its end.
    async fn fill(&mut self) -> Result<usize, String> {
        self.read.reserve(8 * 1024);
        (self.socket.read_buf(&mut self.read).await).map_err(|e| format!("read: {e}"))
    }

    /// Gives `on_data` the body's bytes as they come, a call per chunk (or per read, unchunked);
    /// returns at the body's end, or the connection's.
    pub(crate) async fn read_body(
        &mut self,
        on_data: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        loop {
            if self.take(on_data)? {
                return Ok(());
            }
            if self.fill().await? == 0 {
                return match self.body {
                    Body::UntilClose => Ok(()),
                    _ => Err("connection ended within the body".to_owned()),
                };
            }
        }
    }

    /// Gives `on_data` the body's bytes in `read`; true once the body ended.
    fn take(&mut self, on_data: &mut impl FnMut(&[u8])) -> Result<bool, String> {
        loop {
            match &mut self.body {
                Body::UntilClose => {
                    if !self.read.is_empty() {
                        on_data(&self.read);
                        self.read.clear();
                    }
                    return Ok(false);
                }
                Body::Length(left) => {
                    let here = (*left).min(self.read.len());
                    if here > 0 {
                        on_data(&self.read[..here]);
                        self.read.advance(here);
                        *left -= here;
                    }
                    return Ok(*left == 0);
                }
                Body::Chunked { left, .. } if *left > 0 => {
                    let here = (*left).min(self.read.len());
                    if here == 0 {
                        return Ok(false);
                    }
                    on_data(&self.read[..here]);
                    self.read.advance(here);
                    *left -= here;
                }
                Body::Chunked { crlf, .. } if *crlf > 0 => {
                    let here = (*crlf).min(self.read.len());
                    if here == 0 {
                        return Ok(false);
                    }
                    self.read.advance(here);
                    *crlf -= here;
                }
                Body::Chunked { left, crlf } => {
                    let Some(end) = memchr::memchr(b'\n', &self.read) else {
                        return Ok(false);
                    };
                    let line = std::str::from_utf8(&self.read[..end])
                        .map_err(|_| "chunk size not text".to_owned())?;
                    let digits = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(digits, 16)
                        .map_err(|_| format!("chunk size {digits:?}"))?;
                    self.read.advance(end + 1);
                    if size == 0 {
                        // The last chunk: no trailers are sent to a subscriber.
                        return Ok(true);
                    }
                    (*left, *crlf) = (size, 2);
                }
            }
        }
    }
}

/// How the body of an answer with these headers ends.
fn body_of(headers: &[httparse::Header<'_>]) -> Result<Body, String> {
    let value = |name: &str| {
        headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| String::from_utf8_lossy(header.value).to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|coding| coding.contains("chunked")) {
        return Ok(Body::Chunked { left: 0, crlf: 0 });
    }
    match value("content-length") {
        Some(length) => length
            .trim()
            .parse()
            .map(Body::Length)
            .map_err(|_| format!("content-length {length:?}")),
        None => Ok(Body::UntilClose),
    }
}
