//! ConverseStream events → canonical [`ChatChunk`]s.

use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput, ReasoningContentBlockDelta,
};

use super::upstream_reply::{guardrail_extra, map_stop_reason, usage_from};
use crate::error::GatewayError;
use crate::model::{
    finish_reason, ChatChunk, ChunkMeta, Delta, ThinkingBlock, ToolCallDelta, Usage,
};
use aws_sdk_bedrockruntime::types::StopReason;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// One tool-use block seen in the stream.
#[derive(Debug)]
struct ToolBlock {
    /// Bedrock's content block index.
    block: i32,
    /// The OpenAI tool-call ordinal.
    ordinal: u32,
    /// Whether any arguments piece was emitted.
    has_arguments: bool,
}

/// Turns ConverseStream events into canonical chunks (PROTOCOLS 4.4, 5.7).
///
/// `messageStart` → role chunk; `contentBlockStart.toolUse` → the tool-call header with
/// `index` = the call's ordinal among tool blocks (not Bedrock's block index);
/// `contentBlockDelta` text / toolUse input / reasoning text → content / arguments /
/// `reasoning_content` deltas; a tool block that ends without any input gets `arguments: "{}"`.
/// `messageStop` is remembered; `metadata` (which follows it) emits the finish chunk and then always
/// a usage chunk. Unknown events and delta kinds are ignored.
#[derive(Debug)]
pub struct ConverseStreamDecoder {
    meta: ChunkMeta,
    started: bool,
    tools: Vec<ToolBlock>,
    stop: Option<&'static str>,
    /// Usage from a `metadata` event that arrived before `messageStop` (not expected, but kept).
    pending_usage: Option<Usage>,
    finished: bool,
    /// A guardrail intervened (`messageStop.stopReason`).
    intervened: bool,
}

impl ConverseStreamDecoder {
    /// A decoder for one stream; chunks carry `meta`'s id, created and model.
    pub fn new(meta: ChunkMeta) -> Self {
        ConverseStreamDecoder {
            meta,
            started: false,
            tools: Vec::new(),
            stop: None,
            pending_usage: None,
            finished: false,
            intervened: false,
        }
    }

