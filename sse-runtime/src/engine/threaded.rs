//! What the engines that live on a thread of their own (Redis, Postgres) share: how a caller
//! waits for that thread's answers, and the thread's tasks besides publishing (the listening
//! side and presence), each started by the first command it is sent, and kept going through
//! the engine's outages by [`listen`].

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use once_cell::sync::OnceCell;
use tokio::sync::{mpsc, oneshot};

use super::{
    presence_task::{self, ClosesHeard},
    queue::{Pending, Reply},
    Engine, Entry, PresenceRead, Publishing, Sent, Sink, Taken,
};
use crate::{
    event::Draft,
    group::Held,
    identity::Closing,
    resume::{CatchUp, CaughtUp, Since},
    BrokerError, EventId, GroupName, PublishError,
};

/// How long a reconnecting client waits for its missed events before its stream ends (it then
/// comes back after the `retry:` delay and asks again).
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);
/// Reconnection delays of the listening side: doubling from the first to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the listening side is told.
pub(crate) enum Listening {
    /// A group opened here: hear its events.
    Hold(GroupName),
    /// A group freed here.
    Free(GroupName),
    /// Read the history of `groups` from where `from` says.
    CatchUp {
        groups: Vec<GroupName>,
        from: Vec<Since>,
        reply: oneshot::Sender<Result<CaughtUp, BrokerError>>,
    },
}

/// The engine's thread stopped before it answered.
fn stopped(engine: &str) -> BrokerError {
    BrokerError::new(format!("the {engine} thread stopped"))
}

/// An engine on a thread of its own: what differs between such engines, each an [`Engine`]
/// through the impl below.
pub(crate) trait Threaded: Send + Sync {
    /// The engine's name in messages: `Redis`.
    const NAME: &'static str;

    /// Its listening side and presence.
    fn tasks(&self) -> &Tasks;

    /// Starts the engine's thread, unless it runs (or stopped).
    fn thread(&self) -> Result<(), BrokerError>;

    /// Queues a publish on the engine's thread: its reply gets the answer.
    fn enqueue(&self, publish: Pending);

