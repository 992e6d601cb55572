//! [`KeyStore`]: the gateway's keys — the `API_KEY` list and the keys file's records — behind one
//! [`ValidateKey`] policy, swapped atomically on reload.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::KeyRecord;
use crate::auth::{ApiKeyId, StaticKeys, ValidateKey};

/// A SHA-256 digest of a key. Equality is constant-time; the map hashes it with the process's
/// random SipHash key, so a lookup's timing tells nothing an attacker can steer.
#[derive(Clone, Copy)]
pub(crate) struct KeyHash(pub(crate) [u8; 32]);

impl KeyHash {
    pub(crate) fn of(key: &[u8]) -> KeyHash {
        KeyHash(Sha256::digest(key).into())
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for KeyHash {}

impl Hash for KeyHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// One version of the file's keys, by hash and by id.
#[derive(Default)]
pub(crate) struct KeySet {
    by_hash: HashMap<KeyHash, Arc<KeyRecord>>,
    by_id: HashMap<Arc<str>, Arc<KeyRecord>>,
}

// By hand: the hashes stay out of logs.
impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.by_id.len())
            .finish()
    }
}

impl KeySet {
    /// The set of `keys`, each with its hash: ids and hashes must be unique, and no id may be one
    /// of the `reserved` ids (the `API_KEY` keys' `key-1`, …).
    pub(crate) fn new(
        keys: Vec<(KeyHash, KeyRecord)>,
        reserved: &[ApiKeyId],
    ) -> Result<KeySet, String> {
        let mut set = KeySet::default();
        for (hash, record) in keys {
            let id = record.id.0.clone();
            if reserved.contains(&record.id) {
                return Err(format!(
                    "key id `{id}` is taken by an API_KEY key (they are named key-1, key-2, …)"
                ));
            }
            let record = Arc::new(record);
            if set.by_id.insert(id.clone(), record.clone()).is_some() {
                return Err(format!("key id `{id}` appears twice"));
            }
            if set.by_hash.insert(hash, record).is_some() {
                return Err(format!("key `{id}` has the same sha256 as another key"));
            }
        }
        Ok(set)
    }

    /// How many keys.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The ids.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(|k| &**k)
    }

    /// Whether `id` is one of them.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn has(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
}

/// What the store checks presented keys against: the `API_KEY` keys (named `key-1`, `key-2`, …,
/// compared in constant time as [`StaticKeys`] does) and the keys file's records (looked up by the
/// SHA-256 of the presented key). Cheap to clone; every clone sees a reload at once.
///
/// ```
/// use std::sync::Arc;
/// use open_bedrock_server::auth::ValidateKey;
/// use open_bedrock_server::keys::{KeyRecord, KeyStore};
///
/// let store = KeyStore::new(["legacy-key"]);
/// let mut team_a = KeyRecord::new("team-a");
/// team_a.team = Some("a".into());
/// store.replace([("sk-team-a", team_a)]).unwrap();
/// assert_eq!(store.validate(b"legacy-key").unwrap().0.as_ref(), "key-1");
/// let (id, record) = store.authenticate(b"sk-team-a").unwrap();
/// assert_eq!((id.0.as_ref(), record.unwrap().team.as_deref()), ("team-a", Some("a")));
/// assert!(store.validate(b"sk-team-b").is_none());
/// ```
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Inner {
    statics: StaticKeys,
    static_records: Vec<Arc<KeyRecord>>,
    pub(crate) keys: ArcSwap<KeySet>,
    /// The keys file, when there is one.
    pub(crate) file: Option<PathBuf>,
    /// Serialises reloads (SIGHUP and the file watcher may race); holds what the last one read.
    pub(crate) reloading: Mutex<Option<super::reload::FileStamp>>,
    /// `max_concurrent` of file keys without their own.
    pub(crate) default_max_concurrent: Mutex<Option<usize>>,
}

impl KeyStore {
    /// A store of the `API_KEY` keys `static_keys` (named `key-1`, `key-2`, … in order) and no file.
    pub fn new<I, K>(static_keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        KeyStore::with_file(StaticKeys::new(static_keys), None)
    }

