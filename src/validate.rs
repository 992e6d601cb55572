//! Strict input: every known field of a request is checked for type and range before the request
//! is routed, so an invalid value is a 400 that names its `param` — for every upstream, before any
//! upstream call — instead of being forwarded to an upstream that may refuse it, misread it or
//! answer 200. Unknown fields are not judged: they pass through to OpenAI-compatible upstreams.
//!
//! - [`openai_request`]: an OpenAI chat-completions request after its typed decoding (which already
//!   refused values of the wrong JSON type for the typed fields): ranges (`temperature` 0–2,
//!   `top_p` 0–1, penalties −2–2, `n` 1–128, `max_tokens` / `max_completion_tokens` ≥ 1,
//!   `top_logprobs` 0–20 with `logprobs`), the fields kept as written (`seed` an integer,
//!   `logit_bias` an object of token ids to −100–100, `logprobs` a boolean, `response_format`'s
//!   type, `stream_options` only with `stream`), message and content-part shapes (a `tool` message
//!   needs `tool_call_id`, image `detail` is `auto`/`low`/`high`, audio `format` is `wav`/`mp3`),
//!   tool and `tool_choice` shapes (a function tool needs `function.name`);
//! - [`native_body`]: Claude, Titan and Converse bodies as the client wrote them (they may be
//!   forwarded as written): `anthropic_version` a string, `messages` non-empty, no empty content,
//!   `max_tokens` ≥ 1, tool inputs objects, a non-empty `inputText`;
//! - [`canonical`]: what every request needs whatever its format: a model id of at most
//!   [`MAX_MODEL_ID_BYTES`] bytes without control characters (a 100 KB id would otherwise reach
//!   an SDK that panics on the URI), and at least one message.
//!
//! ```
//! use open_bedrock_server::model::ChatRequest;
//! use open_bedrock_server::validate::openai_request;
//!
//! let ok: ChatRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":7}"#).unwrap();
//! assert!(openai_request(&ok).is_ok());
//! let bad: ChatRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":"7"}"#).unwrap();
//! assert_eq!(openai_request(&bad).unwrap_err().param(), Some("seed"));
//! ```

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::format::InboundFormat;
use crate::model::{ChatRequest, ContentPart, Message, MessageContent, Role, ToolChoice};

/// The longest model id accepted (AWS's own limit for a model identifier).
pub const MAX_MODEL_ID_BYTES: usize = 2048;

fn invalid(param: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_request(message.into())
        .with_param(param.into())
        .with_code("invalid_value")
}

fn wrong_type(param: impl Into<String>, expected: &str) -> GatewayError {
    let param = param.into();
    GatewayError::invalid_request(format!("Invalid type for '{param}': expected {expected}."))
        .with_param(param)
        .with_code("invalid_type")
}

fn out_of_range(param: &str, range: &str) -> GatewayError {
    invalid(
        param,
        format!("Invalid value for '{param}': expected a number {range}."),
    )
}

/// What every request needs whatever its format: a usable model id and at least one message.
pub fn canonical(req: &ChatRequest) -> Result<(), GatewayError> {
    model_id(&req.model)?;
    if req.messages.is_empty() {
        return Err(
            GatewayError::invalid_request("'messages' must contain at least one message.")
                .with_param("messages")
                .with_code("empty_array"),
        );
    }
    Ok(())
}

/// A model id: non-blank, at most [`MAX_MODEL_ID_BYTES`] bytes, no control characters.
pub fn model_id(model: &str) -> Result<(), GatewayError> {
    if model.trim().is_empty() {
        return Err(GatewayError::missing_field("model"));
    }
    if model.len() > MAX_MODEL_ID_BYTES {
        return Err(invalid(
            "model",
            format!(
                "The model id is {} bytes long; at most {MAX_MODEL_ID_BYTES} are accepted.",
                model.len()
            ),
        ));
    }
    if model.chars().any(char::is_control) {
        return Err(invalid(
            "model",
            "The model id contains control characters.",
        ));
    }
    Ok(())
}

