//! Format detection: the stage that reads the request body once, parses the JSON once, and records
//! which dialect the client wrote ([`InboundFormat`]) and which it reads ([`TargetFormat`]).
//!
//! The rules are a pure function, [`detect_format`], with a fixed priority:
//! 1. `anthropic_version` present → Bedrock Claude;
//! 2. `inputText` present → Bedrock Titan;
//! 3. `model` and `messages` → OpenAI.
//!
//! Only those marker keys decide, so a valid OpenAI request is never misread as Claude because it
//! also has `max_tokens`, `stop` or an object `tool_choice`. A body with `messages` but no `model` is a
//! 400 with `param: "model"`; any other shape is a 400 that names the three accepted formats.
//!
//! The layer ([`DetectLayer`]) enforces the body limit (413 from `Content-Length` before anything is
//! read, or as soon as the stream passes the limit), then hands the inner service a
//! `Request<DetectedRequest>`: the parsed top-level JSON object plus both formats. Translation, or any
//! service of the user's own, takes it from there.
//!
//! ```
//! use open_bedrock_server::detect::detect_format;
//! use open_bedrock_server::format::InboundFormat;
//!
//! let body = serde_json::json!({"model":"gpt-4o","messages":[],"max_tokens":5,
//!     "tool_choice":{"type":"function","function":{"name":"f"}}});
//! assert_eq!(detect_format(body.as_object().unwrap()).unwrap(), InboundFormat::OpenAi);
//! let body = serde_json::json!({"anthropic_version":"bedrock-2023-05-31","messages":[]});
//! assert_eq!(detect_format(body.as_object().unwrap()).unwrap(), InboundFormat::BedrockClaude);
//! ```

mod service;

pub use service::{Detect, DetectLayer, ResponseFuture, DEFAULT_BODY_READ_TIMEOUT};

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::format::{InboundFormat, TargetFormat};

/// The request body after detection: the parsed JSON object and both formats.
#[derive(Debug, Clone)]
pub struct DetectedRequest {
    /// The dialect the client wrote.
    pub inbound: InboundFormat,
    /// The dialect the client reads.
    pub target: TargetFormat,
    /// The parsed top-level JSON object.
    pub body: Map<String, Value>,
}

/// 413 when a declared `Content-Length` is over `limit`: refused before anything is read.
pub(crate) fn check_declared_length(
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<(), GatewayError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::payload_too_large(limit));
    }
    Ok(())
}

/// The error for a body read under `limit` that failed: 413 past the limit, else 400.
pub(crate) fn body_read_error(e: &crate::body::BoxError, limit: usize) -> GatewayError {
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

/// Reads a whole body under `limit` within `timeout` (the native surfaces; detection does the same
/// inside its own future to avoid a boxed future per request).
pub(crate) async fn read_bounded<B>(
    body: B,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    use http_body_util::BodyExt;
    match tokio::time::timeout(timeout, http_body_util::Limited::new(body, limit).collect()).await {
        Err(_) => Err(body_timeout_error()),
        Ok(Err(e)) => Err(body_read_error(&e, limit)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Decides the inbound format of a parsed body.
pub fn detect_format(body: &Map<String, Value>) -> Result<InboundFormat, GatewayError> {
    if body.contains_key("anthropic_version") {
        return Ok(InboundFormat::BedrockClaude);
    }
    if body.contains_key("inputText") {
        return Ok(InboundFormat::BedrockTitan);
    }
    match (body.contains_key("model"), body.contains_key("messages")) {
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

/// Reads `target_format` from a query string (default OpenAI); an unknown value is a 400.
pub fn target_format(query: Option<&str>) -> Result<TargetFormat, GatewayError> {
    let Some(query) = query else {
        return Ok(TargetFormat::OpenAi);
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "target_format" {
            return TargetFormat::parse(v).ok_or_else(|| {
                GatewayError::invalid_request(format!(
                    "Invalid target_format `{v}`. Accepted values: {}.",
                    TargetFormat::ACCEPTED
                ))
                .with_param("target_format")
                .with_code("invalid_value")
            });
        }
    }
    Ok(TargetFormat::OpenAi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detect(v: Value) -> Result<InboundFormat, GatewayError> {
        detect_format(v.as_object().unwrap())
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
        let e = target_format(Some("target_format=xml")).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("target_format"))
        );
    }
}
