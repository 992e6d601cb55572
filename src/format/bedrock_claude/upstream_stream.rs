//! Claude stream events (InvokeModelWithResponseStream `chunk.bytes`) → canonical chunks.
//!
//! The state machine of PROTOCOLS 5.7: `message_start` opens the reply with a role chunk, content
//! block deltas become content / tool-call / reasoning deltas, `message_delta` carries the stop reason
//! and cumulative usage, and `message_stop` emits the finish chunk followed by the usage chunk.
//!
//! Events are parsed into a borrowed struct: text pieces without JSON escapes are sliced straight
//! out of the event bytes, so the only allocation per delta is the chunk itself.
//!
//! A stream that ends before `message_stop` is an error, never a normal finish: a truncated answer
//! must not reach the client looking complete.

use std::borrow::Cow;

use serde::Deserialize;

use super::upstream_reply::{map_stop_reason, ClaudeUsage};
use crate::error::GatewayError;
use crate::format::{BEDROCK_TRACE, GUARDRAIL_ACTION};
use crate::model::{
    finish_reason, ChatChunk, ChunkMeta, Delta, ThinkingBlock, ToolCallDelta, Usage,
};

/// A string borrowed from the event bytes when it has no escapes (serde only borrows a `Cow` that
/// is a field of its own, not one inside an `Option`, hence the newtype).
#[derive(Deserialize)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<StartMessage>,
    #[serde(default, borrow)]
    content_block: Option<BlockStart<'a>>,
    #[serde(default, borrow)]
    delta: Option<EventDelta<'a>>,
    #[serde(default)]
    usage: Option<ClaudeUsage>,
    #[serde(default, rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<InvocationMetrics>,
    #[serde(default, rename = "amazon-bedrock-guardrailAction", borrow)]
    guardrail_action: Option<Str<'a>>,
    #[serde(default, rename = "amazon-bedrock-trace")]
    trace: Option<serde_json::Value>,
    #[serde(default, borrow)]
    error: Option<ErrorBody<'a>>,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: Option<ClaudeUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Str<'a>>,
    #[serde(default, borrow)]
    name: Option<Str<'a>>,
    #[serde(default, borrow)]
    text: Option<Str<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Str<'a>>,
    #[serde(default, borrow)]
    data: Option<Str<'a>>,
}

/// A `content_block_delta` delta or a `message_delta` delta (which has no `type`).
#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(default, borrow)]
    text: Option<Str<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Str<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Str<'a>>,
    #[serde(default, borrow)]
    signature: Option<Str<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvocationMetrics {
    #[serde(default)]
    input_token_count: Option<u64>,
    #[serde(default)]
    output_token_count: Option<u64>,
    #[serde(default)]
    cache_read_input_token_count: Option<u64>,
    #[serde(default)]
    cache_write_input_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(default, borrow)]
    message: Option<Str<'a>>,
}

/// What an open content block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool-use block: its OpenAI tool-call ordinal and whether an arguments piece went out.
    Tool {
        ordinal: u32,
        sent_arguments: bool,
    },
    /// redacted_thinking (sent whole at its start), server-tool blocks, anything newer.
    Other,
}

/// Decodes one Claude stream into canonical chunks.
#[derive(Debug)]
pub struct ClaudeStreamDecoder {
    meta: ChunkMeta,
    started: bool,
    stopped: bool,
    /// Open content blocks by Claude block index (Claude never interleaves, so this stays tiny).
    open: Vec<(u32, BlockKind)>,
    tool_count: u32,
    stop_reason: Option<String>,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    /// A guardrail's verdict and trace, when an event carried them.
    guardrail: Option<(String, Option<serde_json::Value>)>,
}

impl ClaudeStreamDecoder {
    /// A decoder whose chunks carry `meta`'s id, created time and model.
    pub fn new(meta: ChunkMeta) -> Self {
        ClaudeStreamDecoder {
            meta,
            started: false,
            stopped: false,
            open: Vec::new(),
            tool_count: 0,
            stop_reason: None,
            input: 0,
            output: 0,
            cache_read: 0,
            cache_write: 0,
            guardrail: None,
        }
    }

