//! The listening side: how a process hears the events of the groups it has subscribers for,
//! and the closes of other processes, over the pub/sub connection ([`Hearing`]); histories are
//! read over the command connections ([`Router`]). After a reconnection (of the one Redis, or
//! of a cluster's node, whose channels the `redis` crate subscribes again) it fetches what each
//! group missed meanwhile.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures_util::future::join_all;
use redis::Script;
use tokio::sync::mpsc;

use super::{
    link::{Heard, Hearing, Router, Target, PING_EVERY, PING_PATIENCE},
    presence, scripts, wire, Keys, Limits,
};
use crate::{
    engine::{
        control,
        presence_task::ClosesHeard,
        threaded::{self, Listening},
        Sink,
    },
    resume::{self, SharedEvent, SharedHistory, Since},
    BrokerError, GroupName,
};

/// Commands are handled in the order they were sent, so a catch-up always runs after its
/// groups' subscription was confirmed: whatever is published later arrives live, whatever was
/// published earlier is in the history read.
pub(super) struct Listener {
    target: Target,
    limits: Limits,
    /// Where the events heard, and the closes of other processes, go.
    sink: Arc<dyn Sink>,
    /// Told once the control channel is subscribed to.
    closes: ClosesHeard,
    /// Names this process on the control channel: its own closes are not heard again.
    process: Arc<str>,
    /// Where the histories are read: the node of each group's slot.
    router: Arc<Router>,
    read: Script,
    /// The groups this process listens to, each with its mark: every event of the group with
    /// this id or a lower one was delivered here, or published before the group was listened
    /// to. After a reconnection, what follows the mark is fetched. `None` until the first read
    /// after the group's subscription.
    groups: HashMap<GroupName, Option<u64>>,
    /// In a cluster, groups whose node failed their subscription or their history read (it is
    /// down): both are tried again once every node answers.
    stale: HashSet<GroupName>,
    /// In a cluster, whether the control channel's node failed its subscription.
    control_stale: bool,
    /// In a cluster, whether a node's connection was lost since every channel was last
    /// subscribed to.
    node_lost: bool,
}

impl Listener {
    pub(super) fn new(
        target: Target,
        limits: Limits,
        (sink, closes): (Arc<dyn Sink>, ClosesHeard),
        process: Arc<str>,
        router: Arc<Router>,
    ) -> Self {
        Self {
            target,
            limits,
            sink,
            closes,
            process,
            router,
            read: scripts::read(),
            groups: HashMap::new(),
            stale: HashSet::new(),
            control_stale: false,
            node_lost: false,
        }
    }

    fn in_cluster(&self) -> bool {
        self.target.in_cluster()
    }

