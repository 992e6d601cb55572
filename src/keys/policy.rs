//! [`KeyPolicyLayer`]: the per-key checks that need the requested model — allowlist,
//! concurrency, budgets — and the cost of every call.
//!
//! It runs between detection and translation: the key's [`KeyRecord`] is in the request's
//! extensions (put there by [`auth`](crate::auth)), the model the request names is in the
//! [`DetectedRequest`] (read once by detection), and nothing has gone upstream yet.
//!
//! 1. **Allowlist.** A model the key may not use → 403 `model_not_allowed` naming the model, in
//!    the client's dialect. The check is against the model as the client names it (a model
//!    group's name, an alias), before routing.
//! 2. **Concurrency.** A key with `max_concurrent` holds one slot per request until its response
//!    body's last byte (a stream holds it while it is open); past the limit → 429
//!    `concurrency_limit_exceeded`. Slots are counted in this process: with several replicas each
//!    allows `max_concurrent`.
//! 3. **Budgets.** A key with budgets is charged an *estimate* at admission — prompt tokens as the
//!    body's bytes / 4, output tokens as the cap the request's format sends upstream
//!    ([`BodyHead::max_tokens`](crate::detect::BodyHead::max_tokens); the configured default
//!    without one, none for embeddings), priced at the requested model's price — in one atomic
//!    step that refuses the request (429 `budget_exceeded`, with the time the budget resets and
//!    `Retry-After`) when a budget is already spent. When the call ends the charge is corrected
//!    to the real usage: the reply's usage; for a stream the client abandoned, the output it was
//!    sent (estimated from its bytes) plus the prompt estimate; for a failed call, nothing. Counters live in the
//!    [`SpendLedger`](crate::rate_limit::spend) (this process, or Redis shared by every replica).
//! 4. **Cost.** Every call with a known usage is priced ([`PriceTable`]) by the model sent
//!    upstream, in the region of the Bedrock provider that served it (or of an ARN model): the `x-gateway-cost` response header on complete replies (`unknown` when the price
//!    is not known; streams have no header — the cost is known only after the last event, and
//!    HTTP trailers are not readable by most clients — their cost is in the access log and the
//!    metrics), the `cost_usd` field of the access log, and the metrics `obs_cost_usd_total` /
//!    `obs_cost_unknown_total` per key, model and provider.
//!
//! A model whose price is unknown is charged nothing against dollar budgets (its tokens still
//! count against `tokens_per_day`), is reported as `unknown`, and logs a warning: add its price in
//! `[prices]` to enforce a dollar budget on it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use http::{HeaderValue, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use super::period::{rfc3339, until};
use super::{KeyRecord, Periods};
use crate::auth::ApiKeyId;
use crate::body::Body;
use crate::cost::{PriceTable, Usd};
use crate::detect::DetectedRequest;
use crate::error::GatewayError;
use crate::load_shed::InFlightBody;
use crate::metrics::Metrics;
use crate::model::{CallRecord, Usage};
use crate::rate_limit::spend::{
    Admission, BudgetKind, Pending, Spend, SpendLedger, SpendLimits, Totals,
};
use crate::usage::UsageHook;

/// Output tokens assumed at admission when a request names no `max_tokens`.
pub const DEFAULT_ESTIMATE_OUTPUT_TOKENS: u64 = 1024;

/// The shared state of the key policy: prices, spend counters, concurrency slots, metrics.
/// Cheap to clone.
#[derive(Clone)]
pub struct KeyPolicy {
    inner: Arc<Inner>,
}

/// A key's concurrency limit and the semaphore of its slots.
type Slots = (usize, Arc<Semaphore>);

struct Inner {
    prices: PriceTable,
    ledger: SpendLedger,
    metrics: Arc<Metrics>,
    /// Per key: its limit and the semaphore of its slots.
    slots: Mutex<HashMap<Arc<str>, Slots>>,
    estimate_output_tokens: u64,
    /// The region each Bedrock provider calls (its calls are priced there).
    regions: crate::NameMap<Arc<str>, String>,
}

impl std::fmt::Debug for KeyPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPolicy")
            .field("ledger", &self.inner.ledger)
            .field("estimate_output_tokens", &self.inner.estimate_output_tokens)
            .finish_non_exhaustive()
    }
}

impl KeyPolicy {
    /// Budgets counted in this process, calls priced by `prices`, counted in `metrics`.
    pub fn new(prices: PriceTable, metrics: Arc<Metrics>) -> Self {
        KeyPolicy::with_ledger(prices, metrics, SpendLedger::memory())
    }

