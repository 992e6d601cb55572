//! A client's Titan-format body → canonical [`ChatRequest`].

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::model::{ChatRequest, Message, Role, Stop, StreamOptions};

/// Decodes a Titan text body written by a client (`{model?, inputText, textGenerationConfig?,
/// stream?}`).
///
/// The model comes from `model`, `model_id` or `modelId`. `inputText` is split back into turns when
/// it has `User:` / `Bot:` markers at line starts: text before the first marker becomes a system
/// message, a trailing empty `Bot:` (the cue for the model) is dropped. Without markers the whole
/// text is one user message. A member of the wrong type is a 400 naming it.
pub fn decode_client_request(body: &Map<String, Value>) -> Result<ChatRequest, GatewayError> {
    let model = ["model", "model_id", "modelId"]
        .into_iter()
        .find_map(|key| body.get(key).map(|v| (key, v)))
        .ok_or_else(|| GatewayError::missing_field("model"))?;
    let model = match model {
        (_, Value::String(s)) if !s.is_empty() => s.clone(),
        (key, _) => return Err(type_error(key, "a non-empty string")),
    };

    let input_text = match body.get("inputText") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(type_error("inputText", "a string")),
        None => return Err(GatewayError::missing_field("inputText")),
    };

    let mut req = ChatRequest {
        model,
        messages: parse_prompt(input_text),
        ..ChatRequest::default()
    };

    match body.get("textGenerationConfig") {
        None | Some(Value::Null) => {}
        Some(Value::Object(config)) => apply_config(config, &mut req)?,
        Some(_) => return Err(type_error("textGenerationConfig", "an object")),
    }

    match body.get("stream") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(stream)) => {
            req.stream = Some(*stream);
            if *stream {
                req.stream_options = Some(StreamOptions {
                    include_usage: Some(true),
                    extra: Map::new(),
                });
            }
        }
        Some(_) => return Err(type_error("stream", "a boolean")),
    }
    Ok(req)
}

fn type_error(param: &'static str, expected: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid type for '{param}': expected {expected}."))
        .with_param(param)
        .with_code("invalid_type")
}

fn apply_config(config: &Map<String, Value>, req: &mut ChatRequest) -> Result<(), GatewayError> {
    const MAX: &str = "textGenerationConfig.maxTokenCount";
    const TEMPERATURE: &str = "textGenerationConfig.temperature";
    const TOP_P: &str = "textGenerationConfig.topP";
    const STOP: &str = "textGenerationConfig.stopSequences";

    match config.get("maxTokenCount") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let n = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| type_error(MAX, "a non-negative integer"))?;
            req.max_tokens = Some(n);
        }
    }
    match config.get("temperature") {
        None | Some(Value::Null) => {}
        Some(v) => {
            req.temperature = Some(
                v.as_f64()
                    .ok_or_else(|| type_error(TEMPERATURE, "a number"))?,
            )
        }
    }
    match config.get("topP") {
        None | Some(Value::Null) => {}
        Some(v) => req.top_p = Some(v.as_f64().ok_or_else(|| type_error(TOP_P, "a number"))?),
    }
    match config.get("stopSequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let stops = items
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| type_error(STOP, "an array of strings"))?;
            if !stops.is_empty() {
                req.stop = Some(Stop::Many(stops));
            }
        }
        Some(_) => return Err(type_error(STOP, "an array of strings")),
    }
    Ok(())
}

