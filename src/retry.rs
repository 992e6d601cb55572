//! Retry: the one place that retries upstream calls, as a `tower::retry` [`Policy`] on the typed core.
//!
//! - What is retried: errors for which [`GatewayError::is_retryable`] holds — upstream 408, 429, 500,
//!   502, 503, 504, connect/reset failures and first-byte timeouts, and a Bedrock refusal the host's
//!   clock caused (its signature then corrected). Never other 4xx, never the gateway's own
//!   rejections.
//! - Never after a byte has reached the client: the core answers a stream only once its first event
//!   has arrived, and errors after that are in-band events of the stream, not `Err` results.
//! - How many: at most `max_attempts` in total (default 3) — the AWS SDK's own retries are off, so
//!   an upstream sees exactly that many.
//! - When: exponential backoff with full jitter (`random(0, min(max, base·2ⁿ))`), or the upstream's
//!   `Retry-After` when it gave one, capped at `max_delay`.
//! - Not past the request's deadline
//!   ([`CallContext::deadline`](crate::model::CallContext::deadline)): an attempt whose backoff
//!   would end at or after it is not started; the last error is the answer.
//! - Storms: a shared [`TpsBudget`] allows retries of at most 20 % of recent successful requests (plus a small
//!   floor), so a failing upstream does not get three times the traffic.
//! - **Fallbacks share the budget.** For a model group, [`Dispatch`](crate::provider::Dispatch)
//!   chooses a deployment per attempt and, when an attempt fails with an error that may fall back
//!   ([`is_fallback_error`](crate::provider::group::is_fallback_error): 429 — quotas too —, 5xx,
//!   timeouts, connection failures) and an untried deployment remains, marks the call's record.
//!   This policy then makes the next attempt at once: no backoff (another deployment is not the
//!   one that asked to slow down) and no retry-budget token (the budget protects a failing
//!   upstream, and the fallback goes elsewhere). Either way it is one of the `max_attempts`: the
//!   group never retries on its own, so attempts across deployments never multiply with retries.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use open_bedrock_server::config::RetrySettings;
//! use open_bedrock_server::error::GatewayError;
//! use open_bedrock_server::model::{ChatCall, ChatReply, ChatRequest};
//! use open_bedrock_server::retry::RetryPolicy;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut settings = RetrySettings::default(); // 3 attempts in total
//! settings.base_delay = Duration::from_millis(1);
//! let upstream = |status: u16| {
//!     let attempts = Arc::new(AtomicU32::new(0));
//!     let seen = attempts.clone();
//!     let svc = tower::service_fn(move |_call: ChatCall| {
//!         seen.fetch_add(1, Ordering::Relaxed);
//!         async move { Err::<ChatReply, _>(GatewayError::upstream_status(status, "no")) }
//!     });
//!     let core = ServiceBuilder::new().retry(RetryPolicy::new(settings)).service(svc);
//!     (core, attempts)
//! };
//! let call = || ChatCall::new(ChatRequest::new("gpt-4o", vec![]));
//!
//! // A 503 is retried up to the limit…
//! let (core, attempts) = upstream(503);
//! assert_eq!(core.oneshot(call()).await.unwrap_err().status(), 503);
//! assert_eq!(attempts.load(Ordering::Relaxed), 3);
//!
//! // …a 400 is the client's problem, and not retried.
//! let (core, attempts) = upstream(400);
//! assert_eq!(core.oneshot(call()).await.unwrap_err().status(), 400);
//! assert_eq!(attempts.load(Ordering::Relaxed), 1);
//! # }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;

use crate::config::RetrySettings;
use crate::error::GatewayError;
use crate::model::{CallContext, ChatCall, ChatReply, EmbeddingsCall, EmbeddingsResponse};

/// The gateway's retry policy; one value per request (the attempt counter), a shared budget.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    settings: RetrySettings,
    attempt: u32,
    budget: Arc<TpsBudget>,
    retries: Arc<AtomicU32>,
}

impl RetryPolicy {
    /// A policy with `settings` and a fresh shared budget.
    pub fn new(settings: RetrySettings) -> Self {
        RetryPolicy {
            settings,
            attempt: 1,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            retries: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Retries made so far by every request sharing this policy (for metrics); fallbacks to
    /// another deployment are not counted.
    pub fn retries_total(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The delay before attempt `self.attempt + 1`.
    fn delay(&self, error: &GatewayError) -> Duration {
        let max = self.settings.max_delay;
        if let Some(after) = error.retry_after() {
            return after.min(max);
        }
        let exp = self
            .settings
            .base_delay
            .saturating_mul(1u32 << (self.attempt - 1).min(16))
            .min(max);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            rand::random::<u64>() % (nanos + 1)
        })
    }
}

impl RetryPolicy {
    /// The one retry decision of every operation: the backoff before the next attempt, or `None`
    /// to answer with `result`.
    fn decide<T>(
        &mut self,
        context: &CallContext,
        result: &Result<T, GatewayError>,
    ) -> Option<tokio::time::Sleep> {
        let deadline = context.deadline;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(e) => {
                // Read (and cleared) whatever happens next, so it never leaks into a later attempt.
                let fallback = context.record.take_fallback();
                if self.attempt >= self.settings.max_attempts {
                    return None;
                }
                if fallback {
                    if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                        return None;
                    }
                    self.attempt += 1;
                    tracing::debug!(attempt = self.attempt, error = %e, "falling back to another deployment");
                    return Some(tokio::time::sleep(Duration::ZERO));
                }
                if !e.is_retryable() {
                    return None;
                }
                let delay = self.delay(e);
                // An attempt that could not start before the deadline would only fail later; the
                // check comes before the budget so that such a non-retry costs it nothing.
                let too_late = deadline.is_some_and(|deadline| {
                    crate::provider::timeout::instant_after(tokio::time::Instant::now(), delay)
                        >= deadline
                });
                if too_late || !self.budget.withdraw() {
                    return None;
                }
                self.attempt += 1;
                self.retries.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(attempt = self.attempt, ?delay, error = %e, "retrying upstream call");
                Some(tokio::time::sleep(delay))
            }
        }
    }
}