    /// Spawns the listening side on the engine's thread, passing what it hears to `sink`; it
    /// tells `closes` once it hears other processes' closes.
    fn start_listener(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<Listening>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError>;

    /// Spawns presence on the engine's thread, passing who joins and leaves to `sink`; it
    /// writes once the listening side tells `closes`.
    fn start_presence(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<presence_task::Command>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError>;

    /// Ends the engine's thread, and what is queued on it.
    fn stop_thread(&self);

    /// Whether the engine answers now.
    fn reachable(&self) -> Result<(), BrokerError>;
}

impl<T: Threaded> Engine for T {
    fn start(&self, sink: Arc<dyn Sink>) {
        *self
            .tasks()
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    fn stop(&self) {
        // The thread ends, and with it every task: the listener and presence let go of the
        // sink. A publish queued later is answered that the thread stopped.
        self.stop_thread();
        let sink = self
            .tasks()
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(sink);
    }

    fn check(&self) -> Result<(), BrokerError> {
        self.reachable()
    }

    fn shared(&self) -> bool {
        true
    }

    fn publish(
        &self,
        group: &str,
        draft: Draft,
        key: Option<&str>,
    ) -> Taken<Result<EventId, PublishError>> {
        publish_blocking(T::NAME, |reply| self.queue(group, draft, key, reply))
    }

    fn publish_async(&self, group: &str, draft: Draft, key: Option<&str>) -> Taken<Publishing> {
        publish_awaited(T::NAME, |reply| self.queue(group, draft, key, reply))
    }

    fn watch(&self, group: &GroupName, held: Held) {
        let command = match held {
            Held::Opened => Listening::Hold(group.clone()),
            Held::Freed => Listening::Free(group.clone()),
        };
        self.tell_listener(command);
    }

    fn history(&self, groups: Vec<GroupName>, from: Vec<Since>) -> CatchUp {
        let (reply, answer) = oneshot::channel();
        self.tell_listener(Listening::CatchUp {
            groups,
            from,
            reply,
        });
        Box::pin(async move {
            match tokio::time::timeout(CATCH_UP_PATIENCE, answer).await {
                Ok(Ok(caught_up)) => caught_up,
                Ok(Err(_)) => Err(BrokerError::new(format!(
                    "the {} listener stopped",
                    T::NAME
                ))),
                Err(_) => Err(BrokerError::new(format!(
                    "{} did not give the missed events within {CATCH_UP_PATIENCE:?}",
                    T::NAME
                ))),
            }
        })
    }

    fn count(&self, group: GroupName, entry: Entry) {
        self.tell_presence(presence_task::Command::Update(group, entry));
    }

    fn presence(&self, group: &str) -> PresenceRead {
        let Ok(group) = GroupName::new(group) else {
            // No stream can be in a group with an invalid name.
            return Box::pin(std::future::ready(Ok(Vec::new())));
        };
        let (reply, answer) = oneshot::channel();
        self.tell_presence(presence_task::Command::Read(group, reply));
        answered(T::NAME, answer)
    }

    fn close(&self, closing: &Closing) -> Sent {
        let (reply, answer) = oneshot::channel();
        self.tell_presence(presence_task::Command::Close(closing.clone(), reply));
        answered(T::NAME, answer)
    }
}

/// Handing work to the thread of a [`Threaded`] engine: publishes, and commands to its tasks,
/// which the first command starts.
trait Tell {
    fn queue(&self, group: &str, draft: Draft, key: Option<&str>, reply: Reply);
    fn tell_listener(&self, command: Listening);
    fn tell_presence(&self, command: presence_task::Command);
}

impl<T: Threaded> Tell for T {
    fn queue(&self, group: &str, draft: Draft, key: Option<&str>, reply: Reply) {
        match self.thread() {
            Ok(()) => self.enqueue(Pending {
                group: group.to_owned(),
                draft,
                key: key.map(str::to_owned),
                reply,
            }),
            Err(error) => reply(Err(error)),
        }
    }

    fn tell_listener(&self, command: Listening) {
        let tasks = self.tasks();
        let closes = &tasks.closes;
        let start = |sink, commands| self.start_listener(sink, commands, closes.clone());
        tasks.tell(T::NAME, &tasks.listener, "the listener", &start, command);
    }

    fn tell_presence(&self, command: presence_task::Command) {
        let tasks = self.tasks();
        let closes = &tasks.closes;
        let start = |sink, commands| self.start_presence(sink, commands, closes.clone());
        tasks.tell(T::NAME, &tasks.presence, "presence", &start, command);
    }
}

/// A publish handed to the engine's thread by `queue`, its answer waited for on this thread
/// (a `std` channel: waiting neither needs nor disturbs a runtime this thread may be running).
pub(crate) fn publish_blocking(
    engine: &'static str,
    queue: impl FnOnce(Reply),
) -> Taken<Result<EventId, PublishError>> {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    queue(Box::new(move |answered| {
        let _ = reply.send(answered);
    }));
    let id = answer.recv().unwrap_or_else(|_| Err(stopped(engine)));
    Taken::Sent(id.map(EventId).map_err(PublishError::Broker))
}

/// A publish handed to the engine's thread by `queue` now, its answer awaited.
pub(crate) fn publish_awaited(
    engine: &'static str,
    queue: impl FnOnce(Reply),
) -> Taken<Publishing> {
    let (reply, answer) = oneshot::channel();
    queue(Box::new(move |answered| {
        let _ = reply.send(answered);
    }));
    Taken::Sent(Box::pin(async move {
        let id = answer.await.unwrap_or_else(|_| Err(stopped(engine)));
        Ok(EventId(id.map_err(PublishError::Broker)?))
    }))
}

/// The answer of a task of the engine's thread, on its way.
fn answered<T: Send + 'static>(
    engine: &'static str,
    answer: oneshot::Receiver<Result<T, BrokerError>>,
) -> Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send>> {
    Box::pin(async move { answer.await.unwrap_or_else(|_| Err(stopped(engine))) })
}

/// The listening side and presence of an engine's thread, each started by its first command,
/// and where what they hear goes, from [`Engine::start`] to [`Engine::stop`].
#[derive(Default)]
pub(crate) struct Tasks {
    sink: Mutex<Option<Arc<dyn Sink>>>,
    listener: OnceCell<mpsc::UnboundedSender<Listening>>,
    presence: OnceCell<mpsc::UnboundedSender<presence_task::Command>>,
    /// Told by the listener, waited for by presence.
    closes: ClosesHeard,
}

/// Spawns a task of the engine's thread, passing what it hears to the sink, with the commands
/// it is to receive.
type Start<'a, C> =
    &'a dyn Fn(Arc<dyn Sink>, mpsc::UnboundedReceiver<C>) -> Result<(), BrokerError>;

impl Tasks {
    /// Sends `command` to the task `task` holds, which the first command starts with `start`
    /// (nothing is heard before the engine starts, or after it stops).
    fn tell<C: Send + 'static>(
        &self,
        engine: &str,
        task: &OnceCell<mpsc::UnboundedSender<C>>,
        what: &str,
        start: Start<'_, C>,
        command: C,
    ) {
        let commands = task.get_or_init(|| {
            let (commands, received) = mpsc::unbounded_channel();
            let sink = self
                .sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let started = match sink {
                Some(sink) => start(sink, received),
                None => Err(BrokerError::new(format!(
                    "the {engine} engine is not running"
                ))),
            };
            if let Err(error) = started {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "cannot start {engine} {what}: nothing is heard from other processes"
                );
            }
            commands
        });
        // A task that stopped answers nothing: a reply's sender, dropped with its command,
        // says so.
        let _ = commands.send(command);
    }
}

