//! The replies of the Bedrock embedding models → vectors and token counts.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;

/// What one Titan call answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TitanReply {
    /// The vector.
    pub embedding: Vec<f32>,
    /// `inputTextTokenCount`.
    pub input_tokens: u64,
}

/// What one Cohere call answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CohereReply {
    /// One vector per text of the batch, in order.
    pub embeddings: Vec<Vec<f32>>,
    /// Input tokens, when the body says (`meta.billed_units.input_tokens`); Bedrock otherwise
    /// reports them in the `X-Amzn-Bedrock-Input-Token-Count` header.
    pub input_tokens: Option<u64>,
}

fn protocol(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::upstream_protocol(format!("The upstream returned an invalid {what}: {e}"))
}

/// Decodes a Titan embeddings body: `{"embedding": [...], "inputTextTokenCount": n}` (v2 may add
/// `embeddingsByType`; the float vector is read from `embedding`, else `embeddingsByType.float`).
pub fn decode_titan_reply(body: &[u8]) -> Result<TitanReply, GatewayError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        embedding: Option<Vec<f32>>,
        embeddings_by_type: Option<ByType>,
        #[serde(default)]
        input_text_token_count: u64,
    }
    #[derive(Deserialize)]
    struct ByType {
        float: Option<Vec<f32>>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| protocol("Titan embedding", e))?;
    let embedding = raw
        .embedding
        .or_else(|| raw.embeddings_by_type.and_then(|b| b.float))
        .ok_or_else(|| protocol("Titan embedding", "no `embedding`"))?;
    Ok(TitanReply {
        embedding,
        input_tokens: raw.input_text_token_count,
    })
}

/// Decodes a Cohere embeddings body: `embeddings` as a list of float vectors
/// (`embeddings_floats`) or by type (`embeddings_by_type`: `float`, else the first type given,
/// its integers as numbers), checking there is one vector per text sent (`expected`).
pub fn decode_cohere_reply(body: &[u8], expected: usize) -> Result<CohereReply, GatewayError> {
    #[derive(Deserialize)]
    struct Raw {
        embeddings: Value,
        #[serde(default)]
        meta: Option<Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| protocol("Cohere embedding", e))?;
    let vectors = match raw.embeddings {
        Value::Array(_) => raw.embeddings,
        Value::Object(mut by_type) => match by_type.remove("float") {
            Some(v) => v,
            None => by_type
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .ok_or_else(|| protocol("Cohere embedding", "no embeddings"))?,
        },
        _ => return Err(protocol("Cohere embedding", "`embeddings` is not a list")),
    };
    let embeddings: Vec<Vec<f32>> =
        serde_json::from_value(vectors).map_err(|e| protocol("Cohere embedding", e))?;
    if embeddings.len() != expected {
        return Err(protocol(
            "Cohere embedding",
            format!("{} vectors for {expected} texts", embeddings.len()),
        ));
    }
    let input_tokens = raw
        .meta
        .as_ref()
        .and_then(|m| m.pointer("/billed_units/input_tokens"))
        .and_then(Value::as_u64);
    Ok(CohereReply {
        embeddings,
        input_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titan_and_cohere_shapes() {
        let t = decode_titan_reply(br#"{"embedding":[0.5,-1],"inputTextTokenCount":4}"#).unwrap();
        assert_eq!((t.embedding, t.input_tokens), (vec![0.5, -1.0], 4));
        let t =
            decode_titan_reply(br#"{"embeddingsByType":{"float":[1]},"inputTextTokenCount":2}"#)
                .unwrap();
        assert_eq!(t.embedding, vec![1.0]);
        assert!(decode_titan_reply(b"{}").is_err());

        let c = decode_cohere_reply(
            br#"{"id":"x","embeddings":[[1,2],[3,4]],"response_type":"embeddings_floats","texts":["a","b"]}"#,
            2,
        )
        .unwrap();
        assert_eq!(c.embeddings, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(c.input_tokens, None);
        let c = decode_cohere_reply(
            br#"{"embeddings":{"int8":[[5]],"float":[[0.25]]},"response_type":"embeddings_by_type",
               "meta":{"billed_units":{"input_tokens":7}}}"#,
            1,
        )
        .unwrap();
        assert_eq!((c.embeddings, c.input_tokens), (vec![vec![0.25]], Some(7)));
        let e = decode_cohere_reply(br#"{"embeddings":[[1]]}"#, 2).unwrap_err();
        assert_eq!(e.status(), 502);
    }
}
