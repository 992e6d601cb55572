//! The in-process backend: `governor`'s GCRA for requests, a per-key debt clock for tokens.
//!
//! Requests: one keyed `governor` limiter for every key on the default limits, one direct
//! limiter per overridden key (a keyed limiter has a single quota). Keys are the gateway's own key
//! ids (`key-1`, …, `anonymous`), a set fixed by configuration, so the state never grows unbounded.
//!
//! Tokens: the same GCRA idea in reverse, since usage is only known after the reply: each key has a
//! theoretical time at which its budget is whole again (`tat`). A charge of `n` tokens pushes it
//! `n × 60 s / tokens_per_minute` into the future; the debt `tat − now` is what is unreplenished.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

use super::config::Limits;
use super::decision::{Decision, RequestState, TokenState, Verdict, MAX_TOKEN_DEBT};

type KeyedLimiter = governor::RateLimiter<
    Arc<str>,
    DefaultKeyedStateStore<Arc<str>>,
    DefaultClock,
    StateInformationMiddleware,
>;
type DirectLimiter =
    governor::RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// The token window: a budget is "per minute".
const WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct MemoryBackend {
    keyed: KeyedLimiter,
    overridden: HashMap<Arc<str>, DirectLimiter>,
    /// Per key: when its token budget is whole again.
    tokens: Mutex<HashMap<Arc<str>, Instant>>,
}

fn quota(limits: Limits) -> Quota {
    Quota::per_minute(limits.requests_per_minute).allow_burst(limits.capacity)
}

