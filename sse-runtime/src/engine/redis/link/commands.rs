//! The connections that commands and scripts go over, one per node: each request goes to the
//! node of its hash slot (the one Redis, or the master serving the slot in a cluster). In a
//! cluster, the slot map comes from `CLUSTER SLOTS`, read again when a node answers `MOVED`
//! (the slot moved: resharding, a failover). Not the `redis` crate's cluster connection: while
//! one node hung, it held up the commands to the other nodes as well, and a publish or a
//! history read must fail or succeed on its own shard only.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, PoisonError,
    },
    task::Poll,
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use redis::{
    aio::MultiplexedConnection, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue,
    ScriptInvocation, Value,
};

use super::{Nodes, Target, COMMAND_TIMEOUT};
use crate::BrokerError;

/// What goes to Redis: a script, or a plain command.
#[derive(Clone, Copy)]
enum Request<'a> {
    Script(&'a ScriptInvocation<'a>),
    Command(&'a Cmd),
}

/// A request refused.
enum Refused {
    /// Before it was sent, by a connection that had closed: it certainly did not reach Redis.
    Unsent,
    /// Redis failed it (with the error it gave, if it gave one), or did not answer.
    Failed(Option<redis::RedisError>, BrokerError),
}

/// A node of a cluster: host and port.
type Node = (String, u16);

/// A process's command connections, shared by its publishing and listening sides.
pub(in crate::engine::redis) struct Router {
    target: Target,
    /// A cluster's slot ranges with their masters, sorted; empty until first needed.
    slots: Mutex<Vec<(u16, u16, Node)>>,
    /// The map is to be read again before the next request.
    stale: AtomicBool,
    connections: Mutex<HashMap<Node, Connecting>>,
}

