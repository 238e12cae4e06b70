//! A group's ring: its recent events, at once the history a reconnecting client replays from
//! and the queue every live subscriber reads from.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use super::arena::{Arena, Run};
use crate::{
    event::{self, IdLine},
    Config, Keep,
};

/// A group's recent events, oldest first, and where they stand among all its events.
pub(super) struct Ring {
    pub(super) events: VecDeque<Stored>,
    /// Where the events' bytes are, one after another.
    arena: Arena,
    /// How many bytes the events take.
    bytes: usize,
    /// The position of `events[0]`: positions count this group's events since it was made.
    pub(super) first_pos: u64,
    /// The group's last id: given here, or delivered by the engine.
    pub(super) last_id: u64,
    /// Every event of the group with a greater id is still in `events` (`u64::MAX`: not known
    /// yet, the engine is still starting to deliver the group here).
    pub(super) complete_after: u64,
    /// The id of the group's [`STREAM_END`](crate::STREAM_END), once it was stored: nothing
    /// is stored after it.
    pub(super) end: Option<u64>,
    /// How much history the group keeps: the settings', unless [`Keep`] sized it.
    pub(super) keep: Keep,
    /// When its subscribers were last woken, and whether a wake is put off.
    pace: Pace,
}

/// When a group's subscribers are woken: at once for an event that comes alone, and once at the
/// end of the batch window for the events that follow it within the window.
#[derive(Default)]
struct Pace {
    woken: Option<Instant>,
    put_off: bool,
}

/// What a group does with its subscribers after it stored an event.
pub(super) enum Wake {
    Now,
    /// At this instant, once, for every event stored until then.
    At(Instant),
    /// A wake is put off already, and it comes after this event was stored.
    Due,
}

/// An event in a group's ring.
#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) id: u64,
    /// When the group received it, for merging several groups in that order.
    pub(super) at: Instant,
    /// The whole event, its id line last.
    pub(crate) bytes: Run,
    /// How many of `bytes` come before the id line.
    pub(crate) body_len: usize,
}

impl Ring {
    /// An empty ring whose group's last id is `last_id`, complete after `complete_after`,
    /// keeping `keep`.
    pub(super) fn new(last_id: u64, complete_after: u64, keep: Keep) -> Self {
        Self {
            events: VecDeque::new(),
            arena: Arena::default(),
            bytes: 0,
            first_pos: 0,
            last_id,
            complete_after,
            end: None,
            keep,
            pace: Pace::default(),
        }
    }

    /// When the subscribers hear of the event stored `now`, with `window` the batch window.
    fn wake(&mut self, now: Instant, window: Duration) -> Wake {
        if self.pace.put_off {
            return Wake::Due;
        }
        match self.pace.woken.and_then(|woken| woken.checked_add(window)) {
            Some(ends) if now < ends => {
                self.pace.put_off = true;
                Wake::At(ends)
            }
            _ => {
                self.pace.woken = Some(now);
                Wake::Now
            }
        }
    }

    /// The wake that was put off comes now.
    pub(super) fn woken(&mut self) {
        self.pace = Pace {
            woken: Some(Instant::now()),
            put_off: false,
        };
    }

    /// Stores the event `encoded` (without its id line) as the group's event `id`, drops what
    /// is no longer needed, and says when the subscribers hear of it.
    pub(super) fn append(&mut self, id: u64, encoded: &[u8], config: &Config) -> Wake {
        self.last_id = id;
        if event::is_end(encoded) {
            self.end = Some(id);
        }
        let held = self.bytes;
        let bytes = self
            .arena
            .append(&[encoded, IdLine::new(id).as_bytes()], held);
        self.bytes += bytes.len();
        // Taken under the lock, so a group's events are in the order of their times.
        let at = Instant::now();
        self.events.push_back(Stored {
            id,
            at,
            bytes,
            body_len: encoded.len(),
        });
        self.trim(at, config);
        self.wake(at, config.batch_window)
    }

    pub(super) fn head(&self) -> u64 {
        self.first_pos + self.events.len() as u64
    }

    /// The id of the group's last event known here: where a stream starting now stands.
    pub(super) fn position_id(&self) -> u64 {
        match self.complete_after {
            u64::MAX => self.last_id,
            complete => self.last_id.max(complete),
        }
    }

    /// Drops what neither the history nor any subscriber's queue needs any more, and what
    /// passes the byte bound (but never the last event: it may be the group's end).
    fn trim(&mut self, now: Instant, config: &Config) {
        let keep = self.keep.events.max(config.subscriber_queue);
        while let Some(front) = self.events.front() {
            let expired = now.duration_since(front.at) > config.history_age;
            let too_many =
                self.events.len() > keep || (self.bytes > self.keep.bytes && self.events.len() > 1);
            if !too_many && !expired {
                break;
            }
            self.complete_after = front.id;
            self.first_pos += 1;
            self.bytes -= front.bytes.len();
            self.events.pop_front();
        }
    }

    /// A client that saw this id, or a later one, can be given everything it missed.
    pub(super) fn replayable_after(&self, now: Instant, config: &Config) -> u64 {
        let skip = self.events.len().saturating_sub(self.keep.events);
        let mut floor = match skip {
            0 => self.complete_after,
            n => self.events[n - 1].id,
        };
        for stored in self.events.iter().skip(skip) {
            if now.duration_since(stored.at) <= config.history_age {
                break;
            }
            floor = stored.id;
        }
        floor
    }

    /// The id after which the group's last `count` events are (of those a client can still be
    /// given), when this ring holds them: `None` when an engine's history may hold more, as the
    /// ring is not complete yet, or holds fewer and the history is `shared`.
    pub(super) fn rewound_after(
        &self,
        count: usize,
        now: Instant,
        config: &Config,
        shared: bool,
    ) -> Option<u64> {
        if self.complete_after == u64::MAX {
            return None;
        }
        let floor = self.replayable_after(now, config);
        let replayable = self.events.len() - self.events.partition_point(|s| s.id <= floor);
        match replayable.checked_sub(count) {
            Some(0) => Some(floor),
            Some(_) => Some(self.events[self.events.len() - count - 1].id),
            None if shared => None,
            None => Some(floor),
        }
    }

    /// The position of the first event with an id above `id`.
    pub(super) fn position_after(&self, id: u64) -> u64 {
        self.first_pos + self.events.partition_point(|stored| stored.id <= id) as u64
    }
}
