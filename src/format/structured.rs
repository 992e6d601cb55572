//! Structured outputs for models without a JSON mode of their own: `response_format` lowered into
//! what Claude and the Converse families can do, and their reply lifted back into the JSON text an
//! OpenAI client expects.
//!
//! - `json_schema` → a **forced tool** whose input schema is the client's schema ([`lower`]): the
//!   model answers by calling it, and the call's input becomes `message.content` (JSON text) with
//!   `finish_reason: "stop"` ([`StructuredReply::lift_complete`]; streamed as content deltas, not
//!   tool-call deltas, by [`StructuredReply::lift_stream`]). A schema whose root is not an object
//!   (tool inputs must be objects) is wrapped as `{"value": …}` and unwrapped again. A client's own
//!   tools still work alongside: the model must call *a* tool (`any`), its own ones for as long as
//!   it needs them, the response tool to answer. Where a tool cannot be forced (Claude thinking,
//!   models without tool choice), the schema goes into a system instruction instead.
//! - `json_object` → a system instruction, plus a `{` prefill where the model allows one (Claude
//!   without thinking or tools); the `{` is put back in front of the reply.
//! - `text` → nothing.
//!
//! Anything said before the response tool's call (Claude likes a preamble) is not part of the JSON
//! answer and is left out of `content`.
//!
//! ```
//! use open_bedrock_server::format::structured::{lower, Lowering};
//! use open_bedrock_server::model::ChatRequest;
//!
//! let req: ChatRequest = serde_json::from_value(serde_json::json!({
//!     "model": "m", "messages": [{"role": "user", "content": "Paris?"}],
//!     "response_format": {"type": "json_schema", "json_schema": {"name": "city",
//!         "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}}
//! })).unwrap();
//! let (lowered, _reply) = lower(&req, Lowering { force_tool: true, prefill: true }).unwrap().unwrap();
//! assert!(lowered.response_format.is_none());
//! assert_eq!(lowered.tools.unwrap()[0].function.as_ref().unwrap().name, "city");
//! ```

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::model::{
    finish_reason, ChatChunk, ChatReply, ChatRequest, ChatResponse, ChunkStream, Message, Role,
    Tool, ToolChoice, ToolChoiceKind,
};

/// What the model can do, for [`lower`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lowering {
    /// The model can be made to call one named tool (`tool_choice`), now.
    pub force_tool: bool,
    /// The model continues a final assistant turn (a prefill), now.
    pub prefill: bool,
}

/// How the reply of a lowered request is lifted back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructuredReply {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// The answer is the input of this tool (wrapped in `value` when `wrapped`).
    Tool { name: String, wrapped: bool },
    /// The reply continues a `{` prefill.
    Prefill,
    /// The JSON was asked for by instruction: the reply is the JSON as it is.
    Instruction,
}

/// The instruction that asks for JSON, for `response_format` (`None` for `text`); a 400 for a type
/// OpenAI does not define.
pub fn instruction(format: &Value) -> Result<Option<String>, GatewayError> {
    match format.get("type").and_then(Value::as_str).unwrap_or("text") {
        "text" => Ok(None),
        "json_object" => Ok(Some(
            "Respond only with a single valid JSON object. Do not add any text, explanation or Markdown code \
             fences before or after the JSON."
                .to_owned(),
        )),
        "json_schema" => {
            let spec = format.get("json_schema");
            let mut text = String::from(
                "Respond only with a single valid JSON value that conforms to the following JSON Schema. Do not \
                 add any text, explanation or Markdown code fences before or after the JSON.",
            );
            if let Some(name) = spec.and_then(|s| s.get("name")).and_then(Value::as_str) {
                text.push_str(&format!("\nSchema name: {name}"));
            }
            if let Some(schema) = spec.and_then(|s| s.get("schema")) {
                text.push_str("\nJSON Schema:\n");
                text.push_str(&schema.to_string());
            }
            Ok(Some(text))
        }
        other => Err(GatewayError::unsupported(
            "response_format",
            format!("response_format type '{other}' is not supported for this model."),
        )),
    }
}

