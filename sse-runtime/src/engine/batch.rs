//! A batch of a group's events as engines send and keep it: `<first id>:<length>,<length>...
//! <the events, back to back>`, one message and one history entry for many events.

use std::ops::Range;

/// A group's events in a batch as the engine takes them: `<length>,<length>... <the events,
/// back to back>`. The engine prefixes the first id: `<first id>:`, and sends that as one
/// message, and keeps it as one entry of the group's history.
pub(crate) fn batch<'a>(events: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
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
pub(crate) fn split_batch(batch: &[u8]) -> Option<Vec<(u64, Range<usize>)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
