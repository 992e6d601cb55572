//! Model groups: one public model name served by several deployments, with balancing, fallbacks
//! and passive outlier ejection.
//!
//! A [`ModelGroup`] is a list of [`Deployment`]s — each a [`Route`] to a named provider service
//! (the upstream model id and, on Bedrock, the family), a weight and a priority tier — and a
//! [`BalanceStrategy`]. [`Dispatch`](super::Dispatch) serves a request for the group's name by
//! choosing one deployment per attempt:
//!
//! - **Tiers.** The lowest priority first; within it, the deployments this request has not tried
//!   and that are not ejected, chosen by the strategy (weighted random, least outstanding requests
//!   or lowest peak-EWMA latency, the last two by the power of two choices, `balance`). The next
//!   tier serves only when every deployment of the lower ones has been tried or is ejected; when
//!   every untried deployment is ejected, the least recently failed one is tried rather than
//!   failing fast.
//! - **Fallbacks.** An attempt that fails with 429, a 5xx, a timeout or a connection failure —
//!   before the first byte, since a provider answers a stream only once its first event has
//!   arrived — marks the call as able to fall back when an untried deployment remains
//!   ([`is_fallback_error`]). Never on other 4xx, never after the first byte. Each attempt is
//!   translated for its own provider: the canonical request is per call, the route per attempt,
//!   and a client's native Bedrock body is forwarded as written only to a deployment of the same
//!   Bedrock family (the Bedrock provider checks the route's family against the body's format).
//! - **One budget.** The attempts themselves are made by the one retry layer
//!   ([`crate::retry`]), so retries and fallbacks share `retry.max_attempts`: a fallback to an
//!   untried deployment goes at once (no backoff, no retry-budget token), a second attempt at a
//!   deployment already tried waits for the backoff like any retry.
//! - **Context window.** A deployment's `context_length_exceeded` error sends the call once to the
//!   group's `context_window_fallback` model, when one is configured.
//! - **Outlier ejection** per deployment ([`DeploymentState`], the `health` module): consecutive
//!   failures or a failure rate eject for a cooldown that doubles on repeat, a throttled
//!   deployment rests for its `Retry-After`, a half-open probe brings it back.
//!
//! ```
//! use open_bedrock_server::error::GatewayError;
//! use open_bedrock_server::model::{CallContext, ChatCall, ChatReply, ChatRequest};
//! use open_bedrock_server::provider::group::{Deployment, ModelGroup};
//! use open_bedrock_server::provider::{mock, Dispatch};
//! use open_bedrock_server::retry::RetryPolicy;
//! use open_bedrock_server::route::{ProviderKind, Route, Router};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // `east` is throttled; `west` answers with the upstream model its route names.
//! let east = tower::service_fn(|_call: ChatCall| async {
//!     Err::<ChatReply, _>(GatewayError::upstream_status(429, "slow down"))
//! });
//! let west = tower::service_fn(|call: ChatCall| async move {
//!     let mut request = (*call.request).clone();
//!     request.model = call.route.map(|r| r.upstream_model.to_string()).unwrap_or_default();
//!     Ok::<_, GatewayError>(ChatReply::Complete(mock::mock_response(&request)))
//! });
//! let claude = ModelGroup::builder("claude")
//!     .deployment(Deployment::new("east", Route::new("east", ProviderKind::OpenAi, "claude-east")))
//!     .deployment(Deployment::new("west", Route::new("west", ProviderKind::OpenAi, "claude-west")).priority(1))
//!     .build();
//! let dispatch = Dispatch::new(Router::default())
//!     .with_provider("east", east)
//!     .with_provider("west", west)
//!     .with_group(claude);
//! let core = tower::retry::Retry::new(RetryPolicy::new(Default::default()), dispatch);
//!
//! let mut request = ChatRequest::default();
//! request.model = "claude".into();
//! let call = ChatCall::with_context(request, CallContext::default());
//! let record = call.context.record.clone();
//! let ChatReply::Complete(reply) = core.oneshot(call).await.unwrap() else { unreachable!() };
//! assert_eq!(reply.model, "claude-west", "east was throttled: the call fell back to west");
//! let log: Vec<String> = record.attempt_log().iter()
//!     .map(|a| format!("{}:{}", a.deployment.as_deref().unwrap_or("-"), a.outcome))
//!     .collect();
//! assert_eq!(log, ["east:http_429", "west:ok"]);
//! # }
//! ```

