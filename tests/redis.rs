//! Groups across processes: a real `redis-server` on a free loopback port, several server
//! processes (`examples/redis_node.rs`) and a publisher process (`examples/publish.rs`), as a
//! deployment behind a load balancer would run them.

use std::time::{Duration, Instant};

use sse_tests::{
    eventually, free_port, http_client,
    nodes::{ids, seen, Node},
    raw_get, read_until,
    redis_servers::RedisServer,
    within, Client,
};
use tokio::process::Command;

/// Serves `hub`'s stream of `group` in this process; returns its URL.
async fn stream_url(hub: &sse::Hub, group: &'static str) -> String {
    let hub = hub.clone();
    let app = axum::Router::new().route(
        &format!("/events/{group}"),
        axum::routing::get(move |last: sse::LastEventId| async move {
            hub.subscribe([sse::GroupName::new(group).unwrap()], &last)
        }),
    );
    format!("http://{}/events/{group}", sse_tests::serve(app).await)
}

/// A server process (`redis_node`) on `redis`.
async fn node(redis: &RedisServer) -> Node {
    node_with(redis, &[]).await
}

/// A node with extra environment variables (`HISTORY_MS`, ...).
async fn node_with(redis: &RedisServer, env: &[(&str, &str)]) -> Node {
    Node::start(env!("CARGO_BIN_EXE_redis_node"), &redis.url(), env).await
}

