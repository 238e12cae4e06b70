//! What the read script answers, byte by byte (batches are as [`batch`](crate::engine::batch)
//! writes them).

use bytes::Bytes;

use crate::{
    engine::batch::split_batch,
    resume::{SharedEvent, SharedHistory},
};

/// The reply of the read script for one group, field by field.
pub(super) fn parse_history(reply: Vec<Vec<u8>>) -> Option<SharedHistory> {
    let mut items = reply.into_iter();
    let number =
        |item: Option<Vec<u8>>| -> Option<u64> { std::str::from_utf8(&item?).ok()?.parse().ok() };
    let mut next = || number(items.next());
    let (seq, epoch, now_us, trimmed, count) = (next()?, next()?, next()?, next()?, next()?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let at_us = number(items.next())?;
        let batch = Bytes::from(items.next()?);
        for (id, event) in split_batch(&batch)? {
            let encoded = batch.slice(event);
            entries.push(SharedEvent { id, at_us, encoded });
        }
    }
    Some(SharedHistory {
        seq,
        epoch,
        now_us,
        trimmed,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_reply_is_read_field_by_field() {
        let reply: Vec<Vec<u8>> = ["120", "100", "10000", "105", "1", "9000", "111:1,2 DEF"]
            .iter()
            .map(|item| item.as_bytes().to_vec())
            .collect();
        let history = parse_history(reply.clone()).unwrap();
        assert_eq!(
            (history.seq, history.epoch, history.now_us),
            (120, 100, 10_000)
        );
        assert_eq!(history.trimmed, 105);
        let entries: Vec<_> = history
            .entries
            .iter()
            .map(|e| (e.id, e.at_us, &e.encoded[..]))
            .collect();
        assert_eq!(entries, [(111, 9_000, &b"D"[..]), (112, 9_000, b"EF")]);
        assert!(parse_history(reply[..6].to_vec()).is_none(), "truncated");
    }
}
