//! A subscription: one stream's events as ready-to-write bytes, whatever carries them.

use std::{
    cell::Cell,
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::{
    cursor::Cursor,
    event::{self, Draft},
    hooks::CloseReason,
    one_or_many::OneOrMany,
    registration::Registration,
    registry::{Read, Reader, Run, Start, Stored},
    resume::{CatchUp, CaughtUp, Since},
    GroupName, Identity, LastEventId,
};

/// A subscriber reads at most about this many bytes at once, so one write never grows unbounded.
const BATCH_BYTES: usize = 64 * 1024;

/// One open stream of a hub's groups, from [`Hub::subscribe`](crate::Hub::subscribe): a
/// [`Stream`] of bytes ready to write to a client as `text/event-stream`.
///
/// It yields, in order: the `retry:` hint and a [`stream-start`](crate::STREAM_START) event whose
/// id is where the stream starts (so a client that reconnects before any other event resumes
/// from there), or a [`stream-reset`](crate::STREAM_RESET) event when the client's
/// `Last-Event-ID` could not be resumed from; the events the client missed;
/// then every event published to its groups, several pending events in one chunk, and a `:`
/// keep-alive comment when it is idle. It ends only when its client falls too far behind (after
/// a last comment), the hub shuts down (after a short `retry:` hint), the server closes it or
/// its time is up ([`Join::expires_at`](crate::Join::expires_at); both after a
/// [`stream-closed`](crate::STREAM_CLOSED) event); a client that leaves just drops it. Why it
/// ended is its [`CloseReason`], given to the close hook
/// ([`Config::on_close`](crate::Config::on_close)). It is an axum response:
/// [`#[sse::subscribe]`](crate::subscribe) handlers, and any handler that returns one, serve it
/// as an HTTP body; serve it yourself over anything else, or read it in a test.
///
/// Poll it on a tokio runtime with time enabled, unless keep-alives are off
/// ([`Config::keep_alive`](crate::Config::keep_alive)).
///
/// ```
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = sse::Hub::new(sse::Config::default().retry(None));
/// let yo = sse::GroupName::new("yo")?;
/// let mut subscription = hub.subscribe([yo], &sse::LastEventId::default())?;
/// let start = subscription.next().await.unwrap();
/// let id = hub.publish("yo", Some("yo"), "yo from alice to bob")?;
/// assert_eq!(start, format!("event: stream-start\ndata: \nid: {}\n\n", id.get() - 1));
/// let event = subscription.next().await.unwrap();
/// assert_eq!(event, format!("event: yo\ndata: yo from alice to bob\nid: {id}\n\n"));
/// # Ok(()) }
/// ```
#[must_use = "a subscription receives events only while it is polled"]
pub struct Subscription {
    // Not vectors: a stream of one group keeps these inline and one of several no spare room,
    // and this struct fits in 192 bytes (see `BENCHMARKS.md`, "Where an idle stream's bytes
    // go").
    groups: OneOrMany<GroupName>,
    /// Per group, where the stream stands: what its ids say, and what it gave already.
    cursors: OneOrMany<Cursor>,
    /// Per group, whether the stream gave its end (or the client had it): once each group's
    /// is given, the stream ends.
    finished: OneOrMany<bool>,
    /// What comes before the live events; boxed, as an idle stream sent it long ago.
    opening: Option<Box<Opening>>,
    reader: Reader,
    keep_alive: Option<KeepAlive>,
    /// Why it ended, once it did.
    ended: Option<CloseReason>,
    /// Who opened it and what it does once dropped; boxed, so an anonymous stream without
    /// hooks pays one pointer for them.
    owner: Option<Box<Owner>>,
}

/// What a stream sends before its live events.
#[derive(Default)]
struct Opening {
    /// Sent first: the `retry:` hint, and where the stream starts or its `stream-reset`.
    start: Option<Bytes>,
    /// Then, when the client resumes from ids only the engine's shared history covers, the
    /// events it missed; live events wait in the reader meanwhile.
    catch_up: Option<CatchUp>,
}

#[derive(Default)]
struct Owner {
    identity: Option<Identity>,
    /// Run when the subscription is dropped, with why it ended.
    on_close: Option<OnClose>,
    /// When it ends, if it does of itself.
    expiry: Option<Expiry>,
}

struct Expiry {
    at: Instant,
    /// Made at the first poll, so a subscription can be made outside a runtime.
    timer: Option<Pin<Box<Sleep>>>,
}

/// What a subscription does when it is dropped: let presence and the close hook know.
pub(crate) type OnClose = Box<dyn FnOnce(CloseReason) + Send + Sync>;

/// Its period is the hub's (the reader's `keep_alive`), not a copy in every stream.
struct KeepAlive {
    /// When something was last sent. Reading the clock is cheaper than moving the timer at
    /// every chunk: the timer is moved when it fires early.
    sent: Instant,
    /// The timer's deadline: until then it cannot have fired, which the clock tells without
    /// touching the timer.
    fires: Instant,
    /// Made at the first poll, so a subscription can be made outside a runtime.
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker the timer holds: until it fires, it need not be polled again.
    registration: Registration,
}

impl Subscription {
    pub(crate) fn new(
        groups: Vec<GroupName>,
        reader: Reader,
        start: Start,
        finished: Vec<bool>,
        retry: Option<Duration>,
    ) -> Self {
        let mut first = BytesMut::new();
        if let Some(retry) = retry {
            first.put(event::retry_hint(retry));
        }
        let cursors = match start {
            Start::At(cursors) => {
                put_event(&mut first, event::stream_start(), &groups, &cursors);
                cursors
            }
            Start::Reset(why, cursors) => {
                put_event(&mut first, event::stream_reset(why), &groups, &cursors);
                cursors
            }
            // Where the client was, until the engine says where the stream goes on from.
            Start::CatchUp(from) => from
                .into_iter()
                .map(|since| match since {
                    Since::After(id) => Cursor::at(id),
                    Since::Now | Since::Last(_) => Cursor::at(0),
                })
                .collect(),
        };
        Self {
            groups: groups.into(),
            cursors: cursors.into(),
            finished: finished.into(),
            opening: (!first.is_empty()).then(|| {
                Box::new(Opening {
                    start: Some(first.freeze()),
                    catch_up: None,
                })
            }),
            keep_alive: reader.keep_alive().map(|every| KeepAlive {
                sent: Instant::now(),
                fires: Instant::now() + every,
                timer: None,
                registration: Registration::default(),
            }),
            reader,
            ended: None,
            owner: None,
        }
    }

    /// Who opened it, and what it does once dropped.
    pub(crate) fn owned(mut self, identity: Option<Identity>, on_close: Option<OnClose>) -> Self {
        if identity.is_some() || on_close.is_some() {
            self.owner = Some(Box::new(Owner {
                identity,
                on_close,
                ..Owner::default()
            }));
        }
        self
    }

    /// Ends at `at`, if given, with a `stream-closed` event; one too far for the clock to
    /// reach never comes.
    pub(crate) fn expiring(mut self, at: Option<SystemTime>) -> Self {
        // The runtime's clock, not the wall's: tests with paused time see it expire.
        let left = at.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        let Some(at) = left.and_then(|left| Instant::now().checked_add(left)) else {
            return self;
        };
        self.owner.get_or_insert_with(Box::default).expiry = Some(Expiry { at, timer: None });
        self
    }

    /// Whether its time is up.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(expiry) = self.owner.as_mut().and_then(|owner| owner.expiry.as_mut()) else {
            return false;
        };
        let at = expiry.at;
        let timer = expiry
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        timer.as_mut().poll(cx).is_ready()
    }

    /// Who opened it, if the handler said ([`Join::user`](crate::Join::user)).
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let join = sse::Join::group(sse::GroupName::new("yo")?).user("alice");
    /// let subscription = hub.subscribe(join, &sse::LastEventId::default())?;
    /// assert_eq!(subscription.identity().map(sse::Identity::user), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn identity(&self) -> Option<&Identity> {
        self.owner.as_ref()?.identity.as_ref()
    }

    /// The groups it streams, in the order its ids name them.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let groups = [sse::GroupName::new("yo.bob")?, sse::GroupName::new("yo")?];
    /// let subscription = hub.subscribe(groups.clone(), &sse::LastEventId::default())?;
    /// assert_eq!(subscription.groups(), groups);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn groups(&self) -> &[GroupName] {
        &self.groups
    }

    /// The id of what it has yielded so far: a new subscription given it as its `Last-Event-ID`
    /// goes on exactly where this one is. (Before a catch-up from an engine's history finished,
    /// the id the client came with.)
    ///
    /// ```
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let groups = [sse::GroupName::new("a")?, sse::GroupName::new("b")?];
    /// let mut first = hub.subscribe(groups.clone(), &sse::LastEventId::default())?;
    /// first.next().await; // the start
    /// let a = hub.publish("a", None, "one")?;
    /// first.next().await; // the event
    /// let b = hub.publish("b", None, "two")?;
    /// let mut second = hub.subscribe(groups, &first.last_event_id())?;
    /// drop(first);
    /// assert!(second.last_event_id().as_bytes().unwrap().starts_with(format!("a:{a},b:").as_bytes()));
    /// second.next().await; // its start
    /// let missed = second.next().await.unwrap();
    /// assert_eq!(missed, format!("data: two\nid: a:{a},b:{b}\n\n"));
    /// # Ok(()) }
    /// ```
    pub fn last_event_id(&self) -> LastEventId {
        LastEventId::new(event::id_text(&self.groups, &self.cursors))
    }

    fn sent_something(&mut self) {
        if let Some(keep_alive) = &mut self.keep_alive {
            keep_alive.sent = Instant::now();
        }
    }

    /// Nothing to send: a keep-alive comment if one is due.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(keep_alive) = &mut self.keep_alive else {
            return Poll::Pending;
        };
        let timer = (keep_alive.timer)
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(keep_alive.fires)));
        let registration = &mut keep_alive.registration;
        if registration.holds(cx) && Instant::now() < keep_alive.fires {
            return Poll::Pending;
        }
        ready!(registration.poll(timer.as_mut(), cx));
        // Read once the timer fired: the wakes of deliveries read nothing more than before.
        let Some(every) = self.reader.keep_alive() else {
            return Poll::Pending;
        };
        let due = keep_alive.sent + every;
        if due > Instant::now() {
            keep_alive.fires = due;
            timer.as_mut().reset(due);
            ready!(registration.poll(timer.as_mut(), cx));
        }
        keep_alive.sent = Instant::now();
        keep_alive.fires = keep_alive.sent + every;
        timer.as_mut().reset(keep_alive.fires);
        registration.forget();
        Poll::Ready(Some(Bytes::from_static(event::KEEP_ALIVE)))
    }

    /// Starts with what `catch_up` gives from the engine's shared history, holding live events
    /// meanwhile.
    pub(crate) fn catching_up(mut self, catch_up: CatchUp) -> Self {
        self.opening.get_or_insert_with(Box::default).catch_up = Some(catch_up);
        self
    }

    /// The engine's answer to the catch-up: where the stream starts, and the missed events.
    /// Afterwards each group stands where the engine's history ended.
    fn caught_up(&mut self, caught_up: CaughtUp) -> Bytes {
        let mut out = BytesMut::new();
        let (events, through) = match caught_up {
            CaughtUp::Replay {
                start,
                events,
                through,
            } => {
                for (cursor, id) in self.cursors.iter_mut().zip(start) {
                    *cursor = Cursor::at(id);
                }
                put_event(&mut out, event::stream_start(), &self.groups, &self.cursors);
                (events, through)
            }
            CaughtUp::Reset { reason, through } => {
                self.caught_up_through(through);
                put_event(
                    &mut out,
                    event::stream_reset(reason),
                    &self.groups,
                    &self.cursors,
                );
                return out.freeze();
            }
        };
        let count = events.len() as u64;
        for (index, id, encoded) in events {
            // An engine's history may hold what another process published as the end was.
            if self.finished[index] {
                continue;
            }
            if event::is_end(&encoded) {
                self.finished[index] = true;
                self.reader.ended(index, id);
            }
            out.put_slice(&encoded);
            self.cursors[index].advance_to(id);
            event::put_id_line(&mut out, &self.groups, &self.cursors);
        }
        self.reader.replayed(count);
        if count > 0 {
            tracing::debug!(
                events = count,
                "replaying what the client missed, from the engine"
            );
        }
        self.caught_up_through(through);
        self.end_if_finished();
        out.freeze()
    }

    /// Once every group gave its end, the stream ends after what it yields now.
    fn end_if_finished(&mut self) {
        if self.finished.iter().all(|&finished| finished) {
            tracing::debug!(groups = ?self.groups, "stream finished");
            self.ended = Some(CloseReason::Finished);
        }
    }

    /// Every event up to `through` (per group) was given, or came before the client's id: the
    /// stream stands there, and the live stream skips them.
    fn caught_up_through(&mut self, through: Vec<u64>) {
        for (cursor, id) in self.cursors.iter_mut().zip(through) {
            *cursor = Cursor::through(id);
        }
    }

    /// The live events since the last read, as one chunk.
    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            let mut batch = Batch::default();
            let (groups, cursors) = (&self.groups, &mut self.cursors);
            let (finished, mut ends) = (&mut self.finished, 0);
            // What the read is about to hand over: the batch's size, give or take the id lines.
            let expected = Cell::new(0);
            let read = self.reader.poll_read(
                cx,
                BATCH_BYTES,
                |bytes| expected.set(bytes),
                |index, stored: &Stored| {
                    let cursor = &mut cursors[index];
                    if cursor.was_given(stored.id) {
                        return false;
                    }
                    cursor.advance_to(stored.id);
                    if event::is_end(&stored.bytes[..stored.body_len]) {
                        finished[index] = true;
                        ends += 1;
                    }
                    match groups.len() {
                        1 => batch.push(&stored.bytes, expected.get()),
                        _ => {
                            let more = stored.bytes.len() + groups.len() * 32;
                            let out = batch.buffer(more, expected.get());
                            out.put_slice(&stored.bytes[..stored.body_len]);
                            event::put_id_line(out, groups, cursors);
                        }
                    }
                    true
                },
            );
            return match read {
                // Only events it had sent already (caught up from the engine): look again.
                Poll::Ready(Read::Events) if batch.is_empty() => continue,
                Poll::Ready(Read::Events) => {
                    if ends > 0 {
                        self.end_if_finished();
                    }
                    Poll::Ready(batch.into_bytes())
                }
                Poll::Ready(Read::Overflow) => {
                    tracing::debug!("subscriber fell too far behind: stream cut, it will resume");
                    self.ended = Some(CloseReason::FellBehind);
                    Poll::Ready(Some(Bytes::from_static(event::TOO_FAR_BEHIND)))
                }
                Poll::Ready(Read::ShutDown) => {
                    self.ended = Some(CloseReason::ShutDown);
                    Poll::Ready(Some(event::retry_hint(self.reader.shutdown_retry())))
                }
                Poll::Ready(Read::Closed) => {
                    tracing::debug!(groups = ?self.groups, "stream closed by the server");
                    self.ended = Some(CloseReason::Closed);
                    Poll::Ready(Some(event::stream_closed()))
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// One of the hub's own events, with the stream's id at `cursors`.
fn put_event(out: &mut BytesMut, event: Draft, groups: &[GroupName], cursors: &[Cursor]) {
    out.put_slice(event.as_bytes());
    event::put_id_line(out, groups, cursors);
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        if this.ended.is_some() {
            return Poll::Ready(None);
        }
        if let Some(start) = this
            .opening
            .as_mut()
            .and_then(|opening| opening.start.take())
        {
            if this
                .opening
                .as_ref()
                .is_some_and(|opening| opening.catch_up.is_none())
            {
                this.opening = None;
            }
            this.sent_something();
            // A `stream-reset` past the end of every group is all there is to say.
            this.end_if_finished();
            return Poll::Ready(Some(start));
        }
        if this.poll_expired(cx) {
            tracing::debug!(groups = ?this.groups, "stream's time is up: closed");
            this.ended = Some(CloseReason::Expired);
            let mut out = BytesMut::new();
            put_event(
                &mut out,
                event::stream_expired(),
                &this.groups,
                &this.cursors,
            );
            return Poll::Ready(Some(out.freeze()));
        }
        if let Some(catch_up) = this
            .opening
            .as_mut()
            .and_then(|opening| opening.catch_up.as_mut())
        {
            match catch_up.as_mut().poll(cx) {
                Poll::Pending => return this.poll_keep_alive(cx),
                Poll::Ready(Ok(caught_up)) => {
                    this.opening = None;
                    this.sent_something();
                    return Poll::Ready(Some(this.caught_up(caught_up)));
                }
                Poll::Ready(Err(error)) => {
                    // Ending with a retry hint brings the client back with the same
                    // `Last-Event-ID`, to try again, rather than losing its place.
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "missed events unavailable: stream ended, client will retry"
                    );
                    this.ended = Some(CloseReason::BrokerUnavailable);
                    return Poll::Ready(Some(event::retry_hint(this.reader.shutdown_retry())));
                }
            }
        }
        match this.poll_events(cx) {
            Poll::Ready(chunk) => {
                this.sent_something();
                Poll::Ready(chunk)
            }
            Poll::Pending => this.poll_keep_alive(cx),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(on_close) = self.owner.as_mut().and_then(|owner| owner.on_close.take()) {
            on_close(self.ended.unwrap_or(CloseReason::ClientLeft));
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("groups", &self.groups)
            .field("cursors", &self.cursors)
            .finish_non_exhaustive()
    }
}

/// Events read in one go: events in a row of their group's arena are handed on as one slice of
/// it, copying nothing.
#[derive(Default)]
struct Batch {
    run: Option<Run>,
    many: BytesMut,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.run.is_none() && self.many.is_empty()
    }

    /// Adds an event; `expected` is about how many bytes the whole batch will hold. Events in
    /// a row of one chunk stay there; the batch copies them only once one does not follow the
    /// others (it starts a new chunk). A batch of one event is copied: a small copy costs less
    /// than sharing the chunk, whose count every reader of the group writes.
    fn push(&mut self, event: &Run, expected: usize) {
        if self.many.is_empty() {
            if let Some(run) = &mut self.run {
                if run.extend(event) {
                    return;
                }
            } else if expected > event.len() {
                self.run = Some(event.clone());
                return;
            }
        }
        self.buffer(event.len(), expected).put_slice(event);
    }

    /// The batch as a buffer to append to, with room for `more` bytes; sized for `expected`
    /// bytes in all the first time, so gathering a read's events copies each once.
    fn buffer(&mut self, more: usize, expected: usize) -> &mut BytesMut {
        if self.many.capacity() == 0 {
            self.many.reserve(expected);
        }
        if let Some(run) = self.run.take() {
            self.many.put_slice(&run);
        }
        self.many.reserve(more);
        &mut self.many
    }

    fn into_bytes(self) -> Option<Bytes> {
        self.run
            .map(Run::into_bytes)
            .or_else(|| (!self.many.is_empty()).then(|| self.many.freeze()))
    }
}
