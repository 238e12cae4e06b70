//! Real `redis-server` processes for the Redis tests, on free loopback ports: one Redis, or a
//! Redis Cluster of several masters; and the server processes (`redis_node`) that share groups
//! through them. Every process is killed when its value is dropped.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use tokio::{
    net::TcpStream,
    process::{Child, Command},
};

use crate::{eventually, free_port, free_port_in, port_is_free, within, PATIENCE};

/// A `redis-server` of the test's own, killed when dropped.
pub struct RedisServer {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// What it was started with besides its port, to restart it alike.
    args: Vec<String>,
    process: Child,
}

impl RedisServer {
    /// A Redis on a free port.
    pub async fn start() -> RedisServer {
        for _ in 0..5 {
            if let Some(server) = RedisServer::start_on(free_port(), Vec::new()).await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// `None` if it exited at once (the port was taken meanwhile).
    async fn start_on(port: u16, args: Vec<String>) -> Option<RedisServer> {
        let mut process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&args)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if process.try_wait().unwrap().is_some() {
                return None;
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(RedisServer {
                    port,
                    args,
                    process,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server never listened on {port}");
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A hub of the test's own with `config`, on this server.
    pub fn hub(&self, config: sse::Config) -> sse::Hub {
        sse::Hub::connect(config.broker(&self.url()).unwrap()).unwrap()
    }

    /// Kills it.
    pub async fn stop(&mut self) {
        self.process.kill().await.unwrap();
    }

    /// A new server on the same port with the same settings, as after a crash: empty, since
    /// nothing is saved (a cluster node keeps its identity and slots in its nodes file).
    pub async fn restart(&mut self) {
        self.stop().await;
        let restarted = RedisServer::start_on(self.port, self.args.clone()).await;
        *self = restarted.expect("the port is still ours");
    }

    /// A connection to this server alone.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// Runs `command` on this server; panics if it fails.
    pub fn command(&self, command: &redis::Cmd) {
        command.exec(&mut self.connection().unwrap()).unwrap();
    }

    /// How many processes listen to `group` here (its channel's `PUBSUB NUMSUB`, or
    /// `SHARDNUMSUB` in a cluster).
    pub fn listeners(&self, group: &str) -> u64 {
        let Ok(mut connection) = self.connection() else {
            return 0;
        };
        let which = match self.args.is_empty() {
            true => "NUMSUB",
            false => "SHARDNUMSUB",
        };
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg(which)
            .arg(format!("sse:{{{group}}}:events"))
            .query(&mut connection)
            .unwrap_or_default();
        counts.first().map_or(0, |(_, count)| *count)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a stopped Redis keeps its sockets open and
    /// answers nothing, as one cut off by a network partition.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.id().expect("the server runs").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// How many connections other than the one asking are open to this server.
    pub fn other_connections(&self) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut self.connection().unwrap())
            .unwrap();
        list.lines().count() - 1
    }

    /// The ids of the connections in pub/sub mode: a listening side that reconnected has a new one.
    pub fn pubsub_connections(&self) -> Vec<String> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut self.connection().unwrap())
            .unwrap();
        let ids = list.lines().filter_map(|line| line.split(' ').next());
        ids.map(str::to_owned).collect()
    }

    /// A stream of `group` from `hub`, once this process listens to the group in Redis.
    pub async fn subscribe(&self, hub: &sse::Hub, group: &str) -> sse::Subscription {
        let name = sse::GroupName::new(group).unwrap();
        let stream = hub.subscribe([name], &sse::LastEventId::default()).unwrap();
        self.wait_listeners(group, 1).await;
        stream
    }

    /// Until `processes` processes listen to `group` here.
    pub async fn wait_listeners(&self, group: &str, processes: u64) {
        let what = format!("{processes} processes listen to {group}");
        eventually(&what, || self.listeners(group) == processes).await;
    }
}

/// A free port whose cluster bus port (10,000 above) is free too, both below the ephemeral range.
fn free_cluster_port() -> u16 {
    free_port_in(11_000, 1_700, |port| {
        port_is_free(port) && port_is_free(port + 10_000)
    })
}

/// A Redis Cluster of masters without replicas, each a `redis-server` of the test's own, with
/// its nodes files in a directory of its own (removed when dropped).
pub struct RedisCluster {
    /// Its nodes, each a master.
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// `masters` nodes sharing the 16,384 slots, ready to serve.
    pub async fn start(masters: usize) -> RedisCluster {
        static CLUSTERS: AtomicU16 = AtomicU16::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sse-redis-cluster-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        while nodes.len() < masters {
            let port = free_cluster_port();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--dir",
                dir.to_str().unwrap(),
                // A node away for 2 s counts as failed; the others keep serving their slots.
                "--cluster-node-timeout",
                "2000",
                "--cluster-require-full-coverage",
                "no",
            ];
            let args = args.iter().map(|arg| arg.to_string()).collect();
            if let Some(node) = RedisServer::start_on(port, args).await {
                nodes.push(node);
            }
        }
        let cluster = RedisCluster { nodes, dir };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = within(
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdout(Stdio::null())
                .status(),
        )
        .await
        .unwrap();
        assert!(created.success(), "redis-cli --cluster create");
        cluster.wait_ready().await;
        cluster
    }

    /// The broker URL naming every node as a seed.
    pub fn url(&self) -> String {
        let ports: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", ports.join(","))
    }

    /// Until every node says the cluster is whole.
    pub async fn wait_ready(&self) {
        eventually("every cluster node says cluster_state:ok", || {
            self.nodes.iter().all(|node| {
                let info: Option<String> = node
                    .connection()
                    .ok()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok());
                info.is_some_and(|info| info.contains("cluster_state:ok"))
            })
        })
        .await;
    }

