//! The canonical embeddings response → the client's JSON, vectors as floats or base64.

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

use crate::model::{EmbeddingsResponse, EmbeddingsUsage};

/// The base64 of `vector`'s little-endian float32 bytes: OpenAI's `encoding_format: "base64"`.
pub fn vector_base64(vector: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for v in vector {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Serialize)]
struct Base64Reply<'a> {
    object: &'a str,
    data: Vec<Base64Embedding<'a>>,
    model: &'a str,
    usage: &'a EmbeddingsUsage,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Base64Embedding<'a> {
    object: &'a str,
    index: u32,
    embedding: String,
}

/// The JSON body of `response`, with each vector base64-encoded when `base64` is set.
pub fn encode_client_response(response: &EmbeddingsResponse, base64: bool) -> Bytes {
    let json = if base64 {
        serde_json::to_vec(&Base64Reply {
            object: &response.object,
            data: response
                .data
                .iter()
                .map(|e| Base64Embedding {
                    object: &e.object,
                    index: e.index,
                    embedding: vector_base64(&e.embedding),
                })
                .collect(),
            model: &response.model,
            usage: &response.usage,
            extra: &response.extra,
        })
    } else {
        serde_json::to_vec(response)
    };
    // Serializing our own types into memory cannot fail.
    Bytes::from(json.unwrap_or_default())
}
