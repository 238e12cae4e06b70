//! The threads that write open streams.
//!
//! Open streams are written by threads of their own, one per core, not by the tasks of the
//! runtime that serves requests. A publish wakes every stream of its group at once: written by
//! the tasks that serve requests, thousands of writes would queue in front of the next request,
//! the next publish among them. Here requests are served while streams are written, and each
//! write carries what was published meanwhile (see `BENCHMARKS.md`, "Writer threads").
//!
//! Each thread is a small reactor of its own: a poll (epoll, through mio) of its sockets, and
//! its streams' pumps in slots, polled when their socket is ready or their waker is woken. A
//! stream costs its pump and its slot's waker (`inbox.rs`), where a tokio task would add its
//! task cell and the socket's registration with tokio, each aligned to 128 bytes. Their
//! timers (keep-alives, stalls, a shutdown's timeout) are tokio's, driven by a thread of their
//! own, `sse-drivers`: the writer threads poll in that runtime's context.

// The wakers' `unsafe`, its reasons with it.
#[allow(unsafe_code)]
mod inbox;
mod socket;

use std::{
    future::Future,
    io,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    task::{Context, Poll as Polled},
    thread,
    time::Duration,
};

use mio::{Events, Poll, Token};
use tokio::runtime::{Builder, Handle};

use super::pump::Pump;
use inbox::{Inbox, Queued, WakeCell};
pub(super) use socket::Socket;

/// Slots are added this many at a time, never moved nor freed: no vector of them doubles.
const CHUNK: usize = 64;

/// The token of a thread's inbox: past any slot's.
const WAKE: Token = Token(usize::MAX);

/// The writer threads, shared by every server of the process.
#[derive(Clone, Copy)]
pub(super) struct Writers(&'static [&'static Inbox]);

impl Writers {
    /// The writer threads, started by the first stream; `None` if they could not be started
    /// (then streams are written where they are served).
    pub(super) fn get() -> Option<Self> {
        static WRITERS: OnceLock<Option<Writers>> = OnceLock::new();
        *WRITERS.get_or_init(|| {
            start()
                .inspect_err(|error| {
                    tracing::warn!(%error, "writer threads not started: streams are written by the server's runtime");
                })
                .ok()
        })
    }

    /// Has `stream` written by one of the threads, each in turn.
    pub(super) fn hand_over(self, stream: Pump<Socket>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Never empty: `start` fails rather.
        let next = NEXT.fetch_add(1, Ordering::Relaxed) % self.0.len();
        self.0[next].hand_over(stream);
    }
}

