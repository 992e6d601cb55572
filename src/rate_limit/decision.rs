//! What the limiter decided for one request, the state it reports, and how both are written:
//! the `x-ratelimit-*` headers and the 429. Shared by the limiter and its two backends.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use super::config::Limits;
use crate::error::{ErrorDialect, GatewayError};
use crate::header_value::LastValue;

/// Largest debt one key can run up; bounds absurd charges so time arithmetic cannot overflow.
pub(crate) const MAX_TOKEN_DEBT: Duration = Duration::from_secs(24 * 3600);

/// What the limiter decided for one request, and the state it reports in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) verdict: Verdict,
    /// Requests that may arrive back to back (`x-ratelimit-limit-requests`).
    pub(crate) limit: u32,
    /// `None` when the state could not be read (Redis down: the request was let through uncounted).
    pub(crate) requests: Option<RequestState>,
    /// `None` when the key has no token budget, or the state could not be read.
    pub(crate) tokens: Option<TokenState>,
}

/// Allowed, or refused and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Over the request rate; the next request conforms after `retry_after`.
    Requests {
        retry_after: Duration,
    },
    /// The token budget is spent; one more token is available after `retry_after`.
    Tokens {
        retry_after: Duration,
    },
}

/// The request bucket after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestState {
    /// Requests that would still be admitted right now.
    pub(crate) remaining: u32,
    /// Time until the bucket is full again (`remaining == limit`).
    pub(crate) reset: Duration,
}

/// The token budget after the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenState {
    pub(crate) limit: u64,
    /// Tokens left in the budget (0 when it is spent or overdrawn).
    pub(crate) remaining: u64,
    /// Time until the budget is whole again.
    pub(crate) reset: Duration,
}

static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
static REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
static RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

impl Decision {
    /// A request let through because the state could not be consulted (fail open).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fail_open(limits: Limits) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            limit: limits.capacity.get(),
            requests: None,
            tokens: None,
        }
    }

    /// Writes the `x-ratelimit-*` headers.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        thread_local! {
            // The same on most responses (one limit unless keys have their own).
            static LIMIT: LastValue = const { LastValue::new() };
        }
        headers.insert(LIMIT_REQUESTS.clone(), LIMIT.with(|l| l.int(self.limit)));
        if let Some(r) = self.requests {
            headers.insert(
                REMAINING_REQUESTS.clone(),
                crate::header_value::int(r.remaining),
            );
            headers.insert(RESET_REQUESTS.clone(), duration_header(r.reset));
        }
        if let Some(t) = self.tokens {
            headers.insert(LIMIT_TOKENS.clone(), crate::header_value::int(t.limit));
            headers.insert(
                REMAINING_TOKENS.clone(),
                crate::header_value::int(t.remaining),
            );
            headers.insert(RESET_TOKENS.clone(), duration_header(t.reset));
        }
    }

    /// The 429 for a refused request in `dialect`, headers included; `None` when allowed.
    pub(crate) fn rejection<B: From<Bytes>>(&self, dialect: ErrorDialect) -> Option<Response<B>> {
        let error = match self.verdict {
            Verdict::Allow => return None,
            Verdict::Requests { retry_after } => GatewayError::rate_limited(retry_after),
            Verdict::Tokens { retry_after } => GatewayError::tokens_rate_limited(retry_after),
        };
        let mut res = error.to_response(dialect);
        self.write_headers(res.headers_mut());
        Some(res)
    }
}

fn duration_header(d: Duration) -> HeaderValue {
    crate::header_value::written(|out| Reset(d).write(out))
        .unwrap_or_else(|| HeaderValue::from_static("0s"))
}

/// A duration the way OpenAI writes `x-ratelimit-reset-*` (Go's `Duration` format): `0s`,
/// `250ms`, `1s`, `17.5s`, `6m0s`, `1h2m3s`. Rounded *up* to the millisecond, so a client that
/// waits that long never comes back early.
struct Reset(Duration);

impl Reset {
    /// Written piece by piece (`write_str` only: it is on every response's headers).
    fn write(&self, f: &mut impl fmt::Write) -> fmt::Result {
        use crate::digits::{write_fraction, write_padded};
        let ms = self.0.as_nanos().div_ceil(1_000_000);
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms < 1000 {
            write_padded(f, u64::try_from(ms).unwrap_or(0), 0)?;
            return f.write_str("ms");
        }
        // Hours of any `Duration` fit a `u64` (at most 5.2e15); the rest is below an hour.
        let h = u64::try_from(ms / 3_600_000).unwrap_or(u64::MAX);
        let rest = u64::try_from(ms % 3_600_000).unwrap_or(0);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (s, frac) = (rest / 1000, rest % 1000);
        if h > 0 {
            write_padded(f, h, 0)?;
            f.write_str("h")?;
        }
        if h > 0 || m > 0 {
            write_padded(f, m, 0)?;
            f.write_str("m")?;
        }
        write_padded(f, s, 0)?;
        // Milliseconds, trailing zeros dropped: 500 → .5, 250 → .25, 7 → .007.
        write_fraction(f, frac, 3)?;
        f.write_str("s")
    }
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_reset(d: Duration) -> String {
        let text = Reset(d).to_string();
        assert_eq!(duration_header(d).to_str().ok(), Some(text.as_str()));
        text
    }

    #[test]
    fn reset_durations_read_like_openai() {
        let ms = Duration::from_millis;
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(format_reset(Duration::from_nanos(1)), "1ms", "rounded up");
        assert_eq!(format_reset(ms(250)), "250ms");
        assert_eq!(format_reset(ms(1000)), "1s");
        assert_eq!(format_reset(ms(17_500)), "17.5s");
        assert_eq!(format_reset(ms(1_020)), "1.02s");
        assert_eq!(format_reset(ms(2_007)), "2.007s");
        assert_eq!(format_reset(ms(2_100)), "2.1s");
        assert_eq!(format_reset(ms(360_000)), "6m0s");
        assert_eq!(format_reset(ms(90_500)), "1m30.5s");
        assert_eq!(format_reset(ms(3_723_000)), "1h2m3s");
        assert_eq!(format_reset(ms(90_000_000)), "25h0m0s");
        assert_eq!(
            format_reset(Duration::MAX),
            "5124095576030431h0m16s",
            "never clamped"
        );
    }

    #[test]
    fn token_rejection_is_a_429_that_mentions_tokens() {
        let d = Decision {
            verdict: Verdict::Tokens {
                retry_after: Duration::from_millis(60),
            },
            limit: 10,
            requests: Some(RequestState {
                remaining: 9,
                reset: Duration::from_secs(6),
            }),
            tokens: Some(TokenState {
                limit: 1000,
                remaining: 0,
                reset: Duration::from_secs(60),
            }),
        };
        let res = d
            .rejection::<crate::body::Body>(ErrorDialect::Bedrock)
            .unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["x-amzn-errortype"], "ThrottlingException");
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["x-ratelimit-remaining-tokens"], "0");
        assert_eq!(res.headers()["x-ratelimit-reset-tokens"], "1m0s");
        assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "9");
    }
}
