//! Translation: the adapter between the HTTP shell and the typed core.
//!
//! [`TranslateLayer`] takes the `Request<DetectedRequest>` that [detection](crate::detect)
//! produced, decodes it from its inbound format into the canonical [`ChatRequest`] (keeping the
//! client's own object for lossless native pass-through), calls the typed core with a
//! [`ChatCall`], and writes the [`ChatReply`] as the classifier's [`ReplyFormat`] says — a JSON
//! body, or a streamed body whose events are framed for the wire (SSE or AWS event-stream) and
//! flushed as they come. Errors from decoding or from the core are rendered here, in the reply's
//! error dialect, so the service's own error type is `Infallible`.
//!
//! The pure halves are public on their own: [`decode_request`] and [`encode_complete`].
//!
//! ```
//! use open_bedrock_server::detect::{Classified, DetectedRequest};
//! use open_bedrock_server::format::{InboundFormat, ReplyFormat};
//! use open_bedrock_server::translate::decode_request;
//!
//! // A Claude body as `/v1/messages` receives it: no `anthropic_version` (the Anthropic API sends
//! // it as a header), so Bedrock's is added for pass-through.
//! let body = br#"{"model": "gpt-4o", "max_tokens": 50,
//!     "messages": [{"role": "user", "content": "Hi"}]}"#;
//! let detected = DetectedRequest::new(
//!     Classified::new(InboundFormat::BedrockClaude, ReplyFormat::Claude),
//!     &body[..],
//! );
//! let (request, original) = decode_request(detected).unwrap();
//! assert_eq!((request.model.as_str(), request.max_tokens), ("gpt-4o", Some(50)));
//! assert_eq!(original.unwrap().json["anthropic_version"], "bedrock-2023-05-31");
//! ```
//!
//! [`ChatRequest`]: crate::model::ChatRequest
//! [`ChatCall`]: crate::model::ChatCall
//! [`ChatReply`]: crate::model::ChatReply
//! [`ReplyFormat`]: crate::format::ReplyFormat

mod reply;
mod service;

#[cfg(feature = "bedrock")]
pub(crate) use reply::relays;
pub use reply::{encode_complete, CompleteReply};
pub use service::{ResponseFuture, Translate, TranslateLayer};

use std::sync::Arc;

use serde::Deserialize as _;
use serde_json::Value;

use crate::detect::DetectedRequest;
use crate::error::GatewayError;
use crate::format::bedrock_claude::ANTHROPIC_VERSION;
use crate::format::{bedrock_claude, bedrock_titan, converse, InboundFormat};
use crate::model::{ChatRequest, OriginalBody};

/// Decodes a detected body into the canonical request, keeping native bodies for pass-through.
///
/// A path-given model and streaming ([`DetectedRequest::model`], [`DetectedRequest::stream`])
/// win over the body's. The request's [`usage_hooks`](DetectedRequest::usage_hooks) are not
/// part of the decoded request: a caller that runs them takes them out first. A Claude body
/// without `anthropic_version` gets Bedrock's, so it can be forwarded to Claude on Bedrock as
/// written.
///
/// An OpenAI body is taken as detection decoded it ([`DetectedRequest::decoded`]), else decoded
/// from its text straight into the typed [`ChatRequest`]; the native bodies (Claude, Titan,
/// Converse) are read as their top-level object, whose size detection bounded
/// ([`BodyHead`](crate::detect::BodyHead)'s value budget). The decoded request is then
/// checked strictly ([`crate::validate`]) before anything is routed.
pub fn decode_request(
    detected: DetectedRequest,
) -> Result<(ChatRequest, Option<OriginalBody>), GatewayError> {
    let (request, original) = decode_shared(detected)?;
    Ok((Arc::unwrap_or_clone(request), original))
}

/// [`decode_request`], the request shared: one detection decoded stays where it was put (no copy
/// out and into the call's `Arc`, no second heap block).
pub(crate) fn decode_shared(
    detected: DetectedRequest,
) -> Result<(Arc<ChatRequest>, Option<OriginalBody>), GatewayError> {
    let DetectedRequest {
        inbound,
        model,
        stream,
        body: bytes,
        decoded,
        ..
    } = detected;
    if inbound == InboundFormat::OpenAi {
        let mut shared = match decoded {
            // Detection decoded it (its one walk of a chat body).
            Some(request) => request,
            None => Arc::new(decode_openai(&bytes)?),
        };
        drop(bytes);
        if model.is_some() || stream.is_some() {
            // Not shared yet: changed in place.
            let request = Arc::make_mut(&mut shared);
            if let Some(model) = model {
                request.model = model;
            }
            if let Some(stream) = stream {
                request.stream = Some(stream);
            }
        }
        crate::validate::openai_request(&shared)?;
        return Ok((shared, None));
    }
    let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request body: {e}")))?;
    drop(bytes);
    crate::validate::native_body(inbound, &body)?;
    if matches!(
        inbound,
        InboundFormat::BedrockClaude | InboundFormat::BedrockTitan
    ) {
        // The path names the model and the operation decides streaming; the body says neither.
        if let Some(model) = &model {
            body.insert("model".into(), Value::String(model.clone()));
        }
        if let Some(stream) = stream {
            body.insert("stream".into(), Value::Bool(stream));
        }
    }
    let (request, original) = match inbound {
        InboundFormat::BedrockClaude => {
            body.entry("anthropic_version")
                .or_insert_with(|| Value::from(ANTHROPIC_VERSION));
            let request = bedrock_claude::decode_client_request(&body)?;
            (request, Some(original(inbound, body)))
        }
        InboundFormat::BedrockTitan => {
            let request = bedrock_titan::decode_client_request(&body)?;
            (request, Some(original(inbound, body)))
        }
        InboundFormat::Converse => {
            let model = model.ok_or_else(|| GatewayError::missing_field("model"))?;
            let request = converse::decode_client_request(&model, &body, stream.unwrap_or(false))?;
            (request, None)
        }
        // Whatever a newer classifier calls canonical.
        _ => {
            let mut request: ChatRequest =
                serde_json::from_value(Value::Object(body)).map_err(openai_decode_error)?;
            if let Some(model) = model {
                request.model = model;
            }
            if let Some(stream) = stream {
                request.stream = Some(stream);
            }
            (request, None)
        }
    };
    if request.model.trim().is_empty() {
        return Err(GatewayError::missing_field("model"));
    }
    crate::validate::canonical(&request)?;
    Ok((Arc::new(request), original))
}

