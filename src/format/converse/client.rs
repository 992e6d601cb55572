//! Client direction of Converse, on plain JSON: what a boto3 / AWS SDK `converse` or
//! `converse_stream` call sends to the gateway, and what it reads back.
//!
//! - [`decode_client_request`]: Converse request JSON (PROTOCOLS 4.1, 4.2) → canonical request.
//!   `system` text blocks become one system message; `toolUse` blocks become assistant tool calls
//!   (input serialized as the arguments); `toolResult` blocks become `tool` messages placed before
//!   the rest of their user turn; images become `data:` URLs, documents file parts;
//!   `inferenceConfig` and `toolConfig` map per PROTOCOLS 5.2 and 5.4. Reasoning and cache points
//!   are dropped (they only mean something to the model that wrote them).
//! - [`encode_client_response`]: canonical reply → Converse response JSON (4.3).
//! - [`ConverseEventEncoder`]: canonical chunks → ConverseStream events (4.4), as
//!   `(event type, payload)` pairs; the surface frames them as event-stream messages.
//!
//! ```
//! use open_bedrock_server::format::converse::client::decode_client_request;
//!
//! let body = serde_json::json!({
//!     "system": [{"text": "Be terse."}],
//!     "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
//!     "inferenceConfig": {"maxTokens": 64}
//! });
//! let req = decode_client_request("gpt-4o", body.as_object().unwrap(), false).unwrap();
//! assert_eq!(req.model, "gpt-4o");
//! assert_eq!(req.messages.len(), 2);
//! assert_eq!(req.max_tokens, Some(64));
//! ```

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::model::{finish_reason, ChatChunk, ChatRequest, ChatResponse, Usage};

fn invalid(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into()).with_aws_type("ValidationException")
}

/// MIME type of a Converse document `format`.
fn document_mime(format: &str) -> &'static str {
    match format {
        "pdf" => "application/pdf",
        "csv" => "text/csv",
        "html" => "text/html",
        "md" => "text/markdown",
        "txt" => "text/plain",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// The text of a `toolResult`'s content: text blocks joined, JSON blocks serialized.
fn tool_result_text(content: Option<&Value>) -> String {
    let Some(Value::Array(blocks)) = content else {
        return String::new();
    };
    let mut out = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            out.push(t.to_owned());
        } else if let Some(j) = block.get("json") {
            out.push(j.to_string());
        }
    }
    out.join("\n")
}

