//! Canonical ⇄ the Bedrock Converse / ConverseStream API, as `aws-sdk-bedrockruntime` types.
//!
//! The client direction (JSON, for the Bedrock runtime surface's `converse` / `converse-stream`
//! routes) is in [`client_request`] and [`client_reply`], and needs no feature. The upstream
//! direction builds and reads the SDK's types, so it comes with the `bedrock` feature:
//! `encode_request`, `decode_response`, `map_stop_reason`, `ConverseStreamDecoder`, and
//! `json_to_document` / `document_to_json`; and `wire`, those SDK types as Bedrock's JSON, for
//! the gateway's own Bedrock client (the SDK's serializers are private to it). Its mapping
//! decisions (PROTOCOLS 4 and 5):
//!
//! - **Request** (`encode_request` → `ConverseRequest`):
//!   - `system`/`developer` messages (any position) become system text blocks.
//!   - Adjacent same-role turns are merged; tool results go into a user turn together with any
//!     following user text; a `"."` user turn is inserted when the history does not start with a
//!     user message. Blank text is never sent.
//!   - Content: text; `data:` image URLs (png/jpeg/gif/webp, base64-decoded) and `s3://` image
//!     URLs; file parts → image blocks for image MIME types, else document blocks (format from the
//!     MIME type or the file extension; name sanitised to Converse's charset and made unique; a
//!     text block is added when the turn has a document but no text); `input_audio` → audio blocks.
//!     Plain `http(s)` image URLs (unless the provider's media fetcher inlined them first),
//!     `file_id`s and bad base64 are a 400 (this codec does no I/O).
//!   - Assistant `tool_calls` (and the deprecated `function_call`) → `toolUse` blocks with the
//!     parsed arguments as input; `tool` (and `function`) messages → `toolResult` blocks, as a JSON
//!     document when the content is a JSON object or array, else text. Tool-call ids that violate
//!     `[a-zA-Z0-9_.:-]{1,64}` are rewritten deterministically, so calls and results still match.
//!   - `tools` → tool specs; `tool_choice` `auto`/`required`/named → `auto`/`any`/`tool`. Converse
//!     has no `none`: toolChoice is omitted and tools are kept only if the history has tool blocks.
//!     `toolConfig` is always present when the history has tool blocks (Converse rejects the request
//!     otherwise): if the client sent no tools, minimal specs are synthesized for the names used.
//!   - `inferenceConfig`: `maxTokens` (`max_completion_tokens`, `max_tokens`, then the configured
//!     default), `temperature` clamped to 0–1, `topP`, `stopSequences`; omitted when none is set.
//!   - `additionalModelRequestFields`: the reasoning request in the model's spelling
//!     (`ReasoningStyle`: Claude's `thinking`, checked by Claude's rules; Nova 2's
//!     `reasoningConfig`; `reasoning_effort` for gpt-oss, Qwen and DeepSeek; a 400 for models
//!     without reasoning), and `{"top_k": n}` from the `top_k` extension field.
//!   - Cache breakpoints become `cachePoint` blocks after what they mark, where the model caches
//!     ([`crate::format::caching`]); Claude's signed reasoning goes back first in its assistant
//!     turn as `reasoningContent`; `s3://` sources only for the configured buckets, with their
//!     owner; documents carry `context`, and `citations` for Claude.
//! - **Response** (`decode_response`): text joined, tool uses → tool calls (ids preserved),
//!   reasoning text → `reasoning_content` (signed or redacted reasoning also as `thinking_blocks`),
//!   `stopReason` via `map_stop_reason` (`tool_calls` whenever tool calls are present), usage
//!   with cache reads/writes added into `prompt_tokens`, a guardrail's verdict and trace.
//! - **Stream** (`ConverseStreamDecoder`): see its docs; the finish chunk waits for `metadata`
//!   so a usage chunk can follow it.

pub mod client_reply;
pub mod client_request;
#[cfg(feature = "bedrock")]
mod document;
#[cfg(feature = "bedrock")]
mod trace;
#[cfg(feature = "bedrock")]
mod upstream_reply;
#[cfg(feature = "bedrock")]
mod upstream_request;
#[cfg(feature = "bedrock")]
mod upstream_stream;
#[cfg(feature = "bedrock")]
pub(crate) mod wire;

pub use client_reply::{encode_client_response, ConverseEvent, ConverseStreamEncoder};
pub use client_request::decode_client_request;
#[cfg(feature = "bedrock")]
pub use document::{document_to_json, json_to_document};
#[cfg(feature = "bedrock")]
pub use upstream_reply::{decode_response, map_stop_reason};
#[cfg(feature = "bedrock")]
pub use upstream_request::{
    encode_request, ConverseOptions, ConverseRequest, ReasoningStyle, S3Buckets,
};
#[cfg(feature = "bedrock")]
pub use upstream_stream::ConverseStreamDecoder;
