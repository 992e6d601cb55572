//! The OpenAI endpoints beside chat completions: `POST /v1/embeddings` and `POST /v1/responses`.
//!
//! Both run the one ingress pipeline (in-flight limit → auth → rate limit → detect → translate →
//! the typed core); what is theirs here is the classifier that says how a body is read and
//! answered. Embeddings are the core's second operation ([`EmbeddingsCall`](crate::model::EmbeddingsCall));
//! a Responses request is a chat call written and answered in the Responses dialect
//! ([`crate::format::responses`]).
//!
//! ```
//! use open_bedrock_server::detect::{BodyHead, Classify};
//! use open_bedrock_server::format::{InboundFormat, ReplyFormat};
//! use open_bedrock_server::surface::openai::EmbeddingsClassifier;
//!
//! let (head, ()) = http::Request::post("/v1/embeddings").body(()).unwrap().into_parts();
//! let body = BodyHead::parse(br#"{"model":"amazon.titan-embed-text-v2:0","input":"hi"}"#).unwrap();
//! let classified = EmbeddingsClassifier.classify(&head, &body).unwrap();
//! assert_eq!((classified.inbound, classified.reply), (InboundFormat::Embeddings, ReplyFormat::Embeddings));
//! assert_eq!(classified.stream, Some(false), "embeddings never stream");
//! let empty = BodyHead::parse(br#"{"input":"hi"}"#).unwrap();
//! assert_eq!(EmbeddingsClassifier.classify(&head, &empty).unwrap_err().param(), Some("model"));
//! ```

use http::request::Parts;

use crate::detect::{BodyHead, Classified, Classify};
use crate::error::{ErrorDialect, GatewayError};
use crate::format::{InboundFormat, ReplyFormat};

/// The classifier of `POST /v1/embeddings`: an embeddings body in, an embeddings list out, never
/// streamed; `model` must be there (`input` and the rest are checked when the body is decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbeddingsClassifier;

impl Classify for EmbeddingsClassifier {
    fn dialect(&self, _head: &Parts) -> ErrorDialect {
        ErrorDialect::OpenAi
    }

    fn classify(&self, _head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        if !body.has("model") {
            return Err(GatewayError::missing_field("model"));
        }
        Ok(Classified::new(InboundFormat::Embeddings, ReplyFormat::Embeddings).with_stream(false))
    }
}

/// The classifier of `POST /v1/responses`: a Responses body in, a Response object or its typed
/// event stream out; `model` must be there (`input` may be omitted when a stored conversation is
/// continued).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponsesClassifier;

impl Classify for ResponsesClassifier {
    fn dialect(&self, _head: &Parts) -> ErrorDialect {
        ErrorDialect::OpenAi
    }

    fn classify(&self, _head: &Parts, body: &BodyHead) -> Result<Classified, GatewayError> {
        if !body.has("model") {
            return Err(GatewayError::missing_field("model"));
        }
        Ok(Classified::new(
            InboundFormat::Responses,
            ReplyFormat::Responses,
        ))
    }
}
