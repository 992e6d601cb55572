//! Converse and ConverseStream as Bedrock's JSON, for the gateway's own Bedrock client: the
//! SDK-typed input ([`ConverseRequest`]) written as the request body, and the reply and the
//! stream's events read back into the SDK's types, which the codecs
//! ([`decode_response`](super::decode_response), [`ConverseStreamDecoder`](super::ConverseStreamDecoder))
//! take from either client.
//!
//! **Why by hand.** The SDK's own serializers are private to it, and only its orchestrator runs
//! them. Sending through that orchestrator costs about as much CPU again as the rest of a
//! Converse request (BENCHMARKS.md), so the gateway's client sends these bodies itself, and this
//! module is the one place that knows their spelling. It is checked against the SDK's: the tests
//! send the same input through the SDK's client and compare the bodies, and read the same replies
//! through both and compare what the codecs make of them.
//!
//! **What is written.** Every member and union variant [`encode_request`](super::encode_request)
//! builds, with the SDK's member names; a variant it never builds (a guard-content block, a
//! video) is an internal error, not a member silently dropped. Blobs are base64, documents are
//! JSON, `f32` settings are written in their shortest form (`0.7`, where the SDK writes the `f64`
//! it widens to, `0.699999988079071`).
//!
//! **What is read.** What the codecs read: the message's text, tool-use, reasoning and citation
//! blocks, the stop reason and the token usage; other blocks, members and events are skipped, as
//! the codecs skip the SDK's `Unknown`s. A member the SDK requires and the reply lacks (or gives
//! as `null`) is read as its parser reads it, for what the codecs see: no stop reason is an
//! unknown one (`stop`), no usage zero tokens, no role the assistant's. A guardrail's trace is not
//! read here: a call that asks for one goes through the SDK, whose typed trace the codecs write
//! back out.

use std::borrow::Cow;

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    self, CitationGeneratedContent, CitationsContentBlock, ContentBlock, ContentBlockDelta,
    ContentBlockDeltaEvent, ContentBlockStart, ContentBlockStartEvent, ContentBlockStopEvent,
    ConversationRole, ConverseMetrics, ConverseStreamMetadataEvent, ConverseStreamOutput,
    DocumentSource, ImageSource, MessageStartEvent, MessageStopEvent, ReasoningContentBlock,
    ReasoningContentBlockDelta, ReasoningTextBlock, StopReason, SystemContentBlock, TokenUsage,
    ToolResultContentBlock, ToolUseBlock, ToolUseBlockDelta, ToolUseBlockStart,
};
use aws_smithy_types::{Blob, Document, Number};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::document::json_to_document;
use super::upstream_request::ConverseRequest;
use crate::error::GatewayError;
use crate::model::GuardrailConfig;

/// The body of a Converse (`stream: false`) or ConverseStream call of `input`, with the guardrail
/// (ConverseStream's takes a processing mode too).
pub(crate) fn write_input(
    input: &ConverseRequest,
    guardrail: Option<&GuardrailConfig>,
    stream: bool,
) -> Result<Vec<u8>, GatewayError> {
    let body = Input {
        input,
        guardrail,
        stream,
    };
    serde_json::to_vec(&body)
        .map_err(|e| GatewayError::internal(format!("writing the Converse request: {e}")))
}

/// A Converse reply body, read into the SDK's output type.
pub(crate) fn read_output(body: &[u8]) -> Result<ConverseOutput, GatewayError> {
    let reply: Reply = serde_json::from_slice(body).map_err(|e| invalid("reply", &e))?;
    let message = match reply.output.and_then(|o| o.message) {
        Some(m) => {
            let content = m
                .content
                .into_iter()
                .flatten()
                .filter_map(Block::into_sdk)
                .collect::<Result<Vec<_>, _>>()?;
            let message = types::Message::builder()
                .role(role(m.role.as_deref()))
                .set_content(Some(content))
                .build()
                .map_err(built)?;
            Some(message)
        }
        None => None,
    };
    ConverseOutput::builder()
        .set_output(message.map(types::ConverseOutput::Message))
        .stop_reason(stop_reason(reply.stop_reason.as_deref()))
        .usage(reply.usage.unwrap_or_default().into_sdk()?)
        .metrics(metrics(reply.metrics)?)
        .build()
        .map_err(built)
}