/// Decodes a client's Converse request body for `model` (from the path) into a canonical request.
pub fn decode_client_request(
    model: &str,
    body: &Map<String, Value>,
    stream: bool,
) -> Result<ChatRequest, GatewayError> {
    let mut messages: Vec<Value> = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text.join("\n")}));
            }
        }
        Some(_) => return Err(invalid("system must be an array of system content blocks")),
    }
    let turns = match body.get("messages") {
        Some(Value::Array(t)) => t,
        None => return Err(invalid("messages is required")),
        Some(_) => return Err(invalid("messages must be an array")),
    };
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or_default();
        let Some(blocks) = turn.get("content").and_then(Value::as_array) else {
            return Err(invalid("each message needs a content array"));
        };
        match role {
            "user" => decode_user_turn(blocks, &mut messages)?,
            "assistant" => messages.push(decode_assistant_turn(blocks)),
            other => {
                return Err(invalid(format!(
                    "invalid role `{other}`: expected user or assistant"
                )))
            }
        }
    }

    let mut req = json!({"model": model, "messages": messages});
    let obj = req
        .as_object_mut()
        .ok_or_else(|| GatewayError::internal("request is an object"))?;
    if stream {
        obj.insert("stream".into(), Value::Bool(true));
        // ConverseStream ends with a metadata event carrying usage: ask the upstream for it.
        obj.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(config) = body.get("inferenceConfig").and_then(Value::as_object) {
        for (from, to) in [
            ("maxTokens", "max_tokens"),
            ("temperature", "temperature"),
            ("topP", "top_p"),
            ("stopSequences", "stop"),
        ] {
            if let Some(v) = config.get(from).filter(|v| !v.is_null()) {
                obj.insert(to.into(), v.clone());
            }
        }
    }
    if let Some(tool_config) = body.get("toolConfig").and_then(Value::as_object) {
        let tools: Vec<Value> = tool_config
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("toolSpec"))
            .map(|spec| {
                let mut function = Map::new();
                function.insert("name".into(), spec.get("name").cloned().unwrap_or_default());
                if let Some(d) = spec.get("description") {
                    function.insert("description".into(), d.clone());
                }
                let params = spec
                    .pointer("/inputSchema/json")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                function.insert("parameters".into(), params);
                json!({"type": "function", "function": function})
            })
            .collect();
        if !tools.is_empty() {
            obj.insert("tools".into(), Value::Array(tools));
        }
        if let Some(choice) = tool_config.get("toolChoice").and_then(Value::as_object) {
            let choice = if choice.contains_key("any") {
                json!("required")
            } else if let Some(name) = choice.get("tool").and_then(|t| t.get("name")) {
                json!({"type": "function", "function": {"name": name}})
            } else {
                json!("auto")
            };
            obj.insert("tool_choice".into(), choice);
        }
    }
    if let Some(k) = body
        .get("additionalModelRequestFields")
        .and_then(|v| v.get("top_k"))
    {
        obj.insert("top_k".into(), k.clone());
    }
    let mut request: ChatRequest = serde_json::from_value(req)
        .map_err(|e| invalid(format!("Malformed input request: {e}")))?;
    if request
        .messages
        .iter()
        .all(|m| m.role == crate::model::Role::System)
    {
        return Err(invalid("messages must contain at least one message"));
    }
    request.model = model.to_owned();
    Ok(request)
}

fn decode_user_turn(blocks: &[Value], messages: &mut Vec<Value>) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    for block in blocks {
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            parts.push(json!({"type": "text", "text": text}));
        } else if let Some(image) = block.get("image") {
            let format = image.get("format").and_then(Value::as_str).unwrap_or("png");
            let Some(bytes) = image.pointer("/source/bytes").and_then(Value::as_str) else {
                return Err(invalid("only inline (bytes) image sources are supported"));
            };
            parts.push(json!({"type": "image_url", "image_url": {"url": format!("data:image/{format};base64,{bytes}")}}));
        } else if let Some(doc) = block.get("document") {
            let format = doc.get("format").and_then(Value::as_str).unwrap_or("txt");
            let name = doc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("document");
            let Some(bytes) = doc.pointer("/source/bytes").and_then(Value::as_str) else {
                return Err(invalid(
                    "only inline (bytes) document sources are supported",
                ));
            };
            parts.push(json!({"type": "file", "file": {
                "file_data": format!("data:{};base64,{bytes}", document_mime(format)),
                "filename": format!("{name}.{format}"),
            }}));
        } else if let Some(result) = block.get("toolResult") {
            let id = result
                .get("toolUseId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": tool_result_text(result.get("content"))}));
        }
        // cachePoint, guardContent and other blocks carry nothing for the canonical model.
    }
    if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn decode_assistant_turn(blocks: &[Value]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tool) = block.get("toolUse") {
            let input = tool.get("input").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({
                "id": tool.get("toolUseId").cloned().unwrap_or_default(),
                "type": "function",
                "function": {"name": tool.get("name").cloned().unwrap_or_default(), "arguments": input.to_string()},
            }));
        }
    }
    let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

/// OpenAI `finish_reason` → Converse `stopReason`.
pub fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some(finish_reason::LENGTH) => "max_tokens",
        Some(finish_reason::TOOL_CALLS) | Some("function_call") => "tool_use",
        Some(finish_reason::CONTENT_FILTER) => "content_filtered",
        _ => "end_turn",
    }
}

