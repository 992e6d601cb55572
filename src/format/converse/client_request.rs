//! A client's Converse request, on plain JSON (what a boto3 / AWS SDK `converse` or
//! `converse_stream` call sends to the gateway) → the canonical request.
//!
//! [`decode_client_request`] (PROTOCOLS 4.1, 4.2): `system` text blocks become one system message;
//! `toolUse` blocks become assistant tool calls (input serialized as the arguments); `toolResult`
//! blocks become `tool` messages placed before the rest of their user turn; images become `data:`
//! URLs, documents file parts; `inferenceConfig` and `toolConfig` map per PROTOCOLS 5.2 and 5.4.
//! A `cachePoint` becomes the canonical breakpoint of what it follows (a system text, a content
//! part, a tool result, an assistant turn, a tool definition); an assistant turn's
//! `reasoningContent` becomes its `thinking_blocks` (signatures intact; redacted content as its
//! base64 text); `additionalModelRequestFields` reasoning settings (`thinking` /
//! `reasoning_config`, `reasoning_effort`, Nova's `reasoningConfig`) become `thinking` or
//! `reasoning_effort`.
//!
//! ```
//! use open_bedrock_server::format::converse::decode_client_request;
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
use crate::format::data_url::encode_base64;
use crate::model::ChatRequest;

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
            let mut parts: Vec<Value> = Vec::new();
            for block in blocks {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    parts.push(json!({"type": "text", "text": t}));
                } else if let Some(point) = block.get("cachePoint") {
                    if let Some(last) = parts.last_mut() {
                        last["cache_control"] = cache_control(point);
                    }
                }
            }
            if parts.iter().any(|p| p.get("cache_control").is_some()) {
                messages.push(json!({"role": "system", "content": parts}));
            } else if !parts.is_empty() {
                let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
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
        let mut tools: Vec<Value> = Vec::new();
        for tool in tool_config
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(spec) = tool.get("toolSpec") {
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
                tools.push(json!({"type": "function", "function": function}));
            } else if let Some(point) = tool.get("cachePoint") {
                if let Some(last) = tools.last_mut() {
                    last["cache_control"] = cache_control(point);
                }
            }
        }
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
    if let Some(g) = body.get("guardrailConfig").filter(|g| !g.is_null()) {
        obj.insert("guardrailConfig".into(), g.clone());
    }
    if let Some(format) = body.get("outputConfig").and_then(|c| c.get("textFormat")) {
        // Structured output: the schema travels as a string.
        let spec = format
            .pointer("/structure/jsonSchema")
            .filter(|_| format.get("type").and_then(Value::as_str) == Some("json_schema"))
            .ok_or_else(|| {
                invalid("outputConfig.textFormat must be a json_schema with structure.jsonSchema")
            })?;
        let schema: Value = spec
            .get("schema")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| invalid("outputConfig.textFormat.structure.jsonSchema.schema must be a JSON Schema as a string"))?;
        let mut json_schema = json!({"name": spec.get("name").cloned().unwrap_or_else(|| json!("output")), "schema": schema});
        if let Some(d) = spec.get("description") {
            json_schema["description"] = d.clone();
        }
        obj.insert(
            "response_format".into(),
            json!({"type": "json_schema", "json_schema": json_schema}),
        );
    }
    if let Some(fields) = body.get("additionalModelRequestFields") {
        if let Some(k) = fields.get("top_k") {
            obj.insert("top_k".into(), k.clone());
        }
        // Claude's thinking (AWS's examples also spell it `reasoning_config`).
        if let Some(t) = fields
            .get("thinking")
            .or_else(|| fields.get("reasoning_config"))
        {
            obj.insert("thinking".into(), t.clone());
        }
        let effort = fields.get("reasoning_effort").or_else(|| {
            fields
                .get("reasoningConfig")
                .and_then(|c| c.get("maxReasoningEffort"))
        });
        if let Some(e) = effort {
            obj.insert("reasoning_effort".into(), e.clone());
        }
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

/// A `cachePoint` block as a canonical breakpoint.
fn cache_control(point: &Value) -> Value {
    let mut cache = json!({"type": "ephemeral"});
    if let Some(ttl) = point.get("ttl").filter(|t| t.is_string()) {
        cache["ttl"] = ttl.clone();
    }
    cache
}

fn decode_user_turn(blocks: &[Value], messages: &mut Vec<Value>) -> Result<(), GatewayError> {
    let mut parts: Vec<Value> = Vec::new();
    // What a cachePoint marks: the last part, or the last tool result (a message already out).
    let mut last_is_result = false;
    for block in blocks {
        if let Some(point) = block.get("cachePoint") {
            let target = if last_is_result {
                messages.last_mut()
            } else {
                parts.last_mut()
            };
            if let Some(target) = target {
                target["cache_control"] = cache_control(point);
            }
            continue;
        }
        last_is_result = block.get("toolResult").is_some();
        if let Some(text) = block.get("text").and_then(Value::as_str) {
            parts.push(json!({"type": "text", "text": text}));
        } else if let Some(image) = block.get("image") {
            let format = image.get("format").and_then(Value::as_str).unwrap_or("png");
            let url = if let Some(bytes) = image.pointer("/source/bytes").and_then(Value::as_str) {
                format!("data:image/{format};base64,{bytes}")
            } else if let Some(uri) = image
                .pointer("/source/s3Location/uri")
                .and_then(Value::as_str)
            {
                // Allowed only for the gateway's configured buckets (checked where it is sent).
                uri.to_owned()
            } else {
                return Err(invalid("an image source needs bytes or s3Location"));
            };
            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
        } else if let Some(doc) = block.get("document") {
            let format = doc.get("format").and_then(Value::as_str).unwrap_or("txt");
            let name = doc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("document");
            let source = doc.get("source");
            let text = source
                .and_then(|s| s.get("text"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| {
                    let chunks = source?.get("content")?.as_array()?;
                    Some(
                        chunks
                            .iter()
                            .filter_map(|c| c.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )
                });
            let file_data =
                if let Some(bytes) = source.and_then(|s| s.get("bytes")).and_then(Value::as_str) {
                    format!("data:{};base64,{bytes}", document_mime(format))
                } else if let Some(text) = text {
                    format!("data:text/plain;base64,{}", encode_base64(text.as_bytes()))
                } else if let Some(uri) = source
                    .and_then(|s| s.pointer("/s3Location/uri"))
                    .and_then(Value::as_str)
                {
                    uri.to_owned()
                } else {
                    return Err(invalid(
                        "a document source needs bytes, text, content or s3Location",
                    ));
                };
            let mut file = json!({"file_data": file_data, "filename": format!("{name}.{format}"), "title": name});
            if let Some(context) = doc.get("context") {
                file["context"] = context.clone();
            }
            if let Some(citations) = doc.get("citations") {
                file["citations"] = citations.clone();
            }
            parts.push(json!({"type": "file", "file": file}));
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
    let mut thinking = Vec::new();
    let mut cache = None;
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(point) = block.get("cachePoint") {
            cache = Some(cache_control(point));
        } else if let Some(r) = block.get("reasoningContent") {
            if let Some(t) = r.get("reasoningText") {
                let mut b = json!({"type": "thinking", "thinking": t.get("text").cloned().unwrap_or_else(|| json!(""))});
                if let Some(sig) = t.get("signature") {
                    b["signature"] = sig.clone();
                }
                thinking.push(b);
            } else if let Some(data) = r.get("redactedContent") {
                thinking.push(json!({"type": "redacted_thinking", "data": data}));
            }
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
    if !thinking.is_empty() {
        msg["thinking_blocks"] = Value::Array(thinking);
    }
    if let Some(c) = cache {
        msg["cache_control"] = c;
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

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
    fn cache_points_reasoning_and_reasoning_settings() {
        let req = decode(
            json!({
                "system": [{"text": "Rules"}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
                "messages": [
                    {"role": "user", "content": [{"text": "Doc"}, {"cachePoint": {"type": "default"}}, {"text": "Q"}]},
                    {"role": "assistant", "content": [
                        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                        {"reasoningContent": {"redactedContent": "AAEC"}},
                        {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}]},
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}},
                        {"cachePoint": {"type": "default"}}]}
                ],
                "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}},
                    {"cachePoint": {"type": "default"}}]},
                "additionalModelRequestFields": {"reasoning_config": {"type": "enabled", "budget_tokens": 2048}}
            }),
            false,
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(
            v["messages"][0]["content"],
            json!([{"type": "text", "text": "Rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
        );
        assert_eq!(
            v["messages"][1]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(v["messages"][1]["content"][1]
            .get("cache_control")
            .is_none());
        assert_eq!(
            v["messages"][2]["thinking_blocks"],
            json!([{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                   {"type": "redacted_thinking", "data": "AAEC"}])
        );
        assert_eq!(
            v["messages"][3]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(v["tools"][0]["cache_control"], json!({"type": "ephemeral"}));
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        let req = decode(
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}],
                   "additionalModelRequestFields": {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}}),
            false,
        );
        assert_eq!(req.reasoning_effort.as_deref(), Some("high"));
    }
}