/// One ConverseStream event (`kind` is its `:event-type`) read into the SDK's type; `None` for an
/// event kind the codecs do not read.
pub(crate) fn read_event(
    kind: &str,
    payload: &[u8],
) -> Result<Option<ConverseStreamOutput>, GatewayError> {
    fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, GatewayError> {
        serde_json::from_slice(payload).map_err(|e| invalid("event", &e))
    }
    let event = match kind {
        "messageStart" => {
            let ev: MessageStart = parse(payload)?;
            ConverseStreamOutput::MessageStart(
                MessageStartEvent::builder()
                    .role(role(ev.role.as_deref()))
                    .build()
                    .map_err(built)?,
            )
        }
        "contentBlockStart" => {
            let ev: BlockStart = parse(payload)?;
            let start = ev
                .start
                .and_then(|s| s.tool_use)
                .map(|t| {
                    ToolUseBlockStart::builder()
                        .tool_use_id(t.tool_use_id.unwrap_or_default())
                        .name(t.name.unwrap_or_default())
                        .build()
                        .map(ContentBlockStart::ToolUse)
                })
                .transpose()
                .map_err(built)?;
            ConverseStreamOutput::ContentBlockStart(
                ContentBlockStartEvent::builder()
                    .set_start(start)
                    .content_block_index(ev.content_block_index.unwrap_or(0))
                    .build()
                    .map_err(built)?,
            )
        }
        "contentBlockDelta" => {
            let ev: BlockDelta = parse(payload)?;
            let delta = match ev.delta {
                Some(d) => d.into_sdk()?,
                None => None,
            };
            ConverseStreamOutput::ContentBlockDelta(
                ContentBlockDeltaEvent::builder()
                    .set_delta(delta)
                    .content_block_index(ev.content_block_index.unwrap_or(0))
                    .build()
                    .map_err(built)?,
            )
        }
        "contentBlockStop" => {
            let ev: BlockStop = parse(payload)?;
            ConverseStreamOutput::ContentBlockStop(
                ContentBlockStopEvent::builder()
                    .content_block_index(ev.content_block_index.unwrap_or(0))
                    .build()
                    .map_err(built)?,
            )
        }
        "messageStop" => {
            let ev: MessageStop = parse(payload)?;
            ConverseStreamOutput::MessageStop(
                MessageStopEvent::builder()
                    .stop_reason(stop_reason(ev.stop_reason.as_deref()))
                    .build()
                    .map_err(built)?,
            )
        }
        "metadata" => {
            let ev: Metadata = parse(payload)?;
            let usage = ev.usage.map(Usage::into_sdk).transpose()?;
            ConverseStreamOutput::Metadata(
                ConverseStreamMetadataEvent::builder()
                    .set_usage(usage)
                    .build(),
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

fn invalid(what: &str, e: &serde_json::Error) -> GatewayError {
    GatewayError::upstream_protocol(format!("Bedrock sent an invalid Converse {what}: {e}"))
}

fn built(e: aws_smithy_types::error::operation::BuildError) -> GatewayError {
    GatewayError::upstream_protocol(format!("Bedrock sent an incomplete Converse reply: {e}"))
}

/// A role as the SDK reads it (a missing one is the SDK's default for a required enum).
fn role(role: Option<&str>) -> ConversationRole {
    ConversationRole::from(role.unwrap_or("assistant"))
}

fn stop_reason(reason: Option<&str>) -> StopReason {
    StopReason::from(reason.unwrap_or(""))
}

fn metrics(m: Option<Metrics>) -> Result<ConverseMetrics, GatewayError> {
    ConverseMetrics::builder()
        .latency_ms(m.and_then(|m| m.latency_ms).unwrap_or(0))
        .build()
        .map_err(built)
}

fn base64_blob(text: &str) -> Result<Blob, GatewayError> {
    BASE64.decode(text).map(Blob::new).map_err(|e| {
        GatewayError::upstream_protocol(format!("Bedrock sent a blob that is not base64: {e}"))
    })
}

// ---- The request --------------------------------------------------------------------------

/// The top-level input object.
struct Input<'a> {
    input: &'a ConverseRequest,
    guardrail: Option<&'a GuardrailConfig>,
    stream: bool,
}

/// A borrowed SDK value written in its wire spelling.
struct W<'a, T: ?Sized>(&'a T);

/// Writes a union value: an object of one member.
fn variant<S: Serializer, T: Serialize + ?Sized>(
    s: S,
    name: &str,
    value: &T,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry(name, value)?;
    map.end()
}

/// A union variant the gateway never builds.
fn unwritten<E: serde::ser::Error>(what: &str, value: &impl std::fmt::Debug) -> E {
    E::custom(format!("no wire form for the {what} {value:?}"))
}

/// An empty object (`{"auto": {}}`).
struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

/// A list of SDK values.
struct List<'a, T>(&'a [T]);

impl<'a, T> Serialize for List<'a, T>
where
    W<'a, T>: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&W(item))?;
        }
        seq.end()
    }
}

impl Serialize for Input<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let input = self.input;
        let mut map = s.serialize_map(None)?;
        if let Some(fields) = &input.additional_model_request_fields {
            map.serialize_entry("additionalModelRequestFields", &W(fields))?;
        }
        if let Some(g) = self.guardrail {
            map.serialize_entry(
                "guardrailConfig",
                &Guardrail {
                    config: g,
                    stream: self.stream,
                },
            )?;
        }
        if let Some(config) = &input.inference_config {
            map.serialize_entry("inferenceConfig", &W(config))?;
        }
        map.serialize_entry("messages", &List(&input.messages))?;
        if !input.system.is_empty() {
            map.serialize_entry("system", &List(&input.system))?;
        }
        if let Some(tools) = &input.tool_config {
            map.serialize_entry("toolConfig", &W(tools))?;
        }
        map.end()
    }
}

/// `guardrailConfig` (`GuardrailConfiguration`, or `GuardrailStreamConfiguration` with its
/// processing mode), with the SDK's defaults for what is unset: `trace` `disabled`,
/// `streamProcessingMode` `sync`.
struct Guardrail<'a> {
    config: &'a GuardrailConfig,
    stream: bool,
}

