//! The same workloads over HTTP for every system: two instances sharing one Redis (or
//! cluster), a publisher posting to the first, a subscriber reading the second. Ours is two
//! processes of this program in `node` mode; the peers are started by
//! `/work/shared/peers/peer` (see its README).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::servers::Error;

const PEER: &str = "/work/shared/peers/peer";

/// One instance: where to publish and subscribe (`{group}` stands for the group), and how to
/// stop it.
pub(crate) struct Instance {
    publish: String,
    subscribe: String,
    running: Running,
}

enum Running {
    Child(Child),
    Peer(PathBuf),
}

impl Drop for Instance {
    fn drop(&mut self) {
        match &mut self.running {
            Running::Child(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::Peer(dir) => {
                let _ = Command::new(PEER).arg("stop").arg(&*dir).status();
                let _ = std::fs::remove_dir_all(&*dir);
            }
        }
    }
}

impl Instance {
    /// A process of this program serving `/pub/{group}` and `/sub/{group}` with the broker at
    /// `broker_url`.
    pub(crate) fn ours(broker_url: &str) -> Result<Instance, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["node", broker_url])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("a piped stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            return Err(format!("the node said {line:?}").into());
        };
        Ok(Instance {
            publish: format!("http://{addr}/pub/{{group}}"),
            subscribe: format!("http://{addr}/sub/{{group}}"),
            running: Running::Child(child),
        })
    }

    /// Peer `name` on a free port, through the Redis on `redis_port`.
    pub(crate) fn peer(name: &str, redis_port: u16) -> Result<Instance, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("sse-bench-{name}-{port}"));
        let output = Command::new(PEER)
            .args(["start", name])
            .arg(&dir)
            .arg(port.to_string())
            .arg(format!("REDIS_PORT={redis_port}"))
            .output()?;
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = |prefix: &str| {
            said.lines()
                .find_map(|line| line.strip_prefix(prefix))
                .map(str::to_owned)
        };
        let instance = Instance {
            publish: line("PUB ").unwrap_or_default(),
            subscribe: line("SUB ").unwrap_or_default(),
            running: Running::Peer(dir),
        };
        if !output.status.success() || instance.publish.is_empty() {
            let why = String::from_utf8_lossy(&output.stderr).into_owned();
            return Err(format!("peer {name} did not start: {why}").into());
        }
        Ok(instance)
    }
}

/// A keep-alive HTTP/1.1 connection posting events.
struct Poster {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: String,
}

/// `http://host:port/path` split.
fn split_url(url: &str) -> Result<(SocketAddr, String), Error> {
    let rest = url.strip_prefix("http://").ok_or("an http:// URL")?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((addr.parse()?, path.to_owned()))
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

impl Poster {
    async fn to(instance: &Instance, group: &str) -> Result<Poster, Error> {
        let (addr, path) = split_url(&instance.publish.replace("{group}", group))?;
        Ok(Poster {
            sender: connect(addr).await?,
            addr,
            path,
        })
    }

    /// Posts `t=<now in µs>` (ours adds the event name `tick`; the peers take the body as is).
    async fn post(&mut self) -> Result<(), Error> {
        // A server may close a kept-alive connection (uvicorn after 5 s idle): open another.
        if self.sender.ready().await.is_err() {
            self.sender = connect(self.addr).await?;
        }
        let request = hyper::Request::post(&self.path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::from(format!("t={}", now_us()))))?;
        let response = self.sender.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        match ok {
            true => Ok(()),
            false => Err("a publish was refused".into()),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `publishers` connections posting to `instance` as fast as they can for `run_for`; how many
/// events they published.
pub(crate) async fn publish_flat_out(
    instance: &Instance,
    publishers: usize,
    run_for: Duration,
) -> Result<u64, Error> {
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..publishers {
        let mut poster = Poster::to(instance, "rate").await?;
        tasks.push(tokio::spawn(async move {
            let mut published = 0;
            while Instant::now() < deadline {
                if poster.post().await.is_err() {
                    break;
                }
                published += 1;
            }
            published
        }));
    }
    let mut published = 0;
    for task in tasks {
        published += task.await?;
    }
    Ok(published)
}

/// Publish→receive latency across processes: events posted to `to` at `rate` per second for
/// `run_for`, read from `from`'s stream; the median and the 99th percentile, and how many of
/// the events arrived.
pub(crate) async fn latency(
    to: &Instance,
    from: &Instance,
    rate: u32,
    run_for: Duration,
) -> Result<(Duration, Duration, usize, usize), Error> {
    let group = "latency";
    let (addr, path) = split_url(&from.subscribe.replace("{group}", group))?;
    let mut subscriber = connect(addr).await?;
    let request = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))?;
    let response = subscriber.send_request(request).await?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let receiving = Arc::new(AtomicBool::new(false));
    let reader = {
        let (latencies, receiving) = (latencies.clone(), receiving.clone());
        let mut body = response.into_body();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let at = now_us();
                pending.extend_from_slice(&data);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let Some(sent) = sent_at(&line) else { continue };
                    receiving.store(true, Ordering::Relaxed);
                    lock(&latencies).push(Duration::from_micros(at.saturating_sub(sent)));
                }
            }
        })
    };
    // Until the subscription is in place everywhere: warm-up events until one arrives.
    let mut poster = Poster::to(to, group).await?;
    let warm_until = Instant::now() + Duration::from_secs(10);
    while !receiving.load(Ordering::Relaxed) && Instant::now() < warm_until {
        poster.post().await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock(&latencies).clear();
    let sent = AtomicU64::new(0);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let deadline = Instant::now() + run_for;
    while Instant::now() < deadline {
        tick.tick().await;
        poster.post().await?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let mut latencies = lock(&latencies).clone();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok((
        at(0.5),
        at(0.99),
        latencies.len(),
        sent.into_inner() as usize,
    ))
}

/// The send time in a `data:` line holding `t=<µs>` (raw, or quoted as the peers may).
fn sent_at(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?.strip_prefix("data:")?;
    let digits = line.split("t=").nth(1)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