/// Converse `usage`: `inputTokens` excludes cache reads and writes, which are reported apart.
pub fn usage_json(usage: Option<&Usage>) -> Value {
    let Some(u) = usage else {
        return json!({"inputTokens": 0, "outputTokens": 0, "totalTokens": 0});
    };
    let (read, write) = (u.cached_tokens(), u.cache_write_tokens());
    let input = u.prompt_tokens.saturating_sub(read).saturating_sub(write);
    let mut out = json!({
        "inputTokens": input,
        "outputTokens": u.completion_tokens,
        "totalTokens": u.prompt_tokens + u.completion_tokens,
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
        if let Some(r) = msg.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
            content.push(json!({"reasoningContent": {"reasoningText": {"text": r}}}));
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
    let reason = if has_tools {
        "tool_use"
    } else {
        stop_reason(choice.and_then(|c| c.finish_reason.as_deref()))
    };
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": reason,
        "usage": usage_json(resp.usage.as_ref()),
        "metrics": {"latencyMs": 0},
    })
}

/// The kind of the content block open in the ConverseStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Reasoning,
    /// A toolUse block for the OpenAI tool-call index.
    Tool(u32),
}

/// Canonical chunks → ConverseStream events (`messageStart`, `contentBlockStart` for tool uses,
/// `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`).
///
/// Text and reasoning blocks have no start event (Converse's `start` union has no member for
/// them); every switch of block kind, and every new tool-call index, closes the open block. The
/// finish chunk yields `messageStop` at once; `metadata` follows with the usage chunk, or at
/// [`finish`](Self::finish) with zero usage when none arrived.
#[derive(Debug, Default)]
pub struct ConverseEventEncoder {
    started: bool,
    open: Option<Open>,
    next_index: u32,
    stopped: bool,
    usage: Option<Usage>,
    done: bool,
}

impl ConverseEventEncoder {
    /// A new encoder for one stream.
    pub fn new() -> Self {
        ConverseEventEncoder::default()
    }

    fn close(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if self.open.take().is_some() {
            out.push((
                "contentBlockStop",
                json!({"contentBlockIndex": self.next_index - 1}),
            ));
        }
    }