mod balance;
mod health;

use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use http::StatusCode;
use tokio::time::Instant;

pub use health::DeploymentState;

pub(crate) use health::Pass;
use health::{Admission, Health, Verdict};

pub use crate::config::{BalanceStrategy, OutlierSettings};
use crate::error::{ErrorKind, GatewayError};
use crate::metrics::DeploymentMetrics;
use crate::model::StreamWrapper;
use crate::route::Route;

/// Whether an attempt that failed with `error` may go on to another deployment: 429 (throttling
/// and quotas alike: another account or region has its own), any 5xx, a timeout before the first
/// byte, a connection failure, or a reply that broke the protocol. Never another 4xx (the request
/// itself is at fault, or the gateway's own credentials), never the gateway's own rejections,
/// never a request whose total time is up.
pub fn is_fallback_error(error: &GatewayError) -> bool {
    match error.kind() {
        ErrorKind::UpstreamConnect | ErrorKind::UpstreamProtocol => true,
        ErrorKind::UpstreamTimeout => error.is_retryable(),
        ErrorKind::Upstream => {
            error.is_retryable()
                || error.status() == StatusCode::TOO_MANY_REQUESTS
                || error.status().is_server_error()
        }
        _ => false,
    }
}

/// What `error` says about the deployment that answered it.
fn verdict(error: &GatewayError) -> Verdict {
    if !is_fallback_error(error) {
        return Verdict::Neutral;
    }
    let throttled = error.status() == StatusCode::TOO_MANY_REQUESTS
        || error.upstream_status_code() == Some(429);
    Verdict::Failure {
        rest: throttled.then(|| error.retry_after()).flatten(),
    }
}

/// Whether `error` says the request is larger than the model's context window.
pub(crate) fn is_context_window_error(error: &GatewayError) -> bool {
    error.code() == Some("context_length_exceeded")
}

/// One deployment of a model group: a route to a provider service, a weight within its tier and
/// a priority tier (0 first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    name: Arc<str>,
    route: Route,
    weight: u32,
    priority: u32,
}

impl Deployment {
    /// The deployment `name` (shown in headers, logs and metrics) served by `route`, with weight 1
    /// in tier 0.
    pub fn new(name: impl Into<Arc<str>>, route: Route) -> Self {
        Deployment {
            name: name.into(),
            route,
            weight: 1,
            priority: 0,
        }
    }

    /// Its share of its tier's traffic relative to the others (at least 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Its tier: a higher tier serves only when the lower ones are tried or ejected.
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it goes.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Its weight.
    pub fn weight_value(&self) -> u32 {
        self.weight
    }

    /// Its tier.
    pub fn priority_value(&self) -> u32 {
        self.priority
    }
}

/// Builds a [`ModelGroup`].
#[derive(Debug)]
#[must_use]
pub struct ModelGroupBuilder {
    name: Arc<str>,
    strategy: BalanceStrategy,
    outlier: OutlierSettings,
    context_window_fallback: Option<Arc<str>>,
    deployments: Vec<Deployment>,
}

