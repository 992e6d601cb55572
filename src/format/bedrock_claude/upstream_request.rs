//! Canonical request → Bedrock Claude InvokeModel body (upstream direction).
//!
//! Bedrock validates the body against the model's JSON schema: unknown keys (`model`, `stream`,
//! OpenAI-only fields), `null` values and blank text blocks are all rejected with a 400
//! `ValidationException`. The encoder therefore builds the body key by key from what it understands
//! and never copies `req.extra` (except the `top_k` extension).
//!
//! Conversation shaping (PROTOCOLS 5.1): system/developer messages anywhere go to top-level `system`;
//! tool results become `tool_result` blocks in a user turn; adjacent same-role turns are merged so
//! roles alternate; a history that starts with the assistant gets a minimal user turn first.
//!
//! Claude's features: cache breakpoints become `cache_control` on the matching blocks (the system
//! prompt becomes text blocks when one sits in it), dropped where the model does not cache, at
//! most four; reasoning becomes `thinking` under Claude's rules (the `thinking` module); an
//! assistant turn's signed `thinking_blocks` go back first, as written; file parts become PDF or
//! text `document` blocks with their title, context and citations settings.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use super::{thinking, ANTHROPIC_VERSION};
use crate::error::GatewayError;
use crate::format::caching::{CacheArea as Area, CachePlacer, CacheSupport};
use crate::format::data_url::{decode_base64, DataUrl};
use crate::format::reasoning::ReasoningBudgets;
use crate::format::structured;
use crate::model::{
    CacheControl, ChatRequest, ContentPart, Message, MessageContent, Role, ThinkingBlock, ToolCall,
    ToolChoiceKind,
};

/// Options of the canonical → Claude encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaudeRequestOptions {
    /// `max_tokens` when the client gave no limit (Claude requires one).
    pub default_max_tokens: u32,
    /// Where the model caches prompts: cache breakpoints elsewhere are dropped.
    pub cache: CacheSupport,
    /// `reasoning_effort` → thinking budget.
    pub reasoning: ReasoningBudgets,
}

impl ClaudeRequestOptions {
    /// Sends `default_max_tokens` when the client gave no limit.
    pub fn new(default_max_tokens: u32) -> Self {
        ClaudeRequestOptions {
            default_max_tokens,
            cache: CacheSupport::ALL,
            reasoning: ReasoningBudgets::default(),
        }
    }
}

impl Default for ClaudeRequestOptions {
    fn default() -> Self {
        ClaudeRequestOptions {
            default_max_tokens: 4096,
            cache: CacheSupport::ALL,
            reasoning: ReasoningBudgets::default(),
        }
    }
}

/// Image MIME types Claude accepts.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Keys of a client's native body that only route the request and must not reach Bedrock.
const ROUTING_KEYS: [&str; 4] = ["model", "model_id", "modelId", "stream"];

/// Encodes a canonical request as a Bedrock Claude InvokeModel body.
pub fn encode_request(
    req: &ChatRequest,
    opts: &ClaudeRequestOptions,
) -> Result<Value, GatewayError> {
    let mut body = Map::new();
    body.insert("anthropic_version".into(), Value::from(ANTHROPIC_VERSION));

    let plan = thinking::plan(req, Some(opts.default_max_tokens), &opts.reasoning)?;
    let max_tokens = plan.max_tokens.unwrap_or(opts.default_max_tokens).max(1);
    body.insert("max_tokens".into(), Value::from(max_tokens));

    let mut cache = CachePoints::new(opts.cache);
    let (system, messages) = encode_messages(&req.messages, &mut cache)?;
    let system = with_response_format(system, req.response_format.as_ref())?;
    if let Some(system) = system.into_json() {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));

    if let Some(thinking) = plan.thinking.clone() {
        body.insert("thinking".into(), thinking);
        // The plan checked the sampling rules of thinking: only a top_p Claude takes is left.
        if let Some(p) = req.top_p.filter(|p| p.is_finite()) {
            body.insert("top_p".into(), Value::from(p));
        }
    } else {
        if let Some(t) = req.temperature.filter(|t| t.is_finite()) {
            body.insert("temperature".into(), Value::from(t.clamp(0.0, 1.0)));
        }
        if let Some(p) = req.top_p.filter(|p| p.is_finite()) {
            body.insert("top_p".into(), Value::from(p));
        }
        if let Some(k) = req.extra.get("top_k").and_then(top_k) {
            body.insert("top_k".into(), Value::from(k));
        }
    }

    // Claude rejects blank stop sequences; they could never match anything useful anyway.
    let stops: Vec<Value> = req
        .stop_sequences()
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(Value::from)
        .collect();
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), Value::Array(stops));
    }

    encode_tools(req, &mut body, &mut cache)?;
    cache.finish()?;
    Ok(Value::Object(body))
}

/// Checks what Claude would reject in a request whose body is forwarded as the client wrote it
/// (the rules of thinking, and cache breakpoint shapes and count): a clear 400 before Bedrock's.
pub fn check_native(req: &ChatRequest, opts: &ClaudeRequestOptions) -> Result<(), GatewayError> {
    thinking::plan(req, Some(opts.default_max_tokens), &opts.reasoning)?;
    // Counted from the decoded request, without encoding the body again (it can carry
    // megabytes of images).
    let mut cache = CachePlacer::new(CacheSupport::ALL);
    for msg in &req.messages {
        let area = match msg.role {
            Role::System | Role::Developer => Area::System,
            _ => Area::Messages,
        };
        cache.keep(area, msg.cache_control.as_ref())?;
        if let Some(MessageContent::Parts(parts)) = &msg.content {
            for part in parts {
                cache.keep(area, part.cache_control.as_ref())?;
            }
        }
    }
    for tool in req.tools.iter().flatten() {
        cache.keep(Area::Tools, tool.cache_control.as_ref())?;
    }
    cache.finish()
}

