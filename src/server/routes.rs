//! The route table: which path goes to which stack.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}`, open |
//! | `GET /v1/chat/completions/health` | providers, version, formats; open |
//! | `POST /v1/chat/completions` | the chat stack (auth → detect → translate → core) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | the model list (auth → [`ModelsService`]) |
//! | `GET /metrics` | Prometheus text (auth → [`MetricsService`]; also open on `METRICS_PORT` when set) |
//! | `POST /model/{id}/…`, `POST /v1/messages`, `POST /anthropic/v1/messages` | the native client surfaces, mounted in front of this table ([`crate::surface::Surfaces`]) |
//! | a known path with another method | 405 with `Allow`, OpenAI error body |
//! | anything else | 404, OpenAI error body |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::json;
use tower_service::Service;

use crate::body::Body;
use crate::error::{ErrorDialect, GatewayError};
use crate::format::{InboundFormat, TargetFormat};
use crate::provider::openai::ModelObject;
use crate::provider::{BedrockProvider, OpenAiProvider};
use crate::route::{ProviderKind, Router};

/// What `/v1/chat/completions/health` reports.
#[derive(Debug, Clone)]
pub struct HealthInfo {
    body: Bytes,
}

impl HealthInfo {
    /// Health facts of a gateway with these providers.
    pub fn new(
        openai: Option<&OpenAiProvider>,
        bedrock: Option<&BedrockProvider>,
        mock: bool,
        auth_enabled: bool,
    ) -> Self {
        let inbound = [
            InboundFormat::OpenAi,
            InboundFormat::BedrockClaude,
            InboundFormat::BedrockTitan,
        ]
        .map(InboundFormat::as_str);
        let target = [
            TargetFormat::OpenAi,
            TargetFormat::BedrockClaude,
            TargetFormat::BedrockTitan,
        ]
        .map(TargetFormat::as_str);
        let body = json!({
            "status": "ok",
            "service": "open-bedrock-server",
            "version": env!("CARGO_PKG_VERSION"),
            "auth": if auth_enabled { "api_key" } else { "disabled" },
            "providers": {
                "openai": {"configured": openai.is_some(), "base_url": openai.map(OpenAiProvider::base_url)},
                "bedrock": {"configured": bedrock.is_some(), "region": bedrock.and_then(BedrockProvider::region)},
                "mock": {"configured": mock},
            },
            "formats": {"inbound": inbound, "target": target},
            "endpoints": ["/v1/chat/completions", "/v1/models", "/v1/models/{id}", "/health",
                "/model/{modelId}/invoke", "/model/{modelId}/invoke-with-response-stream",
                "/model/{modelId}/converse", "/model/{modelId}/converse-stream",
                "/v1/messages", "/anthropic/v1/messages"],
        });
        HealthInfo {
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The route table over the chat stack `C`, the models stack `M` and the metrics stack `X`.
#[derive(Debug, Clone)]
pub struct Routes<C, M, X> {
    chat: C,
    models: M,
    metrics: X,
    health: HealthInfo,
}

impl<C, M, X> Routes<C, M, X> {
    /// Routes over the three stacks.
    pub fn new(chat: C, models: M, metrics: X, health: HealthInfo) -> Self {
        Routes {
            chat,
            models,
            metrics,
            health,
        }
    }
}

impl<C, M, X, B> Service<Request<B>> for Routes<C, M, X>
where
    C: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone,
    M: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone,
    X: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RoutesFuture<C::Future, M::Future, X::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let method = req.method();
        let allowed: &'static str = match path {
            "/health" | "/v1/chat/completions/health" | "/metrics" => "GET, HEAD",
            "/v1/chat/completions" => "POST",
            "/v1/models" => "GET",
            p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => "GET",
            _ => {
                let e = GatewayError::not_found(method, path);
                return RoutesFuture::ready(e.into_response(ErrorDialect::OpenAi));
            }
        };
        let ok = match allowed {
            "POST" => method == Method::POST,
            _ => method == Method::GET || method == Method::HEAD,
        };
        if !ok {
            let mut res =
                GatewayError::method_not_allowed(method, path).into_response(ErrorDialect::OpenAi);
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            return RoutesFuture::ready(res);
        }
        match path {
            "/health" => RoutesFuture::ready(json_response(
                StatusCode::OK,
                Bytes::from_static(br#"{"status":"ok"}"#),
            )),
            "/v1/chat/completions/health" => {
                RoutesFuture::ready(json_response(StatusCode::OK, self.health.body.clone()))
            }
            "/metrics" => {
                let clone = self.metrics.clone();
                RoutesFuture::metrics(std::mem::replace(&mut self.metrics, clone).call(req))
            }
            "/v1/chat/completions" => {
                let clone = self.chat.clone();
                RoutesFuture::chat(std::mem::replace(&mut self.chat, clone).call(req))
            }
            _ => {
                let clone = self.models.clone();
                RoutesFuture::models(std::mem::replace(&mut self.models, clone).call(req))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Routes`].
    #[derive(Debug)]
    pub struct RoutesFuture<C, M, X> {
        #[pin]
        state: RouteState<C, M, X>,
    }
}

pin_project_lite::pin_project! {
    #[project = RouteStateProj]
    #[derive(Debug)]
    enum RouteState<C, M, X> {
        Chat { #[pin] fut: C },
        Models { #[pin] fut: M },
        Metrics { #[pin] fut: X },
        Ready { res: Option<Response<Body>> },
    }
}

impl<C, M, X> RoutesFuture<C, M, X> {
    fn metrics(fut: X) -> Self {
        RoutesFuture {
            state: RouteState::Metrics { fut },
        }
    }
    fn ready(res: Response<Body>) -> Self {
        RoutesFuture {
            state: RouteState::Ready { res: Some(res) },
        }
    }
    fn chat(fut: C) -> Self {
        RoutesFuture {
            state: RouteState::Chat { fut },
        }
    }
    fn models(fut: M) -> Self {
        RoutesFuture {
            state: RouteState::Models { fut },
        }
    }
}

impl<C, M, X> Future for RoutesFuture<C, M, X>
where
    C: Future<Output = Result<Response<Body>, Infallible>>,
    M: Future<Output = Result<Response<Body>, Infallible>>,
    X: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RouteStateProj::Chat { fut } => fut.poll(cx),
            RouteStateProj::Models { fut } => fut.poll(cx),
            RouteStateProj::Metrics { fut } => fut.poll(cx),
            RouteStateProj::Ready { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

/// How long one upstream's model listing may take before the list is served without it.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /v1/models` and `GET /v1/models/{id}`: the upstreams' lists merged with configured models,
/// cached for a minute (Bedrock's control plane and OpenAI's list change rarely).
#[derive(Debug, Clone)]
pub struct ModelsService {
    inner: Arc<ModelsInner>,
}

#[derive(Debug)]
struct ModelsInner {
    openai: Option<OpenAiProvider>,
    bedrock: Option<BedrockProvider>,
    router: Arc<Router>,
    configured: Vec<ModelObject>,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<ModelList>)>>,
}

/// The merged list, and the upstreams whose listing failed (said in the reply, never hidden).
#[derive(Debug, Default)]
pub struct ModelList {
    /// The models, configured ones first.
    pub models: Vec<ModelObject>,
    /// One line per upstream whose listing failed or timed out.
    pub warnings: Vec<String>,
}

/// How long a list that lacks a failed upstream is kept before the upstream is asked again.
const FAILED_LIST_TTL: Duration = Duration::from_secs(5);

impl ModelsService {
    /// A models service over the providers, with `listed` extra ids plus the router's aliases.
    pub fn new(
        openai: Option<OpenAiProvider>,
        bedrock: Option<BedrockProvider>,
        mock: bool,
        router: Arc<Router>,
        listed: &[String],
    ) -> Self {
        let mock_model = mock.then(|| crate::provider::mock::MOCK_LISTED_MODEL.to_owned());
        let mut configured: Vec<ModelObject> = listed
            .iter()
            .chain(router.aliases().keys())
            .chain(mock_model.as_ref())
            .map(|id| ModelObject {
                id: id.clone(),
                object: "model".into(),
                created: 0,
                owned_by: owner_of(&router, id),
            })
            .collect();
        configured.sort_by(|a, b| a.id.cmp(&b.id));
        configured.dedup_by(|a, b| a.id == b.id);
        ModelsService {
            inner: Arc::new(ModelsInner {
                openai,
                bedrock,
                router,
                configured,
                ttl: Duration::from_secs(60),
                cache: Mutex::new(None),
            }),
        }
    }

    /// The merged model list (cached for a minute; a list missing a failed upstream for five
    /// seconds).
    pub async fn list(&self) -> Arc<ModelList> {
        if let Ok(cache) = self.inner.cache.lock() {
            if let Some((at, list)) = cache.as_ref() {
                let ttl = if list.warnings.is_empty() {
                    self.inner.ttl
                } else {
                    FAILED_LIST_TTL
                };
                if at.elapsed() < ttl {
                    return list.clone();
                }
            }
        }
        let mut all = self.inner.configured.clone();
        let mut warnings = Vec::new();
        if let Some(openai) = &self.inner.openai {
            let listed = tokio::time::timeout(LIST_TIMEOUT, openai.list_models()).await;
            merge_listing("OpenAI", listed, &mut all, &mut warnings);
        }
        if let Some(bedrock) = &self.inner.bedrock {
            let listed = tokio::time::timeout(LIST_TIMEOUT, bedrock.list_models()).await;
            merge_listing("Bedrock", listed, &mut all, &mut warnings);
        }
        let mut seen = std::collections::HashSet::new();
        all.retain(|m| seen.insert(m.id.clone()));
        let list = Arc::new(ModelList {
            models: all,
            warnings,
        });
        if let Ok(mut cache) = self.inner.cache.lock() {
            *cache = Some((Instant::now(), list.clone()));
        }
        list
    }

    async fn answer(self, path: String) -> Response<Body> {
        let list = self.list().await;
        if path == "/v1/models" {
            let mut body = json!({"object": "list", "data": &list.models});
            if !list.warnings.is_empty() {
                body["warnings"] = json!(list.warnings);
            }
            let mut res = json_response(
                StatusCode::OK,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            );
            if !list.warnings.is_empty() {
                res.headers_mut().insert(
                    "x-gateway-warning",
                    HeaderValue::from_static("incomplete model list: an upstream listing failed"),
                );
            }
            return res;
        }
        let raw = &path["/v1/models/".len()..];
        let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        let found = list
            .models
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .or_else(|| {
                self.inner.router.resolve(&id).ok().map(|_| ModelObject {
                    id: id.to_string(),
                    object: "model".into(),
                    created: 0,
                    owned_by: owner_of(&self.inner.router, &id),
                })
            });
        match found {
            Some(m) => json_response(
                StatusCode::OK,
                Bytes::from(serde_json::to_vec(&m).unwrap_or_default()),
            ),
            None => GatewayError::model_not_found(&id).into_response(ErrorDialect::OpenAi),
        }
    }
}

/// Adds one upstream's listing to `all`, or a warning naming the upstream when it failed.
fn merge_listing(
    upstream: &str,
    listed: Result<Result<Vec<ModelObject>, GatewayError>, tokio::time::error::Elapsed>,
    all: &mut Vec<ModelObject>,
    warnings: &mut Vec<String>,
) {
    let problem = match listed {
        Ok(Ok(models)) => {
            all.extend(models);
            return;
        }
        Ok(Err(e)) => format!("listing {upstream} models failed: {}", e.message()),
        Err(_) => format!(
            "listing {upstream} models timed out after {} s",
            LIST_TIMEOUT.as_secs()
        ),
    };
    tracing::warn!(upstream, problem = %problem, "serving an incomplete model list");
    warnings.push(problem);
}

fn owner_of(router: &Router, id: &str) -> String {
    match router.resolve(id).map(|r| (r.kind, r.upstream_model)) {
        Ok((ProviderKind::OpenAi, _)) => "openai".into(),
        Ok((ProviderKind::Mock, _)) => "mock".into(),
        Ok((ProviderKind::Bedrock(_), upstream)) => {
            let mut parts = upstream.split('.');
            let first = parts.next().unwrap_or("bedrock");
            let vendor =
                if ["us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"].contains(&first) {
                    parts.next().unwrap_or(first)
                } else {
                    first
                };
            if vendor.starts_with("arn:") {
                "bedrock".into()
            } else {
                vendor.to_owned()
            }
        }
        Err(_) => "gateway".into(),
    }
}

impl<B> Service<Request<B>> for ModelsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        let path = req.uri().path().to_owned();
        Box::pin(async move { Ok(this.answer(path).await) })
    }
}

/// `GET /metrics`: the gateway's Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct MetricsService {
    metrics: Arc<crate::metrics::Metrics>,
    in_flight: crate::load_shed::InFlight,
}

impl MetricsService {
    /// Renders `metrics`, with the in-flight gauge read from `in_flight`.
    pub fn new(
        metrics: Arc<crate::metrics::Metrics>,
        in_flight: crate::load_shed::InFlight,
    ) -> Self {
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
