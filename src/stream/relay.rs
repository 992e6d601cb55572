//! Pass-through relays: an upstream's stream, in the client's own format, relayed as its bytes.
//!
//! The canonical path decodes every upstream event into a [`ChatChunk`] and encodes it again for
//! the client; when the client reads the upstream's format and nothing must change, that round
//! trip is pure cost. A relay keeps each event's payload as the upstream wrote it and learns what
//! the gateway needs from a byte scan ([`crate::format::scan`]): the usage (limiter, log line,
//! metrics), whether the stream finished (a cut stream is still an in-band error), the output
//! bytes for the estimate of an abandoned stream, and the event's name for SSE.
//!
//! - **Decoders** ([`StreamDecoder`]`<`[`RelayedEvent`]`>`, run by the one decode loop):
//!   [`OpenAiStreamRelay`] (an OpenAI SSE body; `[DONE]` ends it, an in-band `{"error":…}` event is
//!   mapped like the canonical decoder maps it; the OpenAI provider relays with it), and
//!   [`ClaudeStreamRelay`] and [`TitanStreamRelay`] (InvokeModel `chunk` payloads; the Bedrock
//!   provider relays with them when a Claude or Titan client's native body went up unchanged), and
//!   [`ResponsesStreamRelay`] (a Responses API SSE body, for `/v1/responses` forwarded to an
//!   upstream configured with `responses_api`; `response.completed` carries the usage).
//! - **The encoder** ([`RelayEncoder`]) writes each payload through the wire's
//!   [`Framer`] as it is ([`WireEvent::raw_json`]): `data: <payload>` (with `event: <type>` for
//!   Anthropic) on SSE, a `chunk` frame on AWS event-stream; OpenAI's usage-only chunk only for a
//!   client that asked for it; `[DONE]` at the end of an OpenAI stream, exactly.
//! - **Fallback**: [`canonical`] decodes a relayed reply with the dialect's own decoder, for a
//!   reader that needs canonical chunks after all.
//!
//! ```
//! use bytes::Bytes;
//! use open_bedrock_server::error::ErrorDialect;
//! use open_bedrock_server::format::InboundFormat;
//! use open_bedrock_server::model::RelayedEvent;
//! use open_bedrock_server::sse::SseFramer;
//! use open_bedrock_server::stream::relay::{OpenAiStreamRelay, RelayEncoder};
//! use open_bedrock_server::stream::{EventEncoder, Framer, StreamDecoder};
//!
//! let upstream = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n\
//!                  data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
//! let mut relay = OpenAiStreamRelay::new();
//! let mut events: Vec<RelayedEvent> = Vec::new();
//! relay.push(Bytes::from_static(upstream), &mut events).unwrap();
//! assert!(relay.is_done());
//! assert_eq!(events[1].usage.as_ref().unwrap().total_tokens, 4);
//!
//! // A client that did not ask for the usage chunk does not get it; `[DONE]` ends the stream.
//! let (mut encoder, mut framer) = (RelayEncoder::new(InboundFormat::OpenAi, false), SseFramer::new(ErrorDialect::OpenAi));
//! for e in &events {
//!     encoder.encode(e, &mut framer);
//! }
//! encoder.finish(&mut framer);
//! assert_eq!(
//!     &framer.take()[..],
//!     &b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"[..]
//! );
//! ```

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Serialize, Serializer};

use super::{decode_stream, decoded, EventEncoder, Framer, StreamDecoder, WireEvent};
use crate::error::GatewayError;
use crate::format::openai::upstream_stream::{in_band_error, MAX_STREAM_EVENT};
use crate::format::scan::{self, ClaudeUsage};
use crate::format::{bedrock_claude, bedrock_titan, InboundFormat};
use crate::model::{
    ChatChunk, ChatReply, ChatResponse, ChunkMeta, ChunkStream, RelayedBody, RelayedEvent,
    RelayedReply, RelayedStream, Usage,
};
use crate::sse::SseDecoder;

/// Relays `source` through `decoder`: the one decode loop, with relayed events out.
pub fn relay_stream<S, D>(source: S, decoder: D) -> RelayedStream
where
    S: futures_util::Stream<Item = Result<D::Item, GatewayError>> + Send + 'static,
    D: StreamDecoder<RelayedEvent>,
{
    RelayedStream::new(decoded(source, decoder))
}

/// The end of a relayed stream: complete when it `finished`, else the in-band error of a cut one.
fn ended(finished: bool) -> Result<(), GatewayError> {
    if finished {
        Ok(())
    } else {
        Err(GatewayError::upstream_protocol(
            "The upstream stream ended before it finished.",
        ))
    }
}