impl Serialize for Guardrail<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.config;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("guardrailIdentifier", &g.guardrail_identifier)?;
        map.serialize_entry("guardrailVersion", &g.guardrail_version)?;
        if self.stream {
            let mode = g.stream_processing_mode.as_deref().unwrap_or("sync");
            map.serialize_entry("streamProcessingMode", mode)?;
        }
        map.serialize_entry("trace", g.trace.as_deref().unwrap_or("disabled"))?;
        map.end()
    }
}

impl Serialize for W<'_, types::Message> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("content", &List(self.0.content()))?;
        map.serialize_entry("role", self.0.role().as_str())?;
        map.end()
    }
}

impl Serialize for W<'_, ContentBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ContentBlock::Text(text) => variant(s, "text", text),
            ContentBlock::Image(image) => {
                let source = match image.source() {
                    Some(ImageSource::Bytes(b)) => Source::Bytes(b),
                    Some(ImageSource::S3Location(l)) => Source::S3(l),
                    other => return Err(unwritten("image source", &other)),
                };
                let block = Media {
                    format: image.format().as_str(),
                    source,
                };
                variant(s, "image", &block)
            }
            ContentBlock::Audio(audio) => {
                let source = match audio.source() {
                    Some(types::AudioSource::Bytes(b)) => Source::Bytes(b),
                    other => return Err(unwritten("audio source", &other)),
                };
                let block = Media {
                    format: audio.format().as_str(),
                    source,
                };
                variant(s, "audio", &block)
            }
            ContentBlock::Document(doc) => variant(s, "document", &W(doc)),
            ContentBlock::ToolUse(tool) => variant(s, "toolUse", &W(tool)),
            ContentBlock::ToolResult(result) => variant(s, "toolResult", &W(result)),
            ContentBlock::ReasoningContent(r) => variant(s, "reasoningContent", &W(r)),
            ContentBlock::CachePoint(c) => variant(s, "cachePoint", &W(c)),
            other => Err(unwritten("content block", other)),
        }
    }
}

/// An image's or audio's `{format, source}`.
struct Media<'a> {
    format: &'a str,
    source: Source<'a>,
}

/// A media source: inline bytes or an S3 object.
enum Source<'a> {
    Bytes(&'a Blob),
    S3(&'a types::S3Location),
}

impl Serialize for Media<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("format", self.format)?;
        map.serialize_entry("source", &self.source)?;
        map.end()
    }
}

impl Serialize for Source<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Source::Bytes(blob) => variant(s, "bytes", &W(*blob)),
            Source::S3(location) => variant(s, "s3Location", &W(*location)),
        }
    }
}

impl Serialize for W<'_, Blob> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(self.0.as_ref()))
    }
}

impl Serialize for W<'_, types::S3Location> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(owner) = self.0.bucket_owner() {
            map.serialize_entry("bucketOwner", owner)?;
        }
        map.serialize_entry("uri", self.0.uri())?;
        map.end()
    }
}

impl Serialize for W<'_, types::DocumentBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let doc = self.0;
        let mut map = s.serialize_map(None)?;
        if let Some(c) = doc.citations() {
            let mut citations = std::collections::BTreeMap::new();
            citations.insert("enabled", c.enabled());
            map.serialize_entry("citations", &citations)?;
        }
        if let Some(context) = doc.context() {
            map.serialize_entry("context", context)?;
        }
        map.serialize_entry("format", doc.format().as_str())?;
        map.serialize_entry("name", doc.name())?;
        let source = match doc.source() {
            Some(DocumentSource::Bytes(b)) => Source::Bytes(b),
            Some(DocumentSource::S3Location(l)) => Source::S3(l),
            other => return Err(unwritten("document source", &other)),
        };
        map.serialize_entry("source", &source)?;
        map.end()
    }
}

impl Serialize for W<'_, ToolUseBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tool = self.0;
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("input", &W(tool.input()))?;
        map.serialize_entry("name", tool.name())?;
        map.serialize_entry("toolUseId", tool.tool_use_id())?;
        map.end()
    }
}

impl Serialize for W<'_, types::ToolResultBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let result = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("content", &List(result.content()))?;
        if let Some(status) = result.status() {
            map.serialize_entry("status", status.as_str())?;
        }
        map.serialize_entry("toolUseId", result.tool_use_id())?;
        map.end()
    }
}

impl Serialize for W<'_, ToolResultContentBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolResultContentBlock::Text(text) => variant(s, "text", text),
            ToolResultContentBlock::Json(doc) => variant(s, "json", &W(doc)),
            other => Err(unwritten("tool result block", other)),
        }
    }
}

impl Serialize for W<'_, ReasoningContentBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ReasoningContentBlock::ReasoningText(r) => {
                let mut text = std::collections::BTreeMap::new();
                if let Some(signature) = r.signature() {
                    text.insert("signature", signature);
                }
                text.insert("text", r.text());
                variant(s, "reasoningText", &text)
            }
            ReasoningContentBlock::RedactedContent(data) => variant(s, "redactedContent", &W(data)),
            other => Err(unwritten("reasoning block", other)),
        }
    }
}

impl Serialize for W<'_, types::CachePointBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(ttl) = self.0.ttl() {
            map.serialize_entry("ttl", ttl.as_str())?;
        }
        map.serialize_entry("type", self.0.r#type().as_str())?;
        map.end()
    }
}

