//! OpenAI wire format: the canonical types serialize as they are; this module adds the client-side
//! SSE stream encoder.

use bytes::BytesMut;

use super::StreamEncoder;
use crate::error::{ErrorDialect, GatewayError};
use crate::model::ChatChunk;
use crate::sse;

/// Encodes canonical chunks as OpenAI SSE: `data: {chunk}\n\n` … `data: [DONE]\n\n`.
///
/// The usage-only chunk is written only when the client asked for it (`stream_options.include_usage`),
/// so providers can always report usage (for metrics and token limits) without clients seeing a chunk
/// they did not ask for.
#[derive(Debug, Clone)]
pub struct OpenAiSseEncoder {
    include_usage: bool,
}

impl OpenAiSseEncoder {
    /// An encoder; `include_usage` as the client asked.
    pub fn new(include_usage: bool) -> Self {
        OpenAiSseEncoder { include_usage }
    }
}

impl StreamEncoder for OpenAiSseEncoder {
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if chunk.is_usage_only() && !self.include_usage {
            return;
        }
        sse::write_json_event(out, None, chunk);
    }

    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut) {
        sse::write_json_event(out, None, &error.to_body_json(ErrorDialect::OpenAi));
    }

    fn finish(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta, Usage};

    #[test]
    fn drops_usage_chunk_unless_asked() {
        let meta = ChunkMeta::new("m");
        let usage = ChatChunk::usage(&meta, Usage::from_parts(1, 2, 0, 0));
        let mut out = BytesMut::new();
        OpenAiSseEncoder::new(false).encode(&usage, &mut out);
        assert!(out.is_empty());
        OpenAiSseEncoder::new(true).encode(&usage, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("data: {"), "{text}");
        assert!(text.contains("\"choices\":[]"));
        assert!(text.ends_with("\n\n"));

        let mut out = BytesMut::new();
        let mut enc = OpenAiSseEncoder::new(false);
        enc.encode(&ChatChunk::delta(&meta, Delta::text("hi"), None), &mut out);
        enc.finish(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("\"content\":\"hi\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
