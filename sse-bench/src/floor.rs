//! The floor: what this machine can do at all. No HTTP stack, no async runtime: a subscriber's
//! socket gets a fixed header and is then only written to, and a publish writes the same
//! pre-encoded event bytes to each socket of the group in a plain loop. Anything a real server
//! does costs more than this; the bench prints how far each one is from it.
//!
//! It reads just enough of a request to tell `GET /sub/{group}` from `POST /pub/{group}` (and
//! the body's `Content-Length`), so the bench's client drives it like every other system.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

type Groups = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// Serves on `addr` until killed.
pub(crate) fn serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    let groups = Groups::default();
    let reaped = groups.clone();
    std::thread::spawn(move || reap_closed(&reaped));
    for socket in listener.incoming() {
        let Ok(mut socket) = socket else { continue };
        let mut buffer = Vec::new();
        let Some(head) = read_head(&mut socket, &mut buffer) else {
            continue;
        };
        if let Some(group) = head.path.strip_prefix("/sub/") {
            if socket.write_all(STREAM_HEAD).is_ok() {
                let mut groups = groups.lock().unwrap();
                groups.entry(group.to_owned()).or_default().push(socket);
            }
        } else {
            // A publisher keeps its connection: it gets a thread of its own.
            let groups = groups.clone();
            std::thread::spawn(move || publish_loop(socket, buffer, head, &groups));
        }
    }
    Ok(())
}

/// Drops the sockets whose client left, as a server must to keep its open files in bounds.
/// (The loop above only writes, so it would otherwise notice only at its next write.)
fn reap_closed(groups: &Groups) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut groups = groups.lock().unwrap();
        for sockets in groups.values_mut() {
            sockets.retain(is_open);
        }
        groups.retain(|_, sockets| !sockets.is_empty());
    }
}

/// A peek that would block means the client is still there; end of stream or an error, gone.
fn is_open(socket: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: the fd is open for as long as `socket` is borrowed; one byte fits in `byte`.
    let read = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    read > 0
        || (read < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock)
}

struct Head {
    path: String,
    content_length: usize,
    /// Where the body starts in the buffer.
    body_at: usize,
}

/// Reads until the end of a request's head; `buffer` keeps what was read past it.
fn read_head(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Head> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = memchr::memmem::find(buffer, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).ok()?;
            let path = head.split(' ').nth(1)?.to_owned();
            let content_length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
            return Some(Head {
                path,
                content_length,
                body_at: end + 4,
            });
        }
        let read = socket.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn publish_loop(mut socket: TcpStream, mut buffer: Vec<u8>, mut head: Head, groups: &Groups) {
    let mut chunk = [0u8; 4096];
    let mut next_id = 1u64;
    loop {
        while buffer.len() < head.body_at + head.content_length {
            match socket.read(&mut chunk) {
                Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let body = &buffer[head.body_at..head.body_at + head.content_length];
        let mut event = Vec::with_capacity(body.len() + 32);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(body);
        event.extend_from_slice(format!("\nid: {next_id}\n\n").as_bytes());
        next_id += 1;
        if let Some(group) = head.path.strip_prefix("/pub/") {
            if let Some(sockets) = groups.lock().unwrap().get_mut(group) {
                sockets.retain_mut(|socket| socket.write_all(&event).is_ok());
            }
        }
        if socket.write_all(PUBLISHED).is_err() {
            return;
        }
        buffer.drain(..head.body_at + head.content_length);
        match read_head(&mut socket, &mut buffer) {
            Some(next) => head = next,
            None => return,
        }
    }
}
