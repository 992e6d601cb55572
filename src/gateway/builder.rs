//! [`GatewayBuilder`]: providers, auth, limits and routes in; a [`Gateway`] out.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BoxCore, CoreLayer, Gateway, HttpService, IngressLayer, ProviderStatus, Shared};
use crate::auth::ApiKeyAuthLayer;
use crate::config::{
    AwsClientCredential, Config, ProviderConfig, RetrySettings, Timeouts, IMPLICIT_PROVIDERS,
};
use crate::cost::PriceTable;
use crate::detect::{BodyBudget, DEFAULT_BODY_READ_TIMEOUT};
use crate::error::GatewayError;
use crate::keys::{KeyPolicy, KeyStore};
use crate::load_shed::InFlightLimitLayer;
use crate::metrics::Metrics;
use crate::provider::group::{Deployment, ModelGroup};
#[cfg(feature = "bedrock")]
use crate::provider::BedrockProvider;
#[cfg(feature = "openai")]
use crate::provider::OpenAiProvider;
use crate::provider::{Dispatch, EmbeddingsProviderService, MockProvider, ProviderService};
use crate::rate_limit::spend::SpendLedger;
use crate::rate_limit::RateLimiter;
use crate::responses_store::ResponseStore;
use crate::retry::RetryPolicy;
use crate::route::{BedrockFamily, ProviderKind, Route, Router};
use crate::server::ServerLimits;
use crate::surface::bedrock_runtime::auth::SigV4AuthLayer;

/// Builds a [`Gateway`]. Every setting has the default of an empty configuration; auth needs a
/// decision: [`api_keys`](Self::api_keys) or [`no_auth`](Self::no_auth) (with neither, every
/// request is refused).
#[derive(Debug)]
#[must_use]
pub struct GatewayBuilder {
    #[cfg(feature = "openai")]
    openai: Option<OpenAiProvider>,
    #[cfg(feature = "bedrock")]
    bedrock: Option<BedrockProvider>,
    mock: Option<MockProvider>,
    custom: Vec<(Arc<str>, ProviderService)>,
    custom_embedders: Vec<(Arc<str>, EmbeddingsProviderService)>,
    response_store: ResponseStore,
    /// What `check-config` and the start-up log say about a named provider from configuration.
    custom_details: Vec<(Arc<str>, String)>,
    provider_timeouts: Vec<(Arc<str>, Timeouts)>,
    groups: Vec<ModelGroup>,
    router: Router,
    api_keys: Vec<String>,
    auth_disabled: bool,
    aws_credentials: Vec<AwsClientCredential>,
    rate_limiter: Option<RateLimiter>,
    key_store: Option<KeyStore>,
    prices: PriceTable,
    spend_ledger: Option<SpendLedger>,
    estimate_output_tokens: u64,
    /// The region of each Bedrock provider, for prices.
    provider_regions: Vec<(Arc<str>, String)>,
    core_layers: Vec<CoreLayer>,
    ingress_layers: Vec<IngressLayer>,
    max_in_flight: usize,
    max_request_bytes: usize,
    max_json_values: usize,
    max_body_bytes_in_flight: usize,
    server_limits: ServerLimits,
    max_concurrent_per_access_key: usize,
    body_read_timeout: Duration,
    keep_alive: Duration,
    timeouts: Timeouts,
    retry: RetrySettings,
    listed_models: Vec<String>,
    drain: Duration,
    metrics_addr: Option<std::net::SocketAddr>,
    /// What start-up knows about providers that are off (for [`Gateway::providers`]).
    #[cfg(feature = "bedrock")]
    bedrock_off: &'static str,
    #[cfg(feature = "openai")]
    openai_key_set: bool,
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        GatewayBuilder::new()
    }
}

