//! [`RateLimiter`]: the shared limiter state behind every clone of the layer, and the decision it
//! makes for one request.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::config::{Limits, RateLimitConfig};
use super::decision::Decision;
use super::memory::MemoryBackend;
#[cfg(feature = "redis")]
use super::redis::RedisBackend;
use super::RateLimitLayer;
use crate::auth::ApiKeyId;

/// The key requests are counted under when the key extractor names none (by default: requests
/// without an [`ApiKeyId`] extension).
pub const ANONYMOUS: &str = "anonymous";

/// A cloneable handle on one set of limits and their state. Every clone (and every layer and
/// service built from it) shares the same state: in this process for the memory backend, in
/// Redis for the Redis backend.
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    default: Limits,
    overrides: HashMap<Arc<str>, Limits>,
    anonymous: Arc<str>,
    backend: Backend,
}

/// Where the state lives. An enum, not a trait object: one static type, no vtable per request.
enum Backend {
    Memory(MemoryBackend),
    #[cfg(feature = "redis")]
    Redis(RedisBackend),
}

impl RateLimiter {
    /// A limiter for `config`: in Redis when `config.redis_url` is set (needs the `redis` cargo
    /// feature and a Tokio runtime; connects lazily, so a Redis that is down does not stop
    /// start-up), otherwise in this process.
    pub fn new(config: &RateLimitConfig) -> Result<Self, String> {
        config.validate()?;
        let default = config.default_limits()?;
        let overrides: HashMap<Arc<str>, Limits> = config
            .override_limits()?
            .into_iter()
            .map(|(k, v)| (Arc::from(k), v))
            .collect();
        let backend = match &config.redis_url {
            None => Backend::Memory(MemoryBackend::new(default, &overrides)),
            #[cfg(feature = "redis")]
            Some(url) => Backend::Redis(RedisBackend::new(url, config.redis_timeout())?),
            #[cfg(not(feature = "redis"))]
            Some(_) => {
                return Err(
                    "REDIS_URL is set for rate limiting, but this build has no `redis` feature"
                        .into(),
                )
            }
        };
        Ok(RateLimiter {
            shared: Arc::new(Shared {
                default,
                overrides,
                anonymous: Arc::from(ANONYMOUS),
                backend,
            }),
        })
    }

    /// A layer that checks every request against this limiter.
    pub fn layer(&self) -> RateLimitLayer {
        RateLimitLayer::new(self.clone())
    }

    /// Whether the state is in Redis (shared between processes) rather than in this process.
    pub fn is_shared(&self) -> bool {
        match self.shared.backend {
            Backend::Memory(_) => false,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => true,
        }
    }

    /// Charges `tokens` (a reply's prompt + completion tokens) to `key`'s token budget. Does
    /// nothing when the key has no budget. Never blocks: with Redis the charge is sent from a
    /// spawned task (bounded by the Redis timeout; a failure is logged and the charge dropped).
    ///
    /// A charge may take the budget below zero (usage is only known after the fact); the key's
    /// requests are then refused until enough of the budget has been replenished.
    pub fn charge_tokens(&self, key: &ApiKeyId, tokens: u64) {
        let limits = self.limits_for(&key.0);
        if limits.tokens_per_minute.is_none() || tokens == 0 {
            return;
        }
        match &self.shared.backend {
            Backend::Memory(m) => m.charge_tokens(&key.0, limits, tokens),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.spawn_charge_tokens(key.0.clone(), limits, tokens),
        }
    }

    /// Like [`charge_tokens`](Self::charge_tokens) but resolves once the charge has landed
    /// (tests, and callers that want the next request to see it).
    #[cfg(all(test, feature = "redis"))]
    pub(crate) async fn charge_tokens_settled(&self, key: &ApiKeyId, tokens: u64) {
        let limits = self.limits_for(&key.0);
        if limits.tokens_per_minute.is_none() || tokens == 0 {
            return;
        }
        match &self.shared.backend {
            Backend::Memory(m) => m.charge_tokens(&key.0, limits, tokens),
            Backend::Redis(r) => r.charge_tokens(key.0.clone(), limits, tokens).await,
        }
    }

    /// Whether `key` has a token budget (so its replies' usage must be charged).
    pub(crate) fn has_token_budget(&self, key: &Arc<str>) -> bool {
        self.limits_for(key).tokens_per_minute.is_some()
    }

    fn limits_for(&self, key: &Arc<str>) -> Limits {
        self.shared
            .overrides
            .get(key)
            .copied()
            .unwrap_or(self.shared.default)
    }

    /// The key a request is counted under: the extracted one, else [`ANONYMOUS`].
    pub(crate) fn key_of(&self, extracted: Option<Arc<str>>) -> Arc<str> {
        extracted.unwrap_or_else(|| self.shared.anonymous.clone())
    }

    /// Checks (and, when it conforms, counts) one request of `key`.
    pub(crate) fn check(&self, key: &Arc<str>) -> Check {
        let limits = self.limits_for(key);
        match &self.shared.backend {
            Backend::Memory(m) => Check::Ready(m.check(key, limits)),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => Check::Pending(Box::pin(r.check(key.clone(), limits))),
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.shared.backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &backend)
            .field("default", &self.shared.default)
            .field("overrides", &self.shared.overrides)
            .finish()
    }
}

/// A Redis check in flight. Boxed because the Redis client's futures cannot be named; the memory
/// backend never allocates one.
pub(crate) type CheckFuture = Pin<Box<dyn Future<Output = Decision> + Send + 'static>>;

/// The outcome of [`RateLimiter::check`]: known now (memory) or after a Redis round trip.
pub(crate) enum Check {
    Ready(Decision),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Pending(CheckFuture),
}
