//! `Hub::subscribe` without a socket: what a `Subscription` yields, chunk by chunk, for one group
//! and for several, live, resumed and reset, while other threads publish.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use sse::{Config, GroupName, Hub, LastEventId, Subscription};

fn groups(names: &[&str]) -> Vec<GroupName> {
    names.iter().map(|n| GroupName::new(*n).unwrap()).collect()
}

fn open(hub: &Hub, names: &[&str], last: &str) -> Subscription {
    let last = match last {
        "" => LastEventId::default(),
        id => LastEventId::new(id.to_owned()),
    };
    hub.subscribe(groups(names), &last).unwrap()
}

/// The next chunk as text, within a bound; `None` once the subscription ended.
async fn next(subscription: &mut Subscription) -> Option<String> {
    let chunk = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("a chunk in time")?;
    Some(String::from_utf8(chunk.to_vec()).unwrap())
}

fn publish(hub: &Hub, group: &str, data: &str) -> u64 {
    hub.publish(group, Some("e"), data).unwrap().get()
}

#[tokio::test(start_paused = true)]
async fn starts_with_the_retry_hint_and_its_id_then_keeps_alive_when_idle() {
    let hub = Hub::new(Config::default());
    let mut subscription = open(&hub, &["g"], "");
    let start = next(&mut subscription).await.unwrap();
    let id = publish(&hub, "g", "first");
    assert_eq!(
        start,
        format!(
            "retry: 3000\n\nevent: stream-start\ndata: \nid: {}\n\n",
            id - 1
        )
    );
    assert_eq!(
        next(&mut subscription).await.unwrap(),
        format!("event: e\ndata: first\nid: {id}\n\n")
    );
    assert_eq!(next(&mut subscription).await.unwrap(), ":\n\n");
    assert_eq!(next(&mut subscription).await.unwrap(), ":\n\n");
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_comes_a_full_period_after_the_last_event_and_never_between_events() {
    let every = Duration::from_secs(10);
    let hub = Hub::new(Config::default().keep_alive(Some(every)).retry(None));
    let mut subscription = open(&hub, &["g"], "");
    next(&mut subscription).await;
    // An event every 6 s for a minute: the stream is never idle for a period.
    for n in 0..10 {
        tokio::time::advance(Duration::from_secs(6)).await;
        let id = publish(&hub, "g", &n.to_string());
        assert_eq!(
            next(&mut subscription).await.unwrap(),
            format!("event: e\ndata: {n}\nid: {id}\n\n"),
            "no keep-alive while events come every 6 s"
        );
    }
    let last_event = tokio::time::Instant::now();
    assert_eq!(next(&mut subscription).await.unwrap(), ":\n\n");
    assert_eq!(
        last_event.elapsed(),
        every,
        "one period after the last event"
    );
    assert_eq!(next(&mut subscription).await.unwrap(), ":\n\n");
    assert_eq!(
        last_event.elapsed(),
        every * 2,
        "and every period from there"
    );
}

#[tokio::test(start_paused = true)]
async fn a_keep_alive_comes_even_when_first_polled_out_of_budget() {
    let hub = Hub::new(Config::default().retry(None));
    let mut subscription = open(&hub, &["g"], "");
    next(&mut subscription).await;
    // The task's budget spent: the keep-alive timer answers without taking the waker.
    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
    let polled = std::future::poll_fn(|cx| Poll::Ready(subscription.poll_next_unpin(cx))).await;
    assert!(polled.is_pending());
    assert_eq!(next(&mut subscription).await.unwrap(), ":\n\n");
}

#[tokio::test(start_paused = true)]
async fn no_keep_alive_when_turned_off() {
    let hub = Hub::new(Config::default().keep_alive(None).retry(None));
    let mut subscription = open(&hub, &["g"], "");
    next(&mut subscription).await;
    tokio::time::advance(Duration::from_secs(3600)).await;
    let id = publish(&hub, "g", "after an hour");
    assert_eq!(
        next(&mut subscription).await.unwrap(),
        format!("event: e\ndata: after an hour\nid: {id}\n\n")
    );
}

#[tokio::test]
async fn pending_events_come_in_one_chunk_in_order() {
    let hub = Hub::new(Config::default().retry(None));
    let mut subscription = open(&hub, &["g"], "");
    next(&mut subscription).await;
    let a = publish(&hub, "g", "a");
    let b = publish(&hub, "g", "b");
    assert_eq!(
        next(&mut subscription).await.unwrap(),
        format!("event: e\ndata: a\nid: {a}\n\nevent: e\ndata: b\nid: {b}\n\n")
    );
}

#[tokio::test]
async fn falling_behind_ends_it_with_a_comment_and_shutdown_with_a_retry_hint() {
    let hub = Hub::new(Config::default().subscriber_queue(2).retry(None));
    let mut slow = open(&hub, &["g"], "");
    next(&mut slow).await;
    for _ in 0..3 {
        publish(&hub, "g", "x");
    }
    assert_eq!(hub.stats().open_streams, 0, "cut by the publish");
    assert_eq!(hub.stats().dropped, 1);
    assert_eq!(
        next(&mut slow).await.unwrap(),
        ": too far behind, reconnect\n\n"
    );
    assert_eq!(next(&mut slow).await, None);

    let mut open_one = open(&hub, &["g"], "");
    next(&mut open_one).await;
    hub.shutdown();
    assert_eq!(next(&mut open_one).await.unwrap(), "retry: 500\n\n");
    assert_eq!(next(&mut open_one).await, None);
    assert!(hub
        .subscribe(groups(&["g"]), &LastEventId::default())
        .is_err());
}

/// Each publish cuts exactly the subscribers it leaves more than the queue behind, however the
/// others read, and whichever joined last: live, or resuming from further back than anyone.
#[tokio::test]
async fn the_publish_that_overflows_a_subscriber_cuts_it_and_no_earlier_one() {
    let hub = Hub::new(Config::default().subscriber_queue(4).retry(None));
    let mut reading = open(&hub, &["g"], "");
    next(&mut reading).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(publish_and_read(&hub, &mut reading, n).await);
    }
    let mut stalled = open(&hub, &["g"], "");
    // Two events behind the others, which are already 4 behind the next publish.
    let mut resumed = open(&hub, &["g"], &ids[1].to_string());
    next(&mut stalled).await;
    publish_and_read(&hub, &mut reading, 7).await;
    assert_eq!(
        (hub.stats().open_streams, hub.stats().dropped),
        (2, 1),
        "resumed"
    );
    for n in 8..=10 {
        publish_and_read(&hub, &mut reading, n).await;
    }
    // `stalled` is 4 behind: at the bound, not past it.
    assert_eq!((hub.stats().open_streams, hub.stats().dropped), (2, 1));
    publish_and_read(&hub, &mut reading, 11).await;
    assert_eq!(
        (hub.stats().open_streams, hub.stats().dropped),
        (1, 2),
        "stalled"
    );
    for n in 12..=30 {
        publish_and_read(&hub, &mut reading, n).await;
    }
    assert_eq!((hub.stats().open_streams, hub.stats().dropped), (1, 2));
    assert!(next(&mut resumed).await.unwrap().contains("stream-start"));
    assert_eq!(
        next(&mut resumed).await.unwrap(),
        ": too far behind, reconnect\n\n"
    );
}