/// A tool name Claude and Converse accept (`[a-zA-Z0-9_-]{1,64}`) for a schema name.
fn tool_name(name: Option<&str>, taken: &[&str]) -> String {
    let mut base: String = name
        .unwrap_or("json_response")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    if base.is_empty() {
        base = "json_response".into();
    }
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate.as_str()) {
        candidate = format!("{base}_{n}");
        n += 1;
    }
    candidate
}

fn system(text: String) -> Message {
    Message::text(Role::System, text)
}

/// Lowers `req`'s `response_format` for a model without a JSON mode: `None` when there is nothing
/// to do (no `response_format`, or `text`); otherwise the request to send and how to lift its
/// reply.
pub fn lower(
    req: &ChatRequest,
    can: Lowering,
) -> Result<Option<(ChatRequest, StructuredReply)>, GatewayError> {
    let Some(format) = req.response_format.as_ref() else {
        return Ok(None);
    };
    let Some(instruction) = instruction(format)? else {
        return Ok(None);
    };
    let mut out = req.clone();
    out.response_format = None;
    let has_tools = req.tools.as_ref().is_some_and(|t| !t.is_empty());
    let kind = format.get("type").and_then(Value::as_str);
    if kind == Some("json_schema") && can.force_tool {
        let spec = format.get("json_schema");
        let schema = spec
            .and_then(|s| s.get("schema"))
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        let wrapped = schema.get("type").and_then(Value::as_str) != Some("object");
        let schema = if wrapped {
            json!({"type": "object", "properties": {"value": schema}, "required": ["value"]})
        } else {
            schema
        };
        let taken: Vec<&str> = req
            .tools
            .iter()
            .flatten()
            .filter_map(|t| t.function.as_ref().map(|f| f.name.as_str()))
            .collect();
        let name = tool_name(
            spec.and_then(|s| s.get("name")).and_then(Value::as_str),
            &taken,
        );
        let description = spec
            .and_then(|s| s.get("description"))
            .and_then(Value::as_str)
            .map_or_else(
                || "Respond to the user with this tool: its input is the answer.".to_owned(),
                str::to_owned,
            );
        let mut tool = Tool::function(name.clone(), Some(description), Some(schema));
        if let Some(f) = tool.function.as_mut() {
            f.strict = spec.and_then(|s| s.get("strict")).and_then(Value::as_bool);
        }
        out.tools.get_or_insert_with(Vec::new).push(tool);
        let forced = ToolChoice::Object(json!({"type": "function", "function": {"name": name}}));
        out.tool_choice = match req.tool_choice.as_ref().and_then(|c| c.kind()) {
            // The client forced a tool (or any tool) itself: its choice stands.
            Some(ToolChoiceKind::Required | ToolChoiceKind::Function(_)) => req.tool_choice.clone(),
            // Its own tools while it needs them, the response tool to answer.
            None | Some(ToolChoiceKind::Auto) if has_tools => {
                Some(ToolChoice::Mode("required".into()))
            }
            _ => Some(forced),
        };
        return Ok(Some((
            out,
            StructuredReply {
                kind: Kind::Tool { name, wrapped },
            },
        )));
    }
    out.messages.insert(0, system(instruction));
    let last_is_assistant = req
        .messages
        .last()
        .is_some_and(|m| m.role == Role::Assistant);
    if kind == Some("json_object") && can.prefill && !has_tools && !last_is_assistant {
        out.messages.push(Message::text(Role::Assistant, "{"));
        return Ok(Some((
            out,
            StructuredReply {
                kind: Kind::Prefill,
            },
        )));
    }
    Ok(Some((
        out,
        StructuredReply {
            kind: Kind::Instruction,
        },
    )))
}

impl StructuredReply {
    /// The response tool: its name, and whether the answer is wrapped.
    fn tool(&self) -> Option<(&str, bool)> {
        match &self.kind {
            Kind::Tool { name, wrapped } => Some((name, *wrapped)),
            _ => None,
        }
    }

