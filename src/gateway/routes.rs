//! The router: the [endpoint table](super::endpoint) applied to requests, and the classifier
//! that gives each ingress route its own rules.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::util::Oneshot;
use tower_service::Service;

use super::health::HealthInfo;
use super::json_response;
use crate::body::Body;
use crate::detect::{BodyHead, ChatClassifier, Classified, Classify};
use crate::endpoint::Endpoint;
use crate::error::{ErrorDialect, GatewayError};
use crate::surface::anthropic::MessagesClassifier;
use crate::surface::bedrock_runtime::BedrockRuntimeClassifier;
use crate::surface::openai::{EmbeddingsClassifier, ResponsesClassifier};

use super::HttpService;
use crate::ready::Own;

/// The classifier of every ingress route: the route's own ([`ChatClassifier`],
/// [`MessagesClassifier`], [`BedrockRuntimeClassifier`], [`EmbeddingsClassifier`],
/// [`ResponsesClassifier`]), picked by the [`Endpoint`] in the request's extensions (an embedder
/// that mounts the pipeline under its own paths can put one there) or, without one, by the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteClassifier;

fn endpoint(head: &Parts) -> Option<Endpoint> {
    head.extensions
        .get::<Endpoint>()
        .copied()
        .or_else(|| Endpoint::of(head.uri.path()))
}

impl Classify for RouteClassifier {
    fn dialect(&self, head: &Parts) -> ErrorDialect {
        match endpoint(head) {
            Some(Endpoint::Messages) => MessagesClassifier.dialect(head),
            Some(Endpoint::BedrockRuntime) => BedrockRuntimeClassifier.dialect(head),
            Some(Endpoint::Embeddings) => EmbeddingsClassifier.dialect(head),
            Some(Endpoint::Responses) => ResponsesClassifier.dialect(head),
            _ => ChatClassifier.dialect(head),
        }
    }

    fn classify(&self, head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        match endpoint(head) {
            Some(Endpoint::Messages) => MessagesClassifier.classify(head, body),
            Some(Endpoint::BedrockRuntime) => BedrockRuntimeClassifier.classify(head, body),
            Some(Endpoint::Embeddings) => EmbeddingsClassifier.classify(head, body),
            Some(Endpoint::Responses) => ResponsesClassifier.classify(head, body),
            _ => ChatClassifier.classify(head, body),
        }
    }

    fn openai_chat(&self, head: &Parts) -> Option<Classified> {
        match endpoint(head) {
            Some(
                Endpoint::Messages
                | Endpoint::BedrockRuntime
                | Endpoint::Embeddings
                | Endpoint::Responses,
            ) => None,
            _ => ChatClassifier.openai_chat(head),
        }
    }
}

/// Routes each request by the endpoint table: health answers here; metrics, models and the
/// ingress pipeline are their own stacks, each called only once ready. Unknown paths are 404 and
/// known paths with another method 405 (with `Allow`), in the endpoint's error dialect. The
/// endpoint's dialect goes into the request's extensions for the stages below; the endpoint
/// itself does not, since [`RouteClassifier`] reads it from the same path for less than an
/// extension costs (a boxed value per request, issue 18).
///
/// The stacks sit behind one `Arc`: a clone of every route's boxed stack (two or more boxes each,
/// and a walk down its layers) per clone of the whole service would buy nothing. The ingress
/// pipeline, which nearly every request takes, is kept once per clone of `Routes` (the server
/// keeps one per connection) and called in place (`crate::ready`) when it is the gateway's own
/// stack, ready by construction. With an embedder's ingress layers in it, it is cloned per request
/// as tower expects: a layer may keep state per clone (`RateLimit`) or queue for capacity while
/// another answers ready (`LoadShed` over `ConcurrencyLimit`), and a kept clone would keep that
/// queue's place between requests. Other routes are cloned for their call.
#[derive(Clone)]
pub(crate) struct Routes {
    table: Arc<RouteTable>,
    /// This clone's own ingress stack (not cloned with it), made at its first ingress request;
    /// `None` when the ingress is cloned per request.
    ingress: Option<Own<HttpService>>,
}

impl Routes {
    /// The routes of `table`; `keep_ingress` when its ingress is the gateway's own stack alone.
    pub(crate) fn new(table: RouteTable, keep_ingress: bool) -> Self {
        Routes {
            table: Arc::new(table),
            ingress: keep_ingress.then(Own::new),
        }
    }
}

/// The stacks [`Routes`] picks from, by endpoint.
pub(crate) struct RouteTable {
    pub(crate) ingress: HttpService,
    pub(crate) models: HttpService,
    pub(crate) stored_responses: HttpService,
    pub(crate) metrics: HttpService,
    pub(crate) key_info: HttpService,
    pub(crate) health: HealthInfo,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Service<Request<Body>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RoutesFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each route's stack is awaited ready in the call (`Oneshot`): which one a request needs
        // is only known from its path.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let Some(endpoint) = Endpoint::of(path) else {
            let e = GatewayError::not_found(req.method(), path);
            return RoutesFuture::ready(e.into_response(ErrorDialect::OpenAi));
        };
        if !endpoint.allows(req.method()) {
            let mut res = GatewayError::method_not_allowed(req.method(), path)
                .into_response(endpoint.dialect());
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(endpoint.allow()));
            return RoutesFuture::ready(res);
        }
        req.extensions_mut().insert(endpoint.dialect());
        let service = match endpoint {
            Endpoint::Health => {
                return RoutesFuture::ready(json_response(
                    StatusCode::OK,
                    Bytes::from_static(br#"{"status":"ok"}"#),
                ))
            }
            Endpoint::ProvidersHealth => {
                return RoutesFuture::ready(json_response(StatusCode::OK, self.table.health.body()))
            }
            Endpoint::Metrics => &self.table.metrics,
            Endpoint::Models => &self.table.models,
            Endpoint::StoredResponse => &self.table.stored_responses,
            Endpoint::KeyInfo => &self.table.key_info,
            _ => match &mut self.ingress {
                Some(own) => {
                    let table = &self.table;
                    return RoutesFuture::Ingress {
                        fut: crate::ready::call_or_wait(own, || table.ingress.clone(), req),
                    };
                }
                None => &self.table.ingress,
            },
        };
        RoutesFuture::call(service.clone(), req)
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Routes`].
    #[project = RoutesFutureProj]
    pub(crate) enum RoutesFuture {
        Call { #[pin] fut: Oneshot<HttpService, Request<Body>> },
        Ingress {
            #[pin]
            fut: Either<
                <HttpService as Service<Request<Body>>>::Future,
                Oneshot<HttpService, Request<Body>>,
            >,
        },
        Ready { res: Option<Response<Body>> },
    }
}

impl RoutesFuture {
    fn call(service: HttpService, req: Request<Body>) -> Self {
        RoutesFuture::Call {
            fut: Oneshot::new(service, req),
        }
    }

    fn ready(res: Response<Body>) -> Self {
        RoutesFuture::Ready { res: Some(res) }
    }
}

impl Future for RoutesFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RoutesFutureProj::Call { fut } => fut.poll(cx),
            RoutesFutureProj::Ingress { fut } => fut.poll(cx),
            RoutesFutureProj::Ready { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}
