//! The canonical reply → what a Converse client reads: the Converse response JSON
//! ([`encode_client_response`], PROTOCOLS 4.3) and the typed ConverseStream events
//! ([`ConverseStreamEncoder`], 4.4) that the event-stream framer writes as frames.

use serde::Serialize;
use serde_json::{json, Value};

use crate::format::blocks::{BlockEvent, BlockKind, BlockSequencer};
use crate::format::{BEDROCK_TRACE, GUARDRAIL_ACTION};
use crate::model::{finish_reason, ChatChunk, ChatResponse, ThinkingBlock, Usage};
use crate::stream::{EventEncoder, Framer, WireEvent};

/// OpenAI `finish_reason` → Converse `stopReason`.
pub(crate) fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some(finish_reason::LENGTH) => "max_tokens",
        Some(finish_reason::TOOL_CALLS) | Some("function_call") => "tool_use",
        Some(finish_reason::CONTENT_FILTER) => "content_filtered",
        _ => "end_turn",
    }
}

/// Converse `usage`: `inputTokens` excludes cache reads and writes, which are reported apart.
pub(crate) fn usage_json(usage: Option<&Usage>) -> Value {
    let Some(u) = usage else {
        return json!({"inputTokens": 0, "outputTokens": 0, "totalTokens": 0});
    };
    let (read, write) = (u.cached_tokens(), u.cache_write_tokens());
    let input = u.uncached_input_tokens();
    let mut out = json!({
        "inputTokens": input,
        "outputTokens": u.completion_tokens,
        "totalTokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    });
    if read > 0 {
        out["cacheReadInputTokens"] = Value::from(read);
    }
    if write > 0 {
        out["cacheWriteInputTokens"] = Value::from(write);
    }
    out
}

/// Encodes a complete canonical reply as a Converse response.
pub fn encode_client_response(resp: &ChatResponse) -> Value {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    if let Some(msg) = choice.map(|c| &c.message) {
        match msg.thinking_blocks.as_deref().filter(|b| !b.is_empty()) {
            Some(blocks) => content.extend(blocks.iter().map(|b| match b {
                ThinkingBlock::Thinking {
                    thinking,
                    signature,
                } => {
                    let mut text = json!({"text": thinking});
                    if let Some(s) = signature {
                        text["signature"] = json!(s);
                    }
                    json!({"reasoningContent": {"reasoningText": text}})
                }
                ThinkingBlock::RedactedThinking { data } => {
                    json!({"reasoningContent": {"redactedContent": data}})
                }
            })),
            None => {
                if let Some(r) = msg.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                    content.push(json!({"reasoningContent": {"reasoningText": {"text": r}}}));
                }
            }
        }
        if let Some(t) = msg
            .content
            .as_deref()
            .or(msg.refusal.as_deref())
            .filter(|t| !t.is_empty())
        {
            content.push(json!({"text": t}));
        }
        for call in msg.tool_calls.iter().flatten() {
            let input = serde_json::from_str::<Value>(&call.function.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            content.push(json!({"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": input}}));
        }
    }
    let has_tools =
        choice.is_some_and(|c| c.message.tool_calls.as_ref().is_some_and(|t| !t.is_empty()));
    let intervened = resp.extra.get(GUARDRAIL_ACTION) == Some(&json!("INTERVENED"));
    let reason = if intervened {
        "guardrail_intervened"
    } else if has_tools {
        "tool_use"
    } else {
        stop_reason(choice.and_then(|c| c.finish_reason.as_deref()))
    };
    let mut out = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": reason,
        "usage": usage_json(resp.usage.as_ref()),
        "metrics": {"latencyMs": 0},
    });
    if let Some(trace) = resp.extra.get(BEDROCK_TRACE) {
        out["trace"] = trace.clone();
    }
    out
}

/// One ConverseStream event; [`WireEvent::name`] is its event type.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ConverseEvent<'a> {
    /// `messageStart`.
    MessageStart {
        /// Always `assistant`.
        role: &'static str,
    },
    /// `contentBlockStart` (tool uses only: the `start` union has no member for text).
    #[serde(rename_all = "camelCase")]
    ContentBlockStart {
        /// Block index.
        content_block_index: u32,
        /// `{"toolUse": {"toolUseId", "name"}}`.
        start: Value,
    },
    /// `contentBlockDelta`.
    #[serde(rename_all = "camelCase")]
    ContentBlockDelta {
        /// Block index.
        content_block_index: u32,
        /// The piece.
        delta: ConverseDelta<'a>,
    },
    /// `contentBlockStop`.
    #[serde(rename_all = "camelCase")]
    ContentBlockStop {
        /// Block index.
        content_block_index: u32,
    },
    /// `messageStop`.
    #[serde(rename_all = "camelCase")]
    MessageStop {
        /// Converse stop reason.
        stop_reason: &'static str,
    },
    /// `metadata`: usage and metrics.
    Metadata {
        /// Converse usage.
        usage: Value,
        /// `{"latencyMs": 0}`: the gateway does not measure the model's latency.
        metrics: Value,
        /// A guardrail's trace, when asked for.
        #[serde(skip_serializing_if = "Option::is_none")]
        trace: Option<Value>,
    },
}