fn invalid(what: &str) -> GatewayError {
    GatewayError::upstream_protocol(format!("The upstream sent an invalid {what}."))
}

/// An OpenAI upstream's SSE body → relayed chunks (see the module docs).
#[derive(Debug, Default)]
pub struct OpenAiStreamRelay {
    sse: SseDecoder,
    done: bool,
    finished: bool,
}

impl OpenAiStreamRelay {
    /// A relay for one stream.
    pub fn new() -> Self {
        OpenAiStreamRelay::default()
    }
}

impl StreamDecoder<RelayedEvent> for OpenAiStreamRelay {
    type Item = Bytes;

    fn push(&mut self, item: Bytes, out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        self.sse.push(&item);
        while let Some(event) = self.sse.next_event() {
            let data = event.data;
            if data.starts_with(b"[DONE]") {
                self.done = true;
                return Ok(());
            }
            if data.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let facts = scan::openai_chunk(&data)
                .map_err(|_| in_band_error(&data).unwrap_or_else(|| invalid("stream chunk")))?;
            if facts.error {
                return Err(in_band_error(&data).unwrap_or_else(|| invalid("stream chunk")));
            }
            self.finished |= facts.finished;
            out.push(RelayedEvent {
                payload: data,
                name: None,
                usage: facts.usage,
                usage_only: facts.usage_only,
                output_bytes: facts.output_bytes,
            });
        }
        if self.sse.buffered() > MAX_STREAM_EVENT {
            return Err(GatewayError::upstream_protocol(
                "The upstream sent a stream event larger than the gateway accepts.",
            ));
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self, _out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        ended(self.done || self.finished)
    }
}

/// A Responses API upstream's SSE body → relayed Responses events (`/v1/responses` forwarded to
/// an OpenAI provider configured with `responses_api`). Each event keeps its payload and its
/// name; the usage goes out with the event that ends the response (`response.completed`,
/// `.incomplete`, `.failed`). The upstream's own `error` and `response.failed` events are relayed
/// as they are: they are already in the client's dialect.
#[derive(Debug, Default)]
pub struct ResponsesStreamRelay {
    sse: SseDecoder,
    finished: bool,
}

impl ResponsesStreamRelay {
    /// A relay for one stream.
    pub fn new() -> Self {
        ResponsesStreamRelay::default()
    }
}

impl StreamDecoder<RelayedEvent> for ResponsesStreamRelay {
    type Item = Bytes;

    fn push(&mut self, item: Bytes, out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        self.sse.push(&item);
        while let Some(event) = self.sse.next_event() {
            let data = event.data;
            if data.iter().all(u8::is_ascii_whitespace) || data.starts_with(b"[DONE]") {
                continue;
            }
            let facts =
                scan::responses_event(&data).map_err(|_| invalid("Responses stream event"))?;
            self.finished |= facts.finished;
            out.push(RelayedEvent {
                payload: data,
                name: facts.name,
                usage: facts.usage,
                usage_only: false,
                output_bytes: facts.output_bytes,
            });
        }
        if self.sse.buffered() > MAX_STREAM_EVENT {
            return Err(GatewayError::upstream_protocol(
                "The upstream sent a stream event larger than the gateway accepts.",
            ));
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        ended(self.finished)
    }
}

/// InvokeModel `chunk` payloads of a Claude model → relayed Anthropic events. The usage goes out
/// with `message_stop` (Claude reports input tokens first and output tokens last).
#[derive(Debug, Default)]
pub struct ClaudeStreamRelay {
    usage: ClaudeUsage,
    finished: bool,
}

impl ClaudeStreamRelay {
    /// A relay for one stream.
    pub fn new() -> Self {
        ClaudeStreamRelay::default()
    }
}

impl StreamDecoder<RelayedEvent> for ClaudeStreamRelay {
    type Item = Bytes;

