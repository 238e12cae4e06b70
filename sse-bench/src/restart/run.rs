//! What the clients, the publisher and the report of a rolling restart share: its sizes, where
//! it is, and the state every task reads.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, AtomicUsize},
        Arc,
    },
    time::Duration,
};

use serde::Serialize;
use tokio::sync::watch;

use crate::client::{Shared, Url};

/// The systems compared, each as two processes on one Redis.
const SYSTEMS: &[&str] = &["sse", "nchan-redis"];
/// Also on request: our server with its streams written by the app's runtime.
const ALSO: &[&str] = &["sse-app-runtime"];

/// How the run is sized: every figure has a flag.
#[derive(Serialize, Clone)]
pub(crate) struct Sizes {
    pub(super) clients: usize,
    pub(super) groups: usize,
    /// Events per second, over all groups.
    pub(super) rate: f64,
    /// A client whose stream ended waits a random time below this before it reconnects.
    pub(super) retry_ms: u64,
    /// Clients reconnect without `Last-Event-ID` (`--forget-ids`): a control that shows the
    /// check finds what a resume that does not happen loses.
    pub(super) forget_ids: bool,
    /// Seconds measured before the kill, and after every client caught up.
    pub(super) before_secs: f64,
    pub(super) after_secs: f64,
    /// The longest any phase may take, in seconds.
    pub(super) patience_secs: f64,
}

impl Sizes {
    /// `--clients N --groups N --rate N --retry-ms N --before N --after N --out DIR`, each
    /// optional, then the systems; returns the sizes, the output directory and the systems.
    pub(crate) fn parse(args: &[String]) -> Result<(Self, Option<PathBuf>, Vec<String>), String> {
        let mut sizes = Sizes {
            clients: 10_000,
            groups: 100,
            rate: 200.0,
            retry_ms: 1_000,
            forget_ids: false,
            before_secs: 5.0,
            after_secs: 3.0,
            patience_secs: 60.0,
        };
        let (mut out, mut systems) = (None, Vec::new());
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--forget-ids" {
                sizes.forget_ids = true;
                continue;
            }
            if !arg.starts_with("--") {
                if !SYSTEMS.iter().chain(ALSO).any(|s| s == arg) {
                    let known = [SYSTEMS, ALSO].concat().join(", ");
                    return Err(format!("restart runs {known}, not {arg}"));
                }
                systems.push(arg.clone());
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .ok_or_else(|| format!("{arg}: not a positive number: {value}"))
            };
            match arg.as_str() {
                "--clients" => sizes.clients = (number()? as usize).max(2),
                "--groups" => sizes.groups = number()? as usize,
                "--rate" => sizes.rate = number()?,
                "--retry-ms" => sizes.retry_ms = number()? as u64,
                "--before" => sizes.before_secs = number()?,
                "--after" => sizes.after_secs = number()?,
                "--patience" => sizes.patience_secs = number()?,
                "--out" => out = Some(PathBuf::from(value)),
                _ => return Err(format!("unknown flag {arg}")),
            }
        }
        if systems.is_empty() {
            systems = SYSTEMS.iter().map(|s| s.to_string()).collect();
        }
        Ok((sizes, out, systems))
    }

    pub(super) fn patience(&self) -> Duration {
        Duration::from_secs_f64(self.patience_secs)
    }
}

/// Where the run is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(super) enum Phase {
    Running,
    /// The publisher finishes its last publish.
    Ending,
    /// Every event is published: clients read up to their group's last one.
    Draining,
    Stopped,
}

/// What the clients and the publisher share.
pub(super) struct Run {
    /// The time base and the events' data (`"{seq} {sent_us} xxx…"`).
    pub(super) shared: Arc<Shared>,
    /// The two processes: 0 survives, 1 is killed and started again on the same port.
    pub(super) servers: [SocketAddr; 2],
    pub(super) sub: Url,
    /// The last sequence number published to each group (0: none yet).
    pub(super) published: Vec<AtomicU64>,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) retry: Duration,
    pub(super) forget_ids: bool,
    /// Clients whose first stream opened, and that got a first event.
    pub(super) opened: AtomicUsize,
    pub(super) subscribed: AtomicUsize,
    /// Streams that ended under their client, and clients away now (not caught up again).
    pub(super) dropped: AtomicUsize,
    pub(super) away: AtomicUsize,
}

impl Run {
    pub(super) fn sub_path(&self, group: usize) -> String {
        self.sub.path(&group_name(group))
    }
}

/// The name of group number `group`.
pub(super) fn group_name(group: usize) -> String {
    format!("r{group}")
}