    /// Listens until the connection is lost (`Err`) or the hub is gone (`Ok`).
    async fn hear(
        &mut self,
        mut hearing: Hearing,
        commands: &mut mpsc::UnboundedReceiver<Listening>,
    ) -> Result<(), BrokerError> {
        let groups: Vec<GroupName> = self.groups.keys().cloned().collect();
        self.stale.clear();
        self.mark_new(&groups).await?;
        match &mut hearing {
            Hearing::Single { sink, .. } => {
                let mut channels: Vec<String> = groups
                    .iter()
                    .map(|g| Keys::of(g.as_str()).channel)
                    .collect();
                channels.push(presence::CONTROL_CHANNEL.to_owned());
                sink.subscribe(&channels)
                    .await
                    .map_err(|e| self.target.failed(e))?;
                self.closes.heard();
            }
            Hearing::Cluster { .. } => {
                self.subscribe_control(&mut hearing).await;
                for group in &groups {
                    self.subscribe(&mut hearing, group).await?;
                }
            }
        }
        // Back after an outage: fetch what was published while nobody here was listening.
        self.catch_up(groups).await?;

        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answering = true;
        loop {
            tokio::select! {
                heard = hearing.next() => match heard {
                    None => return Err(BrokerError::new("the pub/sub connection closed")),
                    Some(heard) => self.heard(&mut hearing, heard).await?,
                },
                _ = ping.tick() => answering = self.ping(&mut hearing, answering).await?,
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(command) => self.command(&mut hearing, command).await?,
                },
            }
        }
    }

    async fn heard(&mut self, hearing: &mut Hearing, heard: Heard) -> Result<(), BrokerError> {
        match heard {
            Heard::Message { channel, payload } => self.receive(&channel, &payload),
            // Subscribed again after its node came back or its slot moved: what was published
            // meanwhile is in the history.
            Heard::Subscribed(channel) => {
                if let Some((group, Some(_))) = self.held(&channel) {
                    self.catch_up(vec![group]).await?;
                }
            }
            // Still held here: its slot moved to another node (resharding). Subscribing again
            // lands there (the crate follows the slot); the new subscription fetches what was
            // missed.
            Heard::Unsubscribed(channel) if channel == presence::CONTROL_CHANNEL.as_bytes() => {
                self.subscribe_control(hearing).await;
            }
            Heard::Unsubscribed(channel) => {
                if let Some((group, _)) = self.held(&channel) {
                    self.subscribe(hearing, &group).await?;
                }
            }
            Heard::NodeLost => {
                self.node_lost = true;
                tracing::warn!(
                    redis = %self.target.shown,
                    "lost the connection to a Redis node: reconnecting to it, its groups' events resume when it is back"
                );
            }
            Heard::Other => {}
        }
        Ok(())
    }

    /// The group of `channel` and its mark, if it is held here.
    fn held(&self, channel: &[u8]) -> Option<(GroupName, Option<u64>)> {
        let group = Keys::group_of_channel(std::str::from_utf8(channel).ok()?)?;
        let (group, mark) = self.groups.get_key_value(group)?;
        Some((group.clone(), *mark))
    }

    /// Asks every node whether it is there; whether all answered. A single Redis that does not
    /// is reconnected to (`Err`). In a cluster, the connection reconnects to its nodes by
    /// itself and the other nodes' groups go on: the first failure is logged, and once all
    /// answer again, the stale groups are tried again.
    async fn ping(&mut self, hearing: &mut Hearing, answering: bool) -> Result<bool, BrokerError> {
        let answered = match tokio::time::timeout(PING_PATIENCE, hearing.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.target.failed(e)),
            Err(_) => Err(BrokerError::new(format!(
                "Redis at {} did not answer a PING within {PING_PATIENCE:?}",
                self.target.shown
            ))),
        };
        match answered {
            Err(error) if !self.in_cluster() => Err(error),
            Err(error) => {
                if answering {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "a Redis node does not answer: its groups' events resume when it does"
                    );
                }
                Ok(false)
            }
            Ok(()) => {
                if std::mem::take(&mut self.node_lost) {
                    self.subscribe_again(hearing).await?;
                }
                if self.control_stale {
                    self.subscribe_control(hearing).await;
                }
                let stale: Vec<GroupName> = self.stale.drain().collect();
                self.mark_new(&stale).await?;
                for group in &stale {
                    self.subscribe(hearing, group).await?;
                }
                self.catch_up(stale).await?;
                Ok(true)
            }
        }
    }

    async fn command(
        &mut self,
        hearing: &mut Hearing,
        command: Listening,
    ) -> Result<(), BrokerError> {
        match command {
            Listening::Hold(group) => {
                if self.groups.contains_key(&group) {
                    return Ok(());
                }
                self.groups.insert(group.clone(), None);
                self.mark_new(std::slice::from_ref(&group)).await?;
                self.subscribe(hearing, &group).await?;
                self.catch_up(vec![group]).await?;
            }
            Listening::Free(group) => {
                self.stale.remove(&group);
                if self.groups.remove(&group).is_some() {
                    let unsubscribed = hearing.unsubscribe(&Keys::of(group.as_str()).channel).await;
                    if let (Err(e), false) = (unsubscribed, self.in_cluster()) {
                        return Err(self.target.failed(e));
                    }
                }
            }
            Listening::CatchUp {
                groups,
                from,
                reply,
            } => {
                if reply.is_closed() {
                    return Ok(());
                }
                match self.read_history(&groups, &from).await {
                    Ok(histories) => {
                        let caught_up = resume::caught_up(histories, &from, self.limits.age_us);
                        let _ = reply.send(Ok(caught_up));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.clone()));
                        if !self.in_cluster() {
                            return Err(error);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Subscribes to `group`'s channel. In a cluster, a node that fails leaves the group stale,
    /// to be tried again; a single Redis that fails is reconnected to.
    async fn subscribe(
        &mut self,
        hearing: &mut Hearing,
        group: &GroupName,
    ) -> Result<(), BrokerError> {
        match hearing.subscribe(&Keys::of(group.as_str()).channel).await {
            Ok(()) => Ok(()),
            Err(error) if self.in_cluster() => {
                tracing::warn!(group = %group, error = &error as &dyn std::error::Error, "cannot listen to a group yet");
                self.stale.insert(group.clone());
                Ok(())
            }
            Err(error) => Err(self.target.failed(error)),
        }
    }

    /// After a node's connection was lost, once every node answers: subscribes to every channel
    /// again, each on its own. The `redis` crate subscribes a reconnected node again by itself,
    /// but to all its sharded channels in one `SSUBSCRIBE`, which a node refuses (`CROSSSLOT`)
    /// when they are in different slots. Each new subscription fetches what its group missed
    /// ([`Heard::Subscribed`]); a channel still subscribed to is confirmed again, and fetches
    /// nothing new.
    async fn subscribe_again(&mut self, hearing: &mut Hearing) -> Result<(), BrokerError> {
        self.subscribe_control(hearing).await;
        let groups: Vec<GroupName> = self.groups.keys().cloned().collect();
        for group in &groups {
            self.subscribe(hearing, group).await?;
        }
        Ok(())
    }

    /// In a cluster, subscribes to the control channel (sharded, on its slot's node); a node
    /// that fails leaves it to be tried again once every node answers.
    async fn subscribe_control(&mut self, hearing: &mut Hearing) {
        let subscribed = hearing.subscribe(presence::CONTROL_CHANNEL).await;
        match &subscribed {
            Ok(()) => self.closes.heard(),
            Err(error) => tracing::warn!(
                error = error as &dyn std::error::Error,
                "cannot hear closes from other processes yet"
            ),
        }
        self.control_stale = subscribed.is_err();
    }

    /// Marks each of `groups` not listened to yet where it stands, before subscribing to it:
    /// whatever is published later arrives live or is in the history read once subscribed,
    /// so its streams, open since before, miss nothing.
    async fn mark_new(&mut self, groups: &[GroupName]) -> Result<(), BrokerError> {
        let new: Vec<GroupName> = groups
            .iter()
            .filter(|g| matches!(self.groups.get(*g), Some(None)))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        match self.read_history(&new, &vec![Since::Now; new.len()]).await {
            Ok(histories) => {
                for (group, history) in new.into_iter().zip(histories) {
                    self.listening_from(group, history.seq);
                }
            }
            Err(error) if self.in_cluster() => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot read where groups stand yet"
                );
                self.stale.extend(new);
            }
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Reads the history of `groups` after their marks, delivers what was missed (ordered by
    /// Redis's clock across groups), and marks each group as listened to from where it
    /// stands. Stale groups are left for later; in a cluster, so are groups whose node did not
    /// answer.
    async fn catch_up(&mut self, groups: Vec<GroupName>) -> Result<(), BrokerError> {
        let groups: Vec<GroupName> = groups
            .into_iter()
            .filter(|g| !self.stale.contains(g))
            .collect();
        let marks: Vec<Option<u64>> = groups
            .iter()
            .map(|g| self.groups.get(g).copied().flatten())
            .collect();
        let this = &*self;
        let reads = groups.iter().zip(&marks).map(|(group, mark)| async move {
            let since = mark.map_or(Since::Now, Since::After);
            this.read_history(std::slice::from_ref(group), &[since])
                .await
        });
        let histories = join_all(reads).await;
        let mut read = Vec::new();
        for ((group, mark), history) in groups.into_iter().zip(marks).zip(histories) {
            match history.map(|mut history| history.remove(0)) {
                Ok(history) => read.push((group, mark, history)),
                Err(error) if self.in_cluster() => {
                    tracing::warn!(group = %group, error = &error as &dyn std::error::Error, "cannot read a group's history yet");
                    self.stale.insert(group);
                }
                Err(error) => return Err(error),
            }
        }
        let mut missed: Vec<(&GroupName, &SharedEvent)> = read
            .iter()
            .flat_map(|(group, mark, history)| {
                let missed = history.entries.iter();
                let missed = missed.filter(move |e| mark.is_some_and(|mark| e.id > mark));
                missed.map(move |entry| (group, entry))
            })
            .collect();
        missed.sort_by_key(|(_, entry)| entry.at_us);
        for (group, entry) in missed {
            self.deliver(group.as_str(), entry.id, &entry.encoded);
        }
        for (group, _, history) in read {
            self.listening_from(group, history.seq);
        }
        Ok(())
    }

    /// A message on a group's channel: a batch of its events; or on the control channel.
    fn receive(&mut self, channel: &[u8], payload: &[u8]) {
        if channel == presence::CONTROL_CHANNEL.as_bytes() {
            if let Some(closing) = control::closing(payload, &self.process) {
                self.sink.close(closing);
            }
            return;
        }
        let group = std::str::from_utf8(channel)
            .ok()
            .and_then(Keys::group_of_channel);
        let Some(group) = group else {
            return;
        };
        let Some(events) = crate::engine::batch::split_batch(payload) else {
            return tracing::warn!(channel = group, "ignored a malformed event");
        };
        let Some(mark) = self.groups.get_mut(group) else {
            return; // left over from a group just unsubscribed
        };
        for (id, draft) in events {
            // Ids at or below the mark were already fetched from the history.
            if mark.is_some_and(|mark| id <= mark) {
                continue;
            }
            *mark = Some(id);
            self.sink.event(group, id, &payload[draft]);
        }
    }

    /// Every event of `group` published after the sequence stood at `seq` reaches this process
    /// (its subscription was confirmed before `seq` was read), or was fetched.
    fn listening_from(&mut self, group: GroupName, seq: u64) {
        let Some(mark) = self.groups.get_mut(&group) else {
            return;
        };
        let first_time = mark.is_none();
        *mark = Some(mark.map_or(seq, |mark| mark.max(seq)));
        if first_time {
            self.sink.complete_after(group.as_str(), seq);
        }
    }

    fn deliver(&self, group: &str, id: u64, draft: &[u8]) {
        self.sink.event(group, id, draft);
    }

    /// The shared history of each of `groups` after its id in `from`: one script call a group
    /// (a group's keys are in one hash slot, not theirs together), sent together, each to the
    /// node of its slot.
    async fn read_history(
        &self,
        groups: &[GroupName],
        from: &[Since],
    ) -> Result<Vec<SharedHistory>, BrokerError> {
        let reads = groups.iter().zip(from).map(|(group, since)| {
            let keys = Keys::of(group.as_str());
            let mut invocation = self.read.key(keys.seq);
            invocation.key(keys.epoch).key(keys.history);
            match since {
                // Stream ids are below 2^64; an id above every real one is simply unknown.
                Since::After(after) => invocation.arg((*after).min(u64::MAX - 1)),
                Since::Last(count) => invocation.arg(format!("~{count}")),
                Since::Now => invocation.arg("-"),
            };
            invocation
                .arg(self.limits.events)
                .arg(self.limits.seq_ttl_ms);
            let slot = self.router.slot_of(group.as_str());
            async move {
                let reply = self
                    .router
                    .invoke::<Vec<Vec<u8>>>(slot, &invocation)
                    .await?;
                wire::parse_history(reply).ok_or_else(|| {
                    BrokerError::new(format!(
                        "Redis at {} gave an unexpected history",
                        self.target.shown
                    ))
                })
            }
        });
        futures_util::future::try_join_all(reads).await
    }
}

impl threaded::Listener for Listener {
    type Link = Hearing;

    fn name(&self) -> String {
        format!("Redis at {}", self.target.shown)
    }

    fn groups(&mut self) -> &mut HashMap<GroupName, Option<u64>> {
        &mut self.groups
    }

    async fn connect(&mut self) -> Result<Hearing, BrokerError> {
        Hearing::connect(&self.target).await
    }

    async fn serve(
        &mut self,
        hearing: Hearing,
        commands: &mut mpsc::UnboundedReceiver<Listening>,
    ) -> Result<(), BrokerError> {
        self.hear(hearing, commands).await
    }
}