impl GatewayBuilder {
    /// A builder with the defaults of an empty configuration.
    pub fn new() -> Self {
        let defaults = Config::default();
        GatewayBuilder {
            #[cfg(feature = "openai")]
            openai: None,
            #[cfg(feature = "bedrock")]
            bedrock: None,
            mock: None,
            custom: Vec::new(),
            custom_embedders: Vec::new(),
            response_store: ResponseStore::default(),
            custom_details: Vec::new(),
            provider_timeouts: Vec::new(),
            groups: Vec::new(),
            router: Router::default(),
            api_keys: Vec::new(),
            auth_disabled: false,
            aws_credentials: Vec::new(),
            rate_limiter: None,
            key_store: None,
            prices: PriceTable::builtin(),
            spend_ledger: None,
            estimate_output_tokens: crate::keys::DEFAULT_ESTIMATE_OUTPUT_TOKENS,
            provider_regions: Vec::new(),
            core_layers: Vec::new(),
            ingress_layers: Vec::new(),
            max_in_flight: defaults.server.max_in_flight,
            max_request_bytes: defaults.server.max_request_bytes,
            max_json_values: defaults.server.max_json_values,
            max_body_bytes_in_flight: defaults.server.max_body_bytes_in_flight,
            server_limits: ServerLimits::default(),
            max_concurrent_per_access_key: defaults.auth.max_concurrent_per_access_key,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            keep_alive: defaults.server.stream_keep_alive,
            timeouts: defaults.timeouts,
            retry: defaults.retry,
            listed_models: Vec::new(),
            drain: defaults.server.shutdown_drain,
            metrics_addr: None,
            #[cfg(feature = "bedrock")]
            bedrock_off: "off: not configured",
            #[cfg(feature = "openai")]
            openai_key_set: false,
        }
    }

    /// Every setting of `config` except the providers (which [`Gateway::from_config`] builds).
    pub fn from_config(config: &Config) -> Self {
        let mut b = GatewayBuilder::new()
            .router(config.router())
            .api_keys(config.api_keys())
            .aws_credentials(&config.auth.aws_credentials)
            .max_concurrent_per_access_key(config.auth.max_concurrent_per_access_key)
            .max_in_flight(config.server.max_in_flight)
            .max_request_bytes(config.server.max_request_bytes)
            .max_json_values(config.server.max_json_values)
            .max_body_bytes_in_flight(config.server.max_body_bytes_in_flight)
            .server_limits(
                ServerLimits::new(
                    config.server.max_connections,
                    config.server.first_request_timeout,
                    config.server.idle_timeout,
                    config.server.http2_keep_alive,
                )
                .with_header_read_timeout(config.server.header_read_timeout)
                .with_threads(config.server.threads),
            )
            .body_read_timeout(config.timeouts.body_read)
            .stream_keep_alive(config.server.stream_keep_alive)
            .timeouts(config.timeouts)
            .retry(config.retry)
            .listed_models(config.models.list.clone())
            .shutdown_drain(config.server.shutdown_drain)
            .response_store(ResponseStore::in_memory(
                config.responses.max_stored,
                Duration::from_secs(config.responses.ttl_secs),
            ));
        if config.auth.disabled {
            b = b.no_auth();
        }
        if let Some(port) = config.server.metrics_port {
            b = b.metrics_addr(std::net::SocketAddr::new(config.server.metrics_host, port));
        }
        #[cfg(feature = "bedrock")]
        {
            b.bedrock_off = if config.bedrock.enabled {
                "off: no AWS region (set AWS_REGION or AWS_DEFAULT_REGION, bedrock.region, or a region in the AWS profile)"
            } else {
                "off: disabled (BEDROCK_ENABLED=false / bedrock.enabled = false)"
            };
        }
        #[cfg(feature = "openai")]
        {
            b.openai_key_set = config.openai.api_key.is_some();
        }
        b
    }

    /// Serves OpenAI-family models (and routes to `openai`) with `provider`.
    #[cfg(feature = "openai")]
    pub fn openai(mut self, provider: OpenAiProvider) -> Self {
        self.openai = Some(provider);
        self
    }

    /// Serves Bedrock models with `provider`.
    #[cfg(feature = "bedrock")]
    pub fn bedrock(mut self, provider: BedrockProvider) -> Self {
        if let Some(region) = provider.region() {
            self.provider_regions
                .push((Arc::from("bedrock"), region.to_owned()));
        }
        self.bedrock = Some(provider);
        self
    }

    /// Serves `mock/…` models with the in-process mock provider.
    pub fn mock(mut self, provider: MockProvider) -> Self {
        self.mock = Some(provider);
        self
    }

