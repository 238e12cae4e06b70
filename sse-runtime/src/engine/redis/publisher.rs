//! The publishing side. Every publish of the process is queued; a sender on the broker's thread
//! takes what is queued, a batch, and publishes it in one script call per hash slot (one call
//! for a single Redis), each group's events of the batch in one message on its channel. While
//! batches are in flight the next one gathers, so concurrent publishers share round trips,
//! script calls and messages: the more publishers, the bigger the batches, and the less Redis
//! works per event. A lone publisher waits for nothing but its own round trip.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::join_all;
use redis::Script;
use tokio::sync::Semaphore;

use super::{
    link::{Router, Target},
    scripts, Keys, Limits, DOWN_FOR,
};
use crate::{
    engine::{
        batch::batch,
        down::Downs,
        queue::{Pending, Queue},
    },
    BrokerError,
};

/// At most this many batches in flight at once; meanwhile publishes gather into the next one.
const IN_FLIGHT: usize = 2;
/// How long a batch in flight may hold back the next ones.
const SLOW_BATCH: Duration = Duration::from_millis(100);

pub(super) struct Publisher {
    target: Target,
    limits: Limits,
    script: Script,
    queue: Queue,
    /// The connection to each node.
    router: Arc<Router>,
    /// Each hash slot whose last script call failed (`0` for a single Redis), while it counts
    /// as down.
    down: Downs<u16>,
}

/// What one script call publishes: the events of groups of one hash slot, by group, in order.
struct Call {
    slot: u16,
    groups: Vec<(String, Vec<Pending>)>,
}

impl Publisher {
    pub(super) fn new(target: Target, limits: Limits, router: Arc<Router>) -> Self {
        Self {
            limits,
            script: scripts::publish(),
            queue: Queue::new(),
            router,
            down: Downs::new(DOWN_FOR),
            target,
        }
    }

    /// Queues `publish`: its reply gets its id once published, or the error at once while
    /// where it goes counts as down.
    pub(super) fn publish(&self, publish: Pending) {
        let place = &self.router.slot_of(&publish.group);
        self.queue.push_unless_down(&self.down, place, publish);
    }

    /// Drops what is queued, and every later publish: their waiters hear that it stopped.
    pub(super) fn stop(&self) {
        self.queue.stop();
    }

    /// Sends what is queued, batch after batch, for as long as the broker's thread runs.
    pub(super) async fn run(self: Arc<Self>) {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let batch = self.queue.next_batch().await;
            let publisher = self.clone();
            tokio::spawn(async move {
                let sending = publisher.send_batch(batch);
                tokio::pin!(sending);
                // A batch held up by a node that does not answer (its calls answer the other
                // slots' publishes as they come) does not hold back the next batches.
                let finished = tokio::time::timeout(SLOW_BATCH, &mut sending).await;
                drop(permit);
                if finished.is_err() {
                    sending.await;
                }
            });
        }
    }

    /// Whether Redis answers: every master, for a cluster.
    pub(super) async fn ping(&self) -> Result<(), BrokerError> {
        self.router.ping_all().await
    }

    async fn send_batch(&self, batch: Vec<Pending>) {
        let mut calls: Vec<Call> = Vec::new();
        // Where each slot's and each group's events go: call, and group in it.
        let mut slots: HashMap<u16, usize> = HashMap::new();
        let mut places: HashMap<String, (usize, usize)> = HashMap::new();
        for pending in batch {
            if let Some(&(call, group)) = places.get(&pending.group) {
                calls[call].groups[group].1.push(pending);
                continue;
            }
            let slot = self.router.slot_of(&pending.group);
            let call = *slots.entry(slot).or_insert_with(|| {
                calls.push(Call {
                    slot,
                    groups: Vec::new(),
                });
                calls.len() - 1
            });
            let groups = &mut calls[call].groups;
            places.insert(pending.group.clone(), (call, groups.len()));
            groups.push((pending.group.clone(), vec![pending]));
        }
        join_all(calls.into_iter().map(|call| self.send_call(call))).await;
    }

    /// Publishes `call` and answers each of its publishes.
    async fn send_call(&self, call: Call) {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(self.limits.events)
            .arg(self.limits.age_us)
            .arg(self.limits.seq_ttl_ms)
            .arg(self.target.publish_command())
            .arg(self.limits.once_ms)
            .arg(self.limits.renewal_ms);
        // How many ids the script answers for each group: one (the first) unless an event
        // carries a key, then one an event.
        let mut answered = 0;
        for (group, events) in &call.groups {
            let keys = Keys::of(group);
            invocation.key(keys.seq).key(keys.epoch).key(keys.history);
            let mut keyed = String::new();
            for (position, pending) in (1..).zip(events) {
                if pending.key.is_some() {
                    if !keyed.is_empty() {
                        keyed.push(',');
                    }
                    keyed.push_str(itoa::Buffer::new().format(position));
                }
            }
            let drafts = events.iter().map(|pending| pending.draft.as_bytes());
            invocation
                .arg(keys.channel)
                .arg(events.len())
                .arg(batch(drafts))
                .arg(keyed.as_str());
            if keyed.is_empty() {
                answered += 1;
            } else {
                let [even, odd] = keys.seen;
                invocation.key(even).key(odd);
                for key in events.iter().filter_map(|pending| pending.key.as_deref()) {
                    invocation.arg(key);
                }
                answered += events.len();
            }
        }
        let answer = self.router.invoke::<Vec<u64>>(call.slot, &invocation).await;
        let unexpected = || {
            BrokerError::new(format!(
                "Redis at {} gave an unexpected answer to a publish",
                self.target.shown
            ))
        };
        let answer = answer.and_then(|ids| match ids.len() == answered {
            true => Ok(ids),
            false => Err(unexpected()),
        });
        self.down.found(call.slot, &answer);
        let mut ids = answer.as_deref().unwrap_or_default().iter().copied();
        for (_, events) in call.groups {
            // Unkeyed, the group's events got consecutive ids from the first.
            let mut next = match events.iter().any(|pending| pending.key.is_some()) {
                true => None,
                false => ids.next(),
            };
            for pending in events {
                let id = match (&answer, &mut next) {
                    (Err(error), _) => Err(error.clone()),
                    (Ok(_), Some(next)) => {
                        *next += 1;
                        Ok(*next - 1)
                    }
                    (Ok(_), None) => ids.next().ok_or_else(unexpected),
                };
                (pending.reply)(id);
            }
        }
    }
}
