//! The Postgres engine and the outbox, on a real PostgreSQL of the test's own: groups, ids,
//! history, presence and closes across processes (hubs of their own, each with its own
//! connections, and server processes), events published inside an app's transactions, the
//! relay into other engines, and Postgres restarted and frozen under them.

use std::time::{Duration, Instant};

use sse_tests::{
    nodes::{ids, Node},
    postgres_server::PostgresServer,
    serve_hub, serve_with_axum, within, Client,
};

/// Two hubs on `postgres`, as two processes would have.
fn two_hubs(postgres: &PostgresServer) -> (sse::Hub, sse::Hub) {
    (
        postgres.hub(sse::Config::default()),
        postgres.hub(sse::Config::default()),
    )
}

/// A client of `hub`'s stream of `group`, served by `sse::serve` (or `axum::serve`), once the
/// hub listens to the group: `publisher` publishes until the stream hears it.
async fn listening(hub: &sse::Hub, publisher: &sse::Hub, group: &str, axum: bool) -> Client {
    let addr = match axum {
        false => serve_hub(hub, group).await,
        true => serve_with_axum(sse_tests::hub_app(hub, group)).await,
    };
    let mut client = Client::open(&format!("http://{addr}/"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher
            .publish_async(group, Some("ready"), "?")
            .await
            .unwrap();
        let heard = tokio::time::timeout(Duration::from_millis(200), client.next()).await;
        if let Ok(Some(event)) = heard {
            assert_eq!(event.event, "ready");
            // Drains the other readiness events, if several were heard.
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "the stream never heard the publisher"
        );
    }
}

/// A Postgres of the test's own, a publishing hub, a client of `group` served by another hub
/// (returned with it) that hears the publisher, and a pool for transactions.
async fn listening_across(group: &str) -> (PostgresServer, [sse::Hub; 2], Client, sqlx::PgPool) {
    let postgres = PostgresServer::start().await;
    let (publisher, subscriber) = two_hubs(&postgres);
    let client = listening(&subscriber, &publisher, group, false).await;
    let pool = postgres.pool().await;
    (postgres, [publisher, subscriber], client, pool)
}

/// The events of `client` up to and including the one with data `last`, readiness left out.
async fn until(client: &mut Client, last: &str) -> Vec<sse_tests::Event> {
    let mut events = Vec::new();
    loop {
        let event = client.next().await.expect("the stream goes on");
        let done = event.data == last;
        if event.event != "ready" {
            events.push(event);
        }
        if done {
            return events;
        }
    }
}

fn consecutive(ids: &[u64]) -> bool {
    ids.windows(2).all(|pair| pair[1] == pair[0] + 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn events_published_in_one_process_reach_streams_in_another_in_order_on_both_servers() {
    let postgres = PostgresServer::start().await;
    let (publisher, subscriber) = two_hubs(&postgres);
    for axum in [false, true] {
        let group = if axum { "ticks.axum" } else { "ticks.sse" };
        let mut client = listening(&subscriber, &publisher, group, axum).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| tokio::spawn(publisher.publish_async(group, Some("tick"), i)))
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let last = publisher.publish(group, Some("tick"), "last").unwrap();
        let events = until(&mut client, "last").await;
        assert_eq!(events.len(), 51);
        let ids = ids(&events);
        assert!(consecutive(&ids), "{ids:?}");
        assert_eq!(*ids.last().unwrap(), last.get());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_publishes_if_and_only_if_it_commits_in_commit_order() {
    let (_postgres, [publisher, _subscriber], mut client, pool) = listening_across("orders").await;
    sqlx::query("CREATE TABLE orders (id integer PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();

    // Rolled back, and failed after its publish: nothing.
    let mut rolled_back = pool.begin().await.unwrap();
    sse::postgres::Outbox::new(&publisher)
        .publish(&mut rolled_back, "orders", Some("order"), "rolled back")
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    let mut failing = pool.begin().await.unwrap();
    sse::postgres::Outbox::new(&publisher)
        .publish(&mut failing, "orders", Some("order"), "failed")
        .await
        .unwrap();
    let duplicate = "INSERT INTO orders VALUES (1), (1)";
    assert!(sqlx::query(duplicate).execute(&mut *failing).await.is_err());
    drop(failing); // rolled back by its connection

    // The first transaction holds the group until it ends: the second one, started later,
    // publishes after it commits, and gets the next id.
    let mut first = pool.begin().await.unwrap();
    let first_id = sse::postgres::Outbox::new(&publisher)
        .publish(&mut first, "orders", Some("order"), "first")
        .await
        .unwrap();
    let second = {
        let (pool, publisher) = (pool.clone(), publisher.clone());
        tokio::spawn(async move {
            let mut second = pool.begin().await.unwrap();
            let id = sse::postgres::Outbox::new(&publisher)
                .publish(&mut second, "orders", Some("order"), "second")
                .await
                .unwrap();
            second.commit().await.unwrap();
            id
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second waits for the first");
    sqlx::query("INSERT INTO orders VALUES (17)")
        .execute(&mut *first)
        .await
        .unwrap();
    first.commit().await.unwrap();
    let second_id = within(second).await.unwrap();
    assert_eq!(second_id.get(), first_id.get() + 1);

    let events = until(&mut client, "second").await;
    let seen: Vec<(u64, &str)> = events
        .iter()
        .map(|e| (e.id.parse().unwrap(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(first_id.get(), "first"), (second_id.get(), "second")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_s_batch_arrives_whole_in_order_if_and_only_if_it_commits() {
    let (_postgres, [publisher, _subscriber], mut client, pool) = listening_across("lines").await;
    let outbox = sse::postgres::Outbox::new(&publisher);
    let mut rolled_back = pool.begin().await.unwrap();
    let gone = [(None, "gone 1"), (None, "gone 2")];
    outbox
        .publish_all(&mut rolled_back, "lines", gone)
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    // An invalid event name refuses the whole batch: nothing of it is written.
    let mut tx = pool.begin().await.unwrap();
    let refused = [(None, "fine"), (Some("bad\nname"), "refused")];
    assert!(outbox.publish_all(&mut tx, "lines", refused).await.is_err());
    let lines: Vec<(Option<&str>, String)> =
        (0..5).map(|i| (Some("line"), format!("l{i}"))).collect();
    let ids = outbox.publish_all(&mut tx, "lines", lines).await.unwrap();
    tx.commit().await.unwrap();
    let events = until(&mut client, "l4").await;
    let seen: Vec<(u64, &str, &str)> = events
        .iter()
        .map(|e| (e.id.parse().unwrap(), e.event.as_str(), e.data.as_str()))
        .collect();
    let expected: Vec<(u64, &str, String)> = (0..5)
        .map(|i| (ids[i].get(), "line", format!("l{i}")))
        .collect();
    let expected: Vec<(u64, &str, &str)> = expected
        .iter()
        .map(|(id, event, data)| (*id, *event, data.as_str()))
        .collect();
    assert_eq!(seen, expected);
    let ids: Vec<u64> = ids.iter().map(|id| id.get()).collect();
    assert!(consecutive(&ids), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_and_transaction_publishes_to_one_group_arrive_once_in_id_order() {
    // The engine's batches are notified; transactions' events are not, and are read from the
    // table: a notification that arrives before the events under it is read with them.
    let (_postgres, [publisher, _subscriber], mut client, pool) = listening_across("mixed").await;
    let mut expected = Vec::new();
    for i in 0..30 {
        let data = format!("e{i}");
        let id = match i % 3 {
            0 => publisher.publish_async("mixed", None, &data).await.unwrap(),
            _ => {
                let mut tx = pool.begin().await.unwrap();
                let outbox = sse::postgres::Outbox::new(&publisher);
                let id = outbox.publish(&mut tx, "mixed", None, &data).await.unwrap();
                tx.commit().await.unwrap();
                id
            }
        };
        expected.push((id.get(), data));
    }
    let events = until(&mut client, "e29").await;
    let seen: Vec<(u64, String)> = events
        .iter()
        .map(|e| (e.id.parse().unwrap(), e.data.clone()))
        .collect();
    assert_eq!(seen, expected);
    let ids: Vec<u64> = seen.iter().map(|&(id, _)| id).collect();
    assert!(consecutive(&ids), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnect_to_another_process_replays_what_it_missed_and_large_events_arrive() {
    let postgres = PostgresServer::start().await;
    let (publisher, first) = two_hubs(&postgres);
    let other = postgres.hub(sse::Config::default());
    let mut client = listening(&first, &publisher, "feed", false).await;
    publisher.publish("feed", None, "a").unwrap();
    let seen = until(&mut client, "a").await;
    drop(client);

    // Too large for a notification (8,000 bytes): announced by its id, read from the table.
    let large = "x".repeat(20_000);
    for data in ["b", large.as_str(), "c"] {
        publisher.publish("feed", None, data).unwrap();
    }
    let addr = serve_hub(&other, "feed").await;
    let last = &seen.last().unwrap().id;
    let mut back = Client::open(&format!("http://{addr}/"), &[("last-event-id", last)]).await;
    let missed = until(&mut back, "c").await;
    let data: Vec<usize> = missed.iter().map(|e| e.data.len()).collect();
    assert_eq!(data, [1, 20_000, 1]);
    assert!(consecutive(&ids(&missed)));

    // Live, too: the large one reaches a stream that listens.
    let mut live = listening(&first, &publisher, "feed.live", false).await;
    publisher.publish("feed.live", None, &large).unwrap();
    publisher.publish("feed.live", None, "end").unwrap();
    let heard = until(&mut live, "end").await;
    assert_eq!(heard[0].data.len(), 20_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_publishes_once_across_processes_and_in_transactions() {
    let postgres = PostgresServer::start().await;
    let (first, second) = two_hubs(&postgres);
    let id = first
        .idempotent("k1")
        .publish("jobs", None, "done")
        .unwrap();
    let again = second
        .idempotent("k1")
        .publish_async("jobs", None, "done")
        .await;
    assert_eq!(again.unwrap(), id);
    let pool = postgres.pool().await;
    let mut tx = pool.begin().await.unwrap();
    let in_tx = sse::postgres::Outbox::new(&first)
        .idempotent("k1")
        .publish(&mut tx, "jobs", None, "done")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(in_tx, id);
    let next = second.publish("jobs", None, "next").unwrap();
    assert_eq!(next.get(), id.get() + 1, "the repeats published nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_keeps_its_history_bound_give_or_take_a_sixteenth() {
    let postgres = PostgresServer::start().await;
    let config = sse::Config::default().history(32, Duration::from_secs(3600));
    let hub = postgres.hub(config);
    let pool = postgres.pool().await;
    let kept = || async {
        let (first, last): (i64, i64) =
            sqlx::query_as("SELECT min(first), max(last) FROM sse_events WHERE grp = 'bounded'")
                .fetch_one(&pool)
                .await
                .unwrap();
        last - first + 1
    };
    // Each publish alone, in the engine and in transactions: a row each, trimmed every 2 ids.
    for i in 0..50 {
        hub.publish("bounded", None, i).unwrap();
        let mut tx = pool.begin().await.unwrap();
        sse::postgres::Outbox::new(&hub)
            .publish(&mut tx, "bounded", None, i)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if i >= 16 {
            let kept = kept().await;
            assert!((32..=34).contains(&kept), "{kept} ids kept");
        }
    }
    // A history of nothing keeps nothing.
    let none = postgres.hub(sse::Config::default().history(0, Duration::from_secs(3600)));
    none.publish("bounded", None, "gone").unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sse_events WHERE grp = 'bounded'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn presence_and_closes_span_processes() {
    let postgres = PostgresServer::start().await;
    let (here, there) = two_hubs(&postgres);
    let app = sse_tests::presence_app(&there);
    let addr = sse_tests::serve(app).await;
    let mut alice = Client::open(&format!("http://{addr}/room/alice"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let present = here.presence("room").await.unwrap();
        if present.iter().any(|p| p.user == "alice") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice never present: {present:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    within(here.close_user("alice")).await.unwrap();
    let mut ended = false;
    while let Some(event) = alice.next().await {
        if event.event == sse::STREAM_CLOSED {
            ended = true;
        }
    }
    assert!(ended, "alice's stream in the other process was closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_carries_committed_events_into_a_memory_hub_exactly_once() {
    let postgres = PostgresServer::start().await;
    let pool = postgres.pool().await;
    sse::postgres::migrate(&mut pool.acquire().await.unwrap())
        .await
        .unwrap();
    let hub = sse::Hub::new(sse::Config::default());
    let addr = serve_hub(&hub, "relayed").await;
    let mut client = Client::open(&format!("http://{addr}/"), &[]).await;
    let publish = |data: String| {
        let (pool, hub) = (pool.clone(), hub.clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            sse::postgres::Outbox::new(&hub)
                .publish(&mut tx, "relayed", None, data)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    let active = sse::postgres::Relay::start(hub.clone(), pool.clone());
    for i in 0..20 {
        publish(format!("a{i}")).await;
    }
    let first = until(&mut client, "a19").await;
    // A standby, then the active one stops: the standby takes over, and repeats nothing.
    let standby = sse::postgres::Relay::start(hub.clone(), pool.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    active.stop();
    for i in 0..20 {
        publish(format!("b{i}")).await;
    }
    let second = until(&mut client, "b19").await;
    standby.stop();
    let data: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|e| e.data.clone())
        .collect();
    let expected: Vec<String> = (0..20)
        .map(|i| format!("a{i}"))
        .chain((0..20).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(data, expected);
}

/// POSTs one event to the publish endpoint at `addr`: its status.
async fn post_event(addr: std::net::SocketAddr, data: &str) -> u16 {
    let body = serde_json::json!({ "group": "faults", "data": data }).to_string();
    let request = sse_tests::http_client()
        .post(format!("http://{addr}/publish"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body);
    within(request.send()).await.unwrap().status().as_u16()
}

const TOKEN: &str = "a-publish-token-for-the-faults-test";

/// Under two processes (a server process whose stream listens, and this one publishing, also
/// through its publish endpoint): Postgres killed and restarted, then frozen and thawed.
#[tokio::test(flavor = "multi_thread")]
async fn publishes_fail_fast_while_postgres_is_down_or_frozen_and_streams_resume() {
    let mut postgres = PostgresServer::start().await;
    let publisher = postgres.hub(sse::Config::default());
    let endpoint = sse::PublishEndpoint::new(TOKEN)
        .unwrap()
        .hub(publisher.clone());
    let app = axum::Router::new().route("/publish", endpoint.into_method_router());
    let endpoint = serve_with_axum(app).await;
    let node = Node::start(env!("CARGO_BIN_EXE_redis_node"), &postgres.url(), &[]).await;
    let mut client = node.open("faults", None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.publish("faults", Some("ready"), "?").unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never heard the publisher"
        );
    }
    publisher.publish("faults", None, "before").unwrap();
    assert_eq!(post_event(endpoint, "before, by HTTP").await, 200);

    postgres.kill().await;
    let started = Instant::now();
    let error = publisher
        .publish("faults", None, "while down")
        .expect_err("Postgres is down");
    assert!(error.to_string().contains("Postgres"), "{error}");
    assert_eq!(post_event(endpoint, "while down, by HTTP").await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    postgres.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.publish("faults", None, "back").is_err() {
        assert!(Instant::now() < deadline, "publishing never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    postgres.signal("STOP");
    let started = Instant::now();
    let frozen = publisher.publish("faults", None, "while frozen");
    assert!(frozen.is_err(), "a frozen Postgres answers nothing");
    assert_eq!(post_event(endpoint, "while frozen, by HTTP").await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    postgres.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.publish("faults", None, "thawed").is_err() {
        assert!(Instant::now() < deadline, "publishing never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.publish("faults", None, "end").unwrap();

    let events = until(&mut client, "end").await;
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    // Everything committed arrives once, in id order; nothing refused arrives.
    assert_eq!(&data[..2], ["before", "before, by HTTP"]);
    assert!(
        data.contains(&"back") && data.contains(&"thawed"),
        "{data:?}"
    );
    assert!(!data.iter().any(|d| d.starts_with("while")), "{data:?}");
    let ids = ids(&events);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let mut unique = data.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), data.len(), "{data:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_processes_share_groups_through_postgres() {
    let postgres = PostgresServer::start().await;
    let exe = env!("CARGO_BIN_EXE_redis_node");
    let (a, b) = (
        Node::start(exe, &postgres.url(), &[]).await,
        Node::start(exe, &postgres.url(), &[]).await,
    );
    let mut on_b = b.open("yo", None).await;
    // Until b listens: a's publishes before that are not promised to b's stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut published = Vec::new();
    let first_seen = loop {
        published.extend(a.publish("yo", 1).await.unwrap());
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(200), on_b.next()).await
        {
            break event;
        }
        assert!(Instant::now() < deadline, "b never heard a");
    };
    let more = a.publish("yo", 10).await.unwrap();
    let last = *more.last().unwrap();
    let mut seen = vec![first_seen];
    while ids(&seen).last() != Some(&last) {
        seen.push(on_b.next().await.expect("b's stream goes on"));
    }
    let seen = ids(&seen);
    assert!(consecutive(&seen), "{seen:?}");
    assert!(published.contains(&seen[0]));
}
