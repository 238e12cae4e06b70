//! Presence and closes across processes, as one task on an engine's thread: each change of a
//! user's count of streams here is written in the order it happened, and every `ttl / 3` (a
//! heartbeat) all of this process's entries are written again, in case the engine lost them.
//! Where they are written is the engine's [`Store`]. Nothing is written before the listening
//! side hears other processes' closes ([`ClosesHeard`]): a user shown present anywhere can be
//! closed everywhere.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use super::{Entry, Sink};
use crate::{identity::Closing, BrokerError, GroupName};

pub(crate) enum Command {
    Update(GroupName, Entry),
    Read(GroupName, oneshot::Sender<Result<Vec<Entry>, BrokerError>>),
    Close(Closing, oneshot::Sender<Result<(), BrokerError>>),
}

/// Whether this process's listening side hears other processes' closes yet: its presence task
/// writes nothing before it does, so a close sent once a user shows present reaches every
/// process with a stream of theirs.
#[derive(Clone)]
pub(crate) struct ClosesHeard(Arc<watch::Sender<bool>>);

impl Default for ClosesHeard {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl ClosesHeard {
    /// The listening side hears closes from now on.
    pub(crate) fn heard(&self) {
        self.0.send_replace(true);
    }
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
/// names the engine in logs. Writes begin once `closes` are heard.
pub(crate) async fn run(
    store: impl Store,
    sink: Arc<dyn Sink>,
    (ttl, shown): (Duration, String),
    closes: ClosesHeard,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut heard = closes.0.subscribe();
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
    let write_all = || async {
        let mut written = Ok(());
        for (group, entries) in sink.presence_here() {
            written = written.and(sync(group, entries, true).await);
        }
        written
    };
    // Whether the last write reached the engine: a failure is logged once, not at each write.
    let mut answering = true;
    loop {
        let written = tokio::select! {
            _ = heartbeat.tick(), if *heard.borrow() => write_all().await,
            // Closes are heard from now on: every entry that waited for it is written.
            Ok(()) = heard.changed(), if !*heard.borrow() => write_all().await,
            command = commands.recv() => match command {
                None => return,
                // Written with all the others once closes are heard.
                Some(Command::Update(..)) if !*heard.borrow() => continue,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A write: group, users, full.
    type Write = (String, Vec<String>, bool);

    /// Keeps every write.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<Write>>>);

    impl Written {
        fn all(&self) -> Vec<Write> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Store for Written {
        async fn sync(
            &self,
            group: &GroupName,
            entries: &[Entry],
            full: bool,
        ) -> Result<Vec<Entry>, BrokerError> {
            let users = entries.iter().map(|e| e.user.clone()).collect();
            self.0
                .lock()
                .unwrap()
                .push((group.to_string(), users, full));
            Ok(Vec::new())
        }

        async fn read(&self, _: &GroupName) -> Result<Vec<Entry>, BrokerError> {
            Ok(Vec::new())
        }

        async fn close(&self, _: &Closing) -> Result<(), BrokerError> {
            Ok(())
        }
    }

    /// A process with alice's stream in "room".
    struct Here;

    impl Sink for Here {
        fn event(&self, _: &str, _: u64, _: &[u8]) {}
        fn complete_after(&self, _: &str, _: u64) {}
        fn presence_changed(&self, _: GroupName, _: Vec<Entry>) {}
        fn presence_here(&self) -> Vec<(GroupName, Vec<Entry>)> {
            vec![(GroupName::new("room").unwrap(), vec![alice()])]
        }
        fn close(&self, _: Closing) {}
    }

    fn alice() -> Entry {
        Entry {
            user: "alice".into(),
            streams: 1,
            meta: String::new(),
        }
    }

    /// Waits for the task to have served every command sent so far (it serves them in order).
    async fn served(commands: &mpsc::UnboundedSender<Command>) {
        let (reply, answer) = oneshot::channel();
        commands
            .send(Command::Read(GroupName::new("room").unwrap(), reply))
            .unwrap();
        answer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn presence_is_written_only_once_closes_are_heard_then_all_of_it() {
        let (written, closes) = (Written::default(), ClosesHeard::default());
        let (commands, received) = mpsc::unbounded_channel();
        let ttl = Duration::from_secs(3600);
        let task = run(
            written.clone(),
            Arc::new(Here),
            (ttl, "test".into()),
            closes.clone(),
            received,
        );
        let task = tokio::spawn(task);
        let room = GroupName::new("room").unwrap();

        commands
            .send(Command::Update(room.clone(), alice()))
            .unwrap();
        served(&commands).await;
        assert_eq!(written.all(), [], "nothing before closes are heard");

        closes.heard();
        // Bounded: the task writes as soon as it runs again.
        for _ in 0..1_000 {
            if !written.all().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let first = written.all().first().cloned();
        assert_eq!(first, Some(("room".into(), vec!["alice".into()], true)));

        let before = written.all().len();
        commands.send(Command::Update(room, alice())).unwrap();
        served(&commands).await;
        let after = written.all();
        assert_eq!(after.len(), before + 1, "{after:?}");
        assert_eq!(after[before], ("room".into(), vec!["alice".into()], false));
        drop(commands);
        task.await.unwrap();
    }
}