/// Runs the `publish` example: the ids it printed, or its error message.
async fn publish_from_worker(
    broker_url: &str,
    group: &str,
    data: &[String],
) -> Result<Vec<u64>, String> {
    let output = within(
        Command::new(env!("CARGO_BIN_EXE_publish"))
            .env("SSE_BROKER_URL", broker_url)
            .args([group, "tick"])
            .args(data)
            .output(),
    )
    .await
    .unwrap();
    match output.status.success() {
        true => Ok(String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|id| id.parse().unwrap())
            .collect()),
        false => Err(String::from_utf8(output.stderr).unwrap()),
    }
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_process_gets_every_event_in_the_same_order() {
    let redis = RedisServer::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.open("order", None).await);
        clients.push(node.open("order", None).await);
    }
    redis.wait_listeners("order", 3).await;

    // Four publishers at once: a worker process and each server process.
    const EACH: usize = 100;
    let started = Instant::now();
    let worker_data = numbered("worker", EACH);
    let url = redis.url();
    let worker = publish_from_worker(&url, "order", &worker_data);
    let (worker, a, b, c) = tokio::join!(
        worker,
        nodes[0].publish("order", EACH as u32),
        nodes[1].publish("order", EACH as u32),
        nodes[2].publish("order", EACH as u32),
    );
    let mut published: Vec<u64> = [worker, a, b, c]
        .into_iter()
        .flat_map(|ids| ids.unwrap())
        .collect();
    published.sort_unstable();

    let mut received = Vec::new();
    for client in &mut clients {
        received.push(client.take(4 * EACH).await);
    }
    let elapsed = started.elapsed();
    for events in &received {
        assert_eq!(seen(events), seen(&received[0]), "same events, same order");
    }
    assert_eq!(
        ids(&received[0]),
        published,
        "every event once, in id order"
    );
    assert!(received[0].iter().all(|e| e.event == "tick"));
    let data: std::collections::HashSet<&str> =
        received[0].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data.len(), 4 * EACH);
    assert!(worker_data.iter().all(|d| data.contains(d.as_str())));
    assert_eq!(
        redis.listeners("order"),
        3,
        "one SUBSCRIBE per process, not per client"
    );
    eprintln!(
        "{} events from 4 publishers to 6 streams on 3 processes in {elapsed:?}: {:.0} events/s",
        4 * EACH,
        (4 * EACH) as f64 / elapsed.as_secs_f64()
    );

    // Round trip: published in one process, read by a client of another.
    let mut round_trips = Vec::new();
    for _ in 0..20 {
        let sent = Instant::now();
        let id = nodes[0].publish("order", 1).await.unwrap()[0];
        let event = clients[2].next().await.unwrap();
        round_trips.push(sent.elapsed());
        assert_eq!(event.id, id.to_string());
    }
    round_trips.sort_unstable();
    eprintln!(
        "publish over HTTP in one process to a client of another: median {:?}",
        round_trips[round_trips.len() / 2]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnecting_to_another_process_replays_exactly_what_was_missed() {
    let redis = RedisServer::start().await;
    let [a, b, c] = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut on_a = a.open("replay", None).await;
    // B holds the group already, with a client of its own; C never heard of it.
    let mut on_b = b.open("replay", None).await;
    redis.wait_listeners("replay", 2).await;

    let before = publish_from_worker(&redis.url(), "replay", &numbered("before", 5))
        .await
        .unwrap();
    let first = on_a.take(5).await;
    assert_eq!(ids(&first), before);
    let last_seen = first[4].id.clone();
    drop(on_a);

    let missed = publish_from_worker(&redis.url(), "replay", &numbered("missed", 7))
        .await
        .unwrap();
    assert_eq!(ids(&on_b.take(12).await)[5..], missed);

    // Everything published after the client's last id, so far.
    let mut since_last_seen = missed.clone();
    // C never heard of the group: it reads what was missed from Redis. B holds the group and
    // has it all in its own ring: to show that it answers from there, Redis forgets first.
    for (node, redis_forgets) in [(&c, false), (&b, true)] {
        if redis_forgets {
            redis.command(redis::cmd("DEL").arg("sse:{replay}:history"));
        }
        let mut back = node.open("replay", Some(&last_seen)).await;
        let replayed = back.take(since_last_seen.len()).await;
        assert_eq!(ids(&replayed), since_last_seen, "exactly the missed events");
        assert_eq!(
            replayed[..7]
                .iter()
                .map(|e| e.data.as_str())
                .collect::<Vec<_>>(),
            numbered("missed", 7)
        );
        // Then live events, none repeated.
        let live = b.publish("replay", 1).await.unwrap();
        assert_eq!(ids(&back.take(1).await), live);
        since_last_seen.extend(live);
    }

    // An id older than anything Redis keeps: the documented reset, then live events.
    let mut too_old = c.open("replay", Some("1")).await;
    let reset = too_old.take(1).await;
    assert_eq!(reset[0].event, sse::STREAM_RESET);
    let live = a.publish("replay", 1).await.unwrap();
    assert_eq!(ids(&too_old.take(1).await), live);
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_to_another_process_while_events_flow_loses_and_repeats_nothing() {
    let redis = RedisServer::start().await;
    let [a, b] = [node(&redis).await, node(&redis).await];
    let mut on_a = a.open("flow", None).await;
    redis.wait_listeners("flow", 1).await;

    // A worker publishes 20 batches of 10 while the client moves from A to B.
    let url = redis.url();
    let worker = tokio::spawn(async move {
        let mut ids = Vec::new();
        for batch in 0..20 {
            let data = numbered(&format!("batch{batch}"), 10);
            ids.extend(publish_from_worker(&url, "flow", &data).await.unwrap());
        }
        ids
    });
    let mut seen = ids(&on_a.take(35).await);
    drop(on_a);
    let last = seen.last().unwrap().to_string();
    let mut on_b = b.open("flow", Some(&last)).await;
    seen.extend(ids(&on_b.take(200 - 35).await));
    let published = within(worker).await.unwrap();
    assert_eq!(
        seen, published,
        "every event once, in order, across the move"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_outlive_a_redis_restart_and_recover() {
    let mut redis = RedisServer::start().await;
    let [a, b] = [node(&redis).await, node(&redis).await];
    let addr_a = a.addr.parse().unwrap();
    let mut raw_on_a = raw_get(addr_a, "/events/outage", "").await;
    let mut on_b = b.open("outage", None).await;
    redis.wait_listeners("outage", 2).await;
    let first = publish_from_worker(&redis.url(), "outage", &numbered("first", 1))
        .await
        .unwrap();
    read_until(&mut raw_on_a, "first-0").await;
    assert_eq!(ids(&on_b.take(1).await), first);

    redis.stop().await;
    // Publishing fails, and says why.
    let refused = publish_from_worker(&redis.url(), "outage", &numbered("lost", 1))
        .await
        .unwrap_err();
    assert!(
        refused.contains("cannot reach Redis at redis://127.0.0.1:"),
        "{refused}"
    );
    let refused = a.publish("outage", 1).await.unwrap_err();
    assert!(refused.contains("Redis"), "{refused}");
    // Open streams stay open: keep-alives go on.
    let tail = read_until(&mut raw_on_a, ":\n\n:\n\n:\n\n").await;
    assert!(!tail.contains("lost-0"));

    redis.restart().await;
    redis.wait_listeners("outage", 2).await;
    let after = publish_from_worker(&redis.url(), "outage", &numbered("after", 3))
        .await
        .unwrap();
    read_until(&mut raw_on_a, "after-2").await;
    let recovered = on_b.take(3).await;
    assert_eq!(
        ids(&recovered),
        after,
        "open streams get what follows recovery"
    );

    // A client that comes back with its last id, to the other process, gets what it missed.
    drop(on_b);
    let missed = b.publish("outage", 2).await.unwrap();
    let mut back = a.open("outage", Some(&recovered[2].id)).await;
    assert_eq!(ids(&back.take(2).await), missed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_stops_listening_to_a_group_it_freed() {
    let redis = RedisServer::start().await;
    let node = node_with(&redis, &[("HISTORY_MS", "300")]).await;
    let client = node.open("fleeting", None).await;
    redis.wait_listeners("fleeting", 1).await;
    drop(client);
    // The group is freed once idle for its history age; asking for the count frees it.
    let deadline = Instant::now() + sse_tests::PATIENCE;
    loop {
        let response = within(http_client().get(node.url("/groups")).send()).await;
        let held: usize = response.unwrap().text().await.unwrap().parse().unwrap();
        if held == 0 && redis.listeners("fleeting") == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} groups held, still listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_errors_name_the_broker() {
    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let down = publish_from_worker(&closed, "yo", &numbered("x", 1))
        .await
        .unwrap_err();
    // What failed, then why (the Redis error, the message of the publish's source).
    assert!(
        down.contains(&format!(
            "cannot reach Redis at {closed}: Connection refused"
        )),
        "{down}"
    );
    let bad = publish_from_worker("redis://127.0.0.1:port/0", "yo", &numbered("x", 1))
        .await
        .unwrap_err();
    assert!(
        bad.contains("bad broker URL \"redis://127.0.0.1:port/0\""),
        "{bad}"
    );
    let unknown = publish_from_worker("http://127.0.0.1/", "yo", &numbered("x", 1))
        .await
        .unwrap_err();
    assert!(
        unknown.contains("broker \"http://127.0.0.1/\": unknown kind"),
        "{unknown}"
    );

    // A server process refuses to start, and says why.
    let node = within(
        Command::new(env!("CARGO_BIN_EXE_redis_node"))
            .env("SSE_BROKER_URL", &closed)
            .output(),
    )
    .await
    .unwrap();
    let said = String::from_utf8(node.stderr).unwrap();
    assert!(!node.status.success());
    assert!(
        said.contains(&format!(
            "cannot reach Redis at {closed}: Connection refused"
        )),
        "{said}"
    );
}

/// The error says what failed; the Redis error that says why is kept whole, as its source.
#[test]
fn startup_errors_keep_the_redis_error_as_their_source() {
    fn redis_cause(error: &dyn std::error::Error) -> &redis::RedisError {
        let cause = error.source().and_then(|cause| cause.downcast_ref());
        cause.unwrap_or_else(|| panic!("no Redis error under {error:?}"))
    }

    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let config = || sse::Config::default().broker(&closed).unwrap();
    let Err(down) = sse::Hub::connect(config()) else {
        panic!("nothing listens at {closed}")
    };
    assert_eq!(down.to_string(), format!("cannot reach Redis at {closed}"));
    assert!(redis_cause(&down).is_connection_refusal(), "{down:?}");

    // A publish refused by the broker is the broker's error, cause included.
    let refused = sse::Hub::new(config())
        .publish("yo", None, "x")
        .unwrap_err();
    assert!(
        matches!(refused, sse::PublishError::Broker(_)),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        format!("cannot reach Redis at {closed}")
    );
    assert!(redis_cause(&refused).is_connection_refusal(), "{refused:?}");

    let bad = sse::Config::default()
        .broker("redis://127.0.0.1:port/0")
        .unwrap_err();
    assert_eq!(
        bad.to_string(),
        "bad broker URL \"redis://127.0.0.1:port/0\""
    );
    redis_cause(&bad);
    // Not a Redis URL at all: nothing for Redis to say.
    let unknown = sse::Config::default()
        .broker("http://127.0.0.1/")
        .unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "broker \"http://127.0.0.1/\": unknown kind, expected redis://, redis+cluster:// or postgres://"
    );
    assert!(std::error::Error::source(&unknown).is_none());
}

/// Every key of a group lives its time after the group's last event: the first publish sets the
/// expiries, and a publish after the renewal period (a second) sets them again, without the
/// script asking Redis how long they have left.
#[tokio::test(flavor = "multi_thread")]
async fn a_publish_after_the_renewal_period_renews_the_group_s_expiries() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default().history(100, Duration::from_secs(60)));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let keys = ["seq", "epoch", "history"].map(|key| format!("sse:{{kept}}:{key}"));
    let ttls = |connection: &mut redis::Connection| -> Vec<i64> {
        keys.iter()
            .map(|key| redis::cmd("PTTL").arg(key).query(connection).unwrap())
            .collect()
    };
    let week_ms = 7 * 24 * 3600 * 1000;
    hub.publish("kept", None, "first").unwrap();
    let set = ttls(&mut connection);
    assert!(set[0] > week_ms && set[1] > week_ms, "{set:?}");
    assert!((59_000..=61_000).contains(&set[2]), "{set:?}");

    // As if the group had been quiet for most of its time: shorter expiries, then a publish
    // after the renewal period.
    for key in &keys {
        let _: () = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(10_000)
            .query(&mut connection)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    hub.publish("kept", None, "later").unwrap();
    let renewed = ttls(&mut connection);
    assert!(renewed[0] > week_ms && renewed[1] > week_ms, "{renewed:?}");
    assert!((59_000..=61_000).contains(&renewed[2]), "{renewed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_of_its_own_publishes_through_redis_with_consecutive_ids() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default().history(100, Duration::from_secs(60)));
    const EVENTS: u64 = 1_000;
    let started = Instant::now();
    let ids: Vec<u64> = (0..EVENTS)
        .map(|i| hub.publish("solo", Some("tick"), i).unwrap().get())
        .collect();
    let elapsed = started.elapsed();
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let kept: u64 = redis::cmd("XLEN")
        .arg("sse:{solo}:history")
        .query(&mut connection)
        .unwrap();
    // Trimmed by whole nodes of the stream (100 entries at most each) every 16 events or so,
    // reading skips the rest.
    assert!(
        (100..216).contains(&kept),
        "the history is trimmed to its bound, roughly: {kept}"
    );

    // Resuming from this hub's own endpoint: within the kept history, exactly what followed;
    // before it, the documented reset.
    let url = stream_url(&hub, "solo").await;
    let recent = ids[949].to_string();
    let mut resumed = Client::open(&url, &[("last-event-id", &recent)]).await;
    let replayed = resumed.take(50).await;
    assert_eq!(self::ids(&replayed), ids[950..]);
    assert_eq!(replayed[49].data, "999");
    assert_eq!(hub.stats().replayed, 50, "replays from Redis are counted");
    // Right before the bound: the event after it is one too many to keep.
    let trimmed = ids[898].to_string();
    let mut reset = Client::open(&url, &[("last-event-id", &trimmed)]).await;
    let first = reset.take(1).await;
    assert_eq!(first[0].event, sse::STREAM_RESET);
    assert!(
        first[0].data.contains("older than the history"),
        "{}",
        first[0].data
    );
    eprintln!(
        "publish through Redis from one thread: {:?} per event, {:.0} events/s",
        elapsed / EVENTS as u32,
        EVENTS as f64 / elapsed.as_secs_f64()
    );
}

/// `publish!` is synchronous: inside a single-threaded runtime it must neither panic (no
/// `block_on` within a runtime) nor need the runtime to make progress.
#[tokio::test(flavor = "current_thread")]
async fn publishing_inside_a_current_thread_runtime_works() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default());
    let first = hub.publish("inside", Some("tick"), "one").unwrap();
    let second = hub.publish("inside", Some("tick"), "two").unwrap();
    assert_eq!(second.get(), first.get() + 1);
}

/// The ids of `ticks`, which must be consecutive: each given once, none skipped.
fn consecutive(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    assert!(
        ids.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "consecutive ids: {ids:?}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_async_from_many_tasks_delivers_every_event_with_consecutive_ids() {
    let redis = RedisServer::start().await;
    const TASKS: usize = 64;
    const EACH: usize = 10;
    let history = sse::Config::default().history(TASKS * EACH, Duration::from_secs(60));
    let hub = redis.hub(history.retry(None));
    let mut stream = redis.subscribe(&hub, "crowd").await;
    let receiving = tokio::spawn(async move { ticks(&mut stream, TASKS * EACH).await });

    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..EACH {
                    let data = format!("{task}-{i}");
                    let id = hub.publish_async("crowd", Some("tick"), data).await;
                    ids.push(id.unwrap().get());
                }
                ids
            })
        })
        .collect();
    let mut published = Vec::new();
    for task in tasks {
        published.extend(within(task).await.unwrap());
    }
    let published = consecutive(published);

    let received = within(receiving).await.unwrap();
    let received_ids: Vec<u64> = received.iter().map(|(_, id)| id.parse().unwrap()).collect();
    assert_eq!(received_ids, published, "every event once, in id order");
    let data: std::collections::HashSet<&str> = received.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(data.len(), TASKS * EACH);
}

/// `publish!` from many threads at once: each waits for its own answer, all share the
/// connection. The only test here that uses the process-wide hub.
#[tokio::test(flavor = "multi_thread")]
async fn many_threads_publishing_at_once_all_succeed_with_distinct_consecutive_ids() {
    let redis = RedisServer::start().await;
    sse::init(sse::Config::default().broker(&redis.url()).unwrap()).unwrap();
    const THREADS: usize = 16;
    const EACH: usize = 20;
    let published = within(tokio::task::spawn_blocking(|| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                std::thread::spawn(move || {
                    let publish = |i| sse::publish!("threads", "tick", "{thread}-{i}");
                    (0..EACH)
                        .map(|i| publish(i).unwrap().get())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids = threads.into_iter().map(|thread| thread.join().unwrap());
        ids.flatten().collect::<Vec<u64>>()
    }))
    .await
    .unwrap();
    assert_eq!(consecutive(published).len(), THREADS * EACH);
}

/// `publish_async` suspends: while Redis does not answer, the one thread of a current-thread
/// runtime goes on with its other tasks, and a stream on that runtime gets the event after.
#[tokio::test(flavor = "current_thread")]
async fn publishing_async_inside_a_current_thread_runtime_leaves_it_free() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default().retry(None));
    let mut stream = redis.subscribe(&hub, "patient").await;

    redis.signal("STOP");
    let publishing = tokio::spawn(hub.publish_async("patient", Some("tick"), "waited"));
    // Had the publish blocked the thread, this sleep would end after it, not before.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!publishing.is_finished(), "Redis is stopped: no answer yet");
    redis.signal("CONT");
    let id = within(publishing).await.unwrap().unwrap();
    let got = ticks(&mut stream, 1).await;
    assert_eq!(got, [("waited".to_owned(), id.to_string())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_back_after_its_quiet_groups_history_expired_gets_a_reset() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default().history(100, Duration::from_millis(300)));
    let seen = hub.publish("quiet", Some("tick"), "seen").unwrap();
    hub.publish("quiet", Some("tick"), "missed").unwrap();
    // Redis drops the history of a group that stayed quiet longer than its age.
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    eventually("history expired", || {
        !redis::cmd("EXISTS")
            .arg("sse:{quiet}:history")
            .query::<bool>(&mut connection)
            .unwrap()
    })
    .await;

    let url = stream_url(&hub, "quiet").await;
    let mut back = Client::open(&url, &[("last-event-id", &seen.to_string())]).await;
    let first = back.take(1).await;
    assert_eq!(first[0].event, sse::STREAM_RESET);
    assert!(
        first[0].data.contains("older than the history"),
        "{}",
        first[0].data
    );
    // Its new id is current: coming back with it later resumes without a reset.
    let resumed_from = first[0].id.clone();
    drop(back);
    let later = hub.publish("quiet", Some("tick"), "later").unwrap();
    let mut again = Client::open(&url, &[("last-event-id", &resumed_from)]).await;
    let next = again.take(1).await;
    assert_eq!(
        (next[0].data.as_str(), next[0].id.clone()),
        ("later", later.to_string())
    );
}

/// The `tick` events in what a subscription yields until it has `n`: (data, id).
async fn ticks(subscription: &mut sse::Subscription, n: usize) -> Vec<(String, String)> {
    use futures_util::StreamExt;
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = within(subscription.next()).await.expect("an open stream");
        let chunk = String::from_utf8(chunk.to_vec()).unwrap();
        for event in chunk
            .split("\n\n")
            .filter(|e| e.starts_with("event: tick\n"))
        {
            let field = |name: &str| {
                let line = event.lines().find(|l| l.starts_with(name)).unwrap();
                line[name.len()..].to_owned()
            };
            got.push((field("data: "), field("id: ")));
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_two_groups_resumes_in_another_process_from_its_composite_id() {
    let redis = RedisServer::start().await;
    let config = || sse::Config::default().retry(None);
    let [first, holder, stranger] = [
        redis.hub(config()),
        redis.hub(config()),
        redis.hub(config()),
    ];
    let groups = ["pair-a", "pair-b"].map(|g| sse::GroupName::new(g).unwrap());
    let none = sse::LastEventId::default();
    let mut on_first = first.subscribe(groups.clone(), &none).unwrap();
    // Another process holds the groups already; a third never heard of them.
    let mut on_holder = holder.subscribe(groups.clone(), &none).unwrap();
    redis.wait_listeners("pair-a", 2).await;
    redis.wait_listeners("pair-b", 2).await;

    let publish = |group: &str, data: &str| first.publish(group, Some("tick"), data).unwrap().get();
    let a1 = publish("pair-a", "a1");
    let b1 = publish("pair-b", "b1");
    let seen = ticks(&mut on_first, 2).await;
    assert_eq!(
        seen[1],
        ("b1".to_owned(), format!("pair-a:{a1},pair-b:{b1}"))
    );
    let last_seen = on_first.last_event_id();
    drop(on_first);
    let a2 = publish("pair-a", "a2");
    let b2 = publish("pair-b", "b2");
    let a3 = publish("pair-a", "a3");
    assert_eq!(ticks(&mut on_holder, 5).await.len(), 5);

    let mut backs = Vec::new();
    for hub in [&stranger, &holder] {
        // The groups in the other order: the id names each of them.
        let reversed = [groups[1].clone(), groups[0].clone()];
        let mut back = hub.subscribe(reversed, &last_seen).unwrap();
        let missed = ticks(&mut back, 3).await;
        assert_eq!(
            missed,
            [
                ("a2".to_owned(), format!("pair-b:{b1},pair-a:{a2}")),
                ("b2".to_owned(), format!("pair-b:{b2},pair-a:{a2}")),
                ("a3".to_owned(), format!("pair-b:{b2},pair-a:{a3}")),
            ]
        );
        backs.push(back);
    }
    // Then live events, none repeated.
    let b3 = holder.publish("pair-b", Some("tick"), "b3").unwrap().get();
    for mut back in backs {
        let live = ticks(&mut back, 1).await;
        assert_eq!(
            live,
            [("b3".to_owned(), format!("pair-b:{b3},pair-a:{a3}"))]
        );
    }
    // When one group's history is gone (expired: its last id is kept), the stream says so.
    redis.command(redis::cmd("DEL").arg("sse:{pair-a}:history"));
    let fresh = redis.hub(config());
    let mut reset = fresh.subscribe(groups.clone(), &last_seen).unwrap();
    use futures_util::StreamExt;
    let start = String::from_utf8(within(reset.next()).await.unwrap().to_vec()).unwrap();
    assert!(
        start.starts_with(
            "event: stream-reset\ndata: {\"reason\":\"id older than the history\"}\nid: pair-a:"
        ),
        "{start}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_stops_answering_is_noticed_and_recovered_from() {
    let redis = RedisServer::start().await;
    let hub = redis.hub(sse::Config::default().retry(None));
    let mut stream = redis.subscribe(&hub, "frozen").await;
    let listening_before = redis.pubsub_connections();

    redis.signal("STOP");
    let publisher = hub.clone();
    // Once the first found it down, the others fail with its error instead of each waiting out
    // the 2 s reply timeout: 20 of them would take 40 s, past `within`'s patience (20 s).
    let (first, rest) = within(tokio::task::spawn_blocking(move || {
        let tick = || publisher.publish("frozen", Some("tick"), "while frozen");
        (tick(), (0..20).map(|_| tick()).collect::<Vec<_>>())
    }))
    .await
    .unwrap();
    let first = first.unwrap_err();
    assert!(matches!(first, sse::PublishError::Broker(_)), "{first}");
    assert!(first.to_string().contains(&redis.url()), "{first}");
    assert!(rest.iter().all(Result::is_err));

    // Longer than the listening side's PING bound (1 s apart, 1 s to answer).
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.signal("CONT");

    // Publishing comes back by itself, and the open stream gets what is published then.
    let mut published = None;
    let deadline = Instant::now() + sse_tests::PATIENCE;
    while published.is_none() {
        assert!(Instant::now() < deadline, "publishing did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
        published = hub.publish("frozen", Some("tick"), "after").ok();
    }
    let got = ticks(&mut stream, 1).await;
    assert_eq!(got[0].0, "after");
    // The listening side noticed the freeze by itself and made a new connection.
    let listening_after = redis.pubsub_connections();
    assert_eq!(listening_after.len(), 1);
    assert_ne!(listening_after, listening_before);
}

/// A hub's engine stops with the hub's last handle: its thread and every connection it opened
/// to Redis go, with nothing left holding the hub (no cycle between the hub and its engine).
#[tokio::test]
async fn a_dropped_hub_closes_its_connections_to_redis() {
    let redis = RedisServer::start().await;
    let config = sse::Config::default().broker(&redis.url()).unwrap();
    let hub = sse::Hub::connect(config).unwrap();
    let stream = redis.subscribe(&hub, "yo").await;
    within(hub.publish_async("yo", None, "hi")).await.unwrap();
    within(hub.close_user("nobody")).await.unwrap();
    assert_eq!(redis.other_connections(), 2, "commands and pub/sub");

    drop(stream);
    drop(hub);
    eventually("the dropped hub's connections close", || {
        redis.other_connections() == 0
    })
    .await;
}

/// Two processes publishing with one idempotency key (a retry landing on another instance): one
/// event, one id, in every process; after the window the key is free again.
#[tokio::test]
async fn a_key_publishes_once_across_processes() {
    let redis = RedisServer::start().await;
    let window = Duration::from_millis(500);
    let config = || {
        let config = sse::Config::default().broker(&redis.url()).unwrap();
        config.idempotency_window(window).retry(None)
    };
    let (first, second) = (
        sse::Hub::connect(config()).unwrap(),
        sse::Hub::connect(config()).unwrap(),
    );
    let mut stream = redis.subscribe(&second, "orders").await;
    futures_util::StreamExt::next(&mut stream).await; // stream-start

    let key = "order-17:shipped";
    let id = within(
        first
            .idempotent(key)
            .publish_async("orders", Some("shipped"), "17"),
    )
    .await;
    let again = within(
        second
            .idempotent(key)
            .publish_async("orders", Some("shipped"), "17"),
    )
    .await;
    let blocking = first
        .idempotent(key)
        .publish("orders", Some("shipped"), "17");
    let id = id.unwrap();
    assert_eq!((again.unwrap(), blocking.unwrap()), (id, id));
    let next = within(first.publish_async("orders", None, "next"))
        .await
        .unwrap();
    let chunk = within(futures_util::StreamExt::next(&mut stream))
        .await
        .unwrap();
    let mut text = String::from_utf8(chunk.to_vec()).unwrap();
    if !text.contains("next") {
        let more = within(futures_util::StreamExt::next(&mut stream))
            .await
            .unwrap();
        text.push_str(std::str::from_utf8(&more).unwrap());
    }
    assert_eq!(
        text,
        format!("event: shipped\ndata: 17\nid: {id}\n\ndata: next\nid: {next}\n\n")
    );

    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let later = within(second.idempotent(key).publish_async("orders", None, "17")).await;
    assert!(later.unwrap() > next, "the window is over: published again");
}

/// Keyed events travel with their group's other events, in one script call: a key repeated
/// within it publishes once, and the events around it get the ids in between, live and replayed.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_repeated_among_other_events_publishes_once() {
    let redis = RedisServer::start().await;
    let (publisher, listener) = (
        redis.hub(sse::Config::default()),
        redis.hub(sse::Config::default()),
    );
    let mut stream = redis.subscribe(&listener, "mixed").await;
    let tick = Some("tick");
    let (first, between, again, after) = tokio::join!(
        publisher
            .idempotent("k")
            .publish_async("mixed", tick, "once"),
        publisher.publish_async("mixed", tick, "between"),
        publisher
            .idempotent("k")
            .publish_async("mixed", tick, "once"),
        publisher.publish_async("mixed", tick, "after"),
    );
    let (first, between, after) = (
        first.unwrap().get(),
        between.unwrap().get(),
        after.unwrap().get(),
    );
    assert_eq!(
        again.unwrap().get(),
        first,
        "the repeat answers the id its key got"
    );
    let expected: Vec<(String, String)> = [("once", first), ("between", between), ("after", after)]
        .into_iter()
        .map(|(data, id)| (data.to_owned(), id.to_string()))
        .collect();
    let mut sorted = expected;
    sorted.sort_by_key(|(_, id)| id.parse::<u64>().unwrap());
    let ids: Vec<u64> = sorted.iter().map(|(_, id)| id.parse().unwrap()).collect();
    assert_eq!(
        ids,
        [ids[0], ids[0] + 1, ids[0] + 2],
        "consecutive ids, none for the repeat"
    );
    assert_eq!(ticks(&mut stream, 3).await, sorted, "live");

    // From Redis's history: a process that never held the group.
    let late = redis.hub(sse::Config::default());
    let mut back = late
        .subscribe(
            [sse::GroupName::new("mixed").unwrap()],
            &sse::LastEventId::new((ids[0] - 1).to_string()),
        )
        .unwrap();
    assert_eq!(ticks(&mut back, 3).await, sorted, "replayed");
}

/// What `stream` yields until it has yielded `len` bytes, as text.
async fn read(stream: &mut sse::Subscription, len: usize) -> String {
    let mut text = String::new();
    while text.len() < len {
        let chunk = within(futures_util::StreamExt::next(stream)).await.unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

/// A rewound stream in a process that never held the group gets its last events from Redis;
/// once the group is held, from what the process has plus Redis for what came before.
#[tokio::test]
async fn a_rewound_stream_gets_the_last_events_from_another_process() {
    let redis = RedisServer::start().await;
    let config = || {
        sse::Config::default()
            .broker(&redis.url())
            .unwrap()
            .retry(None)
    };
    let publisher = sse::Hub::connect(config()).unwrap();
    let server = sse::Hub::connect(config()).unwrap();
    let mut ids = Vec::new();
    for price in ["40", "41", "42"] {
        let published = publisher.publish_async("ticker", Some("price"), price);
        ids.push(within(published).await.unwrap());
    }
    let rewound = |count| {
        let ticker = sse::GroupName::new("ticker").unwrap();
        let join = sse::Join::group(ticker).rewind(count);
        server
            .subscribe(join, &sse::LastEventId::default())
            .unwrap()
    };
    let start = |id| format!("event: stream-start\ndata: \nid: {id}\n\n");
    let events = |events: &[(sse::EventId, &str)]| {
        let events = events.iter();
        let events = events.map(|(id, price)| format!("event: price\ndata: {price}\nid: {id}\n\n"));
        events.collect::<String>()
    };

    let mut first = rewound(2);
    let expected = start(ids[0]) + &events(&[(ids[1], "41"), (ids[2], "42")]);
    assert_eq!(read(&mut first, expected.len()).await, expected);

    // Held here now: a new event arrives live, and a second rewound stream gets it with the
    // one before it, which only Redis had.
    redis.wait_listeners("ticker", 1).await;
    let id = within(publisher.publish_async("ticker", Some("price"), "43"))
        .await
        .unwrap();
    let live = events(&[(id, "43")]);
    assert_eq!(read(&mut first, live.len()).await, live);
    let mut second = rewound(2);
    let expected = start(ids[1]) + &events(&[(ids[2], "42"), (id, "43")]);
    assert_eq!(read(&mut second, expected.len()).await, expected);
}