    /// Serves the provider named `name` with any [`Service<ChatCall>`](crate::model::ChatCall) of
    /// yours (replacing a built-in one of that name). Routes reach it by name: the built-in
    /// rules name `openai`, `bedrock` and `mock`; a [`RouteOverride`](crate::route::RouteOverride)
    /// can name any provider.
    pub fn provider<S>(mut self, name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: crate::provider::ChatService,
    {
        let name = name.into();
        self.custom.retain(|(n, _)| *n != name);
        self.custom.push((name, ProviderService::new(service)));
        self
    }

    /// Serves embeddings (`/v1/embeddings`) for the provider named `name` with any
    /// [`Service<EmbeddingsCall>`](crate::model::EmbeddingsCall) of yours; chat calls to that name
    /// go to the service [`provider`](Self::provider) registered.
    pub fn embeddings_provider<S>(mut self, name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: crate::provider::EmbeddingsService,
    {
        let name = name.into();
        self.custom_embedders.retain(|(n, _)| *n != name);
        self.custom_embedders
            .push((name, tower::util::BoxCloneSyncService::new(service)));
        self
    }

    /// Where `/v1/responses` keeps stored responses (default: a bounded in-process store).
    pub fn response_store(mut self, store: ResponseStore) -> Self {
        self.response_store = store;
        self
    }

    /// Bounds attempts at the provider named `name` by `timeouts` instead of the gateway's
    /// ([`timeouts`](Self::timeouts)); the request's total time still bounds them all.
    pub fn provider_timeouts(mut self, name: impl Into<Arc<str>>, timeouts: Timeouts) -> Self {
        let name = name.into();
        self.provider_timeouts.retain(|(n, _)| *n != name);
        self.provider_timeouts.push((name, timeouts));
        self
    }

    /// Serves the model named after `group` with its deployments (balancing, fallbacks, outlier
    /// ejection; [`crate::provider::group`]). Its deployments' routes name provider services
    /// registered here.
    pub fn model_group(mut self, group: ModelGroup) -> Self {
        self.groups.retain(|g| g.name() != group.name());
        self.groups.push(group);
        self
    }

    /// Builds and registers every named provider of `config` (`[providers.*]`), with its own
    /// timeouts.
    // A build with neither provider feature can only reject `[providers.*]` entries.
    #[cfg_attr(
        not(any(feature = "openai", feature = "bedrock")),
        allow(unreachable_code, unused_mut, unused_variables, clippy::never_loop)
    )]
    pub(crate) async fn providers_from_config(
        mut self,
        config: &Config,
    ) -> Result<Self, GatewayError> {
        for (name, provider) in &config.providers {
            let timeouts = provider.timeouts().over(&config.timeouts);
            let detail = match provider {
                #[cfg(not(feature = "openai"))]
                ProviderConfig::OpenAi(_) => {
                    return Err(GatewayError::internal(format!(
                        "configuration error in `providers.{name}`: this build has no OpenAI \
                         provider (cargo feature `openai`)"
                    )));
                }
                #[cfg(feature = "openai")]
                ProviderConfig::OpenAi(c) => {
                    let service = OpenAiProvider::from_provider_config(name, c, &config.timeouts)?;
                    self = self.embeddings_provider(name.as_str(), service.clone());
                    self = self.provider(name.as_str(), service);
                    let key = match (&c.api_key_env, &c.api_key_file) {
                        (Some(var), _) => format!("key from ${var} in `{}`", c.auth_header),
                        (None, Some(path)) => {
                            format!("key from {} in `{}`", path.display(), c.auth_header)
                        }
                        (None, None) => "no key".to_owned(),
                    };
                    format!("OpenAI-compatible at {} ({key})", c.base_url)
                }
                #[cfg(not(feature = "bedrock"))]
                ProviderConfig::Bedrock(_) => {
                    return Err(GatewayError::internal(format!(
                        "configuration error in `providers.{name}`: this build has no Bedrock \
                         provider (cargo feature `bedrock`)"
                    )));
                }
                #[cfg(feature = "bedrock")]
                ProviderConfig::Bedrock(c) => {
                    let service = BedrockProvider::from_provider_config(name, c, config).await?;
                    let region = service.region().unwrap_or("(none)").to_owned();
                    self = self.embeddings_provider(name.as_str(), service.clone());
                    if let Some(r) = service.region() {
                        self.provider_regions
                            .push((name.as_str().into(), r.to_owned()));
                    }
                    self = self.provider(name.as_str(), service);
                    let credentials = if c.api_key_env.is_some() || c.api_key_file.is_some() {
                        "a Bedrock API key".to_owned()
                    } else {
                        let base = match &c.profile {
                            Some(p) => format!("profile `{p}`"),
                            None => "the AWS default chain".to_owned(),
                        };
                        match &c.role_arn {
                            Some(role) => format!("role {role} assumed with {base}"),
                            None => base,
                        }
                    };
                    let endpoint = c
                        .endpoint_url
                        .as_deref()
                        .map(|u| format!(", endpoint {u}"))
                        .unwrap_or_default();
                    format!("Bedrock in {region}{endpoint} (credentials: {credentials})")
                }
            };
            let name: Arc<str> = name.as_str().into();
            self.custom_details.push((name.clone(), detail));
            self = self.provider_timeouts(name, timeouts);
        }
        Ok(self)
    }

