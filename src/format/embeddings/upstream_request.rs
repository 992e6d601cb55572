//! The canonical embeddings request → the bodies of the Bedrock embedding models.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::model::EmbeddingsRequest;

/// The most texts Cohere embeds in one call.
pub const COHERE_MAX_BATCH: usize = 96;

/// A Bedrock embedding model, by the shape of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbeddingModel {
    /// `amazon.titan-embed-text-v1` (and other Titan embedding models but v2): `inputText` only,
    /// one text per call, a fixed size.
    TitanV1,
    /// `amazon.titan-embed-text-v2:0`: `inputText`, `dimensions` 256/512/1024, `normalize`.
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`: `texts` (≤ 96), 1024 floats.
    CohereV3,
    /// `cohere.embed-v4:0`: `texts` (≤ 96), `output_dimension` 256/512/1024/1536.
    CohereV4,
}

impl EmbeddingModel {
    /// The model a Bedrock id (foundation model, inference profile or an ARN naming one) is, if
    /// it is an embedding model the gateway can call.
    pub fn of(model: &str) -> Option<Self> {
        let id = model.rsplit('/').next().unwrap_or(model);
        if id.contains("titan-embed-text-v2") {
            Some(EmbeddingModel::TitanV2)
        } else if id.contains("titan-embed") {
            Some(EmbeddingModel::TitanV1)
        } else if id.contains("cohere.embed-v4") {
            Some(EmbeddingModel::CohereV4)
        } else if id.contains("cohere.embed") {
            Some(EmbeddingModel::CohereV3)
        } else {
            None
        }
    }

    /// Whether the model takes one text per call (Titan) rather than batches (Cohere).
    pub fn one_text_per_call(self) -> bool {
        matches!(self, EmbeddingModel::TitanV1 | EmbeddingModel::TitanV2)
    }

    /// The `dimensions` the model can give (`None`: only its fixed size, and then `dimensions`
    /// must equal it).
    fn dimensions(self) -> (&'static [u32], Option<u32>) {
        match self {
            EmbeddingModel::TitanV1 => (&[], Some(1536)),
            EmbeddingModel::TitanV2 => (&[256, 512, 1024], None),
            EmbeddingModel::CohereV3 => (&[], Some(1024)),
            EmbeddingModel::CohereV4 => (&[256, 512, 1024, 1536], None),
        }
    }

    /// Checks what the model cannot do before any upstream call: a `dimensions` it cannot give,
    /// and extension fields of the wrong type. A 400 naming the `param`.
    pub fn check(self, request: &EmbeddingsRequest) -> Result<(), GatewayError> {
        if let Some(d) = request.dimensions {
            let (choices, fixed) = self.dimensions();
            let ok = choices.contains(&d) || fixed == Some(d);
            if !ok {
                let can = if choices.is_empty() {
                    format!("only {}", fixed.unwrap_or_default())
                } else {
                    choices
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(GatewayError::unsupported(
                    "dimensions",
                    format!(
                        "The model `{}` cannot return {d} dimensions (it can return: {can}).",
                        request.model
                    ),
                )
                .with_code("unsupported_value"));
            }
        }
        let extra = &request.extra;
        let string = |name: &str, allowed: &[&str]| -> Result<(), GatewayError> {
            match extra.get(name) {
                None | Some(Value::Null) => Ok(()),
                Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
                Some(_) => Err(GatewayError::invalid_request(format!(
                    "'{name}' must be one of: {}.",
                    allowed.join(", ")
                ))
                .with_param(name.to_owned())
                .with_code("invalid_value")),
            }
        };
        match self {
            EmbeddingModel::TitanV1 | EmbeddingModel::TitanV2 => {
                if extra.get("normalize").is_some_and(|v| !v.is_boolean()) {
                    return Err(
                        GatewayError::invalid_request("'normalize' must be a boolean.")
                            .with_param("normalize")
                            .with_code("invalid_type"),
                    );
                }
                if self == EmbeddingModel::TitanV1 && extra.contains_key("normalize") {
                    return Err(GatewayError::unsupported(
                        "normalize",
                        "Titan Embeddings v1 always normalizes; 'normalize' is for v2.",
                    ));
                }
            }
            EmbeddingModel::CohereV3 | EmbeddingModel::CohereV4 => {
                string(
                    "input_type",
                    &[
                        "search_document",
                        "search_query",
                        "classification",
                        "clustering",
                    ],
                )?;
                let truncate: &[&str] = if self == EmbeddingModel::CohereV4 {
                    &["NONE", "LEFT", "RIGHT"]
                } else {
                    &["NONE", "START", "END"]
                };
                string("truncate", truncate)?;
                match extra.get("embedding_types") {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(types))
                        if !types.is_empty()
                            && types.iter().all(|t| {
                                matches!(
                                    t.as_str(),
                                    Some("float" | "int8" | "uint8" | "binary" | "ubinary")
                                )
                            }) =>
                    {
                        if request.wants_base64() && !types.iter().any(|t| t == "float") {
                            return Err(GatewayError::unsupported(
                                "encoding_format",
                                "base64 encodes float vectors; add \"float\" to embedding_types.",
                            ));
                        }
                    }
                    Some(_) => {
                        return Err(GatewayError::invalid_request(
                            "'embedding_types' must be a non-empty list of: float, int8, uint8, binary, ubinary.",
                        )
                        .with_param("embedding_types")
                        .with_code("invalid_value"))
                    }
                }
            }
        }
        Ok(())
    }
}

/// The Titan body for one `text`: `inputText`, plus `dimensions` and `normalize` on v2 when the
/// client set them.
pub fn titan_body(model: EmbeddingModel, request: &EmbeddingsRequest, text: &str) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("inputText".into(), Value::from(text));
    if model == EmbeddingModel::TitanV2 {
        if let Some(d) = request.dimensions {
            body.insert("dimensions".into(), Value::from(d));
        }
        if let Some(n) = request.extra.get("normalize") {
            body.insert("normalize".into(), n.clone());
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The Cohere body for one batch of `texts` (at most [`COHERE_MAX_BATCH`]): `input_type`
/// (the client's, else `search_document`), `truncate` and `embedding_types` when set, and on v4
/// `output_dimension` from `dimensions`.
pub fn cohere_body(
    model: EmbeddingModel,
    request: &EmbeddingsRequest,
    texts: &[String],
) -> Vec<u8> {
    let extra = &request.extra;
    let mut body = Map::new();
    body.insert("texts".into(), json!(texts));
    body.insert(
        "input_type".into(),
        extra
            .get("input_type")
            .filter(|v| v.is_string())
            .cloned()
            .unwrap_or_else(|| Value::from("search_document")),
    );
    for key in ["truncate", "embedding_types"] {
        if let Some(v) = extra.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    if model == EmbeddingModel::CohereV4 {
        if let Some(d) = request.dimensions {
            body.insert("output_dimension".into(), Value::from(d));
        }
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> EmbeddingsRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn models_by_id() {
        for (id, want) in [
            (
                "amazon.titan-embed-text-v2:0",
                Some(EmbeddingModel::TitanV2),
            ),
            ("amazon.titan-embed-text-v1", Some(EmbeddingModel::TitanV1)),
            (
                "us.amazon.titan-embed-text-v2:0",
                Some(EmbeddingModel::TitanV2),
            ),
            ("cohere.embed-english-v3", Some(EmbeddingModel::CohereV3)),
            (
                "cohere.embed-multilingual-v3",
                Some(EmbeddingModel::CohereV3),
            ),
            ("cohere.embed-v4:0", Some(EmbeddingModel::CohereV4)),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-v4:0",
                Some(EmbeddingModel::CohereV4),
            ),
            ("cohere.command-r-v1:0", None),
        ] {
            assert_eq!(EmbeddingModel::of(id), want, "{id}");
        }
    }

    #[test]
    fn dimensions_per_model() {
        let r = |d: u32| request(json!({"model": "m", "input": "a", "dimensions": d}));
        assert!(EmbeddingModel::TitanV2.check(&r(512)).is_ok());
        assert!(EmbeddingModel::TitanV2.check(&r(1536)).is_err());
        assert!(EmbeddingModel::TitanV1.check(&r(1536)).is_ok());
        assert!(EmbeddingModel::TitanV1.check(&r(256)).is_err());
        assert!(EmbeddingModel::CohereV3.check(&r(1024)).is_ok());
        assert!(EmbeddingModel::CohereV3.check(&r(512)).is_err());
        assert!(EmbeddingModel::CohereV4.check(&r(1536)).is_ok());
        let e = EmbeddingModel::CohereV4.check(&r(100)).unwrap_err();
        assert_eq!((e.status().as_u16(), e.param()), (400, Some("dimensions")));
        assert!(
            e.message().contains("256, 512, 1024, 1536"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn bodies() {
        let r = request(json!({"model": "m", "input": ["a", "b"], "dimensions": 256,
            "normalize": false, "input_type": "search_query", "truncate": "END"}));
        let titan: Value =
            serde_json::from_slice(&titan_body(EmbeddingModel::TitanV2, &r, "a")).unwrap();
        assert_eq!(
            titan,
            json!({"inputText": "a", "dimensions": 256, "normalize": false})
        );
        let v1: Value =
            serde_json::from_slice(&titan_body(EmbeddingModel::TitanV1, &r, "a")).unwrap();
        assert_eq!(v1, json!({"inputText": "a"}));
        let cohere: Value = serde_json::from_slice(&cohere_body(
            EmbeddingModel::CohereV3,
            &r,
            &["a".into(), "b".into()],
        ))
        .unwrap();
        assert_eq!(
            cohere,
            json!({"texts": ["a", "b"], "input_type": "search_query", "truncate": "END"})
        );
        let plain = request(json!({"model": "m", "input": "a", "dimensions": 512}));
        let v4: Value = serde_json::from_slice(&cohere_body(
            EmbeddingModel::CohereV4,
            &plain,
            &["a".into()],
        ))
        .unwrap();
        assert_eq!(
            v4,
            json!({"texts": ["a"], "input_type": "search_document", "output_dimension": 512})
        );
        let bad = request(json!({"model": "m", "input": "a", "input_type": "query"}));
        assert_eq!(
            EmbeddingModel::CohereV3.check(&bad).unwrap_err().param(),
            Some("input_type")
        );
    }
}