/// Starts the drivers' thread, then a writer thread per core (or as many as
/// `TOKIO_WORKER_THREADS` says, as for tokio's runtimes); fails only if none started.
fn start() -> io::Result<Writers> {
    let drivers = drivers()?;
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|threads| threads.parse().ok())
        .filter(|&threads: &usize| threads > 0)
        .or_else(|| thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut inboxes = Vec::with_capacity(threads);
    for _ in 0..threads {
        match Writer::start(drivers.clone()) {
            Ok(inbox) => inboxes.push(inbox),
            Err(error) if !inboxes.is_empty() => {
                tracing::warn!(%error, started = inboxes.len(), "fewer writer threads than cores");
                break;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(Writers(inboxes.leak()))
}

/// A runtime whose drivers, for the streams' timers (and any I/O a body of the app's starts),
/// run on a thread of their own, so that a timer fires while its writer thread waits on its poll.
fn drivers() -> io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    thread::Builder::new()
        .name("sse-drivers".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// A writer thread: its poll, its inbox and its streams' slots.
struct Writer {
    poll: Poll,
    inbox: &'static Inbox,
    /// The slots' wakers, which live as long as the process, as wakers may be kept anywhere.
    cells: Vec<&'static [WakeCell; CHUNK]>,
    streams: Vec<Box<[Option<Pump<Socket>>; CHUNK]>>,
    vacant: Vec<u32>,
}

impl Writer {
    /// Starts a writer thread, whose streams' timers are `drivers`'s: its inbox.
    fn start(drivers: Handle) -> io::Result<&'static Inbox> {
        let poll = Poll::new()?;
        let inbox: &'static Inbox = Box::leak(Box::new(Inbox::new(poll.registry(), WAKE)?));
        let writer = Writer {
            poll,
            inbox,
            cells: Vec::new(),
            streams: Vec::new(),
            vacant: Vec::new(),
        };
        thread::Builder::new()
            .name("sse-writer".into())
            .spawn(move || {
                let _drivers = drivers.enter();
                writer.run();
            })?;
        Ok(inbox)
    }

    /// Each turn polls once every stream whose socket is ready or whose waker was woken since
    /// the last turn, new streams included; a stream woken while polled waits for the next.
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut queued = Queued::default();
        let mut turn = Vec::new();
        loop {
            // Only a look at the sockets when streams wait already.
            let timeout = (!self.inbox.sleep()).then_some(Duration::ZERO);
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(%error, "a writer thread's poll failed: tried again");
                    thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            for event in &events {
                let Token(slot) = event.token();
                let Ok(slot) = u32::try_from(slot) else {
                    continue;
                };
                if let Some(Some(stream)) = self.entry(slot) {
                    stream.io_mut().stirred();
                }
                if self.cell(slot as usize).is_some_and(WakeCell::queue) {
                    turn.push(slot);
                }
            }
            self.inbox.take(&mut queued);
            for stream in queued.streams.drain(..) {
                self.insert(stream, &mut turn);
            }
            turn.append(&mut queued.woken);
            for slot in turn.drain(..) {
                self.poll_slot(slot);
            }
        }
    }

    /// Puts `stream` in a slot, its socket in the poll, and the slot in this `turn`.
    fn insert(&mut self, mut stream: Pump<Socket>, turn: &mut Vec<u32>) {
        let Some(slot) = self.vacant.pop().or_else(|| self.grow()) else {
            tracing::warn!("a writer thread has no slot left: stream closed");
            return;
        };
        let registry = self.poll.registry();
        if let Err(error) = stream.io_mut().register(registry, Token(slot as usize)) {
            tracing::warn!(%error, "a stream's socket could not join its writer thread's poll: closed");
            self.vacant.push(slot);
            return;
        }
        if let Some(entry) = self.entry(slot) {
            *entry = Some(stream);
        }
        if self.cell(slot as usize).is_some_and(WakeCell::queue) {
            turn.push(slot);
        }
    }

    /// Adds a chunk of slots: its first, the others vacant. `None` past `u32::MAX` slots.
    fn grow(&mut self) -> Option<u32> {
        let first = u32::try_from(self.cells.len() * CHUNK).ok()?;
        let end = first.checked_add(CHUNK as u32)?;
        let inbox = self.inbox;
        let cells = std::array::from_fn(|index| WakeCell::new(inbox, first + index as u32));
        self.cells.push(Box::leak(Box::new(cells)));
        self.streams.push(Box::new(std::array::from_fn(|_| None)));
        self.vacant.extend((first + 1..end).rev());
        Some(first)
    }

    fn cell(&self, slot: usize) -> Option<&'static WakeCell> {
        self.cells.get(slot / CHUNK)?.get(slot % CHUNK)
    }

    fn entry(&mut self, slot: u32) -> Option<&mut Option<Pump<Socket>>> {
        let slot = slot as usize;
        self.streams.get_mut(slot / CHUNK)?.get_mut(slot % CHUNK)
    }

    /// Polls the stream in `slot`, if any; one that ended leaves it, and its socket closes.
    fn poll_slot(&mut self, slot: u32) {
        let Some(cell) = self.cell(slot as usize) else {
            return;
        };
        cell.unqueue();
        let Some(entry) = self.entry(slot) else {
            return;
        };
        let Some(stream) = entry.as_mut() else {
            return;
        };
        let waker = cell.waker();
        let mut cx = Context::from_waker(&waker);
        // A body may be the app's: its panic ends its stream, not the thread's others.
        let polled = panic::catch_unwind(AssertUnwindSafe(|| Pin::new(stream).poll(&mut cx)))
            .unwrap_or_else(|_| {
                tracing::warn!("a stream panicked: closed");
                Polled::Ready(())
            });
        if polled.is_ready() {
            *entry = None;
            self.vacant.push(slot);
        }
    }
}
