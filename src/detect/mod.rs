//! Format detection: the stage that reads the request body once (under a size limit and a read
//! deadline), parses it once, and lets a *classifier* decide which dialect the client wrote
//! ([`InboundFormat`]), which reply it reads ([`ReplyFormat`]), and — where the path says so — the
//! model and whether to stream.
//!
//! Every ingress route runs this same stage; a route differs only in its classifier
//! ([`Classify`], a trait with a closure impl):
//!
//! | Route | Classifier |
//! |---|---|
//! | `POST /v1/chat/completions` | [`ChatClassifier`]: markers in the body (below), reply from `?target_format=` |
//! | `POST /v1/messages` | [`crate::surface::anthropic::MessagesClassifier`]: Claude in, Claude out |
//! | `POST /model/{id}/{op}` | [`crate::surface::bedrock_runtime::BedrockRuntimeClassifier`]: model and streaming from the path, family from the body |
//!
//! The chat rules are a pure function, [`detect_format`], with a fixed priority:
//! 1. `anthropic_version` present → Bedrock Claude;
//! 2. `inputText` present → Bedrock Titan;
//! 3. `model` and `messages` → OpenAI.
//!
//! Only those marker keys decide, so a valid OpenAI request is never misread as Claude because it
//! also has `max_tokens`, `stop` or an object `tool_choice`. A body with `messages` but no `model` is a
//! 400 with `param: "model"`; any other shape is a 400 that names the three accepted formats.
//!
//! The layer ([`DetectLayer`]) refuses a declared `Content-Length` over the limit before anything is
//! read (413), stops reading as soon as the stream passes it (413) or the deadline passes (408), and
//! hands the inner service a `Request<DetectedRequest>`: the classification and the body's bytes. A
//! body error that is itself a [`GatewayError`] (a layer below, such as SigV4 verification, failed
//! the body) is answered as is.
//!
//! **Memory per request is bounded** (DESIGN §11): the body is read into one buffer under the size
//! limit and a global [`BodyBudget`] of bytes in flight (503 when it is spent: load is shed, never
//! queued in memory), then read once by [`BodyHead`] — a typed pass that keeps only the markers,
//! the model, `stream` and the output cap, and refuses more than `max_json_values` values or
//! nesting deeper than 128 — so no generic JSON tree of the body is ever built here. Translation
//! then decodes the bytes straight into typed requests.
//!
//! **One walk for a chat body.** On a route that reads OpenAI chat bodies
//! ([`Classify::openai_chat`]), detection first decodes the body straight into the typed
//! [`ChatRequest`] (`client_request::decode_within`, the walk translation would run), counting
//! its values against the same budget; the request rides on as [`DetectedRequest::decoded`], so a
//! chat body is read once, not scanned by [`BodyHead`] and then decoded. Any body that walk does
//! not read wholly by itself — a native body's marker, a member serde reads, the reserved
//! raw-value key, past the budget, not JSON — takes the two steps above, whose answer (and
//! error) it then gets; a test holds the two paths equal on thousands of mutated bodies.
//!
//! ```
//! use open_bedrock_server::detect::{detect_format, BodyHead};
//! use open_bedrock_server::format::InboundFormat;
//!
//! let body = br#"{"model":"gpt-4o","messages":[],"max_tokens":5,
//!     "tool_choice":{"type":"function","function":{"name":"f"}}}"#;
//! assert_eq!(detect_format(&BodyHead::parse(body).unwrap()).unwrap(), InboundFormat::OpenAi);
//! let body = br#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#;
//! assert_eq!(detect_format(&BodyHead::parse(body).unwrap()).unwrap(), InboundFormat::BedrockClaude);
//! ```

mod budget;
mod head;
mod service;

pub use budget::BodyBudget;
pub use head::{BodyHead, DEFAULT_MAX_JSON_VALUES};
pub use service::{Detect, DetectLayer, ResponseFuture, DEFAULT_BODY_READ_TIMEOUT};

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;

use crate::error::{ErrorDialect, GatewayError};
use crate::format::{InboundFormat, ReplyFormat, TargetFormat};
use crate::model::ChatRequest;
use crate::usage::UsageHooks;

/// What a classifier decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Classified {
    /// The dialect the client wrote.
    pub inbound: InboundFormat,
    /// The reply the client reads.
    pub reply: ReplyFormat,
    /// The model when the path names it (it wins over the body's).
    pub model: Option<String>,
    /// Whether to stream, when the path decides it (it wins over the body's `stream`).
    pub stream: Option<bool>,
}

