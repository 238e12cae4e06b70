//! Presence, join and leave events and closing streams across processes: a hub of the test's
//! own and a server process (`examples/redis_node.rs`), as two processes of one deployment,
//! sharing one real `redis-server`, or a Redis Cluster of three (where presence keys live on
//! their group's node and closes travel by a sharded channel).

use std::time::Duration;

use sse::{Config, Hub};
use sse_tests::{
    nodes::Node,
    presence_app,
    redis_servers::{RedisCluster, RedisServer},
    request, serve, within, Client,
};

/// How long presence entries outlive their process, here.
const TTL: Duration = Duration::from_secs(2);

/// What the processes share.
enum Redis {
    One(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    fn url(&self) -> String {
        match self {
            Redis::One(server) => server.url(),
            Redis::Cluster(cluster) => cluster.url(),
        }
    }

    /// A hub of the test's own on this Redis, with join and leave events, serving
    /// [`presence_app`]; its address.
    async fn hub(&self) -> (Hub, String) {
        let config = Config::default()
            .broker(&self.url())
            .unwrap()
            .presence_events(true)
            .presence_ttl(TTL);
        let hub = Hub::connect(config).unwrap();
        let addr = serve(presence_app(&hub)).await;
        (hub, format!("http://{addr}"))
    }

    /// How many connections the processes have open to each node.
    fn connections_per_node(&self) -> Vec<usize> {
        match self {
            Redis::One(server) => vec![server.other_connections()],
            Redis::Cluster(cluster) => cluster
                .nodes
                .iter()
                .map(|node| node.other_connections())
                .collect(),
        }
    }

    /// How many processes listen to `group`'s events.
    fn listeners(&self, group: &str) -> u64 {
        match self {
            Redis::One(server) => server.listeners(group),
            Redis::Cluster(cluster) => cluster.nodes[cluster.node_of(group)].listeners(group),
        }
    }

    /// A stream of `group` from `base`, once its process listens to the group in Redis.
    async fn watch(&self, base: &str, group: &str) -> Client {
        let before = self.listeners(group);
        let client = Client::open(&format!("{base}/{group}"), &[]).await;
        sse_tests::eventually("the watcher's process listens", || {
            self.listeners(group) > before
        })
        .await;
        client
    }

    /// A `redis_node` process on this Redis, and its base URL for streams (`/{group}/as/{user}`
    /// is `/events/{group}/as/{user}` there).
    async fn node(&self) -> (String, Node) {
        let ttl = TTL.as_millis().to_string();
        let exe = env!("CARGO_BIN_EXE_redis_node");
        let node = Node::start(exe, &self.url(), &[("PRESENCE_TTL_MS", &ttl)]).await;
        (node.url("/events"), node)
    }
}

/// Who is in `group`, as `user:streams`, as `hub` reads it from Redis.
async fn present(hub: &Hub, group: &str) -> Vec<String> {
    let present = within(hub.presence(group)).await.unwrap();
    present
        .iter()
        .map(|p| format!("{}:{}", p.user, p.streams))
        .collect()
}

async fn presence_becomes(hub: &Hub, group: &str, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + sse_tests::PATIENCE;
    loop {
        let mut now = present(hub, group).await;
        now.sort();
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {group} stayed {now:?}, never {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event of `watcher` as `event user`.
async fn next_change(watcher: &mut Client) -> String {
    let event = watcher.next().await.expect("the watcher's stream goes on");
    let user = event.data.split('"').nth(3).unwrap_or_default().to_owned();
    format!("{} {user}", event.event)
}

#[tokio::test]
async fn presence_and_join_and_leave_span_two_processes() {
    presence_and_join_and_leave(Redis::One(RedisServer::start().await)).await;
}

#[tokio::test]
async fn presence_and_join_and_leave_span_two_processes_on_a_cluster() {
    presence_and_join_and_leave(Redis::Cluster(RedisCluster::start(3).await)).await;
}

async fn presence_and_join_and_leave(redis: Redis) {
    let (hub, here) = redis.hub().await;
    let (there, _node) = redis.node().await;
    let mut watcher = redis.watch(&here, "room").await;

    let alice_there = Client::open(&format!("{there}/room/as/alice"), &[]).await;
    assert_eq!(next_change(&mut watcher).await, "presence-join alice");
    let alice_here = Client::open(&format!("{here}/room/alice"), &[]).await;
    let bob_there = Client::open(&format!("{there}/room/as/bob"), &[]).await;
    assert_eq!(next_change(&mut watcher).await, "presence-join bob");
    presence_becomes(&hub, "room", &["alice:2", "bob:1"]).await;

    // Alice's tab in the other process closes; she still has one here: no leave.
    drop(alice_there);
    presence_becomes(&hub, "room", &["alice:1", "bob:1"]).await;
    drop(alice_here);
    assert_eq!(next_change(&mut watcher).await, "presence-leave alice");
    drop(bob_there);
    assert_eq!(next_change(&mut watcher).await, "presence-leave bob");
    presence_becomes(&hub, "room", &[]).await;
}

#[tokio::test]
async fn close_user_closes_the_user_s_streams_in_every_process() {
    close_user_everywhere(Redis::One(RedisServer::start().await)).await;
}

#[tokio::test]
async fn close_user_closes_the_user_s_streams_in_every_process_of_a_cluster() {
    close_user_everywhere(Redis::Cluster(RedisCluster::start(3).await)).await;
}

async fn close_user_everywhere(redis: Redis) {
    let (hub, here) = redis.hub().await;
    let (there, _node) = redis.node().await;
    let mut alice_there = Client::open(&format!("{there}/room/as/alice"), &[]).await;
    let mut alice_here = Client::open(&format!("{here}/room/alice"), &[]).await;
    let mut bob = Client::open(&format!("{there}/room/as/bob"), &[]).await;
    presence_becomes(&hub, "room", &["alice:2", "bob:1"]).await;

    assert_eq!(
        within(hub.close_user("alice")).await.unwrap(),
        1,
        "one here"
    );
    for alice in [&mut alice_there, &mut alice_here] {
        // Before it, her streams saw alice and bob arrive.
        let mut last = String::new();
        while let Some(event) = alice.next().await {
            last = event.event;
        }
        assert_eq!(last, sse::STREAM_CLOSED, "the stream's last event");
    }
    presence_becomes(&hub, "room", &["bob:1"]).await;
    // Bob's stream goes on: he sees alice leave, and what comes next (after arrivals).
    let published = hub.publish_async("room", Some("yo"), "still here");
    within(published).await.unwrap();
    let expected = ["yo still here", r#"presence-leave {"user":"alice"}"#].map(String::from);
    let mut seen = Vec::new();
    while !expected.iter().all(|event| seen.contains(event)) {
        let event = bob.next().await.expect("bob's stream goes on");
        seen.push(format!("{} {}", event.event, event.data));
        assert!(seen.len() <= 4, "bob saw {seen:?}");
    }

    // Publishing, listening, presence and closes share two connections per process on each
    // node: one for commands, one to hear events and closes.
    for (node, connections) in redis.connections_per_node().into_iter().enumerate() {
        assert_eq!(connections, 2 * 2, "two processes on node {node}");
    }

    // Her browser comes back to the other process: refused there too, with 204.
    let url = format!("{there}/room/as/alice");
    let back = request(&url, &[("last-event-id", sse::CLOSED_ID)]).await;
    assert_eq!(back.status(), 204);
    let away = request(&url, &[("last-event-id", "12345")]).await;
    assert_eq!(away.status(), 204, "a reconnection within the close memory");
    assert_eq!(
        request(&url, &[]).await.status(),
        200,
        "a page loaded afresh"
    );
}

#[tokio::test]
async fn a_killed_process_s_users_vanish_and_leave_within_the_presence_ttl() {
    let redis = Redis::One(RedisServer::start().await);
    let (hub, here) = redis.hub().await;
    let (there, node) = redis.node().await;
    let mut watcher = redis.watch(&here, "room").await;
    let _carol = Client::open(&format!("{there}/room/as/carol"), &[]).await;
    assert_eq!(next_change(&mut watcher).await, "presence-join carol");
    let _dave = Client::open(&format!("{here}/room/dave"), &[]).await;
    assert_eq!(next_change(&mut watcher).await, "presence-join dave");
    presence_becomes(&hub, "room", &["carol:1", "dave:1"]).await;

    // Killed: it says nothing to Redis. Its entries lapse after the TTL, and this process's
    // heartbeat sweeps them and announces that carol left.
    node.kill().await;
    presence_becomes(&hub, "room", &["dave:1"]).await;
    assert_eq!(next_change(&mut watcher).await, "presence-leave carol");
}