impl ModelGroupBuilder {
    /// Spreads requests within a tier by `strategy` (default: weighted random).
    pub fn strategy(mut self, strategy: BalanceStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Ejects outliers by `settings`.
    pub fn outlier(mut self, settings: OutlierSettings) -> Self {
        self.outlier = settings;
        self
    }

    /// Sends a request that exceeds a deployment's context window to `model` (an id, an alias or
    /// another group), once.
    pub fn context_window_fallback(mut self, model: impl Into<Arc<str>>) -> Self {
        self.context_window_fallback = Some(model.into());
        self
    }

    /// Adds a deployment. A name already taken in the group gets a `#2`, `#3`, … suffix.
    pub fn deployment(mut self, mut deployment: Deployment) -> Self {
        let base = deployment.name.clone();
        let mut n = 1;
        while self.deployments.iter().any(|d| d.name == deployment.name) {
            n += 1;
            deployment.name = format!("{base}#{n}").into();
        }
        self.deployments.push(deployment);
        self
    }

    /// The group.
    pub fn build(self) -> ModelGroup {
        let mut deployments = self.deployments;
        deployments.sort_by_key(|d| d.priority);
        let mut tiers: Vec<Range<usize>> = Vec::new();
        for (i, d) in deployments.iter().enumerate() {
            match tiers.last_mut() {
                Some(t) if deployments[t.start].priority == d.priority => t.end = i + 1,
                _ => tiers.push(i..i + 1),
            }
        }
        ModelGroup {
            inner: Arc::new(Inner {
                name: self.name,
                strategy: self.strategy,
                outlier: self.outlier,
                context_window_fallback: self.context_window_fallback,
                slots: deployments
                    .into_iter()
                    .map(|deployment| Slot {
                        deployment,
                        health: Health::new(),
                        metrics: OnceLock::new(),
                    })
                    .collect(),
                tiers,
            }),
        }
    }
}

/// A public model name served by several deployments. Cheap to clone; clones share the
/// deployments' health.
#[derive(Debug, Clone)]
pub struct ModelGroup {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    strategy: BalanceStrategy,
    outlier: OutlierSettings,
    context_window_fallback: Option<Arc<str>>,
    /// Sorted by priority.
    slots: Vec<Slot>,
    /// The index range of each priority tier, lowest priority first.
    tiers: Vec<Range<usize>>,
}

#[derive(Debug)]
struct Slot {
    deployment: Deployment,
    health: Health,
    metrics: OnceLock<DeploymentMetrics>,
}

/// The choice of one attempt: the deployment's index and how it was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pick {
    pub(crate) index: usize,
    pub(crate) pass: Pass,
}

