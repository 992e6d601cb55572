//! Canonical replies → Titan-format client responses and Titan SSE chunks.

use std::collections::BTreeMap;

use bytes::BytesMut;
use serde_json::{json, Value};

use crate::error::{ErrorDialect, GatewayError};
use crate::format::StreamEncoder;
use crate::model::{finish_reason, ChatChunk, ChatResponse, ToolCall, ToolCallDelta, Usage};
use crate::sse;

/// Maps an OpenAI `finish_reason` to a Titan `completionReason`.
fn completion_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some(finish_reason::LENGTH) => "LENGTH",
        Some(finish_reason::CONTENT_FILTER) => "CONTENT_FILTERED",
        // stop, tool_calls (rendered as text), unknown or missing.
        _ => "FINISH",
    }
}

/// One JSON line per tool call, in the OpenAI `tool_calls[]` item shape.
fn tool_call_lines<'a>(calls: impl IntoIterator<Item = &'a ToolCall>) -> String {
    let mut out = String::new();
    for call in calls {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&serde_json::to_string(call).unwrap_or_default());
    }
    out
}

/// Appends `extra` to `text` on its own line (when both are non-empty).
fn append_line(text: &mut String, extra: &str) {
    if extra.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(extra);
}

/// Encodes a canonical reply as a Titan InvokeModel response:
/// `{"inputTextTokenCount", "results": [{"tokenCount", "outputText", "completionReason"}]}`.
///
/// Tool calls are appended to `outputText` as one JSON line each (Titan has no field for them).
pub fn encode_client_response(resp: &ChatResponse) -> Value {
    let choice = resp.choices.first();
    let mut text = choice
        .and_then(|c| c.message.content.clone())
        .unwrap_or_default();
    if let Some(calls) = choice.and_then(|c| c.message.tool_calls.as_ref()) {
        append_line(&mut text, &tool_call_lines(calls));
    }
    let usage = resp.usage.clone().unwrap_or_default();
    json!({
        "inputTextTokenCount": usage.prompt_tokens,
        "results": [{
            "tokenCount": usage.completion_tokens,
            "outputText": text,
            "completionReason": completion_reason(choice.and_then(|c| c.finish_reason.as_deref())),
        }]
    })
}

/// Encodes canonical chunks as Titan stream chunks in SSE `data:` events (no `[DONE]`).
///
/// Each event is `{"outputText","index","totalOutputTextTokenCount","completionReason",
/// "inputTextTokenCount"}` with `index` counting from 0. Text deltas become events at once (counts
/// `null`: they are only known at the end). The finish chunk is held until the usage chunk that
/// follows it (or [`StreamEncoder::finish`]), so the last event carries the reason and the counts
/// together, as Titan's last chunk does. Tool-call fragments are collected and written into the
/// last event's `outputText` as JSON lines; role and reasoning deltas produce nothing.
#[derive(Debug, Default)]
pub struct TitanChunkEncoder {
    index: u64,
    reason: Option<&'static str>,
    usage: Option<Usage>,
    done: bool,
    tool_calls: BTreeMap<u32, ToolCall>,
}

impl TitanChunkEncoder {
    /// A new encoder for one stream.
    pub fn new() -> Self {
        TitanChunkEncoder::default()
    }

    fn event(
        &mut self,
        out: &mut BytesMut,
        text: &str,
        reason: Option<&str>,
        usage: Option<&Usage>,
    ) {
        let event = json!({
            "outputText": text,
            "index": self.index,
            "totalOutputTextTokenCount": usage.map(|u| u.completion_tokens),
            "completionReason": reason,
            "inputTextTokenCount": usage.map(|u| u.prompt_tokens),
        });
        self.index += 1;
        sse::write_json_event(out, None, &event);
    }

    fn collect_tool_call(&mut self, fragment: &ToolCallDelta) {
        let call = self
            .tool_calls
            .entry(fragment.index)
            .or_insert_with(|| ToolCall::function("", "", ""));
        if let Some(id) = &fragment.id {
            call.id.clone_from(id);
        }
        if let Some(function) = &fragment.function {
            if let Some(name) = &function.name {
                call.function.name.push_str(name);
            }
            if let Some(args) = &function.arguments {
                call.function.arguments.push_str(args);
            }
        }
    }

    /// Writes the held final event, once.
    fn flush_final(&mut self, out: &mut BytesMut) {
        let Some(reason) = self.reason else { return };
        if self.done {
            return;
        }
        self.done = true;
        let text = tool_call_lines(self.tool_calls.values());
        let usage = self.usage.take();
        self.event(out, &text, Some(reason), usage.as_ref());
    }
}

