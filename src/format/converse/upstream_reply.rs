//! Converse output → canonical [`ChatResponse`].

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    self, CitationGeneratedContent, ContentBlock, ReasoningContentBlock, StopReason, TokenUsage,
};

use super::document::document_to_json;
use super::trace::guardrail_trace_json;
use crate::error::GatewayError;
use serde_json::Map;

use crate::format::{BEDROCK_TRACE, GUARDRAIL_ACTION};
use crate::model::{
    finish_reason, ChatResponse, ChunkMeta, ResponseMessage, ThinkingBlock, ToolCall, Usage,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Maps a Converse `stopReason` to an OpenAI `finish_reason` (PROTOCOLS 5.5). Malformed-output
/// reasons and unknown values map to `stop`.
pub fn map_stop_reason(reason: &StopReason) -> &'static str {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => finish_reason::LENGTH,
        StopReason::ToolUse => finish_reason::TOOL_CALLS,
        StopReason::GuardrailIntervened | StopReason::ContentFiltered => {
            finish_reason::CONTENT_FILTER
        }
        // EndTurn, StopSequence, MalformedModelOutput, MalformedToolUse, and values newer than the SDK.
        _ => finish_reason::STOP,
    }
}

/// Canonical usage from Converse usage (PROTOCOLS 5.6): `inputTokens` excludes cache reads and
/// writes, so they are added back into `prompt_tokens`.
pub(crate) fn usage_from(usage: &TokenUsage) -> Usage {
    let n = |v: i32| u64::try_from(v).unwrap_or(0);
    Usage::from_parts(
        n(usage.input_tokens()),
        n(usage.output_tokens()),
        usage.cache_read_input_tokens().map_or(0, n),
        usage.cache_write_input_tokens().map_or(0, n),
    )
}

/// A guardrail's verdict and trace as canonical reply members (empty when there is neither).
pub(crate) fn guardrail_extra(
    intervened: bool,
    trace: Option<&aws_sdk_bedrockruntime::types::GuardrailTraceAssessment>,
) -> Map<String, serde_json::Value> {
    let mut extra = Map::new();
    if intervened {
        extra.insert(GUARDRAIL_ACTION.into(), serde_json::json!("INTERVENED"));
    }
    if let Some(t) = trace {
        extra.insert(
            BEDROCK_TRACE.into(),
            serde_json::json!({"guardrail": guardrail_trace_json(t)}),
        );
    }
    extra
}