/// Publishes `n` to "g" and reads it from `reading`; its id.
async fn publish_and_read(hub: &Hub, reading: &mut Subscription, n: usize) -> u64 {
    let id = publish(hub, "g", &n.to_string());
    assert_eq!(events(reading, 1).await[0].0, n.to_string());
    id
}

/// Reads chunks until `events` events came, and returns each event's data and id.
async fn events(subscription: &mut Subscription, events: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while got.len() < events {
        let chunk = next(subscription).await.expect("more events");
        let events = chunk.split("\n\n").filter(|e| e.starts_with("event: e\n"));
        for event in events {
            let field = |name: &str| {
                let line = event.lines().find(|l| l.starts_with(name)).unwrap();
                line[name.len()..].to_owned()
            };
            got.push((field("data: "), field("id: ")));
        }
    }
    got
}

#[tokio::test]
async fn several_groups_merge_in_publish_order_with_their_position_in_each() {
    let hub = Hub::new(Config::default().retry(None));
    let mut both = open(&hub, &["a", "b"], "");
    let start = next(&mut both).await.unwrap();
    let a1 = publish(&hub, "a", "a1");
    let b1 = publish(&hub, "b", "b1");
    publish(&hub, "c", "not for it");
    let a2 = publish(&hub, "a", "a2");
    assert_eq!(
        start,
        format!(
            "event: stream-start\ndata: \nid: a:{},b:{}\n\n",
            a1 - 1,
            b1 - 1
        )
    );
    assert_eq!(
        events(&mut both, 3).await,
        [
            ("a1".into(), format!("a:{a1},b:{}", b1 - 1)),
            ("b1".into(), format!("a:{a1},b:{b1}")),
            ("a2".into(), format!("a:{a2},b:{b1}")),
        ]
    );
    assert_eq!(
        both.last_event_id().as_bytes().unwrap(),
        format!("a:{a2},b:{b1}").as_bytes()
    );
}

