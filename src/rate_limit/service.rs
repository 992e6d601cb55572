//! [`RateLimit`]: the middleware.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::future::ResponseFuture;
use super::limiter::Check;
use super::{RateLimitLayer, RateLimiter};
use crate::auth::ApiKeyId;
use crate::body::Body;
use crate::error::ErrorDialect;
use crate::usage::UsageHooks;

/// Middleware that counts each request against its key's limits (by the [`ApiKeyId`] extension,
/// `anonymous` without one) and answers a request over them with a 429 *response*, never an error
/// and never a delay. Every response carries the `x-ratelimit-*` headers.
///
/// The check happens in `call`, not in `poll_ready`: readiness is the inner service's alone. With
/// the Redis backend the inner service is cloned in `call` (the ready one moves into the future and
/// is called once Redis has answered), hence `S: Clone`.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
    dialect: ErrorDialect,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        RateLimit {
            inner,
            limiter,
            dialect: ErrorDialect::OpenAi,
        }
    }

    /// A [`RateLimitLayer`] for `limiter`.
    pub fn layer(limiter: RateLimiter) -> RateLimitLayer {
        RateLimitLayer::new(limiter)
    }

    /// Renders rejections in `dialect` (default OpenAI).
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let key = self.limiter.key_of(req.extensions().get::<ApiKeyId>());
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
