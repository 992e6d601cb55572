//! [`SpendLedger`]: what each key spent in the current UTC day and month — dollars (in
//! nano-dollars) and tokens — and the one atomic step that checks a budget and reserves an
//! estimate against it.
//!
//! - **Memory** (default): one entry per key in this process; a new day or month starts its
//!   counters at zero.
//! - **Redis** (cargo feature `redis`): three integer counters per key and period,
//!   `open-bedrock-server:spend:{key}:usd:day:2026-12-02`, `…:{key}:usd:month:2026-12` and
//!   `…:{key}:tokens:day:2026-12-02` (the `{key}` hash tag keeps them in one cluster slot), each
//!   expiring a day after its period ends. One Lua script checks every budget and adds the amount
//!   atomically on the server, so replicas sharing the Redis share the budgets and concurrent
//!   requests cannot all slip under a limit: at most the last admitted request's estimate goes
//!   over. A correction is the same script with a (possibly negative) amount and no check. Calls
//!   are bounded by the Redis timeout; when Redis fails the request is let through unchecked and a
//!   warning is logged (fail open, like the rate limiter).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use crate::keys::Periods;

/// An amount spent: nano-dollars and tokens (negative for a refund).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spend {
    pub(crate) usd: i64,
    pub(crate) tokens: i64,
}

impl std::ops::Sub for Spend {
    type Output = Spend;
    fn sub(self, other: Spend) -> Spend {
        Spend {
            usd: self.usd.saturating_sub(other.usd),
            tokens: self.tokens.saturating_sub(other.tokens),
        }
    }
}

/// The budgets checked at admission (`None`: not limited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SpendLimits {
    pub(crate) usd_day: Option<i64>,
    pub(crate) usd_month: Option<i64>,
    pub(crate) tokens_day: Option<i64>,
}

/// Spend so far in the current periods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) usd_day: i64,
    pub(crate) usd_month: i64,
    pub(crate) tokens_day: i64,
}

/// Which budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetKind {
    UsdDay,
    UsdMonth,
    TokensDay,
}

impl BudgetKind {
    /// Its name in metrics and errors.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BudgetKind::UsdDay => "usd_per_day",
            BudgetKind::UsdMonth => "usd_per_month",
            BudgetKind::TokensDay => "tokens_per_day",
        }
    }
}

/// The outcome of [`SpendLedger::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Under every budget; the amount is reserved. The totals include it.
    Admitted(Totals),
    /// A budget is spent; nothing was added.
    Refused(BudgetKind, Totals),
    /// The counters could not be reached (Redis down): let through, nothing reserved.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unchecked,
}

/// A result now (memory) or after a Redis round trip.
pub(crate) enum Pending<T> {
    Ready(T),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Waiting(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> Pending<T> {
    /// The result, awaited.
    pub(crate) async fn resolve(self) -> T {
        match self {
            Pending::Ready(t) => t,
            Pending::Waiting(f) => f.await,
        }
    }
}

/// Per-key spend counters shared by every clone (see the module docs).
#[derive(Clone)]
pub(crate) struct SpendLedger {
    backend: Arc<Backend>,
}

enum Backend {
    Memory(Mutex<HashMap<Arc<str>, Counters>>),
    #[cfg(feature = "redis")]
    Redis(redis_ledger::RedisLedger),
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    day: i64,
    month: i64,
    totals: Totals,
}

impl Counters {
    /// Zeroes the counters of a period that has ended.
    fn roll(&mut self, p: Periods) {
        if self.day != p.day {
            self.day = p.day;
            self.totals.usd_day = 0;
            self.totals.tokens_day = 0;
        }
        if self.month != p.month {
            self.month = p.month;
            self.totals.usd_month = 0;
        }
    }

    fn add(&mut self, s: Spend) {
        self.totals.usd_day = self.totals.usd_day.saturating_add(s.usd);
        self.totals.usd_month = self.totals.usd_month.saturating_add(s.usd);
        self.totals.tokens_day = self.totals.tokens_day.saturating_add(s.tokens);
    }
}

/// The first budget that `totals` has reached.
fn spent(totals: &Totals, limits: &SpendLimits) -> Option<BudgetKind> {
    let over = |used: i64, limit: Option<i64>| limit.is_some_and(|l| used >= l);
    if over(totals.usd_day, limits.usd_day) {
        Some(BudgetKind::UsdDay)
    } else if over(totals.usd_month, limits.usd_month) {
        Some(BudgetKind::UsdMonth)
    } else if over(totals.tokens_day, limits.tokens_day) {
        Some(BudgetKind::TokensDay)
    } else {
        None
    }
}

impl std::fmt::Debug for SpendLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLedger")
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl SpendLedger {
    /// Counters in this process.
    pub(crate) fn memory() -> Self {
        SpendLedger {
            backend: Arc::new(Backend::Memory(Mutex::new(HashMap::new()))),
        }
    }

    /// Counters in the Redis at `url` (each call bounded by `timeout`). Needs a Tokio runtime.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(url: &str, timeout: std::time::Duration) -> Result<Self, String> {
        Ok(SpendLedger {
            backend: Arc::new(Backend::Redis(redis_ledger::RedisLedger::new(
                url, timeout,
            )?)),
        })
    }

    /// Whether the counters are shared between processes.
    pub(crate) fn is_shared(&self) -> bool {
        !matches!(*self.backend, Backend::Memory(_))
    }

    /// Checks `key`'s budgets in the periods `p` and, when none is spent, adds `amount`.
    pub(crate) fn admit(
        &self,
        key: &Arc<str>,
        p: Periods,
        limits: SpendLimits,
        amount: Spend,
    ) -> Pending<Admission> {
        match &*self.backend {
            Backend::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(PoisonError::into_inner);
                let c = map.entry(key.clone()).or_default();
                c.roll(p);
                if let Some(kind) = spent(&c.totals, &limits) {
                    return Pending::Ready(Admission::Refused(kind, c.totals));
                }
                c.add(amount);
                Pending::Ready(Admission::Admitted(c.totals))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                Pending::Waiting(Box::pin(r.admit(key.clone(), p, limits, amount)))
            }
        }
    }

