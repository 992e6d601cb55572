//! [`RateLimitLayer`].

use tower_layer::Layer;

use super::{ByApiKeyId, ExtractKey, RateLimit, RateLimiter};
use crate::error::ErrorDialect;

/// Layer that applies [`RateLimit`], counting requests under the key `K` extracts. Every service it
/// builds shares the limiter's state.
#[derive(Debug, Clone)]
pub struct RateLimitLayer<K = ByApiKeyId> {
    limiter: RateLimiter,
    dialect: ErrorDialect,
    extractor: K,
}

impl RateLimitLayer {
    /// Checks requests against `limiter`, each under its [`ApiKeyId`](crate::auth::ApiKeyId).
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            limiter,
            dialect: ErrorDialect::OpenAi,
            extractor: ByApiKeyId,
        }
    }
}

impl<K> RateLimitLayer<K> {
    /// Counts requests under the key `extractor` names (an [`ExtractKey`], e.g. a closure)
    /// instead.
    pub fn key_extractor<K2: ExtractKey>(self, extractor: K2) -> RateLimitLayer<K2> {
        RateLimitLayer {
            limiter: self.limiter,
            dialect: self.dialect,
            extractor,
        }
    }

    /// Renders rejections in `dialect` (default OpenAI) when the request carries no
    /// [`ErrorDialect`] extension.
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The limiter, e.g. to [`charge_tokens`](RateLimiter::charge_tokens) once a reply's usage is known.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S, K: Clone> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone())
            .key_extractor(self.extractor.clone())
            .dialect(self.dialect)
    }
}
