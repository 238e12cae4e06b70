//! A real PostgreSQL of the test's own: Debian's `initdb`, then `postgres` on a free loopback
//! port, in a temporary directory removed when dropped (with every process of the server).
//! As root, both run as the `postgres` user, which Debian's package creates (Postgres refuses
//! to run as root).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{net::TcpStream, process::Command};

use crate::{free_port, PATIENCE};

/// A `postgres` of the test's own, stopped (all its processes) when dropped.
pub struct PostgresServer {
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    process: Option<tokio::process::Child>,
}

/// Where Debian keeps the server's programs: `/usr/lib/postgresql/<version>/bin`, the newest.
fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test installs Debian's postgresql)");
    let mut dirs: Vec<PathBuf> = versions.map(|entry| entry.unwrap().path()).collect();
    dirs.sort_by_key(|dir| {
        let version = dir.file_name().unwrap().to_string_lossy().into_owned();
        version.parse::<u32>().unwrap_or(0)
    });
    dirs.pop().expect("a PostgreSQL version").join("bin")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// `program` of the server's, as the `postgres` user when this is root.
fn command(program: &str) -> Command {
    let program = bin_dir().join(program);
    match is_root() {
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
    }
}

impl PostgresServer {
    /// A new database cluster, started on a free port.
    pub async fn start() -> PostgresServer {
        let dir = std::env::temp_dir().join(format!(
            "sse-postgres-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let chown = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown postgres {dir:?}");
        }
        let initdb = command("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let mut server = PostgresServer {
            port: 0,
            dir,
            process: None,
        };
        for _ in 0..5 {
            if server.start_on(free_port()).await {
                return server;
            }
        }
        panic!("postgres did not start on any of 5 free ports");
    }

    /// Starts the server on `port`: `false` if it exited at once (the port was taken).
    async fn start_on(&mut self, port: u16) -> bool {
        let mut process = command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("postgres runs");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if process.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() && self.ready(port).await {
                self.port = port;
                self.process = Some(process);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("postgres never listened on {port}");
    }

    /// Whether it accepts connections (not only still starting up).
    async fn ready(&self, port: u16) -> bool {
        let options = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        sqlx::PgPool::connect(&options).await.is_ok()
    }

    /// Its `postgres://` URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A pool of connections of the test's own (as an app's).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url()).await.unwrap()
    }

    /// A hub of the test's own with `config`, on this database.
    pub fn hub(&self, config: sse::Config) -> sse::Hub {
        sse::Hub::connect(config.broker(&self.url()).unwrap()).unwrap()
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to every process of the server (the postmaster
    /// and its children, each a session of its own): stopped, it keeps its sockets open and
    /// answers nothing, as one cut off by a network partition.
    pub fn signal(&self, signal: &str) {
        let Some(pid) = self.process.as_ref().and_then(|p| p.id()) else {
            return;
        };
        let pid = pid.to_string();
        let _ = std::process::Command::new("pkill")
            .args(["--signal", signal, "-P", &pid])
            .status();
        let _ = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
    }

    /// Kills it, every process at once, as a crash would.
    pub async fn kill(&mut self) {
        self.signal("KILL");
        if let Some(mut process) = self.process.take() {
            let _ = process.wait().await;
        }
        // Its backends leave with the postmaster; the next start waits for their sockets.
        let pid_file = self.dir.join("data").join("postmaster.pid");
        let deadline = Instant::now() + PATIENCE;
        while pid_file.exists() && Instant::now() < deadline {
            let _ = std::fs::remove_file(&pid_file);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it and starts it again on the same port, with what it had committed.
    pub async fn restart(&mut self) {
        let port = self.port;
        self.kill().await;
        let deadline = Instant::now() + PATIENCE;
        while !self.start_on(port).await {
            assert!(Instant::now() < deadline, "postgres did not start again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
