//! [`RateLimitConfig`]: the limits, read from a `[rate_limit]` TOML table (or the `RATE_LIMIT_*`
//! variables, through [`crate::config`]).

use std::collections::HashMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

/// How long one Redis call may take before the limiter fails open, unless configured.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// Rate-limit settings: a default per-key limit, optional per-key overrides, and where the state
/// lives (this process, or a Redis shared by every gateway process).
///
/// As a TOML table (the gateway reads it from `[rate_limit]`):
///
/// ```toml
/// requests_per_minute = 60      # steady rate; required
/// burst = 10                    # extra requests a key may send back to back (default 0)
/// tokens_per_minute = 100000    # optional token budget, charged from replies' usage
/// redis_url = "redis://127.0.0.1:6379"   # optional; needs the `redis` cargo feature
/// redis_timeout_ms = 100        # optional; a slower Redis call fails open
///
/// [keys."key-1"]                # overrides for one key (by its `ApiKeyId`)
/// requests_per_minute = 600
/// burst = 100
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Steady request rate per key: one request every `60 s / requests_per_minute`.
    pub requests_per_minute: NonZeroU32,
    /// Requests a key may send back to back on top of `requests_per_minute`: a fresh key can send
    /// `requests_per_minute + burst` at once, then one every `60 s / requests_per_minute`.
    #[serde(default)]
    pub burst: u32,
    /// Tokens (prompt + completion) per key per minute, charged by
    /// [`RateLimiter::charge_tokens`](super::RateLimiter::charge_tokens); `None` = no token budget.
    #[serde(default)]
    pub tokens_per_minute: Option<NonZeroU64>,
    /// Redis holding the shared state (`redis://…`); `None` keeps the state in this process.
    /// Printed with its password masked.
    #[serde(default, serialize_with = "serialize_redacted")]
    pub redis_url: Option<String>,
    /// Bound on one Redis call in milliseconds; past it the request is let through (fail open).
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Per-key overrides, by key id (`key-1`, `anonymous`, …).
    #[serde(default)]
    pub keys: HashMap<String, KeyRateLimit>,
}

/// Limits for one key; a field left out keeps the default's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyRateLimit {
    /// Steady request rate for this key.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Back-to-back requests on top of the steady rate for this key.
    pub burst: Option<u32>,
    /// Token budget for this key.
    pub tokens_per_minute: Option<NonZeroU64>,
}

fn default_redis_timeout_ms() -> u64 {
    DEFAULT_REDIS_TIMEOUT.as_millis() as u64
}

/// The resolved limits of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) requests_per_minute: NonZeroU32,
    /// Requests that may arrive back to back: `requests_per_minute + burst`.
    pub(crate) capacity: NonZeroU32,
    pub(crate) tokens_per_minute: Option<NonZeroU64>,
}

impl Limits {
    fn new(rpm: NonZeroU32, burst: u32, tpm: Option<NonZeroU64>) -> Option<Limits> {
        Some(Limits {
            requests_per_minute: rpm,
            capacity: rpm.checked_add(burst)?,
            tokens_per_minute: tpm,
        })
    }

    /// Time one request costs: `60 s / requests_per_minute` (whole nanoseconds, like `governor`).
    pub(crate) fn emission_interval(&self) -> Duration {
        Duration::from_nanos(60_000_000_000 / u64::from(self.requests_per_minute.get()))
    }
}

impl RateLimitConfig {
    /// `requests_per_minute` per key, no burst, no token budget, state in this process.
    pub fn new(requests_per_minute: NonZeroU32) -> Self {
        RateLimitConfig {
            requests_per_minute,
            burst: 0,
            tokens_per_minute: None,
            redis_url: None,
            redis_timeout_ms: default_redis_timeout_ms(),
            keys: HashMap::new(),
        }
    }

