//! A client's Claude-format body (Anthropic Messages, as Bedrock takes it) → canonical request.
//!
//! Used when a client POSTs a Bedrock Claude body to the gateway and the chosen model is not Claude
//! (Claude → Claude is forwarded as written by [`native_body`](super::native_body), losslessly), and
//! to check a body that is forwarded. `thinking` / `redacted_thinking` blocks in the history become
//! the assistant turn's `thinking_blocks` (signatures intact, for Claude over Converse); the
//! `thinking` object is kept as is; `cache_control` on system, message and tool blocks becomes the
//! canonical breakpoint of the matching part, message or tool (on a `tool_use` block: its
//! message's, the nearest the canonical form has).
//!
//! The body is read from the parsed JSON map (not a typed struct) so every type error can name the
//! offending parameter in the 400, as OpenAI clients expect.

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::format::data_url::encode_base64;
use crate::model::{
    CacheControl, ChatRequest, ContentPart, FilePart, Message, MessageContent, Role, Stop,
    StreamOptions, ThinkingBlock, Tool, ToolCall, ToolChoice,
};

/// Decodes a client's Claude-format body into a canonical request.
pub fn decode_client_request(body: &Map<String, Value>) -> Result<ChatRequest, GatewayError> {
    let model = ["model", "model_id", "modelId"]
        .iter()
        .find_map(|k| body.get(*k).map(|v| (*k, v)))
        .ok_or_else(|| GatewayError::missing_field("model"))?;
    let model = match model.1 {
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return Err(wrong_type(model.0, "a non-empty string")),
    };

    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            if !s.is_empty() {
                messages.push(Message::text(Role::System, s.as_str()));
            }
        }
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for block in blocks {
                match (
                    block.get("type").and_then(Value::as_str),
                    block.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) => {
                        let mut part = ContentPart::text(text);
                        part.cache_control = cache_control(block, "system")?;
                        parts.push(part);
                    }
                    _ => return Err(wrong_type("system", "a string or an array of text blocks")),
                }
            }
            if let Some(content) = content_from_parts(parts) {
                messages.push(Message::new(Role::System, Some(content)));
            }
        }
        Some(_) => return Err(wrong_type("system", "a string or an array of text blocks")),
    }

    let turns = match body.get("messages") {
        None => return Err(GatewayError::missing_field("messages")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(wrong_type("messages", "an array")),
    };
    for turn in turns {
        decode_turn(turn, &mut messages)?;
    }

    let mut req = ChatRequest {
        model,
        messages,
        ..ChatRequest::default()
    };
    if let Some(v) = present(body, "temperature") {
        req.temperature = Some(
            v.as_f64()
                .ok_or_else(|| wrong_type("temperature", "a number"))?,
        );
    }
    if let Some(v) = present(body, "top_p") {
        req.top_p = Some(v.as_f64().ok_or_else(|| wrong_type("top_p", "a number"))?);
    }
    if let Some(v) = present(body, "top_k") {
        if !v.is_number() {
            return Err(wrong_type("top_k", "a number"));
        }
        req.extra.insert("top_k".into(), v.clone());
    }
    if let Some(v) = present(body, "max_tokens") {
        let n = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| wrong_type("max_tokens", "a positive integer"))?;
        req.max_tokens = Some(n);
    }
    if let Some(v) = present(body, "stop_sequences") {
        let stops = v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| wrong_type("stop_sequences", "an array of strings"))?;
        if !stops.is_empty() {
            req.stop = Some(Stop::Many(stops));
        }
    }
    if let Some(v) = present(body, "metadata") {
        let user = v
            .as_object()
            .ok_or_else(|| wrong_type("metadata", "an object"))?
            .get("user_id");
        match user {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req.user = Some(s.clone()),
            Some(_) => return Err(wrong_type("metadata.user_id", "a string")),
        }
    }
    if let Some(v) = present(body, "stream") {
        let stream = v
            .as_bool()
            .ok_or_else(|| wrong_type("stream", "a boolean"))?;
        req.stream = Some(stream);
        if stream {
            // Claude clients always get usage in message_delta, so the canonical stream must carry it.
            req.stream_options = Some(StreamOptions {
                include_usage: Some(true),
                extra: Map::new(),
            });
        }
    }
    // Anthropic's structured outputs (`output_config.format`, earlier `output_format`): the
    // canonical `response_format` of the same schema.
    let output_format = present(body, "output_config")
        .and_then(|c| c.get("format"))
        .filter(|f| !f.is_null())
        .map(|f| ("output_config.format", f))
        .or_else(|| present(body, "output_format").map(|f| ("output_format", f)));
    if let Some((param, v)) = output_format {
        let schema = v
            .as_object()
            .filter(|o| o.get("type").and_then(Value::as_str) == Some("json_schema"))
            .and_then(|o| o.get("schema"))
            .filter(|s| s.is_object())
            .ok_or_else(|| wrong_type(param, "{\"type\":\"json_schema\",\"schema\":{…}}"))?;
        req.response_format = Some(serde_json::json!({"type": "json_schema",
            "json_schema": {"name": "output", "schema": schema}}));
    }
    if let Some(v) = present(body, "thinking") {
        req.thinking = Some(
            serde_json::from_value(v.clone())
                .map_err(|_| wrong_type("thinking", "an object with a string 'type'"))?,
        );
    }
    if let Some(v) = present(body, "tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| wrong_type("tools", "an array"))?;
        let mut out = Vec::with_capacity(tools.len());
        for tool in tools {
            out.push(decode_tool(tool)?);
        }
        req.tools = Some(out);
    }
    if let Some(v) = present(body, "tool_choice") {
        let obj = v
            .as_object()
            .ok_or_else(|| wrong_type("tool_choice", "an object"))?;
        let choice = match obj.get("type").and_then(Value::as_str) {
            Some("auto") => ToolChoice::Mode("auto".into()),
            Some("any") => ToolChoice::Mode("required".into()),
            Some("none") => ToolChoice::Mode("none".into()),
            Some("tool") => {
                let name = obj
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| wrong_type("tool_choice.name", "a string"))?;
                ToolChoice::Object(
                    serde_json::json!({"type": "function", "function": {"name": name}}),
                )
            }
            _ => {
                return Err(wrong_type(
                    "tool_choice",
                    "an object with type auto, any, tool or none",
                ))
            }
        };
        req.tool_choice = Some(choice);
        match obj.get("disable_parallel_tool_use") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(disable)) => {
                if *disable {
                    req.parallel_tool_calls = Some(false);
                }
            }
            Some(_) => {
                return Err(wrong_type(
                    "tool_choice.disable_parallel_tool_use",
                    "a boolean",
                ))
            }
        }
    }
    Ok(req)
}

