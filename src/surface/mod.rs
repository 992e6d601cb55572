//! Native client surfaces: the gateway speaking the APIs clients' SDKs already use, in front of
//! any provider, with the gateway's auth, limits, retries and metrics.
//!
//! | Route | Surface | Auth | Errors |
//! |---|---|---|---|
//! | `POST /model/{modelId}/invoke`, `…/invoke-with-response-stream`, `…/converse`, `…/converse-stream` | [`bedrock_runtime`] (boto3 `bedrock-runtime`, AWS SDKs) | SigV4 with a configured client credential, `Authorization: Bearer`, `x-api-key` | `{"message"}` + `x-amzn-ErrorType`; exception frames in streams |
//! | `POST /v1/messages`, `POST /anthropic/v1/messages` | [`anthropic`] (Anthropic SDKs) | `x-api-key`, `Authorization: Bearer` | Anthropic `{"type":"error",…}` |
//! | `POST /v1/embeddings`, `POST /v1/responses` | [`openai`] (OpenAI SDKs, LangChain) | `Authorization: Bearer`, `x-api-key` | OpenAI `{"error":{…}}` |
//!
//! All run the same pipeline as `/v1/chat/completions` (in-flight limit → auth → rate limit →
//! detect → translate → the typed core); this module holds only what is theirs: the classifiers
//! that say what their bodies are and how they are answered, the Bedrock path parsing, and SigV4
//! client auth. So a Claude body reaches `gpt-4o` and a Converse call reaches Claude on Bedrock; a
//! native body to a Bedrock model of its own family is forwarded as written.
//!
//! ```
//! use open_bedrock_server::detect::Classify;
//! use open_bedrock_server::format::{InboundFormat, ReplyFormat};
//! use open_bedrock_server::surface::bedrock_runtime::BedrockRuntimeClassifier;
//!
//! // A Converse call for an OpenAI model: Converse in, Converse out, the model from the path.
//! let (head, ()) = http::Request::post("/model/gpt-4o/converse").body(()).unwrap().into_parts();
//! let classified = BedrockRuntimeClassifier.classify(&head, &Default::default()).unwrap();
//! assert_eq!(classified.model.as_deref(), Some("gpt-4o"));
//! assert_eq!(
//!     (classified.inbound, classified.reply),
//!     (InboundFormat::Converse, ReplyFormat::BedrockConverse)
//! );
//! ```

pub mod anthropic;
pub mod bedrock_runtime;
pub mod openai;