impl ModelGroup {
    /// A builder for the group `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> ModelGroupBuilder {
        ModelGroupBuilder {
            name: name.into(),
            strategy: BalanceStrategy::default(),
            outlier: OutlierSettings::default(),
            context_window_fallback: None,
            deployments: Vec::new(),
        }
    }

    /// The public model name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The balancing strategy.
    pub fn strategy(&self) -> BalanceStrategy {
        self.inner.strategy
    }

    /// The deployments, lowest tier first.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.inner.slots.iter().map(|s| &s.deployment)
    }

    /// The model a request that exceeds a deployment's context window goes to.
    pub fn context_window_fallback(&self) -> Option<&Arc<str>> {
        self.inner.context_window_fallback.as_ref()
    }

    /// The state of the deployment named `deployment`, now.
    pub fn state(&self, deployment: &str) -> Option<DeploymentState> {
        let now = Instant::now();
        self.slot_named(deployment)
            .map(|(_, s)| s.health.state_at(now))
    }

    /// Requests sent to the deployment named `deployment` and not finished (streams until their
    /// end).
    pub fn outstanding(&self, deployment: &str) -> Option<usize> {
        self.slot_named(deployment)
            .map(|(_, s)| s.health.outstanding())
    }

    fn slot_named(&self, name: &str) -> Option<(usize, &Slot)> {
        self.inner
            .slots
            .iter()
            .enumerate()
            .find(|(_, s)| &*s.deployment.name == name)
    }

    pub(crate) fn deployment_at(&self, index: usize) -> Option<&Deployment> {
        self.inner.slots.get(index).map(|s| &s.deployment)
    }

    /// Gives each deployment its metrics (once; later calls change nothing).
    pub(crate) fn attach_metrics(&self, make: impl Fn(&Deployment) -> DeploymentMetrics) {
        for slot in &self.inner.slots {
            let _ = slot.metrics.set(make(&slot.deployment));
        }
    }

    /// Each deployment with its state and outstanding requests, for the metrics' gauges.
    pub(crate) fn gauges(&self) -> impl Iterator<Item = (&Deployment, DeploymentState, usize)> {
        let now = Instant::now();
        self.inner.slots.iter().map(move |s| {
            (
                &s.deployment,
                s.health.state_at(now),
                s.health.outstanding(),
            )
        })
    }

    fn tried_indices(&self, tried: &[Arc<str>]) -> Vec<bool> {
        self.inner
            .slots
            .iter()
            .map(|s| tried.contains(&s.deployment.name))
            .collect()
    }

    /// Whether a deployment remains that this request has not tried.
    pub(crate) fn has_untried(&self, tried: &[Arc<str>]) -> bool {
        self.tried_indices(tried).iter().any(|t| !t)
    }

    /// The deployment for the next attempt of a request that has tried `tried`.
    pub(crate) fn pick(&self, tried: &[Arc<str>]) -> Option<Pick> {
        let now = Instant::now();
        let tried = self.tried_indices(tried);
        let slots = &self.inner.slots;
        let admission: Vec<Admission> = slots.iter().map(|s| s.health.admission(now)).collect();
        let untried = |i: &usize| !tried[*i];
        // Untried and admitted, tier by tier; then, every deployment tried, admitted ones again.
        for fresh in [true, false] {
            for tier in &self.inner.tiers {
                let mut candidates: Vec<usize> = tier
                    .clone()
                    .filter(|i| !fresh || untried(i))
                    .filter(|&i| admission[i] != Admission::Closed)
                    .collect();
                while let Some(index) = self.choose(&candidates, now) {
                    if admission[index] == Admission::Open {
                        return Some(Pick {
                            index,
                            pass: Pass::Open,
                        });
                    }
                    if slots[index].health.claim_probe(now) {
                        return Some(Pick {
                            index,
                            pass: Pass::Probe,
                        });
                    }
                    // Another request took the probe meanwhile.
                    candidates.retain(|&i| i != index);
                }
            }
            // Every untried deployment is ejected: the least recently failed one of them.
            let pool: Vec<usize> = (0..slots.len()).filter(|i| !fresh || untried(i)).collect();
            if let Some(index) = pool
                .into_iter()
                .min_by_key(|&i| (slots[i].health.last_failure(), slots[i].deployment.priority))
            {
                let pass = if slots[index].health.claim_probe(now) {
                    Pass::Probe
                } else {
                    Pass::Forced
                };
                return Some(Pick { index, pass });
            }
        }
        None
    }

    fn choose(&self, candidates: &[usize], now: Instant) -> Option<usize> {
        let slots = &self.inner.slots;
        let strategy = self.inner.strategy;
        balance::choose(
            &mut rand::thread_rng(),
            strategy,
            candidates,
            |i| slots[i].deployment.weight,
            |i| {
                let health = &slots[i].health;
                let pending = health.outstanding() as f64 + 1.0;
                match strategy {
                    BalanceStrategy::LowestLatency => health.latency(now) * pending,
                    _ => pending,
                }
            },
        )
    }

    /// Starts an attempt at deployment `pick.index`: counts it outstanding until the ticket is
    /// dropped.
    pub(crate) fn start(&self, pick: Pick) -> AttemptTicket {
        if let Some(slot) = self.inner.slots.get(pick.index) {
            slot.health.started();
            if let Some(m) = slot.metrics.get() {
                m.requests.inc();
            }
        }
        AttemptTicket {
            group: self.clone(),
            pick,
            started: Instant::now(),
            settled: false,
        }
    }

    /// Counts a fallback taken away from deployment `index`.
    pub(crate) fn note_fallback(&self, index: usize) {
        if let Some(m) = self.inner.slots.get(index).and_then(|s| s.metrics.get()) {
            m.fallbacks.inc();
        }
    }

    pub(crate) fn index_of(&self, deployment: &str) -> Option<usize> {
        self.slot_named(deployment).map(|(i, _)| i)
    }

    fn record(&self, pick: Pick, verdict: Verdict, latency: Option<Duration>, reason: &str) {
        let Some(slot) = self.inner.slots.get(pick.index) else {
            return;
        };
        let change = slot.health.record(
            verdict,
            latency,
            pick.pass,
            &self.inner.outlier,
            Instant::now(),
        );
        let metrics = slot.metrics.get();
        if let (Some(m), Verdict::Failure { .. }) = (metrics, verdict) {
            m.failure(reason);
        }
        if let (Some(m), Some(latency), Verdict::Success) = (metrics, latency, verdict) {
            m.latency.observe(latency.as_secs_f64());
        }
        if change.ejected {
            if let Some(m) = metrics {
                m.ejections.inc();
            }
            tracing::warn!(group = %self.inner.name, deployment = %slot.deployment.name, reason, "deployment ejected");
        }
        if change.restored {
            tracing::info!(group = %self.inner.name, deployment = %slot.deployment.name, "deployment back in service");
        }
    }
}

