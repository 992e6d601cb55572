//! A client's `/v1/responses` body → the canonical chat request, and what the Response object
//! echoes back.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::model::ChatRequest;

/// The members of a Responses request the gateway reads; any other is a 400 naming it.
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "reasoning",
    "metadata",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "store",
    "previous_response_id",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "truncation",
    "include",
    "service_tier",
];

/// Built-in tool types: served by OpenAI itself, so only an upstream that speaks the Responses
/// API can run them.
const BUILT_IN_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "computer_use_preview",
    "computer_use",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
];

/// A decoded Responses request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponsesRequest {
    /// The chat request it asks for: the previous turns (if any), the instructions as the
    /// system message, the input items as messages.
    pub chat: ChatRequest,
    /// The conversation to keep for a later `previous_response_id`: the previous turns and this
    /// input as chat messages (the instructions are not carried over, as OpenAI does).
    pub conversation: Vec<Value>,
    /// What the Response object echoes (`instructions`, `tools`, `metadata`, …).
    pub echo: Map<String, Value>,
    /// `store` (default `true`).
    pub store: bool,
    /// `previous_response_id`, if any.
    pub previous_response_id: Option<String>,
    /// The error for a provider that translates the call: the body names a built-in tool (left
    /// out of [`chat`](Self::chat)), which only an upstream speaking the Responses API runs.
    pub needs_responses_api: Option<GatewayError>,
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into())
        .with_param(param.to_owned())
        .with_code("invalid_value")
}

/// The `previous_response_id` of a body, if it names one (read before the body is decoded, so the
/// stored conversation can be fetched).
pub fn previous_response_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        previous_response_id: Option<String>,
    }
    serde_json::from_slice::<Head>(body)
        .ok()
        .and_then(|h| h.previous_response_id)
}

/// A body the gateway cannot translate (its decoding failed with `error`: an input item only
/// OpenAI reads, …) as a request only an upstream that speaks the Responses API can serve: the
/// chat request holds just its `model`, `stream` and `max_output_tokens` (for routing, limits and
/// the budget estimate), and `error` is what any translating provider answers. `None` when the
/// body has no string `model`.
pub fn forward_only(body: &[u8], error: GatewayError) -> Option<ResponsesRequest> {
    #[derive(serde::Deserialize)]
    struct Head {
        model: String,
        stream: Option<bool>,
        max_output_tokens: Option<u32>,
        store: Option<bool>,
    }
    let head: Head = serde_json::from_slice(body).ok()?;
    crate::validate::model_id(&head.model).ok()?;
    let chat = ChatRequest {
        model: head.model,
        stream: head.stream,
        max_completion_tokens: head.max_output_tokens,
        ..ChatRequest::default()
    };
    Some(ResponsesRequest {
        chat,
        conversation: Vec::new(),
        echo: Map::new(),
        store: head.store.unwrap_or(true),
        previous_response_id: None,
        needs_responses_api: Some(error),
    })
}

