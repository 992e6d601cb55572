//! Bedrock Titan text bodies (`amazon.titan-text-*`), both directions.
//!
//! Titan takes one prompt string and a small sampling config; it has no roles, no tools and no
//! images. The mapping decisions (PROTOCOLS 3.2, 5.1–5.7, 5.9):
//!
//! - **Upstream request** ([`encode_request`]): the conversation is flattened into `inputText` —
//!   every `system`/`developer` text first (joined with `\n`, then a blank line), then one
//!   `User: …` / `Bot: …` line per turn, ending in `Bot:` so the model answers as the bot.
//!   `textGenerationConfig` carries only the keys that are set (`maxTokenCount`, `temperature`
//!   clamped to 0–1, `topP`, `stopSequences`) and is omitted when empty; no key is ever `null`.
//!   Titan accepts at most one stop sequence, and only `^(\|+|User:)$`: other stop strings are
//!   dropped from the body and reported by [`unsupported_stops`] so the provider can truncate
//!   client-side. Tools, tool calls, tool results, images and files cannot be expressed and are a
//!   400 naming the parameter (`tools`, `tool_choice`, `messages`); so is `n > 1`.
//! - **Upstream response** ([`decode_response`]) and **stream** ([`TitanStreamDecoder`]):
//!   `results[0].outputText` is the content; `completionReason` maps through
//!   [`map_completion_reason`]; usage is `inputTextTokenCount` / `tokenCount` (stream: the
//!   invocation metrics of the last chunk, else the last `totalOutputTextTokenCount`). The stream
//!   decoder always emits a usage chunk after the finish chunk.
//! - **Client request** ([`decode_client_request`]): a Titan body sent to the gateway is parsed
//!   back into turns when `inputText` has `User:`/`Bot:` markers at line starts (the inverse of the
//!   flattening above), else the whole text is one user message. [`native_body`] forwards such a
//!   body unchanged (minus routing-only keys) when the upstream is Titan too.
//! - **Client response** ([`encode_client_response`], [`TitanStreamEncoder`]): canonical replies in
//!   Titan's shape. Tool calls, which Titan cannot carry, are appended to `outputText` as one JSON
//!   line each (OpenAI `tool_calls[]` item shape) so nothing is silently lost; reasoning text is
//!   dropped (Titan has no place for it).

mod client_reply;
mod client_request;
mod upstream_reply;
mod upstream_request;
mod upstream_stream;

pub use client_reply::{encode_client_response, TitanChunkEvent, TitanStreamEncoder};
pub use client_request::decode_client_request;
pub use upstream_reply::{decode_response, map_completion_reason};
pub use upstream_request::{
    encode_request, encode_request_bytes, native_body, unsupported_stops, TitanRequestOptions,
};
pub use upstream_stream::TitanStreamDecoder;
