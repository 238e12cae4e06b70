//! The publishes an engine's thread sends in batches: queued by the callers, taken by the
//! thread a batch at a time, so that publishes made while a batch is in flight share the next.

use std::{
    hash::Hash,
    sync::{Mutex, MutexGuard, PoisonError},
};

use tokio::sync::Notify;

use super::down::Downs;
use crate::{event::Draft, BrokerError};

/// The most events, and bytes of events, in a batch: one call keeps the engine busy for a
/// bounded time.
const BATCH_EVENTS: usize = 512;
const BATCH_BYTES: usize = 1 << 20;

/// Where the answer to a publish goes: its id, or why it has none.
pub(crate) type Reply = Box<dyn FnOnce(Result<u64, BrokerError>) + Send>;

/// A publish waiting for its batch.
pub(crate) struct Pending {
    pub(crate) group: String,
    pub(crate) draft: Draft,
    /// Its idempotency key: the engine drops the event if the key was given within the window.
    pub(crate) key: Option<String>,
    pub(crate) reply: Reply,
}

/// Publishes waiting for the next batch, in the order they were made, until the engine stops.
pub(crate) struct Queue {
    /// `None` once the engine stopped.
    pending: Mutex<Option<Vec<Pending>>>,
    queued: Notify,
}

impl Queue {
    pub(crate) fn new() -> Self {
        Self {
            pending: Mutex::new(Some(Vec::new())),
            queued: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<Pending>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `pending`. Once stopped, its reply is dropped, which tells its waiter that the
    /// engine's thread stopped.
    pub(crate) fn push(&self, pending: Pending) {
        if let Some(queue) = &mut *self.lock() {
            queue.push(pending);
            self.queued.notify_one();
        }
    }

    /// Queues `pending`, unless `place` (where it goes) counts as down in `downs`: its reply
    /// then gets the error at once.
    pub(crate) fn push_unless_down<K: Eq + Hash>(
        &self,
        downs: &Downs<K>,
        place: &K,
        pending: Pending,
    ) {
        match downs.may_try(place) {
            Ok(()) => self.push(pending),
            Err(error) => (pending.reply)(Err(error)),
        }
    }

    /// Drops what is queued, and every later publish: their waiters hear that it stopped.
    pub(crate) fn stop(&self) {
        self.lock().take();
    }

    /// The oldest queued publishes, within the bounds of a batch; waits for one.
    pub(crate) async fn next_batch(&self) -> Vec<Pending> {
        loop {
            let batch = self.take();
            if !batch.is_empty() {
                return batch;
            }
            self.queued.notified().await;
        }
    }

    fn take(&self) -> Vec<Pending> {
        let mut queue = self.lock();
        let Some(queue) = &mut *queue else {
            return Vec::new();
        };
        let mut bytes = 0;
        let count = queue
            .iter()
            .take_while(|pending| {
                bytes += pending.draft.as_bytes().len();
                bytes <= BATCH_BYTES
            })
            .count()
            .clamp(1, BATCH_EVENTS);
        let count = count.min(queue.len());
        queue.drain(..count).collect()
    }

    /// Everything queued now.
    pub(crate) fn take_all(&self) -> Vec<Pending> {
        self.lock().as_mut().map(std::mem::take).unwrap_or_default()
    }
}
