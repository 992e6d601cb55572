//! Per-key rate limits: requests per minute with a burst, and an optional tokens-per-minute budget.
//!
//! [`RateLimitLayer`] sits after [`auth`](crate::auth) and counts each request under its
//! [`ApiKeyId`](crate::auth::ApiKeyId) (`anonymous` without one), or under the key an
//! [`ExtractKey`] policy (any `Fn(&HeaderMap, &Extensions) -> Option<Arc<str>>` closure) names. A
//! request over the limit gets a 429 *response* rendered by
//! [`GatewayError`](crate::error::GatewayError) in the request's
//! [`ErrorDialect`](crate::error::ErrorDialect) extension, else the layer's, with `Retry-After` (and
//! `retry-after-ms` in the OpenAI dialect); it is never delayed, and the check happens in `call`,
//! never in `poll_ready`. The layer is generic over request and response bodies (the 429 needs
//! `ResB: From<Bytes>`), so it goes straight onto an axum `Router`.
//!
//! ## The limit
//!
//! GCRA (a token bucket kept as one timestamp per key): a fresh key may send
//! `requests_per_minute + burst` requests back to back, then one every
//! `60 s / requests_per_minute`. Keys can get their own limits ([`KeyRateLimit`]).
//!
//! With a token budget (`tokens_per_minute`), the gateway calls [`RateLimiter::charge_tokens`]
//! once a reply's usage is known (e.g. when a stream ends). The budget replenishes continuously at
//! `tokens_per_minute` per minute; a charge may overdraw it, and while nothing is left the key's
//! requests get a 429 whose message mentions tokens. A request refused for tokens still counts
//! against the request rate (OpenAI counts refused requests too).
//!
//! ## Headers
//!
//! Every response, admitted or refused, carries OpenAI's headers:
//!
//! | Header | Value |
//! |---|---|
//! | `x-ratelimit-limit-requests` | `requests_per_minute + burst`: requests that may arrive back to back |
//! | `x-ratelimit-remaining-requests` | requests that would still be admitted right now |
//! | `x-ratelimit-reset-requests` | time until the bucket is full again, as OpenAI writes it (`250ms`, `1s`, `1m30.5s`), rounded up to the millisecond |
//! | `x-ratelimit-{limit,remaining,reset}-tokens` | the same for the token budget, when the key has one |
//!
//! `remaining` is exact. `reset` is exact with Redis and for refused requests; for admitted
//! requests on the memory backend it is `(limit − remaining) × 60 s / requests_per_minute`,
//! at most one interval late (governor does not expose its timestamp). When Redis could not be
//! consulted only `x-ratelimit-limit-requests` is sent: the request went through uncounted.
//!
//! ## Backends
//!
//! - **Memory** (default): `governor`'s keyed GCRA in this process, shared by every clone of the
//!   layer. Each gateway process has its own limit.
//! - **Redis** (cargo feature `redis`, set `redis_url` / `REDIS_URL`): the same GCRA in a Lua
//!   script run with `EVALSHA`, atomically on the Redis server and on its clock, so every process
//!   sharing the Redis shares one limit. Each call is bounded by `redis_timeout_ms` (default
//!   100 ms); on an error or timeout the request is let through (fail open) and a warning is
//!   logged, at most one every 10 s.
//!
//! ```
//! use std::num::NonZeroU32;
//! use open_bedrock_server::body::Body;
//! use open_bedrock_server::rate_limit::{RateLimitConfig, RateLimiter};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test_block_on(async {
//! let mut config = RateLimitConfig::new(NonZeroU32::new(1).unwrap());
//! config.burst = 1; // two back to back, then one a minute
//! let limiter = RateLimiter::new(&config).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(limiter.layer())
//!     .service_fn(|_req: http::Request<Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     });
//! let req = || http::Request::post("/v1/chat/completions").body(Body::empty()).unwrap();
//!
//! let res = svc.clone().oneshot(req()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["x-ratelimit-limit-requests"], "2");
//! assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "1");
//! assert_eq!(svc.clone().oneshot(req()).await.unwrap().status(), 200);
//!
//! let res = svc.oneshot(req()).await.unwrap();
//! assert_eq!(res.status(), 429);
//! assert_eq!(res.headers()["retry-after"], "60");
//! assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "0");
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod config;
mod decision;
mod future;
mod key;
mod layer;
mod limiter;
mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod service;
pub(crate) mod spend;