    /// The node that serves `group`'s keys: the others answer its key with `MOVED`.
    pub fn node_of(&self, group: &str) -> usize {
        let key = format!("sse:{{{group}}}:seq");
        let serves = |node: &RedisServer| {
            let mut connection = node.connection().unwrap();
            redis::cmd("EXISTS")
                .arg(&key)
                .query::<u64>(&mut connection)
                .is_ok()
        };
        self.nodes
            .iter()
            .position(serves)
            .expect("a node serves every slot")
    }

    /// `count` groups named `<prefix>-<n>` whose keys node `node` serves, each in a slot of its
    /// own.
    pub fn groups_on_node(&self, prefix: &str, node: usize, count: usize) -> Vec<String> {
        let mut groups: Vec<String> = Vec::new();
        let mut slots = std::collections::HashSet::new();
        for n in 0.. {
            let group = format!("{prefix}-{n}");
            if self.node_of(&group) == node && slots.insert(self.slot_of(&group)) {
                groups.push(group);
                if groups.len() == count {
                    break;
                }
            }
        }
        groups
    }

    /// The hash slot of `group`'s keys.
    pub fn slot_of(&self, group: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("sse:{{{group}}}:seq"))
            .query(&mut self.nodes[0].connection().unwrap())
            .unwrap()
    }

    /// For each node, a group named `<prefix>-<n>` whose keys it serves.
    pub fn group_on_each_node(&self, prefix: &str) -> Vec<String> {
        let mut groups = vec![None; self.nodes.len()];
        for n in 0.. {
            let group = format!("{prefix}-{n}");
            let node = self.node_of(&group);
            groups[node].get_or_insert(group);
            if groups.iter().all(Option::is_some) {
                break;
            }
        }
        groups.into_iter().flatten().collect()
    }

    /// Moves the slot of `group`'s keys, with its keys, to node `to`, as a resharding does:
    /// `IMPORTING`/`MIGRATING`, `MIGRATE` of its keys, then `SETSLOT ... NODE` everywhere.
    pub fn move_group(&self, group: &str, to: usize) {
        let from = self.node_of(group);
        let query = |node: &RedisServer, command: &mut redis::Cmd| -> redis::Value {
            command.query(&mut node.connection().unwrap()).unwrap()
        };
        let id = |node: &RedisServer| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut node.connection().unwrap())
                .unwrap()
        };
        let (from_id, to_id) = (id(&self.nodes[from]), id(&self.nodes[to]));
        let slot = self.slot_of(group);
        let setslot = |state: &str, id: &str| {
            let mut command = redis::cmd("CLUSTER");
            command.arg("SETSLOT").arg(slot).arg(state).arg(id);
            command
        };
        query(&self.nodes[to], &mut setslot("IMPORTING", &from_id));
        query(&self.nodes[from], &mut setslot("MIGRATING", &to_id));
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query(&mut self.nodes[from].connection().unwrap())
            .unwrap();
        if !keys.is_empty() {
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(self.nodes[to].port)
                .arg("")
                .arg(0)
                .arg(5000);
            query(&self.nodes[from], migrate.arg("KEYS").arg(&keys));
        }
        for node in &self.nodes {
            query(node, &mut setslot("NODE", &to_id));
        }
        assert_eq!(self.node_of(group), to, "the slot moved");
    }

    /// Until `processes` processes listen to `group` on the node that serves it.
    pub async fn wait_listeners(&self, group: &str, processes: u64) {
        let node = &self.nodes[self.node_of(group)];
        node.wait_listeners(group, processes).await;
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
