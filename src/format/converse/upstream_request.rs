//! Canonical request → the Converse / ConverseStream input (as SDK types).

use std::collections::{BTreeSet, HashSet};

use aws_sdk_bedrockruntime::types::{
    self, AnyToolChoice, AudioBlock, AudioFormat, AudioSource, AutoToolChoice, CachePointBlock,
    CachePointType, CacheTtl, CitationsConfig, ContentBlock, ConversationRole, DocumentBlock,
    DocumentFormat, DocumentSource, ImageBlock, ImageFormat, ImageSource, InferenceConfiguration,
    ReasoningContentBlock, ReasoningTextBlock, S3Location, SpecificToolChoice, SystemContentBlock,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::error::operation::BuildError;
use aws_smithy_types::{Blob, Document};
use serde_json::{json, Map, Value};

use super::document::json_to_document;
use crate::error::GatewayError;
use crate::format::bedrock_claude::thinking::{self, ClaudeThinking};
use crate::format::caching::{CacheArea, CachePlacer, CacheSupport};
use crate::format::data_url::{decode_base64, DataUrl};
use crate::format::reasoning::{reasoning_param, requested, Reasoning, ReasoningBudgets};
use crate::format::structured;
use crate::model::{
    CacheControl, ChatRequest, ContentPart, Message, MessageContent, Role, ThinkingBlock,
    ToolChoiceKind,
};

/// Text of the user turn inserted when the history does not start with a user message (Converse
/// requires it; blank text is rejected).
const FILLER_USER_TEXT: &str = ".";

/// Text added to a user turn that carries a document but no text (Converse requires a text block
/// next to a document).
const DOCUMENT_TEXT: &str = "See the attached document.";

/// Text sent for an empty tool result (blank text blocks are rejected).
const EMPTY_TOOL_RESULT: &str = "(no output)";

/// The Converse / ConverseStream input, minus the model id and guardrail settings (which the
/// provider adds from its configuration).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConverseRequest {
    /// The conversation: starts with `user`, roles alternate.
    pub messages: Vec<types::Message>,
    /// System prompt blocks.
    pub system: Vec<SystemContentBlock>,
    /// Token limit, sampling and stop sequences; `None` when nothing is set.
    pub inference_config: Option<InferenceConfiguration>,
    /// Tools and tool choice; present whenever the history has tool blocks.
    pub tool_config: Option<ToolConfiguration>,
    /// Model-native extras (`reasoning_effort`, `top_k`); `None` when there are none.
    pub additional_model_request_fields: Option<Document>,
}

/// Options for [`encode_request`]: what the provider knows about the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConverseOptions {
    /// `maxTokens` to send when the client set no token limit (`None`: the model maximum).
    pub default_max_tokens: Option<u32>,
    /// Where the model caches prompts: cache breakpoints elsewhere are dropped.
    pub cache: CacheSupport,
    /// How the model takes a reasoning request.
    pub reasoning: ReasoningStyle,
    /// `reasoning_effort` → thinking budget (Claude), and back (efforts for a budget).
    pub budgets: ReasoningBudgets,
    /// The S3 buckets `s3://` image and document URLs may name, with their owners.
    pub s3_buckets: std::sync::Arc<S3Buckets>,
    /// The model cites documents (Claude): documents' `citations` settings are passed.
    pub citations: bool,
}

/// How a Converse model takes a reasoning request (in `additionalModelRequestFields`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReasoningStyle {
    /// `{"reasoning_effort": …}`, as gpt-oss, Qwen and DeepSeek take it (a `thinking` budget
    /// becomes the nearest effort).
    #[default]
    ReasoningEffort,
    /// Claude's `{"thinking": {…}}`, with Claude's rules (see the Claude codec), and its signed
    /// reasoning sent back as `reasoningContent`.
    ClaudeThinking,
    /// Nova 2's `{"reasoningConfig": {"type":"enabled","maxReasoningEffort": low|medium|high}}`.
    NovaReasoningConfig,
    /// The model cannot reason: asking it to is a 400.
    Unsupported,
}

impl ConverseOptions {
    /// Sends `default_max_tokens` (if any) when the client gave no limit.
    pub fn new(default_max_tokens: Option<u32>) -> Self {
        ConverseOptions {
            default_max_tokens,
            ..ConverseOptions::default()
        }
    }
}

/// Encodes a canonical request as Converse input (PROTOCOLS 4 and 5).
///
/// Fails with a 400 for what Converse cannot take: non-data image URLs, bad base64, unknown
/// document types, unresolvable `file_id`s, unparseable tool-call arguments, non-function tools,
/// unknown `tool_choice` shapes and `n > 1`.
pub fn encode_request(
    req: &ChatRequest,
    opts: &ConverseOptions,
) -> Result<ConverseRequest, GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::unsupported(
            "n",
            "Bedrock returns one choice; n must be 1.",
        ));
    }

    let claude = opts.reasoning == ReasoningStyle::ClaudeThinking;
    let thinking = if claude {
        Some(thinking::plan(req, opts.default_max_tokens, &opts.budgets)?)
    } else {
        None
    };
    let mut cache = CachePlacer::new(opts.cache);
    let mut system = Vec::new();
    let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
    let mut doc_names = HashSet::new();
    for msg in &req.messages {
        let (role, mut blocks) = match msg.role {
            Role::System | Role::Developer => {
                system_blocks(msg, &mut system, &mut cache)?;
                continue;
            }
            Role::User => (
                ConversationRole::User,
                user_blocks(msg, &mut doc_names, &mut cache, opts)?,
            ),
            Role::Assistant => (
                ConversationRole::Assistant,
                assistant_blocks(msg, claude, &mut cache)?,
            ),
            Role::Tool | Role::Function => (ConversationRole::User, vec![tool_result_block(msg)?]),
        };
        if blocks.is_empty() {
            continue;
        }
        let part_cache = match (&msg.role, &msg.content) {
            (Role::Tool | Role::Function, Some(MessageContent::Parts(parts))) => {
                parts.iter().rev().find_map(|p| p.cache_control.as_ref())
            }
            _ => None,
        };
        if let Some(c) = cache.keep(
            CacheArea::Messages,
            msg.cache_control.as_ref().or(part_cache),
        )? {
            blocks.push(cache_point(c)?);
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns
        .first()
        .is_none_or(|(role, _)| *role != ConversationRole::User)
    {
        turns.insert(
            0,
            (
                ConversationRole::User,
                vec![ContentBlock::Text(FILLER_USER_TEXT.into())],
            ),
        );
    }

    let mut messages = Vec::with_capacity(turns.len());
    for (role, mut blocks) in turns {
        let has_tool_blocks = blocks
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)));
        if has_tool_blocks && !cache.support().tools {
            // Models that do not cache tools (Nova) also reject a cache point in a turn that
            // carries tool content.
            let before = blocks.len();
            blocks.retain(|b| !matches!(b, ContentBlock::CachePoint(_)));
            cache.unkeep(before - blocks.len());
        }
        let has_document = blocks
            .iter()
            .any(|b| matches!(b, ContentBlock::Document(_)));
        let has_text = blocks.iter().any(|b| matches!(b, ContentBlock::Text(_)));
        if has_document && !has_text {
            blocks.push(ContentBlock::Text(DOCUMENT_TEXT.into()));
        }
        messages.push(built(
            types::Message::builder()
                .role(role)
                .set_content(Some(blocks))
                .build(),
        )?);
    }

    // A response_format the provider did not lower (see `format::structured`): the instruction.
    if let Some(instruction) = req
        .response_format
        .as_ref()
        .map(structured::instruction)
        .transpose()?
        .flatten()
    {
        system.push(SystemContentBlock::Text(instruction));
    }
    let tool_config = tool_config(req, &messages, &mut cache)?;
    cache.finish()?;
    Ok(ConverseRequest {
        messages,
        system,
        inference_config: inference_config(req, opts, thinking.as_ref()),
        tool_config,
        additional_model_request_fields: additional_fields(req, opts, thinking.as_ref())?,
    })
}

