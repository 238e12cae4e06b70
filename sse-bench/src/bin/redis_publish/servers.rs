//! The `redis-server` processes the benchmark starts: one Redis, or a Redis Cluster of three
//! masters; each killed (and its files removed) when dropped, and its CPU time read from `/proc`.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// One Redis or the nodes of a cluster, with the broker URL naming them.
pub(crate) struct Redis {
    pub(crate) url: String,
    pub(crate) name: &'static str,
    /// The first node's port: where a peer is pointed.
    pub(crate) port: u16,
    servers: Vec<Child>,
    /// The port of each server.
    ports: Vec<u16>,
    dir: Option<PathBuf>,
}

impl Redis {
    pub(crate) fn single() -> Result<Redis, Error> {
        let port = free_port(|_| true)?;
        let server = start(port, &[])?;
        Ok(Redis {
            url: format!("redis://127.0.0.1:{port}/0"),
            name: "1 Redis",
            port,
            servers: vec![server],
            ports: vec![port],
            dir: None,
        })
    }

    /// Three masters, no replicas, joined by `redis-cli --cluster create`.
    pub(crate) fn cluster() -> Result<Redis, Error> {
        let dir = std::env::temp_dir().join(format!("sse-bench-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut redis = Redis {
            url: String::new(),
            name: "3-node Cluster",
            port: 0,
            servers: Vec::new(),
            ports: Vec::new(),
            dir: Some(dir.clone()),
        };
        let mut ports = Vec::new();
        for _ in 0..3 {
            // The cluster bus listens 10,000 above.
            let port = free_port(|port| {
                std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
            })?;
            let conf = format!("nodes-{port}.conf");
            let args = ["--cluster-enabled", "yes", "--cluster-config-file", &conf];
            let dir = dir.to_str().ok_or("a temporary directory named in UTF-8")?;
            redis
                .servers
                .push(start(port, &[&args[..], &["--dir", dir]].concat())?);
            ports.push(format!("127.0.0.1:{port}"));
            redis.ports.push(port);
        }
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&ports)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()?;
        if !created.success() {
            return Err("redis-cli --cluster create failed".into());
        }
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let info = Command::new("redis-cli")
                    .args([
                        "-p",
                        port.trim_start_matches("127.0.0.1:"),
                        "CLUSTER",
                        "INFO",
                    ])
                    .output()?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("the cluster node on {port} never became ready").into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        redis.port = ports[0].trim_start_matches("127.0.0.1:").parse()?;
        redis.url = format!("redis+cluster://{}", ports.join(","));
        Ok(redis)
    }

    /// The CPU time of every server so far, user and system (`/proc/<pid>/stat`).
    pub(crate) fn cpu(&self) -> Result<Duration, Error> {
        let mut total = Duration::ZERO;
        for server in &self.servers {
            total += cpu_of(server.id())?;
        }
        Ok(total)
    }
}

impl Redis {
    /// `count` `PING`s to the first server, each sent when the last was answered, by
    /// `redis-benchmark`: what Redis spends on a round trip that does nothing.
    pub(crate) fn ping_one_by_one(&self, count: u64) -> Result<u64, Error> {
        let port = self.ports.first().ok_or("no server")?.to_string();
        let pinged = Command::new("redis-benchmark")
            .args([
                "-p",
                &port,
                "-c",
                "1",
                "-n",
                &count.to_string(),
                "-q",
                "PING",
            ])
            .stdout(Stdio::null())
            .status()?;
        match pinged.success() {
            true => Ok(count),
            false => Err("redis-benchmark failed".into()),
        }
    }

    /// The time Redis spent inside scripts (`EVALSHA`, from `INFO commandstats`) since the last
    /// call, on every server: what a publish costs Redis beyond reading and answering it.
    pub(crate) fn script_time(&self) -> Result<Duration, Error> {
        let mut total = Duration::ZERO;
        for port in &self.ports {
            let stats = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "INFO", "commandstats"])
                .output()?;
            let stats = String::from_utf8_lossy(&stats.stdout);
            let usec = stats
                .lines()
                .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
                .and_then(|line| line.split(',').find_map(|f| f.strip_prefix("usec=")))
                .map_or(Ok(0), str::parse::<u64>)?;
            total += Duration::from_micros(usec);
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "CONFIG", "RESETSTAT"])
                .stdout(Stdio::null())
                .status()?;
        }
        Ok(total)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A free loopback port (below the ephemeral range) for which `also` holds.
pub(crate) fn free_port(also: impl Fn(u16) -> bool) -> Result<u16, Error> {
    let first = 12_000 + (std::process::id() % 500) as u16 * 4;
    (first..first + 2_000)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && also(port))
        .ok_or_else(|| "no free port".into())
}

fn start(port: u16, args: &[&str]) -> Result<Child, Error> {
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || server.try_wait()?.is_some() {
            let _ = server.kill();
            return Err(format!("redis-server did not listen on {port}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(server)
}

/// The CPU time of process `pid` and of its children it waited for, so far, user and system.
pub(crate) fn cpu_of(pid: u32) -> Result<Duration, Error> {
    // utime, stime, cutime and cstime: fields 14 to 17 of the whole line.
    let fields = stat_fields(pid)?;
    let times = fields.get(11..15).unwrap_or_default();
    let ticks: u64 = times.iter().filter_map(|f| f.parse::<u64>().ok()).sum();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// The fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// hold spaces): the state is the first, the parent's pid the second.
pub(crate) fn stat_fields(pid: u32) -> Result<Vec<String>, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    Ok(after_name.split_whitespace().map(str::to_owned).collect())
}
