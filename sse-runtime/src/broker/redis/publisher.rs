//! The publishing side. Every publish of the process is queued; a sender on the broker's thread
//! takes what is queued, a batch, and publishes it in one script call per hash slot (one call
//! for a single Redis), each group's events of the batch in one message on its channel. While
//! batches are in flight the next one gathers, so concurrent publishers share round trips,
//! script calls and messages: the more publishers, the bigger the batches, and the less Redis
//! works per event. A lone publisher waits for nothing but its own round trip.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    task::Poll,
    time::Instant,
};

use futures_util::{
    future::{join_all, BoxFuture, Shared},
    FutureExt,
};
use redis::{Script, ScriptInvocation};
use tokio::sync::{Notify, Semaphore};

use super::{link::Link, scripts, wire, Keys, Limits, Target, DOWN_FOR};
use crate::{config::RedisNodes, event::Draft, BrokerError};

/// Where the answer to a publish goes: its id, or why it has none.
pub(super) type Reply = Box<dyn FnOnce(Result<u64, BrokerError>) + Send>;

/// At most this many batches in flight at once; meanwhile publishes gather into the next one.
const IN_FLIGHT: usize = 2;
/// The most events, and bytes of events, in a batch: one script call keeps Redis (which runs
/// one script at a time) busy for a bounded time.
const BATCH_EVENTS: usize = 512;
const BATCH_BYTES: usize = 1 << 20;

pub(super) struct Publisher {
    target: Target,
    limits: Limits,
    script: Script,
    /// Publishes waiting for the next batch, in the order they were made.
    queue: Mutex<Vec<Pending>>,
    queued: Notify,
    /// The link, or the attempt to make it that every publish meanwhile waits for. `None`
    /// until the first publish, and after the link was lost (the next one reconnects).
    link: Mutex<Option<Connecting>>,
    /// Each hash slot whose last script call failed (`0` for a single Redis), while it counts
    /// as down.
    down: Mutex<HashMap<u16, Down>>,
}

struct Pending {
    group: String,
    draft: Draft,
    reply: Reply,
}

type Connecting = Shared<BoxFuture<'static, Result<Link, BrokerError>>>;

/// A slot found unreachable: until `until`, its publishes fail at once with `error` instead of
/// each waiting out the timeouts; then one tries again (`probing`) while the others still fail.
struct Down {
    until: Instant,
    error: BrokerError,
    probing: bool,
}

/// What one script call publishes: the events of groups of one hash slot, by group, in order.
struct Call {
    slot: u16,
    groups: Vec<(String, Vec<Pending>)>,
}