    fn start(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push(ChatChunk::delta(&self.meta, Delta::role(), None));
        }
    }

    /// The tool block for Bedrock content block `block`, registering it (with the next ordinal)
    /// if new.
    fn tool(&mut self, block: i32) -> (&mut ToolBlock, bool) {
        if let Some(pos) = self.tools.iter().position(|t| t.block == block) {
            return (&mut self.tools[pos], false);
        }
        let ordinal = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
        self.tools.push(ToolBlock {
            block,
            ordinal,
            has_arguments: false,
        });
        let last = self.tools.len() - 1;
        (&mut self.tools[last], true)
    }

    fn finish_chunk(
        &mut self,
        out: &mut Vec<ChatChunk>,
        trace: Option<&aws_sdk_bedrockruntime::types::GuardrailTraceAssessment>,
    ) {
        self.finished = true;
        let reason = if self.tools.is_empty() || self.intervened {
            self.stop.unwrap_or(finish_reason::STOP)
        } else {
            finish_reason::TOOL_CALLS
        };
        let mut chunk = ChatChunk::delta(&self.meta, Delta::default(), Some(reason));
        chunk.extra = guardrail_extra(self.intervened, trace);
        out.push(chunk);
    }

    /// Translates one event, appending the resulting canonical chunks to `out`.
    pub fn push(
        &mut self,
        event: &ConverseStreamOutput,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), GatewayError> {
        if self.finished {
            return Ok(());
        }
        match event {
            ConverseStreamOutput::MessageStart(_) => self.start(out),
            ConverseStreamOutput::ContentBlockStart(ev) => {
                if let Some(ContentBlockStart::ToolUse(tool)) = ev.start() {
                    self.start(out);
                    let (block, _) = self.tool(ev.content_block_index());
                    let fragment =
                        ToolCallDelta::start(block.ordinal, tool.tool_use_id(), tool.name());
                    out.push(ChatChunk::delta(
                        &self.meta,
                        Delta::tool_call(fragment),
                        None,
                    ));
                }
            }
            ConverseStreamOutput::ContentBlockDelta(ev) => match ev.delta() {
                Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                    self.start(out);
                    out.push(ChatChunk::delta(
                        &self.meta,
                        Delta::text(text.clone()),
                        None,
                    ));
                }
                Some(ContentBlockDelta::ToolUse(tool)) if !tool.input().is_empty() => {
                    self.start(out);
                    let (block, _) = self.tool(ev.content_block_index());
                    block.has_arguments = true;
                    let fragment = ToolCallDelta::arguments(block.ordinal, tool.input());
                    out.push(ChatChunk::delta(
                        &self.meta,
                        Delta::tool_call(fragment),
                        None,
                    ));
                }
                Some(ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(
                    text,
                ))) if !text.is_empty() => {
                    self.start(out);
                    let delta = Delta {
                        reasoning_content: Some(text.clone()),
                        ..Delta::default()
                    };
                    out.push(ChatChunk::delta(&self.meta, delta, None));
                }
                Some(ContentBlockDelta::ReasoningContent(
                    ReasoningContentBlockDelta::Signature(signature),
                )) if !signature.is_empty() => {
                    self.start(out);
                    let block = ThinkingBlock::Thinking {
                        thinking: String::new(),
                        signature: Some(signature.clone()),
                    };
                    out.push(ChatChunk::delta(&self.meta, thinking_delta(block), None));
                }
                Some(ContentBlockDelta::ReasoningContent(
                    ReasoningContentBlockDelta::RedactedContent(data),
                )) => {
                    self.start(out);
                    let block = ThinkingBlock::RedactedThinking {
                        data: BASE64.encode(data.as_ref()),
                    };
                    out.push(ChatChunk::delta(&self.meta, thinking_delta(block), None));
                }
                _ => {}
            },
            ConverseStreamOutput::ContentBlockStop(ev) => {
                let index = ev.content_block_index();
                if let Some(block) = self.tools.iter_mut().find(|t| t.block == index) {
                    if !block.has_arguments {
                        block.has_arguments = true;
                        let fragment = ToolCallDelta::arguments(block.ordinal, "{}");
                        out.push(ChatChunk::delta(
                            &self.meta,
                            Delta::tool_call(fragment),
                            None,
                        ));
                    }
                }
            }
            ConverseStreamOutput::MessageStop(ev) => {
                self.start(out);
                self.stop = Some(map_stop_reason(ev.stop_reason()));
                self.intervened = ev.stop_reason() == &StopReason::GuardrailIntervened;
                if let Some(usage) = self.pending_usage.take() {
                    self.finish_chunk(out, None);
                    out.push(ChatChunk::usage(&self.meta, usage));
                }
            }
            ConverseStreamOutput::Metadata(ev) => {
                let usage = ev.usage().map(usage_from).unwrap_or_default();
                if self.stop.is_some() {
                    self.finish_chunk(out, ev.trace().and_then(|t| t.guardrail()));
                    out.push(ChatChunk::usage(&self.meta, usage));
                } else {
                    self.pending_usage = Some(usage);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes the stream. After `messageStop` without `metadata`, emits the finish chunk (no usage);
    /// without `messageStop` the stream was cut short: an error.
    pub fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        if self.finished {
            return Ok(());
        }
        if self.stop.is_none() {
            return Err(GatewayError::upstream_protocol(
                "stream ended before messageStop",
            ));
        }
        self.finish_chunk(out, None);
        Ok(())
    }
}

/// A delta carrying one signed-reasoning piece.
fn thinking_delta(block: ThinkingBlock) -> Delta {
    Delta {
        thinking_blocks: Some(vec![block]),
        ..Delta::default()
    }
}

impl crate::stream::StreamDecoder for ConverseStreamDecoder {
    /// One ConverseStream event, as the SDK decoded it.
    type Item = ConverseStreamOutput;