impl Classified {
    /// `inbound` in, `reply` out; model and streaming from the body.
    pub fn new(inbound: InboundFormat, reply: ReplyFormat) -> Self {
        Classified {
            inbound,
            reply,
            model: None,
            stream: None,
        }
    }

    /// The model the path names.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Streaming as the path decides it.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }
}

/// Decides the formats of a request from its head and the top level of its body ([`BodyHead`]).
///
/// Implemented by the gateway's classifiers per route and by any
/// `Fn(&Parts, &BodyHead) -> Result<Classified, GatewayError>` closure:
///
/// ```
/// use open_bedrock_server::detect::{BodyHead, Classified, DetectLayer};
/// use open_bedrock_server::format::{InboundFormat, ReplyFormat};
///
/// // Every body is OpenAI in, Anthropic out.
/// let layer = DetectLayer::new(1 << 20, |_: &http::request::Parts, _: &BodyHead| {
///     Ok(Classified::new(InboundFormat::OpenAi, ReplyFormat::Claude))
/// });
/// # let _ = layer;
/// ```
pub trait Classify: Clone + Send + Sync + 'static {
    /// The error shape for failures before (or of) classification: a body too large or too slow,
    /// invalid JSON, an unknown format. Default: the [`ErrorDialect`] request extension (the
    /// gateway's router sets it per route), else OpenAI.
    fn dialect(&self, head: &Parts) -> ErrorDialect {
        head.extensions
            .get::<ErrorDialect>()
            .copied()
            .unwrap_or_default()
    }

    /// Decides the formats (and path-given model and streaming) of a request.
    fn classify(&self, head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError>;

    /// What [`classify`](Classify::classify) decides for an OpenAI chat body on this route —
    /// `None` when the route reads no such body, or its decision needs more than the body's
    /// format. With it, detection reads a chat body once, into the typed request and its facts
    /// together ([`DetectedRequest::decoded`]); a body that walk does not read is detected and
    /// decoded in two steps as before, with the same outcome. Default: `None`.
    fn openai_chat(&self, head: &Parts) -> Option<Classified> {
        let _ = head;
        None
    }
}

impl<F> Classify for F
where
    F: Fn(&Parts, &BodyHead) -> Result<Classified, GatewayError> + Clone + Send + Sync + 'static,
{
    fn classify(&self, head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        self(head, body)
    }
}

/// The classifier of `POST /v1/chat/completions`: [`detect_format`] on the body, the reply from
/// `?target_format=` ([`target_format`]; default OpenAI).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatClassifier;

impl Classify for ChatClassifier {
    fn dialect(&self, head: &Parts) -> ErrorDialect {
        target_format(head.uri.query())
            .map(|t| ReplyFormat::from(t).error_dialect())
            .unwrap_or_default()
    }

    fn classify(&self, head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        let target = target_format(head.uri.query())?;
        Ok(Classified::new(detect_format(body)?, target.into()))
    }

    fn openai_chat(&self, head: &Parts) -> Option<Classified> {
        let target = target_format(head.uri.query()).ok()?;
        Some(Classified::new(InboundFormat::OpenAi, target.into()))
    }
}

/// The request body after detection: what the classifier decided, and the body's bytes (one JSON
/// object, checked by [`BodyHead`]; translation decodes it into typed requests).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DetectedRequest {
    /// The dialect the client wrote.
    pub inbound: InboundFormat,
    /// The reply the client reads.
    pub reply: ReplyFormat,
    /// The model when the path names it.
    pub model: Option<String>,
    /// Streaming when the path decides it.
    pub stream: Option<bool>,
    /// The body: one JSON object.
    pub body: Bytes,
    /// The model the request names — the path's, else the body's top-level `model` (`model_id`,
    /// `modelId`) — as detection read it: what a key's allowlist is checked against.
    pub requested_model: Option<String>,
    /// The output-token cap the body names where its format's decode reads it (see
    /// [`BodyHead::max_tokens`]): the budget's admission estimate.
    pub max_tokens: Option<u64>,
    /// An OpenAI chat body already decoded by detection (see [`Classify::openai_chat`]):
    /// translation takes it instead of decoding `body` again. `None` for any other body, and for
    /// a chat body detection read in two steps. An `Arc` with one reference until translation
    /// changes it in place (`Arc::make_mut`) and hands it to the call, which holds it where it is.
    pub decoded: Option<Arc<ChatRequest>>,
    /// The usage hooks the stages between detection and translation attach (the key policy's
    /// settlement): carried on the request they are for rather than in a request extension, which
    /// would be one more heap block per request. Translation reports to them after the request's
    /// [`UsageHooks`] extension; a service of an embedder's own in place of
    /// [`Translate`](crate::translate::Translate) takes them from here
    /// ([`UsageHooks::report`] once the usage is known), or a key's budget is settled with its
    /// admission estimate only.
    pub usage_hooks: UsageHooks,
}

