//! The floor: what this machine can do at all. No HTTP stack, no async runtime: a subscriber's
//! socket gets a fixed header and is then only written to. A publish appends the pre-encoded
//! event bytes to its group's pending bytes and returns; one plain thread per core takes
//! everything pending and writes it to each of its sockets in one `write`. That is the least
//! any server has to do for the workload (a server that batches gets the same benefit), so the
//! bench prints how far each system is from it.
//!
//! It reads just enough of a request to tell `GET /sub/{group}` from `POST /pub/{group}` (and
//! the body's `Content-Length`), so the bench's client drives it like every other system.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// One writer thread's share: its sockets by group, and what they have still to be sent.
#[derive(Default)]
struct Writer {
    state: Mutex<HashMap<String, Group>>,
    pending: Condvar,
}

#[derive(Default)]
struct Group {
    sockets: Vec<TcpStream>,
    pending: Vec<u8>,
}

/// Serves on `addr` until killed.
pub(crate) fn serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writers: Arc<Vec<Writer>> = Arc::new((0..threads).map(|_| Writer::default()).collect());
    for index in 0..threads {
        let writers = writers.clone();
        std::thread::spawn(move || write_loop(&writers[index]));
    }
    let mut next_writer = 0;
    for socket in listener.incoming() {
        let Ok(mut socket) = socket else { continue };
        let mut buffer = Vec::new();
        let Some(head) = read_head(&mut socket, &mut buffer) else {
            continue;
        };
        if let Some(group) = head.path.strip_prefix("/sub/") {
            if socket.write_all(STREAM_HEAD).is_ok() {
                let writer = &writers[next_writer % threads];
                next_writer += 1;
                let mut state = writer.state.lock().unwrap();
                state
                    .entry(group.to_owned())
                    .or_default()
                    .sockets
                    .push(socket);
            }
        } else {
            // A publisher keeps its connection: it gets a thread of its own.
            let writers = writers.clone();
            std::thread::spawn(move || publish_loop(socket, buffer, head, &writers));
        }
    }
    Ok(())
}

/// Writes whatever is pending, group by group, to every socket of the group; drops the
/// sockets of clients that left (found by a failed write, or by a peek every 200 ms, since an
/// idle socket is never written to).
fn write_loop(writer: &Writer) {
    let mut state = writer.state.lock().unwrap();
    loop {
        let (next, timeout) = writer
            .pending
            .wait_timeout_while(state, Duration::from_millis(200), |groups| {
                groups.values().all(|group| group.pending.is_empty())
            })
            .unwrap();
        state = next;
        if timeout.timed_out() {
            for group in state.values_mut() {
                group.sockets.retain(is_open);
            }
            state.retain(|_, group| !group.sockets.is_empty());
            continue;
        }
        // Take the work out, so publishers and new subscribers go on while this writes.
        let work: Vec<(String, Vec<TcpStream>, Vec<u8>)> = state
            .iter_mut()
            .filter(|(_, group)| !group.pending.is_empty())
            .map(|(name, group)| {
                let sockets = std::mem::take(&mut group.sockets);
                (name.clone(), sockets, std::mem::take(&mut group.pending))
            })
            .collect();
        drop(state);
        let mut written = Vec::with_capacity(work.len());
        for (name, mut sockets, bytes) in work {
            sockets.retain_mut(|socket| socket.write_all(&bytes).is_ok());
            written.push((name, sockets));
        }
        state = writer.state.lock().unwrap();
        for (name, sockets) in written {
            state.entry(name).or_default().sockets.extend(sockets);
        }
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

fn publish_loop(mut socket: TcpStream, mut buffer: Vec<u8>, mut head: Head, writers: &[Writer]) {
    let mut chunk = [0u8; 4096];
    let mut next_id = 1u64;
    let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ buffer.len() as u64;
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
            append(writers, group, &event);
        } else if let Some((groups, count)) = head
            .path
            .strip_prefix("/batch/")
            .and_then(|batch| batch.split_once('/'))
        {
            // Inside the process, as the bench server's batch route: `count` random groups.
            let groups: u64 = groups.parse().unwrap_or(1).max(1);
            for _ in 0..count.parse().unwrap_or(0) {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                append(writers, &format!("g{}", random % groups), &event);
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

/// Appends `event` to what is pending for `group`, with whichever writer holds its sockets.
fn append(writers: &[Writer], group: &str, event: &[u8]) {
    for writer in writers {
        let mut state = writer.state.lock().unwrap();
        if let Some(group) = state.get_mut(group) {
            group.pending.extend_from_slice(event);
            writer.pending.notify_one();
        }
    }
}
