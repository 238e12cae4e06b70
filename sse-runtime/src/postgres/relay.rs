//! The relay: committed events of `sse_events` carried into a hub on another engine.

use std::time::{Duration, Instant};

use sqlx::{postgres::PgListener, PgConnection, PgPool};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    engine::{
        batch::split_batch,
        postgres::{wait_for_rings, EVENTS_CHANNEL, RINGING_FOR, RING_EVERY},
    },
    event::Draft,
    BrokerError, Hub,
};

/// The key of the session advisory lock the active relay holds: one relay delivers at a time.
const RELAY_LOCK: i64 = 0x5353_455f_5245_4c41;
/// How often a relay looks at every group for events it was not told of (and a standby for the
/// lock).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// The most batches a group's read returns at once.
const READ_BATCHES: i64 = 1_000;

/// Carries the events that transactions commit with [`publish`](super::publish) into a hub
/// whose engine is not Postgres (in memory, or Redis), in commit order within each group.
///
/// Several processes may each run one: they share one session advisory lock, and only its
/// holder relays; when it dies, its connection and its lock go with it, and a standby takes
/// over within a second. How far each group was relayed is kept in `sse_relayed`, written
/// after each group's events are handed to the hub; each event is published with the
/// idempotency key `pg:<group>:<id>`, so a relay that died between the two is repeated by the
/// next without a second delivery (within the hub's idempotency window, in every process on
/// Redis). While a relay is registered (`sse_relays`), events are kept until relayed, then
/// trimmed to the hub's history; an app that stops running relays deletes that row.
///
/// With the Postgres engine no relay is needed: every process hears committed events itself.
///
/// ```no_run
/// # async fn app(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// sse::postgres::migrate(&mut *pool.acquire().await?).await?;
/// let relay = sse::postgres::Relay::start(sse::hub().clone(), pool.clone());
/// // … transactions publish with sse::postgres::publish …
/// relay.stop();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay {
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying into `hub` from the database of `pool`, on the current Tokio runtime:
    /// as the active relay, or as a standby until it is one. Failures are logged and tried
    /// again; none ends it.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn app(pool: sqlx::PgPool) {
    /// let relay = sse::postgres::Relay::start(sse::hub().clone(), pool);
    /// # drop(relay);
    /// # }
    /// ```
    pub fn start(hub: Hub, pool: PgPool) -> Self {
        let task = tokio::spawn(async move {
            let mut logged = false;
            loop {
                if let Err(error) = relay(&hub, &pool).await {
                    if !logged {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "the Postgres relay stopped relaying: it tries again every second"
                        );
                    }
                    logged = true;
                } else {
                    logged = false;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        });
        Self { task }
    }

    /// Stops relaying (a standby in another process takes over).
    ///
    /// ```no_run
    /// # async fn app(pool: sqlx::PgPool) {
    /// sse::postgres::Relay::start(sse::hub().clone(), pool).stop();
    /// # }
    /// ```
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A task of a relay's turn, ended with it.
struct Helper(JoinHandle<()>);

impl Drop for Helper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn failed(error: sqlx::Error) -> BrokerError {
    BrokerError::caused_by("the Postgres relay failed", error)
}

/// One turn: registers, waits as a standby until the lock is its own, then relays what is
/// committed whenever it is told of it (the groups notifications name), and everything behind
/// at each poll, and every [`RING_EVERY`] for [`RINGING_FOR`] after `sse_published` moved
/// (transactions publish without notifying; a connection of its own waits for that in
/// Postgres). Returns on the first failure, letting go of the lock with its connection.
async fn relay(hub: &Hub, pool: &PgPool) -> Result<(), BrokerError> {
    // The lock is the session's: held on a connection of its own, until it closes.
    let mut holder = pool.acquire().await.map_err(failed)?.detach();
    sqlx::query("INSERT INTO sse_relays (name) VALUES ('relay') ON CONFLICT DO NOTHING")
        .execute(&mut holder)
        .await
        .map_err(failed)?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut holder)
            .await
            .map_err(failed)?;
        if locked {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    let mut listener = PgListener::connect_with(pool).await.map_err(failed)?;
    listener.listen(EVENTS_CHANNEL).await.map_err(failed)?;
    let ringing = pool.acquire().await.map_err(failed)?.detach();
    let (ring, mut rung) = mpsc::channel(1);
    let _waiting = Helper(tokio::spawn(wait_for_rings(ringing, ring)));
    relay_committed(hub, &mut holder, None).await?;
    let (mut moved, mut polled) = (None::<Instant>, Instant::now());
    loop {
        let lately = moved.is_some_and(|at| at.elapsed() <= RINGING_FOR);
        let look_in = match lately {
            true => RING_EVERY,
            false => POLL_EVERY.saturating_sub(polled.elapsed()),
        };
        tokio::select! {
            heard = listener.try_recv() => match heard {
                Ok(Some(heard)) => {
                    let mut groups = vec![group_of(&heard)];
                    while let Some(heard) = listener.next_buffered() {
                        groups.push(group_of(&heard));
                    }
                    groups.sort_unstable();
                    groups.dedup();
                    relay_committed(hub, &mut holder, Some(&groups)).await?;
                }
                Ok(None) => {
                    return Err(BrokerError::new("the Postgres relay lost its connection"));
                }
                Err(error) => return Err(failed(error)),
            },
            rang = rung.recv() => match rang.flatten() {
                None => {
                    return Err(BrokerError::new("the Postgres relay lost its connection"));
                }
                Some(()) => {
                    moved = Some(Instant::now());
                    relay_committed(hub, &mut holder, None).await?;
                }
            },
            // Transactions published lately, or a poll: whatever a lost notification did not
            // say, or a transaction committed late, is behind.
            () = tokio::time::sleep(look_in) => {
                polled = Instant::now();
                relay_committed(hub, &mut holder, None).await?;
            }
        }
    }
}

/// The group a notification of `sse_events` names.
fn group_of(heard: &sqlx::postgres::PgNotification) -> String {
    let payload = heard.payload();
    payload
        .split_once('\n')
        .map_or(payload, |(group, _)| group)
        .to_owned()
}

/// Relays the events committed after its cursor of every group behind (of `groups`, if given),
/// group by group, and moves the cursors.
async fn relay_committed(
    hub: &Hub,
    on: &mut PgConnection,
    groups: Option<&[String]>,
) -> Result<(), BrokerError> {
    let behind: Vec<(String, i64)> = sqlx::query_as(
        "SELECT g.name, coalesce(r.id, g.epoch - 1) FROM sse_groups g
         LEFT JOIN sse_relayed r ON r.grp = g.name
         WHERE g.seq > coalesce(r.id, g.epoch - 1) AND ($1::text[] IS NULL OR g.name = ANY($1))",
    )
    .bind(groups)
    .fetch_all(&mut *on)
    .await
    .map_err(failed)?;
    let keep = i64::try_from(hub.config().history_events).unwrap_or(i64::MAX);
    for (group, relayed) in behind {
        let batches: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT batch FROM sse_events WHERE grp = $1 AND last > $2 ORDER BY last LIMIT $3",
        )
        .bind(&group)
        .bind(relayed)
        .bind(READ_BATCHES)
        .fetch_all(&mut *on)
        .await
        .map_err(failed)?;
        let mut cursor = relayed;
        for batch in &batches {
            let events = split_batch(batch).ok_or_else(|| {
                BrokerError::new(format!("a malformed event of group {group:?} in Postgres"))
            })?;
            for (id, event) in events {
                let id = id as i64;
                if id <= cursor {
                    continue;
                }
                let key = format!("pg:{group}:{id}");
                let draft = Draft::encoded(&batch[event]);
                match hub.send_async(&group, Ok(draft), Some(&key)).await {
                    Ok(_) => {}
                    // Not this event's fault (the hub's engine is down): tried again later.
                    Err(crate::PublishError::Broker(error)) => return Err(error),
                    Err(error) => tracing::warn!(
                        group,
                        id,
                        error = &error as &dyn std::error::Error,
                        "the Postgres relay dropped an event the hub refused"
                    ),
                }
                cursor = cursor.max(id);
            }
        }
        sqlx::query(
            "WITH moved AS (
                 INSERT INTO sse_relayed (grp, id) VALUES ($1, $2)
                 ON CONFLICT (grp) DO UPDATE SET id = EXCLUDED.id)
             DELETE FROM sse_events e USING sse_groups g
             WHERE e.grp = $1 AND g.name = $1 AND e.last <= least($2, g.seq - $3)",
        )
        .bind(&group)
        .bind(cursor)
        .bind(keep)
        .execute(&mut *on)
        .await
        .map_err(failed)?;
    }
    Ok(())
}
