//! The canonical model: OpenAI chat-completions types, and the typed core's call and reply.
//!
//! Every inbound format decodes into [`ChatRequest`]; every outbound format encodes from
//! [`ChatResponse`] or a stream of [`ChatChunk`]s. The typed core (retry → timeouts → dispatch →
//! provider) is a `Service<ChatCall, Response = ChatReply, Error = GatewayError>`, and the same
//! stack a `Service<EmbeddingsCall, Response = EmbeddingsResponse>` for `/v1/embeddings`
//! ([`EmbeddingsRequest`]).
//!
//! The types are `#[non_exhaustive]`: build them with their constructors (or `Default`) and set
//! fields afterwards. Fields the gateway does not know are kept in `extra`, so a request reaches
//! an OpenAI upstream with everything the client sent.
//!
//! ```
//! use open_bedrock_server::model::{
//!     ChatRequest, ChatResponse, ChunkMeta, Message, ResponseMessage, Role, ToolCall, Usage,
//! };
//!
//! // Unknown fields survive a round trip.
//! let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"seed":7}"#;
//! let request: ChatRequest = serde_json::from_str(body).unwrap();
//! assert_eq!(request.extra["seed"], 7);
//! assert_eq!(serde_json::to_value(&request).unwrap()["seed"], 7);
//!
//! // Built in code: constructors, then fields.
//! let mut request = ChatRequest::new("gpt-4o", vec![Message::text(Role::User, "Weather in Paris?")]);
//! request.max_completion_tokens = Some(64);
//! assert_eq!(request.max_output_tokens(), Some(64));
//!
//! let call = ToolCall::function("call_1", "get_weather", r#"{"city":"Paris"}"#);
//! let reply = ChatResponse::new(
//!     &ChunkMeta::new("gpt-4o"),
//!     ResponseMessage::assistant(None, Some(vec![call])),
//!     "tool_calls",
//!     Some(Usage::from_parts(12, 8, 0, 0)),
//! );
//! assert_eq!(reply.object, "chat.completion");
//! assert_eq!(reply.usage.unwrap().total_tokens, 20);
//! ```

mod call;
mod embeddings;
mod listing;
mod relayed;
mod request;
mod response;

pub(crate) use call::StreamWrapper;
pub use call::{
    Attempt, AttemptOutcome, Call, CallContext, CallRecord, CallRequest, ChatCall, ChatReply,
    ChunkStream, OriginalBody,
};
pub use embeddings::{
    Embedding, EmbeddingInput, EmbeddingsCall, EmbeddingsRequest, EmbeddingsResponse,
    EmbeddingsUsage,
};
pub use listing::ModelObject;
pub use relayed::{RelayedBody, RelayedEvent, RelayedReply, RelayedStream};
pub(crate) use request::function_kind;
pub use request::{
    CacheControl, ChatRequest, ContentPart, FilePart, FunctionCall, FunctionDefinition,
    GuardrailConfig, ImageUrl, Message, MessageContent, Role, Stop, StreamOptions, ThinkingBlock,
    ThinkingConfig, Tool, ToolCall, ToolChoice, ToolChoiceKind,
};
pub use response::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, ChunkMeta, Delta, FunctionCallDelta,
    PromptTokensDetails, ResponseMessage, ToolCallDelta, Usage,
};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// OpenAI `finish_reason` values.
pub mod finish_reason {
    /// Natural end or a stop sequence.
    pub const STOP: &str = "stop";
    /// Token limit reached.
    pub const LENGTH: &str = "length";
    /// The model called tools.
    pub const TOOL_CALLS: &str = "tool_calls";
    /// Content omitted by a filter.
    pub const CONTENT_FILTER: &str = "content_filter";
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh `chatcmpl-…` id: unique per process (a random prefix chosen at start-up plus a counter),
/// without a syscall or a lock per call.
pub fn completion_id() -> String {
    const KIND: &str = "chatcmpl-";
    let mut out = String::with_capacity(KIND.len() + 32);
    // A `String` takes every write.
    let _ = write_fresh_id(&mut out, KIND);
    out
}

/// `kind` followed by the process's random prefix (16 hex digits) and the next value of a counter
/// (at least 8 hex digits), written into `out`: the gateway's ids (`chatcmpl-…` by
/// [`completion_id`], the `req-…` request ids straight into their fixed buffer). On an error `out`
/// may hold the part written before it.
pub(crate) fn write_fresh_id(out: &mut impl std::fmt::Write, kind: &str) -> std::fmt::Result {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    out.write_str(kind)?;
    crate::digits::write_hex(out, prefix, 16)?;
    crate::digits::write_hex(out, n, 8)
}

#[cfg(test)]
mod id_tests {
    use super::*;

    /// Ids are the kind, 16 hex digits of prefix and at least 8 of counter; never the same twice.
    #[test]
    fn ids_are_unique_and_shaped() {
        let id = completion_id();
        assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 24, "{id}");
        assert_ne!(completion_id(), completion_id());
    }
}
