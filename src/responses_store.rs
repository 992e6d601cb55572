//! [`ResponseStore`]: the Responses API's stored responses (`store: true`), for
//! `previous_response_id`, `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`.
//!
//! Each entry is the Response object and the conversation up to and including it (as chat
//! messages, without the request's `instructions`, which OpenAI does not carry over), owned by the
//! API key that created it: a lookup by another key finds nothing (a 404, as if it did not exist).
//!
//! - **In process** (the default): at most `max_entries` responses, the oldest dropped first, each
//!   kept for at most `ttl` — bounded memory, lost on restart, one replica only.
//! - **Redis** (the `redis` cargo feature, `[responses] redis_url`): one key per response
//!   (`obs:resp:{owner}:{id}`) with the TTL as its expiry, so a follow-up turn works on any
//!   replica. A write that fails is logged and the response is served anyway (a later
//!   `previous_response_id` to it is then a 404); a read that fails is a 503.
//!
//! ```
//! use open_bedrock_server::responses_store::{ResponseStore, StoredResponse};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = ResponseStore::in_memory(2, std::time::Duration::from_secs(60));
//! for id in ["resp_1", "resp_2", "resp_3"] {
//!     store.put(StoredResponse::new("key-1", json!({"id": id}), vec![])).await;
//! }
//! assert!(store.get("key-1", "resp_1").await.unwrap().is_none(), "the oldest was dropped");
//! assert!(store.get("key-1", "resp_3").await.unwrap().is_some());
//! assert!(store.get("key-2", "resp_3").await.unwrap().is_none(), "another key sees nothing");
//! assert!(store.delete("key-1", "resp_3").await.unwrap());
//! assert!(store.get("key-1", "resp_3").await.unwrap().is_none());
//! # });
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::GatewayError;

/// One stored response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredResponse {
    /// The [`ApiKeyId`](crate::auth::ApiKeyId) name of the key that created it.
    pub owner: String,
    /// The Response object as the client got it.
    pub response: Value,
    /// The conversation up to and including this response, as chat messages.
    pub conversation: Vec<Value>,
}

impl StoredResponse {
    /// A response `owner` created, with its conversation.
    pub fn new(owner: impl Into<String>, response: Value, conversation: Vec<Value>) -> Self {
        StoredResponse {
            owner: owner.into(),
            response,
            conversation,
        }
    }

    /// The response's id.
    pub fn id(&self) -> &str {
        self.response["id"].as_str().unwrap_or_default()
    }
}

/// Where stored responses live. Cheap to clone.
#[derive(Clone)]
pub struct ResponseStore {
    backend: Backend,
}

impl std::fmt::Debug for ResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("ResponseStore")
            .field("backend", &kind)
            .finish()
    }
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<Memory>>),
    #[cfg(feature = "redis")]
    Redis {
        conn: redis::aio::ConnectionManager,
        ttl: Duration,
    },
}

struct Memory {
    max_entries: usize,
    ttl: Duration,
    entries: HashMap<(String, String), (Instant, StoredResponse)>,
    order: VecDeque<(String, String)>,
}

/// The default bound of the in-process store.
pub const DEFAULT_MAX_STORED_RESPONSES: usize = 10_000;
/// The default time a stored response is kept.
pub const DEFAULT_STORED_RESPONSE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for ResponseStore {
    fn default() -> Self {
        ResponseStore::in_memory(DEFAULT_MAX_STORED_RESPONSES, DEFAULT_STORED_RESPONSE_TTL)
    }
}

#[cfg(feature = "redis")]
fn unavailable(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::overloaded(format!("The response store is unavailable: {e}"))
}

impl ResponseStore {
    /// An in-process store of at most `max_entries` responses (the oldest dropped first), each
    /// kept for `ttl`.
    pub fn in_memory(max_entries: usize, ttl: Duration) -> Self {
        ResponseStore {
            backend: Backend::Memory(Arc::new(Mutex::new(Memory {
                max_entries: max_entries.max(1),
                ttl,
                entries: HashMap::new(),
                order: VecDeque::new(),
            }))),
        }
    }

    /// A store in the Redis at `url`, each response expiring after `ttl` (connected lazily, so a
    /// Redis that is down at start-up does not stop the gateway).
    #[cfg(feature = "redis")]
    pub fn redis(url: &str, ttl: Duration) -> Result<Self, GatewayError> {
        let client = redis::Client::open(url)
            .map_err(|e| GatewayError::internal(format!("responses.redis_url: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| GatewayError::internal(format!("responses.redis_url: {e}")))?;
        Ok(ResponseStore {
            backend: Backend::Redis { conn, ttl },
        })
    }

    fn lock(memory: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
        memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `stored` under its owner and id (a failure is logged: the response was served).
    pub async fn put(&self, stored: StoredResponse) {
        let key = (stored.owner.clone(), stored.id().to_owned());
        match &self.backend {
            Backend::Memory(memory) => {
                let mut m = Self::lock(memory);
                let now = Instant::now();
                if m.entries.insert(key.clone(), (now, stored)).is_none() {
                    m.order.push_back(key);
                }
                while m.entries.len() > m.max_entries {
                    let Some(oldest) = m.order.pop_front() else {
                        break;
                    };
                    m.entries.remove(&oldest);
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis { conn, ttl } => {
                let Ok(json) = serde_json::to_string(&stored) else {
                    return;
                };
                let mut conn = conn.clone();
                let result: Result<(), redis::RedisError> = redis::cmd("SET")
                    .arg(redis_key(&key.0, &key.1))
                    .arg(json)
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not store a response in Redis");
                }
            }
        }
    }

    /// Keeps `stored` without waiting: at once in process, on a spawned task for Redis (for the
    /// end of a stream, which cannot wait).
    pub fn put_detached(&self, stored: StoredResponse) {
        match &self.backend {
            Backend::Memory(_) => {
                // The in-process store never waits: the future is ready at its first poll.
                let store = self.clone();
                futures_util::FutureExt::now_or_never(async move { store.put(stored).await });
            }
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => {
                let store = self.clone();
                tokio::spawn(async move { store.put(stored).await });
            }
        }
    }

    /// The response `id` that `owner` stored, if it is there (expired or another key's: `None`).
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<StoredResponse>, GatewayError> {
        match &self.backend {
            Backend::Memory(memory) => {
                let mut m = Self::lock(memory);
                let key = (owner.to_owned(), id.to_owned());
                let ttl = m.ttl;
                match m.entries.get(&key) {
                    Some((at, _)) if at.elapsed() > ttl => {
                        m.entries.remove(&key);
                        m.order.retain(|k| *k != key);
                        Ok(None)
                    }
                    Some((_, stored)) => Ok(Some(stored.clone())),
                    None => Ok(None),
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let json: Option<String> = redis::cmd("GET")
                    .arg(redis_key(owner, id))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
            }
        }
    }

    /// Removes the response `id` that `owner` stored; whether it was there.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<bool, GatewayError> {
        match &self.backend {
            Backend::Memory(memory) => {
                let mut m = Self::lock(memory);
                let key = (owner.to_owned(), id.to_owned());
                let found = m.entries.remove(&key).is_some();
                if found {
                    m.order.retain(|k| *k != key);
                }
                Ok(found)
            }
            #[cfg(feature = "redis")]
            Backend::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let n: u64 = redis::cmd("DEL")
                    .arg(redis_key(owner, id))
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                Ok(n > 0)
            }
        }
    }
}

#[cfg(feature = "redis")]
fn redis_key(owner: &str, id: &str) -> String {
    format!("obs:resp:{owner}:{id}")
}
