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
//! The route runs the same pipeline as every other (in-flight limit → [`auth`] (SigV4) → API-key
//! auth (Bearer / `x-api-key`) → rate limit → detect → translate → core); what is its own is the
//! SigV4 layer, the path parsing and its classifier, [`BedrockRuntimeClassifier`].
//!
//! ```
//! use open_bedrock_server::detect::{BodyHead, Classify};
//! use open_bedrock_server::format::{InboundFormat, ReplyFormat};
//! use open_bedrock_server::surface::bedrock_runtime::BedrockRuntimeClassifier;
//!
//! let head = |path: &str| http::Request::post(path).body(()).unwrap().into_parts().0;
//! let classify = |path: &str, body: serde_json::Value| {
//!     let body = BodyHead::parse(body.to_string().as_bytes()).unwrap();
//!     BedrockRuntimeClassifier.classify(&head(path), &body)
//! };
//!
//! // The model id is percent-decoded; a Claude body is answered as Claude.
//! let claude = serde_json::json!({"anthropic_version": "bedrock-2023-05-31", "messages": []});
//! let c = classify("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", claude).unwrap();
//! assert_eq!(c.model.as_deref(), Some("anthropic.claude-3-haiku-20240307-v1:0"));
//! assert_eq!((c.inbound, c.reply), (InboundFormat::BedrockClaude, ReplyFormat::BedrockInvokeClaude));
//! assert_eq!(c.stream, Some(false));
//!
//! let arn = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fabc/converse-stream";
//! let c = classify(arn, serde_json::json!({})).unwrap();
//! assert_eq!(c.model.as_deref(), Some("arn:aws:bedrock:us-east-1:1:application-inference-profile/abc"));
//! assert_eq!(c.stream, Some(true));
//!
//! // An operation the gateway does not serve is Bedrock's 404.
//! let err = classify("/model/m/count-tokens", serde_json::json!({})).unwrap_err();
//! assert_eq!(err.status(), 404);
//! ```

pub mod auth;

use http::request::Parts;

use crate::detect::{BodyHead, Classified, Classify};
use crate::error::{ErrorDialect, GatewayError};
use crate::format::{InboundFormat, ReplyFormat};

/// A Bedrock runtime operation the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
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
    pub(crate) fn is_stream(self) -> bool {
        matches!(self, Operation::InvokeStream | Operation::ConverseStream)
    }
}

/// Splits `/model/{modelId}/{operation}` into the decoded model id and the operation (`None` for
/// an operation the gateway does not serve); `None` when the path has no model label.
pub(crate) fn parse_path(path: &str) -> Option<(String, Option<Operation>)> {
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

fn unknown_operation(path: &str) -> GatewayError {
    GatewayError::not_found(&http::Method::POST, path).with_aws_type("UnknownOperationException")
}

/// The classifier of `POST /model/{modelId}/{operation}`: the model and streaming from the path,
/// the family of an invoke body from the body, Bedrock's replies and errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct BedrockRuntimeClassifier;

impl Classify for BedrockRuntimeClassifier {
    fn dialect(&self, _head: &Parts) -> ErrorDialect {
        ErrorDialect::Bedrock
    }

    fn classify(&self, head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        let path = head.uri.path();
        let Some((model, Some(op))) = parse_path(path) else {
            return Err(unknown_operation(path));
        };
        let (inbound, reply) = match op {
            Operation::Invoke | Operation::InvokeStream => {
                if body.has("anthropic_version")
                    || (body.has("messages")
                        && crate::route::bedrock_family(&model)
                            == Some(crate::route::BedrockFamily::Claude))
                {
                    (
                        InboundFormat::BedrockClaude,
                        ReplyFormat::BedrockInvokeClaude,
                    )
                } else if body.has("inputText") {
                    (InboundFormat::BedrockTitan, ReplyFormat::BedrockInvokeTitan)
                } else {
                    return Err(validation(
                        "Malformed input request: expected a Claude body (anthropic_version + messages) or a Titan body (inputText).",
                    ));
                }
            }
            Operation::Converse | Operation::ConverseStream => {
                (InboundFormat::Converse, ReplyFormat::BedrockConverse)
            }
        };
        Ok(Classified::new(inbound, reply)
            .with_model(model)
            .with_stream(op.is_stream()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

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

    fn classify(path: &str, body: Value) -> Result<Classified, GatewayError> {
        let head = http::Request::post(path).body(()).unwrap().into_parts().0;
        BedrockRuntimeClassifier.classify(&head, &BodyHead::of(body.as_object().unwrap()))
    }

    #[test]
    fn invoke_bodies_choose_their_family_from_the_body() {
        let claude = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]});
        let c = classify("/model/gpt-4o/invoke-with-response-stream", claude).unwrap();
        assert_eq!(
            (c.inbound, c.reply, c.model.as_deref(), c.stream),
            (
                InboundFormat::BedrockClaude,
                ReplyFormat::BedrockInvokeClaude,
                Some("gpt-4o"),
                Some(true)
            )
        );
        let c = classify(
            "/model/amazon.titan-text-express-v1/invoke",
            json!({"inputText": "User: hi\nBot:"}),
        )
        .unwrap();
        assert_eq!(
            (c.inbound, c.reply, c.stream),
            (
                InboundFormat::BedrockTitan,
                ReplyFormat::BedrockInvokeTitan,
                Some(false)
            )
        );
        // A Messages body without anthropic_version, to a Claude model, is Claude.
        let c = classify(
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
            json!({"messages": [], "max_tokens": 5}),
        )
        .unwrap();
        assert_eq!(c.inbound, InboundFormat::BedrockClaude);
        let e = classify("/model/gpt-4o/invoke", json!({"prompt": "hi"})).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("Malformed input request"));
        let e = classify("/model/gpt-4o/count-tokens", json!({})).unwrap_err();
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn converse_bodies_go_through_the_canonical_model() {
        let c = classify(
            "/model/gpt-4o/converse-stream",
            json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}),
        )
        .unwrap();
        assert_eq!(
            (c.inbound, c.reply, c.stream),
            (
                InboundFormat::Converse,
                ReplyFormat::BedrockConverse,
                Some(true)
            )
        );
    }
}
