//! Canonical reply → Claude format, for Claude-speaking clients (`/v1/messages`,
//! `?target_format=bedrock_claude`, Bedrock `invoke` / `invoke-with-response-stream`).
//!
//! [`encode_client_response`] writes an Anthropic Messages response; [`ClaudeStreamEncoder`] turns
//! canonical chunks into the typed Anthropic stream events ([`ClaudeEvent`]):
//!
//! ```text
//! message_start
//! (content_block_start, content_block_delta*, content_block_stop)*
//! message_delta        (stop_reason + usage: sent once both the finish and the usage chunk are in)
//! message_stop
//! ```
//!
//! The block structure comes from the block sequencer shared with the Converse encoder; the wire (SSE, or event-stream
//! `chunk` frames) is the framer's business.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::format::blocks::{BlockEvent, BlockKind, BlockSequencer};
use crate::format::{InvocationMetrics, BEDROCK_TRACE, GUARDRAIL_ACTION};
use crate::model::{finish_reason, ChatChunk, ChatResponse, ThinkingBlock, Usage};
use crate::stream::{EventEncoder, Framer, WireEvent};

/// The Claude message id for an OpenAI completion id (`chatcmpl-X` → `msg_X`).
fn message_id(id: &str) -> String {
    match id.strip_prefix("chatcmpl-") {
        Some(rest) => format!("msg_{rest}"),
        None => id.to_owned(),
    }
}

/// OpenAI `finish_reason` → Claude `stop_reason`.
pub(crate) fn stop_reason(finish: &str) -> &'static str {
    match finish {
        finish_reason::LENGTH => "max_tokens",
        finish_reason::TOOL_CALLS | "function_call" => "tool_use",
        finish_reason::CONTENT_FILTER => "refusal",
        _ => "end_turn",
    }
}

/// Encodes a complete canonical reply as an Anthropic Messages response.
pub fn encode_client_response(resp: &ChatResponse) -> Value {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    if let Some(msg) = choice.map(|c| &c.message) {
        match msg.thinking_blocks.as_deref().filter(|b| !b.is_empty()) {
            // Claude's own blocks, signatures intact, so the client can send them back.
            Some(blocks) => content.extend(blocks.iter().map(thinking_block_json)),
            None => {
                if let Some(thinking) = msg.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                    // Clients' SDKs require `signature`; a non-Claude model gives none.
                    content
                        .push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
                }
            }
        }
        let text = msg
            .content
            .as_deref()
            .filter(|t| !t.is_empty())
            .or_else(|| msg.refusal.as_deref().filter(|r| !r.is_empty()));
        if let Some(text) = text {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in msg.tool_calls.iter().flatten() {
            let input = serde_json::from_str::<Value>(&call.function.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| Value::Object(Map::new()));
            content.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
        }
    }
    let has_tools =
        choice.is_some_and(|c| c.message.tool_calls.as_ref().is_some_and(|t| !t.is_empty()));
    let reason = match choice.and_then(|c| c.finish_reason.as_deref()) {
        Some(f) => stop_reason(f),
        None if has_tools => "tool_use",
        None => "end_turn",
    };

    let usage = match &resp.usage {
        Some(u) => MessageUsage::of(u),
        None => MessageUsage {
            input_tokens: Some(0),
            ..MessageUsage::default()
        },
    };
    let mut out = json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": usage,
    });
    // A guardrail's verdict and trace, as InvokeModel writes them beside the message.
    for key in [GUARDRAIL_ACTION, BEDROCK_TRACE] {
        if let Some(v) = resp.extra.get(key) {
            out[key] = v.clone();
        }
    }
    out
}

/// A canonical thinking block as an Anthropic content block.
fn thinking_block_json(block: &ThinkingBlock) -> Value {
    match block {
        ThinkingBlock::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking,
            "signature": signature.as_deref().unwrap_or("")}),
        ThinkingBlock::RedactedThinking { data } => {
            json!({"type": "redacted_thinking", "data": data})
        }
    }
}

