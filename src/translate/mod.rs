//! Translation: the adapter between the HTTP shell and the typed core.
//!
//! [`TranslateLayer`] takes the `Request<DetectedRequest>` that [detection](crate::detect) produced,
//! decodes it from its inbound format into the canonical [`ChatRequest`] (keeping the client's own
//! object for lossless native pass-through), calls the typed core with a [`ChatCall`], and encodes the
//! [`ChatReply`] in the target format — a JSON body, or an SSE body that flushes every event as it
//! comes. Errors from decoding or from the core are rendered here, in the target format's error
//! dialect, so the service's own error type is `Infallible`.
//!
//! The pure halves are public on their own: [`decode_request`] and [`encode_complete`].
//!
//! [`ChatRequest`]: crate::model::ChatRequest
//! [`ChatCall`]: crate::model::ChatCall
//! [`ChatReply`]: crate::model::ChatReply

mod service;

pub use service::{ResponseFuture, Translate, TranslateLayer};

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::detect::DetectedRequest;
use crate::error::GatewayError;
use crate::format::{bedrock_claude, bedrock_titan, InboundFormat, TargetFormat};
use crate::model::{ChatRequest, ChatResponse, OriginalBody};

/// Decodes a detected body into the canonical request, keeping native bodies for pass-through.
pub fn decode_request(
    detected: DetectedRequest,
) -> Result<(ChatRequest, Option<OriginalBody>), GatewayError> {
    let DetectedRequest { inbound, body, .. } = detected;
    let (request, original) = match inbound {
        InboundFormat::OpenAi => {
            let request: ChatRequest =
                serde_json::from_value(Value::Object(body)).map_err(openai_decode_error)?;
            (request, None)
        }
        InboundFormat::BedrockClaude => {
            let request = bedrock_claude::decode_client_request(&body)?;
            (
                request,
                Some(OriginalBody {
                    format: inbound,
                    json: Arc::new(body),
                }),
            )
        }
        InboundFormat::BedrockTitan => {
            let request = bedrock_titan::decode_client_request(&body)?;
            (
                request,
                Some(OriginalBody {
                    format: inbound,
                    json: Arc::new(body),
                }),
            )
        }
    };
    if request.model.trim().is_empty() {
        return Err(GatewayError::missing_field("model"));
    }
    if request.messages.is_empty() {
        return Err(
            GatewayError::invalid_request("'messages' must contain at least one message.")
                .with_param("messages")
                .with_code("empty_array"),
        );
    }
    Ok((request, original))
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

/// Encodes a complete reply in the target format.
pub fn encode_complete(response: &ChatResponse, target: TargetFormat) -> Bytes {
    let bytes = match target {
        TargetFormat::OpenAi => serde_json::to_vec(response),
        TargetFormat::BedrockClaude => {
            serde_json::to_vec(&bedrock_claude::encode_client_response(response))
        }
        TargetFormat::BedrockTitan => {
            serde_json::to_vec(&bedrock_titan::encode_client_response(response))
        }
    };
    // Serializing our own types into memory cannot fail.
    Bytes::from(bytes.unwrap_or_default())
}