/// A present, non-null member.
fn present<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn wrong_type(param: &'static str, expected: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid type for '{param}': expected {expected}."))
        .with_param(param)
}

fn bad_message(message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into()).with_param("messages")
}

/// A lone text part without a breakpoint collapses to a plain string; no parts → no content.
fn content_from_parts(mut parts: Vec<ContentPart>) -> Option<MessageContent> {
    match parts.len() {
        0 => None,
        1 if parts[0].kind == "text" && parts[0].cache_control.is_none() => {
            parts.pop().and_then(|p| p.text).map(MessageContent::Text)
        }
        _ => Some(MessageContent::Parts(parts)),
    }
}

/// A block's `cache_control`, typed.
fn cache_control(block: &Value, param: &'static str) -> Result<Option<CacheControl>, GatewayError> {
    match block.get("cache_control") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| wrong_type(param, "cache_control objects like {\"type\":\"ephemeral\"}")),
    }
}

fn decode_turn(turn: &Value, out: &mut Vec<Message>) -> Result<(), GatewayError> {
    let obj = turn
        .as_object()
        .ok_or_else(|| bad_message("Each message must be an object."))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(bad_message(format!(
                "Invalid message role '{other}': expected user or assistant."
            )))
        }
        None => return Err(bad_message("Each message needs a 'role'.")),
    };
    let blocks = match obj.get("content") {
        Some(Value::String(s)) => {
            out.push(Message::new(role, Some(MessageContent::Text(s.clone()))));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(bad_message(
                "Message 'content' must be a string or an array of content blocks.",
            ))
        }
    };

    let mut parts = Vec::new();
    let mut tool_calls = Vec::new();
    let mut tool_results = Vec::new();
    let mut thinking_blocks = Vec::new();
    let mut turn_cache = None;
    for block in blocks {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_message("Each content block needs a 'type'."))?;
        let cache = cache_control(block, "messages")?;
        match (kind, role) {
            ("text", _) => {
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_message("A text block needs a string 'text'."))?;
                let mut part = ContentPart::text(text);
                part.cache_control = cache;
                parts.push(part);
            }
            ("image", Role::User) => {
                let mut part = image_part(block)?;
                part.cache_control = cache;
                parts.push(part);
            }
            ("document", Role::User) => {
                let mut part = document_part(block)?;
                part.cache_control = cache;
                parts.push(part);
            }
            ("tool_result", Role::User) => {
                let mut result = tool_result_message(block)?;
                result.cache_control = cache;
                tool_results.push(result);
            }
            ("tool_use", Role::Assistant) => {
                tool_calls.push(tool_call(block)?);
                turn_cache = cache.or(turn_cache);
            }
            ("thinking", Role::Assistant) => {
                let text = block.get("thinking").and_then(Value::as_str);
                let signature = block.get("signature").and_then(Value::as_str);
                let (Some(thinking), Some(signature)) = (text, signature) else {
                    return Err(bad_message(
                        "A thinking block needs string 'thinking' and 'signature'.",
                    ));
                };
                thinking_blocks.push(ThinkingBlock::Thinking {
                    thinking: thinking.to_owned(),
                    signature: Some(signature.to_owned()),
                });
            }
            ("redacted_thinking", Role::Assistant) => {
                let data = block.get("data").and_then(Value::as_str).ok_or_else(|| {
                    bad_message("A redacted_thinking block needs a string 'data'.")
                })?;
                thinking_blocks.push(ThinkingBlock::RedactedThinking {
                    data: data.to_owned(),
                });
            }
            (other, _) => {
                return Err(GatewayError::unsupported(
                    "messages",
                    format!(
                        "Content block type '{other}' is not supported in a {} message.",
                        role.as_str()
                    ),
                ))
            }
        }
    }

    // Tool results answer the previous assistant turn, so they come before the rest of the turn.
    out.extend(tool_results);
    let content = content_from_parts(parts);
    if role == Role::Assistant {
        if content.is_some() || !tool_calls.is_empty() || !thinking_blocks.is_empty() {
            let mut m = Message::new(role, content);
            m.tool_calls = (!tool_calls.is_empty()).then_some(tool_calls);
            m.thinking_blocks = (!thinking_blocks.is_empty()).then_some(thinking_blocks);
            m.cache_control = turn_cache;
            out.push(m);
        }
    } else if let Some(content) = content {
        out.push(Message::new(role, Some(content)));
    }
    Ok(())
}