    fn push(&mut self, payload: Bytes, out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        if self.finished {
            // After `message_stop`: ignored, as the canonical decoder ignores it (no second
            // usage, no error from a trailing payload).
            return Ok(());
        }
        let facts = scan::claude_event(&payload, &mut self.usage)
            .map_err(|_| invalid("Claude stream event"))?;
        if facts.error {
            // The canonical decoder maps Anthropic's in-band error.
            let mut scratch = Vec::new();
            let mut decoder =
                bedrock_claude::ClaudeStreamDecoder::new(ChunkMeta::from_parts("", 0, ""));
            decoder.push(&payload, &mut scratch)?;
            return Err(invalid("Claude stream event"));
        }
        let Some(name) = facts.name else {
            // A type this relay does not know: skipped, as the canonical decoder skips it.
            return Ok(());
        };
        self.finished |= facts.finished;
        out.push(RelayedEvent {
            payload,
            name: Some(name),
            usage: facts.finished.then(|| self.usage.usage()),
            usage_only: false,
            output_bytes: facts.output_bytes,
        });
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        ended(self.finished)
    }
}

/// InvokeModel `chunk` payloads of a Titan text model → relayed Titan chunks; the usage goes out
/// with the chunk that carries `completionReason`.
#[derive(Debug, Default)]
pub struct TitanStreamRelay {
    usage: (u64, u64),
    finished: bool,
}

impl TitanStreamRelay {
    /// A relay for one stream.
    pub fn new() -> Self {
        TitanStreamRelay::default()
    }
}

impl StreamDecoder<RelayedEvent> for TitanStreamRelay {
    type Item = Bytes;

    fn push(&mut self, payload: Bytes, out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        if self.finished {
            // After the chunk with `completionReason`: ignored, as the canonical decoder does.
            return Ok(());
        }
        let facts = scan::titan_chunk(&payload, &mut self.usage)
            .map_err(|_| invalid("Titan stream chunk"))?;
        self.finished |= facts.finished;
        out.push(RelayedEvent {
            payload,
            name: None,
            usage: facts
                .finished
                .then(|| Usage::from_parts(self.usage.0, self.usage.1, 0, 0)),
            usage_only: false,
            output_bytes: facts.output_bytes,
        });
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<RelayedEvent>) -> Result<(), GatewayError> {
        ended(self.finished)
    }
}

/// A relayed payload as a wire event: framers that read [`WireEvent::raw_json`] write it as it
/// is; any other framer gets it serialized from its parsed JSON.
#[derive(Debug)]
pub struct RawEvent<'a> {
    name: Option<&'static str>,
    payload: &'a [u8],
}

impl Serialize for RawEvent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value: serde_json::Value =
            serde_json::from_slice(self.payload).map_err(serde::ser::Error::custom)?;
        value.serialize(serializer)
    }
}

impl WireEvent for RawEvent<'_> {
    fn name(&self) -> Option<&'static str> {
        self.name
    }

    fn raw_json(&self) -> Option<&[u8]> {
        Some(self.payload)
    }
}

/// The `[DONE]` that ends an OpenAI stream.
#[derive(Debug)]
struct Done;

impl Serialize for Done {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[DONE]")
    }
}

impl WireEvent for Done {
    fn literal(&self) -> Option<&'static [u8]> {
        Some(b"[DONE]")
    }
}

/// Relayed events → the client's wire, as they came (see the module docs).
#[derive(Debug, Clone)]
pub struct RelayEncoder {
    format: InboundFormat,
    include_usage: bool,
}

impl RelayEncoder {
    /// An encoder for payloads in `format`; `include_usage`: whether an OpenAI client asked for
    /// the usage chunk.
    pub fn new(format: InboundFormat, include_usage: bool) -> Self {
        RelayEncoder {
            format,
            include_usage,
        }
    }
}

impl EventEncoder<RelayedEvent> for RelayEncoder {
    fn encode<F: Framer>(&mut self, event: &RelayedEvent, out: &mut F) {
        if event.usage_only && !self.include_usage {
            return;
        }
        out.event(&RawEvent {
            name: event.name,
            payload: &event.payload,
        });
    }

    fn finish<F: Framer>(&mut self, out: &mut F) {
        if self.format == InboundFormat::OpenAi {
            out.event(&Done);
        }
    }
}

