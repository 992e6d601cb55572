//! Canonical reply → Claude format, for clients that asked `?target_format=bedrock_claude`.
//!
//! [`encode_client_response`] writes an Anthropic Messages response; [`ClaudeSseEncoder`] turns
//! canonical chunks into the Anthropic SSE event sequence:
//!
//! ```text
//! message_start
//! (content_block_start, content_block_delta*, content_block_stop)*
//! message_delta        (stop_reason + usage: sent once both the finish and the usage chunk are in)
//! message_stop
//! ```
//!
//! OpenAI streams interleave nothing, but a delta may switch between reasoning, text and tool calls
//! at any chunk; each switch (and each new tool-call index) closes the open block and opens the next,
//! with block indexes counting up from 0 as Anthropic clients require.

use bytes::BytesMut;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::format::StreamEncoder;
use crate::model::{finish_reason, ChatChunk, ChatResponse, Delta, Usage};
use crate::sse::write_json_event;

/// The Claude message id for an OpenAI completion id (`chatcmpl-X` → `msg_X`).
fn message_id(id: &str) -> String {
    match id.strip_prefix("chatcmpl-") {
        Some(rest) => format!("msg_{rest}"),
        None => id.to_owned(),
    }
}

/// OpenAI `finish_reason` → Claude `stop_reason`.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        finish_reason::LENGTH => "max_tokens",
        finish_reason::TOOL_CALLS | "function_call" => "tool_use",
        finish_reason::CONTENT_FILTER => "refusal",
        _ => "end_turn",
    }
}

/// Claude usage members: `input_tokens` excludes cache reads and writes, which are reported apart.
fn usage_fields(usage: &Usage, out: &mut Map<String, Value>) {
    let cached = usage.cached_tokens();
    let written = usage.cache_write_tokens();
    let input = usage
        .prompt_tokens
        .saturating_sub(cached)
        .saturating_sub(written);
    out.insert("input_tokens".into(), Value::from(input));
    if cached > 0 {
        out.insert("cache_read_input_tokens".into(), Value::from(cached));
    }
    if written > 0 {
        out.insert("cache_creation_input_tokens".into(), Value::from(written));
    }
}