    /// Adds `amount` (negative: takes it back) to `key`'s counters of the periods `p`; the totals
    /// after it, when known.
    pub(crate) fn add(&self, key: &Arc<str>, p: Periods, amount: Spend) -> Pending<Option<Totals>> {
        match &*self.backend {
            Backend::Memory(m) => {
                let mut map = m.lock().unwrap_or_else(PoisonError::into_inner);
                let c = map.entry(key.clone()).or_default();
                // Counters of an older period start over; a correction for a period that has
                // since ended leaves the current one alone.
                if c.day < p.day {
                    c.day = p.day;
                    c.totals.usd_day = 0;
                    c.totals.tokens_day = 0;
                }
                if c.month < p.month {
                    c.month = p.month;
                    c.totals.usd_month = 0;
                }
                if c.day == p.day {
                    c.totals.usd_day = c.totals.usd_day.saturating_add(amount.usd);
                    c.totals.tokens_day = c.totals.tokens_day.saturating_add(amount.tokens);
                }
                if c.month == p.month {
                    c.totals.usd_month = c.totals.usd_month.saturating_add(amount.usd);
                }
                Pending::Ready(Some(c.totals))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => Pending::Waiting(Box::pin(r.add(key.clone(), p, amount))),
        }
    }

    /// `key`'s spend in the periods `p`.
    pub(crate) fn read(&self, key: &Arc<str>, p: Periods) -> Pending<Option<Totals>> {
        match &*self.backend {
            Backend::Memory(m) => {
                let map = m.lock().unwrap_or_else(PoisonError::into_inner);
                let mut c = map.get(key).copied().unwrap_or_default();
                c.roll(p);
                Pending::Ready(Some(c.totals))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                Pending::Waiting(Box::pin(r.add(key.clone(), p, Spend::default())))
            }
        }
    }
}

#[cfg(feature = "redis")]
mod redis_ledger {
    use std::sync::{Arc, LazyLock};
    use std::time::Duration;

    use redis::Script;

    use super::{Admission, BudgetKind, Spend, SpendLimits, Totals};
    use crate::keys::Periods;
    use crate::rate_limit::redis::RedisConn;

    const PREFIX: &str = "open-bedrock-server:spend";
    /// A late correction still finds its period's counters for this long after the period ends.
    const GRACE_SECS: i64 = 86_400;

    /// KEYS: usd day, usd month, tokens day. ARGV: the three limits (-1: none), usd to add, tokens
    /// to add, day expiry, month expiry (epoch seconds), 1 to check the limits first. Returns
    /// `{refused budget (0 = none, 1–3), usd day, usd month, tokens day}` after the addition.
    static SPEND: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            r#"
local cur = {}
for i = 1, 3 do cur[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
if ARGV[8] == '1' then
  for i = 1, 3 do
    local lim = tonumber(ARGV[i])
    if lim >= 0 and cur[i] >= lim then return {i, cur[1], cur[2], cur[3]} end
  end
end
local add = {tonumber(ARGV[4]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local exp = {ARGV[6], ARGV[7], ARGV[6]}
for i = 1, 3 do
  if add[i] ~= 0 then
    cur[i] = redis.call('INCRBY', KEYS[i], add[i])
    redis.call('EXPIREAT', KEYS[i], exp[i])
  end
end
return {0, cur[1], cur[2], cur[3]}
"#,
        )
    });

    pub(super) struct RedisLedger {
        inner: Arc<RedisConn>,
    }

    impl RedisLedger {
        pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
            Ok(RedisLedger {
                inner: Arc::new(RedisConn::open(url, timeout, "budgets")?),
            })
        }

