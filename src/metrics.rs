//! Prometheus metrics: one registry per gateway, rendered in the text exposition format at
//! `GET /metrics`.
//!
//! | Metric | Labels |
//! |---|---|
//! | `obs_requests_total` | `route`, `model`, `provider`, `status` |
//! | `obs_request_duration_seconds` (histogram; streams: until the last byte) | `route`, `provider` |
//! | `obs_time_to_first_token_seconds` (histogram; streams: until the response head, which waits for the first event) | `provider` |
//! | `obs_tokens_total` | `direction` (`input`/`output`; `cache_read`/`cache_write`: the parts of the input the prompt cache served and stored), `provider`, `model` |
//! | `obs_upstream_errors_total` | `provider`, `kind` |
//! | `obs_retries_total` | `provider` |
//! | `obs_rate_limited_total` | — |
//! | `obs_in_flight_requests` (gauge, read at scrape time) | — |
//! | `obs_open_streams` (gauge) | — |
//! | `obs_deployment_requests_total` (attempts) | `group`, `deployment`, `provider` |
//! | `obs_deployment_failures_total` | `group`, `deployment`, `reason` (`throttled`, `server_error`, `timeout`, `connect`, `protocol`) |
//! | `obs_deployment_fallbacks_total` (fallbacks taken away from it) | `group`, `deployment` |
//! | `obs_deployment_ejections_total` | `group`, `deployment` |
//! | `obs_deployment_state` (gauge at scrape time: 0 serving, 1 ejected, 2 half-open) | `group`, `deployment` |
//! | `obs_deployment_outstanding_requests` (gauge at scrape time) | `group`, `deployment` |
//! | `obs_deployment_latency_seconds` (histogram: time to the first byte of successful attempts) | `group`, `deployment` |
//! | `obs_cost_usd_total` (USD, priced from the real usage by the model sent upstream) | `key`, `model`, `provider` |
//! | `obs_cost_unknown_total` (calls whose model has no price: their cost is unknown, not zero) | `key`, `model`, `provider` |
//! | `obs_key_tokens_total` (prompt + completion tokens) | `key`, `model`, `provider` |
//! | `obs_budget_used_ratio` (gauge: spend / budget in the current period, as last seen) | `key`, `budget` (`usd_per_day`, `usd_per_month`, `tokens_per_day`) |
//! | `obs_key_rejections_total` | `key`, `reason` (`model_not_allowed`, `concurrency`, `usd_per_day`, `usd_per_month`, `tokens_per_day`) |
//!
//! `model` comes from clients, so its label values are bounded: configured and listed models
//! ([`Metrics::know_models`]) always keep their name; any other model keeps it only once a provider
//! was actually called for it, and only for the first 256 such models — a request for a made-up
//! model that never reached an upstream counts as `other`, so a client cannot blow up the registry
//! nor push the configured models out. `key` is a key's id (`key-1`, an id of the keys file,
//! `anonymous`): a set fixed by configuration.
//!
//! A finished request's series (its counter, histograms and token counters) are looked up once
//! per label set and kept (`Series`), so a request costs one hash of its labels instead of one
//! SipHash and one lock per family (`with_label_values`). The cache holds at most
//! `MAX_CACHED_SERIES` label sets; past that, series are looked up per request as before.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response};
use tower_service::Service;

use crate::body::Body;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::provider::group::ModelGroup;

const MAX_MODEL_LABELS: usize = 256;

/// How many label sets [`Metrics::observe`] keeps resolved series for.
const MAX_CACHED_SERIES: usize = 4096;

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tokens: IntCounterVec,
    upstream_errors: IntCounterVec,
    retries: IntCounterVec,
    rate_limited: IntCounter,
    in_flight: IntGauge,
    open_streams: IntGauge,
    models: RwLock<ModelLabels>,
    series: RwLock<hashbrown::HashMap<SeriesKey, Arc<Series>>>,
    deployments: DeploymentVecs,
    groups: Mutex<Vec<ModelGroup>>,
    keys: KeyVecs,
}

