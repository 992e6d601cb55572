//! # Open Bedrock Server
//!
//! A provider-agnostic chat-completions gateway for OpenAI and AWS Bedrock, built as a stack of
//! composable tower layers and served by a raw hyper server.
//!
//! One endpoint, `POST /v1/chat/completions`, accepts OpenAI requests and Bedrock Claude or Titan
//! bodies, routes each request by model id to OpenAI or Bedrock, and answers in the format the client
//! asks for (`?target_format=openai|bedrock_claude|bedrock_titan`), streamed or not.
//!
//! ## The stack
//!
//! An HTTP shell around a typed core, assembled in [`Gateway::service`]:
//!
//! ```text
//! request id → sensitive headers → catch panic → access log → routes
//!   POST /v1/chat/completions: in-flight limit → auth → rate limit → detect → translate → [typed core]
//!   [typed core]: retry → dispatch (route by model, first-byte timeout) → provider
//!   POST /model/{id}/{invoke,invoke-with-response-stream,converse,converse-stream},
//!   POST /v1/messages: the native client surfaces ([`surface`]) over the same typed core
//! ```
//!
//! Every stage is its own `Layer`/`Service`: [`auth`], [`detect`], [`translate`], [`retry`],
//! [`provider::Dispatch`], [`provider::openai`], [`provider::bedrock`]. The whole stack is one
//! `Clone + Send + Sync + 'static` service with `Error = Infallible`, so it mounts in axum:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use open_bedrock_server::{config::Config, Gateway};
//!
//! let mut config = Config::default();
//! config.auth.disabled = true;
//! let gateway = Gateway::from_config(&config).await?;
//! let app = axum::Router::new().nest_service("/llm", gateway.service::<axum::body::Body>());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Or run it standalone:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use open_bedrock_server::{config::Config, server, Gateway};
//!
//! let config = Config::load(None)?;
//! let gateway = Gateway::from_config(&config).await?;
//! let listener = server::bind(([127, 0, 0, 1], 8000).into()).await?;
//! gateway.serve(listener, server::shutdown_signal()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod auth;
pub mod body;
pub mod config;
pub mod detect;
pub mod error;
pub mod format;
pub mod load_shed;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod rate_limit;
pub mod retry;
pub mod route;
pub mod server;
pub mod sigv4;
pub mod sse;
pub mod surface;
pub mod telemetry;
pub mod translate;
pub mod usage;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, Request, Response};
use tower::retry::Retry;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_service::Service;

use crate::auth::ApiKeyAuthLayer;
use crate::body::{Body, BoxError};
use crate::config::Config;
use crate::detect::DetectLayer;
use crate::error::{ErrorDialect, GatewayError};
use crate::load_shed::InFlightLimitLayer;
use crate::metrics::Metrics;
use crate::model::{ChatCall, ChatReply};
use crate::provider::{BedrockProvider, Dispatch, OpenAiProvider};
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::server::{HealthInfo, MetricsService, ModelsService, ObserveLayer, Routes};
use crate::translate::TranslateLayer;
use tokio_util::sync::CancellationToken;

/// The whole gateway as one service: `Clone + Send + Sync + 'static`, `Error = Infallible`.
pub type GatewayService<B> = BoxCloneSyncService<Request<B>, Response<Body>, Infallible>;

/// The typed core: retry around dispatch.
pub type Core = Retry<RetryPolicy, Dispatch>;

/// A configured gateway: providers, router and settings. Build services from it with
/// [`Gateway::service`] (the full HTTP stack) or [`Gateway::core`] (the typed core alone).
#[derive(Debug, Clone)]
pub struct Gateway {
    dispatch: Dispatch,
    retry: RetryPolicy,
    auth: ApiKeyAuthLayer,
    max_request_bytes: usize,
    keep_alive: Duration,
    listed_models: Arc<Vec<String>>,
    rate_limiter: Option<RateLimiter>,
    in_flight: InFlightLimitLayer,
    drain: Duration,
    close_streams: CancellationToken,
    metrics: Arc<Metrics>,
    metrics_addr: Option<std::net::SocketAddr>,
    body_read_timeout: Duration,
    bedrock_auth: surface::bedrock_runtime::auth::BedrockAuthLayer,
    providers: Arc<Vec<ProviderStatus>>,
}

/// One provider's state as the gateway was built: logged at start-up and printed by
/// `check-config`, from the same decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// `openai`, `bedrock` or `mock`.
    pub name: &'static str,
    /// Whether requests routed to it are served.
    pub live: bool,
    /// Where it points (base URL, region), or why it is off.
    pub detail: String,
}

