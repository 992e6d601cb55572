//! Bedrock Claude (Anthropic Messages) bodies, both directions.
//!
//! **Upstream direction** (the gateway calls Claude on Bedrock for a canonical request):
//! - [`upstream_request`]: canonical [`ChatRequest`](crate::model::ChatRequest) → InvokeModel body
//!   ([`encode_request`]), plus [`native_body`] for a client's own Claude body forwarded as written.
//! - [`upstream_reply`]: InvokeModel response JSON → canonical [`ChatResponse`](crate::model::ChatResponse).
//! - [`upstream_stream`]: InvokeModelWithResponseStream event JSON → canonical chunks ([`ClaudeStreamDecoder`]).
//!
//! **Client direction** (a client speaks Claude to the gateway, whatever model serves it):
//! - [`client_request`]: a client's Claude-format body → canonical request ([`decode_client_request`]).
//! - [`client_reply`]: canonical reply → Anthropic Messages response ([`encode_client_response`]) or
//!   typed Anthropic stream events ([`ClaudeStreamEncoder`]).
//!
//! Everything is synchronous and allocation-light; nothing here does I/O. Bedrock validates Claude
//! bodies against a JSON schema and rejects unknown keys, nulls and blank text, so the upstream
//! encoder only ever writes keys it knows Bedrock accepts.

pub mod client_reply;
pub mod client_request;
pub(crate) mod thinking;
pub mod upstream_reply;
pub mod upstream_request;
pub mod upstream_stream;

pub use client_reply::{encode_client_response, ClaudeEvent, ClaudeStreamEncoder};
pub use client_request::decode_client_request;
pub use upstream_reply::{decode_response, map_stop_reason};
pub use upstream_request::{
    check_native, encode_request, encode_request_bytes, native_body, ClaudeRequestOptions,
};
pub use upstream_stream::ClaudeStreamDecoder;

/// The `anthropic_version` Bedrock requires in every Claude body.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
