//! What the connections of one running server share: the output folder, the streams
//! that have a connection, the names of the streams on disk, and whom to tell when a
//! connection ends.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, Notify};

use super::auth::Digest;
use super::session::Session;
use super::SessionReport;

/// Called with the report of every connection that ends.
pub(super) type Reporter = Arc<dyn Fn(&SessionReport) + Send + Sync>;

/// The streams that have a connection, and the names of those on disk, told apart from
/// names that differ in case only (which a case-insensitive filesystem would take for
/// the same files).
#[derive(Default)]
struct Table {
    /// The streams that have a connection, by id in lower case.
    sessions: HashMap<String, Arc<AsyncMutex<Session>>>,
    /// The ids of the streams whose files are in the folder.
    on_disk: HashSet<String>,
    /// The same, by id in lower case.
    on_disk_folded: HashMap<String, String>,
}

impl Table {
    fn add_on_disk(&mut self, id: &str) {
        if self.on_disk.insert(id.to_string()) {
            self.on_disk_folded
                .entry(id.to_ascii_lowercase())
                .or_insert_with(|| id.to_string());
        }
    }

    /// The stream, other than `id`, whose id differs from `id` in case only, if any.
    fn case_twin(&self, id: &str, folded: &str) -> Option<String> {
        if self.on_disk.contains(id) {
            return None;
        }
        self.on_disk_folded.get(folded).cloned()
    }
}

/// State shared by the connections of one running server.
pub(super) struct Shared {
    /// Folder of the streams' files.
    out: PathBuf,
    /// The streams that have a connection, and the names on disk. No file is read or
    /// written while it is locked.
    table: Mutex<Table>,
    /// Connections accepted so far: numbers them from 1.
    connections: AtomicU64,
    /// Told of every connection that ends.
    reporter: Option<Reporter>,
}

impl Shared {
    /// No stream yet, writing to `out` (whose streams' names are read once, here).
    pub(super) fn new(out: PathBuf, reporter: Option<Reporter>) -> Shared {
        let mut table = Table::default();
        if let Ok(entries) = std::fs::read_dir(&out) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let stem = name
                    .strip_suffix(".wav")
                    .or_else(|| name.strip_suffix(".jsonl"));
                if let Some(stem) = stem {
                    table.add_on_disk(stem);
                }
            }
        }
        Shared {
            out,
            table: Mutex::new(table),
            connections: AtomicU64::new(0),
            reporter,
        }
    }

    /// A number for a new connection, never given before by this server (from 1).
    pub(super) fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the stream `id` for connection `conn` (from memory, else from disk), and
    /// wakes the connection that had it, if any. `key`: the digest of a new stream's key
    /// (see [`Session::bind_key`]); a connection whose key the stream refuses neither
    /// takes it nor wakes anyone.
    ///
    /// A stream read from disk is read by a blocking task, its entry in the table
    /// locked meanwhile: other connections of the same stream wait for it, those of
    /// other streams do not. An id that differs in case only from a stream's in the
    /// table or on disk is refused.
    pub(super) async fn attach(
        &self,
        id: &str,
        named: bool,
        key: Option<Digest>,
        conn: u64,
        kick: &Arc<Notify>,
    ) -> io::Result<Arc<AsyncMutex<Session>>> {
        let folded = id.to_ascii_lowercase();
        let twin = |other: &str| {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("stream id {id} differs only in case from the stream {other}"),
            )
        };
        loop {
            let (entry, to_load) = {
                let mut table = self.table();
                if let Some(other) = table.case_twin(id, &folded) {
                    return Err(twin(&other));
                }
                match table.sessions.get(&folded) {
                    Some(entry) => (entry.clone(), None),
                    None => {
                        let entry = Arc::new(AsyncMutex::new(Session::new(&self.out, id, named)));
                        // A new mutex: never locked yet.
                        let Ok(guard) = entry.clone().try_lock_owned() else {
                            continue;
                        };
                        table.sessions.insert(folded.clone(), entry.clone());
                        (entry, Some(guard))
                    }
                }
            };
            if let Some(mut guard) = to_load {
                let loaded = tokio::task::spawn_blocking(move || {
                    let result = guard.load();
                    (guard, result)
                })
                .await;
                let error = match loaded {
                    Ok((_, Ok(()))) => None,
                    Ok((_, Err(e))) => Some(e),
                    Err(_) => Some(io::Error::other("reading the stream's files failed")),
                };
                if let Some(e) = error {
                    // Still `detached`: whoever waits for it looks again.
                    self.forget(&folded, &entry);
                    return Err(e);
                }
            }
            let mut s = entry.lock().await;
            if s.detached {
                // Its last connection let go of it in the meantime, or it could not be
                // read: look again.
                continue;
            }
            if s.id != id {
                return Err(twin(&s.id));
            }
            s.bind_key(key)?;
            if let Some(old) = s.owner_kick.replace(kick.clone()) {
                old.notify_one();
            }
            s.owner = conn;
            s.connections += 1;
            drop(s);
            return Ok(entry);
        }
    }

    /// Forgets `entry` (its files are closed when the last holder drops it).
    pub(super) fn detach(&self, id: &str, entry: &Arc<AsyncMutex<Session>>) {
        let on_disk = self.out.join(format!("{id}.jsonl")).exists();
        let mut table = self.table();
        if on_disk {
            table.add_on_disk(id);
        }
        self.forget_in(&mut table, &id.to_ascii_lowercase(), entry);
    }

    fn forget(&self, folded: &str, entry: &Arc<AsyncMutex<Session>>) {
        self.forget_in(&mut self.table(), folded, entry);
    }

    fn forget_in(&self, table: &mut Table, folded: &str, entry: &Arc<AsyncMutex<Session>>) {
        if table
            .sessions
            .get(folded)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            table.sessions.remove(folded);
        }
    }

    /// Tells the reporter, if any, how a connection ended.
    pub(super) fn report(&self, report: &SessionReport) {
        if let Some(report_to) = &self.reporter {
            report_to(report);
        }
    }
}
