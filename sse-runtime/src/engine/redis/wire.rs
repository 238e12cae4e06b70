//! What the scripts send and answer, byte by byte: the message a batch is published as, and the
//! reply of the history read.

use std::ops::Range;

use bytes::Bytes;

use crate::resume::{SharedEvent, SharedHistory};

/// A group's events in a batch as the publishing script takes them: `<length>,<length>...
/// <the events, back to back>`. The script prefixes the first id: `<first id>:`, and publishes
/// that as one message, and keeps it as one entry of the group's history.
pub(super) fn batch<'a>(events: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let size: usize = events.clone().map(|event| event.len() + 8).sum();
    let mut batch = Vec::with_capacity(size);
    let mut buffer = itoa::Buffer::new();
    for (i, event) in events.clone().enumerate() {
        if i > 0 {
            batch.push(b',');
        }
        batch.extend_from_slice(buffer.format(event.len()).as_bytes());
    }
    batch.push(b' ');
    for event in events {
        batch.extend_from_slice(event);
    }
    batch
}

/// Where each event of a published batch is in it, with its id, in order; `None` if it is
/// malformed.
pub(super) fn split_batch(batch: &[u8]) -> Option<Vec<(u64, Range<usize>)>> {
    let space = batch.iter().position(|&b| b == b' ')?;
    let header = std::str::from_utf8(&batch[..space]).ok()?;
    let (first, lengths) = header.split_once(':')?;
    let first: u64 = first.parse().ok()?;
    let mut start = space + 1;
    let mut events = Vec::new();
    for (id, length) in (first..).zip(lengths.split(',')) {
        let end = start.checked_add(length.parse().ok()?)?;
        events.push((id, start..end));
        start = end;
    }
    (start == batch.len()).then_some(events)
}

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

    #[test]
    fn a_batch_splits_into_its_events_with_consecutive_ids() {
        let events: [&[u8]; 3] = [b"data: a b\n", b"", b"data: c\n"];
        let mut message = b"41:".to_vec();
        message.extend(batch(events.into_iter()));
        assert_eq!(message, b"41:10,0,8 data: a b\ndata: c\n");
        let split = split_batch(&message).unwrap();
        let split: Vec<_> = split
            .into_iter()
            .map(|(id, at)| (id, &message[at]))
            .collect();
        assert_eq!(split, [(41, events[0]), (42, events[1]), (43, events[2])]);
        for malformed in ["41:3 ab", "41:1 ab", "x:1 a", "41 a", "41:1,x a"] {
            assert!(split_batch(malformed.as_bytes()).is_none(), "{malformed}");
        }
    }
}
