//! Where a group's events are written: one after another, into chunks of memory its readers
//! share, so a read of several events in a row takes them as one slice, copying nothing.
//!
//! A read hands its events to the socket as one buffer. Gathered from events stored apart, that
//! buffer is a copy per subscriber of every event it reads: at 1,000 subscribers, a seventh of
//! the writer threads' time went to that copy and its allocation (see `BENCHMARKS.md`, "A group's
//! events in one piece"). Stored in a row, the events a read takes are already one buffer.
//!
//! The only `unsafe` of the crate is here, and it rests on one rule: a chunk's bytes are written
//! once, by the arena that made the chunk, before any [`Run`] covers them; a run only reads.

use std::{cell::UnsafeCell, ops::Deref, ptr, slice, sync::Arc};

use bytes::Bytes;

/// A chunk holds at most this much, unless one event is larger.
const MAX_CHUNK: usize = 64 * 1024;

/// The writing end: appends events to its current chunk, and starts a new chunk when one is full.
pub(crate) struct Arena {
    chunk: Arc<Chunk>,
    /// How much of `chunk` is written: bytes below are in runs and never change, bytes from
    /// here on are in none and only this arena writes them.
    filled: usize,
}

struct Chunk(Box<[UnsafeCell<u8>]>);

// SAFETY: shared between threads, a chunk is written only through its arena (`&mut Arena`),
// and only at bytes no run covers yet; runs read only the bytes they cover. No byte is read
// and written at once, and a run reaches another thread only through a lock or a channel,
// which orders its bytes' writing before their reading.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Chunk(
            std::iter::repeat_with(|| UnsafeCell::new(0))
                .take(capacity)
                .collect(),
        ))
    }
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            chunk: Chunk::new(0),
            filled: 0,
        }
    }
}

impl Arena {
    /// Writes `parts` one after another and returns them as one run. `held` is about how many
    /// bytes of events the group keeps: a new chunk is sized to it, so a quiet group keeps
    /// small chunks and a busy one few large ones, and a group's unused chunk space stays below
    /// what it holds. A chunk has room for four events at least, so what a full chunk leaves
    /// unused (less than the event that did not fit) is below a quarter of it; an event larger
    /// than a quarter of the largest chunk gets a chunk of its own size.
    pub(crate) fn append(&mut self, parts: &[&[u8]], held: usize) -> Run {
        let len: usize = parts.iter().map(|part| part.len()).sum();
        if self.chunk.0.len() - self.filled < len {
            let capacity = match len {
                large if large > MAX_CHUNK / 4 => large,
                _ => held.clamp(4 * len, MAX_CHUNK),
            };
            self.chunk = Chunk::new(capacity);
            self.filled = 0;
        }
        let start = self.filled;
        for part in parts {
            let at = &self.chunk.0[self.filled..self.filled + part.len()];
            // SAFETY: `at` lies at or past `filled`, so no run covers it (see `Chunk`); `&mut
            // self` makes this the only writer; `part` is not in the chunk, since nothing
            // outside this module sees the chunk's bytes before they are in a run.
            unsafe {
                ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    UnsafeCell::raw_get(at.as_ptr()),
                    part.len(),
                )
            };
            self.filled += part.len();
        }
        Run {
            chunk: self.chunk.clone(),
            start,
            end: self.filled,
        }
    }
}

/// Bytes in a row of one chunk: an event, or several events in a row. Cloning one shares its
/// chunk.
#[derive(Clone)]
pub(crate) struct Run {
    chunk: Arc<Chunk>,
    start: usize,
    end: usize,
}

impl Run {
    /// Takes in `next` if it follows this run in the same chunk; `false` if it does not.
    pub(crate) fn extend(&mut self, next: &Run) -> bool {
        let follows = Arc::ptr_eq(&self.chunk, &next.chunk) && self.end == next.start;
        if follows {
            self.end = next.end;
        }
        follows
    }

