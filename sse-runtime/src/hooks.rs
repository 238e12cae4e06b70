//! Stream hooks: code of yours run when a stream opens and when it closes, on a thread of the
//! hub's own, so it never delays a delivery and a panic in it stops nothing.

use std::{
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{mpsc, Arc, Mutex, PoisonError},
};

use once_cell::sync::OnceCell;

use crate::{GroupName, Identity};

/// One stream, as the hooks see it ([`Config::on_open`](crate::Config::on_open),
/// [`Config::on_close`](crate::Config::on_close)).
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let hub = sse::Hub::new(sse::Config::default().on_close(move |stream, reason| {
///     let user = stream.identity().map(|who| who.user().to_owned());
///     log.lock().unwrap().push((stream.number(), stream.groups().to_vec(), user, reason));
/// }));
/// let yo = sse::GroupName::new("yo")?;
/// let stream = hub.subscribe(sse::Join::group(yo.clone()).user("alice"), &Default::default())?;
/// drop(stream);
/// # for _ in 0..1000 { if !seen.lock().unwrap().is_empty() { break } std::thread::sleep(std::time::Duration::from_millis(5)) }
/// let (_, groups, user, reason) = seen.lock().unwrap()[0].clone();
/// assert_eq!((groups, user, reason), (vec![yo], Some("alice".into()), sse::CloseReason::ClientLeft));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StreamInfo {
    number: u64,
    groups: Vec<GroupName>,
    identity: Option<Identity>,
}

impl StreamInfo {
    pub(crate) fn new(number: u64, groups: Vec<GroupName>, identity: Option<Identity>) -> Self {
        Self {
            number,
            groups,
            identity,
        }
    }

    /// The stream's number in this hub, the same in its open and its close hook (they count
    /// from 1 in the order streams open).
    ///
    /// ```
    /// # let hub = sse::Hub::new(sse::Config::default().on_open(|stream| assert!(stream.number() > 0)));
    /// ```
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Its groups.
    ///
    /// ```
    /// # let hub = sse::Hub::new(sse::Config::default().on_open(|stream| println!("{:?}", stream.groups())));
    /// ```
    pub fn groups(&self) -> &[GroupName] {
        &self.groups
    }

    /// Who opened it, if its handler said ([`Join::user`](crate::Join::user)).
    ///
    /// ```
    /// # let hub = sse::Hub::new(sse::Config::default().on_open(|stream| {
    /// if let Some(who) = stream.identity() {
    ///     println!("{} opened a stream", who.user());
    /// }
    /// # }));
    /// ```
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }
}

/// Why a stream ended, as the close hook ([`Config::on_close`](crate::Config::on_close)) is
/// told.
///
/// ```
/// let reason = sse::CloseReason::ClientLeft;
/// assert_eq!(reason.to_string(), "client left");
/// assert_eq!(sse::CloseReason::Closed.to_string(), "closed by the server");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client went away (or whatever served the stream dropped it).
    ClientLeft,
    /// It fell more than [`Config::subscriber_queue`](crate::Config::subscriber_queue) events
    /// behind and was cut; the client comes back and catches up.
    FellBehind,
    /// The hub shut down ([`Hub::shutdown`](crate::Hub::shutdown)).
    ShutDown,
    /// The server closed it: [`Hub::close_user`](crate::Hub::close_user) or
    /// [`Hub::close_group`](crate::Hub::close_group), in this process or another.
    Closed,
    /// The events a reconnecting client missed could not be read from the broker; the client
    /// comes back and asks again.
    BrokerUnavailable,
    /// Its time was up ([`Join::expires_at`](crate::Join::expires_at)): a subscription token
    /// expired.
    Expired,
    /// Its groups were finished ([`Hub::finish`](crate::Hub::finish)): it ended after their
    /// end.
    Finished,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::ClientLeft => "client left",
            CloseReason::FellBehind => "fell too far behind",
            CloseReason::ShutDown => "server shutting down",
            CloseReason::Closed => "closed by the server",
            CloseReason::BrokerUnavailable => "broker unavailable",
            CloseReason::Expired => "expired",
            CloseReason::Finished => "finished",
        })
    }
}

impl CloseReason {
    /// Its name in a webhook: `client-left`, `fell-behind`…
    pub(crate) fn name(self) -> &'static str {
        match self {
            CloseReason::ClientLeft => "client-left",
            CloseReason::FellBehind => "fell-behind",
            CloseReason::ShutDown => "shut-down",
            CloseReason::Closed => "closed",
            CloseReason::BrokerUnavailable => "broker-unavailable",
            CloseReason::Expired => "expired",
            CloseReason::Finished => "finished",
        }
    }
}

