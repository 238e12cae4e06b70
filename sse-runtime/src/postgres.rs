//! Publishing inside a PostgreSQL transaction (feature `postgres`): the event reaches
//! subscribers if and only if the transaction commits, exactly once, in commit order within its
//! group.
//!
//! [`publish`] writes the event with the app's own connection or transaction, through the
//! function `sse_publish` of sse's [schema](migrate). It numbers the event under its group's
//! lock, held until the transaction ends, so a group's ids rise in commit order; it keeps the
//! event in `sse_events`, where other transactions see it once it commits, and never after a
//! rollback; and it moves the sequence `sse_published`, which the processes that listen read
//! every 5 ms. (It sends no `NOTIFY`: Postgres makes the commits of transactions that notify
//! wait for each other's flush to disk.) With the Postgres engine (`SSE_BROKER_URL=postgres://…`)
//! every process then reads the events of the groups it holds and hands them to their
//! subscribers: the id `publish` returns is the one they see. With the in-memory or Redis
//! engine, a [`Relay`] carries committed events into the hub.
//!
//! ```no_run
//! # async fn app(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO yos (sender, receiver) VALUES ($1, $2)")
//!     .bind("alice")
//!     .bind("bob")
//!     .execute(&mut *tx)
//!     .await?;
//! sse::postgres::publish(&mut tx, "yo", Some("yo"), "yo from alice to bob").await?;
//! tx.commit().await?; // now, and only now, subscribers of "yo" get it
//! # Ok(()) }
//! ```

use std::fmt;

use sqlx::PgConnection;

use crate::{
    engine::{batch::batch, postgres},
    event::Draft,
    BrokerError, EventId, Hub, PublishError,
};

mod relay;

pub use relay::Relay;

/// Creates sse's tables and functions in the database of `connection`, or brings them up to
/// date; running it again changes nothing. The Postgres engine runs it when it starts; call it
/// yourself before publishing in transactions with another engine, or apply the same SQL
/// (`sse-runtime/src/engine/postgres/schema.sql`, which documents every table) with your own
/// migrations.
///
/// ```no_run
/// # async fn app(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// sse::postgres::migrate(&mut *pool.acquire().await?).await?;
/// # Ok(()) }
/// ```
pub async fn migrate(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    postgres::migrate(connection).await
}

/// Publishes inside the transaction (or on the connection) `connection`, with the process-wide
/// hub's settings: [`Outbox::publish`] on [`sse::hub()`](crate::hub()).
///
/// ```no_run
/// # async fn app(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// let id = sse::postgres::publish(&mut tx, "orders", Some("paid"), "order 17").await?;
/// tx.rollback().await?; // nobody ever hears of it
/// # let _ = id;
/// # Ok(()) }
/// ```
pub async fn publish(
    connection: &mut PgConnection,
    group: &str,
    event: Option<&str>,
    data: impl fmt::Display,
) -> Result<EventId, PublishError> {
    Outbox::new(crate::hub())
        .publish(connection, group, event, data)
        .await
}

/// Publishing inside transactions with a hub's settings (its limit on an event's size, the
/// history each group keeps, the idempotency window), and maybe an idempotency key.
///
/// ```no_run
/// # async fn app(pool: sqlx::PgPool, hub: sse::Hub) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// let outbox = sse::postgres::Outbox::new(&hub).idempotent("order-17:paid");
/// outbox.publish(&mut tx, "orders", Some("paid"), "order 17").await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Outbox<'h> {
    hub: &'h Hub,
    key: Option<String>,
}

impl<'h> Outbox<'h> {
    /// Publishing with `hub`'s settings.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let outbox = sse::postgres::Outbox::new(&hub);
    /// # let _ = outbox;
    /// ```
    pub fn new(hub: &'h Hub) -> Self {
        Self { hub, key: None }
    }

