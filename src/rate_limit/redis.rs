//! The Redis backend: the same GCRA as the memory backend, run atomically by a Lua script so every
//! gateway process sharing one Redis shares one limit.
//!
//! Per key two strings, `{prefix}:{key}:requests` and `…:tokens` (the `{key}` hash tag keeps both
//! in one cluster slot), each holding a theoretical arrival time (TAT) in microseconds of the
//! *Redis server's* clock (`TIME`), so the gateways' clocks never need to agree. Each expires once
//! it no longer matters (`PX` = its TAT), so idle keys cost nothing.
//!
//! Every call is bounded by the configured timeout. On an error or a timeout the request is let
//! through uncounted (fail open) with a warning, logged at most once per [`WARN_EVERY`]: a Redis
//! outage must not take the gateway down with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::config::{redact_url, Limits};
use super::decision::{Decision, RequestState, TokenState, Verdict, MAX_TOKEN_DEBT};

/// Prefix of every key the limiter writes.
const KEY_PREFIX: &str = "open-bedrock-server:rate-limit";

/// At most one warning per this long while Redis is failing.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Check (and count) one request.
///
/// KEYS: request TAT, token TAT. ARGV: emission interval µs, capacity, tokens per minute (0 = no
/// budget). Returns `{verdict, remaining, reset_us, retry_us, tokens_remaining, tokens_reset_us}`;
/// verdict 0 = allowed, 1 = over the request rate, 2 = token budget spent.
///
/// Requests: GCRA with `tau = interval × (capacity − 1)`; conforming iff `now ≥ tat − tau`, then
/// `tat = max(tat, now) + interval`. Tokens: `debt = tat − now`; `remaining = ⌊(W − debt)·tpm/W⌋`
/// with `W` = 60 s; the budget is spent when that is 0. A request refused for tokens has still
/// been counted against the request rate (as the memory backend does).
static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local t = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local tau = t * (cap - 1)

local verdict, remaining, reset, retry = 0, 0, 0, 0
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
if now < tat - tau then
  verdict = 1
  reset = tat - now
  retry = tat - tau - now
else
  tat = tat + t
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
  remaining = math.min(math.floor((tau + t - (tat - now)) / t), cap)
  reset = tat - now
end

local tok_remaining, tok_reset = -1, 0
if tpm > 0 then
  local window = 60000000
  local tok_tat = tonumber(redis.call('GET', KEYS[2]) or 0)
  local debt = math.max(tok_tat - now, 0)
  if debt >= window then
    tok_remaining = 0
  else
    tok_remaining = math.min(math.floor((window - debt) * (tpm / window) + 1e-9), tpm)
  end
  tok_reset = debt
  if verdict == 0 and tok_remaining == 0 then
    verdict = 2
    retry = math.ceil(debt - window * (tpm - 1) / tpm)
  end
end
return {verdict, remaining, reset, retry, tok_remaining, tok_reset}
"#,
    )
});

/// Charge tokens. KEYS: token TAT. ARGV: tokens, tokens per minute, largest debt µs.
static CHARGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tokens = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local max_debt = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
tat = math.min(tat + math.ceil(tokens * 60000000 / tpm), now + max_debt)
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
return 1
"#,
    )
});

pub(crate) struct RedisBackend {
    inner: Arc<Inner>,
}

/// A connection to Redis shared by the calls of one backend (the rate limiter's, the budgets'),
/// with its call bound and its rate-limited failure warning.
pub(crate) struct RedisConn {
    pub(crate) conn: ConnectionManager,
    pub(crate) timeout: Duration,
    url: String,
    started: Instant,
    /// Milliseconds after `started` of the last warning (0 = never).
    last_warn_ms: AtomicU64,
    /// What uses it, in warnings (`rate limit`, `budgets`).
    what: &'static str,
}

type Inner = RedisConn;

impl RedisConn {
    /// Connects lazily to `url`, so a Redis that is down at start-up fails open instead of
    /// stopping it; each call bounded by `timeout`; `what` names the user in warnings.
    pub(crate) fn open(url: &str, timeout: Duration, what: &'static str) -> Result<Self, String> {
        let (conn, shown) = connect(url, timeout)?;
        Ok(RedisConn {
            conn,
            timeout,
            url: shown,
            started: Instant::now(),
            last_warn_ms: AtomicU64::new(0),
            what,
        })
    }
}

