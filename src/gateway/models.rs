//! `GET /v1/models` and `GET /v1/models/{id}`: the upstreams' model lists merged with the
//! configured models and aliases.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::json;
use tower_service::Service;

use super::json_response;
use crate::body::Body;
use crate::error::{ErrorDialect, GatewayError};
use crate::model::ModelObject;
#[cfg(feature = "bedrock")]
use crate::provider::BedrockProvider;
use crate::provider::Dispatch;
#[cfg(feature = "openai")]
use crate::provider::OpenAiProvider;
use crate::route::{ProviderKind, Router};

/// How long one upstream's model listing may take before the list is served without it.
#[cfg(any(feature = "openai", feature = "bedrock"))]
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /v1/models` and `GET /v1/models/{id}`: the upstreams' lists merged with configured models,
/// cached for a minute (Bedrock's control plane and OpenAI's list change rarely).
#[derive(Debug, Clone)]
pub(crate) struct ModelsService {
    inner: Arc<ModelsInner>,
}

#[derive(Debug)]
struct ModelsInner {
    #[cfg(feature = "openai")]
    openai: Option<OpenAiProvider>,
    #[cfg(feature = "bedrock")]
    bedrock: Option<BedrockProvider>,
    router: Arc<Router>,
    configured: Vec<ModelObject>,
    ttl: Duration,
    cache: Mutex<Option<(Instant, Arc<ModelList>)>>,
}

/// The merged list, and the upstreams whose listing failed (said in the reply, never hidden).
#[derive(Debug, Default)]
pub(crate) struct ModelList {
    /// The models, configured ones first.
    pub(crate) models: Vec<ModelObject>,
    /// One line per upstream whose listing failed or timed out.
    pub(crate) warnings: Vec<String>,
}

/// How long a list that lacks a failed upstream is kept before the upstream is asked again.
const FAILED_LIST_TTL: Duration = Duration::from_secs(5);

impl ModelsService {
    /// A models service over the built-in providers of `dispatch` (the upstreams that list their
    /// models, and the mock), with `listed` extra ids plus the router's aliases.
    pub(crate) fn new(dispatch: &Dispatch, listed: &[String]) -> Self {
        let router = Arc::new(dispatch.router().clone());
        let mock_model = dispatch
            .mock()
            .map(|_| crate::provider::mock::MOCK_LISTED_MODEL.to_owned());
        let mut configured: Vec<ModelObject> = listed
            .iter()
            .chain(router.aliases().keys())
            .chain(mock_model.as_ref())
            .map(|id| ModelObject::new(id.clone(), owner_of(&router, id)))
            .collect();
        configured.sort_by(|a, b| a.id.cmp(&b.id));
        configured.dedup_by(|a, b| a.id == b.id);
        ModelsService {
            inner: Arc::new(ModelsInner {
                #[cfg(feature = "openai")]
                openai: dispatch.openai().cloned(),
                #[cfg(feature = "bedrock")]
                bedrock: dispatch.bedrock().cloned(),
                router,
                configured,
                ttl: Duration::from_secs(60),
                cache: Mutex::new(None),
            }),
        }
    }

    /// The merged model list (cached for a minute; a list missing a failed upstream for five
    /// seconds).
    pub(crate) async fn list(&self) -> Arc<ModelList> {
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
        #[cfg_attr(not(any(feature = "openai", feature = "bedrock")), allow(unused_mut))]
        let mut warnings = Vec::new();
        #[cfg(feature = "openai")]
        if let Some(openai) = &self.inner.openai {
            let listed = tokio::time::timeout(LIST_TIMEOUT, openai.list_models()).await;
            merge_listing("OpenAI", listed, &mut all, &mut warnings);
        }
        #[cfg(feature = "bedrock")]
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
        let found =
            list.models
                .iter()
                .find(|m| m.id == id)
                .cloned()
                .or_else(|| {
                    self.inner.router.resolve(&id).ok().map(|_| {
                        ModelObject::new(id.to_string(), owner_of(&self.inner.router, &id))
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
#[cfg(any(feature = "openai", feature = "bedrock"))]
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
