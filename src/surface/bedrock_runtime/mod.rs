//! The Bedrock runtime surface: `POST /model/{modelId}/{operation}` as AWS SDKs call it, in front
//! of any provider.
//!
//! | Operation | Body in | Answer |
//! |---|---|---|
//! | `invoke` | model-native JSON (Claude `anthropic_version` / Titan `inputText`) | the same family's JSON |
//! | `invoke-with-response-stream` | the same | event stream of `chunk` frames, each `{"bytes": b64(native event)}` |
//! | `converse` | Converse JSON | Converse JSON |
//! | `converse-stream` | Converse JSON | event stream of ConverseStream events |
//!
//! The model id is the path label, percent-decoded (`…-v1%3A0` → `…-v1:0`; ARNs with `%2F`). The
//! native family of an invoke body is read from the body itself (`anthropic_version` → Claude,
//! `inputText` → Titan), so a Claude body sent to `gpt-4o` is answered as Claude. A body of the
//! model's own family is forwarded to Bedrock as written ([`OriginalBody`](crate::model::OriginalBody)); everything else goes
//! through the canonical model. Errors before a stream starts are Bedrock errors (`{"message"}` +
//! `x-amzn-ErrorType`, Bedrock's statuses); after, one exception frame ends the stream.
//!
//! The stack ([`Gateway`](crate::Gateway) assembles it): in-flight limit → [`auth`] (SigV4 /
//! Bearer / `x-api-key`, 403 in AWS shape) → rate limit → [`BedrockRuntime`] → typed core.
//!
//! ```
//! use open_bedrock_server::surface::bedrock_runtime::{parse_path, Operation};
//!
//! let (model, op) = parse_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke").unwrap();
//! assert_eq!((model.as_str(), op), ("anthropic.claude-3-haiku-20240307-v1:0", Some(Operation::Invoke)));
//! let (model, op) = parse_path("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fabc/converse-stream").unwrap();
//! assert_eq!((model.as_str(), op), ("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc", Some(Operation::ConverseStream)));
//! assert_eq!(parse_path("/model/m/count-tokens").unwrap().1, None);
//! ```

pub mod auth;
pub mod eventstream;

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use self::eventstream::{ConverseStreamEncoder, InvokeStreamEncoder};
use crate::body::Body;
use crate::detect::DetectedRequest;
use crate::error::{ErrorDialect, GatewayError};
use crate::format::bedrock_claude::{ClaudeSseEncoder, ANTHROPIC_VERSION};
use crate::format::bedrock_titan::TitanChunkEncoder;
use crate::format::{converse, InboundFormat, StreamEncoder, TargetFormat};
use crate::model::{CallContext, CallRecord, ChatCall, ChatReply, ChunkStream};
use crate::provider::timeout::instant_after;
use crate::sse::EncodedStream;
use crate::translate::{decode_request, encode_complete};
use crate::usage::UsageHooks;

/// A Bedrock runtime operation the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `InvokeModel`.
    Invoke,
    /// `InvokeModelWithResponseStream`.
    InvokeStream,
    /// `Converse`.
    Converse,
    /// `ConverseStream`.
    ConverseStream,
}

impl Operation {
    /// Whether the operation answers with an event stream.
    pub fn is_stream(self) -> bool {
        matches!(self, Operation::InvokeStream | Operation::ConverseStream)
    }
}

/// Splits `/model/{modelId}/{operation}` into the decoded model id and the operation (`None` for
/// an operation the gateway does not serve); `None` when the path has no model label.
pub fn parse_path(path: &str) -> Option<(String, Option<Operation>)> {
    let rest = path.strip_prefix("/model/")?;
    let (raw, op) = rest.rsplit_once('/')?;
    if raw.is_empty() {
        return None;
    }
    let model = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    let op = match op {
        "invoke" => Some(Operation::Invoke),
        "invoke-with-response-stream" => Some(Operation::InvokeStream),
        "converse" => Some(Operation::Converse),
        "converse-stream" => Some(Operation::ConverseStream),
        _ => None,
    };
    Some((model, op))
}

fn validation(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into()).with_aws_type("ValidationException")
}

/// What a decoded request answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Model-native Claude or Titan JSON / chunks.
    Native(TargetFormat),
    /// Converse JSON / ConverseStream events.
    Converse,
}

