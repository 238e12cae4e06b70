//! Groups across processes through a Redis Cluster: three masters (`redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`) on free loopback ports, and
//! server processes (`examples/redis_node.rs`) given every node as a seed
//! (`redis+cluster://...`). Groups land on different shards, and a shard that restarts or stops
//! answering affects only its own groups.

use std::time::{Duration, Instant};

use sse_tests::{
    nodes::{ids, seen, Node},
    redis_servers::RedisCluster,
};

async fn node(cluster: &RedisCluster) -> Node {
    Node::start(env!("CARGO_BIN_EXE_redis_node"), &cluster.url(), &[]).await
}

/// Publishes one event to `group` from `node` until it succeeds (the cluster heals); its id.
async fn publish_once_healed(node: &Node, group: &str) -> u64 {
    let deadline = Instant::now() + sse_tests::PATIENCE;
    loop {
        match node.publish(group, 1).await {
            Ok(ids) => return ids[0],
            Err(error) => assert!(Instant::now() < deadline, "never published again: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_on_every_shard_reach_three_processes_in_the_same_order_and_replay_across_them() {
    let cluster = RedisCluster::start(3).await;
    let groups = cluster.group_on_each_node("spread");
    let nodes = [
        node(&cluster).await,
        node(&cluster).await,
        node(&cluster).await,
    ];
    let mut clients = Vec::new();
    for node in &nodes {
        for group in &groups {
            clients.push(node.open(group, None).await);
        }
    }
    for group in &groups {
        cluster.wait_listeners(group, 3).await;
    }

    // Every process publishes to every group at once.
    const EACH: u32 = 30;
    let publishing = nodes
        .iter()
        .flat_map(|node| groups.iter().map(move |group| node.publish(group, EACH)));
    let published = futures_util::future::join_all(publishing).await;
    let mut published_ids = vec![Vec::new(); groups.len()];
    for (i, ids) in published.into_iter().enumerate() {
        published_ids[i % groups.len()].extend(ids.unwrap());
    }

    let mut received = Vec::new();
    for client in &mut clients {
        received.push(client.take(3 * EACH as usize).await);
    }
    // `received` is by process, then by group.
    for (g, published) in published_ids.iter_mut().enumerate() {
        published.sort_unstable();
        let in_first_process = &received[g];
        assert_eq!(
            &ids(in_first_process),
            published,
            "every event once, in id order"
        );
        for process in 1..nodes.len() {
            let elsewhere = &received[process * groups.len() + g];
            assert_eq!(
                seen(elsewhere),
                seen(in_first_process),
                "same events, same order"
            );
        }
        // Each process listens once per group, on its shard only.
        for (n, node) in cluster.nodes.iter().enumerate() {
            let expected = if n == cluster.node_of(&groups[g]) {
                3
            } else {
                0
            };
            assert_eq!(
                node.listeners(&groups[g]),
                expected,
                "{} on node {n}",
                groups[g]
            );
        }
    }

    // Two connections per process on each node, whatever the groups and clients: one for
    // publishing and reading, one for listening (the last one listed is this test's).
    for node in &cluster.nodes {
        let mut connection = node.connection().unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut connection)
            .unwrap();
        assert_eq!(list.lines().count(), 2 * nodes.len() + 1, "{list}");
    }

    // A client of the first process comes back to the third with the id of the 10th event
    // it saw: it gets exactly the rest.
    let seen_first = &received[0];
    let mut back = nodes[2].open(&groups[0], Some(&seen_first[9].id)).await;
    let rest = back.take(seen_first.len() - 10).await;
    assert_eq!(seen(&rest), seen(&seen_first[10..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_shard_fails_only_its_groups_while_down_then_recovers_and_resets_lost_history()
{
    let mut cluster = RedisCluster::start(3).await;
    let kept = &cluster.group_on_each_node("shard")[0];
    // Two groups of the restarted node, in different slots: the node is subscribed to each
    // again on its own (one `SSUBSCRIBE` of both would be refused).
    let lost = cluster.groups_on_node("shard", 1, 2);
    let [a, b] = [node(&cluster).await, node(&cluster).await];
    let mut on_lost = Vec::new();
    for group in &lost {
        on_lost.push(a.open(group, None).await);
        cluster.wait_listeners(group, 1).await;
    }
    let mut on_kept = a.open(kept, None).await;
    cluster.wait_listeners(kept, 1).await;
    let before = a.publish(&lost[0], 2).await.unwrap();
    assert_eq!(ids(&on_lost[0].take(2).await), before);

    cluster.nodes[1].stop().await;
    // Its groups fail, and say why; the other shards' groups go on, open streams stay open.
    let refused = b.publish(&lost[0], 1).await.unwrap_err();
    assert!(refused.contains("Redis"), "{refused}");
    let meanwhile = b.publish(kept, 3).await.unwrap();
    assert_eq!(ids(&on_kept.take(3).await), meanwhile);

    // Back, empty (nothing was saved), with its slots: the open streams get what follows.
    cluster.nodes[1].restart().await;
    cluster.wait_ready().await;
    for (group, stream) in lost.iter().zip(&mut on_lost) {
        let after = publish_once_healed(&b, group).await;
        assert_eq!(ids(&stream.take(1).await), [after], "{group}");
        if group == &lost[0] {
            assert!(after > before[1], "ids go on above the lost ones");
        }
    }

    // A client back with an id from before the restart: its history is gone, and it is told.
    let mut back = b.open(&lost[0], Some(&before[0].to_string())).await;
    let first = back.take(1).await;
    assert_eq!(first[0].event, sse::STREAM_RESET, "{first:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_that_stops_answering_fails_its_groups_fast_and_recovers() {
    let cluster = RedisCluster::start(3).await;
    let groups = cluster.group_on_each_node("freeze");
    let a = node(&cluster).await;
    let (frozen, fine) = (&groups[2], &groups[0]);
    let mut on_frozen = a.open(frozen, None).await;
    let mut on_fine = a.open(fine, None).await;
    cluster.wait_listeners(frozen, 1).await;
    cluster.wait_listeners(fine, 1).await;

    cluster.nodes[2].signal("STOP");
    // The first publish waits for the reply timeout; the next ones fail at once with its
    // error instead of each waiting it out (20 of them would take 40 s, past the patience).
    let refused = a.publish(frozen, 20).await.unwrap_err();
    assert!(refused.contains("Redis"), "{refused}");
    for _ in 0..20 {
        assert!(a.publish(frozen, 1).await.is_err());
    }
    let meanwhile = a.publish(fine, 2).await.unwrap();
    assert_eq!(ids(&on_fine.take(2).await), meanwhile);

    cluster.nodes[2].signal("CONT");
    let after = publish_once_healed(&a, frozen).await;
    assert_eq!(ids(&on_frozen.take(1).await), [after]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_whose_slot_moves_to_another_node_keeps_publishing_listening_and_replaying() {
    let cluster = RedisCluster::start(3).await;
    let group = &cluster.group_on_each_node("moving")[0];
    let [a, b] = [node(&cluster).await, node(&cluster).await];
    let mut on_a = a.open(group, None).await;
    cluster.wait_listeners(group, 1).await;
    let before = b.publish(group, 3).await.unwrap();
    assert_eq!(ids(&on_a.take(3).await), before);

    // Resharding: the slot and its keys move to another node. The publisher is told `MOVED`
    // and follows; the listener is unsubscribed by the old node and subscribes on the new one.
    cluster.move_group(group, 1);
    let after = b.publish(group, 3).await.unwrap();
    cluster.nodes[1].wait_listeners(group, 1).await;
    assert_eq!(
        ids(&on_a.take(3).await),
        after,
        "the open stream follows the slot"
    );
    assert!(after[0] > before[2], "the sequence moved with its keys");

    // The history moved too: a client back with the first id gets everything after it.
    let mut back = b.open(group, Some(&before[0].to_string())).await;
    let replayed = ids(&back.take(5).await);
    assert_eq!(replayed, [&before[1..], &after[..]].concat());
}

/// Idempotency keys live in their group's slot: a key repeated from two processes, to groups on
/// every shard, publishes once per group, in one batch with unkeyed events of the same groups.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_publishes_once_per_group_on_every_shard() {
    let cluster = RedisCluster::start(3).await;
    let groups = cluster.group_on_each_node("keyed");
    let hub = || sse::Hub::connect(sse::Config::default().broker(&cluster.url()).unwrap());
    let (first, second) = (hub().unwrap(), hub().unwrap());
    for group in &groups {
        // At once: the keyed publishes and an unkeyed one share the sender's batches.
        let (a, plain, b) = tokio::join!(
            first.idempotent("k").publish_async(group, None, "once"),
            first.publish_async(group, None, "plain"),
            second.idempotent("k").publish_async(group, None, "once"),
        );
        let (a, plain, b) = (a.unwrap(), plain.unwrap(), b.unwrap());
        assert_eq!(a, b, "{group}");
        assert_ne!(a, plain, "{group}");
    }
}