/// `{"type":"base64","media_type","data"}` → the pieces of a data URL.
fn base64_source(block: &Value) -> Option<(&str, &str)> {
    let source = block.get("source")?;
    if source.get("type").and_then(Value::as_str) != Some("base64") {
        return None;
    }
    Some((
        source.get("media_type")?.as_str()?,
        source.get("data")?.as_str()?,
    ))
}

fn image_part(block: &Value) -> Result<ContentPart, GatewayError> {
    if let Some((mime, data)) = base64_source(block) {
        return Ok(ContentPart::image_url(format!("data:{mime};base64,{data}")));
    }
    let source = block.get("source");
    match (
        source.and_then(|s| s.get("type")).and_then(Value::as_str),
        source.and_then(|s| s.get("url")).and_then(Value::as_str),
    ) {
        (Some("url"), Some(url)) => Ok(ContentPart::image_url(url)),
        _ => Err(bad_message(
            "An image block needs a base64 or url 'source'.",
        )),
    }
}

/// A document block as a file part: base64 (PDF), text (as a `text/plain` data URL) or URL
/// sources; its title, context and citations settings kept for models that take them.
fn document_part(block: &Value) -> Result<ContentPart, GatewayError> {
    let source = block.get("source");
    let title = block
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let kind = source.and_then(|s| s.get("type")).and_then(Value::as_str);
    let (data, filename) = match kind {
        Some("text") => {
            let text = source
                .and_then(|s| s.get("data"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad_message("A text document needs string 'source.data'."))?;
            let data = format!("data:text/plain;base64,{}", encode_base64(text.as_bytes()));
            (
                data,
                title.map_or_else(|| "document.txt".to_owned(), str::to_owned),
            )
        }
        Some("url") => {
            let url = source
                .and_then(|s| s.get("url"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad_message("A url document needs string 'source.url'."))?;
            (
                url.to_owned(),
                title.map_or_else(|| "document.pdf".to_owned(), str::to_owned),
            )
        }
        _ => {
            let (mime, data) = base64_source(block).ok_or_else(|| {
                bad_message("A document block needs a base64, text or url 'source'.")
            })?;
            (
                format!("data:{mime};base64,{data}"),
                title.map_or_else(|| "document.pdf".to_owned(), str::to_owned),
            )
        }
    };
    let mut file = FilePart::inline(data, Some(filename));
    file.title = title.map(str::to_owned);
    file.context = block
        .get("context")
        .and_then(Value::as_str)
        .map(str::to_owned);
    file.citations = block.get("citations").filter(|c| c.is_object()).cloned();
    let mut part = ContentPart::text("");
    part.kind = "file".into();
    part.text = None;
    part.file = Some(file);
    Ok(part)
}

fn tool_result_message(block: &Value) -> Result<Message, GatewayError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_message("A tool_result block needs a string 'tool_use_id'."))?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            let mut texts = Vec::with_capacity(items.len());
            for item in items {
                match (
                    item.get("type").and_then(Value::as_str),
                    item.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => texts.push(t),
                    _ => return Err(GatewayError::unsupported(
                        "messages",
                        "Only text content is supported inside tool_result blocks for this model.",
                    )),
                }
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(bad_message(
                "tool_result 'content' must be a string or an array of blocks.",
            ))
        }
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    let mut m = Message::new(Role::Tool, Some(MessageContent::Text(text)));
    m.tool_call_id = Some(id.to_owned());
    Ok(m)
}

