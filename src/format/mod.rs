//! Pure wire-format codecs, both directions, one folder per dialect.
//!
//! Every dialect folder names its files by the side they speak to:
//!
//! | File | Direction |
//! |---|---|
//! | `client_request.rs` | a client's body in this dialect → the canonical request |
//! | `client_reply.rs` | the canonical reply → this dialect's complete reply and typed stream events |
//! | `upstream_request.rs` | the canonical request → an upstream body in this dialect |
//! | `upstream_reply.rs` | an upstream's complete reply in this dialect → canonical |
//! | `upstream_stream.rs` | an upstream's stream in this dialect → canonical chunks |
//!
//! - [`openai`]: the canonical format itself: its stream events for clients, its SSE stream and
//!   errors from upstreams.
//! - [`bedrock_claude`]: Anthropic Messages bodies (as Bedrock and the Anthropic API take them).
//! - [`bedrock_titan`]: Titan text bodies.
//! - [`converse`]: the Bedrock Converse API — JSON on the client side, the `aws-sdk-bedrockruntime`
//!   types on the upstream side.
//! - [`embeddings`]: OpenAI's `/v1/embeddings` on the client side, the Titan and Cohere embedding
//!   bodies on the upstream side.
//! - [`responses`]: the OpenAI Responses API (`/v1/responses`) on the client side, over the
//!   canonical chat model.
//!
//! What every dialect shares has a module of its own, so each rule is written once:
//! [`caching`] (prompt-cache breakpoints and where models keep them), [`reasoning`] (what a request
//! asks of extended thinking), [`structured`] (JSON outputs for models without a JSON mode),
//! [`data_url`] (the one `data:` URL parser) and `blocks` (the block sequencer of the block-based
//! stream encoders).
//!
//! Everything here is synchronous and does no I/O, so it is unit-tested and benchmarked without
//! sockets. Streams are state machines per direction: upstream decoders implement
//! [`StreamDecoder`](crate::stream::StreamDecoder), client encoders
//! [`EventEncoder`](crate::stream::EventEncoder); neither knows the wire's framing.
//!
//! ```
//! use open_bedrock_server::format::{InboundFormat, TargetFormat};
//!
//! assert_eq!(TargetFormat::parse("bedrock_claude"), Some(TargetFormat::BedrockClaude));
//! assert_eq!(TargetFormat::parse("xml"), None);
//! assert_eq!(InboundFormat::BedrockTitan.as_str(), "bedrock_titan");
//! ```

pub mod bedrock_claude;
pub mod bedrock_titan;
pub(crate) mod blocks;
pub mod caching;
pub mod converse;
pub mod data_url;
pub mod embeddings;
pub mod openai;
pub mod reasoning;
pub mod responses;
pub mod scan;
pub mod structured;

use crate::error::ErrorDialect;
use crate::model::Usage;

/// Where a guardrail's verdict travels in canonical replies (a member of the completion, or of the
/// stream's finish chunk, as InvokeModel writes it in its bodies): `INTERVENED` or `NONE`.
pub(crate) const GUARDRAIL_ACTION: &str = "amazon-bedrock-guardrailAction";

/// Where a guardrail's trace travels in canonical replies: `{"guardrail": {…}}`, as InvokeModel
/// writes it.
pub(crate) const BEDROCK_TRACE: &str = "amazon-bedrock-trace";

/// The format a client wrote its request body in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum InboundFormat {
    /// OpenAI chat completions (`model` + `messages`).
    #[default]
    OpenAi,
    /// A Claude (Anthropic Messages) body: `anthropic_version` present on the chat route, any
    /// body on `/v1/messages`, a Claude body on Bedrock `invoke`.
    BedrockClaude,
    /// A Bedrock Titan text body (`inputText` present).
    BedrockTitan,
    /// A Bedrock Converse request (`converse` / `converse-stream`).
    Converse,
    /// An OpenAI embeddings request (`POST /v1/embeddings`).
    Embeddings,
    /// An OpenAI Responses API request (`POST /v1/responses`).
    Responses,
}

impl InboundFormat {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundFormat::OpenAi => "openai",
            InboundFormat::BedrockClaude => "bedrock_claude",
            InboundFormat::BedrockTitan => "bedrock_titan",
            InboundFormat::Converse => "converse",
            InboundFormat::Embeddings => "embeddings",
            InboundFormat::Responses => "responses",
        }
    }
}

