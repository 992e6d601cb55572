//! The canonical model: OpenAI chat-completions types, and the typed core's call and reply.
//!
//! Every inbound format decodes into [`ChatRequest`]; every outbound format encodes from
//! [`ChatResponse`] or a stream of [`ChatChunk`]s. The typed core (retry → timeouts → dispatch →
//! provider) is a `Service<ChatCall, Response = ChatReply, Error = GatewayError>`.

mod call;
mod request;
mod response;

pub use call::{
    Attempt, AttemptOutcome, CallContext, CallRecord, ChatCall, ChatReply, ChunkStream,
    OriginalBody,
};
pub use request::{
    ChatRequest, ContentPart, FilePart, FunctionCall, FunctionDefinition, ImageUrl, Message,
    MessageContent, Role, Stop, StreamOptions, Tool, ToolCall, ToolChoice, ToolChoiceKind,
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
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("chatcmpl-{prefix:016x}{n:08x}")
}