/// The breakpoint placer, writing Claude's `cache_control` JSON.
struct CachePoints(CachePlacer);

impl CachePoints {
    fn new(support: CacheSupport) -> Self {
        CachePoints(CachePlacer::new(support))
    }

    /// The `cache_control` to write for `cache` in `area`, if it is kept.
    fn mark(
        &mut self,
        area: Area,
        cache: Option<&CacheControl>,
    ) -> Result<Option<Value>, GatewayError> {
        Ok(self
            .0
            .keep(area, cache)?
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null)))
    }

    fn finish(&self) -> Result<(), GatewayError> {
        self.0.finish()
    }
}

/// Puts a kept breakpoint on a block.
fn with_cache(mut block: Value, cache: Option<Value>) -> Value {
    if let (Some(c), Some(obj)) = (cache, block.as_object_mut()) {
        obj.insert("cache_control".into(), c);
    }
    block
}

/// The system prompt: one string, or text blocks when a breakpoint sits in it.
#[derive(Default)]
struct System {
    blocks: Vec<(String, Option<Value>)>,
    /// The text of each system message (parts joined by a newline), for the plain-string form.
    messages: Vec<String>,
}

impl System {
    fn into_json(self) -> Option<Value> {
        if self.blocks.iter().any(|(_, c)| c.is_some()) {
            let blocks: Vec<Value> = self
                .blocks
                .into_iter()
                .map(|(text, cache)| with_cache(json!({"type": "text", "text": text}), cache))
                .collect();
            return (!blocks.is_empty()).then_some(Value::Array(blocks));
        }
        let text = self.messages.join("\n\n");
        (!text.is_empty()).then_some(Value::String(text))
    }

    fn push_instruction(&mut self, text: String) {
        self.messages.push(text.clone());
        self.blocks.push((text, None));
    }

    fn push_message(&mut self, msg: &Message, cache: &mut CachePoints) -> Result<(), GatewayError> {
        let text = msg.text_content();
        if text.trim().is_empty() {
            return Ok(());
        }
        self.messages.push(text);
        let first = self.blocks.len();
        match &msg.content {
            Some(MessageContent::Parts(parts)) => {
                for part in parts {
                    let Some(t) = part.text.as_deref().filter(|t| !t.trim().is_empty()) else {
                        continue;
                    };
                    let c = cache.mark(Area::System, part.cache_control.as_ref())?;
                    self.blocks.push((t.to_owned(), c));
                }
            }
            Some(MessageContent::Text(t)) => self.blocks.push((t.clone(), None)),
            None => {}
        }
        if let Some(c) = cache.mark(Area::System, msg.cache_control.as_ref())? {
            if let Some(last) = self.blocks[first..].last_mut() {
                last.1 = Some(c);
            }
        }
        Ok(())
    }
}

/// [`encode_request`], serialized.
pub fn encode_request_bytes(
    req: &ChatRequest,
    opts: &ClaudeRequestOptions,
) -> Result<Vec<u8>, GatewayError> {
    let body = encode_request(req, opts)?;
    serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("serializing Claude body: {e}")))
}

/// A client's own Claude-format body, forwarded as written minus the routing-only keys (`model`,
/// `model_id`, `modelId`, `stream`), with `anthropic_version` and `max_tokens` added when absent.
///
/// Serialized straight from the borrowed map (no deep copy: these bodies can carry megabytes of
/// base64 images).
pub fn native_body(
    original: &Map<String, Value>,
    opts: &ClaudeRequestOptions,
) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&NativeBody { original, opts })
        .map_err(|e| GatewayError::internal(format!("serializing Claude body: {e}")))
}

struct NativeBody<'a> {
    original: &'a Map<String, Value>,
    opts: &'a ClaudeRequestOptions,
}

