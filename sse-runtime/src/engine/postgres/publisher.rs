//! The publishing side. Every publish of the process is queued; a sender on the engine's thread
//! takes what is queued, a batch, and publishes it in one statement (`sse_publish_all`), each
//! group's events of the batch as one row and one notification. While a batch is in flight the
//! next one gathers, so concurrent publishers share round trips, commits and notifications.
//! With `sse.durable_publish = off` set for its connections, the statement commits without
//! waiting for the disk (`sse_publish_all` sets `synchronous_commit` off for it): the commit of
//! a transaction that notifies holds a lock of the whole server until it returns, and waiting
//! for the flush under it makes every process's publishes wait for it too.
//! One batch at a time: a group's events are numbered in the order they were published here.

use std::sync::Arc;

use sqlx::PgPool;

use super::{Limits, Target, DOWN_FOR};
use crate::{
    engine::{
        batch::batch,
        down::Downs,
        queue::{Pending, Queue},
    },
    BrokerError,
};

/// Postgres's code for a transaction chosen to break a deadlock: tried again once. (An app's
/// transaction that publishes to several groups in another order can cross a batch.)
const DEADLOCK: &str = "40P01";

pub(super) struct Publisher {
    target: Target,
    limits: Limits,
    queue: Queue,
    down: Downs<()>,
}

/// One row of a batch: events of one group, published together (a keyed one alone).
struct Entry {
    group: String,
    key: Option<String>,
    events: Vec<Pending>,
}

impl Publisher {
    pub(super) fn new(target: Target, limits: Limits) -> Self {
        Self {
            target,
            limits,
            queue: Queue::new(),
            down: Downs::new(DOWN_FOR),
        }
    }

    /// Queues `publish`: its reply gets its id once published, or the error at once while
    /// where it goes counts as down.
    pub(super) fn publish(&self, publish: Pending) {
        let place = &();
        self.queue.push_unless_down(&self.down, place, publish);
    }

    /// Drops what is queued, and every later publish: their waiters hear that it stopped.
    pub(super) fn stop(&self) {
        self.queue.stop();
    }

    /// Sends what is queued, batch after batch, for as long as the engine's thread runs.
    pub(super) async fn run(self: Arc<Self>, pool: PgPool) {
        loop {
            let batch = self.queue.next_batch().await;
            self.send(&pool, batch).await;
        }
    }

    /// Publishes `batch` and answers each of its publishes.
    async fn send(&self, pool: &PgPool, batch: Vec<Pending>) {
        let entries = entries(batch);
        let rows = Rows::of(&entries);
        let answer = self.target.answer_within(self.call(pool, &rows)).await;
        let answer = answer.and_then(|firsts| match firsts.len() == entries.len() {
            true => Ok(firsts),
            false => Err(BrokerError::new(format!(
                "Postgres at {} gave an unexpected answer to a publish",
                self.target.shown
            ))),
        });
        self.down.found((), &answer);
        if let Err(error) = &answer {
            // Queued while this batch waited for a Postgres that failed it: they would wait
            // for the same, or fail at once a moment later. They fail now.
            for pending in self.queue.take_all() {
                (pending.reply)(Err(error.clone()));
            }
        }
        for (i, entry) in entries.into_iter().enumerate() {
            for (offset, pending) in (0..).zip(entry.events) {
                let id = match &answer {
                    Ok(firsts) => Ok(firsts[i] as u64 + offset),
                    Err(error) => Err(error.clone()),
                };
                (pending.reply)(id);
            }
        }
    }

    /// One statement publishing `rows`: the first id of each.
    async fn call(&self, pool: &PgPool, rows: &Rows) -> Result<Vec<i64>, sqlx::Error> {
        let publishing = || {
            sqlx::query_scalar("SELECT sse_publish_all($1, $2, $3, $4, $5, $6)")
                .bind(&rows.groups)
                .bind(&rows.batches)
                .bind(&rows.counts)
                .bind(&rows.keys)
                .bind(self.limits.events)
                .bind(self.limits.once_us)
                .fetch_one(pool)
        };
        match publishing().await {
            Err(error) if is_deadlock(&error) => publishing().await,
            answer => answer,
        }
    }
}

/// The columns of a batch's rows, as `sse_publish_all` takes them.
struct Rows {
    groups: Vec<String>,
    batches: Vec<Vec<u8>>,
    counts: Vec<i32>,
    keys: Vec<Option<String>>,
}

impl Rows {
    fn of(entries: &[Entry]) -> Self {
        let drafts = |e: &Entry| batch(e.events.iter().map(|pending| pending.draft.as_bytes()));
        Self {
            groups: entries.iter().map(|e| e.group.clone()).collect(),
            batches: entries.iter().map(drafts).collect(),
            counts: entries.iter().map(|e| e.events.len() as i32).collect(),
            keys: entries.iter().map(|e| e.key.clone()).collect(),
        }
    }
}

fn is_deadlock(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    code.as_deref() == Some(DEADLOCK)
}

/// The rows of `batch`: each group's publishes together, but a keyed one alone (and the
/// group's later ones after it), ordered by group so that concurrent batches lock groups in
/// one order.
fn entries(batch: Vec<Pending>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for pending in batch {
        if let (None, Some(&entry)) = (&pending.key, open.get(&pending.group)) {
            entries[entry].events.push(pending);
            continue;
        }
        match pending.key {
            None => drop(open.insert(pending.group.clone(), entries.len())),
            Some(_) => drop(open.remove(&pending.group)),
        }
        entries.push(Entry {
            group: pending.group.clone(),
            key: pending.key.clone(),
            events: vec![pending],
        });
    }
    entries.sort_by(|a, b| a.group.cmp(&b.group));
    entries
}