/// Decodes a Responses body into the chat request it asks for, after `previous` (the stored
/// conversation of `previous_response_id`, as chat messages). Built-in tools are a 400 naming
/// `tools` (an OpenAI upstream configured Responses-capable gets the body as is instead).
pub fn decode_client_request(
    body: &[u8],
    previous: &[Value],
) -> Result<ResponsesRequest, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw: Map<String, Value> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request body: {e}")))?;
    // A member the gateway does not read is a 400 for a translating provider; an upstream that
    // speaks the Responses API gets it as sent.
    let mut needs_responses_api = raw.keys().find(|k| !KNOWN.contains(&k.as_str())).map(|k| {
        GatewayError::invalid_request(format!(
            "Unsupported parameter: '{k}' is not supported by this gateway's Responses API."
        ))
        .with_param(k.clone())
        .with_code("unsupported_parameter")
    });
    let model = match raw.get("model") {
        Some(Value::String(m)) => {
            crate::validate::model_id(m)?;
            m.clone()
        }
        Some(_) => return Err(invalid("model", "'model' must be a string.")),
        None => return Err(GatewayError::missing_field("model")),
    };
    let mut input = match raw.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) => decode_items(items)?,
        None | Some(Value::Null) if !previous.is_empty() => Vec::new(),
        None | Some(Value::Null) => return Err(GatewayError::missing_field("input")),
        Some(_) => {
            return Err(invalid(
                "input",
                "'input' must be a string or a list of input items.",
            ))
        }
    };
    let mut conversation = previous.to_vec();
    conversation.append(&mut input);
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    match raw.get("instructions") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({"role": "system", "content": s}));
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("instructions", "'instructions' must be a string.")),
    }
    messages.extend(conversation.iter().cloned());

    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = raw.get("tools").filter(|t| !t.is_null()) {
        let tools = decode_tools(tools, &mut needs_responses_api)?;
        if tools.as_array().is_some_and(|t| !t.is_empty()) {
            chat.insert("tools".into(), tools);
        }
    }
    if let Some(choice) = raw.get("tool_choice").filter(|t| !t.is_null()) {
        chat.insert("tool_choice".into(), decode_tool_choice(choice)?);
    }
    for (from, to) in [
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("stream", "stream"),
        ("user", "user"),
        // A cache routing hint OpenAI chat completions reads as is; Bedrock refuses it (400).
        ("prompt_cache_key", "prompt_cache_key"),
    ] {
        if let Some(v) = raw.get(from).filter(|v| !v.is_null()) {
            chat.insert(to.into(), v.clone());
        }
    }
    if let Some(text) = raw.get("text").filter(|t| !t.is_null()) {
        if let Some(format) = decode_text_format(text)? {
            chat.insert("response_format".into(), format);
        }
    }
    match raw.get("reasoning") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => match r.get("effort") {
            None | Some(Value::Null) => {}
            Some(Value::String(e)) => {
                chat.insert("reasoning_effort".into(), Value::String(e.clone()));
            }
            Some(_) => {
                return Err(invalid(
                    "reasoning.effort",
                    "'reasoning.effort' must be a string.",
                ))
            }
        },
        Some(_) => return Err(invalid("reasoning", "'reasoning' must be an object.")),
    }
    if raw
        .get("metadata")
        .is_some_and(|m| !m.is_null() && !m.is_object())
    {
        return Err(invalid(
            "metadata",
            "'metadata' must be an object of strings.",
        ));
    }
    match raw.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.is_empty() => {}
        Some(Value::Array(_)) => {
            // Every `include` value names output only OpenAI's own Responses API produces
            // (encrypted reasoning, tool call results, logprobs): refused by a translating
            // provider, not dropped.
            needs_responses_api.get_or_insert_with(|| GatewayError::unsupported(
                "include",
                "'include' asks for output only an OpenAI upstream configured with `responses_api = true` returns.",
            ));
        }
        Some(_) => return Err(invalid("include", "'include' must be a list.")),
    }
    let store = match raw.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("store", "'store' must be a boolean.")),
    };
    let previous_response_id = match raw.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(invalid(
                "previous_response_id",
                "'previous_response_id' must be a string.",
            ))
        }
    };
    let chat: ChatRequest = serde_json::from_value(Value::Object(chat))
        .map_err(|e| GatewayError::invalid_request(format!("Invalid request body: {e}")))?;
    crate::validate::openai_request(&chat)?;
    let mut echo = Map::new();
    for key in [
        "instructions",
        "max_output_tokens",
        "metadata",
        "parallel_tool_calls",
        "reasoning",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "truncation",
        "user",
        "service_tier",
    ] {
        if let Some(v) = raw.get(key) {
            echo.insert(key.into(), v.clone());
        }
    }
    Ok(ResponsesRequest {
        chat,
        conversation,
        echo,
        store,
        previous_response_id,
        needs_responses_api,
    })
}