/// A `cachePoint` block for a kept breakpoint.
fn cache_point_block(cache: &CacheControl) -> Result<CachePointBlock, GatewayError> {
    built(
        CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .set_ttl(cache.ttl.as_deref().map(CacheTtl::from))
            .build(),
    )
}

fn cache_point(cache: &CacheControl) -> Result<ContentBlock, GatewayError> {
    Ok(ContentBlock::CachePoint(cache_point_block(cache)?))
}

/// A system message as system text blocks, with cache points after its marked parts and after it
/// when the whole message is marked.
fn system_blocks(
    msg: &Message,
    system: &mut Vec<SystemContentBlock>,
    cache: &mut CachePlacer,
) -> Result<(), GatewayError> {
    let text = msg.text_content();
    if text.trim().is_empty() {
        return Ok(());
    }
    match &msg.content {
        Some(MessageContent::Parts(parts)) if parts.iter().any(|p| p.cache_control.is_some()) => {
            for part in parts {
                if let Some(t) = part.text.as_deref().filter(|t| !t.trim().is_empty()) {
                    system.push(SystemContentBlock::Text(t.to_owned()));
                    if let Some(c) = cache.keep(CacheArea::System, part.cache_control.as_ref())? {
                        system.push(SystemContentBlock::CachePoint(cache_point_block(c)?));
                    }
                }
            }
        }
        _ => system.push(SystemContentBlock::Text(text)),
    }
    if let Some(c) = cache.keep(CacheArea::System, msg.cache_control.as_ref())? {
        system.push(SystemContentBlock::CachePoint(cache_point_block(c)?));
    }
    Ok(())
}

/// An SDK builder error: only possible if this module forgot a required member.
fn built<T>(result: Result<T, BuildError>) -> Result<T, GatewayError> {
    result.map_err(|e| GatewayError::internal(format!("building Converse request: {e}")))
}

fn bad_content(message: impl Into<String>) -> GatewayError {
    GatewayError::unsupported("messages", message.into())
}

/// Text blocks for a message's text, skipping blank text.
fn push_text(blocks: &mut Vec<ContentBlock>, text: &str) {
    if !text.trim().is_empty() {
        blocks.push(ContentBlock::Text(text.to_owned()));
    }
}

fn user_blocks(
    msg: &Message,
    doc_names: &mut HashSet<String>,
    cache: &mut CachePlacer,
    opts: &ConverseOptions,
) -> Result<Vec<ContentBlock>, GatewayError> {
    let mut blocks = Vec::new();
    match &msg.content {
        None => {}
        Some(MessageContent::Text(s)) => push_text(&mut blocks, s),
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                let before = blocks.len();
                user_part(part, &mut blocks, doc_names, opts)?;
                if blocks.len() > before {
                    if let Some(c) = cache.keep(CacheArea::Messages, part.cache_control.as_ref())? {
                        blocks.push(cache_point(c)?);
                    }
                }
            }
        }
    }
    Ok(blocks)
}

