//! The listening side: how a process hears the events of the groups it has subscribers for, and
//! the closes of other processes. One connection `LISTEN`s to both channels; a notification
//! names its group, so every process hears every group's and keeps those it holds. Histories
//! are read over the pool.
//!
//! The engine's publishes are notified; those made inside apps' transactions are not (a
//! notification would serialize their commits): they move the sequence `sse_published`. A
//! second connection waits in Postgres for it to move (`sse_ring`, which looks every
//! [`RING_EVERY`] without a round trip). From then on, for [`RINGING_FOR`], this side looks
//! every [`RING_EVERY`] where the held groups stand, and reads what a group got beyond what was
//! heard from `sse_events`; so does the poll, every [`POLL_EVERY`], for a transaction that
//! committed later, after a lost connection, and for a notification lost some other way. A
//! notification whose events do not follow the last ones heard of their group is read the same
//! way.

use std::{collections::HashMap, sync::Arc, time::Instant};

use futures_util::future::try_join_all;
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::mpsc;

use super::{
    reads, wait_for_rings, Limits, Target, CONTROL_CHANNEL, EVENTS_CHANNEL, POLL_EVERY,
    RINGING_FOR, RING_EVERY,
};
use crate::{
    engine::{
        batch::split_batch,
        control,
        presence_task::ClosesHeard,
        threaded::{self, Listening},
        Sink,
    },
    resume::{self, SharedHistory, Since},
    BrokerError, GroupName,
};

/// Groups quiet for this many polls are trimmed by age (and the other tables with them).
const TRIM_EVERY_POLLS: u32 = 10;
/// Notifications heard and not yet handled: the hearing connection waits beyond this.
const HEARD_BACKLOG: usize = 4096;

pub(super) struct Listener {
    target: Target,
    limits: Limits,
    /// Where the events heard, and the closes of other processes, go.
    sink: Arc<dyn Sink>,
    /// Told once the control channel is listened to.
    closes: ClosesHeard,
    /// Names this process in closes: its own are not heard again.
    process: Arc<str>,
    pool: PgPool,
    /// The groups held here, each with its mark: every event of the group with this id or a
    /// lower one was delivered here, or published before the group was held. `None` until the
    /// group's first read.
    groups: HashMap<GroupName, Option<u64>>,
    /// When `sse_published` last moved.
    rung: Option<Instant>,
}

