//! The Anthropic Messages surface: `POST /v1/messages` (and `/anthropic/v1/messages`) as the
//! Anthropic SDKs call it, in front of any provider.
//!
//! The Anthropic API is the Claude-on-Bedrock body with the version in an `anthropic-version`
//! header instead of an `anthropic_version` member, and the model in `model`. So
//! [`AnthropicMessages`] reads the body (bounded, like [detection](crate::detect)), adds
//! `anthropic_version: "bedrock-2023-05-31"` when the body has none, and hands
//! [translation](crate::translate) a request that is Claude in and Claude out: a Claude model on
//! Bedrock gets the body as written, any other model goes through the canonical model, and the
//! answer is an Anthropic Messages response or Anthropic SSE. Errors are Anthropic errors.
//!
//! The stack: in-flight limit → API-key auth (`x-api-key` or Bearer, Anthropic errors) → rate
//! limit → [`AnthropicMessages`] → translate → typed core.
//!
//! ```
//! use open_bedrock_server::surface::anthropic::anthropic_body;
//!
//! let body = serde_json::json!({"model": "gpt-4o", "max_tokens": 5, "messages": []});
//! let detected = anthropic_body(body.as_object().unwrap().clone());
//! assert_eq!(detected.body["anthropic_version"], "bedrock-2023-05-31");
//! ```

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{Body, BoxError};
use crate::detect::DetectedRequest;
use crate::detect::{check_declared_length, read_bounded, DEFAULT_BODY_READ_TIMEOUT};
use crate::error::{ErrorDialect, GatewayError};
use crate::format::bedrock_claude::ANTHROPIC_VERSION;
use crate::format::{InboundFormat, TargetFormat};

/// An Anthropic Messages body as a detected Claude-in, Claude-out request.
pub fn anthropic_body(mut body: Map<String, Value>) -> DetectedRequest {
    body.entry("anthropic_version")
        .or_insert_with(|| Value::from(ANTHROPIC_VERSION));
    DetectedRequest {
        inbound: InboundFormat::BedrockClaude,
        target: TargetFormat::BedrockClaude,
        body,
    }
}

/// Layer that applies [`AnthropicMessages`] with a body limit.
#[derive(Debug, Clone, Copy)]
pub struct AnthropicMessagesLayer {
    limit: usize,
}

impl AnthropicMessagesLayer {
    /// Reads bodies up to `limit` bytes (413 beyond it).
    pub fn new(limit: usize) -> Self {
        AnthropicMessagesLayer { limit }
    }
}

impl<S> Layer<S> for AnthropicMessagesLayer {
    type Service = AnthropicMessages<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnthropicMessages {
            inner,
            limit: self.limit,
        }
    }
}

/// Middleware that turns an Anthropic Messages request into a `Request<DetectedRequest>`.
#[derive(Debug, Clone)]
pub struct AnthropicMessages<S> {
    inner: S,
    limit: usize,
}

fn rejected(e: GatewayError) -> Response<Body> {
    e.into_response(ErrorDialect::Anthropic)
}

impl<S, B> Service<Request<B>> for AnthropicMessages<S>
where
    S: Service<Request<DetectedRequest>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            if let Err(e) = check_declared_length(&parts.headers, limit) {
                return Ok(rejected(e));
            }
            let bytes = match read_bounded(body, limit, DEFAULT_BODY_READ_TIMEOUT).await {
                Ok(b) => b,
                Err(e) => return Ok(rejected(e)),
            };
            let body = match serde_json::from_slice::<Map<String, Value>>(&bytes) {
                Ok(b) => b,
                Err(e) => {
                    return Ok(rejected(GatewayError::invalid_request(format!(
                        "The request body is not a valid JSON object: {e}"
                    ))))
                }
            };
            tower::ServiceExt::oneshot(inner, Request::from_parts(parts, anthropic_body(body)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    #[tokio::test]
    async fn hands_on_a_claude_request_and_rejects_bad_json_in_anthropic_shape() {
        let svc = AnthropicMessagesLayer::new(1024).layer(tower::service_fn(
            |req: Request<DetectedRequest>| async move {
                let d = req.into_body();
                let text = format!(
                    "{}|{}|{}",
                    d.inbound.as_str(),
                    d.target.as_str(),
                    d.body["anthropic_version"]
                );
                Ok::<_, Infallible>(Response::new(Body::from(text)))
            },
        ));
        let req = Request::post("/v1/messages")
            .body(Body::from(
                serde_json::to_vec(&json!({"model": "m", "messages": []})).unwrap(),
            ))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"bedrock_claude|bedrock_claude|"bedrock-2023-05-31""#
        );

        let res = svc
            .clone()
            .oneshot(Request::post("/").body(Body::from("nope")).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body: Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let res = svc
            .oneshot(
                Request::post("/")
                    .body(Body::from("x".repeat(2000)))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 413);
    }
}