/// The turn marker at the start of `line`, and the rest of the line (one space after the colon
/// stripped).
fn marker(line: &str) -> Option<(Role, &str)> {
    let (role, rest) = if let Some(rest) = line.strip_prefix("User:") {
        (Role::User, rest)
    } else {
        (Role::Assistant, line.strip_prefix("Bot:")?)
    };
    Some((role, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Splits a Titan prompt back into messages (the inverse of the upstream flattening).
fn parse_prompt(text: &str) -> Vec<Message> {
    if !text.split('\n').any(|line| marker(line).is_some()) {
        return vec![Message::text(Role::User, text)];
    }
    let mut preamble = String::new();
    let mut turns: Vec<(Role, String)> = Vec::new();
    for line in text.split('\n') {
        if let Some((role, rest)) = marker(line) {
            turns.push((role, rest.to_owned()));
        } else if let Some((_, body)) = turns.last_mut() {
            body.push('\n');
            body.push_str(line);
        } else {
            if !preamble.is_empty() {
                preamble.push('\n');
            }
            preamble.push_str(line);
        }
    }
    if matches!(turns.last(), Some((Role::Assistant, body)) if body.trim().is_empty()) {
        turns.pop();
    }
    let mut messages = Vec::with_capacity(turns.len() + 1);
    let system = preamble.trim();
    if !system.is_empty() {
        messages.push(Message::text(Role::System, system));
    }
    messages.extend(
        turns
            .into_iter()
            .map(|(role, body)| Message::text(role, body.trim_end())),
    );
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bedrock_titan::{encode_request, TitanRequestOptions};
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn parses_turns_and_config() {
        let body = obj(json!({
            "modelId": "amazon.titan-text-express-v1",
            "inputText": "Be brief\n\nUser: Hi\nBot: Hello!\nUser: Tell a joke\nabout cats\nBot:",
            "textGenerationConfig": {"maxTokenCount": 50, "temperature": 0.2, "topP": 0.9,
                                     "stopSequences": ["User:"]},
            "stream": true
        }));
        let req = decode_client_request(&body).unwrap();
        let value = serde_json::to_value(&req).unwrap();
        assert_eq!(
            value,
            json!({
                "model": "amazon.titan-text-express-v1",
                "messages": [
                    {"role": "system", "content": "Be brief"},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Tell a joke\nabout cats"}
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["User:"]
            })
        );
    }

    #[test]
    fn round_trips_through_the_upstream_encoder() {
        let text = "Be brief\n\nUser: Hi\nBot: Hello!\nUser: Tell a joke\nBot:";
        let req = decode_client_request(&obj(json!({"model": "t", "inputText": text}))).unwrap();
        let body = encode_request(&req, &TitanRequestOptions::default()).unwrap();
        assert_eq!(body, json!({"inputText": text}));
    }

    #[test]
    fn plain_text_is_one_user_message() {
        let req = decode_client_request(&obj(json!({
            "model": "t", "inputText": "Write a haiku.\nAbout rain: User: says hi"
        })))
        .unwrap();
        assert_eq!(
            req.messages,
            vec![Message::text(
                Role::User,
                "Write a haiku.\nAbout rain: User: says hi"
            )]
        );
        assert_eq!(req.stream, None);
        assert_eq!(req.max_tokens, None);
    }

    #[test]
    fn non_empty_trailing_bot_turn_is_kept() {
        let req = decode_client_request(&obj(
            json!({"model_id": "t", "inputText": "User:hi\nBot: The"}),
        ))
        .unwrap();
        assert_eq!(
            req.messages,
            vec![
                Message::text(Role::User, "hi"),
                Message::text(Role::Assistant, "The")
            ]
        );
    }

    #[test]
    fn errors_name_the_param() {
        let err = decode_client_request(&obj(json!({"inputText": "x"}))).unwrap_err();
        assert_eq!((err.status().as_u16(), err.param()), (400, Some("model")));
        let err = decode_client_request(&obj(json!({"model": 3, "inputText": "x"}))).unwrap_err();
        assert_eq!(err.param(), Some("model"));
        let err = decode_client_request(&obj(json!({"model": "t"}))).unwrap_err();
        assert_eq!(err.param(), Some("inputText"));
        let err =
            decode_client_request(&obj(json!({"model": "t", "inputText": ["x"]}))).unwrap_err();
        assert_eq!(err.param(), Some("inputText"));
        let err = decode_client_request(&obj(
            json!({"model": "t", "inputText": "x", "stream": "yes"}),
        ))
        .unwrap_err();
        assert_eq!(err.param(), Some("stream"));
        let err = decode_client_request(&obj(
            json!({"model": "t", "inputText": "x", "textGenerationConfig": 1}),
        ))
        .unwrap_err();
        assert_eq!(err.param(), Some("textGenerationConfig"));
        for (key, bad, param) in [
            (
                "maxTokenCount",
                json!(-1),
                "textGenerationConfig.maxTokenCount",
            ),
            (
                "maxTokenCount",
                json!(1.5),
                "textGenerationConfig.maxTokenCount",
            ),
            (
                "temperature",
                json!("hot"),
                "textGenerationConfig.temperature",
            ),
            ("topP", json!(true), "textGenerationConfig.topP"),
            (
                "stopSequences",
                json!("User:"),
                "textGenerationConfig.stopSequences",
            ),
            (
                "stopSequences",
                json!([1]),
                "textGenerationConfig.stopSequences",
            ),
        ] {
            let err = decode_client_request(&obj(json!({
                "model": "t", "inputText": "x", "textGenerationConfig": {key: bad}
            })))
            .unwrap_err();
            assert_eq!(err.status().as_u16(), 400);
            assert_eq!(err.param(), Some(param), "{key}");
        }
    }
}