type OpenHook = Arc<dyn Fn(&StreamInfo) + Send + Sync>;
type CloseHook = Arc<dyn Fn(&StreamInfo, CloseReason) + Send + Sync>;

/// The hooks of a hub, as its settings hold them, and its webhooks.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_open: Option<OpenHook>,
    pub(crate) on_close: Option<CloseHook>,
    #[cfg(feature = "webhooks")]
    pub(crate) webhooks: Option<Arc<crate::webhooks::Sender>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_open", &self.on_open.is_some())
            .field("on_close", &self.on_close.is_some())
            .field("webhooks", &self.webhooks().is_some())
            .finish()
    }
}

/// The webhooks are told at once (they only queue), the hooks on the worker.
impl Hooks {
    /// Whether anything wants to hear of streams closing (and so of them opening).
    pub(crate) fn hear_closes(&self) -> bool {
        self.on_close.is_some() || self.webhooks().is_some()
    }

    /// Tells the open hook and the webhooks that `stream` opened.
    pub(crate) fn opened(&self, worker: &Worker, stream: &Arc<StreamInfo>) {
        if let Some(webhooks) = self.webhooks() {
            webhooks.opened(stream.number, &stream.groups, stream.identity());
        }
        if let Some(on_open) = self.on_open.clone() {
            let stream = stream.clone();
            worker.run(move || on_open(&stream));
        }
    }

    /// Tells the close hook and the webhooks that `stream` closed.
    pub(crate) fn closed(&self, worker: &Worker, stream: Arc<StreamInfo>, reason: CloseReason) {
        if let Some(webhooks) = self.webhooks() {
            let (number, groups, who) = (stream.number, &stream.groups, stream.identity());
            webhooks.closed(number, groups, who, reason.name());
        }
        if let Some(on_close) = self.on_close.clone() {
            worker.run(move || on_close(&stream, reason));
        }
    }

    /// Tells the webhooks of a presence event (`name`, with its JSON `data`) in `group`.
    pub(crate) fn presence_changed(&self, group: &GroupName, name: &str, data: &str) {
        if let Some(webhooks) = self.webhooks() {
            webhooks.presence(group, name, data);
        }
    }

    /// What the webhooks have done, if there are any.
    #[cfg(feature = "webhooks")]
    pub(crate) fn webhook_stats(&self) -> Option<crate::WebhookStats> {
        self.webhooks().map(|webhooks| webhooks.stats())
    }

    #[cfg(feature = "webhooks")]
    fn webhooks(&self) -> Option<&crate::webhooks::Sender> {
        self.webhooks.as_deref()
    }

    #[cfg(not(feature = "webhooks"))]
    fn webhooks(&self) -> Option<&Unconfigured> {
        None
    }
}

/// What stands for the webhooks without feature `webhooks`: there are none.
#[cfg(not(feature = "webhooks"))]
pub(crate) enum Unconfigured {}

#[cfg(not(feature = "webhooks"))]
impl Unconfigured {
    fn opened(&self, _: u64, _: &[GroupName], _: Option<&Identity>) {
        match *self {}
    }
    fn closed(&self, _: u64, _: &[GroupName], _: Option<&Identity>, _: &str) {
        match *self {}
    }
    fn presence(&self, _: &GroupName, _: &str, _: &str) {
        match *self {}
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread named `sse-hooks`, started with the first job, that runs jobs one at a time in the
/// order they were given, each caught if it panics. It ends once the worker is dropped and its
/// queue is done.
#[derive(Default)]
pub(crate) struct Worker {
    queue: OnceCell<Mutex<mpsc::Sender<Job>>>,
}

impl Worker {
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        let queue = self.queue.get_or_init(|| {
            let (queue, jobs) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("sse-hooks".into())
                .spawn(move || jobs.into_iter().for_each(run_caught));
            if let Err(error) = started {
                // The receiver is gone with the closure: jobs are dropped, and said so below.
                tracing::error!(%error, "cannot start the sse-hooks thread: hooks will not run");
            }
            Mutex::new(queue)
        });
        let sent = queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Box::new(job));
        if sent.is_err() {
            tracing::error!("the sse-hooks thread is not running: a hook was skipped");
        }
    }
}

fn run_caught(job: Job) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
        let why = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        tracing::error!(
            panic = why,
            "a stream hook panicked; nothing else is affected"
        );
    }
}
