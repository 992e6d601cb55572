//! Canonical request → Titan `{inputText, textGenerationConfig}` body.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::model::{ChatRequest, Message, MessageContent, Role, ToolChoiceKind};

/// Keys of a client's Titan body that only route the request and must not reach Bedrock (Titan
/// rejects unknown keys).
const ROUTING_KEYS: [&str; 4] = ["model", "model_id", "modelId", "stream"];

/// Options for [`encode_request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TitanRequestOptions {
    /// `maxTokenCount` to send when the client set no token limit (`None`: let Titan decide).
    pub default_max_tokens: Option<u32>,
}

impl TitanRequestOptions {
    /// Sends `default_max_tokens` (if any) when the client gave no limit.
    pub fn new(default_max_tokens: Option<u32>) -> Self {
        TitanRequestOptions { default_max_tokens }
    }
}

/// Encodes a canonical request as a Titan text body.
///
/// Fails with a 400 when the request uses something Titan cannot express (tools, tool calls or
/// results, non-text content, `n > 1`). Stop strings Titan does not accept are dropped; see
/// [`unsupported_stops`].
pub fn encode_request(
    req: &ChatRequest,
    opts: &TitanRequestOptions,
) -> Result<Value, GatewayError> {
    check_unsupported(req)?;
    let input_text = render_prompt(&req.messages)?;

    let mut config = Map::new();
    if let Some(max) = req.max_output_tokens().or(opts.default_max_tokens) {
        config.insert("maxTokenCount".into(), json!(max));
    }
    if let Some(t) = req.temperature.filter(|t| t.is_finite()) {
        config.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.top_p.filter(|p| p.is_finite()) {
        config.insert("topP".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(stop) = accepted_stop(req) {
        config.insert("stopSequences".into(), json!([stop]));
    }

    let mut body = Map::new();
    body.insert("inputText".into(), Value::String(input_text));
    if !config.is_empty() {
        body.insert("textGenerationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// [`encode_request`], serialized to bytes.
pub fn encode_request_bytes(
    req: &ChatRequest,
    opts: &TitanRequestOptions,
) -> Result<Vec<u8>, GatewayError> {
    let body = encode_request(req, opts)?;
    serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("serializing Titan body: {e}")))
}

/// The client's stop strings that [`encode_request`] does not send to Titan (everything except the
/// first one matching `^(\|+|User:)$`), in request order. The provider may truncate the output at
/// these client-side.
pub fn unsupported_stops(req: &ChatRequest) -> Vec<String> {
    let accepted = accepted_stop(req);
    let mut skipped_accepted = false;
    req.stop_sequences()
        .into_iter()
        .filter(|s| {
            if !skipped_accepted && Some(*s) == accepted {
                skipped_accepted = true;
                false
            } else {
                true
            }
        })
        .map(str::to_owned)
        .collect()
}

/// A client's Titan-format body, forwarded as written minus the routing-only keys (`model`,
/// `model_id`, `modelId`, `stream`). Serialized from the borrowed map: no copy of a body that may
/// be megabytes of prompt.
pub fn native_body(original: &Map<String, Value>) -> Result<Vec<u8>, GatewayError> {
    let kept = original
        .iter()
        .filter(|(k, _)| !ROUTING_KEYS.contains(&k.as_str()));
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    serde::Serializer::collect_map(&mut ser, kept)
        .map_err(|e| GatewayError::internal(format!("serializing Titan body: {e}")))?;
    Ok(out)
}

/// Whether Titan accepts `s` as a stop sequence: `^(\|+|User:)$`.
fn is_titan_stop(s: &str) -> bool {
    s == "User:" || (!s.is_empty() && s.bytes().all(|b| b == b'|'))
}

/// The one stop sequence sent upstream: the first acceptable one.
fn accepted_stop(req: &ChatRequest) -> Option<&str> {
    req.stop_sequences().into_iter().find(|s| is_titan_stop(s))
}

fn check_unsupported(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::unsupported(
            "tools",
            "Titan text models do not support tools.",
        ));
    }
    if let Some(choice) = &req.tool_choice {
        if choice.kind() != Some(ToolChoiceKind::None) {
            return Err(GatewayError::unsupported(
                "tool_choice",
                "Titan text models do not support tools.",
            ));
        }
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::unsupported(
            "n",
            "Titan text models return one choice; n must be 1.",
        ));
    }
    let json_mode = req
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .is_some_and(|t| t != "text");
    if json_mode {
        return Err(GatewayError::unsupported(
            "response_format",
            "Titan text models have no JSON mode and cannot be made to follow a schema.",
        ));
    }
    let thinks = req.thinking.as_ref().is_some_and(|t| t.kind != "disabled")
        || req.reasoning_effort.as_deref().is_some_and(|e| e != "none");
    if thinks {
        return Err(GatewayError::unsupported(
            crate::format::reasoning::reasoning_param(req),
            "Titan text models cannot reason (extended thinking / reasoning_effort).",
        ));
    }
    Ok(())
}

/// The text of a message, or a 400 if it has parts Titan cannot express.
fn message_text(msg: &Message) -> Result<String, GatewayError> {
    match &msg.content {
        None => Ok(String::new()),
        Some(MessageContent::Text(s)) => Ok(s.clone()),
        Some(MessageContent::Parts(parts)) => {
            let mut out = String::new();
            for part in parts {
                let text = match part.kind.as_str() {
                    "text" => part.text.as_deref().unwrap_or(""),
                    "refusal" => part.refusal.as_deref().unwrap_or(""),
                    other => {
                        return Err(GatewayError::unsupported(
                            "messages",
                            format!(
                                "Titan text models accept only text content, not '{other}' parts."
                            ),
                        ))
                    }
                };
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
            Ok(out)
        }
    }
}

/// Flattens the conversation into Titan's `inputText` (PROTOCOLS 5.9).
fn render_prompt(messages: &[Message]) -> Result<String, GatewayError> {
    let mut system = String::new();
    let mut turns = String::new();
    for msg in messages {
        let label = match msg.role {
            Role::System | Role::Developer => {
                let text = message_text(msg)?;
                if !text.is_empty() {
                    if !system.is_empty() {
                        system.push('\n');
                    }
                    system.push_str(&text);
                }
                continue;
            }
            Role::User => "User:",
            Role::Assistant => {
                if msg.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) {
                    return Err(GatewayError::unsupported(
                        "messages",
                        "Titan text models do not support assistant tool calls.",
                    ));
                }
                "Bot:"
            }
            Role::Tool | Role::Function => {
                return Err(GatewayError::unsupported(
                    "messages",
                    format!(
                        "Titan text models do not support '{}' messages.",
                        msg.role.as_str()
                    ),
                ))
            }
        };
        let text = message_text(msg)?;
        turns.push_str(label);
        if !text.is_empty() {
            turns.push(' ');
            turns.push_str(&text);
        }
        turns.push('\n');
    }
    let mut prompt = String::with_capacity(system.len() + turns.len() + 8);
    if !system.is_empty() {
        prompt.push_str(&system);
        prompt.push_str("\n\n");
    }
    prompt.push_str(&turns);
    prompt.push_str("Bot:");
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentPart, Stop, Tool, ToolCall, ToolChoice};

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "amazon.titan-text-express-v1".into(),
            messages,
            ..ChatRequest::default()
        }
    }

    fn worked_example() -> ChatRequest {
        req(vec![
            Message::text(Role::System, "Be brief"),
            Message::text(Role::User, "Hi"),
            Message::text(Role::Assistant, "Hello!"),
            Message::text(Role::User, "Tell a joke"),
        ])
    }

    #[test]
    fn flattens_worked_example_without_config() {
        let body = encode_request(&worked_example(), &TitanRequestOptions::default()).unwrap();
        assert_eq!(
            body,
            json!({"inputText": "Be brief\n\nUser: Hi\nBot: Hello!\nUser: Tell a joke\nBot:"})
        );
    }

    #[test]
    fn system_and_developer_join_first_wherever_they_are() {
        let r = req(vec![
            Message::text(Role::User, "Hi"),
            Message::text(Role::System, "A"),
            Message::text(Role::Developer, "B"),
        ]);
        let body = encode_request(&r, &TitanRequestOptions::default()).unwrap();
        assert_eq!(body["inputText"], "A\nB\n\nUser: Hi\nBot:");
    }

    #[test]
    fn no_system_prompt_and_text_parts() {
        let mut user = Message::text(Role::User, "");
        user.content = Some(MessageContent::Parts(vec![
            ContentPart::text("one"),
            ContentPart::text("two"),
        ]));
        let body = encode_request(&req(vec![user]), &TitanRequestOptions::default()).unwrap();
        assert_eq!(body["inputText"], "User: one\ntwo\nBot:");
    }

    #[test]
    fn config_has_only_set_keys_and_clamps() {
        let mut r = worked_example();
        r.max_tokens = Some(100);
        r.max_completion_tokens = Some(200);
        r.temperature = Some(1.7);
        r.top_p = Some(0.5);
        r.stop = Some(Stop::Many(vec!["END".into(), "User:".into(), "||".into()]));
        let body = encode_request(&r, &TitanRequestOptions::default()).unwrap();
        assert_eq!(
            body["textGenerationConfig"],
            json!({"maxTokenCount": 200, "temperature": 1.0, "topP": 0.5, "stopSequences": ["User:"]})
        );
        assert_eq!(
            unsupported_stops(&r),
            vec!["END".to_owned(), "||".to_owned()]
        );
    }

    #[test]
    fn default_max_tokens_and_dropped_stops() {
        let mut r = worked_example();
        r.stop = Some(Stop::One("\n\n".into()));
        let opts = TitanRequestOptions {
            default_max_tokens: Some(512),
        };
        let body = encode_request(&r, &opts).unwrap();
        assert_eq!(body["textGenerationConfig"], json!({"maxTokenCount": 512}));
        assert_eq!(unsupported_stops(&r), vec!["\n\n".to_owned()]);
        // A non-finite sampling value is dropped rather than sent as null.
        let mut r = worked_example();
        r.temperature = Some(f64::NAN);
        assert!(encode_request(&r, &TitanRequestOptions::default())
            .unwrap()
            .get("textGenerationConfig")
            .is_none());
    }

    #[test]
    fn pipe_stop_accepted() {
        let mut r = worked_example();
        r.stop = Some(Stop::One("|||".into()));
        let body = encode_request(&r, &TitanRequestOptions::default()).unwrap();
        assert_eq!(
            body["textGenerationConfig"],
            json!({"stopSequences": ["|||"]})
        );
        assert!(unsupported_stops(&r).is_empty());
        assert!(!is_titan_stop(""));
        assert!(!is_titan_stop("|a"));
        assert!(!is_titan_stop("User: "));
    }

    #[test]
    fn rejects_tools_and_tool_messages_and_images() {
        let opts = TitanRequestOptions::default();
        let mut r = worked_example();
        r.tools = Some(vec![Tool::function("f", None, None)]);
        let err = encode_request(&r, &opts).unwrap_err();
        assert_eq!((err.status().as_u16(), err.param()), (400, Some("tools")));

        let mut r = worked_example();
        r.tool_choice = Some(ToolChoice::Mode("required".into()));
        assert_eq!(
            encode_request(&r, &opts).unwrap_err().param(),
            Some("tool_choice")
        );
        r.tool_choice = Some(ToolChoice::Mode("none".into()));
        assert!(encode_request(&r, &opts).is_ok());

        let mut call = Message::text(Role::Assistant, "");
        call.content = None;
        call.tool_calls = Some(vec![ToolCall::function("c1", "f", "{}")]);
        let err =
            encode_request(&req(vec![Message::text(Role::User, "x"), call]), &opts).unwrap_err();
        assert_eq!(err.param(), Some("messages"));

        let mut tool = Message::text(Role::Tool, "42");
        tool.tool_call_id = Some("c1".into());
        assert_eq!(
            encode_request(&req(vec![tool]), &opts).unwrap_err().param(),
            Some("messages")
        );

        let mut img = Message::text(Role::User, "");
        img.content = Some(MessageContent::Parts(vec![
            ContentPart::text("look"),
            ContentPart::image_url("data:image/png;base64,AAAA"),
        ]));
        let err = encode_request(&req(vec![img]), &opts).unwrap_err();
        assert_eq!(err.param(), Some("messages"));
        assert_eq!(err.code(), Some("unsupported_parameter"));

        let mut r = worked_example();
        r.n = Some(2);
        assert_eq!(encode_request(&r, &opts).unwrap_err().param(), Some("n"));
    }

    #[test]
    fn bytes_match_value() {
        let r = worked_example();
        let opts = TitanRequestOptions::default();
        let bytes = encode_request_bytes(&r, &opts).unwrap();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, encode_request(&r, &opts).unwrap());
    }

    #[test]
    fn native_body_strips_routing_keys() {
        let original = json!({
            "model": "titan", "modelId": "x", "model_id": "y", "stream": true,
            "inputText": "User: hi\nBot:",
            "textGenerationConfig": {"maxTokenCount": 5}
        });
        let Value::Object(map) = original else {
            unreachable!()
        };
        let bytes = native_body(&map).unwrap();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            parsed,
            json!({"inputText": "User: hi\nBot:", "textGenerationConfig": {"maxTokenCount": 5}})
        );
    }

    #[test]
    fn reasoning_is_a_400() {
        let mut r = worked_example();
        r.reasoning_effort = Some("low".into());
        let e = encode_request(&r, &TitanRequestOptions::default()).unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("reasoning_effort"))
        );
        r.reasoning_effort = Some("none".into());
        assert!(encode_request(&r, &TitanRequestOptions::default()).is_ok());
        r.thinking = Some(crate::model::ThinkingConfig::enabled(2048));
        let e = encode_request(&r, &TitanRequestOptions::default()).unwrap_err();
        assert_eq!(e.param(), Some("thinking"));
    }
}