/// How a reply is written: the client's format, the wire a stream goes out on, and the error
/// shape. Chosen per request by the route's classifier ([`crate::detect::Classify`]).
///
/// | Reply | Complete | Stream | Errors |
/// |---|---|---|---|
/// | `OpenAi` | `chat.completion` JSON | SSE chunks + `[DONE]` | OpenAI |
/// | `Claude` | Anthropic message JSON | Anthropic SSE events | Anthropic |
/// | `Titan` | Titan `results` JSON | SSE Titan chunks | OpenAI |
/// | `BedrockInvokeClaude` | Claude JSON + token-count headers | event-stream `chunk` frames of Claude events | Bedrock |
/// | `BedrockInvokeTitan` | Titan JSON + token-count headers | event-stream `chunk` frames of Titan chunks | Bedrock |
/// | `BedrockConverse` | Converse JSON | ConverseStream event frames | Bedrock |
/// | `Embeddings` | OpenAI embeddings `list` JSON | — | OpenAI |
/// | `Responses` | Responses API `response` JSON | typed Responses SSE events | OpenAI |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ReplyFormat {
    /// OpenAI chat completions.
    #[default]
    OpenAi,
    /// Anthropic Messages over HTTP (`/v1/messages`, `?target_format=bedrock_claude`).
    Claude,
    /// Titan text over HTTP (`?target_format=bedrock_titan`).
    Titan,
    /// Bedrock `invoke` / `invoke-with-response-stream` with a Claude body.
    BedrockInvokeClaude,
    /// Bedrock `invoke` / `invoke-with-response-stream` with a Titan body.
    BedrockInvokeTitan,
    /// Bedrock `converse` / `converse-stream`.
    BedrockConverse,
    /// OpenAI embeddings (`/v1/embeddings`).
    Embeddings,
    /// The OpenAI Responses API (`/v1/responses`).
    Responses,
}

impl ReplyFormat {
    /// The error shape clients of this reply read.
    pub fn error_dialect(self) -> ErrorDialect {
        match self {
            ReplyFormat::OpenAi
            | ReplyFormat::Titan
            | ReplyFormat::Embeddings
            | ReplyFormat::Responses => ErrorDialect::OpenAi,
            ReplyFormat::Claude => ErrorDialect::Anthropic,
            ReplyFormat::BedrockInvokeClaude
            | ReplyFormat::BedrockInvokeTitan
            | ReplyFormat::BedrockConverse => ErrorDialect::Bedrock,
        }
    }

    /// The name used in logs and metrics (`format_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyFormat::OpenAi => "openai",
            ReplyFormat::Claude | ReplyFormat::BedrockInvokeClaude => "bedrock_claude",
            ReplyFormat::Titan | ReplyFormat::BedrockInvokeTitan => "bedrock_titan",
            ReplyFormat::BedrockConverse => "converse",
            ReplyFormat::Embeddings => "embeddings",
            ReplyFormat::Responses => "responses",
        }
    }
}

impl From<TargetFormat> for ReplyFormat {
    fn from(target: TargetFormat) -> Self {
        match target {
            TargetFormat::OpenAi => ReplyFormat::OpenAi,
            TargetFormat::BedrockClaude => ReplyFormat::Claude,
            TargetFormat::BedrockTitan => ReplyFormat::Titan,
        }
    }
}

/// The format a client reads its reply in, as `?target_format=` names it on
/// `/v1/chat/completions` (see [`ReplyFormat`] for every reply the gateway writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
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

/// Bedrock's `amazon-bedrock-invocationMetrics`: what the last event of an InvokeModel stream
/// carries (the Claude and Titan stream encoders add it on the Bedrock runtime surface).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct InvocationMetrics {
    /// Input tokens, cache reads and writes excluded.
    pub input_token_count: u64,
    /// Output tokens.
    pub output_token_count: u64,
    /// Not measured by the gateway: always 0.
    pub invocation_latency: u64,
    /// Not measured by the gateway: always 0.
    pub first_byte_latency: u64,
    /// Tokens read from the prompt cache, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_token_count: Option<u64>,
    /// Tokens written to the prompt cache, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_input_token_count: Option<u64>,
}

impl InvocationMetrics {
    /// The metrics for a reply's canonical usage.
    pub fn of(usage: &Usage) -> Self {
        let (read, write) = (usage.cached_tokens(), usage.cache_write_tokens());
        InvocationMetrics {
            input_token_count: usage.uncached_input_tokens(),
            output_token_count: usage.completion_tokens,
            invocation_latency: 0,
            first_byte_latency: 0,
            cache_read_input_token_count: (read > 0).then_some(read),
            cache_write_input_token_count: (write > 0).then_some(write),
        }
    }
}