/// Checks an OpenAI chat-completions request (see the module docs), then [`canonical`].
pub fn openai_request(req: &ChatRequest) -> Result<(), GatewayError> {
    canonical(req)?;
    range(req.temperature, "temperature", 0.0, 2.0)?;
    range(req.top_p, "top_p", 0.0, 1.0)?;
    if let Some(n) = req.n {
        if !(1..=128).contains(&n) {
            return Err(invalid(
                "n",
                "Invalid value for 'n': expected an integer from 1 to 128.",
            ));
        }
    }
    for (param, value) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if value == Some(0) {
            return Err(invalid(
                param,
                format!("Invalid value for '{param}': expected an integer of at least 1."),
            ));
        }
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    extra_fields(&req.extra)?;
    if let Some(format) = &req.response_format {
        response_format(format)?;
    }
    if let Some(tools) = &req.tools {
        for (i, tool) in tools.iter().enumerate() {
            if tool.kind == "function" {
                let Some(function) = &tool.function else {
                    return Err(GatewayError::missing_field(format!("tools[{i}].function")));
                };
                function_name(&function.name, &format!("tools[{i}].function.name"))?;
                if let Some(p) = &function.parameters {
                    if !p.is_object() {
                        return Err(wrong_type(
                            format!("tools[{i}].function.parameters"),
                            "an object",
                        ));
                    }
                }
            } else if tool.kind != "custom" {
                return Err(invalid(
                    format!("tools[{i}].type"),
                    format!(
                        "Invalid tool type '{}': expected function or custom.",
                        tool.kind
                    ),
                ));
            }
        }
    }
    if let Some(choice) = &req.tool_choice {
        tool_choice(choice)?;
    }
    for (i, message) in req.messages.iter().enumerate() {
        openai_message(message, i)?;
    }
    Ok(())
}

fn range(value: Option<f64>, param: &str, min: f64, max: f64) -> Result<(), GatewayError> {
    match value {
        Some(v) if !(v.is_finite() && (min..=max).contains(&v)) => {
            Err(out_of_range(param, &format!("from {min} to {max}")))
        }
        _ => Ok(()),
    }
}

/// Known fields that the canonical request keeps as written (in `extra`).
fn extra_fields(extra: &Map<String, Value>) -> Result<(), GatewayError> {
    let present = |k: &str| extra.get(k).filter(|v| !v.is_null());
    if let Some(seed) = present("seed") {
        if seed.as_i64().is_none() {
            return Err(wrong_type("seed", "an integer"));
        }
    }
    for penalty in ["presence_penalty", "frequency_penalty"] {
        if let Some(v) = present(penalty) {
            let n = v.as_f64().ok_or_else(|| wrong_type(penalty, "a number"))?;
            range(Some(n), penalty, -2.0, 2.0)?;
        }
    }
    let logprobs = match present("logprobs") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(wrong_type("logprobs", "a boolean")),
    };
    if let Some(v) = present("top_logprobs") {
        let n = v.as_u64().filter(|n| *n <= 20).ok_or_else(|| {
            invalid(
                "top_logprobs",
                "Invalid value for 'top_logprobs': expected an integer from 0 to 20.",
            )
        })?;
        if !logprobs {
            return Err(invalid(
                "top_logprobs",
                format!("'top_logprobs' ({n}) needs 'logprobs' set to true."),
            ));
        }
    }
    if let Some(v) = present("logit_bias") {
        let map = v
            .as_object()
            .ok_or_else(|| wrong_type("logit_bias", "an object of token ids to numbers"))?;
        for (token, bias) in map {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    "logit_bias",
                    format!("Invalid key '{token}' in 'logit_bias': expected a token id."),
                ));
            }
            let b = bias
                .as_f64()
                .ok_or_else(|| wrong_type("logit_bias", "an object of token ids to numbers"))?;
            if !(-100.0..=100.0).contains(&b) {
                return Err(out_of_range("logit_bias", "from -100 to 100"));
            }
        }
    }
    for flag in ["store"] {
        if present(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(wrong_type(flag, "a boolean"));
        }
    }
    if let Some(v) = present("metadata") {
        let map = v
            .as_object()
            .ok_or_else(|| wrong_type("metadata", "an object of strings"))?;
        if map.values().any(|v| !v.is_string()) {
            return Err(wrong_type("metadata", "an object of strings"));
        }
    }
    if let Some(v) = present("modalities") {
        let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(wrong_type("modalities", "an array of strings"));
        }
    }
    for object in ["audio", "prediction", "web_search_options"] {
        if present(object).is_some_and(|v| !v.is_object()) {
            return Err(wrong_type(object, "an object"));
        }
    }
    if present("service_tier").is_some_and(|v| !v.is_string()) {
        return Err(wrong_type("service_tier", "a string"));
    }
    Ok(())
}

