//! The Postgres engine: every process using the same database shares ids, history, events,
//! presence and closes, with no other server.
//!
//! A publish numbers a group's events under the group's lock (`sse_store`, see [`SCHEMA`]),
//! held until its transaction ends, so a group's ids rise in the order their transactions
//! commit, and keeps them as one row of `sse_events` per batch. The engine's own publishes are
//! then notified on channel `sse_events` (`sse_publish_all`), which Postgres delivers at commit,
//! in commit order. One made inside an app's transaction
//! ([`sse::postgres::publish`](crate::postgres::publish), `sse_publish`) is not notified:
//! Postgres serializes the commits of transactions that notify, each holding one lock for the
//! whole server until its commit is on disk, so they could not share a flush. It moves the
//! sequence `sse_published` instead, which listening processes read every few milliseconds
//! before reading what their groups got. Rolled back, it leaves nothing to read: committed, it
//! is delivered; rolled back, never.
//!
//! Each process listens on one connection ([`listener`]), hands each event of the groups it
//! holds to the hub once, in id order, and reads from `sse_events` what it was not told: events
//! published in transactions, a batch too large for a notification (8,000 bytes at most, so it
//! is announced by its ids), and what was missed while its connection was lost. Publishes are
//! queued and sent in batches ([`publisher`]), one statement for many publishes. Presence and closes ([`presence`]) use `sse_presence` and
//! channel `sse_control`.
//!
//! Everything runs on a thread of the engine's own (`sse-postgres`) with a small runtime, as
//! the Redis engine does, so it works the same under any runtime of the caller's, or none.

use std::{future::Future, sync::Arc, time::Duration};

use once_cell::sync::OnceCell;
use sqlx::{
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    PgConnection,
};
use tokio::sync::mpsc;

use super::{
    background::Background,
    control,
    presence_task::{self, ClosesHeard},
    queue::Pending,
    threaded::{self, Listening, Tasks, Threaded},
    History, Sink,
};
use crate::BrokerError;

mod listener;
mod presence;
mod publisher;
mod reads;

use listener::Listener;
use presence::Presence;
use publisher::Publisher;

/// The schema: tables `sse_groups`, `sse_events`, `sse_once`, `sse_presence`, `sse_relays`,
/// `sse_relayed`, sequence `sse_published`, and functions `sse_store`, `sse_publish`,
/// `sse_publish_all`, `sse_read`, `sse_trim`. Every statement may run again.
pub(crate) const SCHEMA: &str = include_str!("schema.sql");

/// Serializes schema changes of concurrent processes (`CREATE OR REPLACE FUNCTION` run at once
/// by two sessions fails): the key of a transaction-scoped advisory lock.
const SCHEMA_LOCK: i64 = 0x5353_455f_5343_4845;

/// How long connecting, or one statement, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the listening side checks that Postgres answers and that it heard every event of
/// its groups (`NOTIFY` is not kept for a connection that was lost).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often `sse_published`, which publishes inside apps' transactions move instead of
/// notifying, is looked at (by `sse_ring`, in Postgres), and then, for a while, the groups held
/// (by the listening side and a relay): such an event reaches other processes within this of
/// its commit, and a read of its group.
pub(crate) const RING_EVERY: Duration = Duration::from_millis(5);
/// How long after `sse_published` last moved its readers look at their groups at each read: a
/// transaction that commits later than this after its publish is found by the poll.
pub(crate) const RINGING_FOR: Duration = Duration::from_secs(1);
/// The longest one wait in `sse_ring` lasts (ms): well within [`STATEMENT_TIMEOUT`].
const RING_WAIT_MS: i32 = 1_000;
/// How long a group's sequence outlives its last event (at least), as on Redis.
const SEQ_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// After a publish found Postgres unreachable, how long the next ones fail at once with its
/// error instead of each waiting out the timeouts; then one tries again.
const DOWN_FOR: Duration = Duration::from_millis(250);
/// The channels: events, and closes between processes.
pub(crate) const EVENTS_CHANNEL: &str = "sse_events";
const CONTROL_CHANNEL: &str = "sse_control";

/// Where Postgres is: its URL, parsed, and shown without its password.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    options: PgConnectOptions,
    pub(super) shown: String,
}

impl Target {
    /// `postgres://user:password@host:port/database` (or `postgresql://`), with libpq's
    /// options (`?sslmode=require`, …).
    pub(crate) fn parse(url: &str) -> Result<Self, BrokerError> {
        let shown = super::redacted(url);
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|e| BrokerError::caused_by(format!("bad broker URL {shown:?}"), e))?;
        // Notifications are sent as UTF-8 text: the engine's connections always speak it.
        let options = options
            .application_name("sse")
            .options([("client_encoding", "UTF8")]);
        Ok(Self { options, shown })
    }

    pub(super) fn failed(&self, error: sqlx::Error) -> BrokerError {
        let what = match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                format!("cannot reach Postgres at {}", self.shown)
            }
            _ => format!("Postgres at {} failed", self.shown),
        };
        BrokerError::caused_by(what, error)
    }

    /// `asking`, given up after [`STATEMENT_TIMEOUT`].
    pub(super) async fn answer_within<T>(
        &self,
        asking: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, asking).await {
            Ok(answer) => answer.map_err(|e| self.failed(e)),
            Err(_) => Err(BrokerError::new(format!(
                "Postgres at {} did not answer within {STATEMENT_TIMEOUT:?}",
                self.shown
            ))),
        }
    }
}

/// The history bound and the windows, as the SQL functions take them.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    events: i64,
    age_us: u64,
    once_us: i64,
    seq_ttl_us: i64,
    presence_ttl: Duration,
}

