//! [`RateLimitLayer`].

use tower_layer::Layer;

use super::{RateLimit, RateLimiter};
use crate::error::ErrorDialect;

/// Layer that applies [`RateLimit`]. Every service it builds shares the limiter's state.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    dialect: ErrorDialect,
}

impl RateLimitLayer {
    /// Checks requests against `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            limiter,
            dialect: ErrorDialect::OpenAi,
        }
    }

    /// Renders rejections in `dialect` (default OpenAI).
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The limiter, e.g. to [`charge_tokens`](RateLimiter::charge_tokens) once a reply's usage is known.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone()).dialect(self.dialect)
    }
}