    /// Budgets counted in the Redis at `url` (each call bounded by `timeout`; on a failure the
    /// request is let through unchecked). Needs the `redis` feature and a Tokio runtime.
    #[cfg(feature = "redis")]
    pub fn with_redis(
        prices: PriceTable,
        metrics: Arc<Metrics>,
        url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        Ok(KeyPolicy::with_ledger(
            prices,
            metrics,
            SpendLedger::redis(url, timeout)?,
        ))
    }

    pub(crate) fn with_ledger(
        prices: PriceTable,
        metrics: Arc<Metrics>,
        ledger: SpendLedger,
    ) -> Self {
        KeyPolicy {
            inner: Arc::new(Inner {
                prices,
                ledger,
                metrics,
                slots: Mutex::new(HashMap::new()),
                estimate_output_tokens: DEFAULT_ESTIMATE_OUTPUT_TOKENS,
                regions: crate::NameMap::new(),
            }),
        }
    }

    /// Assumes `tokens` output tokens at admission for requests without `max_tokens`.
    pub fn estimate_output_tokens(mut self, tokens: u64) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.estimate_output_tokens = tokens;
        }
        self
    }

    /// Prices the calls of each provider named in `regions` in its region (Bedrock's prices
    /// differ by region); an ARN model is priced in the ARN's region.
    pub fn provider_regions(
        mut self,
        regions: impl IntoIterator<Item = (Arc<str>, String)>,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.regions.extend(regions);
        }
        self
    }

    /// Whether the budget counters are shared between processes (Redis).
    pub fn is_shared(&self) -> bool {
        self.inner.ledger.is_shared()
    }

    /// The price table.
    pub fn prices(&self) -> &PriceTable {
        &self.inner.prices
    }

    /// A layer applying this policy.
    pub fn layer(&self) -> KeyPolicyLayer {
        KeyPolicyLayer {
            policy: self.clone(),
        }
    }

    /// `key`'s spend in the current UTC day and month (`None` when the counters could not be
    /// read).
    pub(crate) async fn spend(&self, key: &Arc<str>) -> Option<Totals> {
        self.inner.ledger.read(key, Periods::now()).resolve().await
    }

    /// Requests of `key` in flight now, when it has a concurrency limit.
    pub(crate) fn in_flight(&self, key: &str, limit: usize) -> usize {
        let slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match slots.get(key) {
            Some((l, sem)) if *l == limit => limit.saturating_sub(sem.available_permits()),
            _ => 0,
        }
    }

    /// One of `key`'s `limit` slots, or `None` when all are taken. A key whose limit changed (a
    /// reload) starts a fresh count; requests admitted under the old limit finish under it.
    fn slot(&self, key: &Arc<str>, limit: usize) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut slots = self
                .inner
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let entry = slots
                .entry(key.clone())
                .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
            if entry.0 != limit {
                *entry = (limit, Arc::new(Semaphore::new(limit)));
            }
            entry.1.clone()
        };
        sem.try_acquire_owned().ok()
    }

    fn publish_budget_use(&self, key: &str, record: &KeyRecord, totals: &Totals) {
        let b = &record.budgets;
        let ratio = |used: i64, limit: i64| {
            if limit <= 0 {
                1.0
            } else {
                used as f64 / limit as f64
            }
        };
        let m = &self.inner.metrics;
        if let Some(l) = b.usd_per_day {
            m.budget_used(key, "usd_per_day", ratio(totals.usd_day, l.nanos()));
        }
        if let Some(l) = b.usd_per_month {
            m.budget_used(key, "usd_per_month", ratio(totals.usd_month, l.nanos()));
        }
        if let Some(l) = b.tokens_per_day {
            let l = i64::try_from(l).unwrap_or(i64::MAX);
            m.budget_used(key, "tokens_per_day", ratio(totals.tokens_day, l));
        }
    }
}

fn limits_of(record: &KeyRecord) -> SpendLimits {
    SpendLimits {
        usd_day: record.budgets.usd_per_day.map(Usd::nanos),
        usd_month: record.budgets.usd_per_month.map(Usd::nanos),
        tokens_day: record
            .budgets
            .tokens_per_day
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
    }
}

/// Layer that applies [`KeyPolicyService`].
#[derive(Debug, Clone)]
pub struct KeyPolicyLayer {
    policy: KeyPolicy,
}

