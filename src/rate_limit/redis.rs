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
use super::limiter::{Decision, RequestState, TokenState, Verdict};
use super::memory::MAX_TOKEN_DEBT;

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

struct Inner {
    conn: ConnectionManager,
    timeout: Duration,
    url: String,
    started: Instant,
    /// Milliseconds after `started` of the last warning (0 = never).
    last_warn_ms: AtomicU64,
}

impl RedisBackend {
    /// Connects lazily, so a Redis that is down at start-up fails open instead of stopping it.
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let shown = redact_url(url);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis rate limiter must be built inside a Tokio runtime".into());
        }
        let client = redis::Client::open(url)
            .map_err(|e| format!("REDIS_URL `{shown}`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("REDIS_URL `{shown}`: {e}"))?;
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                conn,
                timeout,
                url: shown,
                started: Instant::now(),
                last_warn_ms: AtomicU64::new(0),
            }),
        })
    }

    pub(crate) fn check(&self, key: Arc<str>, limits: Limits) -> impl std::future::Future<Output = Decision> + Send + 'static {
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
            let reply = tokio::time::timeout(inner.timeout, call.invoke_async::<Vec<i64>>(&mut conn)).await;
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

    pub(crate) fn charge_tokens(&self, key: Arc<str>, limits: Limits, tokens: u64) -> impl std::future::Future<Output = ()> + Send + 'static {
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
                Ok(Err(e)) => inner.warn(&format!("token charge of {tokens} for `{key}` dropped: {e}")),
                Err(_) => inner.warn(&format!(
                    "token charge of {tokens} for `{key}` dropped: no answer within {:?}",
                    inner.timeout
                )),
            }
        }
    }
}

impl Inner {
    /// Logs a Redis failure, at most once per [`WARN_EVERY`] (every request fails while Redis is down).
    fn warn(&self, problem: &str) {
        let now_ms = (self.started.elapsed().as_millis() as u64).max(1);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(redis = %self.url, %problem, "rate limit: Redis failed, letting requests through uncounted");
        } else {
            tracing::debug!(redis = %self.url, %problem, "rate limit: Redis failed");
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
        1 => Verdict::Requests { retry_after: micros(retry) },
        2 => Verdict::Tokens { retry_after: micros(retry) },
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