#[tokio::test]
async fn a_composite_id_resumes_every_group_exactly_whatever_its_order() {
    let hub = Hub::new(Config::default().retry(None));
    let mut first = open(&hub, &["x", "y", "z"], "");
    next(&mut first).await;
    for (group, data) in [("x", "x1"), ("y", "y1"), ("z", "z1")] {
        publish(&hub, group, data);
    }
    let seen = events(&mut first, 2).await;
    drop(first);
    let (_, resume_at) = &seen[1];
    // Missed: the rest of what was published, in every group.
    publish(&hub, "y", "y2");
    publish(&hub, "x", "x2");
    // The groups in another order: the id names each one.
    let mut again = open(&hub, &["z", "y", "x"], resume_at);
    let start = next(&mut again).await.unwrap();
    assert!(
        start.starts_with("event: stream-start\ndata: \nid: z:"),
        "{start}"
    );
    let data: Vec<String> = events(&mut again, 3)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(data, ["z1", "y2", "x2"]);
    assert_eq!(hub.stats().replayed, 3);
}

/// A group nobody holds keeps nothing, but its ids still rise, and once held it numbers its
/// events above every id it was given before.
#[tokio::test]
async fn a_group_held_later_numbers_above_the_ids_it_got_unheld() {
    let hub = Hub::new(Config::default().retry(None));
    let unheld: Vec<u64> = (0..1_000)
        .map(|i| publish(&hub, "u", &i.to_string()))
        .collect();
    assert!(unheld.windows(2).all(|pair| pair[0] < pair[1]), "rising");
    let mut subscription = open(&hub, &["u"], "");
    let start = next(&mut subscription).await.unwrap();
    let id = publish(&hub, "u", "held");
    assert!(id > unheld[999], "{id} after {}", unheld[999]);
    assert!(start.ends_with(&format!("id: {}\n\n", id - 1)), "{start}");
    assert_eq!(
        events(&mut subscription, 1).await,
        [("held".to_owned(), id.to_string())]
    );
}

