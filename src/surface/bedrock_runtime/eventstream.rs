//! Canonical chunks → AWS event-stream bodies (PROTOCOLS 2.6), for
//! `invoke-with-response-stream` and `converse-stream`.
//!
//! Frames are written with `aws-smithy-eventstream`, so lengths, CRCs and header encoding are the
//! SDKs' own. Two [`StreamEncoder`]s:
//!
//! - [`InvokeStreamEncoder`] wraps a model-native SSE encoder (Claude or Titan) and turns each of
//!   its events into a `chunk` frame whose payload is `{"bytes":"<base64 of the event JSON>"}`; the
//!   last event (Claude `message_stop`, Titan's final chunk) gains
//!   `amazon-bedrock-invocationMetrics` when usage is known, as Bedrock's does.
//! - [`ConverseStreamEncoder`] frames the events of
//!   [`crate::format::converse::client::ConverseEventEncoder`].
//!
//! A mid-stream error becomes one exception frame (`:message-type: exception`) and the stream ends.
//!
//! ```
//! use bytes::BytesMut;
//! use open_bedrock_server::surface::bedrock_runtime::eventstream::write_event;
//!
//! let mut out = BytesMut::new();
//! write_event(&mut out, "chunk", br#"{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="}"#);
//! // The worked example of PROTOCOLS 2.6: 135 bytes, same prelude.
//! assert_eq!(out.len(), 135);
//! assert_eq!(&out[..8], &[0, 0, 0, 0x87, 0, 0, 0, 0x4b]);
//! ```

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::format::converse::client::ConverseEventEncoder;
use crate::format::StreamEncoder;
use crate::model::{ChatChunk, Usage};
use crate::sse::SseDecoder;

fn write(out: &mut BytesMut, message: &Message) {
    let mut buf = Vec::with_capacity(message.payload().len() + 128);
    // Writing into memory only fails for a header or payload beyond the format's limits, which
    // our own events never reach.
    if aws_smithy_eventstream::frame::write_message_to(message, &mut buf).is_ok() {
        out.extend_from_slice(&buf);
    }
}

fn string(value: &'static str) -> HeaderValue {
    HeaderValue::String(value.into())
}

/// Appends one event message (`:message-type: event`, `:event-type: <event_type>`, JSON payload).
pub fn write_event(out: &mut BytesMut, event_type: &str, payload: &[u8]) {
    let message = Message::new(Bytes::copy_from_slice(payload))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.to_owned().into()),
        ))
        .add_header(Header::new(":content-type", string("application/json")))
        .add_header(Header::new(":message-type", string("event")));
    write(out, &message);
}

/// Appends one exception message with payload `{"message": …}`.
pub fn write_exception(out: &mut BytesMut, exception_type: &str, message: &str) {
    let payload = serde_json::to_vec(&json!({"message": message})).unwrap_or_default();
    let message = Message::new(Bytes::from(payload))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(exception_type.to_owned().into()),
        ))
        .add_header(Header::new(":content-type", string("application/json")))
        .add_header(Header::new(":message-type", string("exception")));
    write(out, &message);
}

/// The stream exception member (lowerCamel, as in Bedrock's stream unions) for an error.
pub fn exception_type(error: &GatewayError) -> &'static str {
    match error.status().as_u16() {
        400 | 413 | 422 => "validationException",
        408 | 504 => "modelTimeoutException",
        429 => "throttlingException",
        503 => "serviceUnavailableException",
        500 => "internalServerException",
        _ => "modelStreamErrorException",
    }
}

/// `amazon-bedrock-invocationMetrics` for `usage`.
fn invocation_metrics(usage: &Usage) -> Value {
    let mut m = json!({
        "inputTokenCount": usage.prompt_tokens.saturating_sub(usage.cached_tokens()).saturating_sub(usage.cache_write_tokens()),
        "outputTokenCount": usage.completion_tokens,
        "invocationLatency": 0,
        "firstByteLatency": 0,
    });
    if usage.cached_tokens() > 0 {
        m["cacheReadInputTokenCount"] = Value::from(usage.cached_tokens());
    }
    if usage.cache_write_tokens() > 0 {
        m["cacheWriteInputTokenCount"] = Value::from(usage.cache_write_tokens());
    }
    m
}

