//! The canonical request: an OpenAI chat-completions request body.
//!
//! Every known field is typed where the gateway reads it; everything else is kept in `extra`
//! (`#[serde(flatten)]`) so a request bound for an OpenAI upstream reaches it with every field the
//! client sent, including fields newer than this crate.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An OpenAI chat-completions request (`POST /v1/chat/completions`).
///
/// A client's body is read into it by a byte scan (`format::openai::client_request`), not by
/// this derive alone: a member added here, or to [`Message`], [`ContentPart`] or [`Tool`], must be
/// read there too (its every-member test stops compiling until it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// Model id as the client wrote it (an alias is resolved by the router, not here).
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Whether the client wants a server-sent-event stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Upper bound on generated tokens (preferred spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Upper bound on generated tokens (deprecated spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0–2 at OpenAI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Number of choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Stop sequences: one string or several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Tool choice: `"none" | "auto" | "required"` or an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Response format (`text`, `json_object`, `json_schema`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Reasoning effort (`minimal`, `low`, `medium`, `high`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Extended thinking as Anthropic spells it (`{"type":"enabled","budget_tokens":N}`): an
    /// extension OpenAI-format clients of Claude send; wins over `reasoning_effort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    /// A Bedrock guardrail for this request (`guardrailConfig`, as Converse spells it): an
    /// extension field, honoured only where the configuration allows per-request guardrails.
    #[serde(
        default,
        rename = "guardrailConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub guardrail_config: Option<GuardrailConfig>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, forwarded untouched to OpenAI upstreams.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for `model` with `messages` and nothing else set (set more through the fields:
    /// `request.stream = Some(true)`).
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..ChatRequest::default()
        }
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for a final usage chunk on a stream.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The token limit, from `max_completion_tokens` else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The stop sequences as a slice-like list (empty when none).
    pub fn stop_sequences(&self) -> Vec<&str> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.as_str()],
            Some(Stop::Many(v)) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StreamOptions {
    /// Add a final chunk with `choices: []` and the full usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other options, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StreamOptions {
    /// `{"include_usage": true}`: a final usage chunk on the stream.
    pub fn with_usage() -> Self {
        StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }
    }
}

/// `stop`: a single string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// System instructions.
    System,
    /// Developer instructions (the newer name for system).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
    /// A function result (deprecated functions API).
    Function,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
            Role::Function => "function",
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Message {
    /// Author role.
    pub role: Role,
    /// Text or content parts; `None` for an assistant turn with only tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name (or the function name for `role: function`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A prompt-cache breakpoint after the whole message (the convention OpenAI-format clients
    /// of Claude use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// An assistant turn's signed reasoning, echoed back as the model wrote it (thinking blocks
    /// with their `signature`, redacted blocks with their `data`), so Claude can verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_blocks: Option<Vec<ThinkingBlock>>,
    /// Other fields (`refusal`, `audio`, `function_call`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message of `role` with `content` (`None`: an assistant turn with only tool calls).
    pub fn new(role: Role, content: Option<MessageContent>) -> Self {
        Message {
            role,
            content,
            name: None,
            tool_calls: None,
            tool_call_id: None,
            cache_control: None,
            thinking_blocks: None,
            extra: Map::new(),
        }
    }

    /// A message with plain text content.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message::new(role, Some(MessageContent::Text(text.into())))
    }

    /// An assistant turn that calls tools.
    pub fn assistant_tool_calls(calls: Vec<ToolCall>) -> Self {
        let mut message = Message::new(Role::Assistant, None);
        message.tool_calls = Some(calls);
        message
    }

    /// A `tool` message answering the call `tool_call_id` with `text`.
    pub fn tool_result(tool_call_id: impl Into<String>, text: impl Into<String>) -> Self {
        let mut message = Message::text(Role::Tool, text);
        message.tool_call_id = Some(tool_call_id.into());
        message
    }

    /// All text of the message joined (text parts only; other parts are skipped).
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(MessageContent::Text(s)) => s.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if let Some(t) = p.text.as_deref() {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
        }
    }
}

/// Message content: a string or an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts (text, image_url, input_audio, file, refusal).
    Parts(Vec<ContentPart>),
}