fn user_part(
    part: &ContentPart,
    blocks: &mut Vec<ContentBlock>,
    doc_names: &mut HashSet<String>,
    opts: &ConverseOptions,
) -> Result<(), GatewayError> {
    let buckets = &*opts.s3_buckets;
    match part.kind.as_str() {
        "text" => push_text(blocks, part.text.as_deref().unwrap_or("")),
        "refusal" => push_text(blocks, part.refusal.as_deref().unwrap_or("")),
        "image_url" => {
            let url = part
                .image_url
                .as_ref()
                .map(|i| i.url.as_str())
                .ok_or_else(|| bad_content("An image_url part needs an image_url.url."))?;
            blocks.push(image_from_url(url, buckets)?);
        }
        "file" => {
            let file = part
                .file
                .as_ref()
                .ok_or_else(|| bad_content("A file part needs a file member."))?;
            let Some(data) = file.file_data.as_deref() else {
                return Err(bad_content(
                    "Only inline files (file.file_data) are supported; file_id cannot be resolved.",
                ));
            };
            let filename = file.filename.as_deref().unwrap_or("");
            let (mime, source) = if data.starts_with("s3://") {
                (
                    None,
                    DocumentSource::S3Location(s3_location(data, buckets)?),
                )
            } else {
                let (mime, bytes) = match DataUrl::parse(data) {
                    Some(parsed) => {
                        let url = parsed?;
                        (url.mime.clone(), url.decode()?)
                    }
                    None => (None, decode_base64(data)?),
                };
                if let Some(format) = mime.as_deref().and_then(image_format) {
                    blocks.push(image_block(format, ImageSource::Bytes(Blob::new(bytes)))?);
                    return Ok(());
                }
                (mime, DocumentSource::Bytes(Blob::new(bytes)))
            };
            let format = mime
                .as_deref()
                .and_then(document_format_from_mime)
                .or_else(|| document_format_from_name(filename))
                .ok_or_else(|| {
                    bad_content(format!(
                        "Unsupported file type (mime {:?}, filename {filename:?}); expected pdf, csv, doc, docx, \
                         xls, xlsx, html, txt or md.",
                        mime.as_deref().unwrap_or("unknown"),
                    ))
                })?;
            let name = file.title.as_deref().unwrap_or(filename);
            let name = unique_name(sanitize_document_name(name), doc_names);
            let citations = file
                .citations
                .as_ref()
                .filter(|_| opts.citations)
                .and_then(|c| c.get("enabled"))
                .and_then(Value::as_bool)
                .map(|enabled| CitationsConfig::builder().enabled(enabled).build())
                .transpose()
                .map_err(|e| GatewayError::internal(format!("building Converse request: {e}")))?;
            blocks.push(ContentBlock::Document(built(
                DocumentBlock::builder()
                    .format(format)
                    .name(name)
                    .source(source)
                    .set_context(file.context.clone())
                    .set_citations(citations)
                    .build(),
            )?));
        }
        "input_audio" => {
            let audio = part.extra.get("input_audio");
            let data = audio
                .and_then(|a| a.get("data"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad_content("An input_audio part needs input_audio.data."))?;
            let format = audio
                .and_then(|a| a.get("format"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad_content("An input_audio part needs input_audio.format."))?;
            blocks.push(ContentBlock::Audio(built(
                AudioBlock::builder()
                    .format(AudioFormat::from(format))
                    .source(AudioSource::Bytes(Blob::new(decode_base64(data)?)))
                    .build(),
            )?));
        }
        other => {
            return Err(bad_content(format!(
                "Unsupported content part type '{other}'."
            )))
        }
    }
    Ok(())
}

fn image_block(format: ImageFormat, source: ImageSource) -> Result<ContentBlock, GatewayError> {
    Ok(ContentBlock::Image(built(
        ImageBlock::builder().format(format).source(source).build(),
    )?))
}

fn image_from_url(url: &str, buckets: &S3Buckets) -> Result<ContentBlock, GatewayError> {
    if let Some(parsed) = DataUrl::parse(url) {
        let url = parsed?;
        let format = url.mime.as_deref().and_then(image_format).ok_or_else(|| {
            bad_content(format!(
                "Unsupported image type {:?}; expected image/png, image/jpeg, image/gif or image/webp.",
                url.mime.as_deref().unwrap_or("unknown")
            ))
        })?;
        return image_block(format, ImageSource::Bytes(Blob::new(url.decode()?)));
    }
    if url.starts_with("s3://") {
        let format = url
            .rsplit('.')
            .next()
            .and_then(|ext| image_format(&format!("image/{}", ext.to_ascii_lowercase())))
            .ok_or_else(|| {
                bad_content("An s3:// image URL must end in .png, .jpeg, .jpg, .gif or .webp.")
            })?;
        return image_block(format, ImageSource::S3Location(s3_location(url, buckets)?));
    }
    Err(bad_content(
        "Only data: (base64) and s3:// image URLs are supported for Bedrock models; http(s) URLs only where \
         the gateway is configured to fetch them ([media_fetch]).",
    ))
}

/// S3 buckets Bedrock may read client-named objects from, with their owner accounts
/// (`[bedrock.s3_buckets]`): Bedrock reads them with the gateway's own role, so a client may name
/// only these.
pub type S3Buckets = std::collections::BTreeMap<String, String>;

/// The `s3Location` of an `s3://bucket/key` URL in an allowed bucket (with its `bucketOwner`);
/// a 400 for any other bucket.
fn s3_location(url: &str, buckets: &S3Buckets) -> Result<S3Location, GatewayError> {
    let bucket = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(b, _)| b)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad_content("An s3:// URL needs a bucket and a key: s3://bucket/key."))?;
    let owner = buckets.get(bucket).ok_or_else(|| {
        bad_content(format!(
            "The gateway does not read from the S3 bucket '{bucket}': only buckets configured in [bedrock.s3_buckets] are allowed."
        ))
    })?;
    built(S3Location::builder().uri(url).bucket_owner(owner).build())
}

fn image_format(mime: &str) -> Option<ImageFormat> {
    Some(match mime {
        "image/png" => ImageFormat::Png,
        "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::Webp,
        _ => return None,
    })
}

fn document_format_from_mime(mime: &str) -> Option<DocumentFormat> {
    Some(match mime {
        "application/pdf" => DocumentFormat::Pdf,
        "text/csv" => DocumentFormat::Csv,
        "application/msword" => DocumentFormat::Doc,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
            DocumentFormat::Docx
        }
        "application/vnd.ms-excel" => DocumentFormat::Xls,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => DocumentFormat::Xlsx,
        "text/html" => DocumentFormat::Html,
        "text/plain" => DocumentFormat::Txt,
        "text/markdown" | "text/x-markdown" => DocumentFormat::Md,
        _ => return None,
    })
}

fn document_format_from_name(name: &str) -> Option<DocumentFormat> {
    let (_, ext) = name.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "pdf" => DocumentFormat::Pdf,
        "csv" => DocumentFormat::Csv,
        "doc" => DocumentFormat::Doc,
        "docx" => DocumentFormat::Docx,
        "xls" => DocumentFormat::Xls,
        "xlsx" => DocumentFormat::Xlsx,
        "html" | "htm" => DocumentFormat::Html,
        "txt" => DocumentFormat::Txt,
        "md" | "markdown" => DocumentFormat::Md,
        _ => return None,
    })
}

/// A document name Converse accepts: alphanumerics, single spaces, hyphens, parentheses and square
/// brackets, 1–200 characters. The extension is dropped; other characters become spaces.
fn sanitize_document_name(filename: &str) -> String {
    let stem = match filename.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => filename,
    };
    let mut out = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
            c
        } else {
            ' '
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let mut name: String = out.trim_end().chars().take(200).collect();
    name.truncate(name.trim_end().len());
    if name.is_empty() {
        "document".to_owned()
    } else {
        name
    }
}

/// Makes `name` unique within the request by appending ` (2)`, ` (3)`, ….
fn unique_name(name: String, used: &mut HashSet<String>) -> String {
    if used.insert(name.clone()) {
        return name;
    }
    let mut n = 2u32;
    loop {
        let suffix = format!(" ({n})");
        let base: String = name.chars().take(200 - suffix.len()).collect();
        let candidate = format!("{}{suffix}", base.trim_end());
        if used.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// A tool-use id Converse accepts (`[a-zA-Z0-9_.:-]{1,64}`). Valid ids pass through unchanged;
/// others are rewritten deterministically (invalid characters → `_`, plus a hash of the original so
/// distinct ids stay distinct), so a call and its result still match.
fn tool_use_id(id: &str) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if !id.is_empty() && id.len() <= 64 && id.chars().all(valid) {
        return id.to_owned();
    }
    // FNV-1a: stable across processes and versions (unlike `DefaultHasher`).
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let base: String = id
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(46)
        .collect();
    format!("{base}_{hash:016x}")
}

fn tool_use_block(id: &str, name: &str, arguments: &str) -> Result<ContentBlock, GatewayError> {
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str::<Value>(arguments).map_err(|e| {
            GatewayError::invalid_request(format!(
                "The arguments of tool call '{id}' are not valid JSON: {e}."
            ))
            .with_param("messages")
            .with_code("invalid_value")
        })?
    };
    Ok(ContentBlock::ToolUse(built(
        ToolUseBlock::builder()
            .tool_use_id(tool_use_id(id))
            .name(name)
            .input(json_to_document(&input))
            .build(),
    )?))
}

