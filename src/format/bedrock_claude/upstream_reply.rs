//! Bedrock Claude InvokeModel response JSON → canonical [`ChatResponse`] (upstream direction).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::format::{BEDROCK_TRACE, GUARDRAIL_ACTION};
use crate::model::{
    finish_reason, ChatResponse, ChunkMeta, ResponseMessage, ThinkingBlock, ToolCall, Usage,
};

/// Maps a Claude `stop_reason` to an OpenAI `finish_reason` (PROTOCOLS 5.5); unknown → `stop`.
pub fn map_stop_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => finish_reason::LENGTH,
        "tool_use" => finish_reason::TOOL_CALLS,
        "refusal" => finish_reason::CONTENT_FILTER,
        _ => finish_reason::STOP, // end_turn, stop_sequence, pause_turn, anything newer
    }
}

#[derive(Deserialize)]
struct ClaudeMessage {
    /// Required: a body without it is not a Claude message (an error body, a different model family).
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
    /// `INTERVENED` when a guardrail replaced the answer.
    #[serde(default, rename = "amazon-bedrock-guardrailAction")]
    guardrail_action: Option<String>,
    /// The guardrail's trace, when asked for.
    #[serde(default, rename = "amazon-bedrock-trace")]
    trace: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Option<Value>,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    /// Server-tool blocks and anything newer: not representable in OpenAI.
    #[serde(other)]
    Other,
}

/// Claude `usage` (all counts disjoint). Shared with the stream decoder.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct ClaudeUsage {
    #[serde(default)]
    pub(crate) input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) output_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(crate) cache_creation_input_tokens: Option<u64>,
}

impl ClaudeUsage {
    pub(crate) fn to_usage(self) -> Usage {
        Usage::from_parts(
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
            self.cache_read_input_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
        )
    }
}

/// Decodes an InvokeModel response body; id, created and model come from `meta`.
pub fn decode_response(body: &[u8], meta: &ChunkMeta) -> Result<ChatResponse, GatewayError> {
    // serde would also accept a JSON array for a struct; a Claude message is always an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(GatewayError::upstream_protocol(
            "invalid Claude response body: not a JSON object",
        ));
    }
    let msg: ClaudeMessage = serde_json::from_slice(body).map_err(|e| {
        GatewayError::upstream_protocol(format!("invalid Claude response body: {e}"))
    })?;

    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in msg.content {
        match block {
            // Claude splits one answer into several text blocks (e.g. around citations); the
            // pieces are contiguous, so they are joined without a separator.
            Block::Text { text: t } => text.get_or_insert_with(String::new).push_str(&t),
            Block::Thinking {
                thinking,
                signature,
            } => {
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(&thinking);
                thinking_blocks.push(ThinkingBlock::Thinking {
                    thinking,
                    signature,
                });
            }
            Block::RedactedThinking { data } => {
                thinking_blocks.push(ThinkingBlock::RedactedThinking { data })
            }
            Block::ToolUse { id, name, input } => {
                let input = input.unwrap_or_else(|| Value::Object(Map::new()));
                let arguments = serde_json::to_string(&input).map_err(|e| {
                    GatewayError::upstream_protocol(format!("invalid tool_use input: {e}"))
                })?;
                tool_calls.push(ToolCall::function(id, name, arguments));
            }
            Block::Other => {}
        }
    }

    let intervened = msg.guardrail_action.as_deref() == Some("INTERVENED");
    let finish = if intervened {
        finish_reason::CONTENT_FILTER
    } else if tool_calls.is_empty() {
        map_stop_reason(msg.stop_reason.as_deref().unwrap_or("end_turn"))
    } else {
        finish_reason::TOOL_CALLS
    };
    let mut extra = Map::new();
    if let Some(action) = msg.guardrail_action {
        extra.insert(GUARDRAIL_ACTION.into(), Value::String(action));
    }
    if let Some(trace) = msg.trace {
        extra.insert(BEDROCK_TRACE.into(), trace);
    }
    let mut message =
        ResponseMessage::assistant(text, (!tool_calls.is_empty()).then_some(tool_calls));
    message.reasoning_content = reasoning;
    message.thinking_blocks = (!thinking_blocks.is_empty()).then_some(thinking_blocks);

    let mut response =
        ChatResponse::new(meta, message, finish, msg.usage.map(ClaudeUsage::to_usage));
    response.extra = extra;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-1".into(),
            created: 1_732_000_000,
            model: "claude".into(),
        }
    }

    fn decode(v: Value) -> Value {
        let resp = decode_response(&serde_json::to_vec(&v).unwrap(), &meta()).unwrap();
        serde_json::to_value(resp).unwrap()
    }

    #[test]
    fn text_and_tool_use() {
        let out = decode(
            json!({"id":"msg_bdrk_01XyZ","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022",
            "content":[{"type":"text","text":"Let me check."},
                {"type":"tool_use","id":"toolu_bdrk_01Ab","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":412,"output_tokens":61,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}),
        );
        assert_eq!(
            out,
            json!({"id":"chatcmpl-1","object":"chat.completion","created":1_732_000_000u64,"model":"claude",
                "choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,
                    "tool_calls":[{"id":"toolu_bdrk_01Ab","type":"function",
                        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                    "finish_reason":"tool_calls","logprobs":null}],
                "usage":{"prompt_tokens":412,"completion_tokens":61,"total_tokens":473}})
        );
    }

    #[test]
    fn thinking_cache_usage_and_stop_reasons() {
        let out = decode(
            json!({"content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                {"type":"redacted_thinking","data":"x"},{"type":"text","text":"A"},{"type":"text","text":"B"}],
            "stop_reason":"max_tokens",
            "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7}}),
        );
        assert_eq!(
            out["choices"][0],
            json!({"index":0,"message":{"role":"assistant","content":"AB","refusal":null,"reasoning_content":"hmm",
                    "thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"s"},
                        {"type":"redacted_thinking","data":"x"}]},
                "finish_reason":"length","logprobs":null})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens":117,"completion_tokens":5,"total_tokens":122,
                "prompt_tokens_details":{"cached_tokens":100,"cache_write_tokens":7}})
        );
        let out = decode(json!({"content":[],"stop_reason":"refusal"}));
        assert_eq!(out["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert!(out.get("usage").is_none());
        // Tool calls win over the raw reason.
        let out = decode(
            json!({"content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"end_turn"}),
        );
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn stop_reason_table() {
        for (raw, mapped) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("something_new", "stop"),
        ] {
            assert_eq!(map_stop_reason(raw), mapped, "{raw}");
        }
    }

    #[test]
    fn malformed_is_upstream_protocol() {
        for body in [
            &b"not json"[..],
            b"{\"content\":5}",
            b"[]",
            b"{\"message\":\"boom\"}",
        ] {
            let e = decode_response(body, &meta()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::UpstreamProtocol);
            assert_eq!(e.status(), 502);
        }
    }
}
