//! The systems under test: starting each one on a free loopback port, where to subscribe and
//! publish, how much memory it holds, and stopping it.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::client::{PubFormat, Url};

/// Every system the full run measures, ours first.
pub(crate) const ALL: &[&str] = &[
    "sse",
    "sse-axum-serve",
    "axum-baseline",
    "floor",
    "nchan",
    "pushpin",
    "django-eventstream",
    "sse-starlette",
];

/// What the quick run measures: only what this workspace builds.
pub(crate) const QUICK: &[&str] = &["sse", "axum-baseline", "floor"];

/// A started system.
pub(crate) struct Running {
    pub(crate) sub: Url,
    pub(crate) publish: Url,
    pub(crate) format: PubFormat,
    /// A small page to load before a stream on the same connection (our servers only).
    pub(crate) page: Option<Url>,
    /// Publishes a batch inside the server: `{group}` stands for `GROUPS/COUNT`, the data is
    /// published `COUNT` times, each to a random one of groups `g0` to `g{GROUPS - 1}`.
    pub(crate) batch: Option<Url>,
    /// Process-group leaders: the system is every process in their groups.
    pids: Vec<u32>,
    stop: Stop,
}

enum Stop {
    Child(Child),
    Peer {
        script: PathBuf,
        dir: PathBuf,
        pids: Vec<u32>,
    },
}

/// Starts `name`; `work` is a directory for its files and logs.
pub(crate) fn start(name: &str, work: &Path) -> Result<Running, String> {
    start_on(name, work, free_port()?, None)
}

/// Starts `name` on `port`, sharing its groups through the `redis-server` on `redis_port` if
/// given: our server through `SSE_BROKER_URL` (it must be built with the `redis` feature), a
/// peer through `REDIS_PORT=` (`nchan-redis`, `django-eventstream`).
pub(crate) fn start_on(
    name: &str,
    work: &Path,
    port: u16,
    redis_port: Option<u16>,
) -> Result<Running, String> {
    let addr = format!("127.0.0.1:{port}");
    let log = work.join(format!("{}.log", name.replace('/', "_")));
    // Which of the page and the batch route the server has.
    let own = |mut command: Command, (page, batch): (bool, bool)| -> Result<Running, String> {
        if let Some(redis_port) = redis_port {
            command.env(
                "SSE_BROKER_URL",
                format!("redis://127.0.0.1:{redis_port}/0"),
            );
        }
        let child = spawn(command, &log)?;
        wait_port(port)?;
        let url = |kind: &str| Url::parse(&format!("http://{addr}/{kind}/{{group}}"));
        Ok(Running {
            sub: url("sub")?,
            publish: url("pub")?,
            format: PubFormat::Body,
            page: page
                .then(|| Url::parse(&format!("http://{addr}/page")))
                .transpose()?,
            batch: batch.then(|| url("batch")).transpose()?,
            pids: vec![child.id()],
            stop: Stop::Child(child),
        })
    };
    match name {
        "sse" => own(server_command("sse-bench-server", &addr)?, (true, true)),
        // Our server's app under `axum::serve`: what `sse::serve` costs the other routes.
        "sse-axum-serve" => {
            let mut command = server_command("sse-bench-server", &addr)?;
            command.arg("axum");
            own(command, (true, true))
        }
        // Our server with its streams written by the app's runtime, not by writer threads.
        "sse-app-runtime" => {
            let mut command = server_command("sse-bench-server", &addr)?;
            command.arg("app-runtime");
            own(command, (true, true))
        }
        // Another build of our server, to compare before and after a change in one run (older
        // builds may lack the page and the batch route: those workloads then say so).
        other if other.starts_with("sse@") => {
            let mut command = Command::new(&other[4..]);
            command.arg(&addr);
            own(command, (true, true))
        }
        "axum-baseline" => own(server_command("sse-bench-baseline", &addr)?, (false, false)),
        "floor" => {
            let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
            command.args(["floor", &addr]);
            own(command, (false, true))
        }
        peer => start_peer(peer, &work.join(peer), port, redis_port),
    }
}