    /// Decodes one event (the JSON of one `chunk.bytes`), appending the chunks it yields.
    pub fn push(
        &mut self,
        event_json: &[u8],
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), GatewayError> {
        if self.stopped {
            return Ok(());
        }
        let event: Event<'_> = serde_json::from_slice(event_json).map_err(|e| {
            GatewayError::upstream_protocol(format!("invalid Claude stream event: {e}"))
        })?;
        if let Some(action) = &event.guardrail_action {
            let trace = event.trace.clone();
            self.guardrail = Some((action.as_str().to_owned(), trace));
        }
        match event.kind.as_ref() {
            "message_start" => {
                if let Some(usage) = event.message.and_then(|m| m.usage) {
                    self.record_usage(usage);
                }
                self.start(out);
            }
            "content_block_start" => {
                self.start(out);
                self.block_start(event.index.unwrap_or(0), event.content_block, out);
            }
            "content_block_delta" => {
                self.start(out);
                if let Some(delta) = event.delta {
                    self.block_delta(event.index.unwrap_or(0), delta, out)?;
                }
            }
            "content_block_stop" => {
                let index = event.index.unwrap_or(0);
                if let Some(pos) = self.open.iter().position(|(i, _)| *i == index) {
                    let (_, kind) = self.open.swap_remove(pos);
                    self.close_block(kind, out);
                }
            }
            "message_delta" => {
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason.into_owned());
                }
                if let Some(usage) = event.usage {
                    self.record_usage(usage);
                }
            }
            "message_stop" => {
                self.start(out);
                if let Some(m) = event.metrics {
                    self.input = m.input_token_count.unwrap_or(self.input);
                    self.output = m.output_token_count.unwrap_or(self.output);
                    self.cache_read = m.cache_read_input_token_count.unwrap_or(self.cache_read);
                    self.cache_write = m.cache_write_input_token_count.unwrap_or(self.cache_write);
                }
                // Blocks the upstream never closed still owe their "{}" arguments.
                for (_, kind) in std::mem::take(&mut self.open) {
                    self.close_block(kind, out);
                }
                let intervened = self
                    .guardrail
                    .as_ref()
                    .is_some_and(|(a, _)| a == "INTERVENED");
                let reason = if intervened {
                    finish_reason::CONTENT_FILTER
                } else if self.tool_count > 0 {
                    finish_reason::TOOL_CALLS
                } else {
                    map_stop_reason(self.stop_reason.as_deref().unwrap_or("end_turn"))
                };
                let mut finish = ChatChunk::delta(&self.meta, Delta::default(), Some(reason));
                if let Some((action, trace)) = self.guardrail.take() {
                    finish
                        .extra
                        .insert(GUARDRAIL_ACTION.into(), serde_json::Value::String(action));
                    if let Some(trace) = trace {
                        finish.extra.insert(BEDROCK_TRACE.into(), trace);
                    }
                }
                out.push(finish);
                out.push(ChatChunk::usage(&self.meta, self.usage()));
                self.stopped = true;
            }
            "error" => {
                let (kind, message) = match event.error {
                    Some(e) => (e.kind, e.message),
                    None => (None, None),
                };
                let status = match kind.as_ref().map(Str::as_str) {
                    Some("invalid_request_error") => 400,
                    Some("authentication_error") => 401,
                    Some("permission_error") => 403,
                    Some("not_found_error") => 404,
                    Some("request_too_large") => 413,
                    Some("rate_limit_error") => 429,
                    Some("overloaded_error") => 503,
                    Some("timeout_error") => 504,
                    _ => 500,
                };
                let message =
                    message.map_or_else(|| "Claude stream error".to_owned(), Str::into_owned);
                return Err(GatewayError::upstream_status(status, message));
            }
            _ => {} // ping and event types newer than this decoder
        }
        Ok(())
    }

    /// Ends the stream: `Ok` only after `message_stop`.
    pub fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        if self.stopped {
            Ok(())
        } else {
            Err(GatewayError::upstream_protocol(
                "stream ended before message_stop",
            ))
        }
    }

    /// Usage so far, in OpenAI terms.
    fn usage(&self) -> Usage {
        Usage::from_parts(self.input, self.output, self.cache_read, self.cache_write)
    }

    fn record_usage(&mut self, usage: ClaudeUsage) {
        self.input = usage.input_tokens.unwrap_or(self.input);
        self.output = usage.output_tokens.unwrap_or(self.output);
        self.cache_read = usage.cache_read_input_tokens.unwrap_or(self.cache_read);
        self.cache_write = usage
            .cache_creation_input_tokens
            .unwrap_or(self.cache_write);
    }

    /// Emits the role chunk once, before anything else.
    fn start(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push(ChatChunk::delta(&self.meta, Delta::role(), None));
        }
    }

    fn block_start(&mut self, index: u32, block: Option<BlockStart<'_>>, out: &mut Vec<ChatChunk>) {
        let Some(block) = block else {
            self.open.push((index, BlockKind::Other));
            return;
        };
        let kind = match block.kind.as_ref() {
            "text" => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    out.push(ChatChunk::delta(
                        &self.meta,
                        Delta::text(text.into_owned()),
                        None,
                    ));
                }
                BlockKind::Text
            }
            "thinking" => {
                if let Some(text) = block.thinking.filter(|t| !t.is_empty()) {
                    out.push(ChatChunk::delta(
                        &self.meta,
                        reasoning(text.into_owned()),
                        None,
                    ));
                }
                BlockKind::Thinking
            }
            "redacted_thinking" => {
                if let Some(data) = block.data {
                    let block = ThinkingBlock::RedactedThinking {
                        data: data.into_owned(),
                    };
                    out.push(ChatChunk::delta(&self.meta, thinking_block(block), None));
                }
                BlockKind::Other
            }
            "tool_use" => {
                let ordinal = self.tool_count;
                self.tool_count += 1;
                let id = block.id.map(Str::into_owned).unwrap_or_default();
                let name = block.name.map(Str::into_owned).unwrap_or_default();
                out.push(ChatChunk::delta(
                    &self.meta,
                    Delta::tool_call(ToolCallDelta::start(ordinal, id, name)),
                    None,
                ));
                BlockKind::Tool {
                    ordinal,
                    sent_arguments: false,
                }
            }
            _ => BlockKind::Other,
        };
        self.open.push((index, kind));
    }

    fn block_delta(
        &mut self,
        index: u32,
        delta: EventDelta<'_>,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), GatewayError> {
        match delta.kind.as_ref().map(Str::as_str) {
            Some("text_delta") => {
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(ChatChunk::delta(
                        &self.meta,
                        Delta::text(text.into_owned()),
                        None,
                    ));
                }
            }
            Some("thinking_delta") => {
                if let Some(text) = delta.thinking.filter(|t| !t.is_empty()) {
                    out.push(ChatChunk::delta(
                        &self.meta,
                        reasoning(text.into_owned()),
                        None,
                    ));
                }
            }
            Some("input_json_delta") => {
                let Some(piece) = delta.partial_json.filter(|p| !p.is_empty()) else {
                    return Ok(());
                };
                let block = self.open.iter_mut().find(|(i, _)| *i == index);
                let Some((
                    _,
                    BlockKind::Tool {
                        ordinal,
                        sent_arguments,
                    },
                )) = block
                else {
                    return Err(GatewayError::upstream_protocol(format!(
                        "input_json_delta for content block {index}, which is not an open tool_use block"
                    )));
                };
                *sent_arguments = true;
                let ordinal = *ordinal;
                out.push(ChatChunk::delta(
                    &self.meta,
                    Delta::tool_call(ToolCallDelta::arguments(ordinal, piece.into_owned())),
                    None,
                ));
            }
            Some("signature_delta") => {
                if let Some(signature) = delta.signature.filter(|s| !s.is_empty()) {
                    let block = ThinkingBlock::Thinking {
                        thinking: String::new(),
                        signature: Some(signature.into_owned()),
                    };
                    out.push(ChatChunk::delta(&self.meta, thinking_block(block), None));
                }
            }
            // citations_delta and newer kinds: no OpenAI equivalent.
            _ => {}
        }
        Ok(())
    }

    fn close_block(&mut self, kind: BlockKind, out: &mut Vec<ChatChunk>) {
        if let BlockKind::Tool {
            ordinal,
            sent_arguments: false,
        } = kind
        {
            out.push(ChatChunk::delta(
                &self.meta,
                Delta::tool_call(ToolCallDelta::arguments(ordinal, "{}")),
                None,
            ));
        }
    }
}