impl DetectedRequest {
    /// A detected request from a classification and its body's bytes.
    pub fn new(classified: Classified, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let Classified {
            inbound,
            reply,
            model,
            stream,
        } = classified;
        DetectedRequest {
            inbound,
            reply,
            requested_model: model.clone(),
            model,
            stream,
            body,
            max_tokens: None,
            decoded: None,
            usage_hooks: UsageHooks::default(),
        }
    }

    /// An OpenAI chat body read in one walk: `request` is `body` decoded by
    /// [`client_request::decode_within`](crate::format::openai::client_request::decode_within)
    /// (which stops at a native body's markers), classified as `classified` by
    /// [`Classify::openai_chat`].
    pub(crate) fn decoded_chat(
        classified: Classified,
        body: impl Into<Bytes>,
        request: ChatRequest,
    ) -> Self {
        let mut detected = DetectedRequest::new(classified, body);
        if detected.requested_model.is_none() {
            detected.requested_model = Some(request.model.clone());
        }
        detected.max_tokens = request.max_output_tokens().map(u64::from);
        detected.decoded = Some(Arc::new(request));
        detected
    }

    /// With what the body's head says: its model (when the path names none) and output cap.
    pub fn with_head(mut self, head: &BodyHead) -> Self {
        if self.requested_model.is_none() {
            self.requested_model = head.model().map(str::to_owned);
        }
        self.max_tokens = head.max_tokens(self.inbound);
        self
    }
}

/// The declared `Content-Length`, if any; 413 when it is over `limit`: refused before anything is
/// read.
pub(crate) fn check_declared_length(
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Option<usize>, GatewayError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(GatewayError::payload_too_large(limit)),
        Some(n) => Ok(usize::try_from(n).ok()),
        None => Ok(None),
    }
}

/// The error for a body read under `limit` that failed: the body's own [`GatewayError`] when it
/// carries one, 413 past the limit, else 400.
pub(crate) fn body_read_error(e: &crate::body::BoxError, limit: usize) -> GatewayError {
    if let Some(own) = e.downcast_ref::<GatewayError>() {
        return own.clone();
    }
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        GatewayError::payload_too_large(limit)
    } else {
        GatewayError::invalid_request(format!("Failed to read the request body: {e}"))
    }
}

/// 408: the body did not arrive within the read timeout.
pub(crate) fn body_timeout_error() -> GatewayError {
    GatewayError::invalid_request("The request body did not arrive in time.")
        .with_status(http::StatusCode::REQUEST_TIMEOUT)
        .with_code("request_timeout")
}

/// Decides the inbound format of a body from its top level.
pub fn detect_format(body: &BodyHead) -> Result<InboundFormat, GatewayError> {
    if body.has("anthropic_version") {
        return Ok(InboundFormat::BedrockClaude);
    }
    if body.has("inputText") {
        return Ok(InboundFormat::BedrockTitan);
    }
    match (body.has("model"), body.has("messages")) {
        (true, true) => Ok(InboundFormat::OpenAi),
        (false, true) => Err(GatewayError::missing_field("model")),
        (true, false) => Err(GatewayError::missing_field("messages")),
        (false, false) => Err(GatewayError::invalid_request(
            "Unrecognized request format. Accepted formats: OpenAI chat completions (`model` + `messages`), \
             Bedrock Claude (`anthropic_version` + `messages`, model in `model`/`model_id`), \
             Bedrock Titan (`inputText`, model in `model`/`model_id`).",
        )
        .with_code("unknown_format")),
    }
}

