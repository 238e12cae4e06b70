//! A connection that commands and scripts go over: one multiplexed connection to a single
//! Redis, or a cluster connection of the `redis` crate (one multiplexed connection per node,
//! each command sent to the node of its key's hash slot, MOVED and ASK followed, the slot map
//! refreshed and lost nodes reconnected by the crate), which the listening side uses; and the
//! [`Router`] of the publishing side.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
    ConnectionAddr, ConnectionInfo,
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo},
    Cmd, Pipeline, PushInfo, RedisFuture, Value,
};
use tokio::sync::mpsc;

use super::{Target, COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::{config::RedisNodes, BrokerError};

#[derive(Clone)]
pub(super) enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    /// Asks every node (each master of a cluster) whether it is there.
    pub(super) async fn ping_all(&mut self) -> redis::RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Link::Single(connection) => ping.query_async(connection).await,
            Link::Cluster(connection) => {
                let every_master = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                connection.route_command(ping, every_master).await.map(drop)
            }
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A connection to the cluster of `seeds`. The nodes' pushes (the messages of the sharded
/// channels it subscribed to, and word of a lost node connection) go to `pushes` when given.
pub(super) async fn cluster(
    target: &Target,
    seeds: &[redis::ConnectionInfo],
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> Result<ClusterConnection, BrokerError> {
    let mut builder = ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        .retries(1);
    if let Some(pushes) = pushes {
        // Pushes need RESP3: with RESP2 a connection in pub/sub mode takes no other command.
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    let client = builder.build().map_err(|e| target.unreachable(e))?;
    target.connect_within(client.get_async_connection()).await
}

/// A node of a cluster: host and port.
type Node = (String, u16);

/// The connections of the publishing side, one per node: each request goes to the node of its
/// hash slot (the one Redis, or the master serving the slot in a cluster). In a cluster, the
/// slot map comes from `CLUSTER SLOTS`, read again when a node answers `MOVED` (the slot moved:
/// resharding, a failover). Not the `redis` crate's cluster connection: while one node hung,
/// it held up the commands to the other nodes as well, and a publish must fail or succeed on
/// its own shard only.
pub(super) struct Router {
    target: Target,
    /// A cluster's slot ranges with their masters, sorted; empty until first needed.
    slots: Mutex<Vec<(u16, u16, Node)>>,
    connections: Mutex<HashMap<Node, Connecting>>,
}

/// A connection being made, awaited by every request that needs it meanwhile.
pub(super) type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, BrokerError>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            slots: Mutex::new(Vec::new()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The node serving `slot` and the connection to it, made by the first request that
    /// needs it and shared by the others.
    pub(super) async fn connection(&self, slot: u16) -> Result<(Node, Connecting), BrokerError> {
        let node = match &self.target.nodes {
            RedisNodes::Single(_) => (String::new(), 0),
            RedisNodes::Cluster(_) => match self.node_of(slot) {
                Some(node) => node,
                None => {
                    self.refresh().await?;
                    self.node_of(slot).ok_or_else(|| {
                        BrokerError::new(format!(
                            "no node of the Redis Cluster at {} serves slot {slot}",
                            self.target.shown
                        ))
                    })?
                }
            },
        };
        let connecting = self.connecting(&node);
        Ok((node, connecting))
    }

    /// Every node: the one Redis, or each master of the cluster.
    pub(super) async fn nodes(&self) -> Result<Vec<(Node, Connecting)>, BrokerError> {
        if let RedisNodes::Cluster(_) = self.target.nodes {
            self.refresh().await?;
        }
        let slots = lock(&self.slots).clone();
        let mut nodes: Vec<Node> = slots.into_iter().map(|(_, _, node)| node).collect();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            nodes.push((String::new(), 0));
        }
        Ok(nodes
            .into_iter()
            .map(|node| {
                let connecting = self.connecting(&node);
                (node, connecting)
            })
            .collect())
    }

    /// Drops `failed`, unless another request already replaced it.
    pub(super) fn forget(&self, node: &Node, failed: &Connecting) {
        let mut connections = lock(&self.connections);
        if connections.get(node).is_some_and(|c| c.ptr_eq(failed)) {
            connections.remove(node);
        }
    }

    fn node_of(&self, slot: u16) -> Option<Node> {
        let slots = lock(&self.slots);
        let range = slots.iter().find(|(first, last, _)| (*first..=*last).contains(&slot));
        range.map(|(_, _, node)| node.clone())
    }

    fn connecting(&self, node: &Node) -> Connecting {
        let mut connections = lock(&self.connections);
        let connecting = connections.entry(node.clone()).or_insert_with(|| {
            let target = self.target.clone();
            let node = node.clone();
            async move {
                let client = match &target.nodes {
                    RedisNodes::Single(client) => client.clone(),
                    RedisNodes::Cluster(seeds) => at_node(&target, &seeds[0], &node)?,
                };
                let connecting = client.get_multiplexed_async_connection();
                target.connect_within(connecting).await
            }
            .boxed()
            .shared()
        });
        connecting.clone()
    }

    /// Reads the slot map from the first node that gives it: known masters and seeds, asked
    /// all at once.
    pub(super) async fn refresh(&self) -> Result<(), BrokerError> {
        let RedisNodes::Cluster(seeds) = &self.target.nodes else {
            return Ok(());
        };
        let mut asked: Vec<Node> = lock(&self.slots)
            .iter()
            .map(|(_, _, node)| node.clone())
            .collect();
        for seed in seeds {
            if let ConnectionAddr::Tcp(host, port) = seed.addr() {
                asked.push((host.clone(), *port));
            }
        }
        asked.sort();
        asked.dedup();
        let asking = asked.into_iter().map(|node| {
            async move {
                let client = at_node(&self.target, &seeds[0], &node)?;
                let mut connection = self
                    .target
                    .connect_within(client.get_multiplexed_async_connection())
                    .await?;
                let mut slots = redis::cmd("CLUSTER");
                slots.arg("SLOTS");
                let reply: Value = self
                    .target
                    .answer_within(slots.query_async(&mut connection))
                    .await?;
                slot_map(reply, &node.0).ok_or_else(|| {
                    BrokerError::new(format!(
                        "Redis at {} gave an unexpected slot map",
                        self.target.shown
                    ))
                })
            }
            .boxed()
        });
        let (slots, _) = futures_util::future::select_ok(asking).await?;
        *lock(&self.slots) = slots;
        Ok(())
    }
}

/// A client of `node`, with the credentials and settings of `seed`.
fn at_node(target: &Target, seed: &ConnectionInfo, node: &Node) -> Result<redis::Client, BrokerError> {
    let info = seed.clone().set_addr(ConnectionAddr::Tcp(node.0.clone(), node.1));
    redis::Client::open(info).map_err(|e| target.unreachable(e))
}

/// The masters' slot ranges in a `CLUSTER SLOTS` reply, sorted; a master with no host named
/// is `asked` (the node that answered).
fn slot_map(reply: Value, asked: &str) -> Option<Vec<(u16, u16, Node)>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut slots = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return None;
        };
        let (first, last, master) = match range.as_slice() {
            [Value::Int(first), Value::Int(last), Value::Array(master), ..] => (first, last, master),
            _ => return None,
        };
        let (host, port) = match master.as_slice() {
            [Value::BulkString(host), Value::Int(port), ..] => (host, port),
            _ => return None,
        };
        let host = match String::from_utf8_lossy(host).into_owned() {
            host if host.is_empty() || host == "?" => asked.to_owned(),
            host => host,
        };
        slots.push((
            u16::try_from(*first).ok()?,
            u16::try_from(*last).ok()?,
            (host, u16::try_from(*port).ok()?),
        ));
    }
    slots.sort();
    Some(slots)
}
