//! The floor: the least work the kernel and the wire need for the bench's workloads, to tell
//! how far each system is from what this machine can do at all. No HTTP stack, no async
//! runtime, nothing allocated per event or per socket on the way:
//!
//! - a subscriber's socket gets a fixed, pre-encoded head, and is then only written to;
//! - a publish encodes its event once and appends it to its group's log, one buffer shared by
//!   every socket of the group ([`log`]);
//! - one writer thread per core but one (that one is the publishers'), each with its own epoll
//!   and its share of the sockets, writes each socket everything appended since its cursor in
//!   one `sendmsg` per pass: as many events per write as have accumulated; an idle writer passes
//!   as soon as it is woken, a busy one at most once a millisecond ([`writer`]).
//!
//! A server that batches gets the same benefit, and none can do less per delivery; if a system
//! beats this floor, the floor is wrong.
//!
//! It reads just enough of a request to tell `GET /sub/{group}` from `POST /pub/{group}` and
//! `POST /batch/{groups}/{count}` (and the body's `Content-Length`), so the bench's client
//! drives it like every other system.

mod log;
mod writer;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use log::Log;
use writer::{Joining, Writer};

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
const PUBLISHED: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// A group: its log, and which writers hold its sockets.
struct Group {
    id: u32,
    log: Log,
    /// Per writer: it holds sockets of this group (never cleared).
    members: Vec<AtomicBool>,
    /// Per writer: it was told of events of this group it has not written yet.
    marked: Vec<AtomicBool>,
}

impl Group {
    /// Appends `event` and tells the writers.
    fn publish(&self, event: &[u8], writers: &[Writer]) {
        self.log.append(event);
        self.tell(writers);
    }

    /// Tells the writers holding the group's sockets that it has new events, those not told
    /// since they last wrote it.
    fn tell(&self, writers: &[Writer]) {
        for writer in writers {
            let index = writer.index();
            if self.members[index].load(Ordering::Acquire)
                && !self.marked[index].swap(true, Ordering::AcqRel)
            {
                writer.mark(self.id);
            }
        }
    }
}

/// The groups by name.
struct Groups {
    writers: usize,
    by_name: Mutex<HashMap<String, Arc<Group>>>,
}

impl Groups {
    fn get(&self, name: &str) -> Option<Arc<Group>> {
        self.by_name.lock().unwrap().get(name).cloned()
    }

    fn get_or_add(&self, name: &str) -> Arc<Group> {
        let mut by_name = self.by_name.lock().unwrap();
        let id = by_name.len() as u32;
        let flags = || (0..self.writers).map(|_| AtomicBool::new(false)).collect();
        by_name
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Group {
                    id,
                    log: Log::new(),
                    members: flags(),
                    marked: flags(),
                })
            })
            .clone()
    }
}

