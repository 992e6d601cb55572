//! The gateway: [`Gateway::builder`] takes providers, auth, limits and routes; this module is the
//! one place the stack is assembled, one comment per layer.
//!
//! ```text
//! request id → sensitive headers → catch panic → access log → routes (endpoint table)
//!   GET /health, /v1/chat/completions/health      answered by the router
//!   GET /metrics                                   auth → metrics
//!   GET /v1/models[/{id}]                          auth → rate limit → models
//!   GET, DELETE /v1/responses/{id}                 auth → rate limit → the response store
//!   GET /v1/key/info                               auth → the key's record and spend
//!   POST /v1/chat/completions, /v1/messages,       in-flight limit → SigV4 → auth (key store:
//!        /model/{id}/{op}, /v1/embeddings,           the key's record) → rate limit → detect
//!        /v1/responses                               (route classifier) → key policy (allowlist,
//!                                                    concurrency, budgets, cost) → translate → core
//!   core: retry (the one attempt budget: retries and fallbacks) → dispatch (route by model to a
//!         named provider service, or to a model group's deployment) → upstream timeouts per
//!         provider (one deadline per request) → provider
//!   embeddings: the same core as a `Service<EmbeddingsCall>` (retry → dispatch → timeouts →
//!         provider); model groups serve chat only, and `core_layer`s wrap the chat core only
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use open_bedrock_server::gateway::Gateway;
//! use open_bedrock_server::provider::MockProvider;
//!
//! let gateway = Gateway::builder()
//!     .api_keys(["my-gateway-key"])
//!     .mock(MockProvider::new())
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! gateway.serve(listener, std::future::pending()).await;
//! # Ok(()) }
//! ```

mod builder;
mod catch_panic;
mod health;
mod models;
mod request_id;
mod responses;
mod routes;

pub use crate::endpoint::{Endpoint, ENDPOINTS};
pub use builder::GatewayBuilder;
pub use routes::RouteClassifier;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::retry::Retry;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_layer::Layer;
use tower_service::Service;

use self::health::HealthInfo;
use self::models::ModelsService;
use self::request_id::RequestIdLayer;
use self::routes::{RouteTable, Routes};
use crate::auth::ApiKeyAuthLayer;
use crate::body::{Body, BoxError};
use crate::config::{Config, Timeouts};
use crate::detect::DetectLayer;
use crate::error::{ErrorDialect, GatewayError};
use crate::keys::{KeyInfoService, KeyPolicy, KeyStore};
use crate::load_shed::{InFlight, InFlightBody, InFlightLimitLayer};
use crate::metrics::{Metrics, MetricsService};
use crate::model::{ChatCall, ChatReply};
use crate::observe::ObserveLayer;
use crate::provider::ChatService;
use crate::provider::{Dispatch, MockProvider};
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::surface::bedrock_runtime::auth::SigV4AuthLayer;
use crate::translate::TranslateLayer;

/// The whole gateway as one service: `Clone + Send + Sync + 'static`, `Error = Infallible`.
pub type GatewayService<B> = BoxCloneSyncService<Request<B>, Response<Body>, Infallible>;

/// The typed core: retry around dispatch to the provider services and model groups (each attempt
/// under its provider's upstream timeouts).
pub type Core = Retry<RetryPolicy, Dispatch>;

/// A typed core, boxed: what [`GatewayBuilder::core_layer`] layers wrap.
pub type BoxCore = BoxCloneSyncService<ChatCall, ChatReply, GatewayError>;

/// The HTTP side of the chat pipeline, boxed: what [`GatewayBuilder::ingress_layer`] layers wrap.
pub type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

type CoreLayer = tower::util::BoxCloneSyncServiceLayer<BoxCore, ChatCall, ChatReply, GatewayError>;
type IngressLayer =
    tower::util::BoxCloneSyncServiceLayer<HttpService, Request<Body>, Response<Body>, Infallible>;