    /// Adds the model groups of `config` (`[model_groups.*]`). A deployment naming a provider
    /// that is off (`bedrock` without a region, `mock` not enabled), or a context-window fallback
    /// that routes nowhere, is an error naming its key.
    pub(crate) fn groups_from_config(
        mut self,
        config: &Config,
        bedrock_live: bool,
    ) -> Result<Self, GatewayError> {
        let router = config.router();
        let problem = |key: String, what: String| {
            GatewayError::internal(format!("configuration error in `{key}`: {what}"))
        };
        for (name, group) in &config.model_groups {
            let mut builder = ModelGroup::builder(name.as_str())
                .strategy(group.strategy)
                .outlier(group.outlier);
            for (i, d) in group.deployments.iter().enumerate() {
                let key = format!("model_groups.{name}.deployments[{i}].provider");
                let kind_name = match config.providers.get(&d.provider) {
                    Some(p) => p.kind_name(),
                    None if IMPLICIT_PROVIDERS.contains(&d.provider.as_str()) => {
                        d.provider.as_str()
                    }
                    None => return Err(problem(key, format!("no provider `{}`", d.provider))),
                };
                let kind = match kind_name {
                    "bedrock" => {
                        let family = d.family.unwrap_or_else(|| match router.resolve(&d.model) {
                            Ok(r) if *r.upstream_model == *d.model => match r.kind {
                                ProviderKind::Bedrock(f) => f,
                                _ => BedrockFamily::Converse,
                            },
                            _ => BedrockFamily::Converse,
                        });
                        ProviderKind::Bedrock(family)
                    }
                    "mock" => ProviderKind::Mock,
                    _ => ProviderKind::OpenAi,
                };
                let off = match d.provider.as_str() {
                    #[cfg(feature = "bedrock")]
                    "bedrock" if !bedrock_live => Some(self.bedrock_off),
                    #[cfg(not(feature = "bedrock"))]
                    "bedrock" if !bedrock_live => {
                        Some("not in this build (cargo feature `bedrock`)")
                    }
                    "mock" if !config.mock.enabled => {
                        Some("off: enable it with --mock or MOCK_PROVIDER=true")
                    }
                    _ => None,
                };
                if let Some(why) = off {
                    return Err(problem(
                        key,
                        format!("the provider `{}` is {why}", d.provider),
                    ));
                }
                let route = Route::new(d.provider.as_str(), kind, d.model.as_str());
                builder = builder.deployment(
                    Deployment::new(d.name(), route)
                        .weight(d.weight)
                        .priority(d.priority),
                );
            }
            if let Some(target) = &group.context_window_fallback {
                let routable = config.model_groups.contains_key(target)
                    || config
                        .models
                        .aliases
                        .get(target)
                        .is_some_and(|t| config.model_groups.contains_key(t))
                    || router.resolve(target).is_ok();
                if !routable {
                    return Err(problem(
                        format!("model_groups.{name}.context_window_fallback"),
                        format!("`{target}` is no model group and no model the gateway routes"),
                    ));
                }
                builder = builder.context_window_fallback(target.as_str());
            }
            self = self.model_group(builder.build());
        }
        Ok(self)
    }