impl RedisBackend {
    /// Connects lazily, so a Redis that is down at start-up fails open instead of stopping it.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(RedisBackend {
            inner: Arc::new(RedisConn::open(url, timeout, "rate limit")?),
        })
    }

    pub(crate) fn check(
        &self,
        key: Arc<str>,
        limits: Limits,
    ) -> impl std::future::Future<Output = Decision> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let interval_us = limits.emission_interval().as_micros().max(1) as u64;
            let mut call = CHECK.prepare_invoke();
            call.key(redis_key(&key, "requests"))
                .key(redis_key(&key, "tokens"))
                .arg(interval_us)
                .arg(limits.capacity.get())
                .arg(limits.tokens_per_minute.map_or(0, |t| t.get()));
            let mut conn = inner.conn.clone();
            let reply =
                tokio::time::timeout(inner.timeout, call.invoke_async::<Vec<i64>>(&mut conn)).await;
            match reply {
                Ok(Ok(v)) => match decode(&v, limits) {
                    Some(d) => d,
                    None => {
                        inner.warn(&format!("unexpected reply {v:?}"));
                        Decision::fail_open(limits)
                    }
                },
                Ok(Err(e)) => {
                    inner.warn(&e.to_string());
                    Decision::fail_open(limits)
                }
                Err(_) => {
                    inner.warn(&format!("no answer within {:?}", inner.timeout));
                    Decision::fail_open(limits)
                }
            }
        }
    }

    /// Charges from a spawned task, so the caller (often a stream's end) never waits on Redis.
    pub(crate) fn spawn_charge_tokens(&self, key: Arc<str>, limits: Limits, tokens: u64) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(self.charge_tokens(key, limits, tokens));
            }
            Err(_) => tracing::warn!(
                key = %key,
                tokens,
                "rate limit: token charge dropped, no Tokio runtime to send it to Redis"
            ),
        }
    }

    pub(crate) fn charge_tokens(
        &self,
        key: Arc<str>,
        limits: Limits,
        tokens: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let Some(tpm) = limits.tokens_per_minute else {
                return;
            };
            let mut call = CHARGE.prepare_invoke();
            call.key(redis_key(&key, "tokens"))
                .arg(tokens)
                .arg(tpm.get())
                .arg(MAX_TOKEN_DEBT.as_micros() as u64);
            let mut conn = inner.conn.clone();
            match tokio::time::timeout(inner.timeout, call.invoke_async::<i64>(&mut conn)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => inner.warn(&format!(
                    "token charge of {tokens} for `{key}` dropped: {e}"
                )),
                Err(_) => inner.warn(&format!(
                    "token charge of {tokens} for `{key}` dropped: no answer within {:?}",
                    inner.timeout
                )),
            }
        }
    }
}

/// A lazily connecting, self-healing connection to `url`, each call bounded by `timeout`, and the
/// URL as logs may show it. Needs a Tokio runtime.
fn connect(url: &str, timeout: Duration) -> Result<(ConnectionManager, String), String> {
    let shown = redact_url(url);
    if tokio::runtime::Handle::try_current().is_err() {
        return Err("the Redis backend must be built inside a Tokio runtime".into());
    }
    let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL `{shown}`: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let conn = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("REDIS_URL `{shown}`: {e}"))?;
    Ok((conn, shown))
}

impl RedisConn {
    /// Logs a Redis failure, at most once per [`WARN_EVERY`] (every request fails while Redis is down).
    pub(crate) fn warn(&self, problem: &str) {
        let now_ms = (self.started.elapsed().as_millis() as u64).max(1);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(redis = %self.url, %problem, "{}: Redis failed, letting requests through unchecked", self.what);
        } else {
            tracing::debug!(redis = %self.url, %problem, "{}: Redis failed", self.what);
        }
    }
}