/// A connection being made, awaited by every request that needs it meanwhile.
type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, BrokerError>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Router {
    pub(in crate::engine::redis) fn new(target: Target) -> Self {
        Self {
            target,
            slots: Mutex::new(Vec::new()),
            stale: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The hash slot of `group`'s keys (all `0` for a single Redis).
    pub(in crate::engine::redis) fn slot_of(&self, group: &str) -> u16 {
        match self.target.nodes {
            Nodes::Single(_) => 0,
            Nodes::Cluster(_) => key_slot(group.as_bytes()),
        }
    }

    /// Whether every node answers: the one Redis, or every master of the cluster.
    pub(in crate::engine::redis) async fn ping_all(&self) -> Result<(), BrokerError> {
        let nodes = self.nodes().await?;
        let pings = nodes.into_iter().map(|(_, connecting)| async move {
            let mut connection = connecting.await?;
            let ping = redis::cmd("PING");
            self.target
                .answer_within(ping.query_async::<()>(&mut connection))
                .await
        });
        futures_util::future::try_join_all(pings).await.map(drop)
    }

    /// The node serving `slot` and the connection to it, made by the first request that
    /// needs it and shared by the others.
    async fn connection(&self, slot: u16) -> Result<(Node, Connecting), BrokerError> {
        let node = match &self.target.nodes {
            Nodes::Single(_) => (String::new(), 0),
            Nodes::Cluster(_) => match self.node_of(slot) {
                Some(node) if !self.stale.load(Ordering::Relaxed) => node,
                _ => {
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
    async fn nodes(&self) -> Result<Vec<(Node, Connecting)>, BrokerError> {
        if let Nodes::Cluster(_) = self.target.nodes {
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
    fn forget(&self, node: &Node, failed: &Connecting) {
        let mut connections = lock(&self.connections);
        if connections.get(node).is_some_and(|c| c.ptr_eq(failed)) {
            connections.remove(node);
        }
    }

    fn node_of(&self, slot: u16) -> Option<Node> {
        let slots = lock(&self.slots);
        let range = slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot));
        range.map(|(_, _, node)| node.clone())
    }

    fn connecting(&self, node: &Node) -> Connecting {
        let mut connections = lock(&self.connections);
        let connecting = connections.entry(node.clone()).or_insert_with(|| {
            let target = self.target.clone();
            let node = node.clone();
            async move {
                let client = match &target.nodes {
                    Nodes::Single(client) => client.clone(),
                    Nodes::Cluster(seeds) => at_node(&target, seeds, &node)?,
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
    async fn refresh(&self) -> Result<(), BrokerError> {
        let Nodes::Cluster(seeds) = &self.target.nodes else {
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
                let client = at_node(&self.target, seeds, &node)?;
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
        self.stale.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `invocation` on the node serving `slot`, on a new connection if the shared one
    /// turns out to have closed, or on the slot's new node if it moved. Those are the only
    /// retries: a command that failed otherwise may have reached Redis (a timeout, or a
    /// connection that closed with commands in flight; the `redis` crate does not say which),
    /// and sending a publish again could publish it twice. The connection is replaced instead,
    /// for the next request.
    pub(in crate::engine::redis) async fn invoke<T: FromRedisValue>(
        &self,
        slot: u16,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, BrokerError> {
        self.request(slot, Request::Script(invocation)).await
    }

    /// Sends `command` to the node serving `slot`, as [`Router::invoke`] runs a script.
    pub(in crate::engine::redis) async fn command<T: FromRedisValue>(
        &self,
        slot: u16,
        command: &Cmd,
    ) -> Result<T, BrokerError> {
        self.request(slot, Request::Command(command)).await
    }

    async fn request<T: FromRedisValue>(
        &self,
        slot: u16,
        request: Request<'_>,
    ) -> Result<T, BrokerError> {
        let (mut unsent_retried, mut moved_retried) = (false, false);
        loop {
            let (node, connecting) = self.connection(slot).await?;
            let answer = match connecting.clone().await {
                Ok(connection) => self.answer(request, connection).await,
                Err(error) => Err(Refused::Failed(None, error)),
            };
            // The connection may be out of step with Redis, or dead: the next request makes
            // another.
            match answer {
                Ok(answer) => return Ok(answer),
                Err(Refused::Failed(Some(moved), error)) if moved.redirect_node().is_some() => {
                    if moved_retried {
                        return Err(error);
                    }
                    moved_retried = true;
                    self.refresh().await?;
                }
                Err(Refused::Failed(_, error)) => {
                    self.forget(&node, &connecting);
                    // The node may be gone for good (a failover gave its slots to another,
                    // without anyone saying `MOVED`): the next request reads the map again.
                    self.stale.store(true, Ordering::Relaxed);
                    return Err(error);
                }
                Err(Refused::Unsent) => {
                    self.forget(&node, &connecting);
                    if unsent_retried {
                        return Err(self.target.closed());
                    }
                    unsent_retried = true;
                }
            }
        }
    }

    /// Redis's answer to `request` on `connection`, or why there is none.
    async fn answer<T: FromRedisValue>(
        &self,
        request: Request<'_>,
        mut connection: MultiplexedConnection,
    ) -> Result<T, Refused> {
        let asking = async move {
            match request {
                Request::Script(invocation) => invocation.invoke_async(&mut connection).await,
                Request::Command(command) => command.query_async(&mut connection).await,
            }
        };
        let mut asking = std::pin::pin!(asking);
        // The connection's driver, which writes to the socket, is a task of this same thread:
        // it cannot have sent anything before the first poll returns. A request refused then
        // was refused by a driver that had stopped, its connection closed.
        let first_poll = std::future::poll_fn(|cx| Poll::Ready(asking.as_mut().poll(cx)));
        let answer = match first_poll.await {
            Poll::Ready(Err(error)) if error.is_connection_dropped() => {
                return Err(Refused::Unsent)
            }
            Poll::Ready(answer) => answer,
            Poll::Pending => match tokio::time::timeout(COMMAND_TIMEOUT, asking).await {
                Ok(answer) => answer,
                Err(_) => return Err(Refused::Failed(None, self.target.no_answer())),
            },
        };
        answer.map_err(|error| {
            let failed = self.target.failed(error.clone());
            Refused::Failed(Some(error), failed)
        })
    }
}

/// A client of `node`, with the credentials and settings of the first seed.
fn at_node(
    target: &Target,
    seeds: &[ConnectionInfo],
    node: &Node,
) -> Result<redis::Client, BrokerError> {
    let seed = seeds.first().ok_or_else(|| {
        BrokerError::new(format!("the broker URL {:?} names no node", target.shown))
    })?;
    let info = seed
        .clone()
        .set_addr(ConnectionAddr::Tcp(node.0.clone(), node.1));
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
            [Value::Int(first), Value::Int(last), Value::Array(master), ..] => {
                (first, last, master)
            }
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

/// The hash slot of a key whose hash tag is `tag`: CRC16 (XMODEM) modulo 16,384, as Redis
/// Cluster computes it.
fn key_slot(tag: &[u8]) -> u16 {
    let crc = tag.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| match crc & 0x8000 {
            0 => crc << 1,
            _ => (crc << 1) ^ 0x1021,
        })
    });
    crc % 16_384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn hash_slots_are_those_of_redis_cluster() {
        // `CLUSTER KEYSLOT foo`; 0x31C3 is CRC16/XMODEM's check value.
        assert_eq!(key_slot(b"foo"), 12_182);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
    }
}