    pub(crate) fn with_file(statics: StaticKeys, file: Option<PathBuf>) -> Self {
        let static_records = (1..=statics.len())
            .map(|i| Arc::new(KeyRecord::new(format!("key-{i}"))))
            .collect();
        KeyStore {
            inner: Arc::new(Inner {
                statics,
                static_records,
                keys: ArcSwap::from_pointee(KeySet::default()),
                file,
                reloading: Mutex::new(None),
                default_max_concurrent: Mutex::new(None),
            }),
        }
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        KeyStore { inner }
    }

    /// The ids the `API_KEY` keys take.
    pub(crate) fn reserved_ids(&self) -> Vec<ApiKeyId> {
        self.inner
            .static_records
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    /// Replaces the non-`API_KEY` keys with `keys` (each a plain key and its record) at once. The
    /// keys file holds hashes instead; this is for embedders that keep keys elsewhere.
    pub fn replace<I, K>(&self, keys: I) -> Result<usize, String>
    where
        I: IntoIterator<Item = (K, KeyRecord)>,
        K: AsRef<[u8]>,
    {
        let keys = keys
            .into_iter()
            .map(|(k, r)| (KeyHash::of(k.as_ref()), r))
            .collect();
        let set = KeySet::new(keys, &self.reserved_ids())?;
        let n = set.len();
        self.swap(set);
        Ok(n)
    }

    pub(crate) fn swap(&self, set: KeySet) {
        self.inner.keys.store(Arc::new(set));
    }

    /// The record of the key `id` (an `API_KEY` key or the file's), if there is one.
    pub fn record(&self, id: &str) -> Option<Arc<KeyRecord>> {
        if let Some(r) = self.inner.static_records.iter().find(|r| &*r.id.0 == id) {
            return Some(r.clone());
        }
        self.inner.keys.load().by_id.get(id).cloned()
    }

    /// The file's (or [`replace`](Self::replace)'s) records now.
    pub fn records(&self) -> Vec<Arc<KeyRecord>> {
        self.inner.keys.load().by_id.values().cloned().collect()
    }

    /// How many keys the file (or [`replace`](Self::replace)) provides now.
    pub fn file_keys(&self) -> usize {
        self.inner.keys.load().len()
    }

    /// Whether any key is configured at all.
    pub fn is_empty(&self) -> bool {
        self.inner.statics.is_empty() && self.file_keys() == 0 && self.inner.file.is_none()
    }
}

impl ValidateKey for KeyStore {
    fn validate(&self, presented: &[u8]) -> Option<ApiKeyId> {
        self.authenticate(presented).map(|(id, _)| id)
    }

    /// An `API_KEY` key first (constant time over all of them), then the file's by hash.
    fn authenticate(&self, presented: &[u8]) -> Option<(ApiKeyId, Option<Arc<KeyRecord>>)> {
        if let Some(id) = self.inner.statics.validate(presented) {
            let record = self.record(&id.0);
            return Some((id, record));
        }
        let keys = self.inner.keys.load();
        keys.by_hash
            .get(&KeyHash::of(presented))
            .map(|r| (r.id.clone(), Some(r.clone())))
    }

    fn record_of(&self, id: &ApiKeyId) -> Option<Arc<KeyRecord>> {
        self.record(&id.0)
    }
}

// By hand: the API_KEY keys are secrets.
impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("api_keys", &self.inner.statics.len())
            .field("file", &self.inner.file)
            .field("file_keys", &self.file_keys())
            .finish()
    }
}

/// Lets a poisoned lock be used anyway: the data it guards is replaced whole.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hashes_are_unique_and_reserved_ids_are_refused() {
        let store = KeyStore::new(["a"]);
        let e = store.replace([("x", KeyRecord::new("key-1"))]).unwrap_err();
        assert!(e.contains("API_KEY"), "{e}");
        let e = store
            .replace([("x", KeyRecord::new("t")), ("y", KeyRecord::new("t"))])
            .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = store
            .replace([("x", KeyRecord::new("t")), ("x", KeyRecord::new("u"))])
            .unwrap_err();
        assert!(e.contains("same sha256"), "{e}");
        assert_eq!(store.replace([("x", KeyRecord::new("t"))]).unwrap(), 1);
        assert!(store.record("t").is_some() && store.record("key-1").is_some());
        let clone = store.clone();
        store.replace(Vec::<(&str, KeyRecord)>::new()).unwrap();
        assert!(clone.validate(b"x").is_none(), "clones see the swap");
        assert!(!format!("{store:?}").contains("\"a\""));
    }
}