/// An OpenAI body detection did not decode, from its bytes.
///
/// From text: one UTF-8 check of the whole body, where decoding from bytes checks each string
/// again (detection's scan has checked them already, so this one does not fail after it). The
/// body is read by a byte scan (`client_request::decode`: the request, its messages and tools,
/// serde only for a few rare members); what the scan leaves is decoded by serde alone, without
/// path tracking (which allocates a `String` per object key it passes): only a body that fails is
/// decoded again with it, for the error's `param`.
fn decode_openai(bytes: &[u8]) -> Result<ChatRequest, GatewayError> {
    let text = std::str::from_utf8(bytes).ok();
    let decoded = match (
        text.and_then(crate::format::openai::client_request::decode),
        text,
    ) {
        (Some(request), _) => Ok(request),
        (None, Some(text)) => {
            ChatRequest::deserialize(&mut serde_json::Deserializer::from_str(text))
        }
        (None, None) => ChatRequest::deserialize(&mut serde_json::Deserializer::from_slice(bytes)),
    };
    decoded.map_err(|_| {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, ChatRequest>(&mut de) {
            Err(e) => openai_path_error(e),
            Ok(_) => GatewayError::internal("the request body decoded on the second attempt only"),
        }
    })
}

fn original(format: InboundFormat, body: serde_json::Map<String, Value>) -> OriginalBody {
    OriginalBody {
        format,
        json: Arc::new(body),
    }
}

/// A typed-decoding error, naming the field where it happened (`messages[0].content`, `n`).
fn openai_path_error(e: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path.is_empty() || path == "." {
        return openai_decode_error(inner);
    }
    let message = inner.to_string();
    // "missing field `x`" inside an object names the member, not the object.
    let param = match message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        Some(field) => format!("{path}.{field}"),
        None => path,
    };
    GatewayError::invalid_request(format!("Invalid request body at '{param}': {message}"))
        .with_param(param)
        .with_code("invalid_type")
}

fn openai_decode_error(e: serde_json::Error) -> GatewayError {
    let msg = e.to_string();
    // serde names the field in its message ("missing field `model`", "unknown variant `robot`").
    let param = [
        "model",
        "messages",
        "role",
        "content",
        "tools",
        "tool_choice",
        "stop",
        "stream_options",
    ]
    .into_iter()
    .find(|p| msg.contains(&format!("`{p}`")));
    let mut err = GatewayError::invalid_request(format!("Invalid request body: {msg}"));
    if let Some(p) = param {
        err = err.with_param(p);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Classified;
    use crate::format::ReplyFormat;

    fn openai(body: &[u8]) -> Result<(ChatRequest, Option<OriginalBody>), GatewayError> {
        decode_request(DetectedRequest::new(
            Classified::new(InboundFormat::OpenAi, ReplyFormat::OpenAi),
            body.to_vec(),
        ))
    }

    /// A body decoded from its text (escapes, multi-byte characters) reads as from its bytes;
    /// a body that is not UTF-8, which detection would have refused, is still a 400 (decoded
    /// from its bytes then), never a panic.
    #[test]
    fn openai_bodies_decode_from_text_and_bytes_alike() {
        let body =
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"é \"q\" \n ✓ \u00e9"}]}"#;
        let (request, original) = openai(body.as_bytes()).unwrap();
        assert!(original.is_none());
        let from_bytes: ChatRequest = serde_json::from_slice(body.as_bytes()).unwrap();
        assert_eq!(request, from_bytes);
        let text = serde_json::to_value(&request.messages[0]).unwrap();
        assert_eq!(text["content"], "é \"q\" \n ✓ é");

        let mut bad = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}"#.to_vec();
        let x = bad.iter().position(|&b| b == b'x').unwrap();
        bad[x] = 0xff;
        let e = openai(&bad).unwrap_err();
        assert_eq!(e.status(), 400);
        let e = openai(br#"{"model":"gpt-4o","messages":[{"role":"robot"}]}"#).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("messages[0].role"))
        );
    }

    /// Translation's future lives inside the key policy's, inside detection's, inside the
    /// ingress stack's box, one per request: the Responses API's parts (the core until the call
    /// is prepared, the reply's context) are kept where they do not size every chat call's future
    /// (issue 18). 520 bytes when written, in a test build; 648 with the request's header map
    /// and extensions kept as room for the reply's (`reply::Room`).
    #[test]
    fn the_translate_future_is_kept_small() {
        let size = std::mem::size_of::<ResponseFuture<crate::gateway::Core>>();
        assert!(size <= 704, "translation's future is {size} bytes");
    }
}