    /// With an idempotency key: a publish repeated with it in the same group within the
    /// idempotency window returns the first one's id and publishes nothing (as
    /// [`Hub::idempotent`]).
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let outbox = sse::postgres::Outbox::new(&hub).idempotent("order-17:paid");
    /// # let _ = outbox;
    /// ```
    pub fn idempotent(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Publishes `data` as event `event` (`None`: a `message` event) to `group`, inside the
    /// transaction (or on the connection) `connection`: its subscribers get it when, and only
    /// if, it commits. Returns the event's id, or why it was refused (an invalid group, event
    /// name or key, an event too large, or the database's error, after which the transaction
    /// is aborted).
    ///
    /// While the transaction is open, other publishes to `group` (in other transactions, or
    /// by the engine) wait for it: keep transactions that publish short.
    ///
    /// ```no_run
    /// # async fn app(pool: sqlx::PgPool, hub: sse::Hub) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// sse::postgres::Outbox::new(&hub).publish(&mut tx, "yo", None, "yo").await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        connection: &mut PgConnection,
        group: &str,
        event: Option<&str>,
        data: impl fmt::Display,
    ) -> Result<EventId, PublishError> {
        let key = self.key.as_deref();
        let draft = self
            .hub
            .draft(group, key, |max| Draft::new(event, data, max))?;
        self.insert(connection, group, draft).await
    }

    /// Publishes `events` (each an event name, `None` for `message`, and its data) to `group`
    /// together, inside the transaction `connection`, as [`Outbox::publish`] does one: one
    /// statement and one row for them all, so a transaction that publishes many events costs
    /// Postgres a fraction of a statement per event. Their ids are consecutive, in the order
    /// given; returns them. With an idempotency key, the key stands for the whole batch. Nothing
    /// is published if any event is refused.
    ///
    /// ```no_run
    /// # async fn app(pool: sqlx::PgPool, hub: sse::Hub) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let lines = [(Some("line"), "17 × tea"), (Some("line"), "2 × cake"), (None, "total 21")];
    /// let ids = sse::postgres::Outbox::new(&hub).publish_all(&mut tx, "order-17", lines).await?;
    /// tx.commit().await?;
    /// assert_eq!(ids.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn publish_all<'e, D: fmt::Display>(
        &self,
        connection: &mut PgConnection,
        group: &str,
        events: impl IntoIterator<Item = (Option<&'e str>, D)>,
    ) -> Result<Vec<EventId>, PublishError> {
        let key = self.key.as_deref();
        let drafts = events
            .into_iter()
            .map(|(event, data)| {
                self.hub
                    .draft(group, key, |max| Draft::new(event, data, max))
            })
            .collect::<Result<Vec<Draft>, PublishError>>()?;
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.insert_all(connection, group, &drafts).await?;
        Ok((first.0..).take(drafts.len()).map(EventId).collect())
    }

    /// Publishes `value` as JSON, as [`Outbox::publish`] does text.
    ///
    /// ```no_run
    /// # async fn app(pool: sqlx::PgPool, hub: sse::Hub) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = pool.begin().await?;
    /// let order = serde_json::json!({ "id": 17, "status": "paid" });
    /// sse::postgres::Outbox::new(&hub).publish_json(&mut tx, "orders", None, &order).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "json")]
    pub async fn publish_json(
        &self,
        connection: &mut PgConnection,
        group: &str,
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
    ) -> Result<EventId, PublishError> {
        let key = self.key.as_deref();
        let draft = self
            .hub
            .draft(group, key, |max| Draft::json(event, value, max))?;
        self.insert(connection, group, draft).await
    }

    async fn insert(
        &self,
        connection: &mut PgConnection,
        group: &str,
        draft: Draft,
    ) -> Result<EventId, PublishError> {
        self.insert_all(connection, group, std::slice::from_ref(&draft))
            .await
    }

    /// Publishes `drafts` as one batch: the first one's id.
    async fn insert_all(
        &self,
        connection: &mut PgConnection,
        group: &str,
        drafts: &[Draft],
    ) -> Result<EventId, PublishError> {
        let config = self.hub.config();
        let keep = i64::try_from(config.history_events).unwrap_or(i64::MAX);
        let once_us = config.idempotency_window.as_micros().max(1) as i64;
        let count = i32::try_from(drafts.len())
            .map_err(|_| PublishError::Broker(BrokerError::new("too many events in one batch")))?;
        let first: i64 = sqlx::query_scalar("SELECT sse_publish($1, $2, $3, $4, $5, $6)")
            .bind(group)
            .bind(batch(drafts.iter().map(Draft::as_bytes)))
            .bind(count)
            .bind(self.key.as_deref())
            .bind(keep)
            .bind(once_us)
            .fetch_one(connection)
            .await
            .map_err(|e| {
                PublishError::Broker(BrokerError::caused_by(
                    "the transaction's publish failed",
                    e,
                ))
            })?;
        Ok(EventId(first as u64))
    }
}