    /// Lifts a reply, complete or streamed (a relayed one is decoded first: its bytes change).
    pub fn lift(&self, reply: ChatReply) -> Result<ChatReply, GatewayError> {
        Ok(match reply {
            ChatReply::Complete(mut resp) => {
                self.lift_complete(&mut resp);
                ChatReply::Complete(resp)
            }
            ChatReply::Stream(stream) => ChatReply::Stream(self.lift_stream(stream)),
            ChatReply::Relayed(relayed) => {
                return self.lift(crate::stream::relay::canonical(relayed)?)
            }
        })
    }

    /// Lifts a complete reply: the response tool's input becomes the content.
    pub fn lift_complete(&self, resp: &mut ChatResponse) {
        for choice in &mut resp.choices {
            let msg = &mut choice.message;
            match &self.kind {
                Kind::Instruction => {}
                Kind::Prefill => {
                    let text = msg.content.take().unwrap_or_default();
                    msg.content = Some(format!("{{{text}"));
                }
                Kind::Tool { name, wrapped } => {
                    let (name, wrapped) = (name.as_str(), *wrapped);
                    let Some(calls) = msg.tool_calls.as_mut() else {
                        continue;
                    };
                    let Some(pos) = calls.iter().position(|c| c.function.name == name) else {
                        continue;
                    };
                    let call = calls.remove(pos);
                    msg.content = Some(answer_text(&call.function.arguments, wrapped));
                    if calls.is_empty() {
                        msg.tool_calls = None;
                        if choice.finish_reason.as_deref() == Some(finish_reason::TOOL_CALLS) {
                            choice.finish_reason = Some(finish_reason::STOP.to_owned());
                        }
                    }
                }
            }
        }
    }

    /// Lifts a streamed reply: the response tool's argument pieces become content deltas.
    pub fn lift_stream(&self, stream: ChunkStream) -> ChunkStream {
        use futures_util::StreamExt;
        let mut state = LiftState {
            reply: self.clone(),
            answer: None,
            other_calls: false,
            prefilled: false,
            buffered: String::new(),
            preamble: String::new(),
        };
        ChunkStream::new(stream.map(move |item| {
            item.map(|mut chunk| {
                state.lift(&mut chunk);
                chunk
            })
        }))
    }
}

/// The JSON text of the response tool's arguments (unwrapped from `value` if it was wrapped).
fn answer_text(arguments: &str, wrapped: bool) -> String {
    if !wrapped {
        return arguments.to_owned();
    }
    serde_json::from_str::<Map<String, Value>>(arguments)
        .ok()
        .and_then(|mut m| m.remove("value"))
        .map_or_else(|| arguments.to_owned(), |v| v.to_string())
}

struct LiftState {
    reply: StructuredReply,
    /// The response tool's call index, once it started.
    answer: Option<u32>,
    /// Whether another tool was called (the reply then stays a tool-call reply).
    other_calls: bool,
    prefilled: bool,
    /// The wrapped answer's arguments, held until the end (the `value` member is cut out then).
    buffered: String,
    /// Text before the first tool call, held until that call shows whether it is the answer.
    preamble: String,
}