/// The model names that keep their own `model` label.
#[derive(Debug, Default)]
struct ModelLabels {
    /// Configured and listed models: never pushed out, not counted against the cap.
    known: hashbrown::HashSet<String>,
    /// Other models that reached an upstream, at most [`MAX_MODEL_LABELS`].
    seen: hashbrown::HashSet<String>,
}

/// A finished request's labels, owned: the key of [`Metrics::observe`]'s series cache.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    route: String,
    model: String,
    provider: String,
    status: u16,
}

/// The same labels, borrowed, to look the cache up without allocating. Its derived `Hash` hashes
/// the same fields in the same order as [`SeriesKey`]'s (`&str` hashes as `String` does).
#[derive(Hash)]
struct SeriesRef<'a> {
    route: &'a str,
    model: &'a str,
    provider: &'a str,
    status: u16,
}

impl hashbrown::Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.status == key.status
            && self.route == key.route
            && self.model == key.model
            && self.provider == key.provider
    }
}

/// One label set's series, resolved once. The token counters and the time-to-first-token
/// histogram are resolved on first use, so `/metrics` shows no series a request never touched.
#[derive(Debug)]
struct Series {
    requests: IntCounter,
    duration: Histogram,
    ttft: OnceLock<Histogram>,
    input: OnceLock<IntCounter>,
    output: OnceLock<IntCounter>,
}

/// The per-key metric families.
#[derive(Debug)]
struct KeyVecs {
    cost: CounterVec,
    cost_unknown: IntCounterVec,
    tokens: IntCounterVec,
    budget_used: GaugeVec,
    rejections: IntCounterVec,
}

/// The per-deployment metric families.
#[derive(Debug)]
struct DeploymentVecs {
    requests: IntCounterVec,
    failures: IntCounterVec,
    fallbacks: IntCounterVec,
    ejections: IntCounterVec,
    state: IntGaugeVec,
    outstanding: IntGaugeVec,
    latency: HistogramVec,
}

/// One model-group deployment's metrics, with its labels resolved once.
#[derive(Debug, Clone)]
pub(crate) struct DeploymentMetrics {
    pub(crate) requests: IntCounter,
    pub(crate) fallbacks: IntCounter,
    pub(crate) ejections: IntCounter,
    pub(crate) latency: Histogram,
    failures: IntCounterVec,
    group: String,
    deployment: String,
}

