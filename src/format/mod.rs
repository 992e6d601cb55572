//! Pure wire-format codecs, both directions, one folder per dialect.
//!
//! - [`openai`]: the canonical format itself — SSE chunk encoding for OpenAI clients.
//! - [`bedrock_claude`]: Anthropic Messages bodies as Bedrock takes them. Upstream direction:
//!   canonical request → Claude body, Claude response/stream events → canonical. Client direction:
//!   Claude body → canonical request, canonical reply → Claude response / Claude SSE events.
//! - [`bedrock_titan`]: Titan text bodies, both directions likewise.
//! - [`converse`]: canonical ⇄ the Bedrock Converse API types of `aws-sdk-bedrockruntime`
//!   (upstream direction only: clients never write Converse to `/v1/chat/completions`).
//!
//! Everything here is synchronous and does no I/O, so it is unit-tested and benchmarked without
//! sockets. Streaming translation is a state machine per direction: `push(event, &mut out)` appends
//! zero or more outputs, `finish(&mut out)` closes the stream.

pub mod bedrock_claude;
pub mod bedrock_titan;
pub mod converse;
pub mod openai;

use bytes::BytesMut;

use crate::error::{ErrorDialect, GatewayError};
use crate::model::ChatChunk;

/// The format a client wrote its request body in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InboundFormat {
    /// OpenAI chat completions (`model` + `messages`).
    #[default]
    OpenAi,
    /// A Bedrock Claude (Anthropic Messages) body (`anthropic_version` present).
    BedrockClaude,
    /// A Bedrock Titan text body (`inputText` present).
    BedrockTitan,
}

impl InboundFormat {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundFormat::OpenAi => "openai",
            InboundFormat::BedrockClaude => "bedrock_claude",
            InboundFormat::BedrockTitan => "bedrock_titan",
        }
    }
}

/// The format a client reads its reply in (`?target_format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetFormat {
    /// OpenAI chat completion / SSE chunks ending in `data: [DONE]`.
    #[default]
    OpenAi,
    /// Anthropic Messages response / SSE event sequence.
    BedrockClaude,
    /// Titan `results` response / Titan chunks.
    BedrockTitan,
}

impl TargetFormat {
    /// All accepted `target_format` values.
    pub const ACCEPTED: &'static str = "openai, bedrock_claude, bedrock_titan";

    /// Parses a `target_format` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "openai" => Some(TargetFormat::OpenAi),
            "bedrock_claude" => Some(TargetFormat::BedrockClaude),
            "bedrock_titan" => Some(TargetFormat::BedrockTitan),
            _ => None,
        }
    }

    /// The name used in logs, metrics and the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetFormat::OpenAi => "openai",
            TargetFormat::BedrockClaude => "bedrock_claude",
            TargetFormat::BedrockTitan => "bedrock_titan",
        }
    }

    /// The error shape clients of this format read.
    pub fn error_dialect(self) -> ErrorDialect {
        match self {
            TargetFormat::BedrockClaude => ErrorDialect::Anthropic,
            TargetFormat::OpenAi | TargetFormat::BedrockTitan => ErrorDialect::OpenAi,
        }
    }
}

/// Turns canonical chunks into the bytes of one client-facing stream format.
///
/// Implemented by [`openai::OpenAiSseEncoder`], [`bedrock_claude::ClaudeSseEncoder`] and
/// [`bedrock_titan::TitanChunkEncoder`]. Each call appends complete events to `out`, so the body can
/// flush after every call.
pub trait StreamEncoder: Send + 'static {
    /// Appends the events for one canonical chunk (possibly none).
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut);
    /// Appends the in-band error event; the stream ends after it.
    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut);
    /// Appends whatever closes a normal stream (`data: [DONE]`, `message_stop`, …).
    fn finish(&mut self, out: &mut BytesMut);
}
