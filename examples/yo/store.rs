//! What the demo keeps on disk: users, every yo, and the key that signs session cookies, in
//! one small JSON file. So a restarted server still knows who is logged in, and a page can
//! fetch the yos it missed while the server was down.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use axum_extra::extract::cookie::Key;
use serde::{Deserialize, Serialize};

/// One yo, as stored, fetched and sent in JSON events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Yo {
    /// Its own id, kept across restarts: pages de-duplicate by it.
    pub id: u64,
    /// Who sent it.
    pub from: String,
    /// Who it is for.
    pub to: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub at: u64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    /// 64 random bytes; a fresh file gets a fresh key.
    cookie_key: Vec<u8>,
    users: BTreeSet<String>,
    yos: Vec<Yo>,
}

/// The demo's state, saved to its file after every change.
pub struct Store {
    path: PathBuf,
    saved: Mutex<Saved>,
    cookie_key: Key,
}

impl Store {
    /// Loads `path`, or starts empty (with a new cookie key) when it does not exist yet.
    pub fn open(path: &Path) -> io::Result<Store> {
        let saved = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Saved {
                cookie_key: Key::generate().master().to_vec(),
                users: BTreeSet::new(),
                yos: Vec::new(),
            },
            Err(e) => return Err(e),
        };
        let cookie_key = Key::try_from(&saved.cookie_key[..]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: cookie key: {e}", path.display()),
            )
        })?;
        let store = Store {
            path: path.to_owned(),
            saved: Mutex::new(saved),
            cookie_key,
        };
        store.save(&store.lock())?;
        Ok(store)
    }

    /// The key that signs session cookies.
    pub fn cookie_key(&self) -> Key {
        self.cookie_key.clone()
    }

    /// Remembers that `user` logged in.
    pub fn add_user(&self, user: &str) -> io::Result<()> {
        let mut saved = self.lock();
        if saved.users.insert(user.to_owned()) {
            self.save(&saved)?;
        }
        Ok(())
    }

    /// Everyone who ever logged in, by name.
    pub fn users(&self) -> Vec<String> {
        self.lock().users.iter().cloned().collect()
    }

    /// Whether `user` ever logged in.
    pub fn knows(&self, user: &str) -> bool {
        self.lock().users.contains(user)
    }

    /// Stores a yo and gives it the next id. It is on disk when this returns.
    pub fn add_yo(&self, from: &str, to: &str) -> io::Result<Yo> {
        let mut saved = self.lock();
        let yo = Yo {
            id: saved.yos.last().map_or(1, |last| last.id + 1),
            from: from.to_owned(),
            to: to.to_owned(),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        saved.yos.push(yo.clone());
        self.save(&saved)?;
        Ok(yo)
    }

    /// The last `n` yos that pass `keep`, oldest first.
    pub fn recent_yos(&self, n: usize, keep: impl Fn(&Yo) -> bool) -> Vec<Yo> {
        let saved = self.lock();
        let mut recent: Vec<Yo> = saved
            .yos
            .iter()
            .rev()
            .filter(|yo| keep(yo))
            .take(n)
            .cloned()
            .collect();
        recent.reverse();
        recent
    }

    fn lock(&self) -> MutexGuard<'_, Saved> {
        self.saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a new file and renames it over the old one, so a crash leaves one or the other.
    /// Called under the lock, so saves happen in the order of the changes. The file is small.
    fn save(&self, saved: &Saved) -> io::Result<()> {
        let fresh = self.path.with_extension("json.new");
        std::fs::write(&fresh, serde_json::to_vec(saved)?)?;
        std::fs::rename(&fresh, &self.path)
    }
}
