//! A connection that commands and scripts go over: one multiplexed connection to a single
//! Redis, or a cluster connection of the `redis` crate (one multiplexed connection per node,
//! each command sent to the node of its key's hash slot, MOVED and ASK followed, the slot map
//! refreshed and lost nodes reconnected by the crate).

use redis::{
    aio::{ConnectionLike, MultiplexedConnection},
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
    /// A link to `target`, for commands.
    pub(super) async fn open(target: &Target) -> Result<Link, BrokerError> {
        match &target.nodes {
            RedisNodes::Single(client) => {
                let connecting = client.get_multiplexed_async_connection();
                Ok(Link::Single(target.connect_within(connecting).await?))
            }
            RedisNodes::Cluster(seeds) => Ok(Link::Cluster(cluster(target, seeds, None).await?)),
        }
    }

    /// Whether a failed command leaves this link unusable: a single connection is replaced;
    /// a cluster connection repairs its nodes' connections itself, unless it stopped.
    pub(super) fn lost_by(&self, error: &redis::RedisError) -> bool {
        match self {
            Link::Single(_) => true,
            Link::Cluster(_) => error.is_connection_dropped(),
        }
    }

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
        .response_timeout(COMMAND_TIMEOUT);
    if let Some(pushes) = pushes {
        // Pushes need RESP3: with RESP2 a connection in pub/sub mode takes no other command.
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes);
    }
    let client = builder.build().map_err(|e| target.unreachable(e))?;
    target.connect_within(client.get_async_connection()).await
}