impl Serialize for NativeBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.original.contains_key("anthropic_version") {
            map.serialize_entry("anthropic_version", ANTHROPIC_VERSION)?;
        }
        if !self.original.contains_key("max_tokens") {
            map.serialize_entry("max_tokens", &self.opts.default_max_tokens)?;
        }
        for (k, v) in self.original {
            if !ROUTING_KEYS.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

fn top_k(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

/// Appends the JSON-mode instruction for a `response_format` still on the request to the system
/// prompt. The provider lowers `response_format` first ([`structured::lower`]: a forced tool, a
/// prefill); a request encoded directly gets the instruction at least.
fn with_response_format(
    mut system: System,
    format: Option<&Value>,
) -> Result<System, GatewayError> {
    if let Some(instruction) = format.map(structured::instruction).transpose()?.flatten() {
        system.push_instruction(instruction);
    }
    Ok(system)
}

/// One Claude turn being built.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

/// Splits the conversation into the system prompt and alternating Claude turns.
fn encode_messages(
    messages: &[Message],
    cache: &mut CachePoints,
) -> Result<(System, Vec<Value>), GatewayError> {
    let mut system = System::default();
    let mut turns: Vec<Turn> = Vec::with_capacity(messages.len());
    for msg in messages {
        let (role, mut blocks) = match msg.role {
            Role::System | Role::Developer => {
                system.push_message(msg, cache)?;
                continue;
            }
            Role::User => ("user", user_blocks(msg, cache)?),
            Role::Assistant => ("assistant", assistant_blocks(msg, cache)?),
            Role::Tool => {
                let id = msg
                    .tool_call_id
                    .as_deref()
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| GatewayError::missing_field("tool_call_id"))?;
                ("user", vec![tool_result(id, msg.text_content())])
            }
            Role::Function => {
                let name = msg
                    .name
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| GatewayError::missing_field("name"))?;
                (
                    "user",
                    vec![tool_result(&function_call_id(name), msg.text_content())],
                )
            }
        };
        if blocks.is_empty() {
            continue; // nothing Bedrock would accept is left of this message
        }
        // A breakpoint on the whole message goes on its last block (for a tool message, also on
        // one of its parts: its content is flattened into one result).
        let part_cache = match (&msg.role, &msg.content) {
            (Role::Tool | Role::Function, Some(MessageContent::Parts(parts))) => {
                parts.iter().rev().find_map(|p| p.cache_control.as_ref())
            }
            _ => None,
        };
        if let Some(c) = cache.mark(Area::Messages, msg.cache_control.as_ref().or(part_cache))? {
            if let Some(last) = blocks.last_mut().and_then(Value::as_object_mut) {
                last.insert("cache_control".into(), c);
            }
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.blocks.extend(blocks),
            _ => turns.push(Turn { role, blocks }),
        }
    }

    if turns.is_empty() {
        return Err(GatewayError::invalid_request(
            "'messages' must contain at least one user or assistant message with content.",
        )
        .with_param("messages"));
    }
    if turns[0].role == "assistant" {
        turns.insert(
            0,
            Turn {
                role: "user",
                blocks: vec![json!({"type": "text", "text": "."})],
            },
        );
    }
    // A final assistant turn is a prefill, and Claude rejects a prefill ending in whitespace.
    if let Some(last) = turns.last_mut().filter(|t| t.role == "assistant") {
        if let Some(Value::String(text)) = last
            .blocks
            .last_mut()
            .filter(|b| b["type"] == "text")
            .and_then(|b| b.get_mut("text"))
        {
            let trimmed = text.trim_end().len();
            text.truncate(trimmed);
        }
    }

    let out = turns
        .into_iter()
        .map(|mut t| {
            if t.role == "user" {
                // Claude wants the tool results of a user turn before any other block.
                let (mut results, rest): (Vec<Value>, Vec<Value>) = t
                    .blocks
                    .into_iter()
                    .partition(|b| b["type"] == "tool_result");
                results.extend(rest);
                t.blocks = results;
            }
            json!({"role": t.role, "content": t.blocks})
        })
        .collect();
    Ok((system, out))
}

/// The id used for a deprecated `function` call/result pair: derived from the name, restricted to
/// the characters Claude accepts in tool-use ids.
fn function_call_id(name: &str) -> String {
    let mut id = String::with_capacity(name.len() + 5);
    id.push_str("call_");
    id.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '_'
        }
    }));
    id
}

fn tool_result(id: &str, content: String) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), Value::from("tool_result"));
    block.insert("tool_use_id".into(), Value::from(id));
    // `content` is optional; an empty string would be a blank text block, which Bedrock rejects.
    if !content.is_empty() {
        block.insert("content".into(), Value::String(content));
    }
    Value::Object(block)
}

fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn user_blocks(msg: &Message, cache: &mut CachePoints) -> Result<Vec<Value>, GatewayError> {
    match &msg.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(s)) => Ok(text_block(s).into_iter().collect()),
        Some(MessageContent::Parts(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                if let Some(block) = user_part(part)? {
                    let c = cache.mark(Area::Messages, part.cache_control.as_ref())?;
                    blocks.push(with_cache(block, c));
                }
            }
            Ok(blocks)
        }
    }
}

fn user_part(part: &ContentPart) -> Result<Option<Value>, GatewayError> {
    match part.kind.as_str() {
        "text" => Ok(part.text.as_deref().and_then(text_block)),
        "image_url" => {
            let url = part
                .image_url
                .as_ref()
                .map(|i| i.url.as_str())
                .ok_or_else(|| {
                    GatewayError::invalid_request("image_url part without 'image_url.url'.")
                        .with_param("messages")
                })?;
            image_block(url).map(Some)
        }
        "file" => document_block(part).map(Some),
        "input_audio" => Err(GatewayError::unsupported(
            "messages",
            "Audio input (input_audio parts) is not supported by Claude models.",
        )),
        "refusal" => Ok(part.refusal.as_deref().and_then(text_block)),
        other => Err(GatewayError::unsupported(
            "messages",
            format!("Content part type '{other}' is not supported by Claude models."),
        )),
    }
}

fn image_block(url: &str) -> Result<Value, GatewayError> {
    let Some(data_url) = DataUrl::parse(url) else {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        let message = if lower.starts_with("http://") || lower.starts_with("https://") {
            "Image URLs are not supported for Claude models unless the gateway is configured to fetch them \
             ([media_fetch]). Send the image inline as a base64 data URL (data:image/png;base64,...)."
        } else {
            "Unsupported image URL: send the image inline as a base64 data URL (data:image/png;base64,...)."
        };
        return Err(GatewayError::unsupported("messages", message));
    };
    let data_url = data_url?;
    let mime = data_url.mime.as_deref().unwrap_or("");
    if !IMAGE_TYPES.contains(&mime) {
        return Err(GatewayError::unsupported(
            "messages",
            format!(
                "Image type '{mime}' is not supported by Claude models; use image/jpeg, image/png, image/gif or image/webp."
            ),
        ));
    }
    Ok(json!({
        "type": "image",
        "source": {"type": "base64", "media_type": mime, "data": data_url.data},
    }))
}