/// One event of an Anthropic Messages stream.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClaudeEvent<'a> {
    /// Opens the message.
    MessageStart {
        /// The message shell (no content yet).
        message: MessageShell<'a>,
    },
    /// Opens a content block.
    ContentBlockStart {
        /// Block index.
        index: u32,
        /// The empty block.
        content_block: ContentBlock<'a>,
    },
    /// Adds to the open block.
    ContentBlockDelta {
        /// Block index.
        index: u32,
        /// The piece.
        delta: BlockDelta<'a>,
    },
    /// Closes a block.
    ContentBlockStop {
        /// Block index.
        index: u32,
    },
    /// The stop reason and the usage.
    MessageDelta {
        /// `stop_reason` and `stop_sequence`.
        delta: StopDelta,
        /// Token counts.
        usage: MessageUsage,
    },
    /// Closes the message.
    MessageStop {
        /// Bedrock's invocation metrics (only on the Bedrock runtime surface).
        #[serde(
            rename = "amazon-bedrock-invocationMetrics",
            skip_serializing_if = "Option::is_none"
        )]
        metrics: Option<InvocationMetrics>,
        /// A guardrail's verdict, when one ran.
        #[serde(
            rename = "amazon-bedrock-guardrailAction",
            skip_serializing_if = "Option::is_none"
        )]
        guardrail_action: Option<Value>,
        /// A guardrail's trace, when asked for.
        #[serde(
            rename = "amazon-bedrock-trace",
            skip_serializing_if = "Option::is_none"
        )]
        trace: Option<Value>,
    },
}

impl WireEvent for ClaudeEvent<'_> {
    fn name(&self) -> Option<&'static str> {
        Some(match self {
            ClaudeEvent::MessageStart { .. } => "message_start",
            ClaudeEvent::ContentBlockStart { .. } => "content_block_start",
            ClaudeEvent::ContentBlockDelta { .. } => "content_block_delta",
            ClaudeEvent::ContentBlockStop { .. } => "content_block_stop",
            ClaudeEvent::MessageDelta { .. } => "message_delta",
            ClaudeEvent::MessageStop { .. } => "message_stop",
        })
    }
}

/// The `message` of `message_start`.
#[derive(Debug, Serialize)]
pub struct MessageShell<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: MessageUsage,
}

/// An empty content block, as `content_block_start` opens it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    /// Answer text.
    Text {
        /// Always empty at the start.
        text: &'static str,
    },
    /// Reasoning; the `signature` follows as a `signature_delta` (none for a non-Claude model).
    Thinking {
        /// Always empty at the start.
        thinking: &'static str,
        /// Always empty at the start.
        signature: &'static str,
    },
    /// Encrypted reasoning, whole.
    RedactedThinking {
        /// The opaque data, to be sent back unchanged.
        data: &'a str,
    },
    /// A tool call.
    ToolUse {
        /// Call id.
        id: std::borrow::Cow<'a, str>,
        /// Tool name.
        name: &'a str,
        /// Always `{}` at the start; the arguments follow as `input_json_delta`s.
        input: Map<String, Value>,
    },
}

/// The piece a `content_block_delta` carries.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum BlockDelta<'a> {
    /// Answer text.
    #[serde(rename = "text_delta")]
    Text {
        /// The text.
        text: &'a str,
    },
    /// Reasoning text.
    #[serde(rename = "thinking_delta")]
    Thinking {
        /// The text.
        thinking: &'a str,
    },
    /// The signature of a thinking block, just before it stops.
    #[serde(rename = "signature_delta")]
    Signature {
        /// The signature.
        signature: &'a str,
    },
    /// A piece of a tool call's JSON arguments.
    #[serde(rename = "input_json_delta")]
    InputJson {
        /// The piece.
        partial_json: &'a str,
    },
}

/// `message_delta.delta`.
#[derive(Debug, Serialize)]
pub struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

/// Claude usage members: `input_tokens` excludes cache reads and writes, which are reported apart.
#[derive(Debug, Default, Serialize)]
pub struct MessageUsage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<u64>,
    output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_creation_input_tokens: Option<u64>,
}

impl MessageUsage {
    fn of(usage: &Usage) -> Self {
        let cached = usage.cached_tokens();
        let written = usage.cache_write_tokens();
        MessageUsage {
            input_tokens: Some(usage.uncached_input_tokens()),
            output_tokens: usage.completion_tokens,
            cache_read_input_tokens: (cached > 0).then_some(cached),
            cache_creation_input_tokens: (written > 0).then_some(written),
        }
    }
}

/// Canonical chunks → Anthropic stream events.
#[derive(Debug, Default)]
pub struct ClaudeStreamEncoder {
    started: bool,
    /// `message_delta` went out (the finish and the usage are both known).
    delta_sent: bool,
    stopped: bool,
    blocks: BlockSequencer,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
    /// Add `amazon-bedrock-invocationMetrics` to `message_stop`, as Bedrock's own streams do.
    bedrock_metrics: bool,
    /// A guardrail's verdict and trace from the finish chunk, for `message_stop`.
    guardrail: (Option<Value>, Option<Value>),
}

