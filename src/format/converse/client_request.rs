//! A client's Converse request, on plain JSON (what a boto3 / AWS SDK `converse` or
//! `converse_stream` call sends to the gateway) → the canonical request.
//!
//! [`decode_client_request`] (PROTOCOLS 4.1, 4.2): `system` text blocks become one system message;
//! `toolUse` blocks become assistant tool calls (input serialized as the arguments); `toolResult`
//! blocks become `tool` messages placed before the rest of their user turn; images become `data:`
//! URLs, documents file parts; `inferenceConfig` and `toolConfig` map per PROTOCOLS 5.2 and 5.4.
//! Reasoning and cache points are dropped (they only mean something to the model that wrote them).
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
}