impl MemoryBackend {
    pub(crate) fn new(default: Limits, overrides: &HashMap<Arc<str>, Limits>) -> Self {
        MemoryBackend {
            keyed: governor::RateLimiter::keyed(quota(default)).with_middleware(),
            overridden: overrides
                .iter()
                .map(|(k, l)| {
                    (
                        k.clone(),
                        governor::RateLimiter::direct(quota(*l)).with_middleware(),
                    )
                })
                .collect(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key` if it conforms.
    ///
    /// `remaining` is governor's own count. `reset` (time until the bucket is full) is exact for a
    /// refused request (`wait + (capacity − 1) × interval`); for an admitted one governor does not
    /// expose its TAT, so it is `(capacity − remaining) × interval`, an upper bound that is at most
    /// one interval (`60 s / requests_per_minute`) late.
    pub(crate) fn check(&self, key: &Arc<str>, limits: Limits) -> Decision {
        let outcome = match self.overridden.get(key) {
            Some(l) => l.check().map_err(|nu| nu.wait_time_from(l.clock().now())),
            None => self
                .keyed
                .check_key(key)
                .map_err(|nu| nu.wait_time_from(self.keyed.clock().now())),
        };
        let interval = limits.emission_interval();
        let cap = limits.capacity.get();
        let times = |n: u32| interval.checked_mul(n).unwrap_or(Duration::MAX);
        let (mut verdict, requests) = match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(cap);
                let reset = times(cap - remaining);
                (Verdict::Allow, RequestState { remaining, reset })
            }
            Err(wait) => {
                let reset = wait.saturating_add(times(cap - 1));
                (
                    Verdict::Requests { retry_after: wait },
                    RequestState {
                        remaining: 0,
                        reset,
                    },
                )
            }
        };
        let tokens = limits.tokens_per_minute.map(|tpm| {
            let (state, exhausted) = token_budget(self.token_debt(key), tpm);
            if let (Verdict::Allow, Some(retry_after)) = (verdict, exhausted) {
                verdict = Verdict::Tokens { retry_after };
            }
            state
        });
        Decision {
            verdict,
            limit: cap,
            requests: Some(requests),
            tokens,
        }
    }

    fn token_debt(&self, key: &Arc<str>) -> Duration {
        let map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map_or(Duration::ZERO, |tat| {
            tat.saturating_duration_since(Instant::now())
        })
    }

    pub(crate) fn charge_tokens(&self, key: &Arc<str>, limits: Limits, tokens: u64) {
        let Some(tpm) = limits.tokens_per_minute else {
            return;
        };
        let cost = token_cost(tokens, tpm);
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let tat = map.entry(key.clone()).or_insert(now);
        let debt = tat
            .saturating_duration_since(now)
            .saturating_add(cost)
            .min(MAX_TOKEN_DEBT);
        if let Some(new_tat) = now.checked_add(debt) {
            *tat = new_tat;
        }
    }
}

/// The time `tokens` take to replenish: `tokens × 60 s / tpm`, rounded up to the nanosecond.
fn token_cost(tokens: u64, tpm: NonZeroU64) -> Duration {
    let ns = (u128::from(tokens) * WINDOW.as_nanos()).div_ceil(u128::from(tpm.get()));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)).min(MAX_TOKEN_DEBT)
}

/// The budget left with `debt` unreplenished, and — when none is left — how long until one token is.
///
/// `remaining = ⌊(60 s − debt) × tpm / 60 s⌋`; the budget is spent when that is 0, i.e. while
/// `debt > 60 s × (tpm − 1) / tpm`.
pub(crate) fn token_budget(debt: Duration, tpm: NonZeroU64) -> (TokenState, Option<Duration>) {
    let window = WINDOW.as_nanos();
    let tpm_n = u128::from(tpm.get());
    let d = debt.as_nanos();
    let remaining = if d >= window {
        0
    } else {
        (window - d) * tpm_n / window
    };
    let state = TokenState {
        limit: tpm.get(),
        remaining: u64::try_from(remaining).unwrap_or(u64::MAX).min(tpm.get()),
        reset: debt,
    };
    let exhausted = (remaining == 0).then(|| {
        let threshold = window * (tpm_n - 1) / tpm_n;
        Duration::from_nanos(u64::try_from(d.saturating_sub(threshold)).unwrap_or(u64::MAX))
    });
    (state, exhausted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limits(rpm: u32, burst: u32, tpm: Option<u64>) -> Limits {
        let rpm = NonZeroU32::new(rpm).unwrap();
        Limits {
            requests_per_minute: rpm,
            capacity: rpm.checked_add(burst).unwrap(),
            tokens_per_minute: tpm.and_then(NonZeroU64::new),
        }
    }

    #[test]
    fn admits_rate_plus_burst_back_to_back_then_refuses() {
        let l = limits(5, 3, None);
        let m = MemoryBackend::new(l, &HashMap::new());
        let key: Arc<str> = Arc::from("key-1");
        let remaining: Vec<u32> = (0..8)
            .map(|_| {
                let d = m.check(&key, l);
                assert_eq!(d.verdict, Verdict::Allow);
                d.requests.unwrap().remaining
            })
            .collect();
        assert_eq!(remaining, [7, 6, 5, 4, 3, 2, 1, 0]);
        let d = m.check(&key, l);
        let Verdict::Requests { retry_after } = d.verdict else {
            panic!("ninth request admitted: {d:?}")
        };
        // One request every 12 s; the first was admitted a moment ago.
        assert!(
            retry_after > Duration::from_millis(11_900) && retry_after <= Duration::from_secs(12)
        );
        let reset = d.requests.unwrap().reset;
        assert!(
            reset > Duration::from_secs(95) && reset <= Duration::from_secs(96),
            "{reset:?}"
        );
    }

    #[test]
    fn token_budget_arithmetic() {
        let tpm = NonZeroU64::new(1000).unwrap();
        let (s, ex) = token_budget(Duration::ZERO, tpm);
        assert_eq!((s.remaining, s.limit, ex), (1000, 1000, None));
        let (s, ex) = token_budget(token_cost(400, tpm), tpm);
        assert_eq!((s.remaining, ex), (600, None));
        assert_eq!(s.reset, Duration::from_secs(24));
        let (s, ex) = token_budget(token_cost(999, tpm), tpm);
        assert_eq!((s.remaining, ex), (1, None));
        let (s, ex) = token_budget(token_cost(1000, tpm), tpm);
        assert_eq!((s.remaining, ex), (0, Some(Duration::from_millis(60))));
        let (s, ex) = token_budget(token_cost(1500, tpm), tpm);
        assert_eq!((s.remaining, ex), (0, Some(Duration::from_millis(30_060))));
        assert_eq!(
            token_cost(u64::MAX, tpm),
            MAX_TOKEN_DEBT,
            "absurd charges are capped"
        );
    }
}
