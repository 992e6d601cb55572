//! The AWS event-stream wire (PROTOCOLS 2.6) for client streams: the framers of
//! `converse-stream` ([`EventStreamFramer`]) and `invoke-with-response-stream`
//! ([`EventStreamFramer::invoke_chunks`]).
//!
//! Frames are written with `aws-smithy-eventstream`, so lengths, CRCs and header encoding are the
//! SDKs' own. A mid-stream error becomes one exception frame (`:message-type: exception`) and the
//! stream ends. (Upstream event streams are decoded by the AWS SDK, or for InvokeModel by the
//! Bedrock provider's own client with the same crate's frame decoder.)
//!
//! ```
//! use bytes::BytesMut;
//! use open_bedrock_server::eventstream::write_event;
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
use serde_json::json;

use crate::error::GatewayError;
use crate::stream::{Framer, WireEvent};

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

/// Writes typed events as AWS event-stream messages, in one of two layouts:
///
/// - [`EventStreamFramer::new`] (`converse-stream`): each event is a message whose
///   `:event-type` is the event's name and whose payload is its JSON;
/// - [`EventStreamFramer::invoke_chunks`] (`invoke-with-response-stream`): each event is a `chunk`
///   message whose payload is `{"bytes": "<base64 of the event's JSON>"}`, for the model-native
///   events of the Claude and Titan encoders.
///
/// The in-band error is one exception message ([`exception_type`], payload `{"message"}`); there
/// is no keep-alive (a comment would corrupt the framing).
#[derive(Debug, Default)]
pub struct EventStreamFramer {
    buf: BytesMut,
    /// `Some` (a scratch buffer for the event JSON) in the `chunk` layout.
    chunks: Option<Vec<u8>>,
}

impl EventStreamFramer {
    /// The `converse-stream` layout: one message per event, named by it.
    pub fn new() -> Self {
        EventStreamFramer::default()
    }

    /// The `invoke-with-response-stream` layout: every event a base64 `chunk`.
    pub fn invoke_chunks() -> Self {
        EventStreamFramer {
            buf: BytesMut::new(),
            chunks: Some(Vec::new()),
        }
    }
}

impl Framer for EventStreamFramer {
    fn event<E: WireEvent + ?Sized>(&mut self, event: &E) {
        match &mut self.chunks {
            None => {
                let payload = match event.raw_json() {
                    Some(raw) => raw.to_vec(),
                    None => serde_json::to_vec(event).unwrap_or_default(),
                };
                write_event(&mut self.buf, event.name().unwrap_or("chunk"), &payload);
            }
            Some(json) => {
                let raw = match event.raw_json() {
                    Some(raw) => raw,
                    None => {
                        json.clear();
                        let _ = serde_json::to_writer(&mut *json, event);
                        json.as_slice()
                    }
                };
                // `{"bytes":"<base64>"}`: base64 needs no JSON escaping, so no serializer either.
                let engine = &base64::engine::general_purpose::STANDARD;
                let mut payload = Vec::with_capacity(14 + raw.len().div_ceil(3) * 4);
                payload.extend_from_slice(b"{\"bytes\":\"");
                let start = payload.len();
                payload.resize(start + base64::encoded_len(raw.len(), true).unwrap_or(0), 0);
                let written = engine.encode_slice(raw, &mut payload[start..]).unwrap_or(0);
                payload.truncate(start + written);
                payload.extend_from_slice(b"\"}");
                write_event(&mut self.buf, "chunk", &payload);
            }
        }
    }

    fn error(&mut self, error: &GatewayError) {
        write_exception(&mut self.buf, exception_type(error), error.message());
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bedrock_claude::ClaudeStreamEncoder;
    use crate::format::bedrock_titan::TitanStreamEncoder;
    use crate::format::converse::ConverseStreamEncoder;
    use crate::model::{ChatChunk, ChunkMeta, Delta, Usage};
    use crate::stream::EventEncoder;
    use aws_smithy_eventstream::frame::read_message_from;
    use serde_json::Value;

    /// Runs `enc` over `chunks` (and its finish, unless an error ended the stream) into `out`.
    fn framed<E: EventEncoder, F: Framer>(mut enc: E, mut out: F, chunks: &[ChatChunk]) -> Bytes {
        for c in chunks {
            enc.encode(c, &mut out);
        }
        enc.finish(&mut out);
        out.take()
    }

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
        let out = framed(
            ClaudeStreamEncoder::bedrock(),
            EventStreamFramer::invoke_chunks(),
            &chunks(),
        );
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
        let out = framed(
            TitanStreamEncoder::bedrock(),
            EventStreamFramer::invoke_chunks(),
            &chunks(),
        );
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
        // What the streamed body does: events, then the framer's error, then nothing.
        let mut enc = ClaudeStreamEncoder::bedrock();
        let mut out = EventStreamFramer::invoke_chunks();
        enc.encode(&chunks()[1], &mut out);
        out.error(&GatewayError::upstream_status(429, "Too many tokens"));
        let frames = read_frames(&out.take());
        let last = frames.last().unwrap();
        assert_eq!(
            (last.0.as_str(), last.1.as_str()),
            ("exception", "throttlingException")
        );
        assert_eq!(last.2, json!({"message": "Too many tokens"}));
        assert_eq!(frames.iter().filter(|f| f.0 == "exception").count(), 1);

        let mut enc = ConverseStreamEncoder::new();
        let mut out = EventStreamFramer::new();
        enc.encode(&chunks()[1], &mut out);
        out.error(&GatewayError::upstream_protocol("broken"));
        let frames = read_frames(&out.take());
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
        let out = framed(
            ConverseStreamEncoder::new(),
            EventStreamFramer::new(),
            &chunks(),
        );
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
