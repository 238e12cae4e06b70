//! Events and their encoding on the wire (WHATWG HTML, "Server-sent events").
//!
//! An event is encoded once, into bytes that every subscriber shares:
//!
//! ```text
//! event: yo            (absent for the default `message` event)
//! data: first line     (one `data:` line per line of the data, even when it is empty)
//! data: second line
//! id: 42
//!                      (the blank line dispatches the event)
//! ```
//!
//! `\n`, `\r\n` and `\r` in the data each end a line, as a browser reads them, so the browser
//! hands back the data with every line break turned into `\n`. Names and ids never contain CR, LF
//! or NUL: those are refused before anything is written.
//!
//! Each group numbers its own events. A stream of one group sends that group's ids (`id: 17`).
//! A stream of several groups sends its position in each of them, in the stream's order of
//! groups (`id: yo.bob:17,yo:40`): group names never hold `:` or `,`, so the id reads back
//! exactly, and a client resuming with it resumes every group where it was. A stream the server
//! closed ends with the id [`CLOSED_ID`].

use std::{
    fmt::{self, Write as _},
    sync::Arc,
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};

use crate::{cursor::Cursor, GroupName, NameError, PublishError};

/// The name of an event, as a browser's `addEventListener(name, ...)` expects it.
///
/// Any text of 1 to 256 bytes without CR, LF or NUL. Events published without a name are
/// `message` events.
///
/// ```
/// let yo = sse::EventName::new("yo")?;
/// assert_eq!(yo.as_str(), "yo");
/// assert!(sse::EventName::new("yo\ndata: forged").is_err());
/// # Ok::<(), sse::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// Checks `name` and makes it an event name.
    ///
    /// ```
    /// assert!(sse::EventName::new(String::from("user joined")).is_ok());
    /// assert!(sse::EventName::new("").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        sse_names::check_event(&name)?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    ///
    /// ```
    /// assert_eq!(sse::EventName::new("yo")?.as_str(), "yo");
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The id of a published event, sent on the wire as `id: <n>`.
///
/// Ids increase within a group. A browser sends the last one it saw back as `Last-Event-ID`
/// when it reconnects, and the stream resumes after it.
///
/// ```
/// let id = sse::publish!("docs-event-id", "yo", "hello")?;
/// let next = sse::publish!("docs-event-id", "yo", "again")?;
/// assert!(next > id);
/// assert_eq!(id.to_string(), id.get().to_string());
/// # Ok::<(), sse::PublishError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub(crate) u64);

impl EventId {
    /// The id as a number.
    ///
    /// ```
    /// let id = sse::publish!("docs-event-id-get", "hello")?;
    /// assert!(id.get() > 0);
    /// # Ok::<(), sse::PublishError>(())
    /// ```
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

/// An encoded event that still lacks its id: the id is given under its group's lock, so ids and
/// the order of events in a group agree.
pub(crate) struct Draft(BytesMut);

/// Room for `id: <u64>\n\n`.
const ID_LINE_MAX: usize = 4 + 20 + 2;

impl Draft {
    /// Encodes `event` and `data`; fails when the event name is not one, or when the encoding
    /// would pass `max_bytes`.
    pub(crate) fn new(
        event: Option<&str>,
        data: impl fmt::Display,
        max_bytes: usize,
    ) -> Result<Self, PublishError> {
        let out = Limited::start(event, max_bytes)?;
        let mut lines = DataLines {
            out,
            after_cr: false,
        };
        let written = fmt::write(&mut lines, format_args!("{data}"));
        let mut out = lines.out;
        written
            .and_then(|()| out.push(b"\n"))
            .map_err(|_| out.too_large())?;
        Ok(Self(out.buf))
    }

    /// Encodes `value` as compact JSON, written straight into the event. Compact JSON escapes
    /// every line break inside strings, so the data is one `data:` line.
    #[cfg(feature = "json")]
    pub(crate) fn json(
        event: Option<&str>,
        value: &(impl serde::Serialize + ?Sized),
        max_bytes: usize,
    ) -> Result<Self, PublishError> {
        let mut out = Limited::start(event, max_bytes)?;
        match serde_json::to_writer(&mut out, value) {
            Ok(()) => {}
            Err(e) if e.is_io() => return Err(out.too_large()),
            Err(e) => return Err(PublishError::Json(e)),
        }
        out.push(b"\n").map_err(|_| out.too_large())?;
        Ok(Self(out.buf))
    }

