//! What the scripts send and answer, byte by byte: the message a batch is published as, and the
//! reply of the history read.

use bytes::Bytes;

use crate::resume::{SharedEvent, SharedHistory};

/// The lengths of a group's events in a batch as the publishing script takes them:
/// `<n>,<n>...`. The script publishes `<first id>:<lengths> <events, back to back>`, one message
/// for the group's events of the batch.
pub(super) fn lengths<'a>(events: impl Iterator<Item = &'a [u8]>) -> String {
    let mut lengths = String::new();
    let mut buffer = itoa::Buffer::new();
    for event in events {
        if !lengths.is_empty() {
            lengths.push(',');
        }
        lengths.push_str(buffer.format(event.len()));
    }
    lengths
}

/// The events of a published message, each with its id, in order; `None` if it is malformed.
pub(super) fn split_batch(payload: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let space = payload.iter().position(|&b| b == b' ')?;
    let header = std::str::from_utf8(&payload[..space]).ok()?;
    let (first, lengths) = header.split_once(':')?;
    let first: u64 = first.parse().ok()?;
    let mut rest = &payload[space + 1..];
    let mut events = Vec::new();
    for (id, length) in (first..).zip(lengths.split(',')) {
        let length: usize = length.parse().ok()?;
        let event = rest.get(..length)?;
        rest = &rest[length..];
        events.push((id, event));
    }
    rest.is_empty().then_some(events)
}

/// The reply of the read script for one group, field by field.
pub(super) fn parse_history(reply: Vec<Vec<u8>>) -> Option<SharedHistory> {
    let mut items = reply.into_iter();
    // Numbers and stream ids (`<n>-<m>`, of which `n` is ours).
    let number = |item: Option<Vec<u8>>| -> Option<u64> {
        let item = item?;
        let text = std::str::from_utf8(&item).ok()?;
        text.split('-').next()?.parse().ok()
    };
    let mut next = || number(items.next());
    let (seq, epoch, now_us, trimmed, count) = (next()?, next()?, next()?, next()?, next()?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let (id, at_us) = (number(items.next())?, number(items.next())?);
        let encoded = Bytes::from(items.next()?);
        entries.push(SharedEvent { id, at_us, encoded });
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
        let reply: Vec<Vec<u8>> = ["120", "100", "10000", "105-0", "1", "111-0", "9000", "D"]
            .iter()
            .map(|item| item.as_bytes().to_vec())
            .collect();
        let history = parse_history(reply.clone()).unwrap();
        assert_eq!(
            (history.seq, history.epoch, history.now_us),
            (120, 100, 10_000)
        );
        assert_eq!(history.trimmed, 105);
        assert_eq!(
            (history.entries[0].id, history.entries[0].at_us),
            (111, 9_000)
        );
        assert_eq!(history.entries[0].encoded, "D");
        assert!(parse_history(reply[..6].to_vec()).is_none(), "truncated");
    }

    #[test]
    fn a_batch_message_splits_into_its_events_with_consecutive_ids() {
        let events: [&[u8]; 3] = [b"data: a b\n", b"", b"data: c\n"];
        let message = format!("41:{} data: a b\ndata: c\n", lengths(events.into_iter()));
        assert_eq!(
            split_batch(message.as_bytes()).unwrap(),
            [(41, events[0]), (42, events[1]), (43, events[2])]
        );
        for malformed in ["41:3 ab", "41:1 ab", "x:1 a", "41 a", "41:1,x a"] {
            assert!(split_batch(malformed.as_bytes()).is_none(), "{malformed}");
        }
    }
}