pub use config::{KeyRateLimit, RateLimitConfig, DEFAULT_REDIS_TIMEOUT};
pub use future::ResponseFuture;
pub use key::{ByApiKeyId, ExtractKey};
pub use layer::RateLimitLayer;
pub use limiter::{RateLimiter, ANONYMOUS};
pub use service::RateLimit;

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::num::{NonZeroU32, NonZeroU64};
    use std::sync::Arc;
    use std::time::Duration;

    use http::{Request, Response};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use tower_layer::Layer;
    use tower_service::Service;

    use crate::auth::{ApiKeyAuthLayer, ApiKeyId};
    use crate::body::Body;
    use crate::error::ErrorDialect;

    fn config(rpm: u32, burst: u32) -> RateLimitConfig {
        let mut c = RateLimitConfig::new(NonZeroU32::new(rpm).unwrap());
        c.burst = burst;
        c
    }

    fn ok_service(
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        })
    }

    fn request(key: Option<&str>) -> Request<Body> {
        let mut req = Request::post("/v1/chat/completions")
            .body(Body::empty())
            .unwrap();
        if let Some(k) = key {
            req.extensions_mut().insert(ApiKeyId(Arc::from(k)));
        }
        req
    }

    async fn send(limiter: &RateLimiter, key: Option<&str>) -> Response<Body> {
        limiter
            .layer()
            .layer(ok_service())
            .oneshot(request(key))
            .await
            .unwrap()
    }

    fn header(res: &Response<Body>, name: &str) -> String {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    async fn body(res: Response<Body>) -> String {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn admits_rate_plus_burst_then_429_and_headers_count_down() {
        let limiter = RateLimiter::new(&config(4, 2)).unwrap();
        for expected in (0..6).rev() {
            let res = send(&limiter, Some("key-1")).await;
            assert_eq!(res.status(), 200);
            assert_eq!(header(&res, "x-ratelimit-limit-requests"), "6");
            assert_eq!(
                header(&res, "x-ratelimit-remaining-requests"),
                expected.to_string()
            );
            assert!(!header(&res, "x-ratelimit-reset-requests").is_empty());
            assert_eq!(body(res).await, "ok");
        }
        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(header(&res, "x-ratelimit-limit-requests"), "6");
        // One request every 15 s; the bucket is full again once all six have drained (90 s).
        let retry: u64 = header(&res, "retry-after").parse().unwrap();
        assert!((14..=15).contains(&retry), "retry-after {retry}");
        let retry_ms: u64 = header(&res, "retry-after-ms").parse().unwrap();
        assert!(
            (14_000..=15_000).contains(&retry_ms),
            "retry-after-ms {retry_ms}"
        );
        let reset = header(&res, "x-ratelimit-reset-requests");
        assert!(
            reset.starts_with("1m29.") || reset == "1m30s",
            "reset {reset}"
        );
        let text = body(res).await;
        assert!(
            text.contains("rate_limit_exceeded") && text.contains("requests"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn keys_are_limited_separately_and_every_clone_shares_the_state() {
        let limiter = RateLimiter::new(&config(1, 0)).unwrap();
        let mut svc = limiter.layer().layer(ok_service());
        let mut other_clone = svc.clone();
        assert_eq!(
            svc.ready()
                .await
                .unwrap()
                .call(request(Some("key-1")))
                .await
                .unwrap()
                .status(),
            200
        );
        let again = other_clone
            .ready()
            .await
            .unwrap()
            .call(request(Some("key-1")))
            .await
            .unwrap();
        assert_eq!(again.status(), 429, "a clone must not have its own budget");
        assert_eq!(send(&limiter, Some("key-2")).await.status(), 200);
        assert_eq!(
            send(&limiter, None).await.status(),
            200,
            "no key id: counted as anonymous"
        );
        assert_eq!(send(&limiter, Some(ANONYMOUS)).await.status(), 429);
    }

    #[tokio::test]
    async fn overrides_give_one_key_its_own_limits() {
        let mut c = config(1, 0);
        c.keys.insert(
            "key-vip".into(),
            KeyRateLimit {
                requests_per_minute: Some(NonZeroU32::new(3).unwrap()),
                burst: Some(2),
                ..Default::default()
            },
        );
        c.keys.insert(
            "key-burst".into(),
            KeyRateLimit {
                burst: Some(1),
                ..Default::default()
            },
        );
        let limiter = RateLimiter::new(&c).unwrap();
        for _ in 0..5 {
            let res = send(&limiter, Some("key-vip")).await;
            assert_eq!(res.status(), 200);
            assert_eq!(header(&res, "x-ratelimit-limit-requests"), "5");
        }
        let res = send(&limiter, Some("key-vip")).await;
        assert_eq!(res.status(), 429);
        // 3 per minute: the next one in 20 s.
        assert_eq!(header(&res, "retry-after"), "20");
        for _ in 0..2 {
            assert_eq!(send(&limiter, Some("key-burst")).await.status(), 200);
        }
        assert_eq!(send(&limiter, Some("key-burst")).await.status(), 429);
        assert_eq!(send(&limiter, Some("key-plain")).await.status(), 200);
        assert_eq!(send(&limiter, Some("key-plain")).await.status(), 429);
    }

    #[tokio::test]
    async fn a_refused_key_is_admitted_again_after_retry_after() {
        // 1200 per minute: one every 50 ms.
        let limiter = RateLimiter::new(&config(1200, 0)).unwrap();
        let mut admitted = 0;
        while send(&limiter, Some("key-1")).await.status() == 200 {
            admitted += 1;
            assert!(admitted <= 1200);
        }
        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 429);
        let wait: u64 = header(&res, "retry-after-ms").parse().unwrap();
        assert!(wait <= 50, "retry-after-ms {wait}");
        tokio::time::sleep(Duration::from_millis(wait + 5)).await;
        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 200, "Retry-After was too short");
        assert_eq!(header(&res, "x-ratelimit-remaining-requests"), "0");
    }

    #[tokio::test]
    async fn spent_token_budget_refuses_with_a_message_about_tokens() {
        let mut c = config(100, 0);
        c.tokens_per_minute = NonZeroU64::new(1000);
        let limiter = RateLimiter::new(&c).unwrap();
        let key = ApiKeyId(Arc::from("key-1"));

        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit-tokens"), "1000");
        assert_eq!(header(&res, "x-ratelimit-remaining-tokens"), "1000");
        assert_eq!(header(&res, "x-ratelimit-reset-tokens"), "0s");

        limiter.charge_tokens(&key, 600);
        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 200);
        let remaining: u64 = header(&res, "x-ratelimit-remaining-tokens")
            .parse()
            .unwrap();
        assert!((400..=401).contains(&remaining), "remaining {remaining}");

        limiter.charge_tokens(&key, 900); // overdrawn: usage is only known afterwards
        let res = send(&limiter, Some("key-1")).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "x-ratelimit-remaining-tokens"), "0");
        // 500 tokens over, 60 ms a token: ~30 s until one is back.
        let retry: u64 = header(&res, "retry-after").parse().unwrap();
        assert!((29..=31).contains(&retry), "retry-after {retry}");
        assert!(!header(&res, "x-ratelimit-remaining-requests").is_empty());
        let text = body(res).await;
        assert!(
            text.contains("tokens") && text.contains("rate_limit_exceeded"),
            "{text}"
        );

        assert_eq!(
            send(&limiter, Some("key-2")).await.status(),
            200,
            "budgets are per key"
        );
        let no_budget = RateLimiter::new(&config(100, 0)).unwrap();
        no_budget.charge_tokens(&key, u64::MAX);
        let res = send(&no_budget, Some("key-1")).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x-ratelimit-limit-tokens").is_none());
    }

    #[tokio::test]
    async fn behind_auth_the_key_id_is_the_limit_key_and_rejections_use_the_dialect() {
        let limiter = RateLimiter::new(&config(1, 0)).unwrap();
        let svc = tower::ServiceBuilder::new()
            .layer(ApiKeyAuthLayer::new(["secret-a", "secret-b"]))
            .layer(limiter.layer().dialect(ErrorDialect::Anthropic))
            .service(ok_service());
        let req = |key: &str| {
            Request::post("/v1/chat/completions")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            svc.clone().oneshot(req("secret-a")).await.unwrap().status(),
            200
        );
        assert_eq!(
            svc.clone().oneshot(req("secret-b")).await.unwrap().status(),
            200
        );
        let res = svc.clone().oneshot(req("secret-a")).await.unwrap();
        assert_eq!(res.status(), 429);
        assert!(
            res.headers().get("retry-after-ms").is_none(),
            "OpenAI-only header"
        );
        let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let res = svc.oneshot(req("wrong")).await.unwrap();
        assert_eq!(res.status(), 401, "auth still answers first");
    }

    #[tokio::test]
    async fn a_closure_picks_the_key_and_the_request_dialect_picks_the_shape() {
        let limiter = RateLimiter::new(&config(1, 0)).unwrap();
        let by_tenant = |headers: &http::HeaderMap, _: &http::Extensions| -> Option<Arc<str>> {
            headers
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .map(Arc::from)
        };
        let svc = limiter
            .layer()
            .key_extractor(by_tenant)
            .dialect(ErrorDialect::Anthropic)
            .layer(ok_service());
        let req = |tenant: &str| {
            let mut req = request(Some("key-1"));
            req.headers_mut()
                .insert("x-tenant", tenant.parse().unwrap());
            req
        };
        assert_eq!(svc.clone().oneshot(req("a")).await.unwrap().status(), 200);
        assert_eq!(
            svc.clone().oneshot(req("b")).await.unwrap().status(),
            200,
            "the key id is not the bucket any more"
        );
        let mut again = req("a");
        again.extensions_mut().insert(ErrorDialect::Bedrock);
        let res = svc.clone().oneshot(again).await.unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "x-amzn-errortype"), "ThrottlingException");
        let res = svc.clone().oneshot(req("a")).await.unwrap();
        assert_eq!(res.status(), 429);
        let v: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(
            v["error"]["type"], "rate_limit_error",
            "the layer's dialect"
        );
        assert_eq!(
            svc.oneshot(request(None)).await.unwrap().status(),
            200,
            "no tenant: counted as anonymous"
        );
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_url_without_the_feature_is_a_clear_error() {
        let mut c = config(1, 0);
        c.redis_url = Some("redis://127.0.0.1:6379".into());
        let e = RateLimiter::new(&c).unwrap_err();
        assert!(e.contains("redis") && e.contains("feature"), "{e}");
    }
}