/// Decodes a Bedrock runtime request into a typed-core call and the shape of its answer.
fn decode(
    model: String,
    op: Operation,
    bytes: &[u8],
    context: CallContext,
) -> Result<(ChatCall, Answer), GatewayError> {
    let mut body: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
        validation(format!(
            "Malformed input request: the body is not a JSON object ({e})."
        ))
    })?;
    let stream = op.is_stream();
    match op {
        Operation::Invoke | Operation::InvokeStream => {
            let format = if body.contains_key("anthropic_version") {
                InboundFormat::BedrockClaude
            } else if body.contains_key("inputText") {
                InboundFormat::BedrockTitan
            } else if body.contains_key("messages")
                && crate::route::bedrock_family(&model) == Some(crate::route::BedrockFamily::Claude)
            {
                body.insert("anthropic_version".into(), Value::from(ANTHROPIC_VERSION));
                InboundFormat::BedrockClaude
            } else {
                return Err(validation(
                    "Malformed input request: expected a Claude body (anthropic_version + messages) or a Titan body (inputText).",
                ));
            };
            let target = match format {
                InboundFormat::BedrockTitan => TargetFormat::BedrockTitan,
                _ => TargetFormat::BedrockClaude,
            };
            // The path names the model and the operation decides streaming; the body says neither.
            body.insert("model".into(), Value::String(model));
            body.insert("stream".into(), Value::Bool(stream));
            let (mut request, original) = decode_request(DetectedRequest {
                inbound: format,
                target,
                body,
            })
            .map_err(as_validation)?;
            if stream {
                // Both families end their streams with token counts: ask the upstream for them.
                request
                    .stream_options
                    .get_or_insert_with(Default::default)
                    .include_usage = Some(true);
            }
            let context = CallContext {
                inbound: format,
                target,
                original,
                record: std::sync::Arc::new(CallRecord::new(
                    request.model.clone(),
                    format,
                    target,
                    stream,
                )),
                ..context
            };
            Ok((
                ChatCall::with_context(request, context),
                Answer::Native(target),
            ))
        }
        Operation::Converse | Operation::ConverseStream => {
            let request = converse::client::decode_client_request(&model, &body, stream)?;
            // Converse is neither of the native invoke formats; logs show it as OpenAI-shaped.
            let record = CallRecord::new(
                request.model.clone(),
                InboundFormat::OpenAi,
                TargetFormat::OpenAi,
                stream,
            );
            let context = CallContext {
                record: std::sync::Arc::new(record),
                ..context
            };
            Ok((ChatCall::with_context(request, context), Answer::Converse))
        }
    }
}

/// Errors from the shared decoders speak OpenAI; on this surface they are validation errors.
fn as_validation(e: GatewayError) -> GatewayError {
    if e.status() == http::StatusCode::BAD_REQUEST {
        e.with_aws_type("ValidationException")
    } else {
        e
    }
}

/// The Bedrock runtime service over the typed core `S`: `Request<Body>` (already authenticated,
/// body bounded) in, a Bedrock-shaped `Response<Body>` out.
#[derive(Debug, Clone)]
pub struct BedrockRuntime<S> {
    core: S,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
}

impl<S> BedrockRuntime<S> {
    /// The surface over `core`.
    pub fn new(core: S) -> Self {
        BedrockRuntime {
            core,
            shutdown: None,
            total: None,
        }
    }

    /// Open streams end with an exception frame when `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    /// Every call gets one deadline, `total` from when it is made, for all its attempts
    /// ([`CallContext::deadline`]). Without it the core gives each attempt its own total time.
    pub fn with_total_timeout(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }

    /// The typed core.
    pub fn get_ref(&self) -> &S {
        &self.core
    }
}

impl<S> Service<Request<Body>> for BedrockRuntime<S>
where
    S: Service<ChatCall, Response = ChatReply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The core's readiness is awaited inside the call, so its failure is a Bedrock error response.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let core = self.core.clone();
        let shutdown = self.shutdown.clone();
        let total = self.total;
        Box::pin(async move {
            let request_id = req.headers().get("x-request-id").cloned();
            let mut res = answer(core, shutdown, total, req).await;
            if let Some(id) = request_id {
                res.headers_mut().insert("x-amzn-requestid", id);
            }
            Ok(res)
        })
    }
}