    /// An event encoded before, as [`Draft::as_bytes`] gave it (read back from an engine).
    pub(crate) fn encoded(bytes: &[u8]) -> Self {
        Self(BytesMut::from(bytes))
    }

    /// The encoded event, without its id line.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An event's last line, `id: <id>`, and the blank line that ends it: formatted where it is
/// written, allocating nothing.
pub(crate) struct IdLine {
    bytes: [u8; ID_LINE_MAX],
    len: usize,
}

impl IdLine {
    pub(crate) fn new(id: u64) -> Self {
        let mut bytes = [0; ID_LINE_MAX];
        let mut rest = &mut bytes[..];
        put_id_line_of(&mut rest, itoa::Buffer::new().format(id).as_bytes());
        let len = ID_LINE_MAX - rest.len();
        IdLine { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The id line of a stream at `cursors` (one per group, in the stream's order), ending the
/// event it closes: `id: 17\n\n`, or `id: yo.bob:17,yo:40\n\n` for several groups.
pub(crate) fn put_id_line(out: &mut BytesMut, groups: &[GroupName], cursors: &[Cursor]) {
    match (groups, cursors) {
        ([_], [cursor]) => out.put_slice(IdLine::new(cursor.id()).as_bytes()),
        _ => put_id_line_of(out, composite_id(groups, cursors).as_bytes()),
    }
}

/// The id alone, as a stream sends it: `17` or `yo.bob:17,yo:40`.
pub(crate) fn id_text(groups: &[GroupName], cursors: &[Cursor]) -> String {
    match (groups, cursors) {
        ([_], [cursor]) => itoa::Buffer::new().format(cursor.id()).to_owned(),
        _ => composite_id(groups, cursors),
    }
}

/// The id of a stream of several groups: `yo.bob:17,yo:40`.
fn composite_id(groups: &[GroupName], cursors: &[Cursor]) -> String {
    let mut text = String::with_capacity(groups.len() * 24);
    for (i, (group, cursor)) in groups.iter().zip(cursors).enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(text, "{comma}{group}:{}", cursor.id());
    }
    text
}

/// Ends an event with the id line of `id`, and the blank line that dispatches it.
fn put_id_line_of(out: &mut impl BufMut, id: &[u8]) {
    out.put_slice(b"id: ");
    out.put_slice(id);
    out.put_slice(b"\n\n");
}

/// A buffer for an event of at most `max_bytes`, its id line included.
struct Limited {
    buf: BytesMut,
    max_bytes: usize,
}

impl Limited {
    /// The start of an event: its `event:` line, if named, and `data: `; room is kept for the id.
    /// Fails when the event name is not one.
    fn start(event: Option<&str>, max_bytes: usize) -> Result<Self, PublishError> {
        if let Some(event) = event {
            sse_names::check_event(event).map_err(PublishError::InvalidEvent)?;
        }
        let mut out = Limited {
            buf: BytesMut::with_capacity(128),
            max_bytes,
        };
        if let Some(event) = event {
            out.push(b"event: ").map_err(|_| out.too_large())?;
            out.push(event.as_bytes()).map_err(|_| out.too_large())?;
            out.push(b"\n").map_err(|_| out.too_large())?;
        }
        out.push(b"data: ").map_err(|_| out.too_large())?;
        Ok(out)
    }

    fn too_large(&self) -> PublishError {
        PublishError::TooLarge {
            max_bytes: self.max_bytes,
            at_least: self.buf.len() + ID_LINE_MAX,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> fmt::Result {
        if self.buf.len() + bytes.len() + ID_LINE_MAX > self.max_bytes {
            return Err(fmt::Error);
        }
        self.buf.put_slice(bytes);
        Ok(())
    }
}

/// serde_json writes here; an event over the limit is an I/O error it hands back as such.
#[cfg(feature = "json")]
impl std::io::Write for Limited {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.push(bytes)
            .map_err(|_| std::io::Error::other("event too large"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes text as `data:` lines, ending a line at each `\n`, `\r\n` or `\r`.
struct DataLines {
    out: Limited,
    /// The last character written was `\r`: a `\n` right after it belongs to the same break.
    after_cr: bool,
}

impl fmt::Write for DataLines {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        if self.after_cr && s.starts_with('\n') {
            s = &s[1..];
        }
        if !s.is_empty() {
            self.after_cr = s.ends_with('\r');
        }
        while let Some(at) = s.find(['\r', '\n']) {
            self.out.push(&s.as_bytes()[..at])?;
            self.out.push(b"\ndata: ")?;
            let skip = if s[at..].starts_with("\r\n") { 2 } else { 1 };
            s = &s[at + skip..];
        }
        self.out.push(s.as_bytes())
    }
}

/// A comment line that keeps proxies and browsers from timing the stream out.
pub(crate) const KEEP_ALIVE: &[u8] = b":\n\n";

/// The comment a stream ends with when its client fell too far behind: it reconnects and
/// resumes from its last id.
pub(crate) const TOO_FAR_BEHIND: &[u8] = b": too far behind, reconnect\n\n";

/// The reconnection delay hint, `retry: <ms>`.
pub(crate) fn retry_hint(after: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", after.as_millis()))
}

/// The name of the event that tells a client its `Last-Event-ID` could not be honoured (it is
/// older than the history, or from before a restart), so it may have missed events: the page
/// should fetch the state it shows afresh.
///
/// ```
/// assert_eq!(sse::STREAM_RESET, "stream-reset");
/// ```
///
/// ```js
/// source.addEventListener("stream-reset", () => refetchEverything());
/// ```
pub const STREAM_RESET: &str = "stream-reset";

/// The name of the event every stream starts with, unless it starts with a `stream-reset`. Its
/// id is where the stream starts, so a client that reconnects before any other event resumes
/// from there; its data is empty. Browsers dispatch it only to listeners of this name, so a
/// page that does not listen for it never sees it.
///
/// ```
/// assert_eq!(sse::STREAM_START, "stream-start");
/// ```
///
/// Browsers would take the id from an `id:` line alone, but client libraries (Node's
/// `eventsource`, Rust's `reqwest-eventsource`) only take ids of events they dispatch.
pub const STREAM_START: &str = "stream-start";

/// The name of the event a stream ends with when the server closes it
/// ([`Hub::close_user`](crate::Hub::close_user), [`Hub::close_group`](crate::Hub::close_group)).
/// Its id is [`CLOSED_ID`]: a browser that reconnects anyway sends it as its `Last-Event-ID`
/// and is answered `204 No Content`, on which `EventSource` stops for good. A page may also
/// call `source.close()` on it, which saves that last request.
///
/// A stream whose time was up ([`Join::expires_at`](crate::Join::expires_at), a subscription
/// token's expiry) ends with it too, its data `{"reason":"expired"}` and its id the stream's
/// position: the page fetches a fresh token and opens the stream again from that id.
///
/// ```
/// assert_eq!(sse::STREAM_CLOSED, "stream-closed");
/// ```
///
/// ```js
/// source.addEventListener("stream-closed", () => source.close());
/// ```
pub const STREAM_CLOSED: &str = "stream-closed";

/// The name of the event that ends a group: [`Hub::finish`](crate::Hub::finish) publishes it,
/// with empty data, as the group's last event. It travels, is numbered and kept like any event,
/// so a client that reconnects gets it after what it missed, and a stream of that group ends
/// right after it (a stream of several groups, once each of its groups ended). A client that
/// comes back with its id is answered `204 No Content`, on which `EventSource` stops; a page
/// may as well call `source.close()` on it. Publishing an event of this name is finishing the
/// group (so a program in another language finishes one through the publish endpoint).
///
/// ```
/// assert_eq!(sse::STREAM_END, "stream-end");
/// ```
///
/// ```js
/// source.addEventListener("stream-end", () => source.close());
/// ```
pub const STREAM_END: &str = "stream-end";

/// Whether `encoded` (an event as stored, its id line aside or not) is a [`STREAM_END`].
pub(crate) fn is_end(encoded: &[u8]) -> bool {
    encoded.starts_with(b"event: stream-end\n")
}

/// The id of the [`STREAM_CLOSED`] event. A stream asked for with it as its `Last-Event-ID` is
/// refused with `204 No Content` ([`SubscribeError::Closed`](crate::SubscribeError::Closed)).
///
/// ```
/// let hub = sse::Hub::new(sse::Config::default());
/// let came_back = sse::LastEventId::new(sse::CLOSED_ID);
/// let refused = hub.subscribe([sse::GroupName::new("yo")?], &came_back);
/// assert!(matches!(refused, Err(sse::SubscribeError::Closed)));
/// # Ok::<(), sse::NameError>(())
/// ```
pub const CLOSED_ID: &str = "closed";

/// The whole `stream-closed` event.
pub(crate) fn stream_closed() -> Bytes {
    let mut event = control(STREAM_CLOSED, "").0;
    put_id_line_of(&mut event, CLOSED_ID.as_bytes());
    event.freeze()
}

/// The `stream-closed` event of a stream whose time was up, without its id line: the client
/// comes back with a fresh authorization and resumes from its id.
pub(crate) fn stream_expired() -> Draft {
    control(STREAM_CLOSED, r#"{"reason":"expired"}"#)
}

/// The `stream-start` event, without its id line.
pub(crate) fn stream_start() -> Draft {
    control(STREAM_START, "")
}

/// The `stream-reset` event, without its id line: the client's `Last-Event-ID` could not be
/// resumed from, so it may have missed events. Its id lets its next reconnect resume from there.
pub(crate) fn stream_reset(reason: &str) -> Draft {
    control(STREAM_RESET, format_args!("{{\"reason\":\"{reason}\"}}"))
}

/// An event the hub sends of itself.
fn control(name: &str, data: impl fmt::Display) -> Draft {
    // The name is a valid one and there is no size limit: encoding cannot fail.
    Draft::new(Some(name), data, usize::MAX).unwrap_or(Draft(BytesMut::new()))
}

#[cfg(test)]
impl Draft {
    /// The whole event, as the registry writes it.
    fn stamp(&self, id: EventId) -> Vec<u8> {
        [self.as_bytes(), IdLine::new(id.0).as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(event: Option<&str>, data: &str) -> String {
        let bytes = Draft::new(event, data, 1 << 20).unwrap().stamp(EventId(7));
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn named_event() {
        assert_eq!(
            encode(Some("yo"), "yo from a to b"),
            "event: yo\ndata: yo from a to b\nid: 7\n\n"
        );
    }

    #[test]
    fn message_event_has_no_event_line() {
        assert_eq!(encode(None, "hi"), "data: hi\nid: 7\n\n");
    }

    #[test]
    fn empty_data_still_writes_a_data_line() {
        assert_eq!(encode(None, ""), "data: \nid: 7\n\n");
    }

    #[test]
    fn every_line_break_is_one_break() {
        assert_eq!(
            encode(None, "a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\nid: 7\n\n"
        );
        assert_eq!(encode(None, "\r\n"), "data: \ndata: \nid: 7\n\n");
        assert_eq!(encode(None, "\n\n"), "data: \ndata: \ndata: \nid: 7\n\n");
        assert_eq!(
            encode(None, "a\r\r\nb"),
            "data: a\ndata: \ndata: b\nid: 7\n\n"
        );
    }

    #[test]
    fn crlf_split_across_writes_is_one_break() {
        struct Pieces;
        impl fmt::Display for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a\r")?;
                f.write_str("\nb\r")?;
                f.write_str("c")
            }
        }
        let bytes = Draft::new(None, Pieces, 1 << 20).unwrap().stamp(EventId(1));
        assert_eq!(&bytes[..], b"data: a\ndata: b\ndata: c\nid: 1\n\n");
    }

    #[test]
    fn leading_space_and_colon_survive() {
        assert_eq!(encode(None, " x: y"), "data:  x: y\nid: 7\n\n");
    }

    #[test]
    fn too_large_is_refused_not_truncated() {
        let err = Draft::new(None, "x".repeat(1000), 500).err().unwrap();
        assert!(
            matches!(err, PublishError::TooLarge { max_bytes: 500, .. }),
            "{err}"
        );
        assert!(Draft::new(None, "x".repeat(400), 500).is_ok());
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_is_one_compact_data_line() {
        let value = serde_json::json!({"text": "two\nlines\r\n", "n": 1});
        let bytes = Draft::json(Some("yo"), &value, 1 << 20)
            .unwrap()
            .stamp(EventId(7));
        assert_eq!(
            &bytes[..],
            &b"event: yo\ndata: {\"n\":1,\"text\":\"two\\nlines\\r\\n\"}\nid: 7\n\n"[..]
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_too_large_and_unserializable_are_told_apart() {
        let long = "x".repeat(1000);
        let err = Draft::json(None, &long, 500).err().unwrap();
        assert!(
            matches!(err, PublishError::TooLarge { max_bytes: 500, .. }),
            "{err}"
        );
        let mut bad_keys = std::collections::HashMap::new();
        bad_keys.insert((1, 2), "tuple keys are not JSON");
        let err = Draft::json(None, &bad_keys, 500).err().unwrap();
        assert!(matches!(err, PublishError::Json(_)), "{err}");
    }

    #[test]
    fn hostile_event_names_are_refused_before_anything_is_written() {
        for name in ["yo\ndata: forged", "yo\r", "\0", ""] {
            let err = Draft::new(Some(name), "x", 1 << 20).err().unwrap();
            assert!(
                matches!(err, PublishError::InvalidEvent(_)),
                "{name:?}: {err}"
            );
        }
    }

    #[test]
    fn start_event_is_a_named_event_with_empty_data() {
        assert_eq!(
            &stream_start().stamp(EventId(3))[..],
            b"event: stream-start\ndata: \nid: 3\n\n"
        );
    }

    #[test]
    fn reset_event_is_a_named_event_with_an_id() {
        assert_eq!(
            &stream_reset("unknown id").stamp(EventId(3))[..],
            b"event: stream-reset\ndata: {\"reason\":\"unknown id\"}\nid: 3\n\n"
        );
    }

    #[test]
    fn closed_event_has_the_closed_id() {
        assert_eq!(
            &stream_closed()[..],
            b"event: stream-closed\ndata: \nid: closed\n\n"
        );
    }

    fn groups(names: &[&str]) -> Vec<GroupName> {
        names.iter().map(|n| GroupName::new(*n).unwrap()).collect()
    }

    fn cursors(ids: &[u64]) -> Vec<Cursor> {
        ids.iter().copied().map(Cursor::at).collect()
    }

    fn id_line(groups: &[GroupName], ids: &[u64]) -> BytesMut {
        let mut line = BytesMut::new();
        put_id_line(&mut line, groups, &cursors(ids));
        line
    }

    #[test]
    fn one_group_sends_plain_ids() {
        let yo = groups(&["yo"]);
        assert_eq!(id_text(&yo, &cursors(&[17])), "17");
        assert_eq!(&id_line(&yo, &[17])[..], b"id: 17\n\n");
        assert_eq!(
            &id_line(&yo, &[u64::MAX])[..],
            IdLine::new(u64::MAX).as_bytes()
        );
    }

    #[test]
    fn several_groups_send_their_position_in_each_in_the_streams_order() {
        let both = groups(&["yo.bob", "yo"]);
        assert_eq!(id_text(&both, &cursors(&[17, 40])), "yo.bob:17,yo:40");
        assert_eq!(&id_line(&both, &[17, 40])[..], b"id: yo.bob:17,yo:40\n\n");
    }
}

/// The encoder against an independent parser (`eventsource-stream`), on arbitrary input.
#[cfg(test)]
mod conformance {
    use std::convert::Infallible;

    use eventsource_stream::Eventsource;
    use futures_util::{stream, StreamExt};
    use proptest::prelude::*;

    use super::*;

    /// What a conforming parser makes of `bytes`, fed in chunks of `chunk` bytes.
    fn parse(bytes: &[u8], chunk: usize) -> Vec<eventsource_stream::Event> {
        let chunks: Vec<Result<Bytes, Infallible>> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_executor::block_on(
            stream::iter(chunks)
                .eventsource()
                .map(|event| event.expect("well-formed stream"))
                .collect(),
        )
    }

    /// Text biased towards what breaks encoders: line breaks of all three kinds, NUL, colons,
    /// spaces, field names, and non-ASCII.
    fn tricky_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\n".to_owned()),
            Just("\r".to_owned()),
            Just("\r\n".to_owned()),
            Just("\0".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            Just("data: ".to_owned()),
            Just("id: 1".to_owned()),
            Just("event:".to_owned()),
            Just("é🎉".to_owned()),
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn encoded_events_parse_back_exactly_or_are_refused(
            event in proptest::option::of(tricky_text()),
            data in tricky_text(),
            id in any::<u64>(),
            chunk in 1usize..64,
        ) {
            let Ok(draft) = Draft::new(event.as_deref(), &data, 1 << 20) else {
                let name = event.unwrap_or_default();
                prop_assert!(name.is_empty() || name.len() > sse_names::MAX_EVENT_LEN
                    || name.contains(['\r', '\n', '\0']), "refused a valid name {name:?}");
                return Ok(());
            };
            let parsed = parse(&draft.stamp(EventId(id)), chunk);
            prop_assert_eq!(parsed.len(), 1);
            let expected_data = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(&parsed[0].event, event.as_deref().unwrap_or("message"));
            prop_assert_eq!(&parsed[0].data, &expected_data);
            prop_assert_eq!(&parsed[0].id, &id.to_string());
        }
    }
}