/// A request refused.
enum Refused {
    /// Before it was sent, by a link that had closed: it certainly did not reach Redis.
    Unsent,
    /// Redis failed it, or did not answer; `link_lost` when the link is no longer usable.
    Failed { error: BrokerError, link_lost: bool },
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Publisher {
    pub(super) fn new(target: Target, limits: Limits) -> Self {
        Self {
            target,
            limits,
            script: scripts::publish(),
            queue: Mutex::new(Vec::new()),
            queued: Notify::new(),
            link: Mutex::new(None),
            down: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `draft` for `group`: `reply` gets its id once published. While the group's slot
    /// counts as down, `reply` gets the error at once.
    pub(super) fn publish(&self, group: String, draft: Draft, reply: Reply) {
        if let Err(error) = self.may_try(self.slot(&group)) {
            return reply(Err(error));
        }
        lock(&self.queue).push(Pending {
            group,
            draft,
            reply,
        });
        self.queued.notify_one();
    }

    /// Sends what is queued, batch after batch, for as long as the broker's thread runs.
    pub(super) async fn run(self: Arc<Self>) {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let batch = loop {
                let batch = self.take();
                if !batch.is_empty() {
                    break batch;
                }
                self.queued.notified().await;
            };
            let publisher = self.clone();
            tokio::spawn(async move {
                publisher.send_batch(batch).await;
                drop(permit);
            });
        }
    }

    /// Whether Redis answers: every node, for a cluster.
    pub(super) async fn ping(&self) -> Result<(), BrokerError> {
        self.ask(None).await.map(drop)
    }

    /// The oldest queued publishes, within the bounds of a batch.
    fn take(&self) -> Vec<Pending> {
        let mut queue = lock(&self.queue);
        let mut bytes = 0;
        let count = queue
            .iter()
            .take_while(|pending| {
                bytes += pending.draft.as_bytes().len();
                bytes <= BATCH_BYTES
            })
            .count()
            .clamp(1, BATCH_EVENTS);
        if count >= queue.len() {
            std::mem::take(&mut *queue)
        } else {
            queue.drain(..count).collect()
        }
    }

    /// The hash slot of `group`'s keys in a cluster; all of them are `0` for a single Redis.
    fn slot(&self, group: &str) -> u16 {
        match self.target.nodes {
            RedisNodes::Single(_) => 0,
            RedisNodes::Cluster(_) => key_slot(group.as_bytes()),
        }
    }

    async fn send_batch(&self, batch: Vec<Pending>) {
        let mut calls: Vec<Call> = Vec::new();
        // Where each group's events go: (call, group in it).
        let mut places: HashMap<String, (usize, usize)> = HashMap::new();
        for pending in batch {
            if let Some(&(call, group)) = places.get(&pending.group) {
                calls[call].groups[group].1.push(pending);
                continue;
            }
            let slot = self.slot(&pending.group);
            let call = match calls.iter().position(|call| call.slot == slot) {
                Some(call) => call,
                None => {
                    calls.push(Call {
                        slot,
                        groups: Vec::new(),
                    });
                    calls.len() - 1
                }
            };
            let groups = &mut calls[call].groups;
            places.insert(pending.group.clone(), (call, groups.len()));
            groups.push((pending.group.clone(), vec![pending]));
        }
        join_all(calls.into_iter().map(|call| self.send_call(call))).await;
    }

    /// Publishes `call` and answers each of its publishes.
    async fn send_call(&self, call: Call) {
        let mut invocation = self.script.prepare_invoke();
        let command = match self.target.nodes {
            RedisNodes::Single(_) => "PUBLISH",
            // Sharded: the message travels only within the shard of its channel's slot.
            RedisNodes::Cluster(_) => "SPUBLISH",
        };
        invocation
            .arg(self.limits.events)
            .arg(self.limits.age_us)
            .arg(self.limits.seq_ttl_ms)
            .arg(command);
        for (group, events) in &call.groups {
            let keys = Keys::of(group);
            invocation.key(keys.seq).key(keys.epoch).key(keys.history);
            let drafts = events.iter().map(|pending| pending.draft.as_bytes());
            invocation
                .arg(keys.channel)
                .arg(events.len())
                .arg(wire::batch(drafts));
        }
        let answer = self.ask(Some(&invocation)).await;
        let answer = answer.and_then(|firsts| match firsts.len() == call.groups.len() {
            true => Ok(firsts),
            false => Err(BrokerError::new(format!(
                "Redis at {} gave an unexpected answer to a publish",
                self.target.shown
            ))),
        });
        let mut down = lock(&self.down);
        match &answer {
            Ok(_) => drop(down.remove(&call.slot)),
            Err(error) => drop(down.insert(
                call.slot,
                Down {
                    until: Instant::now() + DOWN_FOR,
                    error: error.clone(),
                    probing: false,
                },
            )),
        }
        drop(down);
        for (i, (_, events)) in call.groups.into_iter().enumerate() {
            for (offset, pending) in (0..).zip(events) {
                let id = match &answer {
                    Ok(firsts) => Ok(firsts[i] + offset),
                    Err(error) => Err(error.clone()),
                };
                (pending.reply)(id);
            }
        }
    }

    /// Whether a publish to `slot` may go to Redis now: not while it counts as down, except
    /// the one that tries again after [`DOWN_FOR`].
    fn may_try(&self, slot: u16) -> Result<(), BrokerError> {
        let mut down = lock(&self.down);
        match down.get_mut(&slot) {
            None => Ok(()),
            Some(down) if down.probing || Instant::now() < down.until => Err(down.error.clone()),
            Some(down) => {
                down.probing = true;
                Ok(())
            }
        }
    }

    /// Runs `invocation` (a `PING` of every node for `None`), on a new link if the shared one
    /// turns out to have closed. That is the only retry: a command that failed otherwise may
    /// have reached Redis (a timeout, or a link that closed with commands in flight; the
    /// `redis` crate does not say which), and sending a publish again could publish it twice.
    async fn ask(&self, invocation: Option<&ScriptInvocation<'_>>) -> Result<Vec<u64>, BrokerError> {
        let mut retried = false;
        loop {
            let connecting = self.connecting();
            let answer = match connecting.clone().await {
                Ok(link) => self.answer(invocation, link).await,
                Err(error) => Err(Refused::Failed {
                    error,
                    link_lost: true,
                }),
            };
            // The link may be out of step with Redis, or dead: the next request makes another.
            let (error, link_lost) = match answer {
                Ok(answer) => return Ok(answer),
                Err(Refused::Unsent) => (None, true),
                Err(Refused::Failed { error, link_lost }) => (Some(error), link_lost),
            };
            if link_lost {
                self.forget(&connecting);
            }
            match error {
                Some(error) => return Err(error),
                None if retried => return Err(self.target.closed()),
                None => retried = true,
            }
        }
    }

    /// Redis's answer to `invocation` on `link`, or why there is none.
    async fn answer(
        &self,
        invocation: Option<&ScriptInvocation<'_>>,
        mut link: Link,
    ) -> Result<Vec<u64>, Refused> {
        let lost_link = link.clone();
        let asking = async move {
            match invocation {
                Some(invocation) => invocation.invoke_async(&mut link).await,
                None => link.ping_all().await.map(|()| Vec::new()),
            }
        };
        let mut asking = std::pin::pin!(asking);
        // The link's driver, which writes to the socket, is a task of this same thread: it
        // cannot have sent anything before the first poll returns. A request refused then was
        // refused by a driver that had stopped, its connection closed.
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(asking.as_mut().poll(cx)));
        let answer = match first_poll.await {
            Poll::Ready(Err(error)) if error.is_connection_dropped() => return Err(Refused::Unsent),
            Poll::Ready(answer) => answer,
            Poll::Pending => match tokio::time::timeout(super::COMMAND_TIMEOUT, asking).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(Refused::Failed {
                        error: self.target.no_answer(),
                        link_lost: matches!(lost_link, Link::Single(_)),
                    })
                }
            },
        };
        answer.map_err(|error| Refused::Failed {
            link_lost: lost_link.lost_by(&error),
            error: self.target.failed(error),
        })
    }

    /// The link, made by the first publish that needs one and shared by the others.
    fn connecting(&self) -> Connecting {
        let mut link = lock(&self.link);
        let connecting = link.get_or_insert_with(|| {
            let target = self.target.clone();
            async move { Link::open(&target).await }.boxed().shared()
        });
        connecting.clone()
    }

    /// Drops `failed`, unless another publish already replaced it.
    fn forget(&self, failed: &Connecting) {
        let mut link = lock(&self.link);
        if link.as_ref().is_some_and(|c| c.ptr_eq(failed)) {
            *link = None;
        }
    }
}

/// The hash slot of a key whose hash tag is `tag`: CRC16 (XMODEM) modulo 16,384, as Redis
/// Cluster computes it.
fn key_slot(tag: &[u8]) -> u16 {
    let crc = tag.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| match crc & 0x8000 {
            0 => crc << 1,
            _ => (crc << 1) ^ 0x1021,
        })
    });
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn hash_slots_are_those_of_redis_cluster() {
        // `CLUSTER KEYSLOT foo`; 0x31C3 is CRC16/XMODEM's check value.
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
    }
}