fn tool_call(block: &Value) -> Result<ToolCall, GatewayError> {
    let id = block.get("id").and_then(Value::as_str);
    let name = block.get("name").and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(bad_message(
            "A tool_use block needs string 'id' and 'name'.",
        ));
    };
    let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(input) => input.to_string(),
    };
    Ok(ToolCall::function(id, name, arguments))
}

fn decode_tool(tool: &Value) -> Result<Tool, GatewayError> {
    let obj = tool
        .as_object()
        .ok_or_else(|| wrong_type("tools", "an array of tool objects"))?;
    match obj.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(other) => {
            return Err(GatewayError::unsupported(
                "tools",
                format!(
                    "Anthropic-defined tool type '{other}' is only supported by Claude models."
                ),
            ))
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| wrong_type("tools", "tool objects with a string 'name'"))?;
    let description = obj
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let schema = obj.get("input_schema").filter(|s| !s.is_null()).cloned();
    let mut out = Tool::function(name, description, schema);
    out.cache_control = cache_control(tool, "tools")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Value {
        let req = decode_client_request(v.as_object().unwrap()).unwrap();
        serde_json::to_value(req).unwrap()
    }

    fn decode_err(v: Value) -> GatewayError {
        decode_client_request(v.as_object().unwrap()).unwrap_err()
    }

    #[test]
    fn full_body() {
        let out = decode(json!({
            "anthropic_version":"bedrock-2023-05-31","modelId":"gpt-4o","max_tokens":256,
            "system":"You are terse.","temperature":0.2,"top_p":0.9,"top_k":5,"stop_sequences":["END"],
            "metadata":{"user_id":"u-1"},"stream":true,
            "tools":[{"name":"get_weather","description":"Current weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
            "tool_choice":{"type":"any","disable_parallel_tool_use":true},
            "messages":[
                {"role":"user","content":"Weather in Paris?"},
                {"role":"assistant","content":[
                    {"type":"thinking","thinking":"hmm","signature":"s"},
                    {"type":"text","text":"Checking."},
                    {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
                {"role":"user","content":[
                    {"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"21C"},{"type":"text","text":"sunny"}]},
                    {"type":"text","text":"And tomorrow?"}]}
            ]
        }));
        assert_eq!(
            out,
            json!({"model":"gpt-4o","max_tokens":256,"temperature":0.2,"top_p":0.9,"top_k":5,"stop":["END"],
                "user":"u-1","stream":true,"stream_options":{"include_usage":true},
                "tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather",
                    "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
                "tool_choice":"required","parallel_tool_calls":false,
                "messages":[
                    {"role":"system","content":"You are terse."},
                    {"role":"user","content":"Weather in Paris?"},
                    {"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function",
                        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}],
                        "thinking_blocks":[{"type":"thinking","thinking":"hmm","signature":"s"}]},
                    {"role":"tool","content":"21C\nsunny","tool_call_id":"toolu_1"},
                    {"role":"user","content":"And tomorrow?"}]})
        );
    }

    #[test]
    fn media_errors_and_system_blocks() {
        let out = decode(
            json!({"model":"m","system":[{"type":"text","text":"A"},{"type":"text","text":"B"}],
            "messages":[{"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t1","content":"boom","is_error":true},
                {"type":"tool_result","tool_use_id":"t2"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBE"},"title":"r.pdf"},
                {"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain doc"}}]}]}),
        );
        assert_eq!(
            out["messages"],
            json!([
                {"role":"system","content":[{"type":"text","text":"A"},{"type":"text","text":"B"}]},
                {"role":"tool","content":"Error: boom","tool_call_id":"t1"},
                {"role":"tool","content":"","tool_call_id":"t2"},
                {"role":"user","content":[
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},
                    {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"r.pdf","title":"r.pdf"}},
                    {"type":"file","file":{"file_data":"data:text/plain;base64,cGxhaW4gZG9j","filename":"document.txt"}}]}])
        );
        assert!(out.get("stream").is_none() && out.get("stream_options").is_none());
    }

    #[test]
    fn model_fallbacks_and_tool_choices() {
        assert_eq!(decode(json!({"model_id":"a","messages":[]}))["model"], "a");
        assert_eq!(
            decode(json!({"model":"b","modelId":"c","messages":[]}))["model"],
            "b"
        );
        let e = decode_err(json!({"messages":[]}));
        assert_eq!((e.param(), e.status().as_u16()), (Some("model"), 400));
        for (choice, expected) in [
            (json!({"type":"auto"}), json!("auto")),
            (json!({"type":"none"}), json!("none")),
            (
                json!({"type":"tool","name":"f"}),
                json!({"type":"function","function":{"name":"f"}}),
            ),
        ] {
            let out = decode(json!({"model":"m","messages":[],"tool_choice":choice}));
            assert_eq!(out["tool_choice"], expected);
            assert!(out.get("parallel_tool_calls").is_none());
        }
        let out = decode(json!({"model":"m","messages":[],"stream":false}));
        assert_eq!(out["stream"], false);
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn wrong_types_name_the_param() {
        for (key, value, param) in [
            ("temperature", json!("hot"), "temperature"),
            ("top_p", json!([]), "top_p"),
            ("top_k", json!("5"), "top_k"),
            ("max_tokens", json!(-1), "max_tokens"),
            ("stop_sequences", json!("END"), "stop_sequences"),
            ("stream", json!("yes"), "stream"),
            ("tools", json!({}), "tools"),
            ("tool_choice", json!("auto"), "tool_choice"),
            ("system", json!(5), "system"),
            ("messages", json!({}), "messages"),
            ("model", json!(5), "model"),
            ("metadata", json!({"user_id":5}), "metadata.user_id"),
        ] {
            let mut body = json!({"model":"m","messages":[]});
            body[key] = value;
            let e = decode_err(body);
            assert_eq!(e.status(), 400, "{key}");
            assert_eq!(e.param(), Some(param), "{key}");
        }
        let e = decode_err(json!({"model":"m","messages":[{"role":"system","content":"x"}]}));
        assert_eq!(e.param(), Some("messages"));
        let e = decode_err(
            json!({"model":"m","messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}),
        );
        assert_eq!(e.param(), Some("messages"));
        let e = decode_err(
            json!({"model":"m","messages":[],"tools":[{"type":"bash_20250124","name":"bash"}]}),
        );
        assert_eq!(e.param(), Some("tools"));
    }

    #[test]
    fn cache_control_thinking_and_its_blocks() {
        let out = decode(
            json!({"model":"m","thinking":{"type":"enabled","budget_tokens":2048},
            "system":[{"type":"text","text":"Rules","cache_control":{"type":"ephemeral","ttl":"1h"}}],
            "tools":[{"name":"f","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
            "messages":[
                {"role":"user","content":[{"type":"text","text":"Doc","cache_control":{"type":"ephemeral"}}]},
                {"role":"assistant","content":[
                    {"type":"thinking","thinking":"hmm","signature":"sig=="},
                    {"type":"redacted_thinking","data":"enc"},
                    {"type":"tool_use","id":"t1","name":"f","input":{},"cache_control":{"type":"ephemeral"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok",
                    "cache_control":{"type":"ephemeral"}}]}]}),
        );
        assert_eq!(
            out["thinking"],
            json!({"type":"enabled","budget_tokens":2048})
        );
        assert_eq!(
            out["messages"][0],
            json!({"role":"system","content":[{"type":"text","text":"Rules","cache_control":{"type":"ephemeral","ttl":"1h"}}]})
        );
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type":"text","text":"Doc","cache_control":{"type":"ephemeral"}}])
        );
        assert_eq!(
            out["messages"][2]["thinking_blocks"],
            json!([{"type":"thinking","thinking":"hmm","signature":"sig=="},{"type":"redacted_thinking","data":"enc"}])
        );
        assert_eq!(
            out["messages"][2]["cache_control"],
            json!({"type":"ephemeral"})
        );
        assert_eq!(
            out["messages"][3]["cache_control"],
            json!({"type":"ephemeral"})
        );
        assert_eq!(
            out["tools"][0]["cache_control"],
            json!({"type":"ephemeral"})
        );
        let e = decode_err(
            json!({"model":"m","messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"x"}]}]}),
        );
        assert_eq!(e.param(), Some("messages"));
        let e = decode_err(json!({"model":"m","messages":[],"thinking":"on"}));
        assert_eq!(e.param(), Some("thinking"));
    }
}
