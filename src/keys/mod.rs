//! Virtual keys: who a request is, what it may use, and what it may spend.
//!
//! - [`KeyStore`] holds the gateway's keys — the `API_KEY` list (`key-1`, `key-2`, …) and the
//!   records of a keys file (`keys::file` format: TOML, keys only as SHA-256 hashes) — behind the one
//!   [`ValidateKey`](crate::auth::ValidateKey) policy of [`auth`](crate::auth), which attaches the
//!   key's [`KeyRecord`] to each request. The file is reloaded on SIGHUP and when it changes
//!   (`KeyStore::reload`, `KeyStore::watch`, with the `server` feature), atomically; a broken file keeps the old keys.
//! - [`KeyPolicyLayer`] sits between detection and translation, where the key and the requested
//!   model are both known and nothing has gone upstream yet: a model outside the key's allowlist
//!   is a 403 naming it, a key at its concurrency limit (requests and open streams) a 429, a key
//!   over a budget (USD per day or month, tokens per day) a 429 saying when it resets. Budgets
//!   are charged an estimate at admission and corrected from the real usage at the end; the
//!   counters live in this process or in Redis (shared by every replica). It also prices every
//!   call ([`crate::cost`]): the `x-gateway-cost` header, the access log, the metrics.
//!
//! ```
//! use open_bedrock_server::auth::ValidateKey;
//! use open_bedrock_server::keys::{KeyRecord, KeyStore, ModelPattern};
//!
//! let store = KeyStore::new(["legacy-key"]);
//! let mut team_a = KeyRecord::new("team-a");
//! team_a.models = Some(vec![ModelPattern::new("gpt-4o*")]);
//! store.replace([("sk-team-a", team_a)]).unwrap();
//!
//! let (id, record) = store.authenticate(b"sk-team-a").unwrap();
//! assert_eq!(&*id.0, "team-a");
//! let record = record.unwrap();
//! assert!(record.allows("gpt-4o-mini") && !record.allows("o3"));
//! // API_KEY keys keep working, with no limits of their own.
//! assert!(store.record("key-1").unwrap().allows("o3"));
//! ```

#[cfg(feature = "server")]
pub mod file;
mod info;
mod pattern;
mod period;
mod policy;
mod record;
mod reload;
mod store;

pub use info::KeyInfoService;
pub use pattern::ModelPattern;
pub(crate) use period::Periods;
pub use policy::{
    KeyPolicy, KeyPolicyFuture, KeyPolicyLayer, KeyPolicyService, DEFAULT_ESTIMATE_OUTPUT_TOKENS,
};
pub use record::{Budgets, KeyRecord};
pub use reload::ReloadSummary;
pub use store::KeyStore;

/// A fresh random key (`sk-obs-` and 48 characters of base 62) and its keys-file line,
/// `sha256 = "…"`: what `open-bedrock-server keys new` prints.
///
/// ```
/// let (key, line) = open_bedrock_server::keys::new_key();
/// assert!(key.starts_with("sk-obs-") && key.len() == 55);
/// assert_eq!(line, open_bedrock_server::keys::hash_line(&key));
/// ```
pub fn new_key() -> (String, String) {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let body: String = (0..48)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    let key = format!("sk-obs-{body}");
    let line = hash_line(&key);
    (key, line)
}

/// The keys-file line of `key`: `sha256 = "<SHA-256 of the key in hex>"`.
pub fn hash_line(key: &str) -> String {
    format!(
        "sha256 = \"{}\"",
        hex::encode(store::KeyHash::of(key.as_bytes()).0)
    )
}