fn response_format(format: &Value) -> Result<(), GatewayError> {
    let obj = format
        .as_object()
        .ok_or_else(|| wrong_type("response_format", "an object"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("text" | "json_object") => Ok(()),
        Some("json_schema") => {
            let spec = obj
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| GatewayError::missing_field("response_format.json_schema"))?;
            if !spec.get("name").is_some_and(Value::is_string) {
                return Err(GatewayError::missing_field("response_format.json_schema.name"));
            }
            if spec.get("schema").is_some_and(|s| !s.is_object()) {
                return Err(wrong_type("response_format.json_schema.schema", "an object"));
            }
            Ok(())
        }
        Some(other) => Err(invalid(
            "response_format.type",
            format!("Invalid value '{other}' for 'response_format.type': expected text, json_object or json_schema."),
        )),
        None => Err(GatewayError::missing_field("response_format.type")),
    }
}

/// `^[a-zA-Z0-9_-]{1,64}$`, as OpenAI requires of function names.
fn function_name(name: &str, param: &str) -> Result<(), GatewayError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            param,
            format!("Invalid '{param}': a function name is 1 to 64 letters, digits, '_' or '-'."),
        ))
    }
}

fn tool_choice(choice: &ToolChoice) -> Result<(), GatewayError> {
    match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "none" | "auto" | "required" => Ok(()),
            other => Err(invalid(
                "tool_choice",
                format!("Invalid value '{other}' for 'tool_choice': expected none, auto, required or an object."),
            )),
        },
        ToolChoice::Object(value) => {
            let obj = value
                .as_object()
                .ok_or_else(|| wrong_type("tool_choice", "a string or an object"))?;
            match obj.get("type").and_then(Value::as_str) {
                Some("function") => {
                    let name = obj
                        .get("function")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| GatewayError::missing_field("tool_choice.function.name"))?;
                    function_name(name, "tool_choice.function.name")
                }
                Some(_) => Ok(()), // allowed_tools, custom, …: the upstream judges newer shapes
                None => Err(GatewayError::missing_field("tool_choice.type")),
            }
        }
    }
}

fn openai_message(message: &Message, i: usize) -> Result<(), GatewayError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let needs_content = !matches!(message.role, Role::Assistant);
    match &message.content {
        None if needs_content => return Err(GatewayError::missing_field(at("content"))),
        None => {
            // An assistant turn may carry only tool calls, a refusal or an audio reference.
            let carries = ["function_call", "refusal", "audio"]
                .iter()
                .any(|k| message.extra.get(*k).is_some_and(|v| !v.is_null()));
            if message.tool_calls.is_none() && !carries {
                return Err(GatewayError::missing_field(at("content")));
            }
        }
        Some(MessageContent::Text(_)) => {}
        Some(MessageContent::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                content_part(part, &format!("messages[{i}].content[{j}]"), message.role)?;
            }
        }
    }
    match message.role {
        Role::Tool if message.tool_call_id.is_none() => {
            return Err(GatewayError::missing_field(at("tool_call_id")))
        }
        Role::Function if message.name.is_none() => {
            return Err(GatewayError::missing_field(at("name")))
        }
        _ => {}
    }
    if let Some(calls) = &message.tool_calls {
        if message.role != Role::Assistant {
            return Err(invalid(
                at("tool_calls"),
                "Only assistant messages may carry 'tool_calls'.",
            ));
        }
        for (j, call) in calls.iter().enumerate() {
            if call.kind != "function" {
                return Err(invalid(
                    format!("messages[{i}].tool_calls[{j}].type"),
                    "Invalid tool call type: expected function.",
                ));
            }
        }
    }
    Ok(())
}

