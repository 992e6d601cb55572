//! The Anthropic Messages surface: `POST /v1/messages` (and `/anthropic/v1/messages`) as the
//! Anthropic SDKs call it, in front of any provider.
//!
//! The Anthropic API is the Claude-on-Bedrock body with the version in an `anthropic-version`
//! header instead of an `anthropic_version` member, and the model in `model`. So this route is
//! the chat pipeline with one classifier: [`MessagesClassifier`] says Claude in, Claude out, and
//! Anthropic errors; [translation](crate::translate) adds Bedrock's `anthropic_version` to the
//! body, so a Claude model on Bedrock gets the body as written and any other model goes through
//! the canonical model. Auth takes `x-api-key` (what the SDK sends) or `Authorization: Bearer`.
//!
//! ```
//! use open_bedrock_server::detect::{BodyHead, Classify};
//! use open_bedrock_server::error::ErrorDialect;
//! use open_bedrock_server::format::{InboundFormat, ReplyFormat};
//! use open_bedrock_server::surface::anthropic::MessagesClassifier;
//!
//! let head = http::Request::post("/v1/messages").body(()).unwrap().into_parts().0;
//! let body = BodyHead::parse(br#"{"model": "gpt-4o", "max_tokens": 5, "messages": []}"#).unwrap();
//! let c = MessagesClassifier.classify(&head, &body).unwrap();
//! assert_eq!((c.inbound, c.reply), (InboundFormat::BedrockClaude, ReplyFormat::Claude));
//! assert_eq!(MessagesClassifier.dialect(&head), ErrorDialect::Anthropic);
//! ```

use http::request::Parts;

use crate::detect::{BodyHead, Classified, Classify};
use crate::error::{ErrorDialect, GatewayError};
use crate::format::{InboundFormat, ReplyFormat};

/// The classifier of `POST /v1/messages`: every body is Claude in, Claude out.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagesClassifier;

impl Classify for MessagesClassifier {
    fn dialect(&self, _head: &Parts) -> ErrorDialect {
        ErrorDialect::Anthropic
    }

    fn classify(&self, _head: &Parts, _body: &BodyHead) -> Result<Classified, GatewayError> {
        Ok(Classified::new(
            InboundFormat::BedrockClaude,
            ReplyFormat::Claude,
        ))
    }
}
