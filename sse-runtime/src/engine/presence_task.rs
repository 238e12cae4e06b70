//! Presence and closes across processes, as one task on an engine's thread: each change of a
//! user's count of streams here is written in the order it happened, and every `ttl / 3` (a
//! heartbeat) all of this process's entries are written again, in case the engine lost them.
//! Where they are written is the engine's [`Store`].

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{Entry, Sink};
use crate::{identity::Closing, BrokerError, GroupName};

pub(crate) enum Command {
    Update(GroupName, Entry),
    Read(GroupName, oneshot::Sender<Result<Vec<Entry>, BrokerError>>),
    Close(Closing, oneshot::Sender<Result<(), BrokerError>>),
}

/// Where an engine keeps presence, and how it tells other processes to close streams.
pub(crate) trait Store: Send + Sync {
    /// Writes this process's `entries` of `group` (all of its entries of it when `full`): the
    /// users who thereby joined (`streams` 1) or left (0) the whole deployment.
    fn sync(
        &self,
        group: &GroupName,
        entries: &[Entry],
        full: bool,
    ) -> impl Future<Output = Result<Vec<Entry>, BrokerError>> + Send;

    /// The users with streams of `group` in every live process, their streams summed.
    fn read(
        &self,
        group: &GroupName,
    ) -> impl Future<Output = Result<Vec<Entry>, BrokerError>> + Send;

    /// Tells every other process to close these streams.
    fn close(&self, closing: &Closing) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// Serves `commands` in order, and heartbeats every `ttl / 3`, until the engine stops; `shown`
/// names the engine in logs.
pub(crate) async fn run(
    store: impl Store,
    sink: Arc<dyn Sink>,
    ttl: Duration,
    shown: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut heartbeat = tokio::time::interval(ttl / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sync = |group: GroupName, entries: Vec<Entry>, full| {
        let (store, sink) = (&store, &sink);
        async move {
            let changes = store.sync(&group, &entries, full).await?;
            if !changes.is_empty() {
                sink.presence_changed(group, changes);
            }
            Ok::<(), BrokerError>(())
        }
    };
    // Whether the last write reached the engine: a failure is logged once, not at each write.
    let mut answering = true;
    loop {
        let written = tokio::select! {
            _ = heartbeat.tick() => {
                let mut written = Ok(());
                for (group, entries) in sink.presence_here() {
                    written = written.and(sync(group, entries, true).await);
                }
                written
            }
            command = commands.recv() => match command {
                None => return,
                Some(Command::Update(group, entry)) => sync(group, vec![entry], false).await,
                Some(Command::Read(group, reply)) => {
                    let _ = reply.send(store.read(&group).await);
                    continue;
                }
                Some(Command::Close(closing, reply)) => {
                    let _ = reply.send(store.close(&closing).await);
                    continue;
                }
            },
        };
        match &written {
            Err(error) if answering => tracing::warn!(
                engine = %shown, error = error as &dyn std::error::Error,
                "presence not written: it is written again once the engine answers"
            ),
            Ok(()) if !answering => tracing::info!(engine = %shown, "presence written again"),
            _ => {}
        }
        answering = written.is_ok();
    }
}