/// One attempt at a deployment: outstanding until dropped (a stream holds it until its end), and
/// its outcome recorded once.
#[derive(Debug)]
pub(crate) struct AttemptTicket {
    group: ModelGroup,
    pick: Pick,
    started: Instant,
    settled: bool,
}

impl AttemptTicket {
    /// The group of the deployment.
    pub(crate) fn group(&self) -> &ModelGroup {
        &self.group
    }

    /// The first byte arrived (a complete reply, or a stream's first event).
    pub(crate) fn succeeded(&mut self) {
        self.settled = true;
        let latency = self.started.elapsed();
        self.group
            .record(self.pick, Verdict::Success, Some(latency), "ok");
    }

    /// The attempt failed before its first byte.
    pub(crate) fn failed(&mut self, error: &GatewayError) {
        self.settled = true;
        let verdict = verdict(error);
        // A timeout says how slow the deployment is; a quick failure says nothing about speed.
        let latency = (error.kind() == ErrorKind::UpstreamTimeout).then(|| self.started.elapsed());
        self.group
            .record(self.pick, verdict, latency, failure_reason(error));
    }

    /// The stream failed after its first event: no fallback any more, but it counts against the
    /// deployment's health.
    pub(crate) fn stream_failed(&mut self, error: &GatewayError) {
        let verdict = verdict(error);
        let pass = Pick {
            pass: Pass::Open,
            ..self.pick
        };
        self.group
            .record(pass, verdict, None, failure_reason(error));
    }
}

impl Drop for AttemptTicket {
    fn drop(&mut self) {
        if !self.settled {
            // Cancelled before its first byte: nothing learnt, but a probe must be given back.
            self.group
                .record(self.pick, Verdict::Neutral, None, "cancelled");
        }
        if let Some(slot) = self.group.inner.slots.get(self.pick.index) {
            slot.health.finished();
        }
    }
}

/// A stream holding its attempt's ticket until its end (the deployment's outstanding request),
/// with an error inside it counted against the deployment; applied to either kind of stream by
/// [`ChatReply::wrap_stream`](crate::model::ChatReply).
pub(crate) struct TrackStream(pub(crate) AttemptTicket);

impl StreamWrapper for TrackStream {
    fn wrap<T: Send + 'static>(
        self,
        stream: impl Stream<Item = Result<T, GatewayError>> + Send + Unpin + 'static,
    ) -> impl Stream<Item = Result<T, GatewayError>> + Send + 'static {
        futures_util::stream::unfold(
            (stream, Some(self.0)),
            |(mut stream, mut ticket)| async move {
                let item = stream.next().await;
                match &item {
                    Some(Err(e)) => {
                        if let Some(t) = ticket.as_mut() {
                            t.stream_failed(e);
                        }
                        ticket = None;
                    }
                    None => ticket = None,
                    Some(Ok(_)) => {}
                }
                item.map(|item| (item, (stream, ticket)))
            },
        )
    }
}