    fn push(
        &mut self,
        item: ConverseStreamOutput,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), GatewayError> {
        ConverseStreamDecoder::push(self, &item, out)
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        ConverseStreamDecoder::finish(self, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent, ConversationRole,
        ConverseStreamMetadataEvent, MessageStartEvent, MessageStopEvent, StopReason, TokenUsage,
        ToolUseBlockDelta, ToolUseBlockStart,
    };
    use serde_json::{json, Value};

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-x".into(),
            created: 3,
            model: "m".into(),
        }
    }

    fn message_start() -> ConverseStreamOutput {
        ConverseStreamOutput::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .unwrap(),
        )
    }

    fn delta(index: i32, delta: ContentBlockDelta) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockDelta(
            ContentBlockDeltaEvent::builder()
                .content_block_index(index)
                .delta(delta)
                .build()
                .unwrap(),
        )
    }

    fn text(index: i32, t: &str) -> ConverseStreamOutput {
        delta(index, ContentBlockDelta::Text(t.into()))
    }

    fn tool_start(index: i32, id: &str, name: &str) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockStart(
            ContentBlockStartEvent::builder()
                .content_block_index(index)
                .start(ContentBlockStart::ToolUse(
                    ToolUseBlockStart::builder()
                        .tool_use_id(id)
                        .name(name)
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
    }

    fn tool_input(index: i32, piece: &str) -> ConverseStreamOutput {
        delta(
            index,
            ContentBlockDelta::ToolUse(ToolUseBlockDelta::builder().input(piece).build().unwrap()),
        )
    }

    fn block_stop(index: i32) -> ConverseStreamOutput {
        ConverseStreamOutput::ContentBlockStop(
            ContentBlockStopEvent::builder()
                .content_block_index(index)
                .build()
                .unwrap(),
        )
    }

    fn message_stop(reason: StopReason) -> ConverseStreamOutput {
        ConverseStreamOutput::MessageStop(
            MessageStopEvent::builder()
                .stop_reason(reason)
                .build()
                .unwrap(),
        )
    }

    fn metadata(input: i32, output: i32) -> ConverseStreamOutput {
        ConverseStreamOutput::Metadata(
            ConverseStreamMetadataEvent::builder()
                .usage(
                    TokenUsage::builder()
                        .input_tokens(input)
                        .output_tokens(output)
                        .total_tokens(input + output)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
    }

    fn run(events: &[ConverseStreamOutput]) -> (Vec<ChatChunk>, Result<(), GatewayError>) {
        let mut dec = ConverseStreamDecoder::new(meta());
        let mut out = Vec::new();
        for ev in events {
            dec.push(ev, &mut out).unwrap();
        }
        let result = dec.finish(&mut out);
        (out, result)
    }

    fn choices(chunks: &[ChatChunk]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| {
                let v = serde_json::to_value(c).unwrap();
                if c.is_usage_only() {
                    json!({"usage": v["usage"]})
                } else {
                    assert_eq!(v["id"], "chatcmpl-x");
                    v["choices"][0].clone()
                }
            })
            .collect()
    }

    #[test]
    fn tool_calling_turn_from_protocols_5_9() {
        let (out, result) = run(&[
            message_start(),
            text(0, "Let me check."),
            block_stop(0),
            tool_start(1, "tooluse_Ab12", "get_weather"),
            tool_input(1, "{\"city\":"),
            tool_input(1, "\"Paris\"}"),
            block_stop(1),
            tool_start(2, "tooluse_Cd34", "get_time"),
            block_stop(2),
            message_stop(StopReason::ToolUse),
            metadata(400, 30),
        ]);
        result.unwrap();
        let n = json!(null);
        assert_eq!(
            choices(&out),
            vec![
                json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"content": "Let me check."}, "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "tooluse_Ab12", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]},
                    "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]},
                    "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "tooluse_Cd34", "type": "function",
                    "function": {"name": "get_time", "arguments": ""}}]}, "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
                    "finish_reason": n, "logprobs": n}),
                json!({"index": 0, "delta": {}, "finish_reason": "tool_calls", "logprobs": n}),
                json!({"usage": {"prompt_tokens": 400, "completion_tokens": 30, "total_tokens": 430}}),
            ]
        );
    }

    #[test]
    fn text_and_reasoning_stream() {
        let (out, result) = run(&[
            message_start(),
            delta(
                0,
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text("hmm".into())),
            ),
            delta(
                0,
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature(
                    "sig".into(),
                )),
            ),
            text(1, "Hi"),
            text(1, ""),
            message_stop(StopReason::MaxTokens),
            metadata(5, 1),
        ]);
        result.unwrap();
        let c = choices(&out);
        assert_eq!(c.len(), 6);
        assert_eq!(c[1]["delta"], json!({"reasoning_content": "hmm"}));
        assert_eq!(
            c[2]["delta"],
            json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "sig"}]})
        );
        assert_eq!(c[3]["delta"], json!({"content": "Hi"}));
        assert_eq!(c[4]["finish_reason"], "length");
        assert_eq!(out[5].usage, Some(Usage::from_parts(5, 1, 0, 0)));
    }

    #[test]
    fn finish_without_metadata_emits_finish_only() {
        let (out, result) = run(&[
            message_start(),
            text(0, "x"),
            message_stop(StopReason::EndTurn),
        ]);
        result.unwrap();
        assert_eq!(out.len(), 3, "messageStop alone emits nothing");
        assert_eq!(out[2].choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(out.iter().all(|c| !c.is_usage_only()));
    }

    #[test]
    fn finish_without_message_stop_is_an_error() {
        let (out, result) = run(&[message_start(), text(0, "x")]);
        assert_eq!(out.len(), 2);
        let err = result.unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.message(), "stream ended before messageStop");
    }

    #[test]
    fn untranslated_events_are_ignored_and_finish_is_idempotent() {
        let mut dec = ConverseStreamDecoder::new(meta());
        let mut out = Vec::new();
        // Delta kinds the decoder does not translate produce nothing.
        dec.push(
            &delta(0, ContentBlockDelta::ToolResult(Vec::new())),
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        for ev in [
            message_start(),
            message_stop(StopReason::EndTurn),
            metadata(1, 1),
        ] {
            dec.push(&ev, &mut out).unwrap();
        }
        assert_eq!(out.len(), 3);
        dec.finish(&mut out).unwrap();
        dec.push(&text(0, "late"), &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