impl LiftState {
    fn lift(&mut self, chunk: &mut ChatChunk) {
        let tool = self.reply.tool().map(|(n, w)| (n.to_owned(), w));
        for choice in &mut chunk.choices {
            let delta = &mut choice.delta;
            match &tool {
                None => {
                    if matches!(self.reply.kind, Kind::Prefill) && !self.prefilled {
                        if let Some(text) = delta.content.as_mut().filter(|t| !t.is_empty()) {
                            text.insert(0, '{');
                            self.prefilled = true;
                        }
                    }
                }
                Some((name, wrapped)) => {
                    // Text before the first tool call is a preamble: dropped if the answer
                    // follows (it is not part of the JSON), kept if one of the client's own tools
                    // is called. So it is held until the first call shows which.
                    let started = self.answer.is_some() || self.other_calls;
                    if !started && delta.role.is_none() {
                        if let Some(text) = delta.content.take() {
                            self.preamble.push_str(&text);
                        }
                    }
                    let mut text = String::new();
                    if let Some(calls) = delta.tool_calls.take() {
                        let mut rest = Vec::new();
                        for mut call in calls {
                            let named = call.function.as_ref().and_then(|f| f.name.as_deref());
                            if named == Some(name.as_str()) {
                                self.answer = Some(call.index);
                            }
                            if Some(call.index) == self.answer {
                                if let Some(piece) =
                                    call.function.as_ref().and_then(|f| f.arguments.as_deref())
                                {
                                    text.push_str(piece);
                                }
                                continue;
                            }
                            self.other_calls = true;
                            if self.answer.is_some_and(|a| call.index > a) {
                                call.index -= 1;
                            }
                            rest.push(call);
                        }
                        delta.tool_calls = (!rest.is_empty()).then_some(rest);
                        if !started && self.other_calls && !self.preamble.is_empty() {
                            delta.content = Some(std::mem::take(&mut self.preamble));
                        }
                    }
                    if *wrapped {
                        self.buffered.push_str(&text);
                    } else if !text.is_empty() {
                        delta.content = Some(text);
                    }
                    if let Some(reason) = choice.finish_reason.as_mut() {
                        if *wrapped && self.answer.is_some() {
                            delta.content = Some(answer_text(&self.buffered, true));
                        } else if self.answer.is_none() && !self.preamble.is_empty() {
                            // No tool was called after all: the text was the answer.
                            delta.content = Some(std::mem::take(&mut self.preamble));
                        }
                        if self.answer.is_some()
                            && !self.other_calls
                            && reason == finish_reason::TOOL_CALLS
                        {
                            *reason = finish_reason::STOP.to_owned();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta, ResponseMessage, ToolCall, ToolCallDelta};
    use futures_util::StreamExt;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    const CAN: Lowering = Lowering {
        force_tool: true,
        prefill: true,
    };

    #[test]
    fn json_schema_becomes_a_forced_tool_and_its_input_the_content() {
        let r = req(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"city info!","strict":true,
                "schema":{"type":"object","properties":{"name":{"type":"string"}}}}}}),
        );
        let (lowered, reply) = lower(&r, CAN).unwrap().unwrap();
        let v = serde_json::to_value(&lowered).unwrap();
        assert_eq!(v["tools"][0]["function"]["name"], "city_info_");
        assert_eq!(v["tools"][0]["function"]["strict"], true);
        assert_eq!(
            v["tool_choice"],
            json!({"type":"function","function":{"name":"city_info_"}})
        );
        assert!(v.get("response_format").is_none());

        let mut resp = ChatResponse::new(
            &ChunkMeta::new("m"),
            ResponseMessage::assistant(
                Some("Let me answer.".into()),
                Some(vec![ToolCall::function(
                    "t",
                    "city_info_",
                    r#"{"name":"Paris"}"#,
                )]),
            ),
            "tool_calls",
            None,
        );
        reply.lift_complete(&mut resp);
        let c = &resp.choices[0];
        assert_eq!(c.message.content.as_deref(), Some(r#"{"name":"Paris"}"#));
        assert!(c.message.tool_calls.is_none());
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn client_tools_stay_and_non_object_schemas_are_wrapped() {
        let r = req(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"json_response"}}],
            "response_format":{"type":"json_schema","json_schema":{"schema":{"type":"array","items":{"type":"string"}}}}}),
        );
        let (lowered, reply) = lower(&r, CAN).unwrap().unwrap();
        let v = serde_json::to_value(&lowered).unwrap();
        assert_eq!(v["tools"][1]["function"]["name"], "json_response_2");
        assert_eq!(
            v["tools"][1]["function"]["parameters"]["properties"]["value"]["type"],
            "array"
        );
        assert_eq!(v["tool_choice"], "required");
        let mut resp = ChatResponse::new(
            &ChunkMeta::new("m"),
            ResponseMessage::assistant(
                None,
                Some(vec![ToolCall::function(
                    "t",
                    "json_response_2",
                    r#"{"value":["a","b"]}"#,
                )]),
            ),
            "tool_calls",
            None,
        );
        reply.lift_complete(&mut resp);
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some(r#"["a","b"]"#)
        );
        // A call of the client's own tool stays a tool call.
        let mut resp = ChatResponse::new(
            &ChunkMeta::new("m"),
            ResponseMessage::assistant(
                None,
                Some(vec![ToolCall::function("t", "json_response", "{}")]),
            ),
            "tool_calls",
            None,
        );
        reply.lift_complete(&mut resp);
        assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn instruction_and_prefill_where_a_tool_cannot_be_forced() {
        let r = req(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_object"}}),
        );
        let (lowered, reply) = lower(&r, CAN).unwrap().unwrap();
        assert_eq!(lowered.messages[0].role, Role::System);
        assert!(lowered.messages[0].text_content().contains("JSON object"));
        assert_eq!(lowered.messages.last().unwrap().text_content(), "{");
        let mut resp = ChatResponse::new(
            &ChunkMeta::new("m"),
            ResponseMessage::assistant(Some(r#""a":1}"#.into()), None),
            "stop",
            None,
        );
        reply.lift_complete(&mut resp);
        assert_eq!(
            resp.choices[0].message.content.as_deref(),
            Some(r#"{"a":1}"#)
        );
        // No prefill allowed (thinking): the instruction alone.
        let (lowered, _) = lower(
            &r,
            Lowering {
                force_tool: false,
                prefill: false,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(lowered.messages.len(), 2);
        let r = req(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}),
        );
        let (lowered, _) = lower(
            &r,
            Lowering {
                force_tool: false,
                prefill: true,
            },
        )
        .unwrap()
        .unwrap();
        assert!(lowered.tools.is_none());
        assert!(lowered.messages[0].text_content().contains("JSON Schema"));
        assert!(lower(
            &req(json!({"model":"m","messages":[],"response_format":{"type":"text"}})),
            CAN
        )
        .unwrap()
        .is_none());
        assert_eq!(
            lower(
                &req(json!({"model":"m","messages":[],"response_format":{"type":"xml"}})),
                CAN
            )
            .unwrap_err()
            .param(),
            Some("response_format")
        );
    }

    #[tokio::test]
    async fn streams_lift_the_arguments_into_content() {
        let r = req(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "response_format":{"type":"json_schema","json_schema":{"name":"out","schema":{"type":"object"}}}}),
        );
        let (_, reply) = lower(&r, CAN).unwrap().unwrap();
        let meta = ChunkMeta::new("m");
        let chunks = vec![
            Ok(ChatChunk::delta(&meta, Delta::role(), None)),
            Ok(ChatChunk::delta(&meta, Delta::text("Sure."), None)),
            Ok(ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::start(0, "t", "out")),
                None,
            )),
            Ok(ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::arguments(0, "{\"a\":")),
                None,
            )),
            Ok(ChatChunk::delta(
                &meta,
                Delta::tool_call(ToolCallDelta::arguments(0, "1}")),
                None,
            )),
            Ok(ChatChunk::delta(
                &meta,
                Delta::default(),
                Some("tool_calls"),
            )),
        ];
        let out: Vec<ChatChunk> = reply
            .lift_stream(ChunkStream::from_chunks(chunks))
            .map(Result::unwrap)
            .collect()
            .await;
        let text: String = out
            .iter()
            .filter_map(|c| c.choices[0].delta.content.clone())
            .collect();
        assert_eq!(text, "{\"a\":1}");
        assert!(out.iter().all(|c| c.choices[0].delta.tool_calls.is_none()));
        assert_eq!(
            out.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("stop")
        );
    }
}