impl ClaudeStreamEncoder {
    /// A new encoder; id and model are taken from the first chunk.
    pub fn new() -> Self {
        ClaudeStreamEncoder::default()
    }

    /// An encoder for the Bedrock runtime surface: `message_stop` carries the invocation metrics
    /// when the usage is known.
    pub fn bedrock() -> Self {
        ClaudeStreamEncoder {
            bedrock_metrics: true,
            ..ClaudeStreamEncoder::default()
        }
    }

    fn start<F: Framer>(&mut self, id: &str, model: &str, out: &mut F) {
        if self.started {
            return;
        }
        self.started = true;
        out.event(&ClaudeEvent::MessageStart {
            message: MessageShell {
                id: message_id(id),
                kind: "message",
                role: "assistant",
                model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: MessageUsage {
                    input_tokens: Some(0),
                    ..MessageUsage::default()
                },
            },
        });
    }

    /// Writes `message_delta` once the stop reason is known (with zero usage if none arrived).
    fn send_message_delta<F: Framer>(&mut self, out: &mut F) {
        if self.delta_sent {
            return;
        }
        self.delta_sent = true;
        out.event(&ClaudeEvent::MessageDelta {
            delta: StopDelta {
                stop_reason: self.stop_reason.unwrap_or("end_turn"),
                stop_sequence: None,
            },
            usage: self
                .usage
                .as_ref()
                .map(MessageUsage::of)
                .unwrap_or_default(),
        });
    }
}

/// Spells one block event as a Claude event.
fn claude_block_event<F: Framer>(event: BlockEvent<'_>, out: &mut F) {
    let event = match event {
        BlockEvent::Start { index, kind } => ClaudeEvent::ContentBlockStart {
            index,
            content_block: match kind {
                BlockKind::Text => ContentBlock::Text { text: "" },
                BlockKind::Thinking => ContentBlock::Thinking {
                    thinking: "",
                    signature: "",
                },
                BlockKind::RedactedThinking { data } => ContentBlock::RedactedThinking { data },
                BlockKind::ToolUse { call, id, name } => ContentBlock::ToolUse {
                    id: id.map_or_else(|| format!("toolu_{call}").into(), Into::into),
                    name,
                    input: Map::new(),
                },
            },
        },
        BlockEvent::Thinking { index, text } => ClaudeEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::Thinking { thinking: text },
        },
        BlockEvent::Signature { index, signature } => ClaudeEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::Signature { signature },
        },
        BlockEvent::Text { index, text } => ClaudeEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::Text { text },
        },
        BlockEvent::InputJson { index, json } => ClaudeEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::InputJson { partial_json: json },
        },
        BlockEvent::Stop { index } => ClaudeEvent::ContentBlockStop { index },
    };
    out.event(&event);
}

impl EventEncoder for ClaudeStreamEncoder {
    fn encode<F: Framer>(&mut self, chunk: &ChatChunk, out: &mut F) {
        if self.stopped {
            return;
        }
        self.start(&chunk.id, &chunk.model, out);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        if self.stop_reason.is_none() {
            if let Some(choice) = chunk.choices.first() {
                let mut emit = |e| claude_block_event(e, out);
                self.blocks.delta(&choice.delta, &mut emit);
                if let Some(finish) = choice.finish_reason.as_deref() {
                    self.blocks.close(&mut emit);
                    self.stop_reason = Some(stop_reason(finish));
                    self.guardrail = (
                        chunk.extra.get(GUARDRAIL_ACTION).cloned(),
                        chunk.extra.get(BEDROCK_TRACE).cloned(),
                    );
                }
            }
        }
        if self.stop_reason.is_some() && self.usage.is_some() {
            self.send_message_delta(out);
        }
    }