        fn call(
            &self,
            key: Arc<str>,
            p: Periods,
            limits: Option<SpendLimits>,
            amount: Spend,
        ) -> impl std::future::Future<Output = Option<Vec<i64>>> + Send + 'static {
            let inner = self.inner.clone();
            async move {
                let (day, month) = (p.day_label(), p.month_label());
                let l = limits.unwrap_or_default();
                let mut call = SPEND.prepare_invoke();
                call.key(format!("{PREFIX}:{{{key}}}:usd:day:{day}"))
                    .key(format!("{PREFIX}:{{{key}}}:usd:month:{month}"))
                    .key(format!("{PREFIX}:{{{key}}}:tokens:day:{day}"))
                    .arg(l.usd_day.unwrap_or(-1))
                    .arg(l.usd_month.unwrap_or(-1))
                    .arg(l.tokens_day.unwrap_or(-1))
                    .arg(amount.usd)
                    .arg(amount.tokens)
                    .arg(p.day_end() + GRACE_SECS)
                    .arg(p.month_end() + GRACE_SECS)
                    .arg(if limits.is_some() { 1 } else { 0 });
                let mut conn = inner.conn.clone();
                match tokio::time::timeout(inner.timeout, call.invoke_async::<Vec<i64>>(&mut conn))
                    .await
                {
                    Ok(Ok(v)) if v.len() == 4 => Some(v),
                    Ok(Ok(v)) => {
                        inner.warn(&format!("unexpected answer {v:?}"));
                        None
                    }
                    Ok(Err(e)) => {
                        inner.warn(&e.to_string());
                        None
                    }
                    Err(_) => {
                        inner.warn(&format!("no answer within {:?}", inner.timeout));
                        None
                    }
                }
            }
        }

        pub(super) fn admit(
            &self,
            key: Arc<str>,
            p: Periods,
            limits: SpendLimits,
            amount: Spend,
        ) -> impl std::future::Future<Output = Admission> + Send + 'static {
            let call = self.call(key, p, Some(limits), amount);
            async move {
                let Some(v) = call.await else {
                    return Admission::Unchecked;
                };
                let totals = Totals {
                    usd_day: v[1],
                    usd_month: v[2],
                    tokens_day: v[3],
                };
                match v[0] {
                    1 => Admission::Refused(BudgetKind::UsdDay, totals),
                    2 => Admission::Refused(BudgetKind::UsdMonth, totals),
                    3 => Admission::Refused(BudgetKind::TokensDay, totals),
                    _ => Admission::Admitted(totals),
                }
            }
        }

        pub(super) fn add(
            &self,
            key: Arc<str>,
            p: Periods,
            amount: Spend,
        ) -> impl std::future::Future<Output = Option<Totals>> + Send + 'static {
            let call = self.call(key, p, None, amount);
            async move {
                call.await.map(|v| Totals {
                    usd_day: v[1],
                    usd_month: v[2],
                    tokens_day: v[3],
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(day: i64, month: i64) -> Periods {
        Periods { day, month }
    }

    #[test]
    fn memory_admits_until_a_budget_is_reached_and_periods_roll_over() {
        let l = SpendLedger::memory();
        let key: Arc<str> = Arc::from("k");
        let limits = SpendLimits {
            tokens_day: Some(100),
            ..SpendLimits::default()
        };
        let est = Spend { usd: 5, tokens: 60 };
        let Pending::Ready(Admission::Admitted(t)) = l.admit(&key, p(10, 3), limits, est) else {
            panic!()
        };
        assert_eq!((t.tokens_day, t.usd_month), (60, 5));
        // 60 < 100: admitted, and overdraws by at most this estimate.
        let Pending::Ready(Admission::Admitted(t)) = l.admit(&key, p(10, 3), limits, est) else {
            panic!()
        };
        assert_eq!(t.tokens_day, 120);
        let Pending::Ready(Admission::Refused(BudgetKind::TokensDay, _)) =
            l.admit(&key, p(10, 3), limits, est)
        else {
            panic!()
        };
        // The correction brings it back under.
        let Pending::Ready(Some(t)) = l.add(
            &key,
            p(10, 3),
            Spend {
                usd: -5,
                tokens: -50,
            },
        ) else {
            panic!()
        };
        assert_eq!((t.tokens_day, t.usd_day), (70, 5));
        assert!(matches!(
            l.admit(&key, p(10, 3), limits, est),
            Pending::Ready(Admission::Admitted(_))
        ));
        // A new day starts from zero; the month goes on.
        let Pending::Ready(Some(t)) = l.read(&key, p(11, 3)) else {
            panic!()
        };
        assert_eq!((t.tokens_day, t.usd_day, t.usd_month), (0, 0, 10));
        // A late correction for yesterday leaves today alone.
        let Pending::Ready(Admission::Admitted(_)) = l.admit(&key, p(11, 3), limits, est) else {
            panic!()
        };
        let Pending::Ready(Some(t)) = l.add(
            &key,
            p(10, 3),
            Spend {
                usd: -5,
                tokens: -60,
            },
        ) else {
            panic!()
        };
        assert_eq!((t.tokens_day, t.usd_month), (60, 10));
    }
}