#[tokio::test]
async fn ids_that_are_not_this_streams_get_a_reset_with_the_reason() {
    let hub = Hub::new(Config::default().retry(None));
    let a = publish(&hub, "a", "nobody listens");
    let mut held = open(&hub, &["a", "b"], ""); // the groups are held from here on
    next(&mut held).await;
    let cases = [
        (format!("{a}"), "id of another stream"),
        ("a:1".to_owned(), "id of another stream"),
        ("a:1,b:x".to_owned(), "not an id"),
        ("a:1,b:2,a:3".to_owned(), "not an id"),
        ("a:1;b:2".to_owned(), "not an id"),
        (format!("a:{0},b:{0}", u64::MAX), "unknown id"),
        ("a:1,b:1".to_owned(), "id older than the history"),
        ("x".repeat(2_000), "id too long"),
    ];
    for (id, reason) in cases {
        let mut subscription = open(&hub, &["a", "b"], &id);
        let start = next(&mut subscription).await.unwrap();
        assert!(
            start.starts_with(&format!(
                "event: stream-reset\ndata: {{\"reason\":\"{reason}\"}}\nid: a:"
            )),
            "{id:?}: {start}"
        );
        // It goes on live from there.
        let b = publish(&hub, "b", "live");
        let live = next(&mut subscription).await.unwrap();
        assert!(live.ends_with(&format!(",b:{b}\n\n")), "{id:?}: {live}");
        next(&mut held).await;
    }
}

/// Two threads publish round-robin into three groups while one stream of all three reads: each
/// group's events come in order, and so does each thread's (what one thread published to
/// several groups arrives in the order it published it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_are_seen_in_their_order_across_groups() {
    const ROUNDS: usize = 2_000;
    let hub = Hub::new(Config::default().retry(None).subscriber_queue(10 * ROUNDS));
    let names = ["p", "q", "r"];
    let mut reader = open(&hub, &names, "");
    next(&mut reader).await;
    let publishers: Vec<_> = (0..2)
        .map(|thread| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let group = names[(round + thread) % names.len()];
                    hub.publish(group, Some("e"), format_args!("{thread} {round}"))
                        .unwrap();
                }
            })
        })
        .collect();
    let got = events(&mut reader, 2 * ROUNDS).await;
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let mut next_round = [0, 0];
    for (data, _) in &got {
        let (thread, round) = data.split_once(' ').unwrap();
        let (thread, round): (usize, usize) = (thread.parse().unwrap(), round.parse().unwrap());
        assert_eq!(
            round, next_round[thread],
            "thread {thread}'s events in order"
        );
        next_round[thread] += 1;
    }
    assert_eq!(next_round, [ROUNDS, ROUNDS]);
    // And every id is where the stream stood in each group: positions only rise.
    let mut last = vec![0u64; names.len()];
    for (_, id) in &got {
        for (i, part) in id.split(',').enumerate() {
            let position: u64 = part.split_once(':').unwrap().1.parse().unwrap();
            assert!(position >= last[i], "{id}");
            last[i] = position;
        }
    }
}

#[tokio::test]
async fn events_of_every_size_come_back_exactly_across_the_groups_chunks() {
    // Small and large events in turn, past the 64 KiB of a chunk and the 16 KiB above which an
    // event gets a chunk of its own; read one at a time, then many at once (a read of events
    // in a row shares their chunk, and copies where a chunk ends).
    let sizes = [1, 100, 5_000, 16_385, 40, 70_000, 300, 65_536, 2, 20_000, 7];
    let data = |round: usize, n: usize| {
        let fill = char::from(b'a' + ((round * sizes.len() + n) % 26) as u8);
        format!("{round}.{n}:{}", fill.to_string().repeat(sizes[n]))
    };
    let hub = Hub::new(Config::default().retry(None));
    let mut one = open(&hub, &["g"], "");
    let mut two = open(&hub, &["g", "h"], "");
    next(&mut one).await;
    next(&mut two).await;
    for n in 0..sizes.len() {
        publish(&hub, "g", &data(0, n));
        assert_eq!(
            events(&mut one, 1).await[0].0,
            data(0, n),
            "event {n} alone"
        );
    }
    assert_eq!(events(&mut two, sizes.len()).await.len(), sizes.len());
    for round in 1..4 {
        for n in 0..sizes.len() {
            publish(&hub, "g", &data(round, n));
        }
        let expected: Vec<String> = (0..sizes.len()).map(|n| data(round, n)).collect();
        let got = |events: Vec<(String, String)>| {
            events.into_iter().map(|(data, _)| data).collect::<Vec<_>>()
        };
        assert_eq!(
            got(events(&mut one, sizes.len()).await),
            expected,
            "round {round}, one group"
        );
        assert_eq!(
            got(events(&mut two, sizes.len()).await),
            expected,
            "round {round}, two groups"
        );
    }
}

