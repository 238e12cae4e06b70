//! Where a stream resumes: the `Last-Event-ID` a client sends back, read as the ids the stream
//! sent (written by the `event` module: `17` for one group, `yo.bob:17,yo:40` for several), and
//! what an engine's shared history gives a client the local history does not cover.

use bytes::Bytes;

use std::{future::Future, pin::Pin};

use crate::{BrokerError, GroupName};

/// The id a reconnecting client last saw: the `Last-Event-ID` header that browsers resend, or
/// else a `lastEventId` query parameter for clients that cannot set headers.
///
/// An axum extractor; it never rejects. A value that is not an id this stream's groups gave
/// (garbage, non-UTF-8, from another stream, longer than
/// [`Config::max_last_event_id_len`](crate::Config::max_last_event_id_len)) is not an error: the
/// stream starts with a `stream-reset` event instead of a replay.
///
/// ```
/// use axum::{extract::Request, extract::FromRequestParts};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let request = Request::builder().uri("/events?lastEventId=42").body(()).unwrap();
/// let (mut parts, ()) = request.into_parts();
/// let last = sse::LastEventId::from_request_parts(&mut parts, &()).await.unwrap();
/// assert_eq!(last.as_bytes(), Some(&b"42"[..]));
/// assert_eq!(sse::LastEventId::new("yo.bob:17,yo:40").as_bytes(), Some(&b"yo.bob:17,yo:40"[..]));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastEventId(Option<Bytes>);