/// Reads `target_format` from a query string (default OpenAI); an unknown value is a 400, and so
/// is the parameter repeated with values that disagree (`?target_format=openai&target_format=bedrock_claude`
/// has no one meaning; the same value twice is accepted).
pub fn target_format(query: Option<&str>) -> Result<TargetFormat, GatewayError> {
    let Some(query) = query else {
        return Ok(TargetFormat::OpenAi);
    };
    let mut chosen: Option<&str> = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "target_format" {
            continue;
        }
        match chosen {
            Some(first) if first != v => {
                return Err(GatewayError::invalid_request(format!(
                    "target_format is given more than once with different values (`{first}`, `{v}`); give it once."
                ))
                .with_param("target_format")
                .with_code("invalid_value"))
            }
            _ => chosen = Some(v),
        }
    }
    let Some(v) = chosen else {
        return Ok(TargetFormat::OpenAi);
    };
    TargetFormat::parse(v).ok_or_else(|| {
        GatewayError::invalid_request(format!(
            "Invalid target_format `{v}`. Accepted values: {}.",
            TargetFormat::ACCEPTED
        ))
        .with_param("target_format")
        .with_code("invalid_value")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use serde_json::Value;

    fn detect(v: Value) -> Result<InboundFormat, GatewayError> {
        detect_format(&BodyHead::of(v.as_object().unwrap()))
    }

    #[test]
    fn priority_and_no_misreads() {
        let cases = [
            (
                json!({"model":"gpt-4o","messages":[]}),
                InboundFormat::OpenAi,
            ),
            (
                json!({"model":"gpt-4o","messages":[],"max_tokens":10,"stop":["x"],
                    "tool_choice":{"type":"function","function":{"name":"f"}},
                    "system":"looks like claude"}),
                InboundFormat::OpenAi,
            ),
            (
                json!({"anthropic_version":"bedrock-2023-05-31","messages":[],"max_tokens":1}),
                InboundFormat::BedrockClaude,
            ),
            (
                json!({"anthropic_version":"x","inputText":"both"}),
                InboundFormat::BedrockClaude,
            ),
            (
                json!({"inputText":"hi","model":"amazon.titan-text-express-v1","messages":[]}),
                InboundFormat::BedrockTitan,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(detect(body.clone()).unwrap(), want, "{body}");
        }
    }

    #[test]
    fn shape_errors() {
        let e = detect(json!({"messages":[]})).unwrap_err();
        assert_eq!((e.status().as_u16(), e.param()), (400, Some("model")));
        let e = detect(json!({"model":"gpt-4o"})).unwrap_err();
        assert_eq!(e.param(), Some("messages"));
        let e = detect(json!({"prompt":"hi"})).unwrap_err();
        assert!(
            e.message().contains("OpenAI")
                && e.message().contains("Claude")
                && e.message().contains("Titan")
        );
    }

    #[test]
    fn target_format_query() {
        assert_eq!(target_format(None).unwrap(), TargetFormat::OpenAi);
        assert_eq!(
            target_format(Some("a=1&target_format=bedrock_claude")).unwrap(),
            TargetFormat::BedrockClaude
        );
        assert_eq!(
            target_format(Some("target_format=bedrock_titan")).unwrap(),
            TargetFormat::BedrockTitan
        );
        assert_eq!(
            target_format(Some(
                "target_format=bedrock_titan&target_format=bedrock_titan"
            ))
            .unwrap(),
            TargetFormat::BedrockTitan
        );
        let e =
            target_format(Some("target_format=openai&target_format=bedrock_claude")).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("target_format"))
        );
        let e = target_format(Some("target_format=xml")).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("target_format"))
        );
    }

    #[test]
    fn the_chat_classifier_reads_the_query_and_the_markers() {
        let head = |uri: &str| http::Request::post(uri).body(()).unwrap().into_parts().0;
        let body = json!({"anthropic_version":"v","messages":[]});
        let c = ChatClassifier
            .classify(
                &head("/v1/chat/completions?target_format=bedrock_titan"),
                &BodyHead::of(body.as_object().unwrap()),
            )
            .unwrap();
        assert_eq!(
            (c.inbound, c.reply),
            (InboundFormat::BedrockClaude, ReplyFormat::Titan)
        );
        assert_eq!(
            ChatClassifier.dialect(&head("/x?target_format=bedrock_claude")),
            ErrorDialect::Anthropic
        );
        assert_eq!(
            ChatClassifier.dialect(&head("/x?target_format=nope")),
            ErrorDialect::OpenAi
        );
    }
}
