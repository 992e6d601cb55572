//! The embeddings operation: OpenAI's `/v1/embeddings` request and response as the canonical
//! types, and the typed core's [`EmbeddingsCall`] beside [`ChatCall`](super::ChatCall).
//!
//! The typed core serves two operations with one stack: the same retry policy, upstream
//! deadline, dispatch by model and named providers implement `Service<EmbeddingsCall>` as well as
//! `Service<ChatCall>` (see [`crate::provider`]). An embeddings reply is always complete, so it is
//! the response itself ([`EmbeddingsResponse`]) rather than a complete-or-stream enum.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Call, CallRequest};

/// An OpenAI embeddings request (`POST /v1/embeddings`). Unknown members are kept in `extra`
/// (forwarded to OpenAI-compatible upstreams; Bedrock reads its own extensions from them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsRequest {
    /// The model id.
    pub model: String,
    /// What to embed: one string or a list of strings.
    pub input: EmbeddingInput,
    /// The number of dimensions of each vector, where the model can choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// `float` (default) or `base64` (little-endian float32, as OpenAI writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// An end-user id, forwarded to OpenAI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    /// A request embedding `input` with `model`.
    pub fn new(model: impl Into<String>, input: impl Into<EmbeddingInput>) -> Self {
        EmbeddingsRequest {
            model: model.into(),
            input: input.into(),
            ..EmbeddingsRequest::default()
        }
    }

    /// The texts to embed, in order.
    pub fn texts(&self) -> &[String] {
        match &self.input {
            EmbeddingInput::One(s) => std::slice::from_ref(s),
            EmbeddingInput::Many(v) => v,
        }
    }

    /// Whether the client asked for base64-encoded vectors.
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }
}

/// `input`: a string or a list of strings. (Token-id arrays, which OpenAI also takes, are refused
/// by validation with a clear 400: no Bedrock model reads them.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    One(String),
    /// Several texts, embedded in order.
    Many(Vec<String>),
}

impl Default for EmbeddingInput {
    fn default() -> Self {
        EmbeddingInput::Many(Vec::new())
    }
}

impl From<&str> for EmbeddingInput {
    fn from(s: &str) -> Self {
        EmbeddingInput::One(s.to_owned())
    }
}

impl From<String> for EmbeddingInput {
    fn from(s: String) -> Self {
        EmbeddingInput::One(s)
    }
}

impl From<Vec<String>> for EmbeddingInput {
    fn from(v: Vec<String>) -> Self {
        EmbeddingInput::Many(v)
    }
}

/// An OpenAI embeddings response (`"object": "list"`), vectors as floats (the client's
/// `encoding_format` is applied when it is written, [`crate::format::embeddings`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsResponse {
    /// Always `list`.
    #[serde(default = "list")]
    pub object: String,
    /// One vector per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Token usage, summed over every upstream call.
    #[serde(default)]
    pub usage: EmbeddingsUsage,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn list() -> String {
    "list".into()
}

impl EmbeddingsResponse {
    /// A response of `vectors` (in input order) from `model`, with `prompt_tokens` of usage.
    pub fn new(model: impl Into<String>, vectors: Vec<Vec<f32>>, prompt_tokens: u64) -> Self {
        EmbeddingsResponse {
            object: list(),
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(i, v)| Embedding::new(i as u32, v))
                .collect(),
            model: model.into(),
            usage: EmbeddingsUsage::new(prompt_tokens),
            extra: Map::new(),
        }
    }
}

/// One vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Embedding {
    /// Always `embedding`.
    #[serde(default = "embedding")]
    pub object: String,
    /// The position of its input.
    pub index: u32,
    /// The vector. Read from floats or from OpenAI's base64 (little-endian float32), so an
    /// upstream answering either way decodes to the same vector.
    #[serde(deserialize_with = "floats_or_base64")]
    pub embedding: Vec<f32>,
}

fn floats_or_base64<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<f32>, D::Error> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Floats(Vec<f32>),
        Base64(String),
    }
    match Wire::deserialize(de)? {
        Wire::Floats(v) => Ok(v),
        Wire::Base64(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom)?;
            if bytes.len() % 4 != 0 {
                return Err(serde::de::Error::custom(
                    "a base64 embedding is not a whole number of float32 values",
                ));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
    }
}

fn embedding() -> String {
    "embedding".into()
}

impl Embedding {
    /// The vector of input `index`.
    pub fn new(index: u32, embedding: Vec<f32>) -> Self {
        Embedding {
            object: "embedding".into(),
            index,
            embedding,
        }
    }
}

/// Embeddings usage: input tokens only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbeddingsUsage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// The same (embeddings produce no output tokens).
    #[serde(default)]
    pub total_tokens: u64,
}

impl EmbeddingsUsage {
    /// `prompt_tokens` of input.
    pub fn new(prompt_tokens: u64) -> Self {
        EmbeddingsUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        }
    }
}

/// One embeddings call through the typed core (see [`Call`]).
pub type EmbeddingsCall = Call<EmbeddingsRequest>;

impl CallRequest for EmbeddingsRequest {
    fn model(&self) -> &str {
        &self.model
    }
    /// An embeddings reply is always complete.
    fn streams(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_a_string_or_a_list_and_unknown_fields_survive() {
        let r: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"m","input":"hi","input_type":"search_query"}"#)
                .unwrap();
        assert_eq!(r.texts(), ["hi".to_owned()]);
        assert_eq!(r.extra["input_type"], "search_query");
        let r: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"m","input":["a","b"],"dimensions":256}"#).unwrap();
        assert_eq!(r.texts().len(), 2);
        assert_eq!(serde_json::to_value(&r).unwrap()["dimensions"], 256);
    }

    #[test]
    fn an_upstream_vector_reads_from_floats_or_base64() {
        let floats: Embedding =
            serde_json::from_str(r#"{"object":"embedding","index":0,"embedding":[1.0,-2.0]}"#)
                .unwrap();
        let b64: Embedding =
            serde_json::from_str(r#"{"object":"embedding","index":0,"embedding":"AACAPwAAAMA="}"#)
                .unwrap();
        assert_eq!(floats, b64);
        assert!(serde_json::from_str::<Embedding>(r#"{"index":0,"embedding":"AAA="}"#).is_err());
    }
}