    /// Checks the rules serde cannot: `requests_per_minute + burst` fits in a `u32` (default and
    /// every override), the Redis timeout is not zero, the Redis URL looks like one.
    pub fn validate(&self) -> Result<(), String> {
        if Limits::new(self.requests_per_minute, self.burst, None).is_none() {
            return Err("rate_limit: `requests_per_minute + burst` is too large".into());
        }
        for (key, o) in &self.keys {
            let rpm = o.requests_per_minute.unwrap_or(self.requests_per_minute);
            if Limits::new(rpm, o.burst.unwrap_or(self.burst), None).is_none() {
                return Err(format!(
                    "rate_limit.keys.\"{key}\": `requests_per_minute + burst` is too large"
                ));
            }
        }
        if self.redis_timeout_ms == 0 {
            return Err("rate_limit.redis_timeout_ms: must be greater than 0".into());
        }
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://")
                || url.starts_with("redis+unix://"))
            {
                return Err(format!(
                    "REDIS_URL: `{}` must start with redis://, rediss:// or unix://",
                    redact_url(url)
                ));
            }
        }
        Ok(())
    }

    /// The bound on one Redis call.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// The default limits (keys without an override).
    pub(crate) fn default_limits(&self) -> Result<Limits, String> {
        Limits::new(self.requests_per_minute, self.burst, self.tokens_per_minute)
            .ok_or_else(|| "rate_limit: `requests_per_minute + burst` is too large".into())
    }

    /// The limits of each overridden key.
    pub(crate) fn override_limits(&self) -> Result<HashMap<String, Limits>, String> {
        self.keys
            .iter()
            .map(|(key, o)| {
                let limits = Limits::new(
                    o.requests_per_minute.unwrap_or(self.requests_per_minute),
                    o.burst.unwrap_or(self.burst),
                    o.tokens_per_minute.or(self.tokens_per_minute),
                )
                .ok_or_else(|| {
                    format!("rate_limit.keys.\"{key}\": `requests_per_minute + burst` is too large")
                })?;
                Ok((key.clone(), limits))
            })
            .collect()
    }
}

impl fmt::Debug for RateLimitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("requests_per_minute", &self.requests_per_minute)
            .field("burst", &self.burst)
            .field("tokens_per_minute", &self.tokens_per_minute)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("keys", &self.keys)
            .finish()
    }
}

fn serialize_redacted<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}

/// `redis://user:secret@host/0` → `redis://****@host/0`: URLs reach logs and error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    match url[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}****{}", &url[..scheme_end], &url[scheme_end + at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_shape_with_key_overrides() {
        #[derive(Debug, Deserialize)]
        struct File {
            rate_limit: RateLimitConfig,
        }
        let f: File = toml::from_str(
            r#"
            [rate_limit]
            requests_per_minute = 60
            burst = 10
            tokens_per_minute = 100000
            redis_url = "redis://127.0.0.1:6379"
            [rate_limit.keys."key-1"]
            requests_per_minute = 600
            burst = 100
            [rate_limit.keys.anonymous]
            tokens_per_minute = 5
            "#,
        )
        .unwrap();
        let c = f.rate_limit;
        c.validate().unwrap();
        assert_eq!(c.default_limits().unwrap().capacity.get(), 70);
        let o = c.override_limits().unwrap();
        assert_eq!(o["key-1"].capacity.get(), 700);
        assert_eq!(
            o["key-1"].tokens_per_minute.map(NonZeroU64::get),
            Some(100000),
            "inherited"
        );
        assert_eq!(o["anonymous"].capacity.get(), 70, "inherited");
        assert_eq!(
            o["anonymous"].tokens_per_minute.map(NonZeroU64::get),
            Some(5)
        );

        let e = toml::from_str::<File>("[rate_limit]\nrequests_per_minute = 1\nburts = 2\n")
            .unwrap_err();
        assert!(e.to_string().contains("burts"), "{e}");
        assert!(
            toml::from_str::<File>("[rate_limit]\nburst = 2\n").is_err(),
            "rate is required"
        );
    }

    #[test]
    fn debug_and_errors_hide_redis_passwords() {
        let mut c = RateLimitConfig::new(NonZeroU32::MIN);
        c.redis_url = Some("redis://user:hunter2@redis.internal:6379/0".into());
        let s = format!("{c:?}");
        assert!(
            !s.contains("hunter2") && s.contains("redis://****@redis.internal:6379/0"),
            "{s}"
        );
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("redis://:p@w@h/x@y"), "redis://****@h/x@y");
    }
}
