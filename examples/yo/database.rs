//! The yos in PostgreSQL (`YO_DATABASE_URL`, feature `postgres`): each yo is stored and
//! published in one transaction, so a page is told of a yo if and only if it was stored. The
//! hub then runs on the Postgres engine too, so several demo processes on one database share
//! their streams.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

use crate::{store::Yo, FEED};

/// The table of yos in the demo's database.
#[derive(Clone)]
pub struct Yos {
    pool: PgPool,
}

impl Yos {
    /// Connects to `url`, and creates sse's tables and the demo's own when missing.
    pub async fn open(url: &str) -> Result<Yos, sqlx::Error> {
        let pool = PgPool::connect(url).await?;
        let mut connection = pool.acquire().await?;
        sse::postgres::migrate(&mut connection).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS yos (
                 id bigserial PRIMARY KEY,
                 sender text NOT NULL,
                 receiver text NOT NULL,
                 at bigint NOT NULL
             )",
        )
        .execute(&mut *connection)
        .await?;
        Ok(Yos { pool })
    }

    /// Stores a yo and publishes it to the receiver's group and the feed, in one transaction:
    /// both or neither.
    pub async fn send(&self, from: &str, to: &str) -> Result<Yo, Box<dyn std::error::Error>> {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO yos (sender, receiver, at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(from)
        .bind(to)
        .bind(at as i64)
        .fetch_one(&mut *tx)
        .await?;
        let yo = Yo {
            id: id as u64,
            from: from.to_owned(),
            to: to.to_owned(),
            at,
        };
        let outbox = sse::postgres::Outbox::new(sse::hub());
        outbox
            .publish_json(&mut tx, &format!("yo.{to}"), Some("yo"), &yo)
            .await?;
        outbox
            .publish_json(&mut tx, FEED, Some("feed"), &yo)
            .await?;
        tx.commit().await?;
        Ok(yo)
    }

    /// The last `n` yos (to `receiver`, if given), oldest first.
    pub async fn recent(&self, n: usize, receiver: Option<&str>) -> Result<Vec<Yo>, sqlx::Error> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, sender, receiver, at FROM yos
             WHERE $1::text IS NULL OR receiver = $1
             ORDER BY id DESC LIMIT $2",
        )
        .bind(receiver)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await?;
        let yos = rows.into_iter().rev().map(|(id, from, to, at)| Yo {
            id: id as u64,
            from,
            to,
            at: at as u64,
        });
        Ok(yos.collect())
    }
}