/// `invoke-with-response-stream`: a model-native SSE encoder's events as `chunk` frames.
#[derive(Debug)]
pub struct InvokeStreamEncoder<E> {
    inner: E,
    scratch: BytesMut,
    sse: SseDecoder,
    usage: Option<Usage>,
    stopped: bool,
}

impl<E: StreamEncoder> InvokeStreamEncoder<E> {
    /// Frames the events `inner` writes.
    pub fn new(inner: E) -> Self {
        InvokeStreamEncoder {
            inner,
            scratch: BytesMut::new(),
            sse: SseDecoder::new(),
            usage: None,
            stopped: false,
        }
    }

    fn drain(&mut self, out: &mut BytesMut) {
        self.sse.push(&self.scratch.split());
        while let Some(event) = self.sse.next_event() {
            let mut data = event.data;
            if &data[..] == b"[DONE]" {
                continue;
            }
            // The closing event of each family carries the invocation metrics on Bedrock.
            let last = event.event.as_deref() == Some("message_stop")
                || memchr_str(&data, b"\"completionReason\":\"");
            if let (true, Some(usage)) = (last, &self.usage) {
                if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&data) {
                    obj.insert(
                        "amazon-bedrock-invocationMetrics".into(),
                        invocation_metrics(usage),
                    );
                    data = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
                }
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            let payload = serde_json::to_vec(&json!({"bytes": b64})).unwrap_or_default();
            write_event(out, "chunk", &payload);
        }
    }
}

fn memchr_str(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl<E: StreamEncoder> StreamEncoder for InvokeStreamEncoder<E> {
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        self.inner.encode(chunk, &mut self.scratch);
        self.drain(out);
    }

    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut) {
        self.stopped = true;
        write_exception(out, exception_type(error), error.message());
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.inner.finish(&mut self.scratch);
        self.drain(out);
    }
}

/// `converse-stream`: ConverseStream events as event-stream frames.
#[derive(Debug, Default)]
pub struct ConverseStreamEncoder {
    events: ConverseEventEncoder,
    pending: Vec<(&'static str, Value)>,
    stopped: bool,
}

impl ConverseStreamEncoder {
    /// A new encoder for one stream.
    pub fn new() -> Self {
        ConverseStreamEncoder::default()
    }

    fn drain(&mut self, out: &mut BytesMut) {
        for (event_type, payload) in self.pending.drain(..) {
            write_event(
                out,
                event_type,
                &serde_json::to_vec(&payload).unwrap_or_default(),
            );
        }
    }
}

impl StreamEncoder for ConverseStreamEncoder {
    fn encode(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        self.events.push(chunk, &mut self.pending);
        self.drain(out);
    }

    fn encode_error(&mut self, error: &GatewayError, out: &mut BytesMut) {
        self.stopped = true;
        write_exception(out, exception_type(error), error.message());
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.events.finish(&mut self.pending);
        self.drain(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bedrock_claude::ClaudeSseEncoder;
    use crate::format::bedrock_titan::TitanChunkEncoder;
    use crate::model::{ChunkMeta, Delta};
    use aws_smithy_eventstream::frame::read_message_from;

    /// (message type, event or exception type, payload JSON) of every frame.
    fn read_frames(mut bytes: &[u8]) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let msg = read_message_from(&mut bytes).unwrap();
            let header = |name: &str| {
                msg.headers()
                    .iter()
                    .find(|h| h.name().as_str() == name)
                    .and_then(|h| h.value().as_string().ok().map(|s| s.as_str().to_owned()))
            };
            assert_eq!(header(":content-type").as_deref(), Some("application/json"));
            let kind = header(":message-type").unwrap();
            let name = header(":event-type")
                .or_else(|| header(":exception-type"))
                .unwrap();
            out.push((kind, name, serde_json::from_slice(msg.payload()).unwrap()));
        }
        out
    }

