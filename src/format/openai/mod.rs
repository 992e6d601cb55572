//! The OpenAI chat-completions wire format — the canonical format itself, so requests and replies
//! serialize as the [`model`](crate::model) types do. This folder adds what streams and errors
//! need:
//!
//! - [`client_request`]: a client's body → the canonical request ([`client_request::decode`]:
//!   the conversation read by a byte scan when every message is plain text, the rest by serde).
//! - [`client_reply`]: canonical chunks → OpenAI stream events for clients
//!   ([`OpenAiStreamEncoder`]: `chat.completion.chunk`s, then `[DONE]`).
//! - [`upstream_request`]: canonical → the body an OpenAI upstream gets ([`encode_request`]: the
//!   gateway's own extensions removed or mapped).
//! - [`upstream_stream`]: an upstream's SSE body → canonical chunks ([`OpenAiStreamDecoder`]),
//!   in-band `{"error":…}` events included.
//! - [`upstream_reply`]: an upstream's error body and status → [`GatewayError`](crate::error::GatewayError)
//!   ([`decode_error`]).

pub mod client_reply;
pub mod client_request;
pub mod upstream_reply;
pub mod upstream_request;
pub mod upstream_stream;

pub use client_reply::{OpenAiEvent, OpenAiStreamEncoder};
pub use upstream_reply::decode_error;
pub use upstream_request::encode_request;
pub use upstream_stream::OpenAiStreamDecoder;