impl<S> Layer<S> for KeyPolicyLayer {
    type Service = KeyPolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyPolicyService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The middleware (see the module docs): `Request<DetectedRequest>` in, `Response<Body>` out.
#[derive(Debug, Clone)]
pub struct KeyPolicyService<S> {
    inner: S,
    policy: KeyPolicy,
}

pin_project_lite::pin_project! {
    /// Response future of [`KeyPolicyService`]: for a key without budgets, the inner call and
    /// then the call's settlement, in place; a key with budgets waits for its admission before
    /// the call, and a refused request has its answer ready, in a box (the rarer paths: no heap
    /// block on every request).
    pub struct KeyPolicyFuture<F> {
        #[pin]
        state: PolicyState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = PolicyStateProj]
    enum PolicyState<F> {
        Calling { #[pin] fut: F, settle: Option<Settle> },
        Boxed { fut: BoxedAnswer },
        Done,
    }
}

/// A [`KeyPolicyFuture`] on one of its rarer paths.
type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<F> KeyPolicyFuture<F> {
    fn boxed(
        fut: impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
    ) -> Self {
        KeyPolicyFuture {
            state: PolicyState::Boxed { fut: Box::pin(fut) },
        }
    }
}

impl<F> Future for KeyPolicyFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let (res, settle) = match state.as_mut().project() {
            PolicyStateProj::Boxed { fut } => return fut.as_mut().poll(cx),
            // Polled again after its answer.
            PolicyStateProj::Done => return Poll::Pending,
            PolicyStateProj::Calling { fut, settle } => {
                let res = match ready!(fut.poll(cx)) {
                    Ok(res) => res,
                    Err(never) => match never {},
                };
                (res, settle.take())
            }
        };
        // The finished call is dropped first, and with it what it holds of the settlement (the
        // usage hooks), so that a settlement that is let go here is settled now: before the
        // response leaves, as the access line and the metrics read its cost from it.
        state.set(PolicyState::Done);
        let Some(settle) = settle else {
            return Poll::Pending;
        };
        let (res, correction) = settle.answered(res);
        // Only a key with budgets has a charge to correct, and it takes the boxed path.
        debug_assert!(correction.is_none());
        spawn(correction);
        Poll::Ready(Ok(res))
    }
}

impl<F> std::fmt::Debug for KeyPolicyFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPolicyFuture")
    }
}

/// What a call's answer goes through on its way out: its settlement (priced: the
/// `x-gateway-cost` header) and the key's concurrency slot, held by the body.
struct Settle {
    settlement: Arc<Settlement>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Settle {
    /// `res` with its cost header and holding the slot; the budget correction to send, if any.
    fn answered(self, res: Response<Body>) -> (Response<Body>, Option<Correction>) {
        let call = res.extensions().get::<Arc<CallRecord>>().cloned();
        let mut res = res;
        let (cost, correction) = self.settlement.responded(call, res.status().is_success());
        if let Some(cost) = cost {
            let value = match cost {
                Some(usd) => crate::header_value::written(|out| usd.write(out)),
                None => Some(HeaderValue::from_static("unknown")),
            };
            if let Some(v) = value {
                res.headers_mut()
                    .insert(crate::header_name::X_GATEWAY_COST.clone(), v);
            }
        }
        drop(self.settlement);
        let res = match self.slot {
            // The slot is held until the body's last byte (a stream's end).
            Some(permit) => res.map(|b| Body::new(InFlightBody::holding(b, Some(permit)))),
            None => res,
        };
        (res, correction)
    }
}

impl<S> Service<Request<DetectedRequest>> for KeyPolicyService<S>
where
    S: Service<Request<DetectedRequest>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = KeyPolicyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<DetectedRequest>) -> Self::Future {
        let policy = self.policy.clone();
        let record = req.extensions().get::<Arc<KeyRecord>>().cloned();
        let key: Arc<str> = req
            .extensions()
            .get::<ApiKeyId>()
            .map(|k| k.0.clone())
            .unwrap_or_else(|| Arc::from(crate::rate_limit::ANONYMOUS));
        let detected = req.body();
        let dialect = detected.reply.error_dialect();
        let model = detected.requested_model.clone();
        let refuse = |e: GatewayError| -> Self::Future {
            KeyPolicyFuture::boxed(std::future::ready(Ok(e.into_response(dialect))))
        };
        if let (Some(r), Some(m)) = (&record, &model) {
            if !r.allows(m) {
                policy.inner.metrics.key_refused(&key, "model_not_allowed");
                return refuse(GatewayError::model_not_allowed(m));
            }
        }
        let slot = match record.as_ref().and_then(|r| r.max_concurrent) {
            Some(limit) => match policy.slot(&key, limit) {
                Some(permit) => Some(permit),
                None => {
                    policy.inner.metrics.key_refused(&key, "concurrency");
                    return refuse(GatewayError::key_concurrency_limited(limit));
                }
            },
            None => None,
        };
        let prompt = (detected.body.len() as u64).div_ceil(4);
        let budgeted = record.as_ref().filter(|r| r.budgets.any()).cloned();
        // The estimate charged at admission (priced only for a key with a budget).
        let estimate = match &budgeted {
            Some(_) => {
                let output = detected
                    .max_tokens
                    .unwrap_or(policy.inner.estimate_output_tokens);
                let usage = Usage::from_parts(prompt, output, 0, 0);
                Spend {
                    usd: model
                        .as_deref()
                        .and_then(|m| policy.inner.prices.cost(m, None, &usage))
                        .map_or(0, Usd::nanos),
                    tokens: i64::try_from(prompt.saturating_add(output)).unwrap_or(i64::MAX),
                }
            }
            None => Spend::default(),
        };
        let periods = Periods::now();
        let settlement = Arc::new(Settlement {
            policy: policy.clone(),
            key: key.clone(),
            model,
            budgeted: budgeted.clone(),
            periods,
            prompt_estimate: prompt,
            state: Mutex::new(SettleState::default()),
        });
        req.body_mut().usage_hooks.push_shared(settlement.clone());
        let settle = Settle { settlement, slot };
        let Some(r) = budgeted else {
            // The polled-ready service is called now.
            return KeyPolicyFuture {
                state: PolicyState::Calling {
                    fut: self.inner.call(req),
                    settle: Some(settle),
                },
            };
        };
        // The polled-ready service is called once the budgets admit the request; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        KeyPolicyFuture::boxed(async move {
            let admission = policy
                .inner
                .ledger
                .admit(&key, periods, limits_of(&r), estimate)
                .resolve()
                .await;
            match admission {
                Admission::Refused(kind, totals) => {
                    settle.settlement.abandon();
                    policy.publish_budget_use(&key, &r, &totals);
                    policy.inner.metrics.key_refused(&key, kind.as_str());
                    return Ok(budget_error(kind, periods).into_response(dialect));
                }
                Admission::Admitted(totals) => {
                    settle.settlement.reserved(estimate);
                    policy.publish_budget_use(&key, &r, &totals);
                }
                Admission::Unchecked => {}
            }
            let res = inner.call(req).await?;
            let (res, correction) = settle.answered(res);
            if let Some(correction) = correction {
                // The key's next request sees the real charge.
                correction.await;
            }
            Ok(res)
        })
    }
}

