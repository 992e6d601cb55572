//! Native client surfaces: the gateway speaking the APIs clients' SDKs already use, in front of
//! any provider, with the gateway's auth, limits, retries and metrics.
//!
//! | Route | Surface | Auth | Errors |
//! |---|---|---|---|
//! | `POST /model/{modelId}/invoke`, `…/invoke-with-response-stream`, `…/converse`, `…/converse-stream` | [`bedrock_runtime`] (boto3 `bedrock-runtime`, AWS SDKs) | SigV4 with a configured client credential, `Authorization: Bearer`, `x-api-key` | `{"message"}` + `x-amzn-ErrorType`; exception frames in streams |
//! | `POST /v1/messages`, `POST /anthropic/v1/messages` | [`anthropic`] (Anthropic SDKs) | `x-api-key`, `Authorization: Bearer` | Anthropic `{"type":"error",…}` |
//!
//! Both decode into the canonical request and call the same typed core as
//! `/v1/chat/completions` (retry → dispatch → provider), so a Claude body reaches `gpt-4o` and a
//! Converse call reaches Claude on Bedrock; a native body to a Bedrock model of its own family is
//! forwarded as written. [`Surfaces`] mounts them in front of the route table.
//!
//! ```
//! use open_bedrock_server::surface::{surface_of, Surface};
//!
//! assert_eq!(surface_of("/model/gpt-4o/converse"), Some(Surface::BedrockRuntime));
//! assert_eq!(surface_of("/anthropic/v1/messages"), Some(Surface::AnthropicMessages));
//! assert_eq!(surface_of("/v1/chat/completions"), None);
//! ```

pub mod anthropic;
pub mod bedrock_runtime;

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Method, Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_service::Service;

use crate::body::{Body, BoxError};
use crate::error::{ErrorDialect, GatewayError};
use crate::model::{ChatCall, ChatReply};
use crate::rate_limit::RateLimiter;
use crate::translate::TranslateLayer;
use crate::{Gateway, GatewayService};

/// Which native surface a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/model/{modelId}/{operation}`.
    BedrockRuntime,
    /// `/v1/messages`, `/anthropic/v1/messages`.
    AnthropicMessages,
}

/// The surface serving `path`, if any.
pub fn surface_of(path: &str) -> Option<Surface> {
    if path.starts_with("/model/") {
        Some(Surface::BedrockRuntime)
    } else if path == "/v1/messages" || path == "/anthropic/v1/messages" {
        Some(Surface::AnthropicMessages)
    } else {
        None
    }
}

/// The route table `R` with the native surfaces mounted in front of it.
pub struct Surfaces<R, B> {
    routes: R,
    bedrock: GatewayService<B>,
    anthropic: GatewayService<B>,
}

// By hand: a derive would require `B: Clone` / `B: Debug` of the request body.
impl<R: Clone, B> Clone for Surfaces<R, B> {
    fn clone(&self) -> Self {
        Surfaces {
            routes: self.routes.clone(),
            bedrock: self.bedrock.clone(),
            anthropic: self.anthropic.clone(),
        }
    }
}

impl<R: std::fmt::Debug, B> std::fmt::Debug for Surfaces<R, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Surfaces")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl<R, B> Surfaces<R, B> {
    /// Mounts the two surface stacks in front of `routes`.
    pub fn new(routes: R, bedrock: GatewayService<B>, anthropic: GatewayService<B>) -> Self {
        Surfaces {
            routes,
            bedrock,
            anthropic,
        }
    }
}

impl<R, B> Service<Request<B>> for Surfaces<R, B>
where
    R: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    R::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(surface) = surface_of(req.uri().path()) else {
            let clone = self.routes.clone();
            return Box::pin(std::mem::replace(&mut self.routes, clone).call(req));
        };
        let dialect = match surface {
            Surface::BedrockRuntime => ErrorDialect::Bedrock,
            Surface::AnthropicMessages => ErrorDialect::Anthropic,
        };
        if req.method() != Method::POST {
            let mut res = GatewayError::method_not_allowed(req.method(), req.uri().path())
                .into_response(dialect);
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Box::pin(std::future::ready(Ok(res)));
        }
        let svc = match surface {
            Surface::BedrockRuntime => &mut self.bedrock,
            Surface::AnthropicMessages => &mut self.anthropic,
        };
        let clone = svc.clone();
        Box::pin(std::mem::replace(svc, clone).call(req))
    }
}

impl Gateway {
    /// The Bedrock runtime stack over any typed core `core`:
    /// in-flight limit → SigV4/Bearer auth → rate limit → [`bedrock_runtime::BedrockRuntime`].
    pub fn bedrock_runtime_stack<B, S>(&self, core: S) -> GatewayService<B>
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
        let stack = ServiceBuilder::new()
            // One body type out of the stack; the in-flight permit rides inside it.
            .map_response(crate::into_gateway_body)
            // Shed load past the in-flight limit (streams hold their permit until they end).
            .layer(self.in_flight.clone().dialect(ErrorDialect::Bedrock))
            // Read the bounded body and check SigV4 / the key; 403 in AWS shape.
            .layer(self.bedrock_auth.clone())
            // Count the request under its key; 429 ThrottlingException.
            .option_layer(
                self.rate_limiter
                    .as_ref()
                    .map(|l| l.layer().dialect(ErrorDialect::Bedrock)),
            )
            // Path model + native or Converse body → typed core → Bedrock-shaped answer.
            .service(
                bedrock_runtime::BedrockRuntime::new(core)
                    .with_shutdown(self.close_streams.clone()),
            );
        BoxCloneSyncService::new(stack)
    }

    /// The Anthropic Messages stack over any typed core `core`:
    /// in-flight limit → API-key auth → rate limit → [`anthropic::AnthropicMessages`] → translate.
    pub fn anthropic_stack<B, S>(&self, core: S) -> GatewayService<B>
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
        let stack = ServiceBuilder::new()
            .map_response(crate::into_gateway_body)
            .layer(self.in_flight.clone().dialect(ErrorDialect::Anthropic))
            .layer(self.auth.clone().dialect(ErrorDialect::Anthropic))
            .option_layer(
                self.rate_limiter
                    .as_ref()
                    .map(|l| RateLimiter::layer(l).dialect(ErrorDialect::Anthropic)),
            )
            // Read the bounded body; Claude in, Claude out.
            .layer(anthropic::AnthropicMessagesLayer::new(
                self.max_request_bytes,
            ))
            .layer(
                TranslateLayer::new(Some(self.keep_alive))
                    .with_shutdown(self.close_streams.clone()),
            )
            .service(core);
        BoxCloneSyncService::new(stack)
    }
}