impl LastEventId {
    /// The id a client sent, as it sent it; an empty one means none.
    ///
    /// ```
    /// let hub = sse::Hub::new(sse::Config::default());
    /// let groups = [sse::GroupName::new("yo")?];
    /// let id = hub.publish("yo", None, "hi")?; // nobody listens: not kept
    /// let subscription = hub.subscribe(groups, &sse::LastEventId::new(id.to_string()))?;
    /// # let _ = subscription;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(id: impl Into<Bytes>) -> Self {
        Self(Some(id.into()).filter(|id| !id.is_empty()))
    }

    /// The raw value, if the client sent one.
    ///
    /// ```
    /// assert_eq!(sse::LastEventId::default().as_bytes(), None);
    /// ```
    pub fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }

    /// Where a stream of `groups` resumes: after these ids, one per group in `groups`' order;
    /// `Ok(None)` when the client sent no id (it starts live).
    pub(crate) fn resume(
        &self,
        groups: &[GroupName],
        max_len: usize,
    ) -> Result<Option<Vec<u64>>, &'static str> {
        let Some(raw) = &self.0 else {
            return Ok(None);
        };
        if raw.len() > max_len {
            return Err("id too long");
        }
        let text = std::str::from_utf8(raw).map_err(|_| "not an id")?;
        if let Ok(id) = text.parse::<u64>() {
            return match groups {
                [_] => Ok(Some(vec![id])),
                _ => Err("id of another stream"),
            };
        }
        let positions = parse_positions(text).ok_or("not an id")?;
        groups
            .iter()
            .map(|group| {
                positions
                    .iter()
                    .find(|(name, _)| *name == group.as_str())
                    .map(|&(_, id)| id)
                    .ok_or("id of another stream")
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

/// `name:id,name:id…`, each name a group name, none twice.
fn parse_positions(text: &str) -> Option<Vec<(&str, u64)>> {
    let mut positions: Vec<(&str, u64)> = Vec::new();
    for part in text.split(',') {
        let (name, id) = part.split_once(':')?;
        sse_names::check_group(name).ok()?;
        if !id.bytes().all(|b| b.is_ascii_digit()) || positions.iter().any(|(n, _)| *n == name) {
            return None;
        }
        positions.push((name, id.parse().ok()?));
    }
    Some(positions)
}

/// A rewind through all a group keeps: more events than any history holds, and few enough
/// for an engine to count (Redis takes a count up to `i64::MAX`).
pub(crate) const WHOLE: usize = u32::MAX as usize;

/// What this process's history of a group can tell a client that comes back.
pub(crate) struct LocalHistory {
    /// The group's last id known here: where a stream starting now stands.
    pub(crate) last: u64,
    /// A client that saw this id, or a later one, can be given everything it missed from here.
    pub(crate) replayable_after: u64,
    /// Whether every event of the group after `replayable_after` is here: `false` while an
    /// engine is still starting to deliver the group to this process.
    pub(crate) complete: bool,
    /// For a stream rewound by some events: the id after which the group's last ones are,
    /// when this history holds them (`None`: an engine's shared history may hold more).
    pub(crate) rewound_after: Option<u64>,
}

/// Where a group's catch-up from an engine's history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// Nowhere: the client needs no event, only where the group stands.
    Now,
    /// After the client's id.
    After(u64),
    /// Its last this many events (a stream rewound).
    Last(usize),
}

/// Where a new stream starts, as decided from the client's id and the local histories.
pub(crate) enum Plan {
    /// Live, from where each group stands.
    Live,
    /// After these ids, one per group, replayed from the local history.
    From(Vec<u64>),
    /// Live, after a `stream-reset` for this reason.
    Reset(&'static str),
    /// From the engine's shared history, per group from where it says, since the local
    /// history does not cover it.
    CatchUp(Vec<Since>),
}

/// The one place a stream's start is decided: a client came with `resume` (per group, the id
/// after which it needs events), or with none and `rewind` (each group's last events it wants
/// first), to groups whose local histories are `local`; `shared` says whether an engine keeps a
/// history shared by processes, which may cover what `local` does not.
pub(crate) fn plan(
    resume: Result<Option<Vec<u64>>, &'static str>,
    rewind: usize,
    local: &[LocalHistory],
    shared: bool,
) -> Plan {
    let ids = match resume {
        Err(why) => return Plan::Reset(why),
        Ok(None) if rewind > 0 => {
            let rewound: Option<Vec<u64>> = local.iter().map(|g| g.rewound_after).collect();
            return match rewound {
                Some(ids) => Plan::From(ids),
                None => Plan::CatchUp(vec![Since::Last(rewind); local.len()]),
            };
        }
        // Where a group stands is not known here until the engine delivers it.
        Ok(None) if shared && !local.iter().all(|group| group.complete) => {
            return Plan::CatchUp(vec![Since::Now; local.len()]);
        }
        Ok(None) => return Plan::Live,
        Ok(Some(ids)) => ids,
    };
    let mut lost = None;
    for (group, &id) in local.iter().zip(&ids) {
        if id > group.last {
            lost = lost.or(Some("unknown id"));
        } else if group.replayable_after > id {
            lost = Some("id older than the history");
        }
    }
    match lost {
        None => Plan::From(ids),
        // Only an engine's shared history may still hold what the local one lost.
        Some(why) if !shared => Plan::Reset(why),
        Some(_) => Plan::CatchUp(ids.into_iter().map(Since::After).collect()),
    }
}

/// A group's shared history, as an engine keeps it: where its sequence stands, and its events
/// after some id.
pub(crate) struct SharedHistory {
    /// The last id the group's sequence gave.
    pub(crate) seq: u64,
    /// The first id of its current sequence: older ones come from before the engine lost it.
    pub(crate) epoch: u64,
    /// When it was read, in the engine's clock.
    pub(crate) now_us: u64,
    /// The highest id dropped from it (too many events, too old, or all of them when the whole
    /// history expired); 0 when none was.
    pub(crate) trimmed: u64,
    pub(crate) entries: Vec<SharedEvent>,
}

/// An event of an engine's shared history.
pub(crate) struct SharedEvent {
    pub(crate) id: u64,
    /// When it was published, in the engine's clock.
    pub(crate) at_us: u64,
    /// Its encoding without the id line.
    pub(crate) encoded: Bytes,
}

/// What a client gets from groups' shared `histories`, from where `from` says for each, when
/// events live `age_us` at most: the events it missed (after its id) or asked for (a group's
/// last ones, of those still kept) in the order they were published, or a `stream-reset` when
/// a history no longer holds all it missed. Either way each group then stands at its
/// sequence's last id.
pub(crate) fn caught_up(histories: Vec<SharedHistory>, from: &[Since], age_us: u64) -> CaughtUp {
    let through: Vec<u64> = histories.iter().map(|history| history.seq).collect();
    let mut reason = None;
    for (history, since) in histories.iter().zip(from) {
        let Since::After(after) = *since else {
            continue;
        };
        let oldest_kept = history.now_us.saturating_sub(age_us);
        let lost = after < history.epoch
            || history.trimmed > after
            || history.entries.iter().any(|e| e.at_us < oldest_kept);
        if lost {
            reason = Some("id older than the history");
        } else if after > history.seq {
            reason = reason.or(Some("unknown id"));
        }
    }
    if let Some(reason) = reason {
        return CaughtUp::Reset { reason, through };
    }
    let mut start = Vec::with_capacity(from.len());
    let mut events: Vec<(u64, usize, u64, Bytes)> = Vec::new();
    for ((index, history), since) in histories.into_iter().enumerate().zip(from) {
        let oldest_kept = history.now_us.saturating_sub(age_us);
        let wanted: Vec<SharedEvent> = match *since {
            Since::Now => Vec::new(),
            Since::After(after) => {
                let missed = history.entries.into_iter();
                missed.filter(|entry| entry.id > after).collect()
            }
            Since::Last(count) => {
                let kept = history.entries.into_iter();
                let mut kept: Vec<SharedEvent> =
                    kept.filter(|entry| entry.at_us >= oldest_kept).collect();
                kept.drain(..kept.len().saturating_sub(count));
                kept
            }
        };
        // Ids are consecutive: a rewound stream starts right before its first event.
        start.push(match (*since, wanted.first()) {
            (Since::After(after), _) => after,
            (Since::Last(_), Some(first)) => first.id - 1,
            _ => history.seq,
        });
        let wanted = wanted.into_iter();
        events.extend(wanted.map(|entry| (entry.at_us, index, entry.id, entry.encoded)));
    }
    // Each group numbers its own events: across groups, the engine's clock orders them.
    events.sort_by_key(|&(at_us, index, id, _)| (at_us, index, id));
    let events = events
        .into_iter()
        .map(|(_, index, id, encoded)| (index, id, encoded))
        .collect();
    CaughtUp::Replay {
        start,
        events,
        through,
    }
}

/// What an engine's shared history gives a client the local history does not cover.
pub(crate) enum CaughtUp {
    /// Where the stream starts, the missed events in the order their groups received them, and
    /// where each group stands after them.
    Replay {
        /// Per group, the id the stream starts from: the client's, or where the group stood for
        /// one the client had no id of.
        start: Vec<u64>,
        /// Each event: its group's index in the stream, its id, and its encoding without the id
        /// line.
        events: Vec<(usize, u64, Bytes)>,
        /// Per group: every event up to this id is in `events` or came before the client's id;
        /// the live stream skips them.
        through: Vec<u64>,
    },
    /// Some missed events are no longer kept; the stream goes on from `through`.
    Reset {
        /// Why, as the `stream-reset` event says it.
        reason: &'static str,
        /// Per group, where the stream goes on from.
        through: Vec<u64>,
    },
}

impl CaughtUp {
    /// Nothing to catch up: each group goes on after the id the client had (or from the
    /// start of its sequence, where it had none).
    pub(crate) fn nothing(from: Vec<Since>) -> Self {
        let id = |since| match since {
            Since::After(id) => id,
            Since::Now | Since::Last(_) => 0,
        };
        let through: Vec<u64> = from.into_iter().map(id).collect();
        CaughtUp::Replay {
            start: through.clone(),
            events: Vec::new(),
            through,
        }
    }
}

/// An engine's answer to a catch-up, on its way.
pub(crate) type CatchUp = Pin<Box<dyn Future<Output = Result<CaughtUp, BrokerError>> + Send>>;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{cursor::Cursor, event::id_text};

    fn groups(names: &[&str]) -> Vec<GroupName> {
        names.iter().map(|n| GroupName::new(*n).unwrap()).collect()
    }

    fn resume(id: &str, names: &[&str]) -> Result<Option<Vec<u64>>, &'static str> {
        LastEventId::new(id.to_owned()).resume(&groups(names), 1024)
    }

    #[test]
    fn one_group_takes_plain_ids() {
        assert_eq!(resume("17", &["yo"]), Ok(Some(vec![17])));
        assert_eq!(resume("yo:17", &["yo"]), Ok(Some(vec![17])));
        assert_eq!(
            LastEventId::default().resume(&groups(&["yo"]), 64),
            Ok(None)
        );
    }

    #[test]
    fn several_groups_take_their_positions_in_any_order() {
        assert_eq!(
            resume("yo:40,yo.bob:17", &["yo.bob", "yo"]),
            Ok(Some(vec![17, 40]))
        );
        assert_eq!(
            resume("yo.bob:17,yo:40,extra:1", &["yo"]),
            Ok(Some(vec![40]))
        );
    }

    #[test]
    fn ids_that_do_not_fit_the_stream_are_refused_with_a_reason() {
        let cases = [
            ("17", &["a", "b"][..], "id of another stream"),
            ("a:1", &["a", "b"], "id of another stream"),
            ("a:1,a:2", &["a"], "not an id"),
            ("a:1,,b:2", &["a", "b"], "not an id"),
            ("a:-1", &["a"], "not an id"),
            ("a:+1", &["a"], "not an id"),
            ("a b:1", &["a"], "not an id"),
            ("a:99999999999999999999", &["a"], "not an id"),
            ("yo", &["yo"], "not an id"),
            ("", &["yo"], "not an id"),
        ];
        for (id, names, why) in cases {
            let got = if id.is_empty() {
                LastEventId(Some(Bytes::new())).resume(&groups(names), 64)
            } else {
                resume(id, names)
            };
            assert_eq!(got, Err(why), "{id:?}");
        }
        let long = LastEventId::new("1".repeat(65));
        assert_eq!(long.resume(&groups(&["yo"]), 64), Err("id too long"));
        let binary = LastEventId::new(&b"\xff\xfe"[..]);
        assert_eq!(binary.resume(&groups(&["yo"]), 64), Err("not an id"));
    }

    fn local(last: u64, replayable_after: u64) -> LocalHistory {
        LocalHistory {
            last,
            replayable_after,
            complete: true,
            rewound_after: None,
        }
    }

    #[test]
    fn a_reconnect_replays_locally_what_the_history_holds_else_resets() {
        let groups = [local(20, 10), local(50, 40)];
        let plan = |resume| match super::plan(resume, 0, &groups, false) {
            Plan::Live => "live".to_owned(),
            Plan::From(ids) => format!("from {ids:?}"),
            Plan::Reset(why) => why.to_owned(),
            Plan::CatchUp(_) => "catch up".to_owned(),
        };
        assert_eq!(plan(Ok(None)), "live");
        assert_eq!(plan(Ok(Some(vec![10, 50]))), "from [10, 50]");
        assert_eq!(plan(Ok(Some(vec![9, 45]))), "id older than the history");
        assert_eq!(plan(Ok(Some(vec![21, 45]))), "unknown id");
        assert_eq!(plan(Ok(Some(vec![21, 39]))), "id older than the history");
        assert_eq!(plan(Err("not an id")), "not an id");
    }

    /// An engine's shared history may hold what the local one lost, or was never given.
    #[test]
    fn with_a_shared_history_what_is_not_here_is_caught_up() {
        let mut groups = [local(20, 10), local(0, 0)];
        groups[1].complete = false;
        let now = [Since::Now, Since::Now];
        assert!(matches!(plan(Ok(None), 0, &groups, true), Plan::CatchUp(from) if from == now));
        let from = |ids: Vec<u64>| plan(Ok(Some(ids)), 0, &groups[..1], true);
        assert!(matches!(from(vec![5]), Plan::CatchUp(from) if from == [Since::After(5)]));
        assert!(matches!(from(vec![15]), Plan::From(ids) if ids == [15]));
    }

    /// A rewound stream starts after what each local history says, when all of them can;
    /// else the engine's history gives each group's last events. An id wins over a rewind.
    #[test]
    fn a_rewind_replays_the_last_events_from_where_they_are() {
        let mut groups = [local(20, 10), local(50, 40)];
        groups[0].rewound_after = Some(19);
        let last = [Since::Last(1), Since::Last(1)];
        assert!(matches!(plan(Ok(None), 1, &groups, true), Plan::CatchUp(from) if from == last));
        groups[1].rewound_after = Some(49);
        assert!(matches!(plan(Ok(None), 1, &groups, true), Plan::From(ids) if ids == [19, 49]));
        let resumed = plan(Ok(Some(vec![15, 45])), 1, &groups, true);
        assert!(matches!(resumed, Plan::From(ids) if ids == [15, 45]));
    }

    fn history(trimmed: u64, entries: Vec<SharedEvent>) -> SharedHistory {
        SharedHistory {
            seq: 120,
            epoch: 100,
            now_us: 10_000,
            trimmed,
            entries,
        }
    }

    fn event(id: u64, at_us: u64) -> SharedEvent {
        let encoded = Bytes::from(format!("data: {id}\n"));
        SharedEvent { id, at_us, encoded }
    }

    /// Replayed events as (group index, id) pairs, or the reset's reason.
    type Replayed = Result<Vec<(usize, u64)>, &'static str>;

    /// What a catch-up replays, and `through`.
    fn replayed(caught_up: CaughtUp) -> (Replayed, Vec<u64>) {
        match caught_up {
            CaughtUp::Replay {
                events, through, ..
            } => (
                Ok(events.into_iter().map(|(i, id, _)| (i, id)).collect()),
                through,
            ),
            CaughtUp::Reset { reason, through } => (Err(reason), through),
        }
    }

    #[test]
    fn missed_events_of_several_groups_come_in_id_order() {
        let a = history(101, vec![event(111, 9_000), event(115, 9_500)]);
        // Another group numbers its events its own way: published between a's two.
        let b = SharedHistory {
            seq: 7,
            epoch: 1,
            ..history(0, vec![event(7, 9_100)])
        };
        let from = [Since::After(110), Since::After(6)];
        let (events, through) = replayed(caught_up(vec![a, b], &from, 5_000));
        assert_eq!(events.unwrap(), [(0, 111), (1, 7), (0, 115)]);
        assert_eq!(through, [120, 7]);
    }

    #[test]
    fn what_the_engine_no_longer_holds_is_a_reset() {
        let trimmed = || history(105, vec![event(111, 9_000)]);
        let aged = || history(0, vec![event(111, 4_000)]);
        for (after, history, why) in [
            (121, trimmed(), "unknown id"),
            (99, trimmed(), "id older than the history"),
            (104, trimmed(), "id older than the history"),
            (110, aged(), "id older than the history"),
        ] {
            let from = [Since::After(after)];
            let (events, through) = replayed(caught_up(vec![history], &from, 5_000));
            assert_eq!(events, Err(why), "{after}");
            assert_eq!(through, [120]);
        }
        // Right at the trimmed id, nothing is missing.
        let (events, _) = replayed(caught_up(vec![trimmed()], &[Since::After(105)], 5_000));
        assert_eq!(events.unwrap(), [(0, 111)]);
        // A group the client needs nothing of only says where it stands.
        let (events, through) = replayed(caught_up(vec![aged()], &[Since::Now], 5_000));
        assert_eq!((events.unwrap(), through), (vec![], vec![120]));
    }

    /// A rewind takes each group's last events still kept, never a reset, and starts right
    /// before the first of them.
    #[test]
    fn a_rewind_gets_the_last_events_still_kept() {
        let kept = || {
            history(
                105,
                vec![event(106, 4_000), event(107, 9_000), event(108, 9_500)],
            )
        };
        let rewound = |count| match caught_up(vec![kept()], &[Since::Last(count)], 5_000) {
            CaughtUp::Replay { start, events, .. } => (
                start,
                events.iter().map(|(_, id, _)| *id).collect::<Vec<_>>(),
            ),
            CaughtUp::Reset { reason, .. } => panic!("{reason}"),
        };
        assert_eq!(rewound(1), (vec![107], vec![108]));
        assert_eq!(rewound(2), (vec![106], vec![107, 108]));
        // 106 is past the age: of what is kept, two events.
        assert_eq!(rewound(3), (vec![106], vec![107, 108]));
        let empty = history(120, vec![]);
        let CaughtUp::Replay { start, events, .. } =
            caught_up(vec![empty], &[Since::Last(2)], 5_000)
        else {
            panic!("a reset")
        };
        assert_eq!((start, events.len()), (vec![120], 0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// What a stream sends, a reconnect reads back exactly.
        #[test]
        fn sent_ids_read_back(
            names in prop::collection::hash_set("[a-zA-Z0-9._-]{1,20}", 1..5),
            seed in any::<u64>(),
        ) {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let groups = groups(&names);
            let positions: Vec<u64> = (0..groups.len() as u64).map(|i| seed.wrapping_mul(i + 1)).collect();
            let cursors: Vec<Cursor> = positions.iter().copied().map(Cursor::at).collect();
            let id = id_text(&groups, &cursors);
            prop_assert!(!id.contains(['\r', '\n', '\0']));
            let back = LastEventId::new(id).resume(&groups, 4096);
            prop_assert_eq!(back, Ok(Some(positions)));
        }

        /// Anything else is a reason, never a panic.
        #[test]
        fn any_bytes_are_an_id_or_a_reason(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let groups = groups(&["yo", "yo.bob"]);
            match LastEventId::new(raw).resume(&groups, 150) {
                Ok(Some(positions)) => prop_assert_eq!(positions.len(), 2),
                Ok(None) => {}
                Err(why) => prop_assert!(!why.is_empty()),
            }
        }
    }
}