/// The 429 for a spent `kind` of budget in the periods `p`.
fn budget_error(kind: BudgetKind, p: Periods) -> GatewayError {
    let end = match kind {
        BudgetKind::UsdDay | BudgetKind::TokensDay => p.day_end(),
        BudgetKind::UsdMonth => p.month_end(),
    };
    GatewayError::budget_exceeded(kind.as_str(), &rfc3339(end), until(end, SystemTime::now()))
}

/// One call's end-of-call accounting: its usage (from the usage hooks) and its record (from the
/// response) meet here, in either order; the first time both are known the call is priced and
/// its budget charge corrected. Dropped without a usage, the charge becomes the prompt estimate
/// for a call that was answered (a stream abandoned before any output), nothing otherwise.
struct Settlement {
    policy: KeyPolicy,
    key: Arc<str>,
    model: Option<String>,
    budgeted: Option<Arc<KeyRecord>>,
    periods: Periods,
    prompt_estimate: u64,
    state: Mutex<SettleState>,
}

#[derive(Default)]
struct SettleState {
    reserved: Spend,
    usage: Option<Usage>,
    responded: Option<(Option<Arc<CallRecord>>, bool)>,
    done: bool,
}

impl Settlement {
    fn lock(&self) -> std::sync::MutexGuard<'_, SettleState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The estimate was charged.
    fn reserved(&self, amount: Spend) {
        self.lock().reserved = amount;
    }

    /// Refused at admission: nothing to settle.
    fn abandon(&self) {
        self.lock().done = true;
    }

    /// The usage hook.
    fn usage(&self, usage: &Usage) {
        let mut s = self.lock();
        if s.done || s.usage.is_some() {
            return;
        }
        let mut usage = usage.clone();
        if usage.prompt_tokens == 0 {
            // An abandoned stream's estimate counts the output only: the prompt was sent.
            usage.prompt_tokens = self.prompt_estimate;
            usage.total_tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        }
        if let Some((record, _)) = s.responded.clone() {
            s.done = true;
            let reserved = s.reserved;
            drop(s);
            spawn(self.finish(Some(&usage), record.as_deref(), reserved).1);
        } else {
            s.usage = Some(usage);
        }
    }

