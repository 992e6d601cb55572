//! Reloading the keys file: on demand ([`KeyStore::reload`], which the binary calls on SIGHUP)
//! and when it changes ([`KeyStore::watch`]).
//!
//! A reload parses the whole file and swaps the new set in at once (`arc-swap`): a request sees
//! the old keys or the new ones, never a mix, connections stay open, and a request already in
//! flight keeps the record it was admitted with. A file that does not parse, or breaks a rule
//! (duplicate ids or hashes, a bad field), changes nothing: the old keys stay and the reason is
//! logged.
//!
//! The watcher polls the file's metadata (modification time, length, inode) rather than using
//! inotify: a Kubernetes ConfigMap or Secret volume replaces the file by swapping a symlink, editors
//! write by rename, and network file systems send no events — a stat every few seconds sees all of
//! them, with no extra dependency.

#[cfg(feature = "server")]
use std::time::Duration;
use std::time::SystemTime;

#[cfg(feature = "server")]
use super::store::lock;
#[cfg(feature = "server")]
use super::KeyStore;

/// What a file looked like when it was last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

#[cfg(feature = "server")]
fn stamp(path: &std::path::Path) -> std::io::Result<FileStamp> {
    let meta = std::fs::metadata(path)?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadSummary {
    /// Keys in the file now.
    pub keys: usize,
    /// Ids that were not there before.
    pub added: Vec<String>,
    /// Ids that are gone.
    pub removed: Vec<String>,
}

#[cfg(feature = "server")]
impl KeyStore {
    /// A store of the `API_KEY` keys `static_keys` and the keys file at `path`, read now (an error
    /// stops start-up); `default_max_concurrent` applies to file keys without their own.
    pub fn from_file<I, K>(
        static_keys: I,
        path: impl Into<std::path::PathBuf>,
        default_max_concurrent: Option<usize>,
    ) -> Result<KeyStore, String>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let path = path.into();
        let store = KeyStore::with_file(crate::auth::StaticKeys::new(static_keys), Some(path));
        *lock(&store.inner().default_max_concurrent) = default_max_concurrent;
        store.load_file(true)?;
        Ok(store)
    }

    /// Reads the keys file again and swaps its keys in. On an error the old keys stay (and the
    /// error is returned, and logged).
    pub fn reload(&self) -> Result<ReloadSummary, String> {
        self.load_file(true)
    }

    /// Reloads when the file's modification time, length or inode changed since it was last read.
    /// `Ok(None)` when unchanged.
    pub fn reload_if_changed(&self) -> Result<Option<ReloadSummary>, String> {
        let Some(path) = &self.inner().file else {
            return Ok(None);
        };
        let now = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if lock(&self.inner().reloading).as_ref() == Some(&now) {
            return Ok(None);
        }
        self.load_file(false).map(Some)
    }

    fn load_file(&self, forced: bool) -> Result<ReloadSummary, String> {
        let inner = self.inner();
        let Some(path) = &inner.file else {
            return Err("no keys file is configured".into());
        };
        let mut last = lock(&inner.reloading);
        let result = (|| {
            let before = stamp(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            // Whatever the outcome, this version of the file has been seen.
            *last = Some(before);
            let default = *lock(&inner.default_max_concurrent);
            super::file::parse(&text, &self.reserved_ids(), default)
                .map_err(|e| format!("{}: {e}", path.display()))
        })();
        let set = match result {
            Ok(set) => set,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "keys file not loaded; the previous keys stay in force");
                return Err(e);
            }
        };
        let old = inner.keys.load();
        let mut added: Vec<String> = set
            .ids()
            .filter(|id| !old.has(id))
            .map(str::to_owned)
            .collect();
        let mut removed: Vec<String> = old
            .ids()
            .filter(|id| !set.has(id))
            .map(str::to_owned)
            .collect();
        added.sort();
        removed.sort();
        let summary = ReloadSummary {
            keys: set.len(),
            added,
            removed,
        };
        drop(old);
        self.swap(set);
        tracing::info!(
            file = %path.display(),
            keys = summary.keys,
            added = ?summary.added,
            removed = ?summary.removed,
            forced,
            "keys loaded"
        );
        Ok(summary)
    }

    /// Checks the keys file every `every` and reloads it when it changed, until the store (every
    /// clone of it) is dropped. Needs a Tokio runtime.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = std::sync::Arc::downgrade(self.inner());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = KeyStore::from_inner(inner);
                // Errors are logged where they happen; the old keys stay.
                let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
            }
        })
    }
}