pub(crate) struct PostgresEngine {
    target: Target,
    limits: Limits,
    /// The engine's own thread and runtime, with the pool of connections living on it: started
    /// on first use, until the engine stops.
    running: OnceCell<Running>,
    publisher: Arc<Publisher>,
    /// Names this process in presence entries and closes.
    process: Arc<str>,
    /// The listening side, started when the first local group opens, and presence and closes,
    /// started with the first stream that has an identity, or close.
    tasks: Tasks,
}

struct Running {
    background: Background,
    pool: PgPool,
}

impl PostgresEngine {
    /// An engine on `target` whose groups keep `history`.
    pub(crate) fn new(target: Target, history: History) -> Self {
        let limits = Limits {
            events: history.events.try_into().unwrap_or(i64::MAX),
            // A history that lasts nothing would lose what a reconnect is about to read.
            age_us: (history.age.as_micros() as u64).max(1_000),
            once_us: history.idempotency_window.as_micros().max(1) as i64,
            seq_ttl_us: SEQ_TTL.max(history.age).as_micros() as i64,
            presence_ttl: history.presence_ttl,
        };
        Self {
            publisher: Arc::new(Publisher::new(target.clone(), limits)),
            target,
            limits,
            running: OnceCell::new(),
            process: control::process_name().into(),
            tasks: Tasks::default(),
        }
    }

    /// The engine's thread and pool, started on first use (tried again by the next use if it
    /// could not start), with the publishing side's sender on it.
    fn running(&self) -> Result<&Running, BrokerError> {
        self.running.get_or_try_init(|| {
            let background = Background::start("Postgres")?;
            // The pool's connections live on the engine's runtime: made within it.
            let pool = {
                let _inside = background.runtime.enter();
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_lazy_with(self.target.options.clone())
            };
            let publishing = self.publisher.clone().run(pool.clone());
            drop(background.runtime.spawn(publishing));
            Ok(Running { background, pool })
        })
    }

    /// Runs `work` with the pool on the engine's thread, waiting for its answer on this one.
    fn block_on<T: Send + 'static>(
        &self,
        work: impl FnOnce(PgPool, Target) -> std::pin::Pin<Box<dyn Future<Output = T> + Send>>,
    ) -> Result<T, BrokerError> {
        let running = self.running()?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let working = work(running.pool.clone(), self.target.clone());
        running.background.runtime.spawn(async move {
            let _ = reply.send(working.await);
        });
        answer.recv().map_err(|_| stopped())
    }
}

/// The engine's thread stopped before it answered.
fn stopped() -> BrokerError {
    BrokerError::new("the Postgres thread stopped")
}

/// Applies [`SCHEMA`] on `connection`, in a transaction holding the schema lock.
pub(crate) async fn migrate(connection: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Connection;

    let mut transaction = connection.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *transaction)
        .await?;
    // "already exists, skipping", at every start, is not news.
    sqlx::query("SET LOCAL client_min_messages TO warning")
        .execute(&mut *transaction)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *transaction).await?;
    transaction.commit().await
}

/// Waits on `connection` for `sse_published` to move, and says so on `ring` (at once for the
/// first time), until `ring` is dropped or the connection fails (then `None`).
pub(crate) async fn wait_for_rings(mut connection: PgConnection, ring: mpsc::Sender<Option<()>>) {
    let mut seen: Option<i64> = None;
    loop {
        let waiting = sqlx::query_scalar::<_, i64>("SELECT sse_ring($1, $2)")
            .bind(seen)
            .bind(RING_WAIT_MS)
            .fetch_one(&mut connection);
        let rung = match tokio::time::timeout(STATEMENT_TIMEOUT, waiting).await {
            Ok(Ok(rung)) => rung,
            _ => {
                let _ = ring.send(None).await;
                return;
            }
        };
        if seen != Some(rung) {
            seen = Some(rung);
            if ring.send(Some(())).await.is_err() {
                return;
            }
        }
    }
}

impl Threaded for PostgresEngine {
    const NAME: &'static str = "Postgres";

    fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    fn thread(&self) -> Result<(), BrokerError> {
        self.running().map(drop)
    }

    fn enqueue(&self, publish: Pending) {
        self.publisher.publish(publish);
    }

    fn start_listener(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<Listening>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError> {
        let running = self.running()?;
        let (target, process, pool) = (
            self.target.clone(),
            self.process.clone(),
            running.pool.clone(),
        );
        let listener = Listener::new(target, self.limits, (sink, closes), process, pool);
        let listening = threaded::listen(listener, commands);
        running.background.runtime.spawn(listening);
        Ok(())
    }

    fn start_presence(
        &self,
        sink: Arc<dyn Sink>,
        commands: mpsc::UnboundedReceiver<presence_task::Command>,
        closes: ClosesHeard,
    ) -> Result<(), BrokerError> {
        let running = self.running()?;
        let ttl = self.limits.presence_ttl;
        let store = Presence {
            target: self.target.clone(),
            ttl,
            process: self.process.clone(),
            pool: running.pool.clone(),
        };
        let shown = self.target.shown.clone();
        let task = presence_task::run(store, sink, (ttl, shown), closes, commands);
        running.background.runtime.spawn(task);
        Ok(())
    }

    fn stop_thread(&self) {
        // The thread ends, and with it every task and connection.
        if let Some(running) = self.running.get() {
            running.background.stop();
        }
        self.publisher.stop();
    }

    fn reachable(&self) -> Result<(), BrokerError> {
        // Reaches Postgres, and makes sure the schema is there.
        self.block_on(|pool, target| {
            Box::pin(async move {
                let mut connection = target.answer_within(pool.acquire()).await?;
                target.answer_within(migrate(&mut connection)).await
            })
        })?
    }
}
