//! Titan InvokeModelWithResponseStream chunks → canonical [`ChatChunk`]s.

use serde::Deserialize;

use super::upstream_reply::map_completion_reason;
use crate::error::GatewayError;
use crate::model::{ChatChunk, ChunkMeta, Delta, Usage};

/// One Titan stream chunk (the JSON inside an event-stream `chunk.bytes`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanChunk {
    #[serde(default)]
    output_text: Option<String>,
    #[serde(default)]
    total_output_text_token_count: Option<u64>,
    #[serde(default)]
    completion_reason: Option<String>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
    #[serde(default, rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<InvocationMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvocationMetrics {
    #[serde(default)]
    input_token_count: Option<u64>,
    #[serde(default)]
    output_token_count: Option<u64>,
}

/// Turns Titan stream chunks into canonical chunks.
///
/// The first chunk opens with the role delta; each non-empty `outputText` is a text delta; the chunk
/// with a non-null `completionReason` (possibly the only one) adds the finish chunk and then always a
/// usage chunk, from the invocation metrics when present, else from `inputTextTokenCount` and the
/// last `totalOutputTextTokenCount`. Chunks after the completion are ignored.
#[derive(Debug)]
pub struct TitanStreamDecoder {
    meta: ChunkMeta,
    started: bool,
    finished: bool,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl TitanStreamDecoder {
    /// A decoder for one stream; chunks carry `meta`'s id, created and model.
    pub fn new(meta: ChunkMeta) -> Self {
        TitanStreamDecoder {
            meta,
            started: false,
            finished: false,
            input_tokens: None,
            output_tokens: None,
        }
    }

    /// Decodes one chunk's JSON and appends the resulting canonical chunks to `out`.
    pub fn push(
        &mut self,
        chunk_json: &[u8],
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), GatewayError> {
        let chunk: TitanChunk = serde_json::from_slice(chunk_json).map_err(|e| {
            GatewayError::upstream_protocol(format!("malformed Titan stream chunk: {e}"))
        })?;
        if self.finished {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(ChatChunk::delta(&self.meta, Delta::role(), None));
        }
        if let Some(n) = chunk.input_text_token_count {
            self.input_tokens = Some(n);
        }
        if let Some(n) = chunk.total_output_text_token_count {
            self.output_tokens = Some(n);
        }
        if let Some(text) = chunk.output_text.filter(|t| !t.is_empty()) {
            out.push(ChatChunk::delta(&self.meta, Delta::text(text), None));
        }
        if let Some(reason) = chunk.completion_reason {
            self.finished = true;
            out.push(ChatChunk::delta(
                &self.meta,
                Delta::default(),
                Some(map_completion_reason(&reason)),
            ));
            let metrics = chunk.metrics.as_ref();
            let input = metrics
                .and_then(|m| m.input_token_count)
                .or(self.input_tokens)
                .unwrap_or(0);
            let output = metrics
                .and_then(|m| m.output_token_count)
                .or(self.output_tokens)
                .unwrap_or(0);
            out.push(ChatChunk::usage(
                &self.meta,
                Usage::from_parts(input, output, 0, 0),
            ));
        }
        Ok(())
    }

    /// Closes the stream: an error if no chunk carried a `completionReason`.
    pub fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        if self.finished {
            Ok(())
        } else {
            Err(GatewayError::upstream_protocol(
                "stream ended before completion",
            ))
        }
    }
}

impl crate::stream::StreamDecoder for TitanStreamDecoder {
    /// The JSON of one InvokeModelWithResponseStream `chunk` payload.
    type Item = bytes::Bytes;

    fn push(&mut self, item: bytes::Bytes, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        TitanStreamDecoder::push(self, &item, out)
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        TitanStreamDecoder::finish(self, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn meta() -> ChunkMeta {
        ChunkMeta {
            id: "chatcmpl-s".into(),
            created: 7,
            model: "titan".into(),
        }
    }

    fn values(chunks: &[ChatChunk]) -> Vec<Value> {
        chunks
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect()
    }

    fn chunk(choice: Value) -> Value {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7, "model": "titan",
               "choices": [choice]})
    }

    #[test]
    fn multi_chunk_stream_uses_invocation_metrics() {
        let mut dec = TitanStreamDecoder::new(meta());
        let mut out = Vec::new();
        dec.push(
            br#"{"outputText":" Soft rain","index":0,"totalOutputTextTokenCount":4,"completionReason":null,"inputTextTokenCount":9}"#,
            &mut out,
        )
        .unwrap();
        dec.push(
            br#"{"outputText":"","index":1,"totalOutputTextTokenCount":4,"completionReason":null,"inputTextTokenCount":null}"#,
            &mut out,
        )
        .unwrap();
        dec.push(
            br#"{"outputText":" falls.","index":2,"totalOutputTextTokenCount":6,"completionReason":"FINISH","inputTextTokenCount":null,
                "amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":7,"invocationLatency":5,"firstByteLatency":2}}"#,
            &mut out,
        )
        .unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(
            values(&out),
            vec![
                chunk(
                    json!({"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"logprobs":null})
                ),
                chunk(
                    json!({"index":0,"delta":{"content":" Soft rain"},"finish_reason":null,"logprobs":null})
                ),
                chunk(
                    json!({"index":0,"delta":{"content":" falls."},"finish_reason":null,"logprobs":null})
                ),
                chunk(json!({"index":0,"delta":{},"finish_reason":"stop","logprobs":null})),
                json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 7, "model": "titan",
                       "choices": [], "usage": {"prompt_tokens":10,"completion_tokens":7,"total_tokens":17}}),
            ]
        );
    }

    #[test]
    fn single_chunk_without_metrics_falls_back_to_counts() {
        let mut dec = TitanStreamDecoder::new(meta());
        let mut out = Vec::new();
        dec.push(
            br#"{"outputText":"Hi","index":0,"totalOutputTextTokenCount":1,"completionReason":"LENGTH","inputTextTokenCount":3}"#,
            &mut out,
        )
        .unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[1].choices[0].delta.content.as_deref(), Some("Hi"));
        assert_eq!(out[2].choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(out[3].usage, Some(Usage::from_parts(3, 1, 0, 0)));
        // Anything after the completion is ignored.
        dec.push(
            br#"{"outputText":"more","completionReason":null}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn ended_before_completion_is_an_error() {
        let mut dec = TitanStreamDecoder::new(meta());
        let mut out = Vec::new();
        dec.push(
            br#"{"outputText":"Hi","index":0,"completionReason":null}"#,
            &mut out,
        )
        .unwrap();
        let err = dec.finish(&mut out).unwrap_err();
        assert_eq!(err.status().as_u16(), 502);
        assert_eq!(err.message(), "stream ended before completion");
        assert!(TitanStreamDecoder::new(meta()).finish(&mut out).is_err());
    }

    #[test]
    fn malformed_chunk_is_an_error() {
        let mut dec = TitanStreamDecoder::new(meta());
        let mut out = Vec::new();
        let err = dec.push(b"[1,2]", &mut out).unwrap_err();
        assert_eq!(err.code(), Some("upstream_protocol_error"));
        assert!(out.is_empty());
    }
}