/// Decodes a Converse response; id, created and model come from `meta`.
///
/// Text blocks are concatenated (citations content included), tool-use blocks become tool calls
/// with their ids preserved and `arguments` = the JSON text of `input`, reasoning text becomes
/// `reasoning_content`. `finish_reason` is `tool_calls` whenever the message has tool calls.
/// An output without a message is a 502 `upstream_protocol` error.
pub fn decode_response(
    output: &ConverseOutput,
    meta: &ChunkMeta,
) -> Result<ChatResponse, GatewayError> {
    let message = match output.output() {
        Some(types::ConverseOutput::Message(m)) => m,
        _ => {
            return Err(GatewayError::upstream_protocol(
                "Converse response has no output message",
            ))
        }
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    for block in message.content() {
        match block {
            ContentBlock::Text(t) => text.push_str(t),
            ContentBlock::CitationsContent(c) => {
                for piece in c.content() {
                    if let CitationGeneratedContent::Text(t) = piece {
                        text.push_str(t);
                    }
                }
            }
            ContentBlock::ToolUse(u) => {
                let arguments = serde_json::to_string(&document_to_json(u.input()))
                    .map_err(|e| GatewayError::internal(format!("serializing tool input: {e}")))?;
                tool_calls.push(ToolCall::function(u.tool_use_id(), u.name(), arguments));
            }
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => {
                reasoning.push_str(r.text());
                thinking_blocks.push(ThinkingBlock::Thinking {
                    thinking: r.text().to_owned(),
                    signature: r.signature().map(str::to_owned),
                });
            }
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(data)) => {
                thinking_blocks.push(ThinkingBlock::RedactedThinking {
                    data: BASE64.encode(data.as_ref()),
                });
            }
            _ => {}
        }
    }

    let finish = if tool_calls.is_empty() {
        map_stop_reason(output.stop_reason())
    } else {
        finish_reason::TOOL_CALLS
    };
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(text)
    };
    let mut message =
        ResponseMessage::assistant(content, (!tool_calls.is_empty()).then_some(tool_calls));
    message.reasoning_content = (!reasoning.is_empty()).then_some(reasoning);
    // Only signed or redacted reasoning needs its blocks: it is what a client sends back.
    let signed = thinking_blocks.iter().any(|b| {
        !matches!(
            b,
            ThinkingBlock::Thinking {
                signature: None,
                ..
            }
        )
    });
    message.thinking_blocks = signed.then_some(thinking_blocks);

    let mut response = ChatResponse::new(meta, message, finish, output.usage().map(usage_from));
    response.extra = guardrail_extra(
        output.stop_reason() == &StopReason::GuardrailIntervened,
        output.trace().and_then(|t| t.guardrail()),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::converse::json_to_document;
    use aws_sdk_bedrockruntime::types::{
        ConversationRole, Message, ReasoningTextBlock, ToolUseBlock,
    };
    use serde_json::{json, Value};

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-c".into(),
            created: 5,
            model: "m".into(),
        }
    }

    fn output(
        blocks: Vec<ContentBlock>,
        reason: StopReason,
        usage: Option<TokenUsage>,
    ) -> ConverseOutput {
        let message = Message::builder()
            .role(ConversationRole::Assistant)
            .set_content(Some(blocks))
            .build()
            .unwrap();
        ConverseOutput::builder()
            .output(types::ConverseOutput::Message(message))
            .stop_reason(reason)
            .set_usage(usage)
            .build()
            .unwrap()
    }

    fn usage(input: i32, output: i32, read: Option<i32>, write: Option<i32>) -> TokenUsage {
        TokenUsage::builder()
            .input_tokens(input)
            .output_tokens(output)
            .total_tokens(input + output + read.unwrap_or(0) + write.unwrap_or(0))
            .set_cache_read_input_tokens(read)
            .set_cache_write_input_tokens(write)
            .build()
            .unwrap()
    }

    #[test]
    fn decodes_reasoning_text_and_tool_use() {
        let out = output(
            vec![
                ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
                    ReasoningTextBlock::builder()
                        .text("thinking")
                        .signature("sig")
                        .build()
                        .unwrap(),
                )),
                ContentBlock::Text("It is ".into()),
                ContentBlock::Text("21°C.".into()),
                ContentBlock::ToolUse(
                    ToolUseBlock::builder()
                        .tool_use_id("tooluse_kZJ")
                        .name("get_weather")
                        .input(json_to_document(&json!({"city": "Paris"})))
                        .build()
                        .unwrap(),
                ),
            ],
            StopReason::ToolUse,
            Some(usage(30, 44, Some(10), Some(5))),
        );
        let resp = decode_response(&out, &meta()).unwrap();
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({
                "id": "chatcmpl-c", "object": "chat.completion", "created": 5, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                    "message": {"role": "assistant", "content": "It is 21°C.", "refusal": null,
                        "reasoning_content": "thinking",
                        "thinking_blocks": [{"type": "thinking", "thinking": "thinking", "signature": "sig"}],
                        "tool_calls": [{"id": "tooluse_kZJ", "type": "function",
                            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                "usage": {"prompt_tokens": 45, "completion_tokens": 44, "total_tokens": 89,
                          "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5}}
            })
        );
    }

    #[test]
    fn tool_calls_win_over_stop_reason_and_content_is_null() {
        let out = output(
            vec![ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id("t1")
                    .name("f")
                    .input(json_to_document(&json!({})))
                    .build()
                    .unwrap(),
            )],
            StopReason::EndTurn,
            None,
        );
        let resp = decode_response(&out, &meta()).unwrap();
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(resp.choices[0].message.content, None);
        assert_eq!(
            resp.choices[0].message.tool_calls.as_ref().unwrap()[0]
                .function
                .arguments,
            "{}"
        );
        assert_eq!(resp.usage, None);
    }

    #[test]
    fn maps_stop_reasons() {
        for (reason, mapped) in [
            (StopReason::EndTurn, "stop"),
            (StopReason::StopSequence, "stop"),
            (StopReason::MaxTokens, "length"),
            (StopReason::ModelContextWindowExceeded, "length"),
            (StopReason::ToolUse, "tool_calls"),
            (StopReason::GuardrailIntervened, "content_filter"),
            (StopReason::ContentFiltered, "content_filter"),
            (StopReason::MalformedModelOutput, "stop"),
            (StopReason::MalformedToolUse, "stop"),
            (StopReason::from("something_new"), "stop"),
        ] {
            assert_eq!(map_stop_reason(&reason), mapped, "{reason:?}");
        }
        let out = output(
            vec![ContentBlock::Text("cut".into())],
            StopReason::MaxTokens,
            Some(usage(3, 4, None, None)),
        );
        let resp = decode_response(&out, &meta()).unwrap();
        let value: Value = serde_json::to_value(&resp).unwrap();
        assert_eq!(value["choices"][0]["finish_reason"], "length");
        assert_eq!(value["choices"][0]["message"]["content"], "cut");
        assert_eq!(
            value["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        );
    }

    #[test]
    fn missing_message_is_upstream_protocol() {
        let out = ConverseOutput::builder()
            .stop_reason(StopReason::EndTurn)
            .build()
            .unwrap();
        let err = decode_response(&out, &meta()).unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
    }
}
