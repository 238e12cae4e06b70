//! Presence and closing streams across processes, on Postgres: each process's entries in
//! `sse_presence`, written by `sse_presence_sync` (which tells who joined or left the whole
//! deployment) and read by `sse_presence_read`; closes sent on channel `sse_control`, which the
//! listener hears. Entries of a process that died expire `ttl` after its last heartbeat.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;

use super::{Target, CONTROL_CHANNEL};
use crate::{
    engine::{control, presence_task::Store, Entry},
    identity::Closing,
    BrokerError, GroupName,
};

/// This process's side of presence and closes in Postgres.
pub(super) struct Presence {
    pub(super) target: Target,
    pub(super) ttl: Duration,
    pub(super) process: Arc<str>,
    pub(super) pool: PgPool,
}

impl Store for Presence {
    async fn sync(
        &self,
        group: &GroupName,
        entries: &[Entry],
        full: bool,
    ) -> Result<Vec<Entry>, BrokerError> {
        let users: Vec<&str> = entries.iter().map(|e| e.user.as_str()).collect();
        let counts: Vec<i32> = entries
            .iter()
            .map(|e| i32::try_from(e.streams).unwrap_or(i32::MAX))
            .collect();
        let metas: Vec<&str> = entries.iter().map(|e| e.meta.as_str()).collect();
        let syncing = sqlx::query_as::<_, (String, bool, String)>(
            "SELECT * FROM sse_presence_sync($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(group.as_str())
        .bind(&*self.process)
        .bind(self.ttl.as_micros() as i64)
        .bind(full)
        .bind(users)
        .bind(counts)
        .bind(metas)
        .fetch_all(&self.pool);
        let changes = self.target.answer_within(syncing).await?;
        let changes = changes.into_iter().map(|(user, joined, meta)| Entry {
            user,
            streams: usize::from(joined),
            meta,
        });
        Ok(changes.collect())
    }

    async fn read(&self, group: &GroupName) -> Result<Vec<Entry>, BrokerError> {
        let reading =
            sqlx::query_as::<_, (String, i64, String)>("SELECT * FROM sse_presence_read($1)")
                .bind(group.as_str())
                .fetch_all(&self.pool);
        let present = self.target.answer_within(reading).await?;
        let present = present.into_iter().map(|(user, streams, meta)| Entry {
            user,
            streams: usize::try_from(streams).unwrap_or(0),
            meta,
        });
        Ok(present.collect())
    }

    async fn close(&self, closing: &Closing) -> Result<(), BrokerError> {
        let message = control::close_message(&self.process, closing);
        let telling = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CONTROL_CHANNEL)
            .bind(message)
            .execute(&self.pool);
        self.target.answer_within(telling).await.map(drop)
    }
}