/// A delta carrying one signed-reasoning piece.
fn thinking_block(block: ThinkingBlock) -> Delta {
    Delta {
        thinking_blocks: Some(vec![block]),
        ..Delta::default()
    }
}

fn reasoning(text: String) -> Delta {
    Delta {
        reasoning_content: Some(text),
        ..Delta::default()
    }
}

impl crate::stream::StreamDecoder for ClaudeStreamDecoder {
    /// The JSON of one InvokeModelWithResponseStream `chunk` payload.
    type Item = bytes::Bytes;

    fn push(&mut self, item: bytes::Bytes, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        ClaudeStreamDecoder::push(self, &item, out)
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        ClaudeStreamDecoder::finish(self, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::{json, Value};

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-1".into(),
            created: 1_732_000_000,
            model: "m".into(),
        }
    }

    /// Runs the events through a decoder; returns the chunks as JSON and the finish result.
    fn run(events: &[Value]) -> (Vec<Value>, Result<(), GatewayError>) {
        let mut dec = ClaudeStreamDecoder::new(meta());
        let mut out = Vec::new();
        for e in events {
            dec.push(&serde_json::to_vec(e).unwrap(), &mut out).unwrap();
        }
        let fin = dec.finish(&mut out);
        (
            out.iter()
                .map(|c| serde_json::to_value(c).unwrap())
                .collect(),
            fin,
        )
    }