/// Threads retrying one publish at once, with its idempotency key: one event reaches the
/// stream, every thread gets its id; after the window, the key publishes again.
#[tokio::test]
async fn a_key_publishes_once_however_many_threads_retry_it_at_once() {
    let window = Duration::from_millis(300);
    let hub = Hub::new(Config::default().retry(None).idempotency_window(window));
    let mut subscription = open(&hub, &["orders"], "");
    next(&mut subscription).await;
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let retries: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let keyed = hub.idempotent("order-17:shipped");
                    keyed
                        .publish("orders", Some("shipped"), "17")
                        .unwrap()
                        .get()
                })
            })
            .collect();
        retries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let other = publish(&hub, "orders", "next");
    assert_eq!(
        next(&mut subscription).await.unwrap(),
        format!(
            "event: shipped\ndata: 17\nid: {}\n\nevent: e\ndata: next\nid: {other}\n\n",
            ids[0]
        )
    );
    // The same key in another group is another event; in this group, after the window, too.
    let elsewhere = hub
        .idempotent("order-17:shipped")
        .publish("audit", None, "x")
        .unwrap();
    assert_ne!(elsewhere.get(), ids[0]);
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    let later = hub
        .idempotent("order-17:shipped")
        .publish("orders", Some("shipped"), "17");
    assert!(later.unwrap().get() > other);
}