    fn chunks() -> Vec<ChatChunk> {
        let meta = ChunkMeta::new("m");
        vec![
            ChatChunk::delta(&meta, Delta::role(), None),
            ChatChunk::delta(&meta, Delta::text("You said: "), None),
            ChatChunk::delta(&meta, Delta::text("hi"), None),
            ChatChunk::delta(&meta, Delta::default(), Some("stop")),
            ChatChunk::usage(&meta, Usage::from_parts(12, 9, 3, 0)),
        ]
    }

    fn inner(frame: &(String, String, Value)) -> Value {
        let b = base64::engine::general_purpose::STANDARD
            .decode(frame.2["bytes"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn worked_example_bytes() {
        let mut out = BytesMut::new();
        write_event(
            &mut out,
            "chunk",
            br#"{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="}"#,
        );
        assert_eq!(hex::encode(&out[..12]), "000000870000004b87ea2bf3");
        assert_eq!(hex::encode(&out[out.len() - 4..]), "ba48ab22");
    }

    #[test]
    fn claude_events_become_chunk_frames_with_metrics() {
        let mut enc = InvokeStreamEncoder::new(ClaudeSseEncoder::new());
        let mut out = BytesMut::new();
        for c in chunks() {
            enc.encode(&c, &mut out);
        }
        enc.finish(&mut out);
        let frames = read_frames(&out);
        assert!(frames.iter().all(|f| f.0 == "event" && f.1 == "chunk"));
        let events: Vec<Value> = frames.iter().map(inner).collect();
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[3]["delta"]["text"], "hi");
        assert_eq!(events[5]["delta"]["stop_reason"], "end_turn");
        assert_eq!(
            events[6]["amazon-bedrock-invocationMetrics"],
            json!({"inputTokenCount": 12, "outputTokenCount": 9, "invocationLatency": 0, "firstByteLatency": 0, "cacheReadInputTokenCount": 3})
        );
    }

    #[test]
    fn titan_chunks_and_the_final_one() {
        let mut enc = InvokeStreamEncoder::new(TitanChunkEncoder::new());
        let mut out = BytesMut::new();
        for c in chunks() {
            enc.encode(&c, &mut out);
        }
        enc.finish(&mut out);
        let events: Vec<Value> = read_frames(&out).iter().map(inner).collect();
        let text: String = events
            .iter()
            .filter_map(|e| e["outputText"].as_str())
            .collect();
        assert_eq!(text, "You said: hi");
        let last = events.last().unwrap();
        assert_eq!(last["completionReason"], "FINISH");
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            9
        );
    }

    #[test]
    fn errors_become_one_exception_frame_then_nothing() {
        let mut enc = InvokeStreamEncoder::new(ClaudeSseEncoder::new());
        let mut out = BytesMut::new();
        enc.encode(&chunks()[1], &mut out);
        enc.encode_error(
            &GatewayError::upstream_status(429, "Too many tokens"),
            &mut out,
        );
        enc.encode(&chunks()[2], &mut out);
        enc.finish(&mut out);
        let frames = read_frames(&out);
        let last = frames.last().unwrap();
        assert_eq!(
            (last.0.as_str(), last.1.as_str()),
            ("exception", "throttlingException")
        );
        assert_eq!(last.2, json!({"message": "Too many tokens"}));
        assert_eq!(frames.iter().filter(|f| f.0 == "exception").count(), 1);

        let mut enc = ConverseStreamEncoder::new();
        let mut out = BytesMut::new();
        enc.encode(&chunks()[1], &mut out);
        enc.encode_error(&GatewayError::upstream_protocol("broken"), &mut out);
        enc.finish(&mut out);
        let frames = read_frames(&out);
        assert_eq!(
            frames.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
            [
                "messageStart",
                "contentBlockDelta",
                "modelStreamErrorException"
            ]
        );
    }

    #[test]
    fn converse_frames() {
        let mut enc = ConverseStreamEncoder::new();
        let mut out = BytesMut::new();
        for c in chunks() {
            enc.encode(&c, &mut out);
        }
        enc.finish(&mut out);
        let frames = read_frames(&out);
        let names: Vec<&str> = frames.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(
            names,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(frames[5].2["usage"]["cacheReadInputTokens"], 3);
        assert_eq!(frames[5].2["usage"]["inputTokens"], 12);
    }
}