    /// The response head: settles when the usage is known (a complete reply) or the call failed.
    /// The cost when it was settled here (`Some(None)`: unknown), and the correction to await.
    fn responded(
        &self,
        record: Option<Arc<CallRecord>>,
        success: bool,
    ) -> (Option<Option<Usd>>, Option<Correction>) {
        let mut s = self.lock();
        if s.done {
            return (None, None);
        }
        match s.usage.take() {
            Some(usage) => {
                s.done = true;
                let reserved = s.reserved;
                drop(s);
                let (cost, correction) = self.finish(Some(&usage), record.as_deref(), reserved);
                (Some(cost), correction)
            }
            None if !success => {
                s.done = true;
                let reserved = s.reserved;
                drop(s);
                (None, self.finish(None, record.as_deref(), reserved).1)
            }
            None => {
                s.responded = Some((record, success));
                (None, None)
            }
        }
    }

    /// Prices `usage` (when known), records it, and corrects the budget charge from `reserved`
    /// to what was used.
    ///
    /// The Redis correction, when there is one, is returned to be awaited (a complete reply waits
    /// for it, so the key's next request sees it) or [spawned](spawn).
    fn finish(
        &self,
        usage: Option<&Usage>,
        record: Option<&CallRecord>,
        reserved: Spend,
    ) -> (Option<Usd>, Option<Correction>) {
        let inner = &self.policy.inner;
        let mut cost = None;
        let mut actual = Spend::default();
        if let Some(usage) = usage {
            let upstream = record.and_then(CallRecord::upstream_model);
            let priced = upstream
                .as_deref()
                .or(self.model.as_deref())
                .unwrap_or_default();
            let provider = record.and_then(CallRecord::provider);
            let region = crate::cost::region_of_arn(priced).or_else(|| {
                provider
                    .as_ref()
                    .and_then(|p| inner.regions.get(p))
                    .map(String::as_str)
            });
            cost = inner.prices.cost(priced, region, usage);
            let client_model = record
                .map(|r| r.model.as_str())
                .or(self.model.as_deref())
                .unwrap_or("none");
            if let Some(r) = record {
                r.record_cost(cost);
            }
            let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
            inner.metrics.key_usage(
                &self.key,
                client_model,
                provider.as_deref().unwrap_or("none"),
                tokens,
                cost,
            );
            if cost.is_none()
                && self
                    .budgeted
                    .as_ref()
                    .is_some_and(|r| r.budgets.in_dollars())
            {
                tracing::warn!(key_id = %self.key, model = %priced, "no price for this model: its cost is not charged to the key's dollar budget (add it under [prices])");
            }
            actual = Spend {
                usd: cost.map_or(0, Usd::nanos),
                tokens: i64::try_from(tokens).unwrap_or(i64::MAX),
            };
        }
        let Some(budgeted) = &self.budgeted else {
            return (cost, None);
        };
        let correction = actual - reserved;
        if correction == Spend::default() {
            return (cost, None);
        }
        match inner.ledger.add(&self.key, self.periods, correction) {
            Pending::Ready(Some(totals)) => {
                self.policy.publish_budget_use(&self.key, budgeted, &totals);
                (cost, None)
            }
            Pending::Ready(None) => (cost, None),
            Pending::Waiting(fut) => {
                let (policy, key, record) =
                    (self.policy.clone(), self.key.clone(), budgeted.clone());
                let correction: Correction = Box::pin(async move {
                    if let Some(totals) = fut.await {
                        policy.publish_budget_use(&key, &record, &totals);
                    }
                });
                (cost, Some(correction))
            }
        }
    }
}

/// The usage hook: the settlement itself, already shared.
impl UsageHook for Settlement {
    fn report(&self, usage: &Usage) {
        self.usage(usage);
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if s.done {
            return;
        }
        s.done = true;
        let reserved = s.reserved;
        let responded = s.responded.take();
        let answered = responded.as_ref().is_some_and(|(_, ok)| *ok);
        let record = responded.and_then(|(r, _)| r);
        // Answered but no usage ever came (a stream dropped before its first output): the prompt
        // was sent upstream, so it is paid for.
        let usage = answered.then(|| Usage::from_parts(self.prompt_estimate, 0, 0, 0));
        spawn(self.finish(usage.as_ref(), record.as_deref(), reserved).1);
    }
}

/// A budget correction on its way to Redis.
type Correction = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Sends `correction` from a task of its own (from a usage hook or a drop, which cannot wait).
fn spawn(correction: Option<Correction>) {
    let Some(correction) = correction else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(correction);
        }
        Err(_) => tracing::warn!("budget correction dropped: no Tokio runtime"),
    }
}