/// The MIME type a document's file name suggests (for raw base64 without a data URL).
fn mime_from_name(name: Option<&str>) -> Option<&'static str> {
    let (_, ext) = name?.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "pdf" => "application/pdf",
        "txt" | "text" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "csv" => "text/csv",
        _ => return None,
    })
}

/// A file part as a Claude document: PDFs as base64, text files as text; title, context and
/// citations settings as the client gave them.
fn document_block(part: &ContentPart) -> Result<Value, GatewayError> {
    let file = part.file.as_ref();
    let data = file.and_then(|f| f.file_data.as_deref());
    let filename = file.and_then(|f| f.filename.as_deref());
    let Some(data) = data else {
        let message = if file.and_then(|f| f.file_id.as_deref()).is_some() {
            "Uploaded file ids (file.file_id) cannot be resolved by the gateway; send the file inline as file.file_data."
        } else {
            "file part without 'file.file_data'."
        };
        return Err(GatewayError::unsupported("messages", message));
    };
    let (mime, payload) = match DataUrl::parse(data) {
        Some(url) => {
            let url = url?;
            (url.mime.or_else(|| mime_from_name(filename).map(str::to_owned)), url.data)
        }
        None if data.starts_with("s3://") || data.starts_with("http://") || data.starts_with("https://") => {
            return Err(GatewayError::unsupported(
                "messages",
                "Claude over InvokeModel takes documents inline: send file_data as a base64 data URL \
                 (http(s) URLs only where the gateway is configured to fetch them, [media_fetch]).",
            ))
        }
        None => (mime_from_name(filename).map(str::to_owned), data),
    };
    let source = match mime.as_deref() {
        Some("application/pdf") => {
            json!({"type": "base64", "media_type": "application/pdf", "data": payload})
        }
        Some("text/plain" | "text/markdown" | "text/csv") => {
            let text = String::from_utf8(decode_base64(payload)?).map_err(|_| {
                GatewayError::invalid_request("A text document must be UTF-8.").with_param("messages")
            })?;
            json!({"type": "text", "media_type": "text/plain", "data": text})
        }
        other => {
            return Err(GatewayError::unsupported(
                "messages",
                format!(
                    "File type '{}' is not supported by Claude models; PDF and plain-text documents are \
                     (data:application/pdf;base64,... or data:text/plain;base64,..., or raw base64 with a .pdf or \
                     .txt filename).",
                    other.unwrap_or("unknown")
                ),
            ))
        }
    };
    let mut block = Map::new();
    block.insert("type".into(), Value::from("document"));
    block.insert("source".into(), source);
    if let Some(title) = file.and_then(|f| f.title.as_deref().or(f.filename.as_deref())) {
        block.insert("title".into(), Value::from(title));
    }
    if let Some(context) = file.and_then(|f| f.context.as_deref()) {
        block.insert("context".into(), Value::from(context));
    }
    if let Some(citations) = file.and_then(|f| f.citations.clone()) {
        block.insert("citations".into(), citations);
    }
    Ok(Value::Object(block))
}

fn assistant_blocks(msg: &Message, cache: &mut CachePoints) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    // Claude's own reasoning first, exactly as it wrote it: the signature covers the text.
    for block in msg.thinking_blocks.iter().flatten() {
        blocks.push(match block {
            ThinkingBlock::Thinking {
                thinking,
                signature,
            } => {
                let Some(signature) = signature.as_deref().filter(|s| !s.is_empty()) else {
                    // Unsigned reasoning (another model's) means nothing to Claude.
                    continue;
                };
                json!({"type": "thinking", "thinking": thinking, "signature": signature})
            }
            ThinkingBlock::RedactedThinking { data } => {
                json!({"type": "redacted_thinking", "data": data})
            }
        });
    }
    match &msg.content {
        None => {}
        Some(MessageContent::Text(s)) => blocks.extend(text_block(s)),
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                let text = match part.kind.as_str() {
                    "text" => part.text.as_deref(),
                    "refusal" => part.refusal.as_deref(),
                    other => {
                        return Err(GatewayError::unsupported(
                            "messages",
                            format!(
                            "Content part type '{other}' is not supported in assistant messages."
                        ),
                        ))
                    }
                };
                if let Some(block) = text.and_then(text_block) {
                    let c = cache.mark(Area::Messages, part.cache_control.as_ref())?;
                    blocks.push(with_cache(block, c));
                }
            }
        }
    }
    for call in msg.tool_calls.iter().flatten() {
        blocks.push(tool_use_block(call)?);
    }
    // Deprecated functions API: `function_call: {name, arguments}` on the assistant turn.
    if let Some(fc) = msg.extra.get("function_call").filter(|v| v.is_object()) {
        let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
        let arguments = fc
            .get("arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        blocks.push(json!({
            "type": "tool_use",
            "id": function_call_id(name),
            "name": name,
            "input": parse_arguments(arguments)?,
        }));
    }
    Ok(blocks)
}

fn tool_use_block(call: &ToolCall) -> Result<Value, GatewayError> {
    Ok(json!({
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": parse_arguments(&call.function.arguments)?,
    }))
}

/// Tool-call arguments (a JSON string) → the `input` object Claude expects.
fn parse_arguments(arguments: &str) -> Result<Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::invalid_request(
            "Tool call arguments must be a JSON object for Claude models.",
        )
        .with_param("messages")),
        Err(e) => Err(GatewayError::invalid_request(format!(
            "Tool call arguments are not valid JSON: {e}"
        ))
        .with_param("messages")),
    }
}