    /// The run as bytes to send, sharing its chunk.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for Run {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let bytes = &self.chunk.0[self.start..self.end];
        // SAFETY: the arena wrote these bytes before it made the first run covering them, and
        // writes them no more (see `Chunk`); `UnsafeCell<u8>` has the layout of `u8`.
        unsafe { slice::from_raw_parts(UnsafeCell::raw_get(bytes.as_ptr()), bytes.len()) }
    }
}

impl AsRef<[u8]> for Run {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_its_bytes_while_the_arena_writes_on() {
        let mut arena = Arena::default();
        let first = arena.append(&[b"data: one\n", b"id: 1\n\n"], 0);
        let runs: Vec<Run> = (2..200)
            .map(|n| arena.append(&[format!("data: {n}\n").as_bytes()], 1000))
            .collect();
        drop(arena);
        assert_eq!(&*first, b"data: one\nid: 1\n\n");
        for (n, run) in (2..200).zip(&runs) {
            assert_eq!(&**run, format!("data: {n}\n").as_bytes());
        }
    }

    #[test]
    fn runs_in_a_row_of_one_chunk_extend_and_others_do_not() {
        let mut arena = Arena::default();
        let mut run = arena.append(&[b"a"], 100);
        let b = arena.append(&[b"b"], 100);
        let c = arena.append(&[b"c"], 100);
        assert!(!run.extend(&c), "c does not follow a");
        assert!(run.extend(&b) && run.extend(&c));
        assert_eq!(&*run, b"abc");
        assert!(!run.clone().extend(&b), "b is in it already");
        // Full: the next event starts a chunk of its own, right at offset 0.
        let other = arena.append(&[&[b'd'; 100]], 100);
        assert!(!run.extend(&other));
        assert_eq!(run.into_bytes(), Bytes::from_static(b"abc"));
    }

    #[test]
    fn chunks_are_sized_by_what_the_group_holds_within_bounds() {
        let mut arena = Arena::default();
        arena.append(&[b"12345"], 0);
        assert_eq!(
            arena.chunk.0.len(),
            20,
            "a group holding nothing: room for four events"
        );
        arena.append(&[&[0; 15]], 1000);
        assert_eq!(arena.chunk.0.len(), 20, "it had room");
        arena.append(&[b"12"], 1000);
        assert_eq!(
            arena.chunk.0.len(),
            1000,
            "full: the next is what the group holds"
        );
        arena.append(&[&[0; 1000]], 1 << 30);
        assert_eq!(arena.chunk.0.len(), MAX_CHUNK, "at most the largest");
        let large = vec![7; MAX_CHUNK / 4 + 1];
        let mut arena = Arena::default();
        assert_eq!(&*arena.append(&[&large], 1 << 30), &large[..]);
        assert_eq!(
            arena.chunk.0.len(),
            large.len(),
            "a large event: a chunk of its own"
        );
    }

    #[test]
    fn readers_on_other_threads_see_what_was_appended_before_they_got_it() {
        let (send, receive) = std::sync::mpsc::sync_channel::<Run>(16);
        let reader = std::thread::spawn(move || {
            let mut whole = receive.recv().unwrap();
            let mut count = 1;
            for run in receive {
                assert_eq!(&*run, format!("{count:05}").as_bytes());
                if !whole.extend(&run) {
                    whole = run;
                }
                count += 1;
            }
            (count, whole.len())
        });
        // Fewer under Miri, which checks every access of both threads (CI runs it there).
        let events = if cfg!(miri) { 500 } else { 5_000 };
        let mut arena = Arena::default();
        for n in 0..events {
            send.send(arena.append(&[format!("{n:05}").as_bytes()], 1000))
                .unwrap();
        }
        drop(send);
        let (count, last_whole) = reader.join().unwrap();
        assert_eq!(count, events);
        assert!(last_whole > 5, "runs in a row were one");
    }
}