    /// The interesting part of a chunk: choices[0] without nulls, or the usage.
    fn brief(chunk: &Value) -> Value {
        assert_eq!(chunk["id"], "chatcmpl-1");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "m");
        match chunk["choices"].as_array().unwrap().first() {
            Some(c) => json!({"delta": c["delta"], "finish_reason": c["finish_reason"]}),
            None => json!({"usage": chunk["usage"]}),
        }
    }

    #[test]
    fn worked_example_text() {
        let (chunks, fin) = run(&[
            json!({"type":"message_start","message":{"id":"msg_bdrk_1","type":"message","role":"assistant","model":"claude",
                "content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":620,"output_tokens":2}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"ping"}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"It is 21°C in Paris."}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":11}}),
            json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":620,"outputTokenCount":11,"invocationLatency":900,"firstByteLatency":400}}),
        ]);
        fin.unwrap();
        let got: Vec<Value> = chunks.iter().map(brief).collect();
        assert_eq!(
            got,
            vec![
                json!({"delta":{"role":"assistant","content":""},"finish_reason":null}),
                json!({"delta":{"content":"It is 21°C in Paris."},"finish_reason":null}),
                json!({"delta":{},"finish_reason":"stop"}),
                json!({"usage":{"prompt_tokens":620,"completion_tokens":11,"total_tokens":631}}),
            ]
        );
        assert_eq!(chunks[3]["choices"], json!([]));
    }

    #[test]
    fn tool_calls_thinking_and_empty_input() {
        let (chunks, fin) = run(&[
            json!({"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":50}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
            json!({"type":"content_block_stop","index":1}),
            json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"now","input":{}}}),
            json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}),
            json!({"type":"content_block_stop","index":2}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}),
            json!({"type":"message_stop"}),
        ]);
        fin.unwrap();
        let got: Vec<Value> = chunks.iter().map(brief).collect();
        assert_eq!(
            got,
            vec![
                json!({"delta":{"role":"assistant","content":""},"finish_reason":null}),
                json!({"delta":{"reasoning_content":"Let me think"},"finish_reason":null}),
                json!({"delta":{"thinking_blocks":[{"type":"thinking","thinking":"","signature":"sig"}]},"finish_reason":null}),
                json!({"delta":{"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}),
                json!({"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}),
                json!({"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}),
                json!({"delta":{"tool_calls":[{"index":1,"id":"toolu_2","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":null}),
                json!({"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]},"finish_reason":null}),
                json!({"delta":{},"finish_reason":"tool_calls"}),
                json!({"usage":{"prompt_tokens":60,"completion_tokens":30,"total_tokens":90,
                    "prompt_tokens_details":{"cached_tokens":50}}}),
            ]
        );
    }

    #[test]
    fn invocation_metrics_win_and_cache_write_counts() {
        let (chunks, fin) = run(&[
            json!({"type":"message_start","message":{"usage":{"input_tokens":1,"output_tokens":1}}}),
            json!({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":3}}),
            json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":20,"outputTokenCount":4,
                "cacheReadInputTokenCount":5,"cacheWriteInputTokenCount":6}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}),
        ]);
        fin.unwrap();
        let got: Vec<Value> = chunks.iter().map(brief).collect();
        assert_eq!(
            got,
            vec![
                json!({"delta":{"role":"assistant","content":""},"finish_reason":null}),
                json!({"delta":{},"finish_reason":"length"}),
                json!({"usage":{"prompt_tokens":31,"completion_tokens":4,"total_tokens":35,
                    "prompt_tokens_details":{"cached_tokens":5,"cache_write_tokens":6}}}),
            ]
        );
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let (chunks, fin) = run(&[
            json!({"type":"message_start","message":{"usage":{"input_tokens":1,"output_tokens":1}}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"half"}}),
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}),
        ]);
        assert_eq!(chunks.len(), 2);
        let e = fin.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UpstreamProtocol);
        assert_eq!(e.message(), "stream ended before message_stop");
        let (chunks, fin) = run(&[]);
        assert!(chunks.is_empty());
        assert!(fin.is_err());
    }

    #[test]
    fn error_event_and_bad_json() {
        let mut dec = ClaudeStreamDecoder::new(meta());
        let mut out = Vec::new();
        let e = dec
            .push(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(e.message(), "Overloaded");
        assert_eq!(e.status(), 503);
        assert!(e.is_retryable());
        assert!(out.is_empty());

        let e = dec.push(b"{oops", &mut out).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UpstreamProtocol);

        let e = dec
            .push(br#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}"#, &mut out)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UpstreamProtocol);
    }

    #[test]
    fn optional_strings_borrow_when_unescaped() {
        let json = br#"{"type":"text_delta","text":"plain","partial_json":"esc\"aped"}"#;
        let d: EventDelta<'_> = serde_json::from_slice(json).unwrap();
        assert!(matches!(d.text, Some(Str(Cow::Borrowed("plain")))));
        assert!(matches!(d.partial_json, Some(Str(Cow::Owned(ref s))) if s == "esc\"aped"));
    }

    #[test]
    fn unknown_events_and_escaped_text() {
        let (chunks, fin) = run(&[
            json!({"type":"message_start","message":{}}),
            json!({"type":"some_future_event","x":1}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"zz"}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"line\n\"q\""}}),
            json!({"type":"message_stop"}),
        ]);
        fin.unwrap();
        assert_eq!(
            brief(&chunks[1]),
            json!({"delta":{"thinking_blocks":[{"type":"redacted_thinking","data":"zz"}]},"finish_reason":null})
        );
        assert_eq!(
            brief(&chunks[2]),
            json!({"delta":{"content":"line\n\"q\""},"finish_reason":null})
        );
        assert_eq!(
            brief(&chunks[3]),
            json!({"delta":{},"finish_reason":"stop"})
        );
        assert_eq!(
            brief(&chunks[4]),
            json!({"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}})
        );
    }
}
