//! Finding events in an SSE body as it arrives, without allocating per event.
//!
//! The bench only needs each event's first `data:` line (the payload carries a sequence number
//! and its send time), so this reads lines, remembers the first data line of the current event
//! and hands it over when the blank line that ends the event arrives. Lines may end in LF or
//! CRLF (sse-starlette writes CRLF); a lone CR ending a line is not used by any system measured.

/// One stream's parsing state across the chunks its body arrives in.
#[derive(Default)]
pub(crate) struct Scanner {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    /// The current event's first `data:` value, and whether it has one.
    data: Vec<u8>,
    has_data: bool,
    /// The `id:` value of the current event, or else of the events before it (an event without
    /// `id:` keeps the last one, as in `EventSource`).
    id: Vec<u8>,
    /// The id of the last event completed, which a client resends as `Last-Event-ID` when it
    /// reconnects: an event cut off by a closing connection does not count, as in `EventSource`.
    pub(crate) last_id: Vec<u8>,
}

impl Scanner {
    /// A scanner for a stream resumed after the event with id `last_id`.
    pub(crate) fn resuming(last_id: Vec<u8>) -> Self {
        Self {
            id: last_id.clone(),
            last_id,
            ..Self::default()
        }
    }

    /// Reads `chunk`, calling `on_event` with the data of every event it completes.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..end]);
            self.line(&line, on_event);
            line.clear();
            self.partial = line;
            chunk = &chunk[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            self.line(&chunk[..end], on_event);
            chunk = &chunk[end + 1..];
        }
        self.partial.extend_from_slice(chunk);
    }

    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.last_id != self.id {
                self.last_id.clone_from(&self.id);
            }
            if std::mem::take(&mut self.has_data) {
                on_event(&self.data);
            }
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if !self.has_data {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                self.data.clear();
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        } else if let Some(value) = line.strip_prefix(b"id:") {
            self.id.clear();
            self.id
                .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    fn events(chunks: &[&[u8]]) -> Vec<String> {
        let mut scanner = Scanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, &mut |data| {
                seen.push(String::from_utf8(data.to_vec()).unwrap())
            });
        }
        seen
    }

    #[test]
    fn events_split_anywhere_are_found_whole() {
        let body = b"retry: 3000\n\n: comment\n\nevent: yo\ndata: 1 2 x\nid: 7\n\ndata:b\r\n\r\n";
        let whole = events(&[body]);
        assert_eq!(whole, ["1 2 x", "b"]);
        for cut in 0..body.len() {
            assert_eq!(events(&[&body[..cut], &body[cut..]]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn the_last_id_is_kept_for_reconnecting() {
        let mut scanner = Scanner::default();
        scanner.feed(b"data: a\nid: 7\n\ndata: b\nid:", &mut |_| {});
        assert_eq!(scanner.last_id, b"7");
        scanner.feed(b"8\n", &mut |_| {});
        assert_eq!(
            scanner.last_id, b"7",
            "the event with id 8 is not complete yet"
        );
        scanner.feed(b"\n", &mut |_| {});
        assert_eq!(scanner.last_id, b"8");
    }

    #[test]
    fn a_resumed_stream_keeps_its_id_until_an_event_brings_another() {
        let mut scanner = Scanner::resuming(b"5".to_vec());
        scanner.feed(b"data: no id\n\n", &mut |_| {});
        assert_eq!(scanner.last_id, b"5");
        scanner.feed(b"data: a\nid: 6\n\n", &mut |_| {});
        assert_eq!(scanner.last_id, b"6");
    }

    #[test]
    fn an_event_without_data_is_not_an_event() {
        assert!(events(&[b"event: stream-open\n\n:\n\n"]).is_empty());
    }
}