/// A built gateway: providers, router, layers and settings. Cheap to clone. Build services from it
/// with [`Gateway::service`] (the full HTTP stack), [`Gateway::ingress`] (the chat pipeline over
/// any typed core) or [`Gateway::core`] (the typed core alone), or run it with [`Gateway::serve`].
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dispatch: Dispatch,
    retry: RetryPolicy,
    timeouts: Timeouts,
    auth: ApiKeyAuthLayer<KeyStore>,
    sigv4: SigV4AuthLayer,
    key_store: KeyStore,
    key_policy: KeyPolicy,
    rate_limiter: Option<RateLimiter>,
    in_flight: InFlightLimitLayer,
    max_request_bytes: usize,
    max_json_values: usize,
    body_budget: crate::detect::BodyBudget,
    server_limits: crate::server::ServerLimits,
    body_read_timeout: Duration,
    keep_alive: Duration,
    listed_models: Vec<String>,
    drain: Duration,
    close_streams: CancellationToken,
    metrics: Arc<Metrics>,
    metrics_addr: Option<std::net::SocketAddr>,
    providers: Vec<ProviderStatus>,
    core_layers: Vec<CoreLayer>,
    ingress_layers: Vec<IngressLayer>,
    response_store: crate::responses_store::ResponseStore,
}

/// The `[rate_limit]` configuration with the keys file's per-key `requests_per_minute` and
/// `tokens_per_minute` as overrides (as the file was at start-up: the in-process limiter fixes its
/// per-key quotas when it is built, so a reload does not change a key's rate). Keys with a rate
/// and no `[rate_limit]` get one whose default is unlimited in practice (a million a minute).
fn rate_limits(
    config: &Config,
    store: Option<&KeyStore>,
) -> Option<crate::rate_limit::RateLimitConfig> {
    let records: Vec<_> = store
        .map(|s| s.records())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.requests_per_minute.is_some() || r.tokens_per_minute.is_some())
        .collect();
    let mut limits = match (&config.rate_limit, records.is_empty()) {
        (Some(l), _) => l.clone(),
        (None, true) => return None,
        (None, false) => crate::rate_limit::RateLimitConfig::new(
            std::num::NonZeroU32::new(1_000_000).unwrap_or(std::num::NonZeroU32::MIN),
        ),
    };
    for r in records {
        let entry = limits.keys.entry(r.id.0.to_string()).or_default();
        entry.requests_per_minute = entry.requests_per_minute.or(r.requests_per_minute);
        entry.tokens_per_minute = entry.tokens_per_minute.or(r.tokens_per_minute);
    }
    Some(limits)
}

/// The chat pipeline's response body under its two in-flight permits (the gateway's, and a SigV4
/// credential's): a body already in memory — a complete reply, an error — has nothing left to wait
/// for, so its permits go now and it is not boxed again (one heap block fewer per request); a
/// stream keeps them until its last frame.
fn in_flight_body(body: InFlightBody<InFlightBody<Body>>) -> Body {
    if body.get_ref().get_ref().is_in_memory() {
        body.release().release()
    } else {
        Body::new(body)
    }
}

/// One provider's state as the gateway was built: logged at start-up and printed by
/// `check-config`, from the same decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderStatus {
    /// `openai`, `bedrock`, `mock`, or the name a provider of the embedder's was registered under.
    pub name: String,
    /// Whether requests routed to it are served.
    pub live: bool,
    /// Where it points (base URL, region), or why it is off.
    pub detail: String,
}

