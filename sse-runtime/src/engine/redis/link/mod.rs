//! How Redis is reached, in one place: where it is ([`Target`]), how long connecting and a
//! command may take, how long to wait before trying again, the command connections ([`Router`], one per node,
//! shared by publishing, history reads, presence and closes) and the pub/sub connection
//! ([`Hearing`], one per node, for the listening side).
//!
//! A process thus opens at most two connections to each Redis node: one for commands, one to
//! hear events and closes. (A process that only publishes opens the first alone.)

use std::{future::Future, time::Duration};

use crate::{engine::redacted, BrokerError};

mod commands;
mod pubsub;

pub(super) use commands::Router;
pub(super) use pubsub::{Heard, Hearing};

/// How long connecting may take before a request gives up.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long Redis may take to answer one command.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the listening side asks Redis whether it is there, and how long it waits for the
/// answer: a Redis that hangs without closing its sockets is noticed within the sum.
pub(super) const PING_EVERY: Duration = Duration::from_secs(1);
pub(super) const PING_PATIENCE: Duration = Duration::from_secs(1);

/// Where Redis is, parsed, and how to show it without its password.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(super) nodes: Nodes,
    pub(super) shown: String,
}

/// One Redis, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone)]
pub(super) enum Nodes {
    Single(redis::Client),
    /// The nodes first asked where the others are; the cluster client finds the rest.
    Cluster(Vec<redis::ConnectionInfo>),
}

impl Target {
    /// `redis://host:port/db` is one Redis. A cluster is `redis+cluster://host:port[,host:port...]`
    /// or several `redis://` URLs separated by commas: its seed nodes.
    pub(crate) fn parse(url: &str) -> Result<Self, BrokerError> {
        use redis::IntoConnectionInfo;

        let shown = redacted(url);
        let bad = |e| BrokerError::caused_by(format!("bad broker URL {shown:?}"), e);
        let seeds = match url.strip_prefix("redis+cluster://") {
            Some(rest) => cluster_seeds(rest),
            None if url.contains(',') => {
                url.split(',').map(|seed| seed.trim().to_owned()).collect()
            }
            None => {
                let client = redis::Client::open(url).map_err(bad)?;
                return Ok(Self {
                    nodes: Nodes::Single(client),
                    shown,
                });
            }
        };
        let seeds = seeds.into_iter().map(|seed| seed.into_connection_info());
        let seeds = seeds.collect::<Result<Vec<_>, _>>().map_err(bad)?;
        Ok(Self {
            nodes: Nodes::Cluster(seeds),
            shown,
        })
    }

    pub(super) fn in_cluster(&self) -> bool {
        matches!(self.nodes, Nodes::Cluster(_))
    }

    /// How a message is published: sharded in a cluster, where it travels only within the
    /// shard of its channel's slot.
    pub(super) fn publish_command(&self) -> &'static str {
        match self.nodes {
            Nodes::Single(_) => "PUBLISH",
            Nodes::Cluster(_) => "SPUBLISH",
        }
    }

    pub(super) fn unreachable(&self, error: redis::RedisError) -> BrokerError {
        BrokerError::caused_by(format!("cannot reach Redis at {}", self.shown), error)
    }

    pub(super) fn failed(&self, error: redis::RedisError) -> BrokerError {
        BrokerError::caused_by(format!("Redis at {} failed", self.shown), error)
    }

    pub(super) fn closed(&self) -> BrokerError {
        BrokerError::new(format!("Redis at {} closed the connection", self.shown))
    }

    pub(super) fn no_answer(&self) -> BrokerError {
        BrokerError::new(format!(
            "Redis at {} did not answer within {COMMAND_TIMEOUT:?}",
            self.shown
        ))
    }

    /// `connecting`, given up after [`CONNECT_TIMEOUT`].
    pub(super) async fn connect_within<T>(
        &self,
        connecting: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(connected) => connected.map_err(|e| self.unreachable(e)),
            Err(_) => Err(BrokerError::new(format!(
                "cannot reach Redis at {}: no answer within {CONNECT_TIMEOUT:?}",
                self.shown
            ))),
        }
    }

    /// `asking`, given up after [`COMMAND_TIMEOUT`].
    pub(super) async fn answer_within<T>(
        &self,
        asking: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, asking).await {
            Ok(answer) => answer.map_err(|e| self.failed(e)),
            Err(_) => Err(self.no_answer()),
        }
    }
}

/// The seed URLs of `redis+cluster://` + `rest`: `[user:password@]host:port,host:port[/...]`,
/// each seed with the credentials and the options.
fn cluster_seeds(rest: &str) -> Vec<String> {
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let (hosts, options) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    hosts
        .split(',')
        .map(|host| format!("redis://{credentials}{}{options}", host.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cluster_url_names_each_seed_with_its_credentials_and_options() {
        assert_eq!(
            super::cluster_seeds(":pw@10.0.0.1:7000, 10.0.0.2:7001/?protocol=3"),
            [
                "redis://:pw@10.0.0.1:7000/?protocol=3",
                "redis://:pw@10.0.0.2:7001/?protocol=3"
            ]
        );
        assert_eq!(super::cluster_seeds("h:1"), ["redis://h:1"]);
    }
}