/// A rewound stream without `Last-Event-ID` first gets the last events of each of its groups,
/// as many as the history holds, in the order they were published; with an id it resumes.
#[tokio::test]
async fn a_rewound_stream_starts_with_the_last_events_of_its_groups() {
    let hub = Hub::new(Config::default().retry(None));
    let _held = open(&hub, &["a", "b"], "");
    let a1 = publish(&hub, "a", "a1");
    let b1 = publish(&hub, "b", "b1");
    let a2 = publish(&hub, "a", "a2");
    let rewound = |names: &[&str], events| {
        let join = sse::Join::groups(groups(names)).rewind(events);
        hub.subscribe(join, &LastEventId::default()).unwrap()
    };

    let mut one = rewound(&["a"], 1);
    assert_eq!(
        next(&mut one).await.unwrap(),
        format!("event: stream-start\ndata: \nid: {a1}\n\n")
    );
    assert_eq!(
        next(&mut one).await.unwrap(),
        format!("event: e\ndata: a2\nid: {a2}\n\n")
    );

    // More than the group ever had: all of it, then live.
    let mut all = rewound(&["a"], 10);
    next(&mut all).await;
    let a3 = publish(&hub, "a", "a3");
    let events = next(&mut all).await.unwrap();
    let expected = [(a1, "a1"), (a2, "a2"), (a3, "a3")]
        .map(|(id, data)| format!("event: e\ndata: {data}\nid: {id}\n\n"))
        .concat();
    assert_eq!(events, expected);

    // Two groups, the last of each, in the order they were published.
    let mut both = rewound(&["a", "b"], 1);
    next(&mut both).await;
    let merged = next(&mut both).await.unwrap();
    assert!(
        merged.starts_with(&format!("event: e\ndata: b1\nid: a:{a2},b:{b1}\n\n")),
        "{merged}"
    );
    assert!(
        merged.ends_with(&format!("data: a3\nid: a:{a3},b:{b1}\n\n")),
        "{merged}"
    );

    // With an id, the stream resumes from it; the rewind is for clients that have none.
    let join = sse::Join::group(GroupName::new("a").unwrap()).rewind(1);
    let mut resumed = hub
        .subscribe(join, &LastEventId::new(a1.to_string()))
        .unwrap();
    next(&mut resumed).await;
    assert!(next(&mut resumed)
        .await
        .unwrap()
        .starts_with("event: e\ndata: a2\n"));
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_time_is_up_says_so_at_its_position_and_ends() {
    let (tx, closed) = std::sync::mpsc::channel();
    let hub = Hub::new(
        Config::default()
            .retry(None)
            .on_close(move |_, reason| tx.send(reason).unwrap()),
    );
    let until = std::time::SystemTime::now() + Duration::from_secs(90);
    let join = sse::Join::groups(groups(&["a", "b"]))
        .user("alice")
        .expires_at(until);
    let mut stream = hub.subscribe(join, &LastEventId::default()).unwrap();
    next(&mut stream).await;
    let a = publish(&hub, "a", "before");
    let event = next(&mut stream).await.unwrap();
    let position = stream.last_event_id();
    let position = std::str::from_utf8(position.as_bytes().unwrap())
        .unwrap()
        .to_owned();
    assert!(event.ends_with(&format!("id: {position}\n\n")), "{event}");
    assert!(position.starts_with(&format!("a:{a},b:")), "{position}");

    // Nothing but keep-alives until then, then the close, at the stream's position.
    let mut chunks = Vec::new();
    while let Some(chunk) = next(&mut stream).await {
        chunks.push(chunk);
    }
    let (last, before) = chunks.split_last().unwrap();
    assert!(before.iter().all(|chunk| chunk == ":\n\n"), "{before:?}");
    assert_eq!(
        *last,
        format!("event: stream-closed\ndata: {{\"reason\":\"expired\"}}\nid: {position}\n\n")
    );
    drop(stream);
    let reason = closed.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(reason, sse::CloseReason::Expired);
    // Alice is gone from presence with it.
    assert!(hub.presence("a").await.unwrap().is_empty());
}

/// Counts the wakes of a subscription polled by hand.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// An event that comes alone wakes its streams at once; those that follow it within the batch
/// window wake them once, at the window's end, and come together.
#[test]
fn events_within_the_batch_window_wake_a_stream_once_at_its_end() {
    let hub = Hub::new(
        Config::default()
            .keep_alive(None)
            .retry(None)
            .batch_window(Duration::from_secs(1)),
    );
    let mut subscription = open(&hub, &["g"], "");
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut poll = || match subscription.poll_next_unpin(&mut cx) {
        Poll::Ready(Some(chunk)) => Some(String::from_utf8(chunk.to_vec()).unwrap()),
        Poll::Ready(None) => panic!("the subscription ended"),
        Poll::Pending => None,
    };
    assert!(poll().unwrap().contains("stream-start"));
    assert_eq!(poll(), None);

    let alone = publish(&hub, "g", "alone");
    assert_eq!(wakes.0.load(SeqCst), 1, "woken at once");
    assert_eq!(
        poll().unwrap(),
        format!("event: e\ndata: alone\nid: {alone}\n\n")
    );
    assert_eq!(poll(), None);

    let (a, b) = (publish(&hub, "g", "a"), publish(&hub, "g", "b"));
    assert_eq!(wakes.0.load(SeqCst), 1, "put off to the window's end");
    let woken_by = Instant::now() + Duration::from_secs(20);
    while wakes.0.load(SeqCst) == 1 {
        assert!(Instant::now() < woken_by, "never woken");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        poll().unwrap(),
        format!("event: e\ndata: a\nid: {a}\n\nevent: e\ndata: b\nid: {b}\n\n")
    );
}

/// With no window, every event wakes the stream.
#[test]
fn with_no_batch_window_every_event_wakes_the_stream() {
    let hub = Hub::new(
        Config::default()
            .keep_alive(None)
            .retry(None)
            .batch_window(Duration::ZERO),
    );
    let mut subscription = open(&hub, &["g"], "");
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(subscription.poll_next_unpin(&mut cx).is_ready());
    for n in 1..=3 {
        assert!(subscription.poll_next_unpin(&mut cx).is_pending());
        publish(&hub, "g", "x");
        assert_eq!(wakes.0.load(SeqCst), n);
        assert!(subscription.poll_next_unpin(&mut cx).is_ready());
    }
}