/// Encodes a complete canonical reply as an Anthropic Messages response.
pub fn encode_client_response(resp: &ChatResponse) -> Value {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    if let Some(msg) = choice.map(|c| &c.message) {
        if let Some(thinking) = msg.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            // Clients' SDKs require `signature`; there is none to give for a non-Claude model.
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
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

    let mut usage = Map::new();
    match &resp.usage {
        Some(u) => {
            usage_fields(u, &mut usage);
            usage.insert("output_tokens".into(), Value::from(u.completion_tokens));
        }
        None => {
            usage.insert("input_tokens".into(), Value::from(0));
            usage.insert("output_tokens".into(), Value::from(0));
        }
    }
    json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

/// `content_block_delta`, serialized from borrowed text (the per-token hot path: no copy of the piece).
#[derive(Serialize)]
struct BlockDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: BlockDelta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum BlockDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

/// `content_block_stop`.
#[derive(Serialize)]
struct BlockStopEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

/// The kind of the content block currently open in the Claude stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool_use block for the OpenAI tool-call index.
    Tool(u32),
}

/// Canonical chunks → Anthropic SSE events (`event: <type>\ndata: <json>\n\n`).
#[derive(Debug, Default)]
pub struct ClaudeSseEncoder {
    started: bool,
    /// `message_delta` went out (the finish and the usage are both known).
    delta_sent: bool,
    stopped: bool,
    next_index: u32,
    open: Option<Open>,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl ClaudeSseEncoder {
    /// A new encoder; id and model are taken from the first chunk.
    pub fn new() -> Self {
        ClaudeSseEncoder::default()
    }

    fn start(&mut self, id: &str, model: &str, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let event = json!({
            "type": "message_start",
            "message": {
                "id": message_id(id),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        });
        write_json_event(out, Some("message_start"), &event);
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            let index = self.next_index - 1;
            let event = BlockStopEvent {
                kind: "content_block_stop",
                index,
            };
            write_json_event(out, Some("content_block_stop"), &event);
        }
    }

    /// Makes `kind` the open block (closing another one first); returns its index.
    fn ensure_block(
        &mut self,
        kind: Open,
        block: impl FnOnce() -> Value,
        out: &mut BytesMut,
    ) -> u32 {
        if self.open != Some(kind) {
            self.close_block(out);
            let index = self.next_index;
            self.next_index += 1;
            self.open = Some(kind);
            write_json_event(
                out,
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": index, "content_block": block()}),
            );
        }
        self.next_index - 1
    }

    fn block_delta(out: &mut BytesMut, index: u32, delta: BlockDelta<'_>) {
        let event = BlockDeltaEvent {
            kind: "content_block_delta",
            index,
            delta,
        };
        write_json_event(out, Some("content_block_delta"), &event);
    }

    fn encode_delta(&mut self, delta: &Delta, out: &mut BytesMut) {
        if let Some(thinking) = delta.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            let index = self.ensure_block(
                Open::Thinking,
                || json!({"type": "thinking", "thinking": "", "signature": ""}),
                out,
            );
            Self::block_delta(out, index, BlockDelta::Thinking { thinking });
        }
        let text = [delta.content.as_deref(), delta.refusal.as_deref()];
        for text in text.into_iter().flatten().filter(|t| !t.is_empty()) {
            let index = self.ensure_block(Open::Text, || json!({"type": "text", "text": ""}), out);
            Self::block_delta(out, index, BlockDelta::Text { text });
        }
        for call in delta.tool_calls.iter().flatten() {
            let function = call.function.as_ref();
            let index = self.ensure_block(
                Open::Tool(call.index),
                || {
                    let id = call
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("toolu_{}", call.index));
                    let name = function.and_then(|f| f.name.as_deref()).unwrap_or_default();
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}})
                },
                out,
            );
            if let Some(args) = function
                .and_then(|f| f.arguments.as_deref())
                .filter(|a| !a.is_empty())
            {
                Self::block_delta(out, index, BlockDelta::InputJson { partial_json: args });
            }
        }
    }

    /// Writes `message_delta` once the stop reason is known (with zero usage if none arrived).
    fn send_message_delta(&mut self, out: &mut BytesMut) {
        if self.delta_sent {
            return;
        }
        self.delta_sent = true;
        let mut usage = Map::new();
        match &self.usage {
            Some(u) => {
                usage.insert("output_tokens".into(), Value::from(u.completion_tokens));
                usage_fields(u, &mut usage);
            }
            None => {
                usage.insert("output_tokens".into(), Value::from(0));
            }
        }
        let event = json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage,
        });
        write_json_event(out, Some("message_delta"), &event);
    }
}

impl StreamEncoder for ClaudeSseEncoder {
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        self.start(&chunk.id, &chunk.model, out);
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        if self.stop_reason.is_none() {
            if let Some(choice) = chunk.choices.first() {
                self.encode_delta(&choice.delta, out);
                if let Some(finish) = choice.finish_reason.as_deref() {
                    self.close_block(out);
                    self.stop_reason = Some(stop_reason(finish));
                }
            }
        }
        if self.stop_reason.is_some() && self.usage.is_some() {
            self.send_message_delta(out);
        }
    }

    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut) {
        let kind = match error.status().as_u16() {
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        };
        let event = json!({"type": "error", "error": {"type": kind, "message": error.message()}});
        write_json_event(out, Some("error"), &event);
        self.stopped = true;
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        if !self.started {
            // Nothing arrived at all: still give the client a well-formed (empty) message.
            self.start(&crate::model::completion_id(), "", out);
        }
        self.close_block(out);
        self.send_message_delta(out);
        write_json_event(out, Some("message_stop"), &json!({"type": "message_stop"}));
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, ToolCallDelta};
    use crate::sse::SseDecoder;

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

    fn run(chunks: &[ChatChunk]) -> Vec<(String, Value)> {
        let mut enc = ClaudeSseEncoder::new();
        let mut out = BytesMut::new();
        for c in chunks {
            enc.encode(c, &mut out);
        }
        enc.finish(&mut out);
        events(&out)
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
            let mut enc = ClaudeSseEncoder::new();
            let mut out = BytesMut::new();
            enc.encode(&ChatChunk::delta(&meta(), Delta::role(), None), &mut out);
            enc.encode_error(&err, &mut out);
            enc.finish(&mut out);
            let evs = events(&out);
            assert_eq!(names(&evs), ["message_start", "error"]);
            assert_eq!(
                evs[1].1,
                json!({"type":"error","error":{"type":kind,"message":err.message()}})
            );
        }
    }
}