impl Serialize for W<'_, SystemContentBlock> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            SystemContentBlock::Text(text) => variant(s, "text", text),
            SystemContentBlock::CachePoint(c) => variant(s, "cachePoint", &W(c)),
            other => Err(unwritten("system block", other)),
        }
    }
}

impl Serialize for W<'_, types::InferenceConfiguration> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut map = s.serialize_map(None)?;
        if let Some(n) = c.max_tokens() {
            map.serialize_entry("maxTokens", &n)?;
        }
        if !c.stop_sequences().is_empty() {
            map.serialize_entry("stopSequences", c.stop_sequences())?;
        }
        if let Some(t) = c.temperature() {
            map.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = c.top_p() {
            map.serialize_entry("topP", &p)?;
        }
        map.end()
    }
}

impl Serialize for W<'_, types::ToolConfiguration> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(choice) = self.0.tool_choice() {
            map.serialize_entry("toolChoice", &W(choice))?;
        }
        map.serialize_entry("tools", &List(self.0.tools()))?;
        map.end()
    }
}

impl Serialize for W<'_, types::Tool> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            types::Tool::ToolSpec(spec) => variant(s, "toolSpec", &W(spec)),
            types::Tool::CachePoint(c) => variant(s, "cachePoint", &W(c)),
            other => Err(unwritten("tool", other)),
        }
    }
}

impl Serialize for W<'_, types::ToolSpecification> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.0;
        let mut map = s.serialize_map(None)?;
        if let Some(description) = spec.description() {
            map.serialize_entry("description", description)?;
        }
        match spec.input_schema() {
            Some(types::ToolInputSchema::Json(schema)) => {
                map.serialize_entry("inputSchema", &InputSchema(schema))?
            }
            Some(other) => return Err(unwritten("input schema", other)),
            None => {}
        }
        map.serialize_entry("name", spec.name())?;
        if let Some(strict) = spec.strict() {
            map.serialize_entry("strict", &strict)?;
        }
        map.end()
    }
}

/// `inputSchema`: `{"json": schema}`.
struct InputSchema<'a>(&'a Document);

impl Serialize for InputSchema<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        variant(s, "json", &W(self.0))
    }
}

impl Serialize for W<'_, types::ToolChoice> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            types::ToolChoice::Auto(_) => variant(s, "auto", &Empty),
            types::ToolChoice::Any(_) => variant(s, "any", &Empty),
            types::ToolChoice::Tool(tool) => {
                let mut name = std::collections::BTreeMap::new();
                name.insert("name", tool.name());
                variant(s, "tool", &name)
            }
            other => Err(unwritten("tool choice", other)),
        }
    }
}

impl Serialize for W<'_, Document> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Document::Null => s.serialize_unit(),
            Document::Bool(b) => s.serialize_bool(*b),
            Document::Number(Number::PosInt(n)) => s.serialize_u64(*n),
            Document::Number(Number::NegInt(n)) => s.serialize_i64(*n),
            Document::Number(Number::Float(f)) if f.is_finite() => s.serialize_f64(*f),
            Document::Number(Number::Float(f)) => {
                Err(S::Error::custom(format!("{f} has no JSON form")))
            }
            Document::String(text) => s.serialize_str(text),
            Document::Array(items) => s.collect_seq(items.iter().map(W)),
            Document::Object(members) => s.collect_map(members.iter().map(|(k, v)| (k, W(v)))),
        }
    }
}

// ---- The reply and the events -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    output: Option<OutputUnion>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    metrics: Option<Metrics>,
}

#[derive(Deserialize)]
struct OutputUnion {
    message: Option<ReplyMessage>,
}

#[derive(Deserialize)]
struct ReplyMessage {
    role: Option<String>,
    content: Option<Vec<Block>>,
}