/// Input items → chat messages (consecutive `function_call` items become one assistant message
/// with several tool calls).
fn decode_items(items: &[Value]) -> Result<Vec<Value>, GatewayError> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(invalid(&param, format!("'{param}' must be an object.")));
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("message");
        match kind {
            "message" => {
                let role =
                    match obj.get("role").and_then(Value::as_str) {
                        Some(r @ ("user" | "assistant" | "system")) => r,
                        Some("developer") => "system",
                        _ => return Err(invalid(
                            &format!("{param}.role"),
                            "A message item's role must be user, assistant, system or developer.",
                        )),
                    };
                let content = match obj.get("content") {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .enumerate()
                            .map(|(j, p)| decode_part(p, &format!("{param}.content[{j}]")))
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => {
                        return Err(invalid(
                            &format!("{param}.content"),
                            "A message item's content must be a string or a list of parts.",
                        ))
                    }
                };
                let content = if role == "assistant" {
                    // Chat assistant turns are text: the output_text parts, joined.
                    match content {
                        Value::Array(parts) => Value::String(
                            parts
                                .iter()
                                .filter_map(|p| p["text"].as_str())
                                .collect::<Vec<_>>()
                                .join(""),
                        ),
                        s => s,
                    }
                } else {
                    content
                };
                out.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                let field = |name: &str| {
                    obj.get(name).and_then(Value::as_str).ok_or_else(|| {
                        invalid(
                            &format!("{param}.{name}"),
                            format!("A function_call item needs a string '{name}'."),
                        )
                    })
                };
                let call = json!({"id": field("call_id")?, "type": "function",
                    "function": {"name": field("name")?, "arguments": field("arguments")?}});
                let merge = out
                    .last_mut()
                    .filter(|m| m["role"] == "assistant" && m["tool_calls"].is_array());
                match merge {
                    Some(prev) => {
                        if let Some(calls) = prev["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    None => out
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let call_id = obj.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        &format!("{param}.call_id"),
                        "A function_call_output item needs a string 'call_id'.",
                    )
                })?;
                let output = match obj.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join(""),
                    _ => {
                        return Err(invalid(
                            &format!("{param}.output"),
                            "A function_call_output item needs an 'output' string.",
                        ))
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            // The model's own earlier reasoning: context the chat providers do not take back.
            "reasoning" => {}
            other => {
                return Err(GatewayError::unsupported(
                    format!("{param}.type"),
                    format!("Input items of type '{other}' are not supported by this gateway."),
                ))
            }
        }
    }
    Ok(out)
}

/// One content part of a message item → a chat content part.
fn decode_part(part: &Value, param: &str) -> Result<Value, GatewayError> {
    let kind = part["type"].as_str().unwrap_or_default();
    Ok(match kind {
        "input_text" | "output_text" | "text" => {
            let text = part["text"].as_str().ok_or_else(|| {
                invalid(
                    &format!("{param}.text"),
                    "A text part needs a string 'text'.",
                )
            })?;
            json!({"type": "text", "text": text})
        }
        "refusal" => json!({"type": "text", "text": part["refusal"].as_str().unwrap_or_default()}),
        "input_image" => {
            let Some(url) = part["image_url"].as_str() else {
                return Err(GatewayError::unsupported(
                    format!("{param}.image_url"),
                    "input_image needs an 'image_url' (a URL or a data: URL); file ids are not supported by this gateway.",
                ));
            };
            let mut image = json!({"url": url});
            if let Some(d) = part["detail"].as_str() {
                image["detail"] = Value::from(d);
            }
            json!({"type": "image_url", "image_url": image})
        }
        "input_file" => {
            let Some(data) = part["file_data"].as_str() else {
                return Err(GatewayError::unsupported(
                    format!("{param}.file_data"),
                    "input_file needs 'file_data' (a data: URL); file ids and URLs are not supported by this gateway.",
                ));
            };
            let mut file = json!({"file_data": data});
            if let Some(name) = part["filename"].as_str() {
                file["filename"] = Value::from(name);
            }
            json!({"type": "file", "file": file})
        }
        other => {
            return Err(GatewayError::unsupported(
                format!("{param}.type"),
                format!("Content parts of type '{other}' are not supported by this gateway."),
            ))
        }
    })
}