fn content_part(part: &ContentPart, param: &str, role: Role) -> Result<(), GatewayError> {
    let needs = |present: bool, field: &str| {
        if present {
            Ok(())
        } else {
            Err(GatewayError::missing_field(format!("{param}.{field}")))
        }
    };
    match part.kind.as_str() {
        "text" => needs(part.text.is_some(), "text"),
        "refusal" => needs(part.refusal.is_some(), "refusal"),
        "image_url" => {
            let image = part
                .image_url
                .as_ref()
                .ok_or_else(|| GatewayError::missing_field(format!("{param}.image_url")))?;
            match image.detail.as_deref() {
                None | Some("auto" | "low" | "high") => {}
                Some(other) => {
                    return Err(invalid(
                        format!("{param}.image_url.detail"),
                        format!(
                        "Invalid value '{other}' for image 'detail': expected auto, low or high."
                    ),
                    ))
                }
            }
            if role != Role::User {
                return Err(invalid(
                    param,
                    "Image parts are only allowed in user messages.",
                ));
            }
            Ok(())
        }
        "input_audio" => {
            let audio = part
                .extra
                .get("input_audio")
                .and_then(Value::as_object)
                .ok_or_else(|| GatewayError::missing_field(format!("{param}.input_audio")))?;
            if !audio.get("data").is_some_and(Value::is_string) {
                return Err(GatewayError::missing_field(format!(
                    "{param}.input_audio.data"
                )));
            }
            match audio.get("format").and_then(Value::as_str) {
                Some("wav" | "mp3") => Ok(()),
                _ => Err(invalid(
                    format!("{param}.input_audio.format"),
                    "Invalid audio 'format': expected wav or mp3.",
                )),
            }
        }
        "file" => needs(part.file.is_some(), "file"),
        // Newer part types (and those of OpenAI-compatible servers, e.g. `video_url`) are the
        // upstream's to judge.
        _ => Ok(()),
    }
}

/// Checks a native body as the client wrote it (see the module docs). Claude and Titan bodies
/// may be forwarded to Bedrock as written, so what Bedrock would refuse is refused here first.
pub fn native_body(format: InboundFormat, body: &Map<String, Value>) -> Result<(), GatewayError> {
    match format {
        InboundFormat::BedrockClaude => claude_body(body),
        InboundFormat::BedrockTitan => titan_body(body),
        InboundFormat::Converse => converse_body(body),
        _ => Ok(()),
    }
}

