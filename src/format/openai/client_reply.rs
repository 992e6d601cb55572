//! Canonical chunks → the OpenAI stream events clients read.

use serde::{Serialize, Serializer};

use crate::model::ChatChunk;
use crate::stream::{EventEncoder, Framer, WireEvent};

/// One OpenAI stream event: a chunk, or the closing `[DONE]`.
#[derive(Debug)]
pub enum OpenAiEvent<'a> {
    /// A `chat.completion.chunk`.
    Chunk(&'a ChatChunk),
    /// `[DONE]`.
    Done,
}

impl Serialize for OpenAiEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OpenAiEvent::Chunk(chunk) => chunk.serialize(serializer),
            OpenAiEvent::Done => serializer.serialize_str("[DONE]"),
        }
    }
}

impl WireEvent for OpenAiEvent<'_> {
    fn literal(&self) -> Option<&'static [u8]> {
        match self {
            OpenAiEvent::Done => Some(b"[DONE]"),
            OpenAiEvent::Chunk(_) => None,
        }
    }
}

/// Canonical chunks → OpenAI stream events, `[DONE]` at the end.
///
/// The usage-only chunk goes out only when the client asked for it (`stream_options.include_usage`),
/// so providers can always report usage (for metrics and token limits) without clients seeing a
/// chunk they did not ask for.
#[derive(Debug, Clone)]
pub struct OpenAiStreamEncoder {
    include_usage: bool,
}

impl OpenAiStreamEncoder {
    /// An encoder; `include_usage` as the client asked.
    pub fn new(include_usage: bool) -> Self {
        OpenAiStreamEncoder { include_usage }
    }
}

impl EventEncoder for OpenAiStreamEncoder {
    fn encode<F: Framer>(&mut self, chunk: &ChatChunk, out: &mut F) {
        if chunk.is_usage_only() && !self.include_usage {
            return;
        }
        out.event(&OpenAiEvent::Chunk(chunk));
    }

    fn finish<F: Framer>(&mut self, out: &mut F) {
        out.event(&OpenAiEvent::Done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDialect;
    use crate::model::{ChunkMeta, Delta, Usage};
    use crate::sse::SseFramer;

    #[test]
    fn drops_usage_chunk_unless_asked() {
        let meta = ChunkMeta::new("m");
        let usage = ChatChunk::usage(&meta, Usage::from_parts(1, 2, 0, 0));
        let mut out = SseFramer::new(ErrorDialect::OpenAi);
        OpenAiStreamEncoder::new(false).encode(&usage, &mut out);
        assert!(out.take().is_empty());
        OpenAiStreamEncoder::new(true).encode(&usage, &mut out);
        let bytes = out.take();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("data: {"), "{text}");
        assert!(text.contains("\"choices\":[]"));
        assert!(text.ends_with("\n\n"));

        let mut enc = OpenAiStreamEncoder::new(false);
        enc.encode(&ChatChunk::delta(&meta, Delta::text("hi"), None), &mut out);
        enc.finish(&mut out);
        let bytes = out.take();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"content\":\"hi\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