fn assistant_blocks(
    msg: &Message,
    signed_reasoning: bool,
    cache: &mut CachePlacer,
) -> Result<Vec<ContentBlock>, GatewayError> {
    let mut blocks = Vec::new();
    // Claude's signed reasoning goes back first, as it was written; other models take none.
    for block in msg
        .thinking_blocks
        .iter()
        .flatten()
        .filter(|_| signed_reasoning)
    {
        let reasoning = match block {
            ThinkingBlock::Thinking {
                thinking,
                signature: Some(signature),
            } if !signature.is_empty() => ReasoningContentBlock::ReasoningText(built(
                ReasoningTextBlock::builder()
                    .text(thinking)
                    .signature(signature)
                    .build(),
            )?),
            ThinkingBlock::Thinking { .. } => continue,
            ThinkingBlock::RedactedThinking { data } => {
                ReasoningContentBlock::RedactedContent(Blob::new(decode_base64(data)?))
            }
        };
        blocks.push(ContentBlock::ReasoningContent(reasoning));
    }
    match &msg.content {
        None => {}
        Some(MessageContent::Text(s)) => push_text(&mut blocks, s),
        Some(MessageContent::Parts(parts)) => {
            for part in parts {
                let before = blocks.len();
                match part.kind.as_str() {
                    "text" => push_text(&mut blocks, part.text.as_deref().unwrap_or("")),
                    "refusal" => push_text(&mut blocks, part.refusal.as_deref().unwrap_or("")),
                    other => {
                        return Err(bad_content(format!(
                            "Assistant messages may only contain text, not '{other}' parts."
                        )))
                    }
                }
                if blocks.len() > before {
                    if let Some(c) = cache.keep(CacheArea::Messages, part.cache_control.as_ref())? {
                        blocks.push(cache_point(c)?);
                    }
                }
            }
        }
    }
    for call in msg.tool_calls.iter().flatten() {
        blocks.push(tool_use_block(
            &call.id,
            &call.function.name,
            &call.function.arguments,
        )?);
    }
    // Deprecated functions API: `function_call: {name, arguments}`, answered by `role: function`
    // with the same name, so the name doubles as the id.
    if let Some(fc) = msg.extra.get("function_call").and_then(Value::as_object) {
        if let Some(name) = fc.get("name").and_then(Value::as_str) {
            let args = fc.get("arguments").and_then(Value::as_str).unwrap_or("");
            blocks.push(tool_use_block(name, name, args)?);
        }
    }
    Ok(blocks)
}

fn tool_result_block(msg: &Message) -> Result<ContentBlock, GatewayError> {
    let id = match msg.role {
        Role::Function => msg
            .name
            .as_deref()
            .ok_or_else(|| GatewayError::missing_field("messages.name"))?,
        _ => msg
            .tool_call_id
            .as_deref()
            .ok_or_else(|| GatewayError::missing_field("messages.tool_call_id"))?,
    };
    let text = msg.text_content();
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => {
            ToolResultContentBlock::Json(json_to_document(&v))
        }
        _ if text.trim().is_empty() => ToolResultContentBlock::Text(EMPTY_TOOL_RESULT.into()),
        _ => ToolResultContentBlock::Text(text),
    };
    Ok(ContentBlock::ToolResult(built(
        ToolResultBlock::builder()
            .tool_use_id(tool_use_id(id))
            .content(content)
            .build(),
    )?))
}

