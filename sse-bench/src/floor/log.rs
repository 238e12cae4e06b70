//! A group's events as the bytes that go on the wire, in one log that every socket of the group
//! is written from, each at its own position. Publishers append; the writer threads read
//! without a lock, because a byte once appended never changes.
//!
//! The log is a chain of chunks, each allocated once (the first small, each next one twice as
//! large, up to 1 MiB): appending copies into the last one, a socket's cursor holds the chunk it
//! is in, and a chunk every cursor has left is freed with its last reference.

use std::{
    cell::UnsafeCell,
    io::IoSlice,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
};

const FIRST_CHUNK: usize = 2 * 1024;
const LARGEST_CHUNK: usize = 1024 * 1024;

/// A piece of the log. Its bytes below `len` are written once and then only read; the bytes
/// from `len` on are only written, by the one publisher holding the log's lock, before `len`
/// moves past them.
struct Chunk {
    bytes: Box<[UnsafeCell<u8>]>,
    /// How many bytes are appended: stored after they are written (`Release`).
    len: AtomicUsize,
    /// The next chunk, set once this one is full (after its last `len` store).
    next: OnceLock<Arc<Chunk>>,
}

// SAFETY: the bytes a reader may see (below `len`, loaded with `Acquire`) are never written
// again, and only the holder of the log's lock writes the others.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(capacity: usize) -> Arc<Self> {
        // Zeroed by the allocator: a large chunk's pages stay untouched until written.
        let zeroed = Box::into_raw(vec![0u8; capacity].into_boxed_slice());
        // SAFETY: `UnsafeCell<u8>` has the layout of `u8`; the box is the one just made.
        let bytes = unsafe { Box::from_raw(zeroed as *mut [UnsafeCell<u8>]) };
        Arc::new(Self {
            bytes,
            len: AtomicUsize::new(0),
            next: OnceLock::new(),
        })
    }

    /// The appended bytes from `from` on.
    fn appended(&self, from: usize) -> &[u8] {
        let len = self.len.load(Ordering::Acquire);
        let start = UnsafeCell::raw_get(self.bytes.as_ptr()).cast_const();
        // SAFETY: `from..len` lies in the chunk (`from` is a cursor's offset, never past
        // `len`), and those bytes are appended, so nothing writes them any more.
        unsafe { std::slice::from_raw_parts(start.add(from), len.saturating_sub(from)) }
    }
}

/// One group's log.
pub(super) struct Log {
    /// The chunk appended to.
    tail: Mutex<Arc<Chunk>>,
    /// Bytes appended since the log began: a cursor there has nothing to send.
    end: AtomicU64,
}

impl Log {
    pub(super) fn new() -> Self {
        Self {
            tail: Mutex::new(Chunk::new(FIRST_CHUNK)),
            end: AtomicU64::new(0),
        }
    }

    pub(super) fn append(&self, event: &[u8]) {
        let mut tail = self.tail.lock().unwrap();
        let mut len = tail.len.load(Ordering::Relaxed);
        if tail.bytes.len() - len < event.len() {
            let capacity = (tail.bytes.len() * 2).min(LARGEST_CHUNK).max(event.len());
            let next = Chunk::new(capacity);
            let _ = tail.next.set(next.clone());
            *tail = next;
            len = 0;
        }
        let start = UnsafeCell::raw_get(tail.bytes.as_ptr());
        // SAFETY: `len..len + event.len()` lies in the chunk (checked above) and is not appended
        // yet, so no reader sees it; the lock makes this the only writer.
        unsafe { std::ptr::copy_nonoverlapping(event.as_ptr(), start.add(len), event.len()) };
        tail.len.store(len + event.len(), Ordering::Release);
        self.end.fetch_add(event.len() as u64, Ordering::Release);
    }

    /// Where the log ends now, as a position to compare with [`Cursor::at`].
    pub(super) fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// A cursor at the end of the log: it will send what is appended from now on.
    pub(super) fn cursor(&self) -> Cursor {
        let tail = self.tail.lock().unwrap();
        Cursor {
            offset: tail.len.load(Ordering::Relaxed),
            chunk: tail.clone(),
            at: self.end.load(Ordering::Relaxed),
        }
    }
}

/// A socket's position in its group's log.
pub(super) struct Cursor {
    chunk: Arc<Chunk>,
    offset: usize,
    at: u64,
}

impl Cursor {
    /// The log position: everything before it was sent.
    pub(super) fn at(&self) -> u64 {
        self.at
    }

    /// Fills `slices` with what is appended past the cursor, chunk by chunk, as far as they
    /// go; returns how many it filled.
    pub(super) fn unsent<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let (mut chunk, mut from, mut filled) = (&*self.chunk, self.offset, 0);
        while filled < slices.len() {
            // `next` first: once it is set, `len` is final.
            let next = chunk.next.get();
            let bytes = chunk.appended(from);
            if !bytes.is_empty() {
                slices[filled] = IoSlice::new(bytes);
                filled += 1;
            }
            match next {
                Some(next) => (chunk, from) = (next, 0),
                None => break,
            }
        }
        filled
    }

    /// Moves past `sent` bytes of what [`unsent`](Self::unsent) gave.
    pub(super) fn advance(&mut self, mut sent: usize) {
        self.at += sent as u64;
        loop {
            // `next` first: once it is set, `len` is final.
            let next = self.chunk.next.get();
            let here = self.chunk.len.load(Ordering::Acquire) - self.offset;
            match next {
                Some(next) if sent >= here => {
                    sent -= here;
                    (self.chunk, self.offset) = (next.clone(), 0);
                }
                _ => {
                    self.offset += sent;
                    return;
                }
            }
        }
    }
}
