//! What the connections of one running server share: the output folder, the streams
//! that have a connection, and whom to tell when a connection ends.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, Notify};

use super::session::Session;
use super::SessionReport;

/// Called with the report of every connection that ends.
pub(super) type Reporter = Arc<dyn Fn(&SessionReport) + Send + Sync>;

/// State shared by the connections of one running server.
pub(super) struct Shared {
    /// Folder of the streams' files.
    out: PathBuf,
    /// The streams that have a connection, by id.
    sessions: Mutex<HashMap<String, Arc<AsyncMutex<Session>>>>,
    /// Connections accepted so far: numbers them from 1.
    connections: AtomicU64,
    /// Told of every connection that ends.
    reporter: Option<Reporter>,
}

impl Shared {
    /// No stream yet, writing to `out`.
    pub(super) fn new(out: PathBuf, reporter: Option<Reporter>) -> Shared {
        Shared {
            out,
            sessions: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            reporter,
        }
    }

    /// A number for a new connection, never given before by this server (from 1).
    pub(super) fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes the stream `id` for connection `conn` (from memory, else from disk), and
    /// wakes the connection that had it, if any.
    pub(super) async fn attach(
        &self,
        id: &str,
        named: bool,
        conn: u64,
        kick: &Arc<Notify>,
    ) -> io::Result<Arc<AsyncMutex<Session>>> {
        loop {
            let entry = {
                let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                match map.get(id) {
                    Some(entry) => entry.clone(),
                    None => {
                        let entry = Arc::new(AsyncMutex::new(Session::open(&self.out, id, named)?));
                        map.insert(id.to_string(), entry.clone());
                        entry
                    }
                }
            };
            let mut s = entry.lock().await;
            if s.detached {
                // Its last connection let go of it in the meantime: read it anew.
                continue;
            }
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
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
        }
    }

    /// Tells the reporter, if any, how a connection ended.
    pub(super) fn report(&self, report: &SessionReport) {
        if let Some(report_to) = &self.reporter {
            report_to(report);
        }
    }
}