/// Writes `tools` and `tool_choice`.
fn encode_tools(
    req: &ChatRequest,
    body: &mut Map<String, Value>,
    cache: &mut CachePoints,
) -> Result<(), GatewayError> {
    let tools = req.tools.as_deref().unwrap_or_default();
    if tools.is_empty() {
        // `tool_choice` without `tools` is meaningless to Claude (and rejected); OpenAI allows it.
        return Ok(());
    }
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        let function = match (tool.kind.as_str(), &tool.function) {
            ("function", Some(f)) => f,
            (kind, _) => {
                return Err(GatewayError::unsupported(
                    "tools",
                    format!("Tool type '{kind}' is not supported for Claude models; only function tools are."),
                ))
            }
        };
        let mut t = Map::new();
        t.insert("name".into(), Value::from(function.name.as_str()));
        if let Some(d) = function.description.as_deref().filter(|d| !d.is_empty()) {
            t.insert("description".into(), Value::from(d));
        }
        let schema = function
            .parameters
            .clone()
            .filter(|p| p.is_object())
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        t.insert("input_schema".into(), schema);
        if let Some(c) = cache.mark(Area::Tools, tool.cache_control.as_ref())? {
            t.insert("cache_control".into(), c);
        }
        out.push(Value::Object(t));
    }
    body.insert("tools".into(), Value::Array(out));

    let kind = match &req.tool_choice {
        None => None,
        Some(choice) => Some(choice.kind().ok_or_else(|| {
            GatewayError::unsupported(
                "tool_choice",
                "This tool_choice shape is not supported for Claude models.",
            )
        })?),
    };
    let mut choice = match kind {
        None => None,
        Some(ToolChoiceKind::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoiceKind::Required) => Some(json!({"type": "any"})),
        Some(ToolChoiceKind::Function(name)) => Some(json!({"type": "tool", "name": name})),
        Some(ToolChoiceKind::None) => Some(json!({"type": "none"})),
    };
    if req.parallel_tool_calls == Some(false) && kind != Some(ToolChoiceKind::None) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(obj) = c.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn enc(v: Value) -> Value {
        encode_request(&req(v), &ClaudeRequestOptions::default()).unwrap()
    }

    fn enc_err(v: Value) -> GatewayError {
        encode_request(&req(v), &ClaudeRequestOptions::default()).unwrap_err()
    }

    #[test]
    fn worked_example_5_9() {
        let body = enc(json!({
            "model":"us.anthropic.claude-3-5-sonnet-20241022-v2:0","stream":true,
            "stream_options":{"include_usage":true},"max_completion_tokens":512,"temperature":0.3,
            "messages":[
                {"role":"system","content":"You are a weather bot."},
                {"role":"user","content":[{"type":"text","text":"Paris?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"{\"temp_c\":21}"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
            "tool_choice":"auto"
        }));
        assert_eq!(
            body,
            json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":512,"temperature":0.3,
                "system":"You are a weather bot.",
                "messages":[
                    {"role":"user","content":[{"type":"text","text":"Paris?"},
                        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]},
                    {"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}]},
                    {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"{\"temp_c\":21}"}]}],
                "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],
                "tool_choice":{"type":"auto"}})
        );
    }

    #[test]
    fn minimal_request_defaults_and_drops_openai_fields() {
        let body = enc(json!({
            "model":"m","stream":true,"n":1,"seed":3,"user":"u","frequency_penalty":0.5,"logprobs":false,
            "messages":[{"role":"user","content":"hi"}]
        }));
        assert_eq!(
            body,
            json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":4096,
                "messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]})
        );
        let opts = ClaudeRequestOptions {
            default_max_tokens: 77,
            ..ClaudeRequestOptions::default()
        };
        let body = encode_request(
            &req(json!({"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]})),
            &opts,
        )
        .unwrap();
        assert_eq!(body["max_tokens"], 9);
        let body = encode_request(&req(json!({"model":"m","max_tokens":9,"max_completion_tokens":11,"messages":[{"role":"user","content":"hi"}]})), &opts).unwrap();
        assert_eq!(body["max_tokens"], 11);
        let body = encode_request(
            &req(json!({"model":"m","messages":[{"role":"user","content":"hi"}]})),
            &opts,
        )
        .unwrap();
        assert_eq!(body["max_tokens"], 77);
    }

    #[test]
    fn systems_merge_roles_alternate_and_first_turn_is_user() {
        let body = enc(json!({"model":"m","messages":[
            {"role":"developer","content":"A"},
            {"role":"assistant","content":"earlier"},
            {"role":"system","content":[{"type":"text","text":"B"}]},
            {"role":"user","content":"one"},
            {"role":"user","content":[{"type":"text","text":"two"},{"type":"text","text":"   "}]},
            {"role":"assistant","content":""},
            {"role":"user","content":"three"},
            {"role":"assistant","content":"prefill  \n"}
        ]}));
        assert_eq!(
            body,
            json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":4096,"system":"A\n\nB",
                "messages":[
                    {"role":"user","content":[{"type":"text","text":"."}]},
                    {"role":"assistant","content":[{"type":"text","text":"earlier"}]},
                    {"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"},{"type":"text","text":"three"}]},
                    {"role":"assistant","content":[{"type":"text","text":"prefill"}]}]})
        );
    }

    #[test]
    fn sampling_parameters() {
        let body = enc(
            json!({"model":"m","temperature":1.7,"top_p":0.9,"top_k":40,"stop":["END","  "],
            "messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(body["temperature"], json!(1.0));
        assert_eq!(body["top_p"], json!(0.9));
        assert_eq!(body["top_k"], json!(40));
        assert_eq!(body["stop_sequences"], json!(["END"]));
        let body = enc(
            json!({"model":"m","temperature":-1,"stop":"X","top_k":"nope",
            "messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(body["temperature"], json!(0.0));
        assert_eq!(body["stop_sequences"], json!(["X"]));
        assert!(body.get("top_k").is_none());
    }

    #[test]
    fn tool_results_merge_with_following_user_and_come_first() {
        let body = enc(json!({"model":"m","messages":[
            {"role":"user","content":"go"},
            {"role":"assistant","content":"calling","tool_calls":[
                {"id":"a","type":"function","function":{"name":"f","arguments":""}},
                {"id":"b","type":"function","function":{"name":"g","arguments":"{\"x\":1}"}}]},
            {"role":"tool","tool_call_id":"a","content":"ra"},
            {"role":"tool","tool_call_id":"b","content":[{"type":"text","text":"rb"}]},
            {"role":"user","content":"thanks"},
            {"role":"assistant","content":null,"function_call":{"name":"old fn","arguments":"{}"}},
            {"role":"function","name":"old fn","content":""}
        ]}));
        assert_eq!(
            body["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"go"}]},
                {"role":"assistant","content":[{"type":"text","text":"calling"},
                    {"type":"tool_use","id":"a","name":"f","input":{}},
                    {"type":"tool_use","id":"b","name":"g","input":{"x":1}}]},
                {"role":"user","content":[
                    {"type":"tool_result","tool_use_id":"a","content":"ra"},
                    {"type":"tool_result","tool_use_id":"b","content":"rb"},
                    {"type":"text","text":"thanks"}]},
                {"role":"assistant","content":[{"type":"tool_use","id":"call_old_fn","name":"old fn","input":{}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_old_fn"}]}
            ])
        );
    }

    #[test]
    fn bad_tool_arguments_are_400() {
        for args in ["{not json", "[1,2]"] {
            let e = enc_err(json!({"model":"m","messages":[
                {"role":"user","content":"go"},
                {"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":args}}]}]}));
            assert_eq!(e.kind(), ErrorKind::InvalidRequest);
            assert_eq!(e.status(), 400);
            assert_eq!(e.param(), Some("messages"));
        }
        let e = enc_err(json!({"model":"m","messages":[{"role":"tool","content":"x"}]}));
        assert_eq!(e.param(), Some("tool_call_id"));
    }

    #[test]
    fn tools_and_tool_choice() {
        let base = |choice: Value, parallel: Value| {
            let mut r = json!({"model":"m","messages":[{"role":"user","content":"hi"}],
                "tools":[{"type":"function","function":{"name":"f","description":"does f"}}]});
            if !choice.is_null() {
                r["tool_choice"] = choice;
            }
            if !parallel.is_null() {
                r["parallel_tool_calls"] = parallel;
            }
            enc(r)
        };
        let b = base(Value::Null, Value::Null);
        assert_eq!(
            b["tools"],
            json!([{"name":"f","description":"does f","input_schema":{"type":"object","properties":{}}}])
        );
        assert!(b.get("tool_choice").is_none());
        assert_eq!(
            base(json!("required"), Value::Null)["tool_choice"],
            json!({"type":"any"})
        );
        assert_eq!(
            base(json!("none"), json!(false))["tool_choice"],
            json!({"type":"none"})
        );
        assert_eq!(
            base(
                json!({"type":"function","function":{"name":"f"}}),
                Value::Null
            )["tool_choice"],
            json!({"type":"tool","name":"f"})
        );
        assert_eq!(
            base(Value::Null, json!(false))["tool_choice"],
            json!({"type":"auto","disable_parallel_tool_use":true})
        );
        assert_eq!(
            base(json!("required"), json!(false))["tool_choice"],
            json!({"type":"any","disable_parallel_tool_use":true})
        );
        // tool_choice without tools is dropped.
        let b = enc(
            json!({"model":"m","tool_choice":"none","messages":[{"role":"user","content":"hi"}]}),
        );
        assert!(b.get("tool_choice").is_none() && b.get("tools").is_none());
        let e = enc_err(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"custom","custom":{"name":"x"}}]}),
        );
        assert_eq!(e.param(), Some("tools"));
    }

    #[test]
    fn images_files_and_audio() {
        let body = enc(json!({"model":"m","messages":[{"role":"user","content":[
            {"type":"image_url","image_url":{"url":"data:image/jpg;base64,AAA","detail":"high"}},
            {"type":"file","file":{"file_data":"data:application/pdf;base64,JVBER","filename":"a.pdf"}},
            {"type":"file","file":{"file_data":"JVBERraw","filename":"B.PDF"}}]}]}));
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"AAA"}},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"},"title":"a.pdf"},
                {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERraw"},"title":"B.PDF"}])
        );
        let part =
            |p: Value| enc_err(json!({"model":"m","messages":[{"role":"user","content":[p]}]}));
        let e = part(json!({"type":"image_url","image_url":{"url":"https://x.test/a.png"}}));
        assert_eq!(e.param(), Some("messages"));
        assert!(
            e.message().contains("configured to fetch"),
            "{}",
            e.message()
        );
        let e = part(json!({"type":"image_url","image_url":{"url":"data:image/bmp;base64,AAA"}}));
        assert_eq!(
            (e.param(), e.code()),
            (Some("messages"), Some("unsupported_parameter"))
        );
        let e = part(json!({"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}));
        assert_eq!(e.code(), Some("unsupported_parameter"));
        let e = part(json!({"type":"file","file":{"file_data":"AAAA","filename":"a.docx"}}));
        assert_eq!(e.param(), Some("messages"));
        // Plain text is a text document, with its title, context and citations settings.
        let body = enc(json!({"model":"m","messages":[{"role":"user","content":[
            {"type":"file","file":{"file_data":"data:text/plain;base64,aGVsbG8=","filename":"n.txt",
                "context":"notes","citations":{"enabled":true}}},{"type":"text","text":"Q"}]}]}));
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type":"document","source":{"type":"text","media_type":"text/plain","data":"hello"},
                "title":"n.txt","context":"notes","citations":{"enabled":true}})
        );
        let e = part(json!({"type":"file","file":{"file_data":"s3://b/k.pdf","filename":"k.pdf"}}));
        assert_eq!(e.param(), Some("messages"));
        let e = part(json!({"type":"file","file":{"file_id":"file-1"}}));
        assert_eq!(e.param(), Some("messages"));
    }

    #[test]
    fn reasoning_effort_becomes_thinking() {
        let body = enc(
            json!({"model":"m","max_tokens":10000,"reasoning_effort":"low","top_p":0.96,
            "messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(
            body["thinking"],
            json!({"type":"enabled","budget_tokens":2048})
        );
        assert_eq!(body["max_tokens"], 10000);
        assert_eq!(body["top_p"], json!(0.96));
        assert!(body.get("temperature").is_none() && body.get("top_k").is_none());
        // An effort's budget yields to a smaller limit; no limit: the budget plus the default.
        let body = enc(
            json!({"model":"m","max_tokens":5000,"reasoning_effort":"high","messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(
            (
                body["thinking"]["budget_tokens"].clone(),
                body["max_tokens"].clone()
            ),
            (json!(4999), json!(5000))
        );
        let body = enc(
            json!({"model":"m","reasoning_effort":"medium","messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(
            (
                body["thinking"]["budget_tokens"].clone(),
                body["max_tokens"].clone()
            ),
            (json!(8192), json!(8192 + 4096))
        );
        // The configured table decides the budgets.
        let opts = ClaudeRequestOptions {
            reasoning: ReasoningBudgets::new(1024, 3000, 6000, 9000),
            ..ClaudeRequestOptions::default()
        };
        let body = encode_request(
            &req(json!({"model":"m","reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]})),
            &opts,
        )
        .unwrap();
        assert_eq!(body["thinking"]["budget_tokens"], 3000);
        // An Anthropic-style thinking object in an OpenAI body is sent as written.
        let body = enc(
            json!({"model":"m","max_tokens":3000,"thinking":{"type":"enabled","budget_tokens":2000},
            "messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(
            body["thinking"],
            json!({"type":"enabled","budget_tokens":2000})
        );
        let body = enc(
            json!({"model":"m","reasoning_effort":"none","temperature":0.5,"messages":[{"role":"user","content":"hi"}]}),
        );
        assert!(body.get("thinking").is_none());
        assert_eq!(body["temperature"], 0.5);
        for (bad, param) in [
            (json!({"reasoning_effort":"huge"}), "reasoning_effort"),
            (
                json!({"reasoning_effort":"low","temperature":0.5}),
                "temperature",
            ),
            (
                json!({"reasoning_effort":"low","max_tokens":900}),
                "max_tokens",
            ),
            (
                json!({"thinking":{"type":"enabled","budget_tokens":500}}),
                "thinking.budget_tokens",
            ),
        ] {
            let mut body = json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
            body.as_object_mut()
                .unwrap()
                .extend(bad.as_object().unwrap().clone());
            assert_eq!(enc_err(body).param(), Some(param));
        }
    }

    #[test]
    fn thinking_blocks_go_back_first_and_exactly() {
        let body = enc(json!({"model":"m","reasoning_effort":"low","messages":[
            {"role":"user","content":"Weather?"},
            {"role":"assistant","content":"Checking.","thinking_blocks":[
                {"type":"thinking","thinking":"The user wants é weather.","signature":"EqQBCgIYAhIM=="},
                {"type":"redacted_thinking","data":"EmwKAhgB"},
                {"type":"thinking","thinking":"unsigned: another model's"}],
             "tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"toolu_1","content":"sunny"}]}));
        assert_eq!(
            body["messages"][1]["content"],
            json!([
                {"type":"thinking","thinking":"The user wants é weather.","signature":"EqQBCgIYAhIM=="},
                {"type":"redacted_thinking","data":"EmwKAhgB"},
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"toolu_1","name":"f","input":{}}])
        );
    }

    #[test]
    fn cache_breakpoints_become_cache_control() {
        let body = enc(json!({"model":"m","messages":[
            {"role":"system","content":[{"type":"text","text":"Long rules.","cache_control":{"type":"ephemeral","ttl":"1h"}}]},
            {"role":"system","content":"More."},
            {"role":"user","content":[{"type":"text","text":"Doc","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Q?"}]},
            {"role":"assistant","content":"A.","cache_control":{"type":"ephemeral"}},
            {"role":"user","content":"Next"}],
            "tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}));
        assert_eq!(
            body["system"],
            json!([{"type":"text","text":"Long rules.","cache_control":{"type":"ephemeral","ttl":"1h"}},
                {"type":"text","text":"More."}])
        );
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type":"text","text":"Doc","cache_control":{"type":"ephemeral"}})
        );
        assert_eq!(
            body["messages"][1]["content"],
            json!([{"type":"text","text":"A.","cache_control":{"type":"ephemeral"}}])
        );
        assert_eq!(
            body["tools"][0]["cache_control"],
            json!({"type":"ephemeral"})
        );
        // A model without caching: every breakpoint dropped, the system prompt a plain string.
        let opts = ClaudeRequestOptions {
            cache: CacheSupport::NONE,
            ..ClaudeRequestOptions::default()
        };
        let r = req(json!({"model":"m","messages":[
            {"role":"system","content":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}]},
            {"role":"tool","tool_call_id":"t","content":"r","cache_control":{"type":"ephemeral"}}],
            "tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral"}}]}));
        let body = encode_request(&r, &opts).unwrap();
        assert_eq!(body["system"], "S");
        assert!(!body.to_string().contains("cache_control"), "{body}");
        // Five breakpoints, or a bad TTL: a 400 before Bedrock sees them.
        let five = json!({"model":"m","messages":(0..5).map(|i| json!({"role":"user","content":format!("m{i}"),
            "cache_control":{"type":"ephemeral"}})).collect::<Vec<_>>()});
        assert_eq!(enc_err(five).param(), Some("messages"));
        let bad = json!({"model":"m","messages":[{"role":"user","content":"x","cache_control":{"type":"ephemeral","ttl":"3h"}}]});
        assert_eq!(enc_err(bad).param(), Some("messages"));
        // The tool result of a tool message carries its breakpoint.
        let body = enc(
            json!({"model":"m","messages":[{"role":"user","content":"go"},
            {"role":"assistant","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"t","content":"r","cache_control":{"type":"ephemeral"}}]}),
        );
        assert_eq!(
            body["messages"][2]["content"][0],
            json!({"type":"tool_result","tool_use_id":"t","content":"r","cache_control":{"type":"ephemeral"}})
        );
    }

    #[test]
    fn thinking_rejects_forced_tool_choice() {
        let e = enc_err(
            json!({"model":"m","reasoning_effort":"low","tool_choice":"required",
            "tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(e.param(), Some("tool_choice"));
        let body = enc(
            json!({"model":"m","reasoning_effort":"low","tool_choice":"auto",
            "tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}),
        );
        assert_eq!(body["tool_choice"], json!({"type":"auto"}));
        let e = enc_err(json!({"model":"m","messages":[{"role":"function","content":"x"}]}));
        assert_eq!(e.param(), Some("name"));
    }

    #[test]
    fn response_format_adds_system_instruction() {
        let body = enc(json!({"model":"m","response_format":{"type":"json_object"},
            "messages":[{"role":"system","content":"Be nice."},{"role":"user","content":"hi"}]}));
        let system = body["system"].as_str().unwrap();
        assert!(
            system.starts_with("Be nice.\n\nRespond only with a single valid JSON object"),
            "{system}"
        );
        let body = enc(
            json!({"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"city","schema":{"type":"object"}}},
            "messages":[{"role":"user","content":"hi"}]}),
        );
        let system = body["system"].as_str().unwrap();
        assert!(
            system.contains("Schema name: city") && system.ends_with("{\"type\":\"object\"}"),
            "{system}"
        );
        let body = enc(
            json!({"model":"m","response_format":{"type":"text"},"messages":[{"role":"user","content":"hi"}]}),
        );
        assert!(body.get("system").is_none());
    }

    #[test]
    fn never_emits_nulls_or_blank_text() {
        fn check(v: &Value) {
            match v {
                Value::Null => panic!("null in body"),
                Value::Object(m) => {
                    if m.get("type") == Some(&json!("text")) {
                        assert!(!m["text"].as_str().unwrap().trim().is_empty());
                    }
                    m.values().for_each(check);
                }
                Value::Array(a) => a.iter().for_each(check),
                _ => {}
            }
        }
        let body = enc(
            json!({"model":"m","temperature":null,"stop":null,"tools":null,"messages":[
            {"role":"user","content":" "},{"role":"user","content":"real"},{"role":"assistant","content":null},
            {"role":"assistant","content":[{"type":"text","text":""}]}]}),
        );
        check(&body);
        assert_eq!(
            body["messages"],
            json!([{"role":"user","content":[{"type":"text","text":"real"}]}])
        );
        let e =
            enc_err(json!({"model":"m","messages":[{"role":"system","content":"only system"}]}));
        assert_eq!(e.param(), Some("messages"));
    }

    #[test]
    fn bytes_and_native_body() {
        let r = req(json!({"model":"m","messages":[{"role":"user","content":"hi"}]}));
        let bytes = encode_request_bytes(&r, &ClaudeRequestOptions::default()).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            encode_request(&r, &ClaudeRequestOptions::default()).unwrap()
        );

        let original = json!({"model":"x","modelId":"y","model_id":"z","stream":true,
            "messages":[{"role":"user","content":"hi"}],"top_k":3});
        let bytes = native_body(
            original.as_object().unwrap(),
            &ClaudeRequestOptions {
                default_max_tokens: 123,
                ..ClaudeRequestOptions::default()
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            json!({"anthropic_version":"bedrock-2023-05-31","max_tokens":123,
                "messages":[{"role":"user","content":"hi"}],"top_k":3})
        );
        let original = json!({"anthropic_version":"custom","max_tokens":5,"messages":[]});
        let bytes = native_body(
            original.as_object().unwrap(),
            &ClaudeRequestOptions::default(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, original);
    }
}
