//! The publishing side. Every publish of the process is queued; a sender on the broker's thread
//! takes what is queued, a batch, and publishes it in one script call per hash slot (one call
//! for a single Redis), each group's events of the batch in one message on its channel. While
//! batches are in flight the next one gathers, so concurrent publishers share round trips,
//! script calls and messages: the more publishers, the bigger the batches, and the less Redis
//! works per event. A lone publisher waits for nothing but its own round trip.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use redis::Script;
use tokio::sync::Semaphore;

use super::{
    clock::Clocks,
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
    script: Script,
    /// Redis's clock, read by the script now and then, so a publish need not ask it.
    clocks: Clocks,
    renewals: Renewals,
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
            script: scripts::publish(&limits, target.publish_command()),
            clocks: Clocks::default(),
            renewals: Renewals::new(Duration::from_millis(limits.renewal_ms)),
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
        let now = self.clocks.now(call.slot);
        match now {
            Some(now) => invocation.arg(now),
            None => invocation.arg(""),
        };
        // How many ids the script answers for each group: one (the first) unless an event
        // carries a key, then one an event; and Redis's time last, when it is to read it.
        let mut answered = usize::from(now.is_none());
        let mut renewing = Vec::new();
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
            let renew = self.renewals.due(group);
            invocation.arg(if renew { "1" } else { "0" });
            if renew {
                renewing.push(group.as_str());
            }
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
        let sent = Instant::now();
        let answer = self.router.invoke::<Vec<u64>>(call.slot, &invocation).await;
        let unexpected = || {
            BrokerError::new(format!(
                "Redis at {} gave an unexpected answer to a publish",
                self.target.shown
            ))
        };
        let answer = answer.and_then(|mut ids| match ids.len() == answered {
            true => {
                if now.is_none() {
                    let redis_now = ids.pop().unwrap_or_default();
                    self.clocks.read(call.slot, sent, redis_now);
                }
                Ok(ids)
            }
            false => Err(unexpected()),
        });
        self.down.found(call.slot, &answer);
        if answer.is_ok() {
            self.renewals.renewed(renewing, sent);
        }
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

/// When this process last had each group's expiries renewed, so that it renews them once per
/// renewal period it publishes to the group in (see [`scripts`]), without asking Redis.
struct Renewals {
    every: Duration,
    renewed: Mutex<Renewed>,
}

struct Renewed {
    at: HashMap<String, Instant>,
    /// How many groups the map may hold before those due anyway are dropped from it.
    pruned_above: usize,
}

/// The least [`Renewed::pruned_above`]: below it, the map is not worth pruning.
const RENEWALS_KEPT: usize = 1024;

impl Renewals {
    fn new(every: Duration) -> Self {
        let renewed = Renewed {
            at: HashMap::new(),
            pruned_above: RENEWALS_KEPT,
        };
        Self {
            every,
            renewed: Mutex::new(renewed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Renewed> {
        self.renewed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `group`'s expiries are to be renewed with its next call.
    fn due(&self, group: &str) -> bool {
        match self.lock().at.get(group) {
            Some(at) => at.elapsed() >= self.every,
            None => true,
        }
    }

    /// Notes that a call sent at `sent` renewed the expiries of `groups`: Redis set them after.
    fn renewed(&self, groups: Vec<&str>, sent: Instant) {
        if groups.is_empty() {
            return;
        }
        let mut renewed = self.lock();
        if renewed.at.len() > renewed.pruned_above {
            renewed.at.retain(|_, at| at.elapsed() < self.every);
            renewed.pruned_above = (renewed.at.len() * 2).max(RENEWALS_KEPT);
        }
        for group in groups {
            renewed.at.insert(group.to_owned(), sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_renewed_once_a_period_and_the_map_forgets_groups_due_anyway() {
        let renewals = Renewals::new(Duration::from_secs(3600));
        assert!(renewals.due("a"));
        renewals.renewed(vec!["a"], Instant::now());
        assert!(!renewals.due("a"));
        assert!(renewals.due("b"));

        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(7200)) else {
            return;
        };
        let groups: Vec<String> = (0..=RENEWALS_KEPT).map(|i| format!("g{i}")).collect();
        renewals.renewed(groups.iter().map(String::as_str).collect(), long_ago);
        assert!(renewals.due("g0"));
        renewals.renewed(vec!["b"], Instant::now());
        let renewed = renewals.lock();
        assert_eq!(renewed.at.len(), 2, "a and b");
        assert_eq!(renewed.pruned_above, RENEWALS_KEPT);
    }
}