fn tool_spec(
    name: &str,
    description: Option<&str>,
    schema: &Value,
    strict: Option<bool>,
) -> Result<types::Tool, GatewayError> {
    let spec = ToolSpecification::builder()
        .name(name)
        .set_description(description.map(str::to_owned))
        .input_schema(ToolInputSchema::Json(json_to_document(schema)))
        .set_strict(strict);
    Ok(types::Tool::ToolSpec(built(spec.build())?))
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// The tool configuration (PROTOCOLS 5.4). `none` has no Converse equivalent: toolChoice is omitted,
/// and tools are kept only when the history has tool blocks (Converse then requires them). When the
/// history has tool blocks but the client sent no tools, minimal specs are synthesized for the names
/// the history uses (or one placeholder tool if only results are present).
fn tool_config(
    req: &ChatRequest,
    messages: &[types::Message],
    cache: &mut CachePlacer,
) -> Result<Option<ToolConfiguration>, GatewayError> {
    let mut used_names = BTreeSet::new();
    let mut history_has_tools = false;
    for block in messages.iter().flat_map(|m| m.content()) {
        match block {
            ContentBlock::ToolUse(u) => {
                history_has_tools = true;
                used_names.insert(u.name().to_owned());
            }
            ContentBlock::ToolResult(_) => history_has_tools = true,
            _ => {}
        }
    }

    let choice = match &req.tool_choice {
        None => None,
        Some(c) => Some(c.kind().ok_or_else(|| {
            GatewayError::unsupported(
                "tool_choice",
                "Unsupported tool_choice value for Bedrock models.",
            )
        })?),
    };

    let mut tools = Vec::new();
    let keep_client_tools = choice != Some(ToolChoiceKind::None) || history_has_tools;
    if keep_client_tools {
        for tool in req.tools.iter().flatten() {
            let function = match (tool.kind.as_str(), &tool.function) {
                ("function", Some(f)) => f,
                (kind, _) => {
                    return Err(GatewayError::unsupported(
                        "tools",
                        format!(
                            "Only function tools are supported for Bedrock models, not '{kind}'."
                        ),
                    ))
                }
            };
            let schema = function.parameters.clone().unwrap_or_else(empty_schema);
            tools.push(tool_spec(
                &function.name,
                function.description.as_deref(),
                &schema,
                function.strict,
            )?);
            if let Some(c) = cache.keep(CacheArea::Tools, tool.cache_control.as_ref())? {
                tools.push(types::Tool::CachePoint(cache_point_block(c)?));
            }
        }
    }
    if tools.is_empty() && history_has_tools {
        if used_names.is_empty() {
            used_names.insert("unused_tool".to_owned());
        }
        for name in &used_names {
            tools.push(tool_spec(name, None, &empty_schema(), None)?);
        }
    }
    if tools.is_empty() {
        return Ok(None);
    }

    let tool_choice = match choice {
        None | Some(ToolChoiceKind::None) => None,
        Some(ToolChoiceKind::Auto) => {
            Some(types::ToolChoice::Auto(AutoToolChoice::builder().build()))
        }
        Some(ToolChoiceKind::Required) => {
            Some(types::ToolChoice::Any(AnyToolChoice::builder().build()))
        }
        Some(ToolChoiceKind::Function(name)) => Some(types::ToolChoice::Tool(built(
            SpecificToolChoice::builder().name(name).build(),
        )?)),
    };
    Ok(Some(built(
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .set_tool_choice(tool_choice)
            .build(),
    )?))
}

fn inference_config(
    req: &ChatRequest,
    opts: &ConverseOptions,
    thinking: Option<&ClaudeThinking>,
) -> Option<InferenceConfiguration> {
    let max_tokens = match thinking {
        Some(plan) => plan.max_tokens,
        None => req.max_output_tokens().or(opts.default_max_tokens),
    }
    .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let stops: Vec<String> = req
        .stop_sequences()
        .into_iter()
        .map(str::to_owned)
        .collect();
    // Claude thinking takes no temperature (the plan checked it is 1 or unset).
    let thinking_on = thinking.is_some_and(|p| p.thinking.is_some());
    let temperature = req.temperature.filter(|t| t.is_finite() && !thinking_on);
    let top_p = req.top_p.filter(|p| p.is_finite());
    if max_tokens.is_none() && temperature.is_none() && top_p.is_none() && stops.is_empty() {
        return None;
    }
    Some(
        InferenceConfiguration::builder()
            .set_max_tokens(max_tokens)
            .set_temperature(temperature.map(|t| t.clamp(0.0, 1.0) as f32))
            .set_top_p(top_p.map(|p| p.clamp(0.0, 1.0) as f32))
            .set_stop_sequences((!stops.is_empty()).then_some(stops))
            .build(),
    )
}

/// `additionalModelRequestFields`: the reasoning request in the model's spelling
/// ([`ReasoningStyle`]), and `{"top_k": n}` from the `top_k` extension field.
fn additional_fields(
    req: &ChatRequest,
    opts: &ConverseOptions,
    thinking: Option<&ClaudeThinking>,
) -> Result<Option<Document>, GatewayError> {
    let mut fields = Map::new();
    if let Some(plan) = thinking {
        if let Some(t) = &plan.thinking {
            fields.insert("thinking".into(), t.clone());
        }
    } else {
        let effort = match requested(req, &opts.budgets)? {
            None => None,
            Some(_) if req.thinking.is_none() => req.reasoning_effort.as_deref(),
            Some(Reasoning::Budget(budget)) => Some(opts.budgets.effort_for(budget)),
            Some(Reasoning::Adaptive) => Some("medium"),
        };
        if let Some(effort) = effort {
            match opts.reasoning {
                ReasoningStyle::ReasoningEffort | ReasoningStyle::ClaudeThinking => {
                    fields.insert("reasoning_effort".into(), Value::from(effort));
                }
                ReasoningStyle::NovaReasoningConfig => {
                    let level = match effort {
                        "minimal" | "low" => "low",
                        "high" | "xhigh" | "max" => "high",
                        _ => "medium",
                    };
                    fields.insert(
                        "reasoningConfig".into(),
                        json!({"type": "enabled", "maxReasoningEffort": level}),
                    );
                }
                ReasoningStyle::Unsupported => {
                    return Err(GatewayError::unsupported(
                        reasoning_param(req),
                        "This model has no reasoning control on Bedrock.",
                    ))
                }
            }
        }
    }
    match req.extra.get("top_k") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Number(_)) => {
            fields.insert("top_k".into(), v.clone());
        }
        Some(_) => {
            return Err(GatewayError::invalid_request(
                "Invalid type for 'top_k': expected a number.",
            )
            .with_param("top_k")
            .with_code("invalid_type"))
        }
    }
    Ok((!fields.is_empty()).then(|| json_to_document(&Value::Object(fields))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::converse::document::document_to_json;
    use crate::format::data_url::encode_base64;
    use crate::model::{FilePart, Stop, Tool, ToolCall, ToolChoice};

    fn req(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages,
            ..ChatRequest::default()
        }
    }

    fn parts(role: Role, parts: Vec<ContentPart>) -> Message {
        let mut m = Message::text(role, "");
        m.content = Some(MessageContent::Parts(parts));
        m
    }

    fn tool_msg(id: &str, content: &str) -> Message {
        let mut m = Message::text(Role::Tool, content);
        m.tool_call_id = Some(id.into());
        m
    }

    fn call_msg(calls: Vec<ToolCall>) -> Message {
        let mut m = Message::text(Role::Assistant, "");
        m.content = None;
        m.tool_calls = Some(calls);
        m
    }

    fn file_part(data: &str, filename: Option<&str>) -> ContentPart {
        let mut p = ContentPart::text("");
        p.kind = "file".into();
        p.text = None;
        p.file = Some(FilePart::inline(data, filename.map(str::to_owned)));
        p
    }

    /// A `cachePoint` block as JSON, in its wire shape (`type`, and `ttl` when set).
    fn cache_json(c: &CachePointBlock) -> Value {
        let mut point = json!({"type": c.r#type().as_str()});
        if let Some(ttl) = c.ttl() {
            point["ttl"] = json!(ttl.as_str());
        }
        json!({"cachePoint": point})
    }

    /// A JSON rendering of the Converse input, in the wire shape of PROTOCOLS 4 (blobs as base64),
    /// so tests can compare whole requests as golden JSON.
    fn to_json(r: &ConverseRequest) -> Value {
        fn block(b: &ContentBlock) -> Value {
            match b {
                ContentBlock::Text(t) => json!({"text": t}),
                ContentBlock::Image(i) => {
                    let source = match i.source() {
                        Some(ImageSource::Bytes(b)) => json!({"bytes": encode_base64(b.as_ref())}),
                        Some(ImageSource::S3Location(l)) => {
                            json!({"s3Location": {"uri": l.uri(), "bucketOwner": l.bucket_owner()}})
                        }
                        _ => Value::Null,
                    };
                    json!({"image": {"format": i.format().as_str(), "source": source}})
                }
                ContentBlock::Document(d) => {
                    let Some(DocumentSource::Bytes(b)) = d.source() else {
                        panic!("no bytes")
                    };
                    let mut doc = json!({"format": d.format().as_str(), "name": d.name(),
                                        "source": {"bytes": encode_base64(b.as_ref())}});
                    if let Some(c) = d.context() {
                        doc["context"] = json!(c);
                    }
                    if let Some(c) = d.citations() {
                        doc["citations"] = json!({"enabled": c.enabled()});
                    }
                    json!({"document": doc})
                }
                ContentBlock::Audio(a) => {
                    let Some(AudioSource::Bytes(b)) = a.source() else {
                        panic!("no bytes")
                    };
                    json!({"audio": {"format": a.format().as_str(), "source": {"bytes": encode_base64(b.as_ref())}}})
                }
                ContentBlock::ToolUse(u) => {
                    json!({"toolUse": {"toolUseId": u.tool_use_id(), "name": u.name(),
                                                               "input": document_to_json(u.input())}})
                }
                ContentBlock::ToolResult(r) => {
                    let content: Vec<Value> = r
                        .content()
                        .iter()
                        .map(|c| match c {
                            ToolResultContentBlock::Json(d) => json!({"json": document_to_json(d)}),
                            ToolResultContentBlock::Text(t) => json!({"text": t}),
                            _ => panic!("unexpected tool result content"),
                        })
                        .collect();
                    json!({"toolResult": {"toolUseId": r.tool_use_id(), "content": content}})
                }
                ContentBlock::CachePoint(c) => cache_json(c),
                ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(t)) => {
                    json!({"reasoningContent": {"reasoningText": {"text": t.text(), "signature": t.signature()}}})
                }
                ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(b)) => {
                    json!({"reasoningContent": {"redactedContent": encode_base64(b.as_ref())}})
                }
                other => panic!("unexpected block {other:?}"),
            }
        }
        let mut out = Map::new();
        if !r.system.is_empty() {
            let system: Vec<Value> = r
                .system
                .iter()
                .map(|s| match s {
                    SystemContentBlock::Text(t) => json!({"text": t}),
                    SystemContentBlock::CachePoint(c) => cache_json(c),
                    other => panic!("unexpected system block {other:?}"),
                })
                .collect();
            out.insert("system".into(), json!(system));
        }
        let messages: Vec<Value> = r
            .messages
            .iter()
            .map(|m| json!({"role": m.role().as_str(), "content": m.content().iter().map(block).collect::<Vec<_>>()}))
            .collect();
        out.insert("messages".into(), json!(messages));
        if let Some(c) = &r.inference_config {
            let mut ic = Map::new();
            if let Some(v) = c.max_tokens() {
                ic.insert("maxTokens".into(), json!(v));
            }
            if let Some(v) = c.temperature() {
                ic.insert("temperature".into(), json!(v));
            }
            if let Some(v) = c.top_p() {
                ic.insert("topP".into(), json!(v));
            }
            if !c.stop_sequences().is_empty() {
                ic.insert("stopSequences".into(), json!(c.stop_sequences()));
            }
            out.insert("inferenceConfig".into(), Value::Object(ic));
        }
        if let Some(tc) = &r.tool_config {
            let tools: Vec<Value> = tc
                .tools()
                .iter()
                .map(|t| {
                    let s = match t {
                        types::Tool::ToolSpec(s) => s,
                        types::Tool::CachePoint(c) => return cache_json(c),
                        other => panic!("unexpected tool {other:?}"),
                    };
                    let Some(ToolInputSchema::Json(schema)) = s.input_schema() else { panic!("no schema") };
                    let mut spec = json!({"name": s.name(), "inputSchema": {"json": document_to_json(schema)}});
                    if let Some(d) = s.description() {
                        spec["description"] = json!(d);
                    }
                    if let Some(st) = s.strict() {
                        spec["strict"] = json!(st);
                    }
                    json!({"toolSpec": spec})
                })
                .collect();
            let mut config = json!({"tools": tools});
            match tc.tool_choice() {
                None => {}
                Some(types::ToolChoice::Auto(_)) => config["toolChoice"] = json!({"auto": {}}),
                Some(types::ToolChoice::Any(_)) => config["toolChoice"] = json!({"any": {}}),
                Some(types::ToolChoice::Tool(t)) => {
                    config["toolChoice"] = json!({"tool": {"name": t.name()}})
                }
                Some(other) => panic!("unexpected tool choice {other:?}"),
            }
            out.insert("toolConfig".into(), config);
        }
        if let Some(d) = &r.additional_model_request_fields {
            out.insert("additionalModelRequestFields".into(), document_to_json(d));
        }
        Value::Object(out)
    }

    fn encode(r: &ChatRequest) -> Value {
        to_json(&encode_request(r, &ConverseOptions::default()).unwrap())
    }

    #[test]
    fn worked_example_matches_protocols_5_9() {
        let body = json!({
            "model": "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "stream": true,
            "stream_options": {"include_usage": true}, "max_completion_tokens": 512, "temperature": 0.3,
            "messages": [
                {"role": "system", "content": "You are a weather bot."},
                {"role": "user", "content": [{"type": "text", "text": "Paris?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":21}"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters":
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "tool_choice": "auto"
        });
        let r: ChatRequest = serde_json::from_value(body).unwrap();
        assert_eq!(
            encode(&r),
            json!({
                "system": [{"text": "You are a weather bot."}],
                "messages": [
                    {"role": "user", "content": [{"text": "Paris?"},
                        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}]},
                    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "get_weather",
                        "input": {"city": "Paris"}}}]},
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1",
                        "content": [{"json": {"temp_c": 21}}]}}]}],
                "inferenceConfig": {"maxTokens": 512, "temperature": 0.30000001192092896},
                "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
                    "toolChoice": {"auto": {}}}
            })
        );
    }

    #[test]
    fn merges_roles_and_inserts_leading_user_turn() {
        let r = req(vec![
            Message::text(Role::Assistant, "Hi, how can I help?"),
            Message::text(Role::User, "a"),
            Message::text(Role::User, "  "),
            Message::text(Role::Developer, "dev"),
            Message::text(Role::User, "b"),
            Message::text(Role::Assistant, ""),
            Message::text(Role::Assistant, "ok"),
        ]);
        assert_eq!(
            encode(&r),
            json!({
                "system": [{"text": "dev"}],
                "messages": [
                    {"role": "user", "content": [{"text": "."}]},
                    {"role": "assistant", "content": [{"text": "Hi, how can I help?"}]},
                    {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                    {"role": "assistant", "content": [{"text": "ok"}]}]
            })
        );
        // Only a system prompt: still one user turn.
        let r = req(vec![Message::text(Role::System, "s")]);
        assert_eq!(
            encode(&r)["messages"],
            json!([{"role": "user", "content": [{"text": "."}]}])
        );
    }

    #[test]
    fn tool_results_merge_with_following_user_text() {
        let r = req(vec![
            Message::text(Role::User, "q"),
            call_msg(vec![
                ToolCall::function("c1", "f", "{\"x\":1}"),
                ToolCall::function("c2", "g", ""),
            ]),
            tool_msg("c1", "plain text"),
            tool_msg("c2", "[1,2]"),
            Message::text(Role::User, "thanks"),
        ]);
        let out = encode(&r);
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "c1", "name": "f", "input": {"x": 1}}},
                {"toolUse": {"toolUseId": "c2", "name": "g", "input": {}}}]})
        );
        assert_eq!(
            out["messages"][2],
            json!({"role": "user", "content": [
                {"toolResult": {"toolUseId": "c1", "content": [{"text": "plain text"}]}},
                {"toolResult": {"toolUseId": "c2", "content": [{"json": [1, 2]}]}},
                {"text": "thanks"}]})
        );
        // No tools sent but history has tool blocks: minimal specs synthesized, no toolChoice.
        assert_eq!(
            out["toolConfig"],
            json!({"tools": [
                {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
                {"toolSpec": {"name": "g", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
        );
    }

    #[test]
    fn tool_choice_mapping() {
        let tools = vec![Tool::function(
            "f",
            Some("does f".into()),
            Some(json!({"type": "object"})),
        )];
        let mut r = req(vec![Message::text(Role::User, "q")]);
        r.tools = Some(tools);
        let spec = json!({"toolSpec": {"name": "f", "description": "does f",
                                       "inputSchema": {"json": {"type": "object"}}}});

        assert_eq!(encode(&r)["toolConfig"], json!({"tools": [spec]}));
        r.tool_choice = Some(ToolChoice::Mode("required".into()));
        assert_eq!(
            encode(&r)["toolConfig"],
            json!({"tools": [spec], "toolChoice": {"any": {}}})
        );
        r.tool_choice = Some(ToolChoice::Object(
            json!({"type": "function", "function": {"name": "f"}}),
        ));
        assert_eq!(
            encode(&r)["toolConfig"],
            json!({"tools": [spec], "toolChoice": {"tool": {"name": "f"}}})
        );
        // none without tool history: no toolConfig at all.
        r.tool_choice = Some(ToolChoice::Mode("none".into()));
        assert!(encode(&r).get("toolConfig").is_none());
        // none with tool history: tools kept, no toolChoice.
        r.messages
            .push(call_msg(vec![ToolCall::function("c1", "f", "{}")]));
        r.messages.push(tool_msg("c1", ""));
        let out = encode(&r);
        assert_eq!(out["toolConfig"], json!({"tools": [spec]}));
        assert_eq!(
            out["messages"][2]["content"][0]["toolResult"]["content"],
            json!([{"text": EMPTY_TOOL_RESULT}])
        );

        r.tool_choice = Some(ToolChoice::Object(json!({"type": "allowed_tools"})));
        let err = encode_request(&r, &ConverseOptions::default()).unwrap_err();
        assert_eq!(err.param(), Some("tool_choice"));

        let mut r = req(vec![Message::text(Role::User, "q")]);
        let mut custom = Tool::function("c", None, None);
        custom.kind = "custom".into();
        custom.function = None;
        r.tools = Some(vec![custom]);
        let err = encode_request(&r, &ConverseOptions::default()).unwrap_err();
        assert_eq!(err.param(), Some("tools"));
    }

    #[test]
    fn only_tool_results_synthesize_placeholder_tool() {
        let r = req(vec![Message::text(Role::User, "q"), tool_msg("c9", "42")]);
        let out = encode(&r);
        assert_eq!(
            out["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "unused_tool"
        );
        assert_eq!(
            out["messages"][0]["content"][1],
            json!({"toolResult": {"toolUseId": "c9", "content": [{"text": "42"}]}})
        );
    }

    #[test]
    fn inference_config_and_additional_fields() {
        let mut r = req(vec![Message::text(Role::User, "q")]);
        assert!(encode(&r).get("inferenceConfig").is_none());
        let opts = ConverseOptions {
            default_max_tokens: Some(1000),
            ..ConverseOptions::default()
        };
        let out = to_json(&encode_request(&r, &opts).unwrap());
        assert_eq!(out["inferenceConfig"], json!({"maxTokens": 1000}));

        r.max_tokens = Some(10);
        r.temperature = Some(1.5);
        r.top_p = Some(0.5);
        r.stop = Some(Stop::Many(vec!["END".into(), "STOP".into()]));
        r.reasoning_effort = Some("high".into());
        r.extra.insert("top_k".into(), json!(40));
        let out = to_json(&encode_request(&r, &opts).unwrap());
        assert_eq!(
            out["inferenceConfig"],
            json!({"maxTokens": 10, "temperature": 1.0, "topP": 0.5, "stopSequences": ["END", "STOP"]})
        );
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"reasoning_effort": "high", "top_k": 40})
        );

        r.extra.insert("top_k".into(), json!("many"));
        let err = encode_request(&r, &opts).unwrap_err();
        assert_eq!(err.param(), Some("top_k"));
    }

    #[test]
    fn documents_images_and_audio() {
        let r = req(vec![parts(
            Role::User,
            vec![
                file_part(
                    "data:application/pdf;base64,JVBERi0=",
                    Some("My report (v2).final.pdf"),
                ),
                file_part("aGVsbG8", Some("notes.md")),
                file_part("data:image/jpeg;base64,/9j/", Some("photo.jpg")),
                file_part(
                    "data:application/pdf;base64,JVBERi0=",
                    Some("My report (v2)!final.pdf"),
                ),
                ContentPart::image_url("s3://bucket/cat.WEBP"),
                {
                    let mut p = ContentPart::text("");
                    p.kind = "input_audio".into();
                    p.text = None;
                    p.extra.insert(
                        "input_audio".into(),
                        json!({"data": "UklGRg==", "format": "wav"}),
                    );
                    p
                },
            ],
        )]);
        let opts = ConverseOptions {
            s3_buckets: std::sync::Arc::new(
                [("bucket".to_owned(), "123456789012".to_owned())].into(),
            ),
            ..ConverseOptions::default()
        };
        assert_eq!(
            to_json(&encode_request(&r, &opts).unwrap())["messages"][0]["content"],
            json!([
                {"document": {"format": "pdf", "name": "My report (v2) final", "source": {"bytes": "JVBERi0="}}},
                {"document": {"format": "md", "name": "notes", "source": {"bytes": "aGVsbG8="}}},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}},
                {"document": {"format": "pdf", "name": "My report (v2) final (2)", "source": {"bytes": "JVBERi0="}}},
                {"image": {"format": "webp", "source": {"s3Location": {"uri": "s3://bucket/cat.WEBP",
                    "bucketOwner": "123456789012"}}}},
                {"audio": {"format": "wav", "source": {"bytes": "UklGRg=="}}},
                {"text": DOCUMENT_TEXT}
            ])
        );
        // Any other bucket is refused: Bedrock would read it with the gateway's own role.
        let e = encode_request(&r, &ConverseOptions::default()).unwrap_err();
        assert_eq!(e.param(), Some("messages"));
        assert!(e.message().contains("s3_buckets"), "{}", e.message());
        // Document settings: title as the name, context, citations.
        let mut doc = file_part("data:application/pdf;base64,JVBERi0=", Some("r.pdf"));
        let f = doc.file.as_mut().unwrap();
        f.title = Some("Annual report".into());
        f.context = Some("From 2024".into());
        f.citations = Some(json!({"enabled": true}));
        let r = req(vec![parts(
            Role::User,
            vec![doc, ContentPart::text("Summarise")],
        )]);
        let claude = ConverseOptions {
            citations: true,
            ..ConverseOptions::default()
        };
        assert!(encode(&r)["messages"][0]["content"][0]["document"]
            .get("citations")
            .is_none());
        assert_eq!(
            to_json(&encode_request(&r, &claude).unwrap())["messages"][0]["content"][0],
            json!({"document": {"format": "pdf", "name": "Annual report", "source": {"bytes": "JVBERi0="},
                "context": "From 2024", "citations": {"enabled": true}}})
        );
    }

    #[test]
    fn rejects_bad_content() {
        let opts = ConverseOptions::default();
        for part in [
            ContentPart::image_url("data:image/png;base64,!!!notbase64"),
            ContentPart::image_url("data:image/bmp;base64,AAAA"),
            ContentPart::image_url("data:image/png,rawdata"),
            ContentPart::image_url("https://example.com/cat.png"),
            file_part("data:application/zip;base64,AAAA", Some("x.zip")),
        ] {
            let r = req(vec![parts(Role::User, vec![part.clone()])]);
            let err = encode_request(&r, &opts).unwrap_err();
            assert_eq!(
                (err.status().as_u16(), err.param()),
                (400, Some("messages")),
                "{part:?}"
            );
        }
        let r = req(vec![
            Message::text(Role::User, "q"),
            call_msg(vec![ToolCall::function("c1", "f", "{not json")]),
        ]);
        assert_eq!(
            encode_request(&r, &opts).unwrap_err().param(),
            Some("messages")
        );
        let mut r = req(vec![Message::text(Role::User, "q")]);
        r.n = Some(3);
        assert_eq!(encode_request(&r, &opts).unwrap_err().param(), Some("n"));
    }

    #[test]
    fn sanitizes_names_and_ids() {
        assert_eq!(sanitize_document_name("a  b__c.pdf"), "a b c");
        assert_eq!(sanitize_document_name("..."), "document");
        assert_eq!(sanitize_document_name(""), "document");
        assert_eq!(sanitize_document_name(&"x".repeat(300)).len(), 200);
        assert_eq!(tool_use_id("call_1.a:b-c"), "call_1.a:b-c");
        let odd = tool_use_id("call 1/ä");
        assert!(odd.starts_with("call_1__") && odd.len() <= 64, "{odd}");
        assert_eq!(odd, tool_use_id("call 1/ä"), "deterministic");
        assert_ne!(odd, tool_use_id("call 1/ö"));
        assert!(tool_use_id(&"y".repeat(100)).len() <= 64);
        // Call and result stay matched after rewriting.
        let r = req(vec![
            Message::text(Role::User, "q"),
            call_msg(vec![ToolCall::function("id with spaces", "f", "{}")]),
            tool_msg("id with spaces", "ok"),
        ]);
        let out = encode(&r);
        assert_eq!(
            out["messages"][1]["content"][0]["toolUse"]["toolUseId"],
            out["messages"][2]["content"][0]["toolResult"]["toolUseId"]
        );
    }

    #[test]
    fn cache_points_follow_what_they_mark() {
        let r: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Rules."}, {"type": "text", "text": "Stable part",
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "user", "content": [{"type": "text", "text": "Doc", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Question"}]},
            {"role": "assistant", "content": "Answer", "cache_control": {"type": "ephemeral"}},
            {"role": "user", "content": "More"}],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}]}))
        .unwrap();
        let claude = ConverseOptions {
            cache: CacheSupport::ALL,
            ..ConverseOptions::default()
        };
        let out = to_json(&encode_request(&r, &claude).unwrap());
        assert_eq!(
            out["system"],
            json!([{"text": "Rules."}, {"text": "Stable part"}, {"cachePoint": {"type": "default", "ttl": "1h"}}])
        );
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"text": "Doc"}, {"cachePoint": {"type": "default"}}, {"text": "Question"}])
        );
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"text": "Answer"}, {"cachePoint": {"type": "default"}}])
        );
        assert_eq!(
            out["toolConfig"]["tools"][1],
            json!({"cachePoint": {"type": "default"}})
        );
        // Nova caches the prompt, not the tools; a family without caching gets no cache point.
        let nova = ConverseOptions {
            cache: CacheSupport::PROMPT,
            ..ConverseOptions::default()
        };
        let out = to_json(&encode_request(&r, &nova).unwrap());
        assert_eq!(out["toolConfig"]["tools"].as_array().unwrap().len(), 1);
        assert!(out["system"].to_string().contains("cachePoint"));
        let out = to_json(&encode_request(&r, &ConverseOptions::default()).unwrap());
        assert!(!out.to_string().contains("cachePoint"), "{out}");
        // Nova: never a cache point in a turn with tool content.
        let r: ChatRequest = serde_json::from_value(json!({"model": "m", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t", "content": "r", "cache_control": {"type": "ephemeral"}}]}))
        .unwrap();
        let out = to_json(&encode_request(&r, &nova).unwrap());
        assert!(!out.to_string().contains("cachePoint"), "{out}");
        let out = to_json(&encode_request(&r, &claude).unwrap());
        assert_eq!(
            out["messages"][2]["content"][1],
            json!({"cachePoint": {"type": "default"}})
        );
    }

    #[test]
    fn reasoning_per_model_style() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "q"}]});
        let with = |extra: Value| {
            let mut b = base.clone();
            b.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<ChatRequest>(b).unwrap()
        };
        let style = |reasoning| ConverseOptions {
            reasoning,
            default_max_tokens: Some(1000),
            ..ConverseOptions::default()
        };
        // Claude over Converse: thinking, with Claude's rules and room for the answer.
        let out = to_json(
            &encode_request(
                &with(json!({"reasoning_effort": "low"})),
                &style(ReasoningStyle::ClaudeThinking),
            )
            .unwrap(),
        );
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
        );
        assert_eq!(out["inferenceConfig"]["maxTokens"], 3048);
        let e = encode_request(
            &with(json!({"reasoning_effort": "low", "temperature": 0.3})),
            &style(ReasoningStyle::ClaudeThinking),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("temperature"));
        // Nova 2: reasoningConfig; a thinking budget becomes the nearest effort.
        let out = to_json(
            &encode_request(
                &with(json!({"thinking": {"type": "enabled", "budget_tokens": 20000}})),
                &style(ReasoningStyle::NovaReasoningConfig),
            )
            .unwrap(),
        );
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}})
        );
        // gpt-oss, Qwen, DeepSeek: reasoning_effort as is.
        let out = to_json(
            &encode_request(
                &with(json!({"reasoning_effort": "minimal"})),
                &style(ReasoningStyle::ReasoningEffort),
            )
            .unwrap(),
        );
        assert_eq!(
            out["additionalModelRequestFields"],
            json!({"reasoning_effort": "minimal"})
        );
        // Others: a clear 400; `none` is fine.
        let e = encode_request(
            &with(json!({"reasoning_effort": "high"})),
            &style(ReasoningStyle::Unsupported),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("reasoning_effort"));
        assert!(encode_request(
            &with(json!({"reasoning_effort": "none"})),
            &style(ReasoningStyle::Unsupported)
        )
        .is_ok());
        // Claude's signed reasoning goes back first; other models never see it.
        let history = with(json!({"messages": [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "thinking_blocks": [
                {"type": "thinking", "thinking": "t", "signature": "sig"},
                {"type": "redacted_thinking", "data": "AAEC"}]},
            {"role": "user", "content": "q2"}]}));
        let out =
            to_json(&encode_request(&history, &style(ReasoningStyle::ClaudeThinking)).unwrap());
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"reasoningContent": {"reasoningText": {"text": "t", "signature": "sig"}}},
                {"reasoningContent": {"redactedContent": "AAEC"}}, {"text": "a"}])
        );
        let out =
            to_json(&encode_request(&history, &style(ReasoningStyle::ReasoningEffort)).unwrap());
        assert_eq!(out["messages"][1]["content"], json!([{"text": "a"}]));
    }
}
