//! The pub/sub connection: how a process hears its groups' events and the closes of other
//! processes. With a single Redis, one connection in pub/sub mode (`SUBSCRIBE`). With a
//! cluster, the `redis` crate's cluster connection over RESP3, one connection per node, which
//! subscribes each sharded channel (`SSUBSCRIBE`) on the node of its slot and subscribes again
//! after a node's connection was lost or a slot moved.

use futures_util::StreamExt;
use redis::{
    aio::{PubSubSink, PubSubStream},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo},
    PushInfo, PushKind, Value,
};
use tokio::sync::mpsc;

use super::{Nodes, Target, COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::BrokerError;

/// Where the events are heard.
pub(in crate::engine::redis) enum Hearing {
    Single {
        sink: PubSubSink,
        messages: PubSubStream,
    },
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

pub(in crate::engine::redis) enum Heard {
    Message {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    /// A sharded channel subscribed to (again).
    Subscribed(Vec<u8>),
    /// A sharded channel unsubscribed from: by this process, or by its node, whose slot moved
    /// to another.
    Unsubscribed(Vec<u8>),
    /// A node's connection was lost; the cluster connection makes another.
    NodeLost,
    Other,
}

impl Hearing {
    /// Connects to `target` to hear what is published there.
    pub(in crate::engine::redis) async fn connect(target: &Target) -> Result<Self, BrokerError> {
        match &target.nodes {
            Nodes::Single(client) => {
                let connecting = async {
                    let (sink, messages) = client.get_async_pubsub().await?.split();
                    Ok(Hearing::Single { sink, messages })
                };
                target.connect_within(connecting).await
            }
            Nodes::Cluster(seeds) => {
                let (heard, pushes) = mpsc::unbounded_channel();
                let connection = cluster(target, seeds, heard).await?;
                Ok(Hearing::Cluster { connection, pushes })
            }
        }
    }

    pub(in crate::engine::redis) async fn next(&mut self) -> Option<Heard> {
        match self {
            Hearing::Single { messages, .. } => {
                let message = messages.next().await?;
                Some(Heard::Message {
                    channel: message.get_channel_name().as_bytes().to_vec(),
                    payload: message.get_payload_bytes().to_vec(),
                })
            }
            Hearing::Cluster { pushes, .. } => {
                let push = pushes.recv().await?;
                let mut data = push.data.into_iter().map(|value| match value {
                    Value::BulkString(bytes) => bytes,
                    _ => Vec::new(),
                });
                Some(match push.kind {
                    PushKind::SMessage => match (data.next(), data.next()) {
                        (Some(channel), Some(payload)) => Heard::Message { channel, payload },
                        _ => Heard::Other,
                    },
                    PushKind::SSubscribe => data.next().map_or(Heard::Other, Heard::Subscribed),
                    PushKind::SUnsubscribe => data.next().map_or(Heard::Other, Heard::Unsubscribed),
                    PushKind::Disconnection => Heard::NodeLost,
                    _ => Heard::Other,
                })
            }
        }
    }

    pub(in crate::engine::redis) async fn subscribe(
        &mut self,
        channel: &str,
    ) -> redis::RedisResult<()> {
        match self {
            Hearing::Single { sink, .. } => sink.subscribe(channel).await,
            Hearing::Cluster { connection, .. } => connection.ssubscribe(channel).await,
        }
    }

    pub(in crate::engine::redis) async fn unsubscribe(
        &mut self,
        channel: &str,
    ) -> redis::RedisResult<()> {
        match self {
            Hearing::Single { sink, .. } => sink.unsubscribe(channel).await,
            Hearing::Cluster { connection, .. } => connection.sunsubscribe(channel).await,
        }
    }

    /// Whether every node is there: a Redis that hangs (stopped, or cut off without a reset)
    /// keeps its sockets open, and only a question it does not answer tells.
    pub(in crate::engine::redis) async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Hearing::Single { sink, .. } => sink.ping::<Value>().await.map(drop),
            Hearing::Cluster { connection, .. } => {
                let every_master = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                let ping = redis::cmd("PING");
                connection.route_command(ping, every_master).await.map(drop)
            }
        }
    }
}

/// A connection to the cluster of `seeds` (the `redis` crate's: one connection per node, which
/// subscribes again after a node's connection was lost or a slot moved). The nodes' pushes
/// (the messages of the sharded channels it subscribed to, and word of a lost node connection)
/// go to `pushes`.
async fn cluster(
    target: &Target,
    seeds: &[redis::ConnectionInfo],
    pushes: mpsc::UnboundedSender<PushInfo>,
) -> Result<ClusterConnection, BrokerError> {
    let builder = ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT)
        // Pushes need RESP3: with RESP2 a connection in pub/sub mode takes no other command.
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes);
    let client = builder.build().map_err(|e| target.unreachable(e))?;
    target.connect_within(client.get_async_connection()).await
}
