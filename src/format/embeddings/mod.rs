//! Embeddings, both directions: the OpenAI `/v1/embeddings` body on the client side, and the
//! bodies of the Bedrock embedding models on the upstream side (OpenAI-compatible upstreams take
//! the canonical request as it serializes).
//!
//! - **Client request** ([`decode_client_request`]): `input` (a string or a list of non-empty
//!   strings), `model`, `dimensions` (≥ 1), `encoding_format` (`float` or `base64`), `user`; any
//!   other member is kept for the upstream (Bedrock reads `input_type`, `truncate`,
//!   `embedding_types` and `normalize` from there). Token-id arrays are a 400: no Bedrock model
//!   reads them.
//! - **Client reply** ([`encode_client_response`]): the canonical response, each vector as floats
//!   or, for `encoding_format: "base64"`, as the base64 of its little-endian float32 bytes — what
//!   OpenAI sends and what its SDKs decode.
//! - **Upstream request** ([`EmbeddingModel`], [`titan_body`], [`cohere_body`]): Titan takes one
//!   `inputText` per call (v2 also `dimensions` 256/512/1024 and `normalize`; v1 has no choice of
//!   dimensions); Cohere takes `texts` in batches of at most [`COHERE_MAX_BATCH`], with
//!   `input_type` (default `search_document`), `truncate`, `embedding_types` and, on v4,
//!   `output_dimension` 256/512/1024/1536. A `dimensions` the model cannot give is a 400 before
//!   any upstream call ([`EmbeddingModel::check`]).
//! - **Upstream reply** ([`decode_titan_reply`], [`decode_cohere_reply`]): the vectors and the
//!   input token count where the body has one.
//!
//! ```
//! use open_bedrock_server::format::embeddings::{decode_client_request, encode_client_response, EmbeddingModel};
//! use open_bedrock_server::model::EmbeddingsResponse;
//!
//! let req = decode_client_request(br#"{"model":"amazon.titan-embed-text-v2:0","input":["a","b"],
//!     "dimensions":256,"encoding_format":"base64"}"#).unwrap();
//! assert_eq!(req.texts().len(), 2);
//! let model = EmbeddingModel::of("amazon.titan-embed-text-v2:0").unwrap();
//! assert!(model.check(&req).is_ok());
//! assert_eq!(model.check(&decode_client_request(
//!     br#"{"model":"m","input":"a","dimensions":300}"#).unwrap()).unwrap_err().param(), Some("dimensions"));
//!
//! let reply = EmbeddingsResponse::new("m", vec![vec![1.0, -2.0]], 3);
//! let json: serde_json::Value = serde_json::from_slice(&encode_client_response(&reply, true)).unwrap();
//! // 1.0f32 and -2.0f32, little-endian, in base64.
//! assert_eq!(json["data"][0]["embedding"], "AACAPwAAAMA=");
//! assert_eq!(json["usage"]["prompt_tokens"], 3);
//! ```

mod client_reply;
mod client_request;
mod upstream_reply;
mod upstream_request;

pub use client_reply::{encode_client_response, vector_base64};
pub use client_request::decode_client_request;
pub use upstream_reply::{decode_cohere_reply, decode_titan_reply, CohereReply, TitanReply};
pub use upstream_request::{cohere_body, titan_body, EmbeddingModel, COHERE_MAX_BATCH};