    fn finish<F: Framer>(&mut self, out: &mut F) {
        if self.stopped {
            return;
        }
        if !self.started {
            // Nothing arrived at all: still give the client a well-formed (empty) message.
            self.start(&crate::model::completion_id(), "", out);
        }
        self.blocks.close(&mut |e| claude_block_event(e, out));
        self.send_message_delta(out);
        let metrics = self
            .usage
            .as_ref()
            .filter(|_| self.bedrock_metrics)
            .map(InvocationMetrics::of);
        let (guardrail_action, trace) = std::mem::take(&mut self.guardrail);
        out.event(&ClaudeEvent::MessageStop {
            metrics,
            guardrail_action,
            trace,
        });
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorDialect, GatewayError};
    use crate::model::{ChunkMeta, Delta, ToolCallDelta};
    use crate::sse::{SseDecoder, SseFramer};

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-abc".into(),
            created: 1,
            model: "gpt-4o".into(),
        }
    }

    /// Parses SSE bytes back into `(event name, JSON)` pairs, checking name == data.type.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut dec = SseDecoder::new();
        dec.push(bytes);
        let mut out = Vec::new();
        while let Some(ev) = dec.next_event() {
            let name = ev.event.expect("every Claude event is named");
            let data: Value = serde_json::from_slice(&ev.data).unwrap();
            assert_eq!(data["type"], name.as_str());
            out.push((name, data));
        }
        assert_eq!(dec.buffered(), 0, "trailing bytes");
        out
    }

    /// Encodes onto the SSE wire the Anthropic clients read, and parses it back.
    fn run(chunks: &[ChatChunk]) -> Vec<(String, Value)> {
        let mut enc = ClaudeStreamEncoder::new();
        let mut out = SseFramer::new(ErrorDialect::Anthropic);
        for c in chunks {
            enc.encode(c, &mut out);
        }
        enc.finish(&mut out);
        events(&out.take())
    }

    fn names(evs: &[(String, Value)]) -> Vec<&str> {
        evs.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn complete_response() {
        let resp: ChatResponse = serde_json::from_value(json!({
            "id":"chatcmpl-abc","object":"chat.completion","created":1,"model":"gpt-4o",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me check.",
                "reasoning_content":"think",
                "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"call_2","type":"function","function":{"name":"bad","arguments":"{oops"}}]}}],
            "usage":{"prompt_tokens":120,"completion_tokens":7,"total_tokens":127,
                "prompt_tokens_details":{"cached_tokens":100,"cache_write_tokens":5}}
        }))
        .unwrap();
        assert_eq!(
            encode_client_response(&resp),
            json!({"id":"msg_abc","type":"message","role":"assistant","model":"gpt-4o",
                "content":[
                    {"type":"thinking","thinking":"think","signature":""},
                    {"type":"text","text":"Let me check."},
                    {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
                    {"type":"tool_use","id":"call_2","name":"bad","input":{}}],
                "stop_reason":"tool_use","stop_sequence":null,
                "usage":{"input_tokens":15,"output_tokens":7,"cache_read_input_tokens":100,"cache_creation_input_tokens":5}})
        );
    }

    #[test]
    fn complete_response_stop_reasons_and_no_usage() {
        for (finish, expected) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("weird", "end_turn"),
        ] {
            let resp: ChatResponse = serde_json::from_value(json!({
                "id":"resp-9","choices":[{"finish_reason":finish,"message":{"role":"assistant","content":""}}]
            }))
            .unwrap();
            let v = encode_client_response(&resp);
            assert_eq!(v["stop_reason"], expected);
            assert_eq!(v["id"], "resp-9");
            assert_eq!(v["content"], json!([]));
            assert_eq!(v["usage"], json!({"input_tokens":0,"output_tokens":0}));
        }
    }

    #[test]
    fn text_stream_sequence() {
        let m = meta();
        let evs = run(&[
            ChatChunk::delta(&m, Delta::role(), None),
            ChatChunk::delta(&m, Delta::text("Hel"), None),
            ChatChunk::delta(&m, Delta::text("lo"), None),
            ChatChunk::delta(&m, Delta::default(), Some("stop")),
            ChatChunk::usage(&m, Usage::from_parts(9, 2, 0, 0)),
        ]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            evs[0].1,
            json!({"type":"message_start","message":{"id":"msg_abc","type":"message","role":"assistant","model":"gpt-4o",
                "content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}})
        );
        assert_eq!(
            evs[1].1,
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
        );
        assert_eq!(
            evs[2].1,
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}})
        );
        assert_eq!(evs[4].1, json!({"type":"content_block_stop","index":0}));
        assert_eq!(
            evs[5].1,
            json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
                "usage":{"output_tokens":2,"input_tokens":9}})
        );
        assert_eq!(evs[6].1, json!({"type":"message_stop"}));
    }

    #[test]
    fn reasoning_text_and_tools_get_their_own_blocks() {
        let m = meta();
        let reasoning = Delta {
            reasoning_content: Some("hmm".into()),
            ..Delta::default()
        };
        let evs = run(&[
            ChatChunk::delta(&m, Delta::role(), None),
            ChatChunk::delta(&m, reasoning, None),
            ChatChunk::delta(&m, Delta::text("Checking."), None),
            ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::start(0, "call_1", "get_weather")),
                None,
            ),
            ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::arguments(0, "{\"city\":")),
                None,
            ),
            ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::arguments(0, "\"Paris\"}")),
                None,
            ),
            ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::start(1, "call_2", "now")),
                None,
            ),
            ChatChunk::delta(&m, Delta::default(), Some("tool_calls")),
            ChatChunk::usage(&m, Usage::from_parts(10, 20, 30, 0)),
        ]);
        let got: Vec<Value> = evs.iter().skip(1).map(|(_, v)| v.clone()).collect();
        assert_eq!(
            got,
            vec![
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}),
                json!({"type":"content_block_stop","index":0}),
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}),
                json!({"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Checking."}}),
                json!({"type":"content_block_stop","index":1}),
                json!({"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}}),
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}),
                json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}),
                json!({"type":"content_block_stop","index":2}),
                json!({"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"call_2","name":"now","input":{}}}),
                json!({"type":"content_block_stop","index":3}),
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},
                    "usage":{"output_tokens":20,"input_tokens":10,"cache_read_input_tokens":30}}),
                json!({"type":"message_stop"}),
            ]
        );
    }

    #[test]
    fn finish_without_usage_and_empty_stream() {
        let m = meta();
        let evs = run(&[
            ChatChunk::delta(&m, Delta::text("x"), None),
            ChatChunk::delta(&m, Delta::default(), Some("length")),
        ]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            evs[4].1,
            json!({"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":0}})
        );

        let evs = run(&[]);
        assert_eq!(
            names(&evs),
            ["message_start", "message_delta", "message_stop"]
        );
        assert_eq!(evs[0].1["message"]["content"], json!([]));
        assert_eq!(evs[1].1["delta"]["stop_reason"], "end_turn");

        // Content without a finish chunk is closed properly at finish().
        let evs = run(&[ChatChunk::delta(&m, Delta::text("cut"), None)]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
    }

    #[test]
    fn usage_before_finish_and_refusal_text() {
        let m = meta();
        let refusal = Delta {
            refusal: Some("I can't.".into()),
            ..Delta::default()
        };
        let evs = run(&[
            ChatChunk::delta(&m, refusal, None),
            ChatChunk::usage(&m, Usage::from_parts(3, 4, 0, 0)),
            ChatChunk::delta(&m, Delta::default(), Some("content_filter")),
            ChatChunk::delta(&m, Delta::text("ignored after finish"), None),
        ]);
        assert_eq!(
            names(&evs),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            evs[2].1["delta"],
            json!({"type":"text_delta","text":"I can't."})
        );
        assert_eq!(
            evs[4].1,
            json!({"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null},
                "usage":{"output_tokens":4,"input_tokens":3}})
        );
    }

    #[test]
    fn bedrock_message_stop_carries_invocation_metrics() {
        let m = meta();
        let mut enc = ClaudeStreamEncoder::bedrock();
        let mut rec = crate::stream::testing::Recorder::default();
        enc.encode(
            &ChatChunk::delta(&m, Delta::text("x"), Some("stop")),
            &mut rec,
        );
        enc.encode(
            &ChatChunk::usage(&m, Usage::from_parts(12, 9, 3, 0)),
            &mut rec,
        );
        enc.finish(&mut rec);
        let (name, last) = rec.events.last().unwrap();
        assert_eq!(*name, Some("message_stop"));
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"],
            json!({"inputTokenCount": 12, "outputTokenCount": 9, "invocationLatency": 0,
                "firstByteLatency": 0, "cacheReadInputTokenCount": 3})
        );
        // Without usage (or off the Bedrock surface) there is nothing to report.
        let evs = crate::stream::testing::record(ClaudeStreamEncoder::bedrock(), &[]);
        assert_eq!(evs.last().unwrap().1, json!({"type":"message_stop"}));
    }

    #[test]
    fn errors_are_anthropic_error_events() {
        for (err, kind) in [
            (
                GatewayError::upstream_status(429, "slow down"),
                "rate_limit_error",
            ),
            (
                GatewayError::upstream_status(503, "busy"),
                "overloaded_error",
            ),
            (GatewayError::upstream_protocol("bad"), "api_error"),
        ] {
            // What the streamed body does: the encoder's events, then the framer's error.
            let mut enc = ClaudeStreamEncoder::new();
            let mut out = SseFramer::new(ErrorDialect::Anthropic);
            enc.encode(&ChatChunk::delta(&meta(), Delta::role(), None), &mut out);
            out.error(&err);
            let evs = events(&out.take());
            assert_eq!(names(&evs), ["message_start", "error"]);
            assert_eq!(
                evs[1].1,
                json!({"type":"error","error":{"type":kind,"message":err.message()}})
            );
        }
    }
}