async fn answer<S>(
    core: S,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
    req: Request<Body>,
) -> Response<Body>
where
    S: Service<ChatCall, Response = ChatReply, Error = GatewayError>,
{
    let (mut parts, body) = req.into_parts();
    let Some((model, op)) = parse_path(parts.uri.path()) else {
        return GatewayError::not_found(&parts.method, parts.uri.path())
            .with_aws_type("UnknownOperationException")
            .into_response(ErrorDialect::Bedrock);
    };
    let Some(op) = op else {
        return GatewayError::not_found(&parts.method, parts.uri.path())
            .with_aws_type("UnknownOperationException")
            .into_response(ErrorDialect::Bedrock);
    };
    let hooks = parts.extensions.remove::<UsageHooks>().unwrap_or_default();
    // The body was read (and bounded) by the auth layer: collecting it again is a copy-free move.
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return validation(format!("Failed to read the request body: {e}"))
                .into_response(ErrorDialect::Bedrock)
        }
    };
    let context = CallContext {
        request_id: parts.headers.get("x-request-id").cloned(),
        deadline: total.map(|t| instant_after(tokio::time::Instant::now(), t)),
        ..CallContext::default()
    };
    let (call, answer) = match decode(model, op, &bytes, context) {
        Ok(d) => d,
        Err(e) => return e.into_response(ErrorDialect::Bedrock),
    };
    let record = call.context.record.clone();
    let reply = match tower::ServiceExt::oneshot(core, call).await {
        Ok(r) => r,
        Err(e) => return e.into_response(ErrorDialect::Bedrock),
    };
    match reply {
        ChatReply::Complete(response) => {
            let json = match answer {
                Answer::Native(target) => encode_complete(&response, target),
                Answer::Converse => bytes::Bytes::from(
                    serde_json::to_vec(&converse::client::encode_client_response(&response))
                        .unwrap_or_default(),
                ),
            };
            let mut res = Response::new(Body::from(json));
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(usage) = &response.usage {
                hooks.report(usage);
                if matches!(answer, Answer::Native(_)) {
                    let input = usage
                        .prompt_tokens
                        .saturating_sub(usage.cached_tokens())
                        .saturating_sub(usage.cache_write_tokens());
                    h.insert("x-amzn-bedrock-input-token-count", HeaderValue::from(input));
                    h.insert(
                        "x-amzn-bedrock-output-token-count",
                        HeaderValue::from(usage.completion_tokens),
                    );
                }
                record.record_usage(usage.prompt_tokens, usage.completion_tokens);
            }
            res.extensions_mut().insert(record);
            res
        }
        ChatReply::Stream(stream) => {
            let stream = hooks.tap(stream, record.clone());
            let body = match answer {
                Answer::Native(TargetFormat::BedrockTitan) => framed(
                    stream,
                    InvokeStreamEncoder::new(TitanChunkEncoder::new()),
                    shutdown.as_ref(),
                ),
                Answer::Native(_) => framed(
                    stream,
                    InvokeStreamEncoder::new(ClaudeSseEncoder::new()),
                    shutdown.as_ref(),
                ),
                Answer::Converse => framed(stream, ConverseStreamEncoder::new(), shutdown.as_ref()),
            };
            let mut res = Response::new(body);
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.amazon.eventstream"),
            );
            h.insert(
                "x-amzn-bedrock-content-type",
                HeaderValue::from_static("application/json"),
            );
            res.extensions_mut().insert(record);
            res
        }
    }
}

/// An event-stream body: no keep-alive (an SSE comment would corrupt the framing).
fn framed<E: StreamEncoder>(
    stream: ChunkStream,
    encoder: E,
    shutdown: Option<&CancellationToken>,
) -> Body {
    let body = EncodedStream::new(stream, encoder, None);
    Body::new(match shutdown {
        Some(token) => body.with_shutdown(token),
        None => body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/model/amazon.titan-text-express-v1/invoke-with-response-stream").unwrap(),
            (
                "amazon.titan-text-express-v1".to_owned(),
                Some(Operation::InvokeStream)
            )
        );
        assert_eq!(
            parse_path("/model/gpt-4o/converse").unwrap().1,
            Some(Operation::Converse)
        );
        assert!(parse_path("/model//invoke").is_none());
        assert!(parse_path("/model/x").is_none());
        assert!(parse_path("/v1/models").is_none());
    }

    fn decoded(
        model: &str,
        op: Operation,
        body: Value,
    ) -> Result<(ChatCall, Answer), GatewayError> {
        decode(
            model.into(),
            op,
            &serde_json::to_vec(&body).unwrap(),
            CallContext::default(),
        )
    }

    #[test]
    fn invoke_bodies_choose_their_family_from_the_body() {
        let claude = serde_json::json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]});
        let (call, answer) = decoded("gpt-4o", Operation::InvokeStream, claude).unwrap();
        assert_eq!(answer, Answer::Native(TargetFormat::BedrockClaude));
        assert_eq!(call.request.model, "gpt-4o");
        assert!(call.request.is_stream() && call.request.include_usage());
        let original = call.context.original.as_ref().unwrap();
        assert_eq!(original.format, InboundFormat::BedrockClaude);

        let (call, answer) = decoded(
            "amazon.titan-text-express-v1",
            Operation::Invoke,
            serde_json::json!({"inputText": "User: hi\nBot:"}),
        )
        .unwrap();
        assert_eq!(answer, Answer::Native(TargetFormat::BedrockTitan));
        assert!(!call.request.is_stream());

        let e = decoded(
            "gpt-4o",
            Operation::Invoke,
            serde_json::json!({"prompt": "hi"}),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
        let e = decode(
            "m".into(),
            Operation::Invoke,
            b"not json",
            CallContext::default(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn converse_bodies_go_through_the_canonical_model() {
        let (call, answer) = decoded(
            "gpt-4o",
            Operation::ConverseStream,
            serde_json::json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        )
        .unwrap();
        assert_eq!(answer, Answer::Converse);
        assert!(call.context.original.is_none() && call.request.is_stream());
    }
}