    fn ensure(
        &mut self,
        kind: Open,
        start: Option<Value>,
        out: &mut Vec<(&'static str, Value)>,
    ) -> u32 {
        if self.open != Some(kind) {
            self.close(out);
            self.open = Some(kind);
            self.next_index += 1;
            if let Some(start) = start {
                out.push((
                    "contentBlockStart",
                    json!({"contentBlockIndex": self.next_index - 1, "start": start}),
                ));
            }
        }
        self.next_index - 1
    }

    fn metadata(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if !self.done {
            self.done = true;
            out.push((
                "metadata",
                json!({"usage": usage_json(self.usage.as_ref()), "metrics": {"latencyMs": 0}}),
            ));
        }
    }

    /// Appends the events for one canonical chunk.
    pub fn push(&mut self, chunk: &ChatChunk, out: &mut Vec<(&'static str, Value)>) {
        if self.done {
            return;
        }
        if !self.started {
            self.started = true;
            out.push(("messageStart", json!({"role": "assistant"})));
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        if let Some(choice) = chunk.choices.first().filter(|_| !self.stopped) {
            let d = &choice.delta;
            if let Some(r) = d.reasoning_content.as_deref().filter(|t| !t.is_empty()) {
                let i = self.ensure(Open::Reasoning, None, out);
                out.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"reasoningContent": {"text": r}}}),
                ));
            }
            for t in [d.content.as_deref(), d.refusal.as_deref()]
                .into_iter()
                .flatten()
                .filter(|t| !t.is_empty())
            {
                let i = self.ensure(Open::Text, None, out);
                out.push((
                    "contentBlockDelta",
                    json!({"contentBlockIndex": i, "delta": {"text": t}}),
                ));
            }
            for call in d.tool_calls.iter().flatten() {
                let f = call.function.as_ref();
                let start = json!({"toolUse": {
                    "toolUseId": call.id.clone().unwrap_or_else(|| format!("tooluse_{}", call.index)),
                    "name": f.and_then(|f| f.name.as_deref()).unwrap_or_default(),
                }});
                let i = self.ensure(Open::Tool(call.index), Some(start), out);
                if let Some(args) = f
                    .and_then(|f| f.arguments.as_deref())
                    .filter(|a| !a.is_empty())
                {
                    out.push((
                        "contentBlockDelta",
                        json!({"contentBlockIndex": i, "delta": {"toolUse": {"input": args}}}),
                    ));
                }
            }
            if let Some(reason) = choice.finish_reason.as_deref() {
                self.close(out);
                self.stopped = true;
                out.push((
                    "messageStop",
                    json!({"stopReason": stop_reason(Some(reason))}),
                ));
            }
        }
        if self.stopped && self.usage.is_some() {
            self.metadata(out);
        }
    }

    /// Closes a normal stream: open block, `messageStop` and `metadata` if not yet sent.
    pub fn finish(&mut self, out: &mut Vec<(&'static str, Value)>) {
        if self.done {
            return;
        }
        if !self.started {
            self.started = true;
            out.push(("messageStart", json!({"role": "assistant"})));
        }
        if !self.stopped {
            self.close(out);
            self.stopped = true;
            out.push(("messageStop", json!({"stopReason": "end_turn"})));
        }
        self.metadata(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta, Role, ToolCallDelta};

    fn decode(body: Value, stream: bool) -> ChatRequest {
        decode_client_request("m", body.as_object().unwrap(), stream).unwrap()
    }

    #[test]
    fn decodes_a_tool_round_trip() {
        let req = decode(
            json!({
                "system": [{"text": "a"}, {"text": "b"}],
                "messages": [
                    {"role": "user", "content": [{"text": "Weather in Paris?"}]},
                    {"role": "assistant", "content": [{"text": "Checking."}, {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}]},
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 21}}]}}, {"text": "thanks"}]}
                ],
                "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
                "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "description": "d", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"any": {}}}
            }),
            true,
        );
        let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User
            ]
        );
        assert_eq!(req.messages[0].text_content(), "a\nb");
        let call = &req.messages[2].tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            (call.id.as_str(), call.function.name.as_str()),
            ("t1", "get_weather")
        );
        assert_eq!(
            serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("t1"));
        assert_eq!(req.messages[3].text_content(), r#"{"temp":21}"#);
        assert_eq!(
            (req.max_tokens, req.temperature, req.top_p),
            (Some(100), Some(0.5), Some(0.9))
        );
        assert_eq!(req.stop_sequences(), ["END"]);
        assert_eq!(
            req.tools.as_ref().unwrap()[0]
                .function
                .as_ref()
                .unwrap()
                .name,
            "get_weather"
        );
        assert_eq!(
            serde_json::to_value(&req.tool_choice).unwrap(),
            json!("required")
        );
        assert!(req.is_stream() && req.include_usage());
    }

    #[test]
    fn decodes_images_and_rejects_bad_shapes() {
        let req = decode(
            json!({"messages": [{"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "iVBO"}}}]}]}),
            false,
        );
        let v = serde_json::to_value(&req.messages[0]).unwrap();
        assert_eq!(
            v["content"][0]["image_url"]["url"],
            "data:image/png;base64,iVBO"
        );
        for bad in [
            json!({}),
            json!({"messages": "x"}),
            json!({"messages": [{"role": "robot", "content": []}]}),
            json!({"messages": []}),
        ] {
            let e = decode_client_request("m", bad.as_object().unwrap(), false).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }

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
        let mut enc = ConverseEventEncoder::new();
        let mut out = Vec::new();
        for c in &chunks {
            enc.push(c, &mut out);
        }
        enc.finish(&mut out);
        let types: Vec<&str> = out.iter().map(|(t, _)| *t).collect();
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
        let mut enc = ConverseEventEncoder::new();
        let mut out = Vec::new();
        enc.push(
            &ChatChunk::delta(&ChunkMeta::new("m"), Delta::text("hi"), None),
            &mut out,
        );
        enc.finish(&mut out);
        enc.finish(&mut out);
        let types: Vec<&str> = out.iter().map(|(t, _)| *t).collect();
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