/// Read by the JSON value's own type, not `#[serde(untagged)]`, which buffers every message's
/// content in an intermediate tree and copies each string twice before trying each variant (the
/// typed parse of every request goes through here).
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContentVisitor;

        impl<'de> serde::de::Visitor<'de> for ContentVisitor {
            type Value = MessageContent;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MessageContent, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(part) = seq.next_element::<ContentPart>()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }

        d.deserialize_any(ContentVisitor)
    }
}

/// One content part. Kept as a flat struct so unknown part types survive a round trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContentPart {
    /// `text`, `image_url`, `input_audio`, `file`, `refusal`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Image of an `image_url` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<ImageUrl>,
    /// File of a `file` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FilePart>,
    /// Refusal text of a `refusal` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// A prompt-cache breakpoint after this part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Other members (`input_audio`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContentPart {
    /// A part of type `kind` with no member set (for the types without a constructor here:
    /// set `extra`, e.g. `input_audio`).
    pub fn new(kind: impl Into<String>) -> Self {
        ContentPart {
            kind: kind.into(),
            text: None,
            image_url: None,
            file: None,
            refusal: None,
            cache_control: None,
            extra: Map::new(),
        }
    }

    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Self {
        let mut part = ContentPart::new("text");
        part.text = Some(text.into());
        part
    }

    /// An `image_url` part.
    pub fn image_url(url: impl Into<String>) -> Self {
        let mut part = ContentPart::new("image_url");
        part.image_url = Some(ImageUrl::new(url));
        part
    }

    /// A `file` part.
    pub fn file(file: FilePart) -> Self {
        let mut part = ContentPart::new("file");
        part.file = Some(file);
        part
    }
}

/// `image_url` member of an image part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageUrl {
    /// `https://…` or `data:<mime>;base64,<payload>`.
    pub url: String,
    /// `auto`, `low`, `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// The image at `url` (`https://…` or a `data:` URL), detail left to the model.
    pub fn new(url: impl Into<String>) -> Self {
        ImageUrl {
            url: url.into(),
            detail: None,
        }
    }
}

/// `file` member of a file part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FilePart {
    /// Base64 payload or a data URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// File name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Uploaded-file id (not resolvable by the gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// A title for the document (an extension, as Claude's document `title`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Context about the document for the model (an extension, as Claude's and Converse's
    /// document `context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Citations settings (`{"enabled": true}`, an extension), passed to models that cite
    /// documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
}

impl FilePart {
    /// An inline file: `file_data` (a data URL, plain base64, or an `http(s)://` / `s3://` URL
    /// the gateway may resolve) and its name.
    pub fn inline(file_data: impl Into<String>, filename: Option<String>) -> Self {
        FilePart {
            file_data: Some(file_data.into()),
            filename,
            file_id: None,
            title: None,
            context: None,
            citations: None,
        }
    }
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tool {
    /// `function` (or `custom`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function definition for `type: function`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    /// A prompt-cache breakpoint after this tool definition (and every one before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Other members (`custom`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: Option<String>,
        parameters: Option<Value>,
    ) -> Self {
        Tool {
            kind: "function".into(),
            function: Some(FunctionDefinition {
                description,
                parameters,
                ..FunctionDefinition::new(name)
            }),
            cache_control: None,
            extra: Map::new(),
        }
    }
}

/// A function tool's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// What the function does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments; absent = no arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Other members, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl FunctionDefinition {
    /// The function `name`, without description or parameters.
    pub fn new(name: impl Into<String>) -> Self {
        FunctionDefinition {
            name: name.into(),
            description: None,
            parameters: None,
            strict: None,
            extra: Map::new(),
        }
    }
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(String),
    /// An object such as `{"type":"function","function":{"name":"X"}}`, kept as written.
    Object(Value),
}

/// What a `tool_choice` means, whatever its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolChoiceKind<'a> {
    /// Must not call tools.
    None,
    /// The model decides.
    Auto,
    /// Must call at least one tool.
    Required,
    /// Must call the named function.
    Function(&'a str),
}

impl ToolChoice {
    /// Interprets the choice; `None` when it is a shape the gateway does not know.
    pub fn kind(&self) -> Option<ToolChoiceKind<'_>> {
        match self {
            ToolChoice::Mode(m) => match m.as_str() {
                "none" => Some(ToolChoiceKind::None),
                "auto" => Some(ToolChoiceKind::Auto),
                "required" | "any" => Some(ToolChoiceKind::Required),
                _ => None,
            },
            ToolChoice::Object(v) => {
                let name = v
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| v.get("name"))
                    .and_then(Value::as_str)?;
                Some(ToolChoiceKind::Function(name))
            }
        }
    }
}