/// Serves on `addr` until killed.
pub(crate) fn serve(addr: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
    // One writer per core but one: that core is the publishers' (and, in the bench, the load
    // generator's). Writers that take every core make each delivery dearer, not faster: they
    // wait for the core the publish and the reading need (BENCHMARKS-HISTORY.md, "A floor that
    // is a floor").
    // `FLOOR_WRITERS` sets another count, to measure the choice (BENCHMARKS.md).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match std::env::var("FLOOR_WRITERS").map(|n| n.parse::<usize>()) {
        Ok(Ok(count)) if count > 0 => count,
        Ok(_) => return Err("FLOOR_WRITERS: expected a count of writer threads, 1 or more".into()),
        Err(_) => cores.saturating_sub(1).max(1),
    };
    // `FLOOR_NICE` lowers the writers' priority below the publishers' (and the readers'), to
    // measure what answering publishes first gives (BENCHMARKS.md).
    let nice = match std::env::var("FLOOR_NICE").map(|n| n.parse::<i32>()) {
        Ok(Ok(nice)) if (0..=19).contains(&nice) => nice,
        Ok(_) => return Err("FLOOR_NICE: expected a nice value from 0 to 19".into()),
        Err(_) => 0,
    };
    let writers: Arc<Vec<Writer>> =
        Arc::new((0..threads).map(Writer::new).collect::<Result<_, _>>()?);
    for index in 0..threads {
        let writers = writers.clone();
        std::thread::Builder::new()
            .name(format!("floor-writer-{index}"))
            .spawn(move || {
                // SAFETY: setpriority on this thread (0: the calling thread's id) has no memory
                // effects; a failure leaves the priority as it was.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
                writers[index].run()
            })
            .map_err(|e| format!("writer thread: {e}"))?;
    }
    let groups = Arc::new(Groups {
        writers: threads,
        by_name: Mutex::default(),
    });
    let mut next_writer = 0;
    for socket in listener.incoming() {
        let Ok(mut socket) = socket else { continue };
        let mut buffer = Vec::new();
        let Some(head) = read_head(&mut socket, &mut buffer) else {
            continue;
        };
        if let Some(name) = head.path.strip_prefix("/sub/") {
            if socket.write_all(STREAM_HEAD).is_err() || socket.set_nonblocking(true).is_err() {
                continue;
            }
            let writer = &writers[next_writer % threads];
            next_writer += 1;
            let group = groups.get_or_add(name);
            // Before the cursor is taken: a publish after it tells this writer.
            group.members[writer.index()].store(true, Ordering::Release);
            let cursor = group.log.cursor();
            writer.join(Joining {
                socket,
                group,
                cursor,
            });
        } else {
            // A publisher keeps its connection: it gets a thread of its own, and its answers go
            // out at once (as the load generator's requests do).
            let _ = socket.set_nodelay(true);
            let (writers, groups) = (writers.clone(), groups.clone());
            let publishing = std::thread::Builder::new()
                .name("floor-publish".to_owned())
                .spawn(move || publish_loop(socket, buffer, head, &writers, &groups));
            if let Err(e) = publishing {
                eprintln!("floor: no thread for a publisher: {e}");
            }
        }
    }
    Ok(())
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

fn publish_loop(
    mut socket: TcpStream,
    mut buffer: Vec<u8>,
    mut head: Head,
    writers: &[Writer],
    groups: &Groups,
) {
    let mut chunk = [0u8; 4096];
    let mut next_id = 1u64;
    let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ buffer.len() as u64;
    // Reused for every event and every group name: nothing allocated per publish.
    let (mut event, mut name) = (Vec::new(), String::new());
    loop {
        while buffer.len() < head.body_at + head.content_length {
            match socket.read(&mut chunk) {
                Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let body = &buffer[head.body_at..head.body_at + head.content_length];
        event.clear();
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(body);
        let _ = write!(event, "\nid: {next_id}\n\n");
        next_id += 1;
        let mut published = None;
        if let Some(group) = head.path.strip_prefix("/pub/") {
            published = groups.get(group);
            if let Some(group) = &published {
                group.log.append(&event);
            }
        } else if let Some((count_of_groups, count)) = head
            .path
            .strip_prefix("/batch/")
            .and_then(|batch| batch.split_once('/'))
        {
            // Inside the process, as the bench server's batch route: `count` random groups.
            let count_of_groups: u64 = count_of_groups.parse().unwrap_or(1).max(1);
            for _ in 0..count.parse().unwrap_or(0) {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                name.clear();
                let _ = std::fmt::Write::write_fmt(
                    &mut name,
                    format_args!("g{}", random % count_of_groups),
                );
                if let Some(group) = groups.get(&name) {
                    group.publish(&event, writers);
                }
            }
        }
        if socket.write_all(PUBLISHED).is_err() {
            return;
        }
        // The event is in the log before the answer; the writers are woken after it, so the
        // publisher hears back before they take the cores.
        if let Some(group) = published {
            group.tell(writers);
        }
        buffer.drain(..head.body_at + head.content_length);
        match read_head(&mut socket, &mut buffer) {
            Some(next) => head = next,
            None => return,
        }
    }
}
