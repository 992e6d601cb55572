//! [`RateLimit`]: the middleware.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::limiter::Check;
use super::{ByApiKeyId, ExtractKey, RateLimitLayer, RateLimiter};
use crate::auth::ApiKeyId;
use crate::error::ErrorDialect;
use crate::usage::UsageHooks;

/// Middleware that counts each request against its key's limits (the key `K` extracts: by default
/// the [`ApiKeyId`] extension, `anonymous` without one) and answers a request over them with a 429
/// *response*, never an error and never a delay, in the request's [`ErrorDialect`] extension, else
/// the configured one. Every response carries the `x-ratelimit-*` headers.
///
/// The check happens in `call`, not in `poll_ready`: readiness is the inner service's alone. With
/// the Redis backend the inner service is cloned in `call` (the ready one moves into the future and
/// is called once Redis has answered), hence `S: Clone`.
#[derive(Debug, Clone)]
pub struct RateLimit<S, K = ByApiKeyId> {
    inner: S,
    limiter: RateLimiter,
    dialect: ErrorDialect,
    extractor: K,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`, counting requests under their [`ApiKeyId`].
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimit {
            inner,
            limiter,
            dialect: ErrorDialect::OpenAi,
            extractor: ByApiKeyId,
        }
    }

    /// A [`RateLimitLayer`] for `limiter`.
    pub fn layer(limiter: RateLimiter) -> RateLimitLayer {
        RateLimitLayer::new(limiter)
    }
}

impl<S, K> RateLimit<S, K> {
    /// Counts requests under the key `extractor` names instead.
    pub fn key_extractor<K2>(self, extractor: K2) -> RateLimit<S, K2> {
        RateLimit {
            inner: self.inner,
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

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    crate::macros::define_inner_service_accessors!();
}

impl<S, K, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, K>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    K: ExtractKey,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let key = self
            .limiter
            .key_of(self.extractor.key(req.headers(), req.extensions()));
        if self.limiter.has_token_budget(&key) {
            // Charge the reply's tokens once translation knows them.
            let (limiter, id) = (self.limiter.clone(), ApiKeyId(key.clone()));
            let hooks = req.extensions_mut().get_or_insert_default::<UsageHooks>();
            hooks.push(move |usage| limiter.charge_tokens(&id, usage.total_tokens));
        }
        let dialect = req
            .extensions()
            .get::<ErrorDialect>()
            .copied()
            .unwrap_or(self.dialect);
        match self.limiter.check(&key) {
            Check::Ready(decision) => match decision.rejection(dialect) {
                Some(res) => ResponseFuture::rejected(res),
                None => ResponseFuture::inner(self.inner.call(req), decision),
            },
            Check::Pending(check) => {
                // The polled-ready service goes with the request; this one keeps a fresh clone.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, ready, req, dialect)
            }
        }
    }
}