/// One content block of a reply: the members the codecs read (a block has one).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Block {
    text: Option<String>,
    tool_use: Option<ToolUse>,
    reasoning_content: Option<Reasoning>,
    citations_content: Option<Citations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse {
    tool_use_id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning {
    reasoning_text: Option<ReasoningText>,
    redacted_content: Option<String>,
}

#[derive(Deserialize)]
struct ReasoningText {
    text: Option<String>,
    signature: Option<String>,
}

#[derive(Deserialize)]
struct Citations {
    content: Option<Vec<CitationText>>,
}

#[derive(Deserialize)]
struct CitationText {
    text: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Usage {
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    total_tokens: Option<i32>,
    cache_read_input_tokens: Option<i32>,
    cache_write_input_tokens: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    latency_ms: Option<i64>,
}

impl Usage {
    fn into_sdk(self) -> Result<TokenUsage, GatewayError> {
        TokenUsage::builder()
            .input_tokens(self.input_tokens.unwrap_or(0))
            .output_tokens(self.output_tokens.unwrap_or(0))
            .total_tokens(self.total_tokens.unwrap_or(0))
            .set_cache_read_input_tokens(self.cache_read_input_tokens)
            .set_cache_write_input_tokens(self.cache_write_input_tokens)
            .build()
            .map_err(built)
    }
}

impl Block {
    /// The SDK block, or `None` for a kind the codecs skip.
    fn into_sdk(self) -> Option<Result<ContentBlock, GatewayError>> {
        if let Some(text) = self.text {
            return Some(Ok(ContentBlock::Text(text)));
        }
        if let Some(tool) = self.tool_use {
            let input = tool.input.as_ref().map_or(Document::Null, json_to_document);
            return Some(
                ToolUseBlock::builder()
                    .tool_use_id(tool.tool_use_id.unwrap_or_default())
                    .name(tool.name.unwrap_or_default())
                    .input(input)
                    .build()
                    .map(ContentBlock::ToolUse)
                    .map_err(built),
            );
        }
        if let Some(r) = self.reasoning_content {
            return r.into_sdk().map(|r| r.map(ContentBlock::ReasoningContent));
        }
        let citations = self.citations_content?;
        let content = citations
            .content
            .into_iter()
            .flatten()
            .filter_map(|c| c.text.map(CitationGeneratedContent::Text))
            .collect();
        Some(Ok(ContentBlock::CitationsContent(
            CitationsContentBlock::builder()
                .set_content(Some(content))
                .build(),
        )))
    }
}

impl Reasoning {
    fn into_sdk(self) -> Option<Result<ReasoningContentBlock, GatewayError>> {
        if let Some(r) = self.reasoning_text {
            return Some(
                ReasoningTextBlock::builder()
                    .text(r.text.unwrap_or_default())
                    .set_signature(r.signature)
                    .build()
                    .map(ReasoningContentBlock::ReasoningText)
                    .map_err(built),
            );
        }
        let data = self.redacted_content?;
        Some(base64_blob(&data).map(ReasoningContentBlock::RedactedContent))
    }
}

#[derive(Deserialize)]
struct MessageStart {
    role: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    content_block_index: Option<i32>,
    start: Option<StartUnion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartUnion {
    tool_use: Option<ToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart {
    tool_use_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    content_block_index: Option<i32>,
    #[serde(borrow)]
    delta: Option<DeltaUnion<'a>>,
}

/// A delta: text, a tool's input piece, or a reasoning piece (the codecs read no other).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaUnion<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_use: Option<ToolInput<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolInput<'a> {
    #[serde(borrow)]
    input: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReasoningDelta<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(borrow)]
    redacted_content: Option<Cow<'a, str>>,
}

impl DeltaUnion<'_> {
    fn into_sdk(self) -> Result<Option<ContentBlockDelta>, GatewayError> {
        if let Some(text) = self.text {
            return Ok(Some(ContentBlockDelta::Text(text.into_owned())));
        }
        if let Some(tool) = self.tool_use {
            let delta = ToolUseBlockDelta::builder()
                .input(tool.input.unwrap_or_default())
                .build()
                .map_err(built)?;
            return Ok(Some(ContentBlockDelta::ToolUse(delta)));
        }
        let Some(r) = self.reasoning_content else {
            return Ok(None);
        };
        let piece = if let Some(text) = r.text {
            ReasoningContentBlockDelta::Text(text.into_owned())
        } else if let Some(signature) = r.signature {
            ReasoningContentBlockDelta::Signature(signature.into_owned())
        } else if let Some(data) = r.redacted_content {
            ReasoningContentBlockDelta::RedactedContent(base64_blob(&data)?)
        } else {
            return Ok(None);
        };
        Ok(Some(ContentBlockDelta::ReasoningContent(piece)))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    content_block_index: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    usage: Option<Usage>,
}

#[cfg(test)]
mod tests {
    //! Each direction checked against the SDK's own: the same input sent through the SDK's client
    //! (to a connector that keeps the body and answers with a canned reply), and the same replies
    //! and events read by both, compared by what the codecs make of them.

    use std::sync::{Arc, Mutex};

    use aws_credential_types::Credentials;
    use aws_sdk_bedrockruntime::types::{
        AnyToolChoice, AudioBlock, AudioFormat, AudioSource, AutoToolChoice, CachePointBlock,
        CachePointType, CacheTtl, CitationsConfig, DocumentBlock, DocumentFormat, ImageBlock,
        ImageFormat, InferenceConfiguration, S3Location, SpecificToolChoice, ToolConfiguration,
        ToolInputSchema, ToolResultBlock, ToolResultStatus, ToolSpecification,
    };
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::body::SdkBody;
    use bytes::{Bytes, BytesMut};
    use serde_json::json;

    use super::*;
    use crate::format::converse::{decode_response, ConverseStreamDecoder};
    use crate::model::{ChatChunk, ChunkMeta};

    /// Keeps the body of what the SDK sends, and answers with `reply`.
    #[derive(Debug, Clone)]
    struct Canned {
        reply: Bytes,
        seen: Arc<Mutex<Option<Bytes>>>,
    }

    impl HttpConnector for Canned {
        fn call(&self, req: HttpRequest) -> HttpConnectorFuture {
            let body = req.body().bytes().map(Bytes::copy_from_slice);
            *self.seen.lock().unwrap() = body;
            let res = HttpResponse::new(
                200u16.try_into().unwrap(),
                SdkBody::from(self.reply.clone()),
            );
            HttpConnectorFuture::ready(Ok(res))
        }
    }

    impl HttpClient for Canned {
        fn http_connector(
            &self,
            _: &HttpConnectorSettings,
            _: &RuntimeComponents,
        ) -> SharedHttpConnector {
            SharedHttpConnector::new(self.clone())
        }
    }

    fn sdk(reply: impl Into<Bytes>) -> (aws_sdk_bedrockruntime::Client, Arc<Mutex<Option<Bytes>>>) {
        let seen = Arc::new(Mutex::new(None));
        let conf = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .http_client(Canned {
                reply: reply.into(),
                seen: seen.clone(),
            })
            .build();
        (aws_sdk_bedrockruntime::Client::from_conf(conf), seen)
    }

    fn doc(value: Value) -> Document {
        json_to_document(&value)
    }

    fn cache(ttl: Option<&str>) -> CachePointBlock {
        CachePointBlock::builder()
            .r#type(CachePointType::Default)
            .set_ttl(ttl.map(CacheTtl::from))
            .build()
            .unwrap()
    }

    fn s3(uri: &str) -> S3Location {
        S3Location::builder()
            .uri(uri)
            .bucket_owner("123456789012")
            .build()
            .unwrap()
    }

    /// Every member and variant `encode_request` builds.
    fn everything() -> ConverseRequest {
        let user = vec![
            ContentBlock::Text("Read these.".into()),
            ContentBlock::Image(
                ImageBlock::builder()
                    .format(ImageFormat::Png)
                    .source(ImageSource::Bytes(Blob::new(b"\x89PNG\r\n".to_vec())))
                    .build()
                    .unwrap(),
            ),
            ContentBlock::Image(
                ImageBlock::builder()
                    .format(ImageFormat::Jpeg)
                    .source(ImageSource::S3Location(s3("s3://pics/a.jpg")))
                    .build()
                    .unwrap(),
            ),
            ContentBlock::Document(
                DocumentBlock::builder()
                    .format(DocumentFormat::Pdf)
                    .name("Report (2026)")
                    .source(DocumentSource::Bytes(Blob::new(b"%PDF-1.7".to_vec())))
                    .context("the annual report")
                    .citations(CitationsConfig::builder().enabled(true).build().unwrap())
                    .build()
                    .unwrap(),
            ),
            ContentBlock::Document(
                DocumentBlock::builder()
                    .format(DocumentFormat::Csv)
                    .name("sheet")
                    .source(DocumentSource::S3Location(s3("s3://docs/sheet.csv")))
                    .build()
                    .unwrap(),
            ),
            ContentBlock::Audio(
                AudioBlock::builder()
                    .format(AudioFormat::Wav)
                    .source(AudioSource::Bytes(Blob::new(b"RIFF".to_vec())))
                    .build()
                    .unwrap(),
            ),
            ContentBlock::CachePoint(cache(Some("1h"))),
        ];
        let assistant = vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
                ReasoningTextBlock::builder()
                    .text("Let me think.")
                    .signature("c2ln")
                    .build()
                    .unwrap(),
            )),
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob::new(
                b"\x00\xffsecret".to_vec(),
            ))),
            ContentBlock::Text("Checking \"both\" \u{2014} now.".into()),
            ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id("tooluse_1")
                    .name("lookup")
                    .input(doc(
                        json!({"q": "x", "n": 3, "neg": -2, "f": 1.25, "deep": [true, null, {}]}),
                    ))
                    .build()
                    .unwrap(),
            ),
        ];
        let results = vec![
            ContentBlock::ToolResult(
                ToolResultBlock::builder()
                    .tool_use_id("tooluse_1")
                    .content(ToolResultContentBlock::Json(doc(json!({"rows": [1, 2]}))))
                    .content(ToolResultContentBlock::Text("(no output)".into()))
                    .status(ToolResultStatus::Error)
                    .build()
                    .unwrap(),
            ),
            ContentBlock::CachePoint(cache(None)),
        ];
        let message = |role: ConversationRole, content: Vec<ContentBlock>| {
            types::Message::builder()
                .role(role)
                .set_content(Some(content))
                .build()
                .unwrap()
        };
        ConverseRequest {
            messages: vec![
                message(ConversationRole::User, user),
                message(ConversationRole::Assistant, assistant),
                message(ConversationRole::User, results),
            ],
            system: vec![
                SystemContentBlock::Text("Be brief.".into()),
                SystemContentBlock::CachePoint(cache(None)),
            ],
            inference_config: Some(
                InferenceConfiguration::builder()
                    .max_tokens(512)
                    .temperature(0.5)
                    .top_p(0.25)
                    .stop_sequences("END")
                    .stop_sequences("\n\n")
                    .build(),
            ),
            tool_config: Some(
                ToolConfiguration::builder()
                    .tools(types::Tool::ToolSpec(
                        ToolSpecification::builder()
                            .name("lookup")
                            .description("Looks things up.")
                            .input_schema(ToolInputSchema::Json(doc(
                                json!({"type": "object", "properties": {"q": {"type": "string"}}}),
                            )))
                            .strict(true)
                            .build()
                            .unwrap(),
                    ))
                    .tools(types::Tool::CachePoint(cache(None)))
                    .tools(types::Tool::ToolSpec(
                        ToolSpecification::builder()
                            .name("bare")
                            .input_schema(ToolInputSchema::Json(doc(json!({"type": "object"}))))
                            .build()
                            .unwrap(),
                    ))
                    .tool_choice(types::ToolChoice::Tool(
                        SpecificToolChoice::builder()
                            .name("lookup")
                            .build()
                            .unwrap(),
                    ))
                    .build()
                    .unwrap(),
            ),
            additional_model_request_fields: Some(doc(
                json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 40}),
            )),
        }
    }

    fn guardrail(trace: Option<&str>, mode: Option<&str>) -> GuardrailConfig {
        GuardrailConfig {
            guardrail_identifier: "gr-1".into(),
            guardrail_version: "DRAFT".into(),
            trace: trace.map(str::to_owned),
            stream_processing_mode: mode.map(str::to_owned),
        }
    }

    /// What the SDK's client sends for `input`.
    async fn sent_by_sdk(
        input: &ConverseRequest,
        g: Option<&GuardrailConfig>,
        stream: bool,
    ) -> Value {
        let (client, seen) = sdk(Bytes::new());
        let input = input.clone();
        macro_rules! send {
            ($builder:expr, $guardrail:expr) => {
                $builder
                    .model_id("m")
                    .set_messages(Some(input.messages))
                    .set_system((!input.system.is_empty()).then_some(input.system))
                    .set_inference_config(input.inference_config)
                    .set_tool_config(input.tool_config)
                    .set_additional_model_request_fields(input.additional_model_request_fields)
                    .set_guardrail_config($guardrail)
                    .send()
                    .await
            };
        }
        if stream {
            let _ = send!(
                client.converse_stream(),
                g.map(crate::provider::bedrock::guardrail::converse_stream)
            );
        } else {
            let _ = send!(
                client.converse(),
                g.map(crate::provider::bedrock::guardrail::converse)
            );
        }
        let body = seen.lock().unwrap().take().expect("the SDK sent a body");
        serde_json::from_slice(&body).unwrap()
    }

    fn written(input: &ConverseRequest, g: Option<&GuardrailConfig>, stream: bool) -> Value {
        serde_json::from_slice(&write_input(input, g, stream).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn requests_are_written_as_the_sdk_writes_them() {
        let full = everything();
        let mode = guardrail(Some("disabled"), Some("async"));
        let unset = guardrail(None, None);
        let minimal = ConverseRequest {
            messages: vec![types::Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("Hi".into()))
                .build()
                .unwrap()],
            ..ConverseRequest::default()
        };
        for (name, input, g) in [
            ("everything", &full, Some(&mode)),
            ("a guardrail with nothing set", &full, Some(&unset)),
            ("minimal", &minimal, None),
        ] {
            for stream in [false, true] {
                let ours = written(input, g, stream);
                let theirs = sent_by_sdk(input, g, stream).await;
                assert_eq!(ours, theirs, "{name}, stream {stream}");
            }
        }
        let ours = written(&full, Some(&mode), false);
        assert!(
            ours["guardrailConfig"]
                .get("streamProcessingMode")
                .is_none(),
            "Converse has no processing mode: {ours}"
        );
        assert_eq!(
            written(&full, Some(&mode), true)["guardrailConfig"]["streamProcessingMode"],
            "async"
        );
    }

    #[test]
    fn settings_are_written_in_their_shortest_form_and_choices_as_empty_objects() {
        let mut input = everything();
        input.inference_config = Some(InferenceConfiguration::builder().temperature(0.7).build());
        let mut tools = input.tool_config.clone().unwrap().tools().to_vec();
        tools.truncate(1);
        for (choice, wire) in [
            (
                types::ToolChoice::Auto(AutoToolChoice::builder().build()),
                json!({"auto": {}}),
            ),
            (
                types::ToolChoice::Any(AnyToolChoice::builder().build()),
                json!({"any": {}}),
            ),
        ] {
            input.tool_config = Some(
                ToolConfiguration::builder()
                    .set_tools(Some(tools.clone()))
                    .tool_choice(choice)
                    .build()
                    .unwrap(),
            );
            let body = written(&input, None, false);
            assert_eq!(body["toolConfig"]["toolChoice"], wire);
            assert_eq!(
                body["inferenceConfig"].to_string(),
                r#"{"temperature":0.7}"#
            );
        }
    }

    #[test]
    fn a_variant_the_gateway_never_builds_is_an_error_not_a_dropped_member() {
        let mut input = everything();
        input.system.push(SystemContentBlock::GuardContent(
            types::GuardrailConverseContentBlock::Text(
                types::GuardrailConverseTextBlock::builder()
                    .text("x")
                    .build()
                    .unwrap(),
            ),
        ));
        let e = write_input(&input, None, false).unwrap_err();
        assert_eq!(e.status().as_u16(), 500);
        let mut input = everything();
        input.additional_model_request_fields = Some(Document::Number(Number::Float(f64::NAN)));
        assert!(write_input(&input, None, false).is_err());
    }

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-w".into(),
            created: 7,
            model: "m".into(),
        }
    }

    #[tokio::test]
    async fn replies_read_as_the_sdk_reads_them() {
        let replies = [
            json!({"output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "c2ln"}}},
                {"reasoningContent": {"redactedContent": "AP9zZWNyZXQ="}},
                {"text": "It is "},
                {"citationsContent": {"content": [{"text": "21 \u{b0}C"}], "citations": [{"title": "t", "location": {"documentChar": {"documentIndex": 0, "start": 1, "end": 5}}}]}},
                {"image": {"format": "png", "source": {"bytes": "iVBORw=="}}},
                {"futureBlock": {"x": 1}},
                {"toolUse": {"toolUseId": "tooluse_9", "name": "lookup", "input": {"q": "x", "n": [1, 2.5, -3]}}}
            ]}}, "stopReason": "tool_use",
              "usage": {"inputTokens": 20, "outputTokens": 5, "totalTokens": 145, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20},
              "metrics": {"latencyMs": 12}, "additionalModelResponseFields": {"x": 1}, "performanceConfig": {"latency": "standard"}}),
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "Sorry."}]}},
              "stopReason": "guardrail_intervened", "usage": {"inputTokens": 3, "outputTokens": 0, "totalTokens": 3}, "metrics": {"latencyMs": 1}}),
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "cut"}]}},
              "stopReason": "a_reason_added_later", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 1}}),
            // What a required member's absence, or its `null`, reads as.
            json!({"output": {"message": {"content": [{"text": "bare"}]}}}),
            json!({"output": {"message": {"role": null, "content": null}}, "stopReason": null, "usage": null, "metrics": null}),
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": "end_turn",
              "usage": {"inputTokens": null, "outputTokens": 4, "totalTokens": null}}),
        ];
        for reply in replies {
            let bytes = Bytes::from(reply.to_string());
            let (client, _) = sdk(bytes.clone());
            let theirs = client
                .converse()
                .model_id("m")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{reply}: {e:?}"));
            let ours = read_output(&bytes).unwrap();
            assert_eq!(
                decode_response(&ours, &meta()).unwrap(),
                decode_response(&theirs, &meta()).unwrap(),
                "{reply}"
            );
            // A missing stop reason is unknown to both (the SDK names it "no value was set").
            assert_eq!(
                crate::format::converse::map_stop_reason(ours.stop_reason()),
                crate::format::converse::map_stop_reason(theirs.stop_reason())
            );
            assert_eq!(ours.usage(), theirs.usage());
        }
        for bad in [&b"not json"[..], br#"{"output": {"message": {"content": [{"reasoningContent": {"redactedContent": "%%"}}]}}}"#] {
            let e = read_output(bad).unwrap_err();
            assert_eq!(e.status().as_u16(), 502, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// The stream's events, each its own frame.
    fn events() -> Vec<(&'static str, Value)> {
        vec![
            (
                "messageStart",
                json!({"role": "assistant", "p": "abcdefgh"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm, "}}, "p": "ab"}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "ok."}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": "AP8="}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"text": "It is \"warm\"."}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 2, "delta": {"citation": {"title": "t"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 2})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tooluse_9", "name": "lookup"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{\"q\":"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 3, "delta": {"toolUse": {"input": "\"x\"}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 3})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 4, "start": {"toolUse": {"toolUseId": "tooluse_10", "name": "bare"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 4})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 5, "start": {"image": {"format": "png"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": null, "delta": {"text": "!"}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 5})),
            ("metadata", json!({"metrics": {"latencyMs": 1}})),
            ("aNewEvent", json!({"x": 1})),
            (
                "messageStop",
                json!({"stopReason": "tool_use", "additionalModelResponseFields": {"x": 1}}),
            ),
            (
                "metadata",
                json!({"usage": {"inputTokens": 20, "outputTokens": 5, "totalTokens": 145, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20}, "metrics": {"latencyMs": 40}, "p": "abc"}),
            ),
        ]
    }

    fn decoded(events: Vec<ConverseStreamOutput>) -> Vec<ChatChunk> {
        let mut decoder = ConverseStreamDecoder::new(meta());
        let mut out = Vec::new();
        for event in &events {
            decoder.push(event, &mut out).unwrap();
        }
        decoder.finish(&mut out).unwrap();
        out
    }

    #[tokio::test]
    async fn stream_events_read_as_the_sdk_reads_them() {
        let mut wire = BytesMut::new();
        for (kind, payload) in events() {
            crate::eventstream::write_event(&mut wire, kind, payload.to_string().as_bytes());
        }
        let (client, _) = sdk(wire.freeze());
        let mut rx = client
            .converse_stream()
            .model_id("m")
            .send()
            .await
            .unwrap()
            .stream;
        let mut theirs = Vec::new();
        while let Some(event) = rx.recv().await.unwrap() {
            theirs.push(event);
        }
        let ours: Vec<ConverseStreamOutput> = events()
            .into_iter()
            .filter_map(|(kind, payload)| read_event(kind, payload.to_string().as_bytes()).unwrap())
            .collect();
        let chunks = decoded(ours);
        assert_eq!(chunks, decoded(theirs));
        assert!(chunks.len() > 10, "{chunks:?}");
    }

    #[test]
    fn a_malformed_event_is_a_protocol_error() {
        for (kind, payload) in [
            ("contentBlockDelta", &b"{"[..]),
            ("contentBlockDelta", br#"{"contentBlockIndex": "one"}"#),
            ("contentBlockDelta", br#"{"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "%"}}}"#),
            ("metadata", br#"{"usage": {"inputTokens": 1e99}}"#),
        ] {
            let e = read_event(kind, payload).unwrap_err();
            assert_eq!(e.status().as_u16(), 502, "{kind} {}", String::from_utf8_lossy(payload));
        }
        assert!(read_event("aNewEvent", b"not even json").unwrap().is_none());
    }
}