impl Gateway {
    /// A builder with the defaults of an empty configuration (no keys: call
    /// [`GatewayBuilder::api_keys`] or [`GatewayBuilder::no_auth`]).
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::new()
    }

    /// Builds the providers `config` names — the OpenAI-compatible upstream always (its base URL has
    /// a default), Bedrock when enabled and a region is found (one client per region, built once
    /// here), the mock when enabled, every named provider (`[providers.*]`) — and the gateway
    /// over them, with the model groups (`[model_groups.*]`). A group whose deployment names a
    /// provider that is off is a start-up error.
    ///
    /// A built-in provider whose feature (`openai`, `bedrock`) is off is not built; its
    /// [`ProviderStatus`] says so.
    pub async fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let mut builder = GatewayBuilder::from_config(config);
        #[cfg(feature = "openai")]
        {
            let openai = crate::provider::OpenAiProvider::new(&config.openai, &config.timeouts)?
                .with_reasoning_budgets(config.reasoning.budget_tokens);
            builder = builder.openai(openai);
        }
        #[allow(unused_mut)]
        let mut bedrock_live = false;
        #[cfg(feature = "bedrock")]
        if config.bedrock.enabled {
            if let Some(bedrock) = crate::provider::BedrockProvider::from_config(config).await? {
                bedrock_live = true;
                builder = builder.bedrock(bedrock);
            }
        }
        if config.mock.enabled {
            builder = builder.mock(MockProvider::new());
        }
        builder = builder
            .providers_from_config(config)
            .await?
            .groups_from_config(config, bedrock_live)?;
        if let Some(url) = &config.responses.redis_url {
            #[cfg(feature = "redis")]
            {
                let ttl = Duration::from_secs(config.responses.ttl_secs);
                builder = builder.response_store(crate::responses_store::ResponseStore::redis(
                    url.expose(),
                    ttl,
                )?);
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(GatewayError::internal(
                    "configuration error in `responses.redis_url`: this build has no Redis (cargo feature `redis`)",
                ));
            }
        }
        #[cfg(not(feature = "server"))]
        if config.keys.file.is_some() {
            return Err(GatewayError::internal(
                "a keys file is configured, but this build has no `server` feature (TOML)",
            ));
        }
        #[cfg(not(feature = "server"))]
        let store: Option<KeyStore> = None;
        #[cfg(feature = "server")]
        let store = match &config.keys.file {
            Some(path) => {
                let store =
                    KeyStore::from_file(config.api_keys(), path, config.keys.max_concurrent)
                        .map_err(|e| GatewayError::internal(format!("keys file: {e}")))?;
                if config.keys.reload_interval_ms > 0 {
                    store.watch(Duration::from_millis(config.keys.reload_interval_ms));
                }
                builder = builder.key_store(store.clone());
                Some(store)
            }
            None => None,
        };
        let prices = crate::cost::PriceTable::with_overrides(&config.prices)
            .map_err(|e| GatewayError::internal(format!("price configuration: {e}")))?;
        builder = builder
            .prices(prices)
            .estimate_output_tokens(config.keys.estimate_output_tokens);
        let budgets_redis = config
            .keys
            .redis_url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .or_else(|| config.rate_limit.as_ref().and_then(|r| r.redis_url.clone()));
        if let Some(url) = budgets_redis {
            #[cfg(feature = "redis")]
            {
                builder = builder
                    .budgets_in_redis(&url, Duration::from_millis(config.keys.redis_timeout_ms))?;
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(GatewayError::internal(
                    "a Redis URL is set for budgets, but this build has no `redis` feature",
                ));
            }
        }
        if let Some(limits) = rate_limits(config, store.as_ref()) {
            let limiter = RateLimiter::new(&limits)
                .map_err(|e| GatewayError::internal(format!("rate limit configuration: {e}")))?;
            builder = builder.rate_limiter(limiter);
        }
        Ok(builder.build())
    }

    /// Which providers serve requests, and why the others do not.
    pub fn providers(&self) -> &[ProviderStatus] {
        &self.shared.providers
    }

    /// Ends every open stream now with an in-band "shutting down" event — for embedders that run
    /// their own server (e.g. axum) and want a clean end to long streams during their shutdown.
    pub fn close_streams(&self) {
        self.shared.close_streams.cancel();
    }

    /// `GET /metrics` on its own, without auth (what the separate metrics port serves).
    pub fn metrics_service(&self) -> MetricsService {
        MetricsService::new(self.shared.metrics.clone(), self.in_flight())
    }

    /// The gateway's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The keys: `reload` it (the binary does on SIGHUP) to read the keys file again.
    pub fn key_store(&self) -> &KeyStore {
        &self.shared.key_store
    }

    /// In-flight accounting (requests and open streams).
    pub fn in_flight(&self) -> InFlight {
        self.shared.in_flight.in_flight()
    }

    /// The budget of request-body bytes in flight (`server.max_body_bytes_in_flight`): what the
    /// requests being read hold of it now is [`BodyBudget::in_flight`](crate::detect::BodyBudget::in_flight).
    pub fn body_budget(&self) -> &crate::detect::BodyBudget {
        &self.shared.body_budget
    }

    /// The typed core: `Service<ChatCall, Response = ChatReply, Error = GatewayError>`, and
    /// `Service<EmbeddingsCall, Response = EmbeddingsResponse, Error = GatewayError>`.
    pub fn core(&self) -> Core {
        Retry::new(self.shared.retry.clone(), self.shared.dispatch.clone())
    }

    /// The typed core's embeddings operation, boxed (what `/v1/embeddings` calls).
    pub fn embeddings_core(&self) -> crate::provider::EmbeddingsProviderService {
        BoxCloneSyncService::new(self.core())
    }

    /// The chat pipeline every ingress route runs, over any typed core `core`: in-flight limit →
    /// SigV4 → API-key auth → rate limit → detect (the route's classifier) → translate → `core`.
    /// Generic over the request body; the route is taken from the path. Embeddings requests go to
    /// this gateway's own [`embeddings_core`](Self::embeddings_core).
    pub fn ingress<B, S>(&self, core: S) -> GatewayService<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        S: ChatService,
    {
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_request(|req: Request<B>| req.map(Body::new))
                .service(self.ingress_stack(core)),
        )
    }

    /// The typed core with the embedder's [`core_layer`](GatewayBuilder::core_layer)s around it.
    fn layered_core(&self) -> BoxCore {
        let core = BoxCloneSyncService::new(self.core());
        self.shared
            .core_layers
            .iter()
            .fold(core, |core, layer| layer.layer(core))
    }

    /// The ingress pipeline over the layered core, with the embedder's
    /// [`ingress_layer`](GatewayBuilder::ingress_layer)s around it.
    fn layered_ingress(&self) -> HttpService {
        let ingress = if self.shared.core_layers.is_empty() {
            // The core unboxed: the call's clone of it is reference counts, not a heap block, and
            // its future lives inside the translate stage's instead of a box of its own.
            self.ingress_stack(self.core())
        } else {
            self.ingress_stack(self.layered_core())
        };
        self.shared
            .ingress_layers
            .iter()
            .fold(ingress, |ingress, layer| layer.layer(ingress))
    }

    /// [`Gateway::ingress`] on this crate's body: the stack itself, assembled here once.
    fn ingress_stack<S>(&self, core: S) -> HttpService
    where
        S: ChatService,
    {
        let s = &self.shared;
        let stack = ServiceBuilder::new()
            // One response body type for the router.
            .map_response(|res: Response<InFlightBody<InFlightBody<Body>>>| res.map(in_flight_body))
            // Shed load past the in-flight limit (streams hold their permit until they end).
            .layer(s.in_flight.clone())
            // SigV4-signed Bedrock clients count as the gateway key their credential maps to.
            .layer(s.sigv4.clone())
            // Reject unauthenticated requests before their body is read.
            .layer(s.auth.clone())
            // Count the request under its key; 429 before the body is read.
            .option_layer(s.rate_limiter.as_ref().map(RateLimiter::layer))
            // Read the body once under the limit, the deadline and the global byte budget; read its
            // top level once (typed, no tree, under the value budget); classify it by route.
            .layer(
                DetectLayer::new(s.max_request_bytes, RouteClassifier)
                    .read_timeout(s.body_read_timeout)
                    .max_json_values(s.max_json_values)
                    .body_budget(s.body_budget.clone()),
            )
            // The key's allowlist (403), concurrency limit and budgets (429), with the requested
            // model known and nothing sent upstream yet; the call's cost at its end.
            .layer(s.key_policy.layer())
            // Decode into the canonical request (with the request's one deadline), call the core,
            // write the route's reply format.
            .layer(
                TranslateLayer::new((!s.keep_alive.is_zero()).then_some(s.keep_alive))
                    .with_shutdown(s.close_streams.clone())
                    .with_total_timeout(s.timeouts.total)
                    // A client that stops reading a stream for the idle time loses its connection.
                    .with_reader_timeout(s.timeouts.stream_idle)
                    // Embeddings: the core's second operation.
                    .with_embeddings(self.embeddings_core())
                    // Responses: stored responses for `previous_response_id`.
                    .with_response_store(s.response_store.clone()),
            )
            .service(core);
        BoxCloneSyncService::new(stack)
    }

    /// The full HTTP stack, generic over the request body (hyper's `Incoming`, axum's `Body`, …).
    pub fn service<B>(&self) -> GatewayService<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let s = &self.shared;
        let authed = |inner: HttpService| -> HttpService {
            BoxCloneSyncService::new(ServiceBuilder::new().layer(s.auth.clone()).service(inner))
        };
        // Model groups are models to clients.
        let listed: Vec<String> = s
            .listed_models
            .iter()
            .cloned()
            .chain(s.dispatch.groups().map(|g| g.name().to_owned()))
            .collect();
        let models = ModelsService::new(&s.dispatch, &listed);
        let models: HttpService = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .option_layer(s.rate_limiter.as_ref().map(RateLimiter::layer))
                .service(models),
        );
        let stored_responses: HttpService = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .option_layer(s.rate_limiter.as_ref().map(RateLimiter::layer))
                .service(responses::StoredResponses {
                    store: s.response_store.clone(),
                }),
        );
        let routes = Routes::new(
            RouteTable {
                ingress: self.layered_ingress(),
                models: authed(models),
                stored_responses: authed(stored_responses),
                metrics: authed(BoxCloneSyncService::new(self.metrics_service())),
                key_info: authed(BoxCloneSyncService::new(KeyInfoService::new(
                    s.key_store.clone(),
                    s.key_policy.clone(),
                ))),
                health: HealthInfo::new(&s.dispatch, !s.auth.is_disabled()),
            },
            // Kept per connection and called in place only when no embedder layer is in it.
            s.ingress_layers.is_empty(),
        );
        let x_api_key = crate::header_name::X_API_KEY.clone();
        let stack = ServiceBuilder::new()
            // The client's x-request-id, or one the gateway makes when it has none or one that is
            // too long or has unexpected characters: it goes into logs, upstream and back.
            .layer(RequestIdLayer)
            // Keys never reach logs.
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                x_api_key,
            ]))
            // A panic anywhere below becomes a 500 in the OpenAI shape, never a dropped connection.
            .layer(catch_panic::CatchPanicLayer)
            // One log line and one metrics observation per request, when it is finished.
            .layer(ObserveLayer::new(s.metrics.clone()))
            // One request body type below this point, whatever the server's or framework's is.
            .map_request(|req: Request<B>| req.map(Body::new))
            .service(routes);
        BoxCloneSyncService::new(stack)
    }

    /// Serves the full stack on `listener` until `signal` resolves, then shuts down gracefully:
    /// in-flight requests finish within the configured drain, streams still open after it end with
    /// an in-band error event.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        signal: impl std::future::Future<Output = ()>,
    ) {
        let stop = CancellationToken::new();
        if let Some(addr) = self.shared.metrics_addr {
            self.serve_metrics(addr, stop.clone()).await;
        }
        let mut limits = self.shared.server_limits;
        // The outer stack is this crate's own, ready by construction (the route table awaits an
        // embedder's ingress layers per request).
        limits.per_request = crate::server::PerRequest::Kept;
        let main = crate::server::serve_with(
            listener,
            self.service(),
            stop.clone().cancelled_owned(),
            self.shared.drain,
            self.shared.close_streams.clone(),
            limits,
        );
        tokio::pin!(main);
        tokio::select! {
            () = &mut main => {}
            () = signal => {
                stop.cancel();
                main.await;
            }
        }
        stop.cancel();
    }

    /// `GET /metrics` without a key on its own port, until `stop`.
    async fn serve_metrics(&self, addr: std::net::SocketAddr, stop: CancellationToken) {
        let listener = match crate::server::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(address = %addr, error = %e, "cannot listen for metrics");
                return;
            }
        };
        tracing::info!(address = %addr, "metrics listening (GET /metrics, no auth)");
        let svc = self.metrics_service();
        tokio::spawn(async move {
            let only_metrics = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut svc = svc.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        svc.call(req).await
                    } else {
                        Ok(GatewayError::not_found(req.method(), req.uri().path())
                            .into_response(ErrorDialect::OpenAi))
                    }
                }
            });
            crate::server::serve(
                listener,
                only_metrics,
                stop.cancelled_owned(),
                Duration::from_secs(1),
                CancellationToken::new(),
            )
            .await;
        });
    }
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The longest client `x-request-id` kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[cfg(test)]
mod in_flight_tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::Semaphore;

    /// A body under two permits of `sem`, as the chat pipeline's response body is.
    fn under_permits(body: Body, sem: &Arc<Semaphore>) -> InFlightBody<InFlightBody<Body>> {
        let permit = || sem.clone().try_acquire_owned().ok();
        InFlightBody::holding(InFlightBody::holding(body, permit()), permit())
    }

    #[tokio::test]
    async fn a_reply_in_memory_lets_its_permits_go_and_a_stream_keeps_them_to_its_end() {
        let sem = Arc::new(Semaphore::new(2));
        let reply = in_flight_body(under_permits(Body::from("{}"), &sem));
        assert_eq!(sem.available_permits(), 2, "nothing left to wait for");
        assert_eq!(&reply.collect().await.unwrap().to_bytes()[..], b"{}");

        let frames =
            futures_util::stream::iter(["a", "b"].map(|s| {
                Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(s.as_bytes())))
            }));
        let mut stream = in_flight_body(under_permits(
            Body::new(http_body_util::StreamBody::new(frames)),
            &sem,
        ));
        assert_eq!(sem.available_permits(), 0, "held while the stream runs");
        while let Some(frame) = stream.frame().await {
            frame.unwrap();
        }
        assert_eq!(sem.available_permits(), 2, "released at its end");
    }
}