/// Function tools (flat in the Responses API) → chat tools; a built-in tool is left out and its
/// 400 kept in `built_in` (the call's error unless a Responses API upstream takes the body).
fn decode_tools(tools: &Value, built_in: &mut Option<GatewayError>) -> Result<Value, GatewayError> {
    let Some(tools) = tools.as_array() else {
        return Err(invalid("tools", "'tools' must be a list."));
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        match tool["type"].as_str() {
            Some("function") => {
                let Some(name) = tool["name"].as_str() else {
                    return Err(invalid(
                        &format!("tools[{i}].name"),
                        "A function tool needs a 'name'.",
                    ));
                };
                let mut function = json!({"name": name});
                for key in ["description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function[key] = v.clone();
                    }
                }
                out.push(json!({"type": "function", "function": function}));
            }
            Some(t) if BUILT_IN_TOOLS.contains(&t) => {
                if built_in.is_some() {
                    continue;
                }
                *built_in = Some(GatewayError::unsupported(
                    format!("tools[{i}].type"),
                    format!(
                        "The built-in tool '{t}' runs only at OpenAI: use a model served by an OpenAI upstream configured with `responses_api = true`, or a function tool."
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    &format!("tools[{i}].type"),
                    format!("Unknown tool type {other:?}."),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

fn decode_tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("tool_choice.name", "A function tool_choice needs a 'name'.")
            })?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(invalid(
            "tool_choice",
            "'tool_choice' must be auto, none, required or a function.",
        )),
    }
}

/// `text.format` → `response_format` (`None` for plain text).
fn decode_text_format(text: &Value) -> Result<Option<Value>, GatewayError> {
    let format = match text.get("format") {
        None | Some(Value::Null) => return Ok(None),
        Some(f) => f,
    };
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let Some(name) = format["name"].as_str() else {
                return Err(invalid(
                    "text.format.name",
                    "A json_schema format needs a 'name'.",
                ));
            };
            if !format["schema"].is_object() {
                return Err(invalid(
                    "text.format.schema",
                    "A json_schema format needs a 'schema' object.",
                ));
            }
            let mut schema = json!({"name": name, "schema": format["schema"]});
            for key in ["description", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema[key] = v.clone();
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(invalid(
            "text.format.type",
            "'text.format.type' must be text, json_object or json_schema.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_chat_messages_and_tool_turns() {
        let body = json!({"model": "gpt-4o", "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": "rain"}],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "w"},
            "max_output_tokens": 50, "text": {"format": {"type": "json_schema", "name": "x",
                "schema": {"type": "object"}, "strict": true}}, "reasoning": {"effort": "low"}});
        let r = decode_client_request(&serde_json::to_vec(&body).unwrap(), &[]).unwrap();
        let chat = serde_json::to_value(&r.chat).unwrap();
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            chat["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(
            chat["messages"][2]["tool_calls"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            chat["messages"][4],
            json!({"role": "tool", "tool_call_id": "c2", "content": "rain"})
        );
        assert_eq!(chat["tools"][0]["function"]["name"], "w");
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "w"}})
        );
        assert_eq!(chat["max_completion_tokens"], 50);
        assert_eq!(chat["response_format"]["json_schema"]["strict"], true);
        assert_eq!(chat["reasoning_effort"], "low");
        assert_eq!(r.conversation.len(), 4, "without the instructions");
        assert!(r.store);
    }

    #[test]
    fn built_in_tools_and_unknown_members_are_400s_naming_them() {
        // A built-in tool is left out of the chat request; its 400 is for a translating provider.
        let r = decode_client_request(
            br#"{"model":"m","input":"x","tools":[{"type":"web_search_preview"}]}"#,
            &[],
        )
        .unwrap();
        assert!(r.chat.tools.is_none());
        let e = r.needs_responses_api.unwrap();
        assert_eq!(e.param(), Some("tools[0].type"));
        let r = decode_client_request(br#"{"model":"m","input":"x","frobnicate":1}"#, &[]).unwrap();
        assert_eq!(r.needs_responses_api.unwrap().param(), Some("frobnicate"));
        let e = decode_client_request(br#"{"model":"m"}"#, &[]).unwrap_err();
        assert_eq!(e.param(), Some("input"));
        assert!(decode_client_request(
            br#"{"model":"m"}"#,
            &[json!({"role":"user","content":"a"})]
        )
        .is_ok());
    }
}