/// A relayed reply decoded into the canonical one, by the dialect's own decoder.
pub fn canonical(reply: RelayedReply) -> Result<ChatReply, GatewayError> {
    let RelayedReply {
        format,
        model,
        body,
    } = reply;
    if format == InboundFormat::Responses {
        // Only a Responses client asks for one, and it reads the bytes as they are.
        return Err(GatewayError::internal(
            "a Responses API reply cannot be read as a chat reply",
        ));
    }
    match body {
        RelayedBody::Complete { body, .. } => {
            let response = match format {
                InboundFormat::BedrockClaude => {
                    bedrock_claude::decode_response(&body, &ChunkMeta::new(model))?
                }
                InboundFormat::BedrockTitan => {
                    bedrock_titan::decode_response(&body, &ChunkMeta::new(model))?
                }
                _ => {
                    let mut r: ChatResponse = serde_json::from_slice(&body).map_err(|e| {
                        GatewayError::upstream_protocol(format!(
                            "The upstream returned an invalid chat completion: {e}"
                        ))
                    })?;
                    if r.model.is_empty() {
                        r.model = model;
                    }
                    r
                }
            };
            Ok(ChatReply::Complete(response))
        }
        RelayedBody::Stream(stream) => {
            let payloads = stream.map(|item| item.map(|e| e.payload));
            Ok(ChatReply::Stream(match format {
                InboundFormat::BedrockClaude => decode_stream(
                    payloads,
                    bedrock_claude::ClaudeStreamDecoder::new(ChunkMeta::new(model)),
                ),
                InboundFormat::BedrockTitan => decode_stream(
                    payloads,
                    bedrock_titan::TitanStreamDecoder::new(ChunkMeta::new(model)),
                ),
                _ => ChunkStream::new(payloads.map(|item| {
                    item.and_then(|payload| {
                        serde_json::from_slice::<ChatChunk>(&payload).map_err(|e| {
                            GatewayError::upstream_protocol(format!(
                                "The upstream sent an invalid stream chunk: {e}"
                            ))
                        })
                    })
                })),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDialect;
    use crate::sse::SseFramer;

    fn relay(pieces: &[&[u8]]) -> (Vec<RelayedEvent>, Result<(), GatewayError>) {
        crate::stream::drive(OpenAiStreamRelay::new(), pieces)
    }

    const STREAM: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    #[test]
    fn relays_every_split_and_the_done_exactly() {
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            let (events, end) = relay(&[a, b]);
            assert_eq!(events.len(), 2, "split at {i}");
            assert!(end.is_ok());
            let mut enc = RelayEncoder::new(InboundFormat::OpenAi, false);
            let mut f = SseFramer::new(ErrorDialect::OpenAi);
            for e in &events {
                enc.encode(e, &mut f);
            }
            enc.finish(&mut f);
            assert_eq!(&f.take()[..], STREAM, "the upstream's bytes, [DONE] exact");
        }
    }

    #[test]
    fn cut_streams_errors_and_garbage() {
        let (_, end) = relay(&[&STREAM[..STREAM.len() / 2]]);
        assert_eq!(end.unwrap_err().status(), 502, "no finish, no [DONE]");
        let (events, end) =
            relay(&[b"data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n"]);
        assert!(events.is_empty());
        assert_eq!(end.unwrap_err().status(), 429);
        let (_, end) = relay(&[b"data: {\"choices\":[\n\n"]);
        assert_eq!(end.unwrap_err().code(), Some("upstream_protocol_error"));
    }

    #[test]
    fn claude_relay_names_events_and_counts_usage() {
        let events: [&[u8]; 4] = [
            br#"{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}"#,
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
            br#"{"type":"message_stop"}"#,
        ];
        let mut dec = ClaudeStreamRelay::new();
        let mut out = Vec::new();
        for e in events {
            dec.push(Bytes::from_static(e), &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        assert_eq!(out[0].name, Some("message_start"));
        let usage = out[3].usage.as_ref().unwrap();
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 9));
        let mut f = SseFramer::new(ErrorDialect::Anthropic);
        let mut enc = RelayEncoder::new(InboundFormat::BedrockClaude, false);
        enc.encode(&out[3], &mut f);
        enc.finish(&mut f);
        assert_eq!(
            &f.take()[..],
            &b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"[..]
        );
        let mut cut = ClaudeStreamRelay::new();
        cut.push(Bytes::from_static(events[0]), &mut out).unwrap();
        assert!(cut.finish(&mut out).is_err());
    }

    /// What follows the finish is ignored, as the canonical decoders ignore it: no second usage,
    /// no error from a trailing payload.
    #[test]
    fn bedrock_relays_ignore_what_follows_the_finish() {
        let mut claude = ClaudeStreamRelay::new();
        let mut out = Vec::new();
        for e in [
            &br#"{"type":"message_start","message":{"usage":{"input_tokens":1,"output_tokens":1}}}"#[..],
            br#"{"type":"message_stop"}"#,
            br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":9}}"#,
            br#"not json"#,
        ] {
            claude.push(Bytes::from_static(e), &mut out).unwrap();
        }
        claude.finish(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out.iter().filter(|e| e.usage.is_some()).count(), 1);

        let mut titan = TitanStreamRelay::new();
        let mut out = Vec::new();
        for c in [
            &br#"{"outputText":"a","inputTextTokenCount":3,"totalOutputTextTokenCount":1,"completionReason":"FINISH"}"#[..],
            br#"{"outputText":"b","completionReason":"FINISH"}"#,
            br#"{"#,
        ] {
            titan.push(Bytes::from_static(c), &mut out).unwrap();
        }
        titan.finish(&mut out).unwrap();
        assert_eq!(out.len(), 1);
    }
}