/// A listening side: what it keeps of each group it hears, and how it hears them while the
/// engine answers.
pub(crate) trait Listener: Send {
    /// A connection that hears the engine.
    type Link: Send;

    /// The engine, as messages name it (`Redis at redis://…`).
    fn name(&self) -> String;

    /// The groups held here, each with its mark: every event of the group up to this id was
    /// delivered here. `None` until the group was first read.
    fn groups(&mut self) -> &mut HashMap<GroupName, Option<u64>>;

    /// Connects to hear the engine.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Link, BrokerError>> + Send;

    /// Hears the groups on `link`, reading what they missed, and serves `commands` until the
    /// connection is lost (`Err`) or the hub is gone (`Ok`).
    fn serve(
        &mut self,
        link: Self::Link,
        commands: &mut mpsc::UnboundedReceiver<Listening>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// Runs `listener` until the hub is gone: through the engine's outages, reconnecting with a
/// backoff, and keeping track meanwhile of the groups held and freed.
pub(crate) async fn listen(
    mut listener: impl Listener,
    mut commands: mpsc::UnboundedReceiver<Listening>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut was_down = false;
    loop {
        let lost = match listener.connect().await {
            Ok(link) => {
                if was_down {
                    tracing::info!(engine = %listener.name(), "back: listening again");
                }
                backoff = FIRST_BACKOFF;
                match listener.serve(link, &mut commands).await {
                    Ok(()) => return,
                    Err(lost) => lost,
                }
            }
            Err(lost) => lost,
        };
        was_down = true;
        tracing::warn!(
            engine = %listener.name(), error = &lost as &dyn std::error::Error, retry_in = ?backoff,
            "link down: streams stay open, events resume when it is back"
        );
        if !wait_offline(&mut listener, backoff, &mut commands).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Waits `delay`, keeping track of groups held and freed meanwhile; `false` when the hub is
/// gone.
async fn wait_offline(
    listener: &mut impl Listener,
    delay: Duration,
    commands: &mut mpsc::UnboundedReceiver<Listening>,
) -> bool {
    let pause = tokio::time::sleep(delay);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            () = &mut pause => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(Listening::Hold(group)) => {
                    listener.groups().entry(group).or_insert(None);
                }
                Some(Listening::Free(group)) => {
                    listener.groups().remove(&group);
                }
                Some(Listening::CatchUp { reply, .. }) => {
                    let down = format!("{} is unreachable", listener.name());
                    let _ = reply.send(Err(BrokerError::new(down)));
                }
            },
        }
    }
}
