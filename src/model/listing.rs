//! The entries of `GET /v1/models`, whichever upstream listed them.

use serde::{Deserialize, Serialize};

/// One entry of an OpenAI `/v1/models` list: what the gateway answers, and what it reads from an
/// OpenAI-compatible upstream's list (Bedrock's listing is mapped into it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelObject {
    /// Model id.
    pub id: String,
    /// Always `model`.
    #[serde(default = "model_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Owner.
    #[serde(default)]
    pub owned_by: String,
}

impl ModelObject {
    /// The entry for model `id`, owned by `owned_by` (`created` unknown: 0).
    pub fn new(id: impl Into<String>, owned_by: impl Into<String>) -> Self {
        ModelObject {
            id: id.into(),
            object: model_object(),
            created: 0,
            owned_by: owned_by.into(),
        }
    }
}

fn model_object() -> String {
    "model".into()
}