impl Gateway {
    /// Builds the providers named by `config`: the OpenAI-compatible upstream always (its base URL
    /// has a default), Bedrock when enabled (one client per region, built once here).
    pub async fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let openai = OpenAiProvider::new(&config.openai, &config.timeouts)?;
        let bedrock = if config.bedrock.enabled {
            BedrockProvider::from_config(config).await?
        } else {
            None
        };
        let mut gateway = Gateway::new(config, Some(openai), bedrock);
        if let Some(limits) = &config.rate_limit {
            let limiter = RateLimiter::new(limits)
                .map_err(|e| GatewayError::internal(format!("rate limit configuration: {e}")))?;
            gateway = gateway.with_rate_limiter(limiter);
        }
        Ok(gateway)
    }

    /// Ends every open stream now with an in-band "shutting down" event — for embedders that run
    /// their own server (e.g. axum) and want a clean end to long streams during their shutdown.
    pub fn close_streams(&self) {
        self.close_streams.cancel();
    }

    /// `GET /metrics` on its own, without auth (what the separate metrics port serves).
    pub fn metrics_service(&self) -> MetricsService {
        MetricsService::new(self.metrics.clone(), self.in_flight.in_flight())
    }

    /// The gateway's metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// In-flight accounting (requests and open streams).
    pub fn in_flight(&self) -> load_shed::InFlight {
        self.in_flight.in_flight()
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
        if let Some(addr) = self.metrics_addr {
            match server::bind(addr).await {
                Ok(metrics_listener) => {
                    tracing::info!(address = %addr, "metrics listening (GET /metrics, no auth)");
                    let svc = self.metrics_service();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let only_metrics =
                            tower::service_fn(move |req: Request<hyper::body::Incoming>| {
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
                        server::serve(
                            metrics_listener,
                            only_metrics,
                            stop.cancelled_owned(),
                            Duration::from_secs(1),
                            CancellationToken::new(),
                        )
                        .await;
                    });
                }
                Err(e) => tracing::error!(address = %addr, error = %e, "cannot listen for metrics"),
            }
        }
        let main = server::serve(
            listener,
            self.service(),
            stop.clone().cancelled_owned(),
            self.drain,
            self.close_streams.clone(),
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

    /// Adds per-key rate limiting with `limiter` (shared by every service built from this gateway).
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// A gateway over the given providers.
    pub fn new(
        config: &Config,
        openai: Option<OpenAiProvider>,
        bedrock: Option<BedrockProvider>,
    ) -> Self {
        let auth = if config.auth.disabled {
            ApiKeyAuthLayer::disabled()
        } else {
            ApiKeyAuthLayer::new(config.api_keys())
        };
        let providers = Arc::new(provider_statuses(config, openai.as_ref(), bedrock.as_ref()));
        let mut dispatch = Dispatch::new(config.router(), openai, bedrock, config.timeouts);
        if config.mock.enabled {
            dispatch = dispatch.with_mock(provider::MockProvider::new());
        }
        Gateway {
            dispatch,
            retry: RetryPolicy::new(config.retry),
            auth,
            max_request_bytes: config.server.max_request_bytes,
            keep_alive: config.server.stream_keep_alive,
            listed_models: Arc::new(config.models.list.clone()),
            rate_limiter: None,
            in_flight: InFlightLimitLayer::new(config.server.max_in_flight),
            drain: config.server.shutdown_drain,
            close_streams: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
            body_read_timeout: config.timeouts.body_read,
            metrics_addr: config
                .server
                .metrics_port
                .map(|p| std::net::SocketAddr::new(config.server.host, p)),
            bedrock_auth: if config.auth.disabled {
                surface::bedrock_runtime::auth::BedrockAuthLayer::disabled(
                    config.server.max_request_bytes,
                )
            } else {
                surface::bedrock_runtime::auth::BedrockAuthLayer::new(
                    &config.api_keys(),
                    &config.auth.aws_credentials,
                    config.server.max_request_bytes,
                )
            },
            providers,
        }
    }

    /// Which providers serve requests, and why the others do not.
    pub fn providers(&self) -> &[ProviderStatus] {
        &self.providers
    }

    /// The typed core: `Service<ChatCall, Response = ChatReply, Error = GatewayError>`.
    pub fn core(&self) -> Core {
        Retry::new(self.retry.clone(), self.dispatch.clone())
    }

    /// The chat stack for `POST /v1/chat/completions` over any typed core `core`:
    /// auth → detect → translate → core.
    pub fn chat_stack<B, S>(
        &self,
        core: S,
    ) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send>
           + Clone
           + Send
           + Sync
           + 'static
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        S: Service<ChatCall, Response = ChatReply, Error = GatewayError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
    {
        ServiceBuilder::new()
            // Shed load past the in-flight limit (streams hold their permit until they end).
            .layer(self.in_flight.clone())
            // Reject unauthenticated requests before their body is read.
            .layer(self.auth.clone())
            // Count the request under its key; 429 before the body is read.
            .option_layer(self.rate_limiter.as_ref().map(RateLimiter::layer))
            // Read the body once under the limit, parse it once, record inbound and target formats.
            .layer(DetectLayer::new(self.max_request_bytes).read_timeout(self.body_read_timeout))
            // Decode into the canonical request, call the core, encode in the target format.
            .layer(
                TranslateLayer::new((!self.keep_alive.is_zero()).then_some(self.keep_alive))
                    .with_shutdown(self.close_streams.clone()),
            )
            .service(core)
    }

    /// The full HTTP stack, generic over the request body (hyper's `Incoming`, axum's `Body`, …).
    pub fn service<B>(&self) -> GatewayService<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let chat = self.chat_stack::<B, _>(self.core());
        let models = ServiceBuilder::new()
            .layer(self.auth.clone())
            .option_layer(self.rate_limiter.as_ref().map(RateLimiter::layer))
            .service(ModelsService::new(
                self.dispatch.openai().cloned(),
                self.dispatch.bedrock().cloned(),
                self.dispatch.mock().is_some(),
                Arc::new(self.dispatch.router().clone()),
                &self.listed_models,
            ));
        let health = HealthInfo::new(
            self.dispatch.openai(),
            self.dispatch.bedrock(),
            self.dispatch.mock().is_some(),
            !self.auth.is_disabled(),
        );
        let metrics = ServiceBuilder::new()
            .layer(self.auth.clone())
            .service(self.metrics_service());
        let routes = Routes::new(chat, models, metrics, health);
        let routes = surface::Surfaces::new(
            routes,
            self.bedrock_runtime_stack::<B, _>(self.core()),
            self.anthropic_stack::<B, _>(self.core()),
        );
        let x_api_key = HeaderName::from_static("x-api-key");
        let stack = ServiceBuilder::new()
            // Take the client's x-request-id or make one; it goes upstream and back to the client.
            .layer(SetRequestIdLayer::x_request_id(MakeGatewayRequestId))
            .layer(PropagateRequestIdLayer::x_request_id())
            // Keys never reach logs.
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                x_api_key,
            ]))
            // A panic anywhere below becomes a 500 in the OpenAI shape, never a dropped connection.
            .layer(tower::util::MapResponseLayer::new(|res: Response<_>| {
                res.map(Body::new)
            }))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                PanicResponse,
            ))
            // One log line and one metrics observation per request, when it is finished.
            .layer(ObserveLayer::new(self.metrics.clone()))
            .service(routes);
        BoxCloneSyncService::new(stack)
    }
}