impl DeploymentMetrics {
    /// Counts one failure for `reason`.
    pub(crate) fn failure(&self, reason: &str) {
        self.failures
            .with_label_values(&[&self.group, &self.deployment, reason])
            .inc();
    }
}
/// One finished request, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation<'a> {
    /// Normalized route (`chat`, `models`, `health`, `metrics`, `other`).
    pub(crate) route: &'a str,
    /// The client's model, if the request named one.
    pub(crate) model: Option<&'a str>,
    /// The provider that served it.
    pub(crate) provider: Option<&'a str>,
    /// HTTP status sent.
    pub(crate) status: u16,
    /// Seconds until the last byte.
    pub(crate) duration: f64,
    /// Seconds until the response head (the first token for streams).
    pub(crate) first_byte: f64,
    /// `(prompt, completion)` tokens.
    pub(crate) usage: Option<(u64, u64)>,
    /// `(read, written)` prompt-cache tokens (part of the prompt tokens).
    pub(crate) cache: Option<(u64, u64)>,
    /// Upstream attempts.
    pub(crate) attempts: u32,
    /// The error kind, if the request failed (HTTP error or in-band stream error).
    pub(crate) error: Option<&'a str>,
    /// Whether the gateway's rate limit rejected it.
    pub(crate) rate_limited: bool,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered. Panics only on a programming error (a bad
    /// metric name), at start-up.
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
        ];
        let requests = counter_vec(
            &registry,
            "obs_requests_total",
            "Requests by route, model, provider and status.",
            &["route", "model", "provider", "status"],
        );
        let duration = histogram_vec(
            &registry,
            "obs_request_duration_seconds",
            "Request latency until the last byte.",
            &["route", "provider"],
            latency.clone(),
        );
        let ttft = histogram_vec(
            &registry,
            "obs_time_to_first_token_seconds",
            "Time until the response head (the first token of a stream).",
            &["provider"],
            latency.clone(),
        );
        let tokens = counter_vec(
            &registry,
            "obs_tokens_total",
            "Tokens by direction, provider and model.",
            &["direction", "provider", "model"],
        );
        let upstream_errors = counter_vec(
            &registry,
            "obs_upstream_errors_total",
            "Failed requests by provider and error kind.",
            &["provider", "kind"],
        );
        let retries = counter_vec(
            &registry,
            "obs_retries_total",
            "Upstream retries by provider.",
            &["provider"],
        );
        let rate_limited = IntCounter::new(
            "obs_rate_limited_total",
            "Requests rejected by the gateway's rate limit.",
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let in_flight = IntGauge::new(
            "obs_in_flight_requests",
            "Requests (and open streams) in flight.",
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let open_streams = IntGauge::new("obs_open_streams", "Streams being sent.")
            .unwrap_or_else(|e| panic!("metric: {e}"));
        let group_deployment = &["group", "deployment"];
        let deployments = DeploymentVecs {
            requests: counter_vec(
                &registry,
                "obs_deployment_requests_total",
                "Attempts sent to each model-group deployment.",
                &["group", "deployment", "provider"],
            ),
            failures: counter_vec(
                &registry,
                "obs_deployment_failures_total",
                "Failed attempts of each model-group deployment, by reason.",
                &["group", "deployment", "reason"],
            ),
            fallbacks: counter_vec(
                &registry,
                "obs_deployment_fallbacks_total",
                "Fallbacks taken away from each model-group deployment.",
                group_deployment,
            ),
            ejections: counter_vec(
                &registry,
                "obs_deployment_ejections_total",
                "Times each model-group deployment was ejected or put to rest.",
                group_deployment,
            ),
            state: gauge_vec(
                &registry,
                "obs_deployment_state",
                "Each model-group deployment's state: 0 serving, 1 ejected, 2 half-open.",
                group_deployment,
            ),
            outstanding: gauge_vec(
                &registry,
                "obs_deployment_outstanding_requests",
                "Requests sent to each model-group deployment and not finished.",
                group_deployment,
            ),
            latency: histogram_vec(
                &registry,
                "obs_deployment_latency_seconds",
                "Time to the first byte of each model-group deployment's successful attempts.",
                group_deployment,
                latency.clone(),
            ),
        };
        let key_model_provider = &["key", "model", "provider"];
        let cost = CounterVec::new(
            Opts::new(
                "obs_cost_usd_total",
                "Cost in USD by key, model and provider, from the real usage.",
            ),
            key_model_provider,
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let budget_used = GaugeVec::new(
            Opts::new(
                "obs_budget_used_ratio",
                "Spend / budget of each key in the current period, as last seen by this process.",
            ),
            &["key", "budget"],
        )
        .unwrap_or_else(|e| panic!("metric: {e}"));
        let keys = KeyVecs {
            cost: cost.clone(),
            cost_unknown: counter_vec(
                &registry,
                "obs_cost_unknown_total",
                "Calls whose model has no price (cost unknown), by key, model and provider.",
                key_model_provider,
            ),
            tokens: counter_vec(
                &registry,
                "obs_key_tokens_total",
                "Prompt + completion tokens by key, model and provider.",
                key_model_provider,
            ),
            budget_used: budget_used.clone(),
            rejections: counter_vec(
                &registry,
                "obs_key_rejections_total",
                "Requests refused by a key's allowlist, concurrency limit or budget.",
                &["key", "reason"],
            ),
        };
        for g in [
            Box::new(cost) as Box<dyn prometheus::core::Collector>,
            Box::new(budget_used),
            Box::new(rate_limited.clone()),
            Box::new(in_flight.clone()),
            Box::new(open_streams.clone()),
        ] {
            registry
                .register(g)
                .unwrap_or_else(|e| panic!("metric: {e}"));
        }
        Metrics {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            upstream_errors,
            retries,
            rate_limited,
            in_flight,
            open_streams,
            models: RwLock::new(ModelLabels::default()),
            series: RwLock::new(hashbrown::HashMap::new()),
            deployments,
            groups: Mutex::new(Vec::new()),
            keys,
        }
    }

    /// Counts one priced call of `key` (`cost` `None`: its price is unknown).
    pub(crate) fn key_usage(
        &self,
        key: &str,
        model: &str,
        provider: &str,
        tokens: u64,
        cost: Option<crate::cost::Usd>,
    ) {
        let model = self.model_label(model, provider != "none");
        let labels = [key, model, provider];
        self.keys.tokens.with_label_values(&labels).inc_by(tokens);
        match cost {
            Some(usd) => self
                .keys
                .cost
                .with_label_values(&labels)
                .inc_by(usd.dollars().max(0.0)),
            None => self.keys.cost_unknown.with_label_values(&labels).inc(),
        }
    }

    /// Sets `key`'s use of its `budget` (spend / budget).
    pub(crate) fn budget_used(&self, key: &str, budget: &str, ratio: f64) {
        self.keys
            .budget_used
            .with_label_values(&[key, budget])
            .set(ratio);
    }

    /// Counts a request of `key` refused for `reason`.
    pub(crate) fn key_refused(&self, key: &str, reason: &str) {
        self.keys.rejections.with_label_values(&[key, reason]).inc();
    }

    /// Gives `group`'s deployments their metrics, and reports their state and outstanding
    /// requests at every scrape.
    pub fn watch_group(&self, group: &ModelGroup) {
        let d = &self.deployments;
        group.attach_metrics(|deployment| {
            let labels = [group.name(), deployment.name()];
            DeploymentMetrics {
                requests: d.requests.with_label_values(&[
                    group.name(),
                    deployment.name(),
                    &deployment.route().provider,
                ]),
                fallbacks: d.fallbacks.with_label_values(&labels),
                ejections: d.ejections.with_label_values(&labels),
                latency: d.latency.with_label_values(&labels),
                failures: d.failures.clone(),
                group: group.name().to_owned(),
                deployment: deployment.name().to_owned(),
            }
        });
        if let Ok(mut groups) = self.groups.lock() {
            groups.push(group.clone());
        }
    }

    /// Configured and listed models: their label is always their name.
    pub fn know_models<I, M>(&self, models: I)
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        if let Ok(mut labels) = self.models.write() {
            labels.known.extend(models.into_iter().map(Into::into));
        }
    }

    fn model_label<'a>(&self, model: &'a str, reached_upstream: bool) -> &'a str {
        {
            let Ok(labels) = self.models.read() else {
                return "other";
            };
            if labels.known.contains(model) || labels.seen.contains(model) {
                return model;
            }
            if !reached_upstream || labels.seen.len() >= MAX_MODEL_LABELS {
                return "other";
            }
        }
        let Ok(mut labels) = self.models.write() else {
            return "other";
        };
        if labels.seen.contains(model) || labels.seen.len() < MAX_MODEL_LABELS {
            labels.seen.insert(model.to_owned());
            return model;
        }
        "other"
    }

    /// The series of one label set: from the cache, or resolved (and kept while the cache has
    /// room).
    fn series(&self, labels: SeriesRef<'_>) -> Arc<Series> {
        let full = match self.series.read() {
            Ok(cache) => match cache.get(&labels) {
                Some(series) => return series.clone(),
                None => cache.len() >= MAX_CACHED_SERIES,
            },
            Err(_) => true,
        };
        let mut status = itoa::Buffer::new();
        let status = status.format(labels.status);
        let series = Arc::new(Series {
            requests: self.requests.with_label_values(&[
                labels.route,
                labels.model,
                labels.provider,
                status,
            ]),
            duration: self
                .duration
                .with_label_values(&[labels.route, labels.provider]),
            ttft: OnceLock::new(),
            input: OnceLock::new(),
            output: OnceLock::new(),
        });
        // Past the cap, no write lock per request just to find there is no room.
        if full {
            return series;
        }
        if let Ok(mut cache) = self.series.write() {
            if cache.len() < MAX_CACHED_SERIES {
                cache.insert(
                    SeriesKey {
                        route: labels.route.to_owned(),
                        model: labels.model.to_owned(),
                        provider: labels.provider.to_owned(),
                        status: labels.status,
                    },
                    series.clone(),
                );
            }
        }
        series
    }

    /// Records one finished request.
    pub(crate) fn observe(&self, o: &Observation<'_>) {
        let provider = o.provider.unwrap_or("none");
        let model = o
            .model
            .map(|m| self.model_label(m, o.attempts > 0))
            .unwrap_or("none");
        let series = self.series(SeriesRef {
            route: o.route,
            model,
            provider,
            status: o.status,
        });
        series.requests.inc();
        series.duration.observe(o.duration);
        if o.route == "chat" && o.provider.is_some() {
            series
                .ttft
                .get_or_init(|| self.ttft.with_label_values(&[provider]))
                .observe(o.first_byte);
        }
        if let Some((input, output)) = o.usage {
            series
                .input
                .get_or_init(|| self.tokens.with_label_values(&["input", provider, model]))
                .inc_by(input);
            series
                .output
                .get_or_init(|| self.tokens.with_label_values(&["output", provider, model]))
                .inc_by(output);
        }
        if let Some((read, written)) = o.cache {
            if read > 0 {
                self.tokens
                    .with_label_values(&["cache_read", provider, model])
                    .inc_by(read);
            }
            if written > 0 {
                self.tokens
                    .with_label_values(&["cache_write", provider, model])
                    .inc_by(written);
            }
        }
        if o.attempts > 1 {
            self.retries
                .with_label_values(&[provider])
                .inc_by(u64::from(o.attempts - 1));
        }
        if o.rate_limited {
            self.rate_limited.inc();
        } else if let (Some(kind), Some(_)) = (o.error, o.provider) {
            self.upstream_errors
                .with_label_values(&[provider, kind])
                .inc();
        }
    }

    /// A stream started (`+1`) or ended (`-1`).
    pub(crate) fn stream_opened(&self, delta: i64) {
        self.open_streams.add(delta);
    }

    /// The text exposition, with the in-flight gauge set to `in_flight`.
    pub fn render(&self, in_flight: usize) -> String {
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        if let Ok(groups) = self.groups.lock() {
            for group in groups.iter() {
                for (deployment, state, outstanding) in group.gauges() {
                    let labels = [group.name(), deployment.name()];
                    self.deployments
                        .state
                        .with_label_values(&labels)
                        .set(state.gauge());
                    self.deployments
                        .outstanding
                        .with_label_values(&labels)
                        .set(i64::try_from(outstanding).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `GET /metrics`: the gateway's Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct MetricsService {
    metrics: Arc<Metrics>,
    in_flight: crate::load_shed::InFlight,
}

impl MetricsService {
    /// Renders `metrics`, with the in-flight gauge read from `in_flight`.
    pub fn new(metrics: Arc<Metrics>, in_flight: crate::load_shed::InFlight) -> Self {
        MetricsService { metrics, in_flight }
    }
}

impl<B> Service<Request<B>> for MetricsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let text = self.metrics.render(self.in_flight.current());
        let mut res = Response::new(Body::from(text));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        std::future::ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat request served by OpenAI's `gpt-4o` in one attempt.
    fn chat(status: u16, usage: Option<(u64, u64)>) -> Observation<'static> {
        Observation {
            route: "chat",
            model: Some("gpt-4o"),
            provider: Some("openai"),
            status,
            duration: 0.01,
            first_byte: 0.005,
            usage,
            cache: None,
            attempts: 1,
            error: None,
            rate_limited: false,
        }
    }

    #[test]
    fn cached_series_count_every_request_and_show_only_what_was_touched() {
        let m = Metrics::new();
        // The first request of this label set has no usage: no token series yet.
        m.observe(&chat(200, None));
        let text = m.render(0);
        assert!(!text.contains("obs_tokens_total{"), "{text}");
        m.observe(&chat(200, Some((5, 2))));
        m.observe(&chat(200, Some((1, 1))));
        // A request that reached no provider: no time-to-first-token series for it.
        m.observe(&Observation {
            route: "models",
            model: None,
            provider: None,
            ..chat(200, None)
        });
        let text = m.render(0);
        assert!(text.contains(r#"obs_requests_total{model="gpt-4o",provider="openai",route="chat",status="200"} 3"#), "{text}");
        assert!(
            text.contains(
                r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 6"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"obs_time_to_first_token_seconds_count{provider="openai"} 3"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"obs_time_to_first_token_seconds_count{provider="none"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"obs_requests_total{model="none",provider="none",route="models",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"obs_request_duration_seconds_count{provider="openai",route="chat"} 3"#
            ),
            "{text}"
        );
    }

    #[test]
    fn past_the_cache_cap_series_are_still_counted() {
        let m = Metrics::new();
        let extra = 10;
        for round in 0..2 {
            for status in 0..(MAX_CACHED_SERIES + extra) {
                let status = u16::try_from(status).unwrap_or(u16::MAX);
                m.observe(&chat(status, None));
            }
            assert_eq!(
                m.series.read().map(|c| c.len()).ok(),
                Some(MAX_CACHED_SERIES),
                "round {round}"
            );
        }
        let text = m.render(0);
        let last = MAX_CACHED_SERIES + extra - 1;
        assert!(text.contains(&format!(r#"obs_requests_total{{model="gpt-4o",provider="openai",route="chat",status="{last}"}} 2"#)), "uncached series counted twice");
        assert!(text.contains(
            r#"obs_requests_total{model="gpt-4o",provider="openai",route="chat",status="0"} 2"#
        ));
        assert!(text.contains(&format!(
            r#"obs_request_duration_seconds_count{{provider="openai",route="chat"}} {}"#,
            2 * (MAX_CACHED_SERIES + extra)
        )));
    }

    #[test]
    fn records_and_renders() {
        let m = Metrics::new();
        m.observe(&Observation {
            route: "chat",
            model: Some("gpt-4o"),
            provider: Some("openai"),
            status: 200,
            duration: 0.01,
            first_byte: 0.005,
            usage: Some((11, 7)),
            cache: Some((4, 0)),
            attempts: 2,
            error: None,
            rate_limited: false,
        });
        let text = m.render(3);
        assert!(text.contains(r#"obs_requests_total{model="gpt-4o",provider="openai",route="chat",status="200"} 1"#), "{text}");
        assert!(text.contains(
            r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 11"#
        ));
        assert!(text.contains(
            r#"obs_tokens_total{direction="cache_read",model="gpt-4o",provider="openai"} 4"#
        ));
        assert!(!text.contains("cache_write"), "{text}");
        assert!(text.contains(r#"obs_retries_total{provider="openai"} 1"#));
        assert!(text.contains("obs_in_flight_requests 3"));
    }

    #[test]
    fn model_labels_are_capped() {
        let m = Metrics::new();
        m.know_models(["configured"]);
        for i in 0..300 {
            assert_eq!(
                m.model_label(&format!("m{i}"), true) == "other",
                i >= MAX_MODEL_LABELS
            );
        }
        assert_eq!(
            m.model_label("configured", false),
            "configured",
            "never pushed out"
        );
        assert_eq!(
            m.model_label("made-up", false),
            "other",
            "never reached an upstream"
        );
    }
}