/// A server binary built beside this one (`cargo build -p sse-bench` builds them all).
fn server_command(binary: &str, addr: &str) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(binary);
    if !path.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release -p sse-bench`",
            path.display()
        ));
    }
    let mut command = Command::new(path);
    command.arg(addr);
    Ok(command)
}

/// Starts `command` in a process group of its own, its output to `log`.
pub(crate) fn spawn(mut command: Command, log: &Path) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    on_server_cores(&mut command);
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {command:?}: {e}"))?;
    check_pinned(&child)?;
    Ok(child)
}

/// The peers' kit: `../shared/peers/peer` beside the repository, or `$SSE_PEERS/peer`.
fn peer_script() -> PathBuf {
    match std::env::var_os("SSE_PEERS") {
        Some(dir) => PathBuf::from(dir).join("peer"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/peer"),
    }
}

fn start_peer(
    name: &str,
    dir: &Path,
    port: u16,
    redis_port: Option<u16>,
) -> Result<Running, String> {
    let script = peer_script();
    let mut command = Command::new(&script);
    on_server_cores(&mut command);
    let output = command
        .arg("start")
        .arg(name)
        .arg(dir)
        .arg(port.to_string())
        .args(redis_port.map(|port| format!("REDIS_PORT={port}")))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
    };
    let pids: Vec<u32> = line("PIDS")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect();
    let stop = Stop::Peer {
        script: script.clone(),
        dir: dir.to_owned(),
        pids: pids.clone(),
    };
    let started = (|| {
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("no output");
            return Err(format!("`peer start {name}` failed: {last}"));
        }
        let format = match line("PUBFORMAT") {
            Some("body") => PubFormat::Body,
            Some("pushpin-json") => PubFormat::PushpinJson,
            other => return Err(format!("`peer start {name}` printed PUBFORMAT {other:?}")),
        };
        let url =
            |key| Url::parse(line(key).ok_or(format!("`peer start {name}` printed no {key}"))?);
        Ok((url("SUB")?, url("PUB")?, format))
    })();
    match started {
        Ok((sub, publish, format)) => Ok(Running {
            sub,
            publish,
            format,
            page: None,
            batch: None,
            pids,
            stop,
        }),
        Err(e) => {
            stop_now(stop);
            Err(e)
        }
    }
}

impl Running {
    /// Resident memory of every process of the system, in bytes.
    pub(crate) fn rss_bytes(&self) -> u64 {
        usage_of_groups(&self.pids).0
    }

    /// CPU seconds every process of the system used so far.
    pub(crate) fn cpu_secs(&self) -> f64 {
        usage_of_groups(&self.pids).1
    }

    pub(crate) fn stop(self) {
        stop_now(self.stop);
    }

    /// Ends every process of the system at once with `SIGKILL`, as a crash would (no graceful
    /// shutdown, no goodbye to clients), and returns once they are gone.
    pub(crate) fn kill(self) {
        for &pid in &self.pids {
            // SAFETY: kill has no memory effects; -pid is a process group this run started.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while usage_of_groups(&self.pids).0 > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Reaps our own child, and lets the peer script forget what it started.
        stop_now(self.stop);
    }
}

fn stop_now(stop: Stop) {
    match stop {
        Stop::Child(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
        Stop::Peer { script, dir, pids } => {
            let _ = Command::new(script)
                .arg("stop")
                .arg(dir)
                .stdin(Stdio::null())
                .output();
            // uvicorn drains its open streams before it exits: give it a few seconds, then
            // end the process groups this run started, so the next system starts alone.
            let alive = || usage_of_groups(&pids).0 > 0;
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            for &pid in &pids {
                // SAFETY: kill has no memory effects; -pid is a process group this run started.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
        }
    }
}

/// What the processes of a system hold: resident bytes, and CPU seconds used so far (user +
/// system). A system is every process in the process group of one of `leaders`, and their
/// descendants (Pushpin's runner starts its services in groups of their own).
pub(crate) fn usage_of_groups(leaders: &[u32]) -> (u64, f64) {
    struct Process {
        ppid: u32,
        pgrp: u32,
        cpu: f64,
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0, 0.0);
    };
    // SAFETY: sysconf only reads a constant.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut processes = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, … utime, stime (the
        // 12th and 13th fields from there).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cpu = (field(11) + field(12)) as f64 / ticks_per_sec;
        let (ppid, pgrp) = (field(1) as u32, field(2) as u32);
        processes.insert(pid, Process { ppid, pgrp, cpu });
    }
    let belongs = |mut pid: u32| {
        // Bounded: a process tree is not deeper than the number of processes.
        for _ in 0..processes.len() {
            let Some(process) = processes.get(&pid) else {
                return false;
            };
            if leaders.contains(&process.pgrp) || leaders.contains(&pid) {
                return true;
            }
            pid = process.ppid;
        }
        false
    };
    let (mut rss, mut cpu) = (0, 0.0);
    for (&pid, process) in &processes {
        if !belongs(pid) {
            continue;
        }
        cpu += process.cpu;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        rss += kb * 1024;
    }
    (rss, cpu)
}

/// A free port whose next port is free too (Pushpin's origin listens on PORT + 1), taken below
/// the kernel's ephemeral range (32768 and up by default) where the bench's own client sockets
/// cannot be holding it.
pub(crate) fn free_port() -> Result<u16, String> {
    let start = 20_000 + (std::process::id() % 6_000) as u16 * 2;
    (0..6_000u16)
        .map(|i| 20_000 + (start - 20_000 + 2 * i) % 12_000)
        .find(|&port| {
            TcpListener::bind(("127.0.0.1", port)).is_ok()
                && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        })
        .ok_or_else(|| "no two free ports in a row on 127.0.0.1 between 20000 and 32000".to_owned())
}

pub(crate) fn wait_port(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("nothing listens on port {port} after 10 s"))
}

/// CPU seconds this program used so far, user and system.
pub(crate) fn own_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is valid, and getrusage only fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the kernel to fill in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The cores the servers run on when this program keeps one for itself (`--pin`).
static SERVER_CORES: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// Splits the cores this program may use: the last for this program (its subscribers and its
/// publishers, and every thread it starts from now on), the others for the servers it starts,
/// as if the load generator were another machine. Says how it split them.
pub(crate) fn pin() -> Result<String, String> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is an empty set; the calls only read and fill the sets
    // given, of the size given.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return Err(format!("--pin: {}", std::io::Error::last_os_error()));
        }
        let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&core| libc::CPU_ISSET(core, &allowed))
            .collect();
        let Some((&generator, servers)) = cores.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err("--pin: needs 2 cores at least".into());
        };
        let mut own: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(generator, &mut own);
        if libc::sched_setaffinity(0, size, &own) != 0 {
            return Err(format!("--pin: {}", std::io::Error::last_os_error()));
        }
        let mut theirs: libc::cpu_set_t = std::mem::zeroed();
        servers
            .iter()
            .for_each(|&core| libc::CPU_SET(core, &mut theirs));
        let _ = SERVER_CORES.set(theirs);
        Ok(format!(
            "pinned: the servers on cores {servers:?}, the load generator on core {generator}"
        ))
    }
}

/// With `pin`, whether `child` runs on the servers' cores (and not on the load generator's).
fn check_pinned(child: &Child) -> Result<(), String> {
    let Some(cores) = SERVER_CORES.get() else {
        return Ok(());
    };
    // SAFETY: an all-zero cpu_set_t is an empty set; the kernel fills in `actual`, of the size
    // given; comparing two sets only reads them.
    unsafe {
        let mut actual: libc::cpu_set_t = std::mem::zeroed();
        let pid = child.id() as libc::pid_t;
        if libc::sched_getaffinity(pid, std::mem::size_of_val(&actual), &mut actual) != 0 {
            return Err(format!("--pin: {}", std::io::Error::last_os_error()));
        }
        match libc::CPU_EQUAL(&actual, cores) {
            true => Ok(()),
            false => Err("--pin: a server did not start on the servers' cores".into()),
        }
    }
}

/// Has `command` (and whatever it starts) run on the servers' cores, if `pin` split them.
fn on_server_cores(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    if let Some(&cores) = SERVER_CORES.get() {
        // SAFETY: between fork and exec the child calls sched_setaffinity alone: no allocation,
        // no lock.
        unsafe {
            command.pre_exec(move || {
                match libc::sched_setaffinity(0, std::mem::size_of_val(&cores), &cores) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    }
}