impl WireEvent for ConverseEvent<'_> {
    fn name(&self) -> Option<&'static str> {
        Some(match self {
            ConverseEvent::MessageStart { .. } => "messageStart",
            ConverseEvent::ContentBlockStart { .. } => "contentBlockStart",
            ConverseEvent::ContentBlockDelta { .. } => "contentBlockDelta",
            ConverseEvent::ContentBlockStop { .. } => "contentBlockStop",
            ConverseEvent::MessageStop { .. } => "messageStop",
            ConverseEvent::Metadata { .. } => "metadata",
        })
    }
}

/// The piece a `contentBlockDelta` carries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConverseDelta<'a> {
    /// Answer text.
    Text(&'a str),
    /// Reasoning: `{"reasoningContent": {"text"}}`, `{"signature"}` or `{"redactedContent"}`.
    ReasoningContent(ReasoningDelta<'a>),
    /// A piece of a tool call's JSON arguments: `{"toolUse": {"input"}}`.
    ToolUse {
        /// The piece (a JSON fragment, as a string).
        input: &'a str,
    },
}

/// The piece of reasoning a `reasoningContent` delta carries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningDelta<'a> {
    /// Reasoning text.
    Text(&'a str),
    /// The signature of the reasoning so far.
    Signature(&'a str),
    /// Encrypted reasoning (base64 on the wire).
    RedactedContent(&'a str),
}

/// Canonical chunks → ConverseStream events (`messageStart`, `contentBlockStart` for tool uses,
/// `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`).
///
/// Blocks come from the block sequencer shared with the Claude encoder. The finish chunk yields `messageStop` at once;
/// `metadata` follows with the usage chunk, or at [`finish`](EventEncoder::finish) with zero usage
/// when none arrived.
#[derive(Debug, Default)]
pub struct ConverseStreamEncoder {
    started: bool,
    blocks: BlockSequencer,
    stopped: bool,
    usage: Option<Usage>,
    done: bool,
    /// A guardrail's trace from the finish chunk, for `metadata`.
    trace: Option<Value>,
}

impl ConverseStreamEncoder {
    /// A new encoder for one stream.
    pub fn new() -> Self {
        ConverseStreamEncoder::default()
    }

    fn start<F: Framer>(&mut self, out: &mut F) {
        if !self.started {
            self.started = true;
            out.event(&ConverseEvent::MessageStart { role: "assistant" });
        }
    }

    fn metadata<F: Framer>(&mut self, out: &mut F) {
        if !self.done {
            self.done = true;
            out.event(&ConverseEvent::Metadata {
                usage: usage_json(self.usage.as_ref()),
                metrics: json!({"latencyMs": 0}),
                trace: self.trace.take(),
            });
        }
    }
}

/// Spells one block event as a ConverseStream event (text and reasoning blocks have no start).
fn converse_block_event<F: Framer>(event: BlockEvent<'_>, out: &mut F) {
    let event = match event {
        BlockEvent::Start {
            index,
            kind: BlockKind::ToolUse { call, id, name },
        } => ConverseEvent::ContentBlockStart {
            content_block_index: index,
            start: json!({"toolUse": {
                "toolUseId": id.map_or_else(|| format!("tooluse_{call}"), str::to_owned),
                "name": name,
            }}),
        },
        BlockEvent::Start {
            index,
            kind: BlockKind::RedactedThinking { data },
        } => ConverseEvent::ContentBlockDelta {
            content_block_index: index,
            delta: ConverseDelta::ReasoningContent(ReasoningDelta::RedactedContent(data)),
        },
        BlockEvent::Start { .. } => return,
        BlockEvent::Thinking { index, text } => ConverseEvent::ContentBlockDelta {
            content_block_index: index,
            delta: ConverseDelta::ReasoningContent(ReasoningDelta::Text(text)),
        },
        BlockEvent::Signature { index, signature } => ConverseEvent::ContentBlockDelta {
            content_block_index: index,
            delta: ConverseDelta::ReasoningContent(ReasoningDelta::Signature(signature)),
        },
        BlockEvent::Text { index, text } => ConverseEvent::ContentBlockDelta {
            content_block_index: index,
            delta: ConverseDelta::Text(text),
        },
        BlockEvent::InputJson { index, json } => ConverseEvent::ContentBlockDelta {
            content_block_index: index,
            delta: ConverseDelta::ToolUse { input: json },
        },
        BlockEvent::Stop { index } => ConverseEvent::ContentBlockStop {
            content_block_index: index,
        },
    };
    out.event(&event);
}

impl EventEncoder for ConverseStreamEncoder {
    fn encode<F: Framer>(&mut self, chunk: &ChatChunk, out: &mut F) {
        if self.done {
            return;
        }
        self.start(out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        if let Some(choice) = chunk.choices.first().filter(|_| !self.stopped) {
            let mut emit = |e| converse_block_event(e, out);
            self.blocks.delta(&choice.delta, &mut emit);
            if let Some(reason) = choice.finish_reason.as_deref() {
                self.blocks.close(&mut emit);
                self.stopped = true;
                self.trace = chunk.extra.get(BEDROCK_TRACE).cloned();
                let intervened = chunk.extra.get(GUARDRAIL_ACTION) == Some(&json!("INTERVENED"));
                out.event(&ConverseEvent::MessageStop {
                    stop_reason: if intervened {
                        "guardrail_intervened"
                    } else {
                        stop_reason(Some(reason))
                    },
                });
            }
        }
        if self.stopped && self.usage.is_some() {
            self.metadata(out);
        }
    }

    fn finish<F: Framer>(&mut self, out: &mut F) {
        if self.done {
            return;
        }
        self.start(out);
        if !self.stopped {
            self.blocks.close(&mut |e| converse_block_event(e, out));
            self.stopped = true;
            out.event(&ConverseEvent::MessageStop {
                stop_reason: "end_turn",
            });
        }
        self.metadata(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta, ToolCallDelta};
    use crate::stream::testing::record;

    #[test]
    fn encodes_a_complete_reply() {
        let resp: ChatResponse = serde_json::from_value(json!({
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me check.",
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 15, "completion_tokens": 9, "total_tokens": 24, "prompt_tokens_details": {"cached_tokens": 3}}
        }))
        .unwrap();
        let v = encode_client_response(&resp);
        assert_eq!(v["stopReason"], "tool_use");
        assert_eq!(
            v["output"]["message"]["content"][0]["text"],
            "Let me check."
        );
        assert_eq!(
            v["output"]["message"]["content"][1]["toolUse"],
            json!({"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(
            v["usage"],
            json!({"inputTokens": 12, "outputTokens": 9, "totalTokens": 24, "cacheReadInputTokens": 3})
        );
    }

    #[test]
    fn stream_events_in_order() {
        let meta = ChunkMeta::new("m");
        let chunks = [
            ChatChunk::delta(&meta, Delta::role(), None),
            ChatChunk::delta(&meta, Delta::text("Let me "), None),
            ChatChunk::delta(&meta, Delta::text("check."), None),
            ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::start(0, "t1", "get_weather")),
                None,
            ),
            ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::arguments(0, "{\"city\":")),
                None,
            ),
            ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::arguments(0, "\"Paris\"}")),
                None,
            ),
            ChatChunk::delta(&meta, Delta::default(), Some("tool_calls")),
            ChatChunk::usage(&meta, Usage::from_parts(10, 5, 0, 0)),
        ];
        let out = record(ConverseStreamEncoder::new(), &chunks);
        let types: Vec<&str> = out.iter().map(|(t, _)| t.unwrap()).collect();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(
            out[1].1,
            json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}})
        );
        assert_eq!(
            out[4].1,
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "get_weather"}}})
        );
        assert_eq!(out[6].1["delta"]["toolUse"]["input"], "\"Paris\"}");
        assert_eq!(out[8].1, json!({"stopReason": "tool_use"}));
        assert_eq!(
            out[9].1["usage"],
            json!({"inputTokens": 10, "outputTokens": 5, "totalTokens": 15})
        );
    }

    #[test]
    fn stream_without_finish_or_usage_is_still_well_formed() {
        let mut enc = ConverseStreamEncoder::new();
        let mut rec = crate::stream::testing::Recorder::default();
        enc.encode(
            &ChatChunk::delta(&ChunkMeta::new("m"), Delta::text("hi"), None),
            &mut rec,
        );
        enc.finish(&mut rec);
        enc.finish(&mut rec);
        let types: Vec<&str> = rec.events.iter().map(|(t, _)| t.unwrap()).collect();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
    }
}