    /// Routes model ids with `router` (aliases, overrides, ARN families).
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Accepts these gateway keys (named `key-1`, `key-2`, … in this order).
    pub fn api_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.api_keys = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        self
    }

    /// Accepts every request without a key (as `anonymous`).
    pub fn no_auth(mut self) -> Self {
        self.auth_disabled = true;
        self
    }

    /// Accepts SigV4 requests signed with these credentials, as the keys they map to.
    pub fn aws_credentials(mut self, credentials: &[AwsClientCredential]) -> Self {
        self.aws_credentials = credentials.to_vec();
        self
    }

    /// Takes keys from `store` (its `API_KEY` keys and keys file) instead of
    /// [`api_keys`](Self::api_keys): each request carries its key's record (allowlist, limits,
    /// budgets). SigV4 credentials still map to the keys given to `api_keys`.
    pub fn key_store(mut self, store: KeyStore) -> Self {
        self.key_store = Some(store);
        self
    }

    /// Prices calls with `prices` (default: the shipped table).
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Assumes `tokens` output tokens when charging a budget's estimate for a request without
    /// `max_tokens` (default 1024).
    pub fn estimate_output_tokens(mut self, tokens: u64) -> Self {
        self.estimate_output_tokens = tokens;
        self
    }

    /// Counts budgets in the Redis at `url` (shared by every replica), each call bounded by
    /// `timeout`. Needs the `redis` feature and a Tokio runtime.
    #[cfg(feature = "redis")]
    pub fn budgets_in_redis(mut self, url: &str, timeout: Duration) -> Result<Self, GatewayError> {
        let ledger = SpendLedger::redis(url, timeout)
            .map_err(|e| GatewayError::internal(format!("budgets: {e}")))?;
        self.spend_ledger = Some(ledger);
        Ok(self)
    }

    /// Limits each key's requests and tokens with `limiter`.
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// Sheds requests past `max` in flight (a stream counts until its last byte) with a 503.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// Refuses request bodies over `bytes` with a 413.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// A request body must arrive within `timeout` (408 beyond), on every route.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Idle time before a keep-alive on an SSE stream (zero: none).
    pub fn stream_keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = every;
        self
    }

    /// Upstream timeouts (first byte, stream idle, total).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Upstream retries.
    pub fn retry(mut self, retry: RetrySettings) -> Self {
        self.retry = retry;
        self
    }

    /// Extra model ids `GET /v1/models` lists.
    pub fn listed_models(mut self, models: Vec<String>) -> Self {
        self.listed_models = models;
        self
    }

    /// How long [`Gateway::serve`] waits for in-flight requests at shutdown.
    pub fn shutdown_drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// Also serves `GET /metrics`, without a key, on `addr` ([`Gateway::serve`]).
    pub fn metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    /// Wraps the typed core (retry → timeouts → dispatch → providers) in `layer`, e.g. a cache, a
    /// policy check or your own logging of every call. Layers added later wrap earlier ones.
    pub fn core_layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<BoxCore> + Clone + Send + Sync + 'static,
        L::Service: crate::provider::ChatService,
    {
        self.core_layers
            .push(tower::util::BoxCloneSyncServiceLayer::new(layer));
        self
    }

    /// Wraps the HTTP side of the chat pipeline (every ingress route, after routing and before
    /// the in-flight limit) in `layer`, e.g. a header check or a request rewrite of your own.
    /// Layers added later wrap earlier ones.
    pub fn ingress_layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<HttpService> + Clone + Send + Sync + 'static,
        L::Service: tower_service::Service<
                http::Request<crate::body::Body>,
                Response = http::Response<crate::body::Body>,
                Error = std::convert::Infallible,
                Future: Send + 'static,
            > + Clone
            + Send
            + Sync
            + 'static,
    {
        self.ingress_layers
            .push(tower::util::BoxCloneSyncServiceLayer::new(layer));
        self
    }

    /// At most `max` JSON values per request body (413 beyond).
    pub fn max_json_values(mut self, max: usize) -> Self {
        self.max_json_values = max;
        self
    }

    /// At most `bytes` of request bodies in flight across all requests (503 beyond).
    pub fn max_body_bytes_in_flight(mut self, bytes: usize) -> Self {
        self.max_body_bytes_in_flight = bytes;
        self
    }

    /// The bounds of the connections [`Gateway::serve`] accepts.
    pub fn server_limits(mut self, limits: ServerLimits) -> Self {
        self.server_limits = limits;
        self
    }

    /// At most `max` requests in flight per SigV4 access key (429 beyond).
    pub fn max_concurrent_per_access_key(mut self, max: usize) -> Self {
        self.max_concurrent_per_access_key = max;
        self
    }

    /// The gateway.
    pub fn build(self) -> Gateway {
        let providers = self.statuses();
        let metrics = Arc::new(Metrics::new());
        let mut dispatch = Dispatch::new(self.router).with_timeouts(self.timeouts);
        #[cfg(feature = "openai")]
        if let Some(openai) = self.openai {
            dispatch = dispatch.with_openai(openai);
        }
        #[cfg(feature = "bedrock")]
        if let Some(bedrock) = self.bedrock {
            dispatch = dispatch.with_bedrock(bedrock);
        }
        if let Some(mock) = self.mock {
            dispatch = dispatch.with_mock(mock);
        }
        // Boxed already: held as they are, not boxed again.
        for (name, service) in self.custom {
            dispatch = dispatch.with_provider_service(name, service);
        }
        for (name, service) in self.custom_embedders {
            dispatch = dispatch.with_embeddings_service(name, service);
        }
        for (name, timeouts) in self.provider_timeouts {
            dispatch = dispatch.with_provider_timeouts(name, timeouts);
        }
        for group in self.groups {
            metrics.watch_group(&group);
            dispatch = dispatch.with_group(group);
        }
        let key_store = self
            .key_store
            .unwrap_or_else(|| KeyStore::new(&self.api_keys));
        let (auth, sigv4) = if self.auth_disabled {
            (
                ApiKeyAuthLayer::with_validator(key_store.clone()).disable(),
                SigV4AuthLayer::disabled(),
            )
        } else {
            (
                ApiKeyAuthLayer::with_validator(key_store.clone()),
                SigV4AuthLayer::new(&self.api_keys, &self.aws_credentials)
                    .max_concurrent_per_access_key(self.max_concurrent_per_access_key),
            )
        };
        let key_policy = KeyPolicy::with_ledger(
            self.prices,
            metrics.clone(),
            self.spend_ledger.unwrap_or_else(SpendLedger::memory),
        )
        .estimate_output_tokens(self.estimate_output_tokens)
        .provider_regions(self.provider_regions);
        metrics.know_models(self.listed_models.iter().cloned());
        metrics.know_models(dispatch.router().aliases().keys().cloned());
        Gateway {
            shared: Arc::new(Shared {
                dispatch,
                retry: RetryPolicy::new(self.retry),
                timeouts: self.timeouts,
                auth,
                sigv4,
                key_store,
                key_policy,
                rate_limiter: self.rate_limiter,
                in_flight: InFlightLimitLayer::new(self.max_in_flight),
                max_request_bytes: self.max_request_bytes,
                max_json_values: self.max_json_values,
                body_budget: BodyBudget::new(self.max_body_bytes_in_flight),
                server_limits: self.server_limits,
                body_read_timeout: self.body_read_timeout,
                keep_alive: self.keep_alive,
                listed_models: self.listed_models,
                drain: self.drain,
                close_streams: CancellationToken::new(),
                metrics,
                metrics_addr: self.metrics_addr,
                core_layers: self.core_layers,
                ingress_layers: self.ingress_layers,
                providers,
                response_store: self.response_store,
            }),
        }
    }

    fn statuses(&self) -> Vec<ProviderStatus> {
        #[cfg(feature = "openai")]
        let openai = match &self.openai {
            Some(p) => ProviderStatus {
                name: "openai".into(),
                live: true,
                detail: format!(
                    "{} ({})",
                    p.base_url(),
                    if self.openai_key_set {
                        "with OPENAI_API_KEY"
                    } else {
                        "no OPENAI_API_KEY: requests go without an Authorization header"
                    }
                ),
            },
            None => ProviderStatus {
                name: "openai".into(),
                live: false,
                detail: "off".into(),
            },
        };
        #[cfg(not(feature = "openai"))]
        let openai = ProviderStatus {
            name: "openai".into(),
            live: false,
            detail: "off: built without the `openai` feature".into(),
        };
        #[cfg(feature = "bedrock")]
        let bedrock = match &self.bedrock {
            Some(p) => ProviderStatus {
                name: "bedrock".into(),
                live: true,
                detail: format!(
                    "region {} (credentials from the AWS default chain when first used)",
                    p.region().unwrap_or("(none)")
                ),
            },
            None => ProviderStatus {
                name: "bedrock".into(),
                live: false,
                detail: self.bedrock_off.into(),
            },
        };
        #[cfg(not(feature = "bedrock"))]
        let bedrock = ProviderStatus {
            name: "bedrock".into(),
            live: false,
            detail: "off: built without the `bedrock` feature".into(),
        };
        let mock = ProviderStatus {
            name: "mock".into(),
            live: self.mock.is_some(),
            detail: if self.mock.is_some() {
                "mock/… models answered in-process".into()
            } else {
                "off (--mock or MOCK_PROVIDER=true serves mock/… models without any upstream)"
                    .into()
            },
        };
        let mut statuses = vec![openai, bedrock, mock];
        for (name, _) in &self.custom {
            let detail = self
                .custom_details
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| "a provider service registered by the embedder".into());
            let status = ProviderStatus {
                name: name.to_string(),
                live: true,
                detail,
            };
            match statuses.iter_mut().find(|s| s.name == status.name) {
                Some(builtin) => *builtin = status,
                None => statuses.push(status),
            }
        }
        statuses
    }
}