impl StreamEncoder for TitanChunkEncoder {
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        for choice in &chunk.choices {
            let delta = &choice.delta;
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.event(out, text, None, None);
            }
            for fragment in delta.tool_calls.iter().flatten() {
                self.collect_tool_call(fragment);
            }
            if let Some(finish) = choice.finish_reason.as_deref() {
                self.reason = Some(completion_reason(Some(finish)));
            }
        }
        if self.reason.is_some() && self.usage.is_some() {
            self.flush_final(out);
        }
    }

    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut) {
        sse::write_json_event(out, None, &error.to_body_json(ErrorDialect::OpenAi));
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.flush_final(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Choice, ChunkMeta, Delta, ResponseMessage};
    use crate::sse::SseDecoder;
    use serde_json::Map;

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-o".into(),
            created: 1,
            model: "m".into(),
        }
    }

    fn response(message: ResponseMessage, finish: &str, usage: Option<Usage>) -> ChatResponse {
        ChatResponse {
            id: "chatcmpl-o".into(),
            object: "chat.completion".into(),
            created: 1,
            model: "m".into(),
            choices: vec![Choice {
                index: 0,
                message,
                finish_reason: Some(finish.into()),
                logprobs: None,
                extra: Map::new(),
            }],
            usage,
            extra: Map::new(),
        }
    }

    fn decode(bytes: &[u8]) -> Vec<Value> {
        let mut dec = SseDecoder::new();
        dec.push(bytes);
        let mut events = Vec::new();
        while let Some(ev) = dec.next_event() {
            assert_eq!(ev.event, None);
            events.push(serde_json::from_slice(&ev.data).unwrap());
        }
        assert_eq!(dec.buffered(), 0, "trailing bytes");
        events
    }

    #[test]
    fn encodes_text_response() {
        let resp = response(
            ResponseMessage::assistant(Some("Hello".into()), None),
            "length",
            Some(Usage::from_parts(9, 17, 0, 0)),
        );
        assert_eq!(
            encode_client_response(&resp),
            json!({"inputTextTokenCount": 9,
                   "results": [{"tokenCount": 17, "outputText": "Hello", "completionReason": "LENGTH"}]})
        );
    }

    #[test]
    fn renders_tool_calls_as_json_lines() {
        let resp = response(
            ResponseMessage::assistant(
                Some("Checking.".into()),
                Some(vec![
                    ToolCall::function("call_1", "get_weather", r#"{"city":"Paris"}"#),
                    ToolCall::function("call_2", "get_time", "{}"),
                ]),
            ),
            "tool_calls",
            None,
        );
        let body = encode_client_response(&resp);
        assert_eq!(body["inputTextTokenCount"], 0);
        assert_eq!(body["results"][0]["completionReason"], "FINISH");
        let text = body["results"][0]["outputText"].as_str().unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "Checking.");
        assert_eq!(
            serde_json::from_str::<Value>(lines[1]).unwrap(),
            json!({"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}})
        );
        assert_eq!(
            serde_json::from_str::<Value>(lines[2]).unwrap()["function"]["name"],
            "get_time"
        );
        let filtered = response(
            ResponseMessage::assistant(None, None),
            "content_filter",
            None,
        );
        assert_eq!(
            encode_client_response(&filtered)["results"][0],
            json!({"tokenCount": 0, "outputText": "", "completionReason": "CONTENT_FILTERED"})
        );
    }

    #[test]
    fn stream_holds_final_event_until_usage() {
        let m = meta();
        let mut enc = TitanChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(&ChatChunk::delta(&m, Delta::role(), None), &mut out);
        assert!(out.is_empty(), "role chunk produces nothing");
        enc.encode(&ChatChunk::delta(&m, Delta::text("Hel"), None), &mut out);
        enc.encode(&ChatChunk::delta(&m, Delta::text("lo"), None), &mut out);
        let before_finish = out.len();
        enc.encode(
            &ChatChunk::delta(&m, Delta::default(), Some("stop")),
            &mut out,
        );
        assert_eq!(out.len(), before_finish, "finish is held");
        enc.encode(
            &ChatChunk::usage(&m, Usage::from_parts(9, 2, 0, 0)),
            &mut out,
        );
        enc.finish(&mut out);
        assert_eq!(
            decode(&out),
            vec![
                json!({"outputText":"Hel","index":0,"totalOutputTextTokenCount":null,"completionReason":null,"inputTextTokenCount":null}),
                json!({"outputText":"lo","index":1,"totalOutputTextTokenCount":null,"completionReason":null,"inputTextTokenCount":null}),
                json!({"outputText":"","index":2,"totalOutputTextTokenCount":2,"completionReason":"FINISH","inputTextTokenCount":9}),
            ]
        );
        assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
    }

    #[test]
    fn stream_final_event_on_finish_without_usage_and_tool_calls() {
        let m = meta();
        let mut enc = TitanChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(
            &ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::start(0, "call_1", "f")),
                None,
            ),
            &mut out,
        );
        enc.encode(
            &ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::arguments(0, "{\"a\":")),
                None,
            ),
            &mut out,
        );
        enc.encode(
            &ChatChunk::delta(
                &m,
                Delta::tool_call(ToolCallDelta::arguments(0, "1}")),
                None,
            ),
            &mut out,
        );
        enc.encode(
            &ChatChunk::delta(&m, Delta::default(), Some("tool_calls")),
            &mut out,
        );
        assert!(out.is_empty());
        enc.finish(&mut out);
        enc.finish(&mut out);
        let events = decode(&out);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["index"], 0);
        assert_eq!(events[0]["completionReason"], "FINISH");
        assert_eq!(events[0]["inputTextTokenCount"], Value::Null);
        let call: Value = serde_json::from_str(events[0]["outputText"].as_str().unwrap()).unwrap();
        assert_eq!(
            call,
            json!({"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}})
        );
    }

    #[test]
    fn stream_error_event() {
        let mut enc = TitanChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.encode_error(&GatewayError::upstream_protocol("boom"), &mut out);
        let events = decode(&out);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["error"]["message"], "boom");
        assert_eq!(events[0]["error"]["type"], "server_error");
        assert_eq!(events[0]["error"]["code"], "upstream_protocol_error");
    }
}
