//! Canonical replies → Titan-format client responses and typed Titan stream chunks.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::format::InvocationMetrics;
use crate::model::{finish_reason, ChatChunk, ChatResponse, ToolCall, ToolCallDelta, Usage};
use crate::stream::{EventEncoder, Framer, WireEvent};

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

/// One chunk of a Titan stream:
/// `{"outputText","index","totalOutputTextTokenCount","completionReason","inputTextTokenCount"}`,
/// counts and reason `null` until the last chunk.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TitanChunkEvent<'a> {
    output_text: std::borrow::Cow<'a, str>,
    index: u64,
    total_output_text_token_count: Option<u64>,
    completion_reason: Option<&'static str>,
    input_text_token_count: Option<u64>,
    /// Bedrock's invocation metrics on the last chunk (only on the Bedrock runtime surface).
    #[serde(
        rename = "amazon-bedrock-invocationMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    metrics: Option<InvocationMetrics>,
}

impl WireEvent for TitanChunkEvent<'_> {}

/// Canonical chunks → Titan stream chunks ([`TitanChunkEvent`]; no `[DONE]`).
///
/// `index` counts from 0. Text deltas become chunks at once (counts `null`: they are only known at
/// the end). The finish chunk is held until the usage chunk that follows it (or
/// [`EventEncoder::finish`]), so the last chunk carries the reason and the counts together, as
/// Titan's last chunk does. Tool-call fragments are collected and written into the last chunk's
/// `outputText` as JSON lines; role and reasoning deltas produce nothing.
#[derive(Debug, Default)]
pub struct TitanStreamEncoder {
    index: u64,
    reason: Option<&'static str>,
    usage: Option<Usage>,
    done: bool,
    tool_calls: BTreeMap<u32, ToolCall>,
    /// Add `amazon-bedrock-invocationMetrics` to the last chunk, as Bedrock's own streams do.
    bedrock_metrics: bool,
}

impl TitanStreamEncoder {
    /// A new encoder for one stream.
    pub fn new() -> Self {
        TitanStreamEncoder::default()
    }

    /// An encoder for the Bedrock runtime surface: the last chunk carries the invocation metrics
    /// when the usage is known.
    pub fn bedrock() -> Self {
        TitanStreamEncoder {
            bedrock_metrics: true,
            ..TitanStreamEncoder::default()
        }
    }

    fn event<F: Framer>(&mut self, out: &mut F, text: std::borrow::Cow<'_, str>, last: bool) {
        let usage = self.usage.as_ref().filter(|_| last);
        out.event(&TitanChunkEvent {
            output_text: text,
            index: self.index,
            total_output_text_token_count: usage.map(|u| u.completion_tokens),
            completion_reason: self.reason.filter(|_| last),
            input_text_token_count: usage.map(|u| u.prompt_tokens),
            metrics: usage
                .filter(|_| self.bedrock_metrics)
                .map(InvocationMetrics::of),
        });
        self.index += 1;
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

    /// Writes the held last chunk, once.
    fn flush_final<F: Framer>(&mut self, out: &mut F) {
        if self.reason.is_none() || self.done {
            return;
        }
        self.done = true;
        let text = tool_call_lines(self.tool_calls.values());
        self.event(out, text.into(), true);
    }
}

impl EventEncoder for TitanStreamEncoder {
    fn encode<F: Framer>(&mut self, chunk: &ChatChunk, out: &mut F) {
        if self.done {
            return;
        }
        if let Some(usage) = &chunk.usage {
            self.usage = Some(usage.clone());
        }
        for choice in &chunk.choices {
            let delta = &choice.delta;
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.event(out, text.into(), false);
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

    fn finish<F: Framer>(&mut self, out: &mut F) {
        self.flush_final(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorDialect, GatewayError};
    use crate::model::{Choice, ChunkMeta, Delta, ResponseMessage};
    use crate::sse::{SseDecoder, SseFramer};
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
        let mut enc = TitanStreamEncoder::new();
        let mut out = SseFramer::new(ErrorDialect::OpenAi);
        enc.encode(&ChatChunk::delta(&m, Delta::role(), None), &mut out);
        assert!(out.take().is_empty(), "role chunk produces nothing");
        enc.encode(&ChatChunk::delta(&m, Delta::text("Hel"), None), &mut out);
        enc.encode(&ChatChunk::delta(&m, Delta::text("lo"), None), &mut out);
        let mut wire = out.take().to_vec();
        enc.encode(
            &ChatChunk::delta(&m, Delta::default(), Some("stop")),
            &mut out,
        );
        assert!(out.take().is_empty(), "finish is held");
        enc.encode(
            &ChatChunk::usage(&m, Usage::from_parts(9, 2, 0, 0)),
            &mut out,
        );
        enc.finish(&mut out);
        wire.extend_from_slice(&out.take());
        let out = wire;
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
        let mut enc = TitanStreamEncoder::new();
        let mut out = SseFramer::new(ErrorDialect::OpenAi);
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
        assert!(out.take().is_empty());
        enc.finish(&mut out);
        enc.finish(&mut out);
        let events = decode(&out.take());
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
    fn bedrock_last_chunk_carries_invocation_metrics() {
        let m = meta();
        let evs = crate::stream::testing::record(
            TitanStreamEncoder::bedrock(),
            &[
                ChatChunk::delta(&m, Delta::text("hi"), Some("stop")),
                ChatChunk::usage(&m, Usage::from_parts(12, 9, 0, 0)),
            ],
        );
        assert_eq!(evs.len(), 2);
        assert!(evs[0].1.get("amazon-bedrock-invocationMetrics").is_none());
        assert_eq!(
            evs[1].1["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            9
        );
        assert_eq!(evs[1].1["completionReason"], "FINISH");
    }

    #[test]
    fn stream_error_event() {
        // Titan clients read errors in the OpenAI shape, framed like any other chunk.
        let mut out = SseFramer::new(ErrorDialect::OpenAi);
        out.error(&GatewayError::upstream_protocol("boom"));
        let events = decode(&out.take());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["error"]["message"], "boom");
        assert_eq!(events[0]["error"]["type"], "server_error");
        assert_eq!(events[0]["error"]["code"], "upstream_protocol_error");
    }
}