/// The connection that `LISTEN`s, on a task of its own that passes on what it hears, and the
/// one that waits for `sse_published` to move, on another that says when it did: `None` once
/// either connection was lost. Dropped, they stop.
pub(super) struct Hearing {
    heard: mpsc::Receiver<Option<sqlx::postgres::PgNotification>>,
    rung: mpsc::Receiver<Option<()>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Hearing {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Listener {
    pub(super) fn new(
        target: Target,
        limits: Limits,
        (sink, closes): (Arc<dyn Sink>, ClosesHeard),
        process: Arc<str>,
        pool: PgPool,
    ) -> Self {
        Self {
            target,
            limits,
            sink,
            closes,
            process,
            pool,
            groups: HashMap::new(),
            rung: None,
        }
    }

    /// Connects the listening connection and starts passing on what it hears.
    async fn hear(&self) -> Result<Hearing, BrokerError> {
        let target = &self.target;
        let mut listener = target
            .answer_within(PgListener::connect_with(&self.pool))
            .await?;
        let channels = [EVENTS_CHANNEL, CONTROL_CHANNEL];
        target.answer_within(listener.listen_all(channels)).await?;
        self.closes.heard();
        let ringing = target.answer_within(self.pool.acquire()).await?.detach();
        let (pass, heard) = mpsc::channel(HEARD_BACKLOG);
        let hearing = tokio::spawn(async move {
            loop {
                let notification = listener.try_recv().await.ok().flatten();
                let lost = notification.is_none();
                if pass.send(notification).await.is_err() || lost {
                    return;
                }
            }
        });
        let (ring, rung) = mpsc::channel(1);
        let tasks = [hearing, tokio::spawn(wait_for_rings(ringing, ring))];
        Ok(Hearing { heard, rung, tasks })
    }

    /// Listens until the connection is lost (`Err`) or the hub is gone (`Ok`).
    async fn listen(
        &mut self,
        mut hearing: Hearing,
        commands: &mut mpsc::UnboundedReceiver<Listening>,
    ) -> Result<(), BrokerError> {
        // Back after an outage (or first here): fetch what was published while nobody here
        // was listening; groups held meanwhile start from where they stand.
        let groups: Vec<GroupName> = self.groups.keys().cloned().collect();
        self.catch_up(groups).await?;
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut look = tokio::time::interval(RING_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut polls = 0u32;
        loop {
            tokio::select! {
                heard = hearing.heard.recv() => match heard.flatten() {
                    None => return Err(BrokerError::new(format!(
                        "lost the listening connection to Postgres at {}", self.target.shown
                    ))),
                    Some(notification) => self.heard(notification.channel(), notification.payload()).await?,
                },
                _ = poll.tick() => {
                    polls = polls.wrapping_add(1);
                    self.poll(polls % TRIM_EVERY_POLLS == 0).await?;
                }
                rung = hearing.rung.recv() => match rung.flatten() {
                    None => return Err(BrokerError::new(format!(
                        "lost the connection waiting for publishes at {}", self.target.shown
                    ))),
                    Some(()) => {
                        self.rung = Some(Instant::now());
                        self.look().await?;
                    }
                },
                _ = look.tick(), if self.ringing() => self.look().await?,
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(command) => self.command(command).await?,
                },
            }
        }
    }

    async fn command(&mut self, command: Listening) -> Result<(), BrokerError> {
        match command {
            Listening::Hold(group) => {
                if !self.groups.contains_key(&group) {
                    self.groups.insert(group.clone(), None);
                    self.catch_up(vec![group]).await?;
                }
            }
            Listening::Free(group) => {
                self.groups.remove(&group);
            }
            Listening::CatchUp {
                groups,
                from,
                reply,
            } => {
                if reply.is_closed() {
                    return Ok(());
                }
                match self.read(&groups, &from).await {
                    Ok(histories) => {
                        let age_us = self.limits.age_us;
                        let _ = reply.send(Ok(resume::caught_up(histories, &from, age_us)));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.clone()));
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// A notification: a batch of a group's events, the ids of one too large to be sent, or a
    /// close from another process.
    async fn heard(&mut self, channel: &str, payload: &str) -> Result<(), BrokerError> {
        if channel == CONTROL_CHANNEL {
            if let Some(closing) = control::closing(payload.as_bytes(), &self.process) {
                self.sink.close(closing);
            }
            return Ok(());
        }
        let Some((group, batch)) = payload.split_once('\n') else {
            tracing::warn!("ignored a malformed notification");
            return Ok(());
        };
        let Some((group, mark)) = self.groups.get_key_value(group) else {
            return Ok(()); // a group not held here
        };
        if let Some(events) = split_batch(batch.as_bytes()) {
            // Events published in a transaction, not notified, came in between: read them.
            let first = events.first().map(|&(id, _)| id);
            if let (Some(mark), Some(first)) = (*mark, first) {
                if first > mark + 1 {
                    return self.catch_up(vec![group.clone()]).await;
                }
            }
            let mut last = *mark;
            for (id, event) in events {
                // Ids at or below the mark were already read from the history.
                if last.is_some_and(|mark| id <= mark) {
                    continue;
                }
                last = Some(id);
                self.sink
                    .event(group.as_str(), id, &batch.as_bytes()[event]);
            }
            let group = group.clone();
            self.groups.insert(group, last);
            return Ok(());
        }
        let last = batch
            .split_once('-')
            .and_then(|(_, last)| last.parse::<u64>().ok());
        match last {
            // Announced by its ids: read what came after the mark.
            Some(last) if mark.map_or(true, |mark| mark < last) => {
                self.catch_up(vec![group.clone()]).await
            }
            Some(_) => Ok(()),
            None => {
                tracing::warn!(group = %group, "ignored a malformed notification");
                Ok(())
            }
        }
    }

    /// Whether `sse_published` moved within [`RINGING_FOR`], and groups are held here.
    fn ringing(&self) -> bool {
        let lately = self.rung.is_some_and(|at| at.elapsed() <= RINGING_FOR);
        lately && !self.groups.is_empty()
    }

    /// Looks where the held groups stand, and reads what each got beyond what was heard; trims
    /// the tables by age when `trim`.
    async fn poll(&mut self, trim: bool) -> Result<(), BrokerError> {
        if trim {
            let trimming = sqlx::query("SELECT sse_trim($1, $2, $3)")
                .bind(self.limits.age_us as i64)
                .bind(self.limits.once_us)
                .bind(self.limits.seq_ttl_us)
                .execute(&self.pool);
            self.target.answer_within(trimming).await?;
        }
        self.look().await
    }

    /// Asks where the held groups stand, and reads what those ahead of their marks got: events
    /// published in transactions, or a notification not yet handled (then skipped).
    async fn look(&mut self) -> Result<(), BrokerError> {
        // Without a history there is nothing to read, and every event is notified (even a
        // transaction's): a group ahead has a notification on its way.
        if self.groups.is_empty() || self.limits.events == 0 {
            return Ok(());
        }
        let names: Vec<&str> = self.groups.keys().map(GroupName::as_str).collect();
        let asking = sqlx::query_as::<_, (String, i64)>(
            "SELECT name, seq FROM sse_groups WHERE name = ANY($1)",
        )
        .bind(names)
        .fetch_all(&self.pool);
        let stand = self.target.answer_within(asking).await?;
        let ahead: Vec<GroupName> = stand
            .into_iter()
            .filter_map(
                |(group, seq)| match self.groups.get_key_value(group.as_str()) {
                    Some((group, &Some(mark))) if seq as u64 > mark => Some(group.clone()),
                    _ => None,
                },
            )
            .collect();
        if ahead.is_empty() {
            return Ok(());
        }
        self.catch_up(ahead).await
    }

    /// Reads the history of `groups` after their marks, delivers what was missed (ordered by
    /// Postgres's clock across groups), and marks each group as listened to from where it
    /// stands (a group without a mark starts there).
    async fn catch_up(&mut self, groups: Vec<GroupName>) -> Result<(), BrokerError> {
        let marks: Vec<Option<u64>> = groups
            .iter()
            .map(|g| self.groups.get(g).copied().flatten())
            .collect();
        let from: Vec<Since> = marks
            .iter()
            .map(|m| m.map_or(Since::Now, Since::After))
            .collect();
        let histories = self.read(&groups, &from).await?;
        let mut missed: Vec<(u64, &GroupName, u64, &[u8])> = Vec::new();
        for ((group, mark), history) in groups.iter().zip(&marks).zip(&histories) {
            let Some(mark) = *mark else { continue };
            if history.trimmed > mark {
                // Events of transactions are read from the history: this process fell further
                // behind than the history keeps.
                tracing::warn!(
                    group = %group,
                    lost = history.trimmed - mark,
                    "events were trimmed from Postgres before this process read them"
                );
            }
            // A group's events in id order whatever their times say (a clock stepped back).
            let mut at_us = 0;
            let after = history.entries.iter().filter(|e| e.id > mark);
            missed.extend(after.map(|e| {
                at_us = e.at_us.max(at_us);
                (at_us, group, e.id, &e.encoded[..])
            }));
        }
        missed.sort_by_key(|&(at_us, _, id, _)| (at_us, id));
        for (_, group, id, encoded) in missed {
            self.sink.event(group.as_str(), id, encoded);
        }
        for ((group, mark), history) in groups.into_iter().zip(marks).zip(histories) {
            let Some(held) = self.groups.get_mut(&group) else {
                continue;
            };
            *held = Some(mark.map_or(history.seq, |mark| mark.max(history.seq)));
            if mark.is_none() {
                self.sink.complete_after(group.as_str(), history.seq);
            }
        }
        Ok(())
    }

    /// The history of each of `groups` from where `from` says, read together over the pool.
    async fn read(
        &self,
        groups: &[GroupName],
        from: &[Since],
    ) -> Result<Vec<SharedHistory>, BrokerError> {
        let reads = groups
            .iter()
            .zip(from)
            .map(|(group, since)| reads::history(&self.pool, &self.target, group.as_str(), *since));
        try_join_all(reads).await
    }
}

impl threaded::Listener for Listener {
    type Link = Hearing;

    fn name(&self) -> String {
        format!("Postgres at {}", self.target.shown)
    }

    fn groups(&mut self) -> &mut HashMap<GroupName, Option<u64>> {
        &mut self.groups
    }

    async fn connect(&mut self) -> Result<Hearing, BrokerError> {
        self.hear().await
    }

    async fn serve(
        &mut self,
        hearing: Hearing,
        commands: &mut mpsc::UnboundedReceiver<Listening>,
    ) -> Result<(), BrokerError> {
        self.listen(hearing, commands).await
    }
}