fn redis_key(key: &str, what: &str) -> String {
    format!("{KEY_PREFIX}:{{{key}}}:{what}")
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn decode(v: &[i64], limits: Limits) -> Option<Decision> {
    let &[verdict, remaining, reset, retry, tok_remaining, tok_reset] = v else {
        return None;
    };
    let verdict = match verdict {
        0 => Verdict::Allow,
        1 => Verdict::Requests {
            retry_after: micros(retry),
        },
        2 => Verdict::Tokens {
            retry_after: micros(retry),
        },
        _ => return None,
    };
    let tokens = match (limits.tokens_per_minute, u64::try_from(tok_remaining)) {
        (Some(tpm), Ok(remaining)) => Some(TokenState {
            limit: tpm.get(),
            remaining,
            reset: micros(tok_reset),
        }),
        _ => None,
    };
    Some(Decision {
        verdict,
        limit: limits.capacity.get(),
        requests: Some(RequestState {
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: micros(reset),
        }),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::{TcpListener, TcpStream};
    use std::num::{NonZeroU32, NonZeroU64};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use http::{Request, Response};
    use tower::ServiceExt;
    use tower_layer::Layer;

    use crate::auth::ApiKeyId;
    use crate::body::Body;
    use crate::rate_limit::{KeyRateLimit, RateLimitConfig, RateLimiter};

    /// A throwaway `redis-server` on a free loopback port, killed on drop.
    struct RedisServer {
        child: Child,
        port: u16,
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn ci() -> bool {
        std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    impl RedisServer {
        /// `None` (test skipped) only when `redis-server` is not on PATH and `CI` is not set.
        fn start() -> Option<RedisServer> {
            for _attempt in 0..3 {
                let port = free_port();
                let spawned = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let child = match spawned {
                    Ok(child) => child,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        assert!(
                            !ci(),
                            "redis-server is not on PATH and CI is set: install it (apt-get install -y redis-server)"
                        );
                        eprintln!("SKIPPED: redis-server is not on PATH; install it to run the Redis rate-limit tests");
                        return None;
                    }
                    Err(e) => panic!("cannot start redis-server: {e}"),
                };
                let mut server = RedisServer { child, port };
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Some(server);
                    }
                    if server.child.try_wait().ok().flatten().is_some() {
                        break; // lost the port to someone else: try another
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            panic!("redis-server did not start listening");
        }

        fn config(&self, rpm: u32, burst: u32) -> RateLimitConfig {
            let mut c = RateLimitConfig::new(NonZeroU32::new(rpm).unwrap());
            c.burst = burst;
            c.redis_url = Some(format!("redis://127.0.0.1:{}/0", self.port));
            c.redis_timeout_ms = 2000; // a loaded test machine must not fail open by accident
            c
        }
    }

    fn request(key: &str) -> Request<Body> {
        let mut req = Request::post("/v1/chat/completions")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ApiKeyId(Arc::from(key)));
        req
    }

    async fn send(limiter: &RateLimiter, key: &str) -> Response<Body> {
        let svc = limiter
            .layer()
            .layer(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }));
        svc.oneshot(request(key)).await.unwrap()
    }

    fn header(res: &Response<Body>, name: &str) -> Option<String> {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_sharing_redis_admit_exactly_the_limit_in_total() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let config = server.config(10, 5); // 15 back to back, then one every 6 s
        let replicas = [
            RateLimiter::new(&config).unwrap(),
            RateLimiter::new(&config).unwrap(),
        ];
        assert!(replicas[0].is_shared());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let limiter = replicas[i % 2].clone();
            tasks.push(tokio::spawn(async move { send(&limiter, "key-1").await }));
        }
        let (mut admitted, mut refused) = (0, 0);
        for t in tasks {
            let res = t.await.unwrap();
            assert!(
                header(&res, "x-ratelimit-remaining-requests").is_some(),
                "Redis was not consulted (failed open)"
            );
            match res.status().as_u16() {
                200 => admitted += 1,
                429 => refused += 1,
                s => panic!("status {s}"),
            }
        }
        assert_eq!((admitted, refused), (15, 25));
        assert_eq!(
            send(&replicas[1], "key-2").await.status(),
            200,
            "other keys are separate"
        );
    }

    #[tokio::test]
    async fn redis_headers_count_down_and_reset_is_exact() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let limiter = RateLimiter::new(&server.config(3, 0)).unwrap(); // one every 20 s
        let res = send(&limiter, "key-1").await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&res, "x-ratelimit-remaining-requests").as_deref(),
            Some("2")
        );
        assert_eq!(
            header(&res, "x-ratelimit-reset-requests").as_deref(),
            Some("20s")
        );
        let res = send(&limiter, "key-1").await;
        assert_eq!(
            header(&res, "x-ratelimit-remaining-requests").as_deref(),
            Some("1")
        );
        let reset = header(&res, "x-ratelimit-reset-requests").unwrap();
        assert!(reset == "40s" || reset.starts_with("39.9"), "reset {reset}");
        assert_eq!(send(&limiter, "key-1").await.status(), 200);
        let res = send(&limiter, "key-1").await;
        assert_eq!(res.status(), 429);
        assert_eq!(
            header(&res, "x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        let retry: u64 = header(&res, "retry-after-ms").unwrap().parse().unwrap();
        assert!((19_000..=20_000).contains(&retry), "retry-after-ms {retry}");
        let reset = header(&res, "x-ratelimit-reset-requests").unwrap();
        assert!(reset == "1m0s" || reset.starts_with("59."), "reset {reset}");
    }

    #[tokio::test]
    async fn redis_overrides_and_token_budget_are_shared_by_replicas() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let mut config = server.config(1, 0);
        config.tokens_per_minute = NonZeroU64::new(1000);
        config.keys.insert(
            "key-vip".into(),
            KeyRateLimit {
                requests_per_minute: NonZeroU32::new(2),
                ..Default::default()
            },
        );
        let a = RateLimiter::new(&config).unwrap();
        let b = RateLimiter::new(&config).unwrap();

        assert_eq!(send(&a, "key-vip").await.status(), 200);
        assert_eq!(send(&b, "key-vip").await.status(), 200);
        assert_eq!(send(&a, "key-vip").await.status(), 429);
        assert_eq!(send(&b, "key-plain").await.status(), 200);
        assert_eq!(send(&a, "key-plain").await.status(), 429);

        let vip = ApiKeyId(Arc::from("key-vip"));
        let other = ApiKeyId(Arc::from("key-other"));
        a.charge_tokens_settled(&other, 1500).await;
        let res = send(&b, "key-other").await;
        assert_eq!(res.status(), 429);
        assert_eq!(
            header(&res, "x-ratelimit-remaining-tokens").as_deref(),
            Some("0")
        );
        let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
        assert!((29..=31).contains(&retry), "retry-after {retry}");
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("tokens"));

        // The public, fire-and-forget charge lands shortly after (seen through a replica whose
        // request rate leaves room to poll).
        let mut roomy = server.config(1000, 0);
        roomy.tokens_per_minute = NonZeroU64::new(1000);
        let observer = RateLimiter::new(&roomy).unwrap();
        a.charge_tokens(&vip, 250);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let res = send(&observer, "key-vip").await;
            let remaining: u64 = header(&res, "x-ratelimit-remaining-tokens")
                .unwrap()
                .parse()
                .unwrap();
            if remaining <= 750 {
                assert!(remaining >= 749, "remaining {remaining}");
                break;
            }
            assert!(Instant::now() < deadline, "the charge never landed");
        }
    }

    #[tokio::test]
    async fn unreachable_or_stalled_redis_fails_open_within_the_timeout() {
        // Nobody listens on this port.
        let mut config = RateLimitConfig::new(NonZeroU32::MIN);
        config.redis_url = Some(format!("redis://127.0.0.1:{}", free_port()));
        config.redis_timeout_ms = 100;
        let limiter = RateLimiter::new(&config).unwrap();
        for _ in 0..3 {
            let started = Instant::now();
            let res = send(&limiter, "key-1").await;
            assert_eq!(res.status(), 200, "fail open");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "took {:?}",
                started.elapsed()
            );
            assert_eq!(
                header(&res, "x-ratelimit-limit-requests").as_deref(),
                Some("1")
            );
            assert_eq!(
                header(&res, "x-ratelimit-remaining-requests"),
                None,
                "nothing counted"
            );
        }
        limiter.charge_tokens(&ApiKeyId(Arc::from("key-1")), 10); // no budget: a no-op

        // Accepts connections and never answers.
        let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config.redis_url = Some(format!("redis://{}", stalled.local_addr().unwrap()));
        config.tokens_per_minute = NonZeroU64::new(10);
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((sock, _)) = stalled.accept().await {
                open.push(sock);
            }
        });
        let limiter = RateLimiter::new(&config).unwrap();
        let started = Instant::now();
        let res = send(&limiter, "key-1").await;
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        let started = Instant::now();
        limiter
            .charge_tokens_settled(&ApiKeyId(Arc::from("key-1")), 10)
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "charge took {:?}",
            started.elapsed()
        );
        hold.abort();
    }
}
