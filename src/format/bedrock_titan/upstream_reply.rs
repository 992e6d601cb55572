//! Titan InvokeModel response → canonical [`ChatResponse`].

use serde::Deserialize;

use crate::error::GatewayError;
use crate::model::{finish_reason, ChatResponse, ChunkMeta, ResponseMessage, Usage};

/// Titan's response body (only the members the gateway reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    #[serde(default)]
    input_text_token_count: Option<u64>,
    results: Vec<TitanResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResult {
    #[serde(default)]
    token_count: Option<u64>,
    output_text: String,
    #[serde(default)]
    completion_reason: Option<String>,
}

/// Maps a Titan `completionReason` to an OpenAI `finish_reason` (PROTOCOLS 5.5). Unknown values
/// map to `stop`.
pub fn map_completion_reason(reason: &str) -> &'static str {
    match reason {
        "LENGTH" => finish_reason::LENGTH,
        "CONTENT_FILTERED" => finish_reason::CONTENT_FILTER,
        // FINISH (observed), FINISHED (documented), STOP_CRITERIA_MET, RAG_QUERY_WHEN_RAG_DISABLED.
        _ => finish_reason::STOP,
    }
}

/// Decodes a Titan InvokeModel response body; id, created and model come from `meta`.
///
/// A body that is not Titan's shape (not JSON, no `results`, no `outputText`) is a 502
/// `upstream_protocol` error.
pub fn decode_response(body: &[u8], meta: &ChunkMeta) -> Result<ChatResponse, GatewayError> {
    let parsed: TitanResponse = serde_json::from_slice(body)
        .map_err(|e| GatewayError::upstream_protocol(format!("malformed Titan response: {e}")))?;
    let result = parsed.results.into_iter().next().ok_or_else(|| {
        GatewayError::upstream_protocol("malformed Titan response: empty results")
    })?;
    let finish = result
        .completion_reason
        .as_deref()
        .map_or(finish_reason::STOP, map_completion_reason);
    let usage = Usage::from_parts(
        parsed.input_text_token_count.unwrap_or(0),
        result.token_count.unwrap_or(0),
        0,
        0,
    );
    Ok(ChatResponse::new(
        meta,
        ResponseMessage::assistant(Some(result.output_text), None),
        finish,
        Some(usage),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-t".into(),
            created: 1_732_000_000,
            model: "titan".into(),
        }
    }

    #[test]
    fn decodes_documented_response() {
        let body = br#"{"inputTextTokenCount":9,
            "results":[{"tokenCount":17,"outputText":"\nSoft rain","completionReason":"FINISH"}]}"#;
        let resp = decode_response(body, &meta()).unwrap();
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({
                "id": "chatcmpl-t", "object": "chat.completion", "created": 1_732_000_000u64,
                "model": "titan",
                "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": "\nSoft rain", "refusal": null},
                    "finish_reason": "stop", "logprobs": null}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 17, "total_tokens": 26}
            })
        );
    }

    #[test]
    fn maps_reasons() {
        for (raw, mapped) in [
            ("FINISH", "stop"),
            ("FINISHED", "stop"),
            ("STOP_CRITERIA_MET", "stop"),
            ("RAG_QUERY_WHEN_RAG_DISABLED", "stop"),
            ("LENGTH", "length"),
            ("CONTENT_FILTERED", "content_filter"),
        ] {
            assert_eq!(map_completion_reason(raw), mapped, "{raw}");
            let body = json!({"inputTextTokenCount": 1,
                "results": [{"tokenCount": 2, "outputText": "x", "completionReason": raw}]});
            let resp = decode_response(body.to_string().as_bytes(), &meta()).unwrap();
            assert_eq!(resp.choices[0].finish_reason.as_deref(), Some(mapped));
        }
    }

    #[test]
    fn malformed_is_upstream_protocol() {
        for body in [
            &b"not json"[..],
            br#"{"results":[]}"#,
            br#"{"inputTextTokenCount":1}"#,
            br#"{"results":[{"tokenCount":1}]}"#,
            br#"{"results":[{"outputText":5}]}"#,
        ] {
            let err = decode_response(body, &meta()).unwrap_err();
            assert_eq!(err.status().as_u16(), 502);
            assert_eq!(err.code(), Some("upstream_protocol_error"));
        }
    }
}