fn claude_body(body: &Map<String, Value>) -> Result<(), GatewayError> {
    if body
        .get("anthropic_version")
        .is_some_and(|v| !v.is_string())
    {
        return Err(wrong_type("anthropic_version", "a string"));
    }
    if let Some(v) = body.get("max_tokens").filter(|v| !v.is_null()) {
        if v.as_u64().is_none_or(|n| n == 0) {
            return Err(invalid(
                "max_tokens",
                "Invalid value for 'max_tokens': expected an integer of at least 1.",
            ));
        }
    }
    let Some(messages) = body.get("messages") else {
        return Ok(()); // the decoder names it
    };
    let messages = messages
        .as_array()
        .ok_or_else(|| wrong_type("messages", "an array"))?;
    if messages.is_empty() {
        return Err(invalid(
            "messages",
            "'messages' must contain at least one message.",
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        match message.get("content") {
            Some(Value::String(s)) if s.is_empty() => {
                return Err(invalid(
                    format!("messages[{i}].content"),
                    "Message content must be non-empty.",
                ))
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() {
                    return Err(invalid(
                        format!("messages[{i}].content"),
                        "Message content must be non-empty.",
                    ));
                }
                for (j, block) in blocks.iter().enumerate() {
                    let at = format!("messages[{i}].content[{j}]");
                    let kind = block.get("type").and_then(Value::as_str);
                    let text = block.get("text").and_then(Value::as_str);
                    if kind == Some("text") && text.is_some_and(str::is_empty) {
                        return Err(invalid(at, "Text content blocks must be non-empty."));
                    }
                    if kind == Some("tool_use")
                        && block.get("input").is_some_and(|v| !v.is_object())
                    {
                        return Err(wrong_type(format!("{at}.input"), "an object"));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for (i, tool) in tools.iter().enumerate() {
            if tool.get("input_schema").is_some_and(|v| !v.is_object()) {
                return Err(wrong_type(format!("tools[{i}].input_schema"), "an object"));
            }
        }
    }
    Ok(())
}

fn titan_body(body: &Map<String, Value>) -> Result<(), GatewayError> {
    match body.get("inputText") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(invalid("inputText", "'inputText' must not be empty."))
        }
        _ => Ok(()), // a missing or mistyped inputText is named by the decoder
    }
}

fn converse_body(body: &Map<String, Value>) -> Result<(), GatewayError> {
    let validation = |e: GatewayError| e.with_aws_type("ValidationException");
    let Some(Value::Array(messages)) = body.get("messages") else {
        return Ok(()); // the decoder names it
    };
    if messages.is_empty() {
        return Err(validation(invalid(
            "messages",
            "messages must contain at least one message",
        )));
    }
    for (i, message) in messages.iter().enumerate() {
        let Some(Value::Array(blocks)) = message.get("content") else {
            continue;
        };
        if blocks.is_empty() {
            return Err(validation(invalid(
                format!("messages[{i}].content"),
                "message content must not be empty",
            )));
        }
        for (j, block) in blocks.iter().enumerate() {
            if let Some(tool) = block.get("toolUse") {
                if tool.get("input").is_some_and(|v| !v.is_object()) {
                    return Err(validation(wrong_type(
                        format!("messages[{i}].content[{j}].toolUse.input"),
                        "an object",
                    )));
                }
            }
            if block.get("text").is_some_and(|t| !t.is_string()) {
                return Err(validation(wrong_type(
                    format!("messages[{i}].content[{j}].text"),
                    "a string",
                )));
            }
        }
    }
    if let Some(config) = body.get("inferenceConfig").filter(|v| !v.is_null()) {
        let config = config
            .as_object()
            .ok_or_else(|| validation(wrong_type("inferenceConfig", "an object")))?;
        if let Some(v) = config.get("maxTokens") {
            if v.as_u64().is_none_or(|n| n == 0) {
                return Err(validation(invalid(
                    "inferenceConfig.maxTokens",
                    "maxTokens must be an integer of at least 1",
                )));
            }
        }
        for (key, max) in [("temperature", 1.0), ("topP", 1.0)] {
            if let Some(v) = config.get(key) {
                let n = v.as_f64().ok_or_else(|| {
                    validation(wrong_type(format!("inferenceConfig.{key}"), "a number"))
                })?;
                range(Some(n), &format!("inferenceConfig.{key}"), 0.0, max).map_err(validation)?;
            }
        }
        if let Some(v) = config.get("stopSequences") {
            if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                return Err(validation(wrong_type(
                    "inferenceConfig.stopSequences",
                    "an array of strings",
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(extra: Value) -> Result<(), GatewayError> {
        let mut body = json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let req: ChatRequest = serde_json::from_value(body).unwrap();
        openai_request(&req)
    }

    #[test]
    fn every_invalid_openai_value_names_its_param() {
        let cases = [
            (json!({"seed":"7"}), "seed"),
            (json!({"seed":1.5}), "seed"),
            (json!({"response_format":[]}), "response_format"),
            (
                json!({"response_format":{"type":"xml"}}),
                "response_format.type",
            ),
            (
                json!({"response_format":{"type":"json_schema"}}),
                "response_format.json_schema",
            ),
            (json!({"n":0}), "n"),
            (json!({"n":129}), "n"),
            (json!({"max_tokens":0}), "max_tokens"),
            (json!({"max_completion_tokens":0}), "max_completion_tokens"),
            (json!({"temperature":2.5}), "temperature"),
            (json!({"top_p":-0.1}), "top_p"),
            (json!({"presence_penalty":3}), "presence_penalty"),
            (json!({"frequency_penalty":"x"}), "frequency_penalty"),
            (json!({"logit_bias":[1,2]}), "logit_bias"),
            (json!({"logit_bias":{"abc":1}}), "logit_bias"),
            (json!({"logit_bias":{"50256":-101}}), "logit_bias"),
            (json!({"logprobs":"yes"}), "logprobs"),
            (json!({"top_logprobs":3}), "top_logprobs"),
            (json!({"logprobs":true,"top_logprobs":21}), "top_logprobs"),
            (
                json!({"stream_options":{"include_usage":true}}),
                "stream_options",
            ),
            (json!({"tools":[{"type":"function"}]}), "tools[0].function"),
            (
                json!({"tools":[{"type":"function","function":{"name":"bad name"}}]}),
                "tools[0].function.name",
            ),
            (json!({"tools":[{"type":"retrieval"}]}), "tools[0].type"),
            (
                json!({"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]}),
                "tools[0].function.parameters",
            ),
            (json!({"tool_choice":"sometimes"}), "tool_choice"),
            (
                json!({"tool_choice":{"type":"function"}}),
                "tool_choice.function.name",
            ),
            (
                json!({"tool_choice":{"function":{"name":"f"}}}),
                "tool_choice.type",
            ),
            (json!({"metadata":{"a":1}}), "metadata"),
            (
                json!({"messages":[{"role":"tool","content":"42"}]}),
                "messages[0].tool_call_id",
            ),
            (json!({"messages":[{"role":"user"}]}), "messages[0].content"),
            (
                json!({"messages":[{"role":"assistant"}]}),
                "messages[0].content",
            ),
            (
                json!({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"ultra"}}]}]}),
                "messages[0].content[0].image_url.detail",
            ),
            (
                json!({"messages":[{"role":"user","content":[{"type":"text"}]}]}),
                "messages[0].content[0].text",
            ),
            (
                json!({"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA","format":"ogg"}}]}]}),
                "messages[0].content[0].input_audio.format",
            ),
            (json!({"model":"x".repeat(MAX_MODEL_ID_BYTES + 1)}), "model"),
            (json!({"model":"gpt\u{0}4o"}), "model"),
        ];
        for (body, param) in cases {
            let e = check(body.clone()).expect_err(&body.to_string());
            assert_eq!(
                (e.status().as_u16(), e.param()),
                (400, Some(param)),
                "{body}"
            );
        }
    }

    #[test]
    fn valid_and_unknown_fields_pass() {
        for body in [
            json!({"seed":7,"logit_bias":{"50256":-100},"logprobs":true,"top_logprobs":2,
                "temperature":0,"top_p":1,"n":1,"max_tokens":1,"presence_penalty":-2,
                "stream":true,"stream_options":{"include_usage":true},"some_new_field":[1,{"x":2}]}),
            json!({"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}}),
            json!({"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
                "tool_choice":{"type":"function","function":{"name":"get_weather"}}}),
            json!({"stop":[]}),
            json!({"messages":[{"role":"user","content":"x"},{"role":"assistant","refusal":"no"}]}),
            json!({"messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"x"}}]},
                {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c","content":"ok"}]}),
        ] {
            assert!(check(body.clone()).is_ok(), "{body}");
        }
    }

    #[test]
    fn native_bodies() {
        let claude =
            |body: Value| native_body(InboundFormat::BedrockClaude, body.as_object().unwrap());
        for (body, param) in [
            (
                json!({"anthropic_version":5,"messages":[{"role":"user","content":"x"}]}),
                "anthropic_version",
            ),
            (json!({"messages":[]}), "messages"),
            (
                json!({"messages":[{"role":"user","content":""}]}),
                "messages[0].content",
            ),
            (
                json!({"messages":[{"role":"user","content":[]}]}),
                "messages[0].content",
            ),
            (
                json!({"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":"x"}]}]}),
                "messages[0].content[0].input",
            ),
            (
                json!({"max_tokens":0,"messages":[{"role":"user","content":"x"}]}),
                "max_tokens",
            ),
        ] {
            assert_eq!(
                claude(body.clone()).unwrap_err().param(),
                Some(param),
                "{body}"
            );
        }
        let e = native_body(
            InboundFormat::BedrockTitan,
            json!({"inputText":"  "}).as_object().unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("inputText"));
        let converse =
            |body: Value| native_body(InboundFormat::Converse, body.as_object().unwrap());
        for (body, param) in [
            (json!({"messages":[]}), "messages"),
            (
                json!({"messages":[{"role":"user","content":[]}]}),
                "messages[0].content",
            ),
            (
                json!({"messages":[{"role":"assistant","content":[{"toolUse":{"toolUseId":"t","name":"f","input":[]}}]}]}),
                "messages[0].content[0].toolUse.input",
            ),
            (
                json!({"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"maxTokens":0}}),
                "inferenceConfig.maxTokens",
            ),
        ] {
            assert_eq!(
                converse(body.clone()).unwrap_err().param(),
                Some(param),
                "{body}"
            );
        }
    }
}
