//! The PostgreSQL the benchmark starts: Debian's `initdb`, then `postgres` on a free loopback
//! port, in a temporary directory removed when dropped, as `tests/postgres_server.rs` does (as
//! root, both run as the `postgres` user, since Postgres refuses to run as root). Unlike the
//! tests' server, it keeps Postgres's defaults, `fsync` and `synchronous_commit` on, as a real
//! deployment would: only the port, the socket directory, `listen_addresses` and
//! `max_connections` (200, for 64 publishers' connections beside the engine's pools) are set.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::servers::{cpu_of, free_port, stat_fields, Error};

/// A `postgres` of the benchmark's own, stopped (with every process of it) when dropped.
pub(crate) struct Postgres {
    pub(crate) url: String,
    /// Its version, as `postgres --version` says.
    pub(crate) version: String,
    postmaster: Child,
    dir: PathBuf,
}

impl Postgres {
    /// A new database cluster, started on a free port.
    pub(crate) async fn start() -> Result<Postgres, Error> {
        let dir = std::env::temp_dir().join(format!("sse-bench-postgres-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if is_root()
            && !Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()?
                .success()
        {
            return Err(format!("cannot give {dir:?} to the postgres user").into());
        }
        let data = dir.join("data");
        let initdb = command("initdb")?
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()?;
        if !initdb.status.success() {
            let why = String::from_utf8_lossy(&initdb.stderr).into_owned();
            return Err(format!("initdb failed: {why}").into());
        }
        let version = command("postgres")?.arg("--version").output()?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        let port = free_port(|_| true)?;
        let postmaster = command("postgres")?
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let postgres = Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            version,
            postmaster,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while sqlx::PgPool::connect(&postgres.url).await.is_err() {
            if Instant::now() > deadline {
                return Err(format!("postgres did not accept connections on {port}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(postgres)
    }

    /// The CPU time of the whole server so far, user and system: the postmaster, the children
    /// it waited for (closed sessions), and its children alive (sessions, the WAL writer, the
    /// checkpointer, …).
    pub(crate) fn cpu(&self) -> Result<Duration, Error> {
        // The postmaster first: a child reaped meanwhile is then missed, never counted twice.
        let postmaster = self.postmaster.id();
        let mut total = cpu_of(postmaster)?;
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let parent = stat_fields(pid)
                .ok()
                .and_then(|f| f.get(1)?.parse::<u32>().ok());
            if parent == Some(postmaster) {
                // It may have exited since.
                total += cpu_of(pid).unwrap_or_default();
            }
        }
        Ok(total)
    }

    /// How long the disk under the data directory takes to make a write durable, as each
    /// commit waits for its WAL to be: 8 kB written and `fdatasync`ed 100 times, the median and
    /// the 90th percentile.
    pub(crate) fn flush_latency(&self) -> Result<(Duration, Duration), Error> {
        use std::io::{Seek, Write};

        let path = self.dir.join("flush-probe");
        let mut file = std::fs::File::create(&path)?;
        let page = [0x5a_u8; 8192];
        let mut took = Vec::new();
        for _ in 0..100 {
            let started = Instant::now();
            file.rewind()?;
            file.write_all(&page)?;
            file.sync_data()?;
            took.push(started.elapsed());
        }
        std::fs::remove_file(&path)?;
        took.sort();
        Ok((took[50], took[90]))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown: the postmaster ends every session, then itself.
        // SAFETY: kill only sends a signal to the process this program started.
        unsafe { libc::kill(self.postmaster.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.postmaster.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    unsafe { libc::geteuid() == 0 }
}

/// `program` of the newest PostgreSQL installed (Debian's `/usr/lib/postgresql/<version>/bin`),
/// run as the `postgres` user when this is root (`setpriv` execs it: its pid is the server's).
fn command(program: &str) -> Result<Command, Error> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("PostgreSQL is not installed (/usr/lib/postgresql: {e})"))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            Some((path.file_name()?.to_str()?.parse().ok()?, path))
        })
        .collect();
    versions.sort();
    let (_, newest) = versions.pop().ok_or("no PostgreSQL version installed")?;
    let program = newest.join("bin").join(program);
    Ok(match is_root() {
        true => {
            let mut command = Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            command
        }
        false => Command::new(program),
    })
}