fn provider_statuses(
    config: &Config,
    openai: Option<&OpenAiProvider>,
    bedrock: Option<&BedrockProvider>,
) -> Vec<ProviderStatus> {
    let openai = match openai {
        Some(p) => ProviderStatus {
            name: "openai",
            live: true,
            detail: format!(
                "{} ({})",
                p.base_url(),
                if config.openai.api_key.is_some() {
                    "with OPENAI_API_KEY"
                } else {
                    "no OPENAI_API_KEY: requests go without an Authorization header"
                }
            ),
        },
        None => ProviderStatus {
            name: "openai",
            live: false,
            detail: "off".into(),
        },
    };
    let bedrock = match bedrock {
        Some(p) => ProviderStatus {
            name: "bedrock",
            live: true,
            detail: format!(
                "region {} (credentials from the AWS default chain when first used)",
                p.region().unwrap_or("(none)")
            ),
        },
        None if !config.bedrock.enabled => ProviderStatus {
            name: "bedrock",
            live: false,
            detail: "off: disabled (BEDROCK_ENABLED=false / bedrock.enabled = false)".into(),
        },
        None => ProviderStatus {
            name: "bedrock",
            live: false,
            detail: "off: no AWS region (set AWS_REGION or AWS_DEFAULT_REGION, bedrock.region, or a region in the AWS profile)".into(),
        },
    };
    let mock = ProviderStatus {
        name: "mock",
        live: config.mock.enabled,
        detail: if config.mock.enabled {
            "mock/… models answered in-process".into()
        } else {
            "off (--mock or MOCK_PROVIDER=true serves mock/… models without any upstream)".into()
        },
    };
    vec![openai, bedrock, mock]
}

/// Request ids: a random per-process prefix plus a counter (unique, cheap, no syscall per request).
#[derive(Debug, Clone, Copy)]
struct MakeGatewayRequestId;

impl MakeRequestId for MakeGatewayRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = model::completion_id().replacen("chatcmpl-", "req-", 1);
        http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

#[derive(Debug, Clone, Copy)]
struct PanicResponse;

impl tower_http::catch_panic::ResponseForPanic for PanicResponse {
    type ResponseBody = Body;

    fn response_for_panic(
        &mut self,
        err: Box<dyn std::any::Any + Send + 'static>,
    ) -> Response<Body> {
        let detail = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %detail, "a request handler panicked");
        GatewayError::internal("The gateway hit an internal error.")
            .into_response(ErrorDialect::OpenAi)
    }
}