impl Policy<ChatCall, ChatReply, GatewayError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut ChatCall,
        result: &mut Result<ChatReply, GatewayError>,
    ) -> Option<Self::Future> {
        self.decide(&req.context, result)
    }

    fn clone_request(&mut self, req: &ChatCall) -> Option<ChatCall> {
        Some(req.clone())
    }
}

/// Embeddings calls are retried by the same rules, budget and deadline as chat calls.
impl Policy<EmbeddingsCall, EmbeddingsResponse, GatewayError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut EmbeddingsCall,
        result: &mut Result<EmbeddingsResponse, GatewayError>,
    ) -> Option<Self::Future> {
        self.decide(&req.context, result)
    }

    fn clone_request(&mut self, req: &EmbeddingsCall) -> Option<EmbeddingsCall> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallContext, ChatRequest};

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::new(RetrySettings {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
        })
    }

    #[tokio::test]
    async fn retries_retryable_errors_up_to_max_attempts() {
        let mut p = policy(3);
        let mut call = ChatCall::new(ChatRequest::default());
        p.clone_request(&call);
        let mut r: Result<ChatReply, GatewayError> = Err(GatewayError::upstream_status(500, "x"));
        assert!(p.retry(&mut call, &mut r).is_some());
        assert!(p.retry(&mut call, &mut r).is_some());
        assert!(
            p.retry(&mut call, &mut r).is_none(),
            "third failure is final with 3 attempts"
        );
        assert_eq!(p.retries_total(), 2);
    }

    #[test]
    fn never_retries_client_errors_or_own_rejections() {
        let mut p = policy(3);
        let mut call = ChatCall::new(ChatRequest::default());
        for e in [
            GatewayError::upstream_status(400, "bad"),
            GatewayError::upstream_status(404, "nope"),
            GatewayError::model_not_found("m"),
            GatewayError::rate_limited(Duration::from_secs(1)),
        ] {
            let mut r: Result<ChatReply, GatewayError> = Err(e);
            assert!(p.retry(&mut call, &mut r).is_none());
        }
    }

    #[test]
    fn honours_retry_after_capped() {
        let p = policy(3);
        let e = GatewayError::upstream_status(429, "slow")
            .with_retry_after(Some(Duration::from_millis(20)));
        assert_eq!(p.delay(&e), Duration::from_millis(20));
        let e = GatewayError::upstream_status(429, "slow")
            .with_retry_after(Some(Duration::from_secs(100)));
        assert_eq!(p.delay(&e), Duration::from_millis(50));
        let e = GatewayError::upstream_status(500, "x");
        assert!(p.delay(&e) <= Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_goes_at_once_within_the_same_attempt_budget() {
        let mut p = RetryPolicy::new(RetrySettings {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
        });
        let mut call = ChatCall::new(ChatRequest::default());
        let throttled = || {
            Err(GatewayError::upstream_status(429, "slow")
                .with_retry_after(Some(Duration::from_secs(5))))
        };
        // Dispatch marked a fallback: the next attempt goes now, whatever the Retry-After.
        call.context.record.set_fallback(true);
        let mut r: Result<ChatReply, GatewayError> = throttled();
        let start = tokio::time::Instant::now();
        p.retry(&mut call, &mut r).unwrap().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(p.retries_total(), 0, "a fallback is not a retry");
        // No fallback left: a retry, with its backoff.
        let sleep = p.retry(&mut call, &mut r).unwrap();
        assert!(sleep.deadline() >= start + Duration::from_secs(5));
        // The third attempt was the last, fallback or not.
        call.context.record.set_fallback(true);
        assert!(p.retry(&mut call, &mut r).is_none());
        assert!(!call.context.record.take_fallback(), "the mark is cleared");
        // A fallback may follow an error that is not retried (a quota), never a final one.
        let mut p = policy(3);
        let mut quota: Result<ChatReply, GatewayError> =
            Err(GatewayError::upstream_status(429, "quota").with_upstream_status(400));
        assert!(p.retry(&mut call, &mut quota).is_none());
        call.context.record.set_fallback(true);
        assert!(p.retry(&mut call, &mut quota).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_whose_backoff_ends_after_the_deadline() {
        let mut p = policy(3);
        let slow_down = || {
            Err(GatewayError::upstream_status(429, "slow")
                .with_retry_after(Some(Duration::from_millis(40))))
        };
        let call_with_deadline = |ms: u64| {
            ChatCall::with_context(
                ChatRequest::default(),
                CallContext {
                    deadline: Some(tokio::time::Instant::now() + Duration::from_millis(ms)),
                    ..CallContext::default()
                },
            )
        };
        let mut call = call_with_deadline(30);
        let mut r: Result<ChatReply, GatewayError> = slow_down();
        assert!(
            p.retry(&mut call, &mut r).is_none(),
            "40 ms of backoff do not fit in the 30 ms left"
        );
        assert_eq!(p.retries_total(), 0);
        let mut call = call_with_deadline(45);
        assert!(p.retry(&mut call, &mut r).is_some(), "they fit in 45 ms");
        assert_eq!(p.retries_total(), 1);
    }
}
