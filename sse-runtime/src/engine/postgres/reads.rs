//! Reading a group's history from `sse_events`, as the engine's listener and catch-ups need it.

use bytes::Bytes;

use super::Target;
use crate::{
    engine::batch::split_batch,
    resume::{SharedEvent, SharedHistory, Since},
    BrokerError,
};

/// The most batches one read returns after an id.
pub(super) const READ_BATCHES: i32 = 10_000;

/// Where `group` stands and its history from where `since` says (`sse_read`).
pub(super) async fn history(
    on: impl sqlx::PgExecutor<'_>,
    target: &Target,
    group: &str,
    since: Since,
) -> Result<SharedHistory, BrokerError> {
    let (after, last_n) = match since {
        Since::Now => (None, None),
        // Ids are below 2^63 in Postgres; one above every real one is simply unknown.
        Since::After(after) => (Some(i64::try_from(after).unwrap_or(i64::MAX)), None),
        Since::Last(count) => (None, Some(i32::try_from(count).unwrap_or(i32::MAX))),
    };
    type Row = (i64, i64, i64, i64, Vec<i64>, Vec<Vec<u8>>);
    let reading = sqlx::query_as::<_, Row>("SELECT * FROM sse_read($1, $2, $3, $4)")
        .bind(group)
        .bind(after)
        .bind(last_n)
        .bind(READ_BATCHES)
        .fetch_one(on);
    let (seq, epoch, now_us, trimmed, ats, batches) = target.answer_within(reading).await?;
    let malformed = || {
        BrokerError::new(format!(
            "Postgres at {} holds a malformed event of group {group:?}",
            target.shown
        ))
    };
    let mut entries = Vec::new();
    for (at, batch) in ats.into_iter().zip(batches) {
        let batch = Bytes::from(batch);
        for (id, event) in split_batch(&batch).ok_or_else(malformed)? {
            let (id, at_us) = (id, at as u64);
            entries.push(SharedEvent {
                id,
                at_us,
                encoded: batch.slice(event),
            });
        }
    }
    Ok(SharedHistory {
        seq: seq as u64,
        epoch: epoch as u64,
        now_us: now_us as u64,
        trimmed: trimmed as u64,
        entries,
    })
}