/// The metrics label of a failure.
fn failure_reason(error: &GatewayError) -> &'static str {
    match error.kind() {
        ErrorKind::UpstreamTimeout => "timeout",
        ErrorKind::UpstreamConnect => "connect",
        ErrorKind::UpstreamProtocol => "protocol",
        _ if error.status() == StatusCode::TOO_MANY_REQUESTS => "throttled",
        _ if error.status().is_server_error() => "server_error",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ProviderKind;

    fn group(strategy: BalanceStrategy, outlier: OutlierSettings) -> ModelGroup {
        let d = |name: &str, priority: u32| {
            Deployment::new(name, Route::new(name, ProviderKind::OpenAi, "m")).priority(priority)
        };
        ModelGroup::builder("g")
            .strategy(strategy)
            .outlier(outlier)
            .deployment(d("b", 0))
            .deployment(d("standby", 1))
            .deployment(d("a", 0))
            .build()
    }

    fn names(g: &ModelGroup, tried: &[&str]) -> String {
        let tried: Vec<Arc<str>> = tried.iter().map(|t| Arc::from(*t)).collect();
        let pick = g.pick(&tried).unwrap();
        g.deployment_at(pick.index).unwrap().name().to_owned()
    }

    fn outlier() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 1,
            ..OutlierSettings::default()
        }
    }

    #[test]
    fn tiers_then_strategy_then_the_next_tier() {
        let g = group(BalanceStrategy::Weighted, outlier());
        for _ in 0..20 {
            assert!(["a", "b"].contains(&names(&g, &[]).as_str()));
        }
        assert_eq!(names(&g, &["a"]), "b", "next in the tier");
        assert_eq!(names(&g, &["a", "b"]), "standby", "then the next tier");
        assert!(g.has_untried(&["a".into(), "b".into()]));
        assert!(!g.has_untried(&["a".into(), "b".into(), "standby".into()]));
        // Everything tried: a retry goes to the first tier again.
        for _ in 0..20 {
            assert!(["a", "b"].contains(&names(&g, &["a", "b", "standby"]).as_str()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_deployments_are_skipped_and_the_least_recently_failed_is_tried_last() {
        let g = group(BalanceStrategy::LeastOutstanding, outlier());
        let fail = |name: &str| {
            let index = g.index_of(name).unwrap();
            let mut t = g.start(Pick {
                index,
                pass: Pass::Open,
            });
            t.failed(&GatewayError::upstream_status(503, "down"));
        };
        fail("a");
        assert_eq!(g.state("a"), Some(DeploymentState::Ejected));
        for _ in 0..20 {
            assert_eq!(names(&g, &[]), "b", "a is ejected");
        }
        tokio::time::advance(Duration::from_millis(10)).await;
        fail("b");
        assert_eq!(names(&g, &[]), "standby");
        tokio::time::advance(Duration::from_millis(10)).await;
        fail("standby");
        // All ejected: the least recently failed one, sent although ejected.
        let pick = g.pick(&[]).unwrap();
        assert_eq!(g.deployment_at(pick.index).unwrap().name(), "a");
        assert_eq!(pick.pass, Pass::Forced);
        // The cooldown passes: a's probe (one at a time), then b's.
        tokio::time::advance(OutlierSettings::default().base_ejection).await;
        let probe = g.pick(&[]).unwrap();
        assert_eq!(probe.pass, Pass::Probe);
        let first = g.deployment_at(probe.index).unwrap().name().to_owned();
        let mut ticket = g.start(probe);
        let other = names(&g, &[]);
        assert_ne!(other, first, "the probe is taken: the other half-open one");
        ticket.succeeded();
        drop(ticket);
        assert_eq!(g.state(&first), Some(DeploymentState::Serving));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_is_given_back() {
        let g = group(BalanceStrategy::Weighted, outlier());
        for name in ["a", "b"] {
            let index = g.index_of(name).unwrap();
            g.start(Pick {
                index,
                pass: Pass::Open,
            })
            .failed(&GatewayError::upstream_connect("refused"));
        }
        tokio::time::advance(OutlierSettings::default().base_ejection).await;
        let probe = g.pick(&["standby".into()]).unwrap();
        assert_eq!(probe.pass, Pass::Probe);
        drop(g.start(probe));
        let again = g.pick(&["standby".into()]).unwrap();
        assert_eq!(again.pass, Pass::Probe);
    }

    #[test]
    fn outstanding_counts_until_the_ticket_is_dropped() {
        let g = group(BalanceStrategy::LeastOutstanding, outlier());
        let index = g.index_of("a").unwrap();
        let mut t = g.start(Pick {
            index,
            pass: Pass::Open,
        });
        t.succeeded();
        assert_eq!(g.outstanding("a"), Some(1));
        // With a busy, b wins every draw of two.
        for _ in 0..20 {
            assert_eq!(names(&g, &[]), "b");
        }
        drop(t);
        assert_eq!(g.outstanding("a"), Some(0));
    }

    /// Either kind of stream (canonical chunks, relayed events) holds its attempt's ticket until
    /// its end, and an error inside it counts against the deployment.
    #[tokio::test]
    async fn a_stream_of_either_kind_holds_its_ticket_and_its_error_counts() {
        use crate::format::InboundFormat;
        use crate::model::{
            ChatReply, ChunkStream, RelayedBody, RelayedEvent, RelayedReply, RelayedStream,
        };

        let g = group(BalanceStrategy::LeastOutstanding, outlier());
        let a = g.index_of("a").unwrap();
        let ticket = || {
            let mut t = g.start(Pick {
                index: a,
                pass: Pass::Open,
            });
            t.succeeded();
            TrackStream(t)
        };
        let relayed = |items: Vec<Result<RelayedEvent, GatewayError>>| {
            ChatReply::Relayed(RelayedReply::new(
                InboundFormat::OpenAi,
                "m",
                RelayedBody::Stream(RelayedStream::new(futures_util::stream::iter(items))),
            ))
        };
        let drain = |reply: ChatReply| async move {
            match reply {
                ChatReply::Stream(mut s) => while s.next().await.is_some() {},
                ChatReply::Relayed(RelayedReply {
                    body: RelayedBody::Stream(mut s),
                    ..
                }) => while s.next().await.is_some() {},
                other => panic!("{other:?}"),
            }
        };

        let open = relayed(vec![
            Ok(RelayedEvent::new("{}")),
            Ok(RelayedEvent::new("{}")),
        ])
        .wrap_stream(ticket());
        assert_eq!(
            g.outstanding("a"),
            Some(1),
            "outstanding while the stream is open"
        );
        drain(open).await;
        assert_eq!(g.outstanding("a"), Some(0));

        let chunks = ChatReply::Stream(ChunkStream::new(futures_util::stream::iter(Vec::<
            Result<crate::model::ChatChunk, GatewayError>,
        >::new(
        ))))
        .wrap_stream(ticket());
        assert_eq!(g.outstanding("a"), Some(1));
        drain(chunks).await;
        assert_eq!(g.outstanding("a"), Some(0));

        let cut = relayed(vec![
            Ok(RelayedEvent::new("{}")),
            Err(GatewayError::upstream_protocol("cut")),
        ])
        .wrap_stream(ticket());
        assert_eq!(g.state("a"), Some(DeploymentState::Serving));
        drain(cut).await;
        assert_eq!(
            g.state("a"),
            Some(DeploymentState::Ejected),
            "one failure ejects it here"
        );
    }

    #[test]
    fn which_errors_fall_back() {
        let yes = [
            GatewayError::upstream_status(429, "slow"),
            GatewayError::upstream_status(500, "x"),
            GatewayError::upstream_status(503, "x"),
            GatewayError::upstream_status(429, "quota").with_upstream_status(400),
            GatewayError::upstream_connect("refused"),
            GatewayError::upstream_timeout("slow"),
            GatewayError::upstream_protocol("garbage"),
        ];
        for e in &yes {
            assert!(is_fallback_error(e), "{e:?}");
        }
        let no = [
            GatewayError::upstream_status(400, "bad"),
            GatewayError::upstream_status(404, "nope"),
            GatewayError::upstream_status(400, "too long").with_code("context_length_exceeded"),
            GatewayError::upstream_auth("refused"),
            GatewayError::upstream_timeout("total").with_retryable(false),
            GatewayError::invalid_request("bad"),
            GatewayError::rate_limited(Duration::from_secs(1)),
        ];
        for e in &no {
            assert!(!is_fallback_error(e), "{e:?}");
        }
    }

    #[test]
    fn duplicate_names_are_told_apart() {
        let r = Route::new("p", ProviderKind::OpenAi, "m");
        let g = ModelGroup::builder("g")
            .deployment(Deployment::new("p", r.clone()))
            .deployment(Deployment::new("p", r.clone()))
            .build();
        let names: Vec<&str> = g.deployments().map(Deployment::name).collect();
        assert_eq!(names, ["p", "p#2"]);
    }
}