/// A tool call in an assistant message (request history or response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// Call id, echoed by the matching `tool` message.
    pub id: String,
    /// Always `function` for function tools.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// Function name and JSON-encoded arguments.
    pub function: FunctionCall,
}

pub(crate) fn function_kind() -> String {
    "function".to_owned()
}

impl ToolCall {
    /// A function call with JSON-encoded `arguments`.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_kind(),
            function: FunctionCall::new(name, arguments),
        }
    }
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON-encoded string (not an object).
    #[serde(default)]
    pub arguments: String,
}

impl FunctionCall {
    /// A call of `name` with JSON-encoded `arguments`.
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// A prompt-cache breakpoint: `{"type":"ephemeral"[,"ttl":"5m"|"1h"]}` (Anthropic's
/// `cache_control`, and the extension OpenAI-format clients of Claude put on content parts,
/// messages and tools). Everything up to and including the marked content is cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheControl {
    /// Always `ephemeral` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// How long the entry lives: `5m` (the default) or `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl CacheControl {
    /// An `ephemeral` breakpoint with an optional TTL.
    pub fn ephemeral(ttl: Option<String>) -> Self {
        CacheControl {
            kind: "ephemeral".into(),
            ttl,
        }
    }
}

/// One block of signed reasoning, as Claude writes it and wants it back (the `thinking_blocks`
/// convention of OpenAI-format clients of Claude).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingBlock {
    /// Reasoning text and the signature that proves Claude wrote it.
    Thinking {
        /// The reasoning text (empty on a streamed signature delta).
        #[serde(default)]
        thinking: String,
        /// The signature (absent for reasoning of models that do not sign it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the safety system encrypted: opaque `data`, echoed back unchanged.
    RedactedThinking {
        /// The encrypted reasoning.
        data: String,
    },
}

/// Anthropic's `thinking` request object: `enabled` with a `budget_tokens`, `disabled`, or
/// `adaptive` (newer models pick their own budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingConfig {
    /// `enabled`, `disabled` or `adaptive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reasoning budget of `enabled` (at least 1024, below `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
    /// Other members (`display`, …), kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ThinkingConfig {
    /// `{"type":"enabled","budget_tokens":budget}`.
    pub fn enabled(budget: u32) -> Self {
        ThinkingConfig {
            kind: "enabled".into(),
            budget_tokens: Some(budget),
            extra: Map::new(),
        }
    }
}

/// A Bedrock guardrail to apply (Converse's `guardrailConfig`; the InvokeModel guardrail headers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailConfig {
    /// Guardrail id or ARN.
    pub guardrail_identifier: String,
    /// `1`…`99999999` or `DRAFT`.
    pub guardrail_version: String,
    /// `enabled`, `disabled` or `enabled_full`: whether the reply carries the guardrail's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// ConverseStream only: `sync` or `async`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_processing_mode: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content as a string, as parts, or null; anything else is refused with what was expected.
    #[test]
    fn message_content_reads_a_string_or_parts() {
        let m: Message =
            serde_json::from_str(r#"{"role":"user","content":"hi \"there\""}"#).unwrap();
        assert_eq!(m.content, Some(MessageContent::Text("hi \"there\"".into())));
        let m: Message = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}"#,
        )
        .unwrap();
        let Some(MessageContent::Parts(parts)) = &m.content else {
            panic!("{m:?}");
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].kind, "text");
        let m: Message = serde_json::from_str(r#"{"role":"assistant","content":null}"#).unwrap();
        assert_eq!(m.content, None);
        let from_value: Message =
            serde_json::from_value(serde_json::json!({"role":"user","content":"v"})).unwrap();
        assert_eq!(from_value.content, Some(MessageContent::Text("v".into())));
        let e = serde_json::from_str::<Message>(r#"{"role":"user","content":7}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("expected a string or an array of content parts"),
            "{e}"
        );
        // Written back as it came.
        let parts = r#"[{"type":"text","text":"a"}]"#;
        let c: MessageContent = serde_json::from_str(parts).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), parts);
    }
}
