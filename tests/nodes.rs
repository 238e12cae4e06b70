//! Server processes (`examples/redis_node.rs`) sharing groups through an engine, as a deployment
//! behind a load balancer runs them.

use std::process::Stdio;

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{http_client, within, Client, Event};

/// A server process (`redis_node`, its path given by the test) sharing groups through an
/// engine (Redis or Postgres), killed when dropped.
pub struct Node {
    /// Where it serves HTTP.
    pub addr: String,
    process: Child,
}

impl Node {
    /// A node of `exe` using the broker at `broker_url`, with extra environment variables
    /// (`HISTORY_MS`, ...).
    pub async fn start(exe: &str, broker_url: &str, env: &[(&str, &str)]) -> Node {
        let mut process = Command::new(exe)
            .env("SSE_BROKER_URL", broker_url)
            .env("PORT", "0")
            .env("KEEP_ALIVE_MS", "200")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let line = within(BufReader::new(stdout).lines().next_line())
            .await
            .unwrap()
            .expect("the node says where it listens");
        let addr = line.strip_prefix("listening on ").unwrap().to_owned();
        Node { addr, process }
    }

    /// Kills it, as a crash would: it says nothing to the engine.
    pub async fn kill(mut self) {
        self.process.kill().await.unwrap();
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client of its stream of `group`, coming back with `last_event_id` if given.
    pub async fn open(&self, group: &str, last_event_id: Option<&str>) -> Client {
        let headers: Vec<(&str, &str)> = last_event_id
            .map(|id| ("last-event-id", id))
            .into_iter()
            .collect();
        Client::open(&self.url(&format!("/events/{group}")), &headers).await
    }

    /// Publishes `count` events from this process; their ids, or the error it answered.
    pub async fn publish(&self, group: &str, count: u32) -> Result<Vec<u64>, String> {
        let url = self.url(&format!("/publish/{group}/{count}"));
        let response = within(http_client().post(url).send()).await.unwrap();
        let ok = response.status().is_success();
        let text = response.text().await.unwrap();
        match ok {
            true => Ok(text.lines().map(|id| id.parse().unwrap()).collect()),
            false => Err(text),
        }
    }
}

/// Id and data of each event: what must agree in every process.
pub fn seen(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

/// The ids of `events`, as the numbers they are with one group's stream.
pub fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.id.parse().unwrap()).collect()
}
