//! Streaming, both directions, with events kept apart from framing.
//!
//! **Upstream → canonical** ([`decode_stream`]): one loop over a source of upstream items (the
//! bytes of an OpenAI SSE body, the payloads of InvokeModel `chunk` events, ConverseStream events)
//! and a [`StreamDecoder`] per wire that turns them into canonical [`ChatChunk`]s. The loop owns
//! what every upstream stream needs: yielding chunks as they come, turning a broken source into
//! one in-band error, asking the decoder at the end whether the stream really finished.
//!
//! **Canonical → client** ([`EncodedBody`]): an [`EventEncoder`] per client format turns canonical
//! chunks into that format's *typed* events (OpenAI chunks, Anthropic `message_start` …, Titan
//! chunks, ConverseStream events); a [`Framer`] per wire writes them — SSE
//! ([`crate::sse::SseFramer`]) or AWS event-stream ([`crate::eventstream`]) — and owns what belongs
//! to the wire: the keep-alive, and the in-band error rendered by the one
//! [`GatewayError`] renderer. So one encoder serves several wires (the
//! Anthropic events go out as SSE to `/v1/messages` and as event-stream `chunk` frames to
//! `invoke-with-response-stream`), and nothing re-parses the gateway's own output.
//!
//! ```
//! use open_bedrock_server::format::bedrock_claude::ClaudeStreamEncoder;
//! use open_bedrock_server::model::{ChatChunk, ChunkMeta, Delta};
//! use open_bedrock_server::sse::SseFramer;
//! use open_bedrock_server::error::ErrorDialect;
//! use open_bedrock_server::stream::{EventEncoder, Framer};
//!
//! let meta = ChunkMeta::new("m");
//! let mut encoder = ClaudeStreamEncoder::new();
//! let mut framer = SseFramer::new(ErrorDialect::Anthropic);
//! encoder.encode(&ChatChunk::delta(&meta, Delta::text("Hi"), None), &mut framer);
//! encoder.finish(&mut framer);
//! let wire = String::from_utf8(framer.take().to_vec()).unwrap();
//! assert!(wire.starts_with("event: message_start\ndata: {"));
//! assert!(wire.contains("\"text_delta\""));
//! assert!(wire.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
//! ```
//!
//! [`ChatChunk`]: crate::model::ChatChunk

mod decode;
mod encode;
pub mod relay;

pub(crate) use decode::decoded;
#[cfg(test)]
pub(crate) use decode::drive;
pub use decode::{decode_stream, StreamDecoder};
pub use encode::EncodedBody;

use bytes::Bytes;
use serde::Serialize;

use crate::error::GatewayError;
use crate::model::ChatChunk;

/// A typed event of a client stream format.
///
/// Its payload is its JSON serialization; [`name`](Self::name) is the event's type where the
/// format names its events (the SSE `event:` line, the event-stream `:event-type` header).
pub trait WireEvent: Serialize {
    /// The event's name, for formats that name their events (Anthropic, ConverseStream).
    fn name(&self) -> Option<&'static str> {
        None
    }

    /// A literal payload instead of JSON (OpenAI's `[DONE]`).
    fn literal(&self) -> Option<&'static [u8]> {
        None
    }

    /// A payload already written as JSON — an upstream's event relayed as it came — which the
    /// framers write as it is (a framer that does not look here serializes the event instead).
    fn raw_json(&self) -> Option<&[u8]> {
        None
    }
}

/// Writes typed events onto one wire, in its own buffer.
///
/// Implemented by [`crate::sse::SseFramer`], [`crate::eventstream::EventStreamFramer`] and
/// its `invoke_chunks` layout.
pub trait Framer: Send + 'static {
    /// Appends one event.
    fn event<E: WireEvent + ?Sized>(&mut self, event: &E);

    /// Appends the in-band error that ends a stream.
    fn error(&mut self, error: &GatewayError);

    /// The bytes to send when the stream has been silent for a while (`None`: the wire has none).
    fn keep_alive(&self) -> Option<Bytes> {
        None
    }

    /// The response `Content-Type` of this wire.
    fn content_type(&self) -> &'static str;

    /// Takes the bytes written so far.
    fn take(&mut self) -> Bytes;
}

/// Turns canonical chunks (or, for a relay, another item `C`) into one client format's typed
/// events, written through a [`Framer`].
///
/// Implemented by [`crate::format::openai::OpenAiStreamEncoder`],
/// [`crate::format::bedrock_claude::ClaudeStreamEncoder`],
/// [`crate::format::bedrock_titan::TitanStreamEncoder`] and
/// [`crate::format::converse::ConverseStreamEncoder`]. Pure and synchronous: every call appends
/// complete events, so the body can hand a frame after any of them.
pub trait EventEncoder<C = ChatChunk>: Send + 'static {
    /// Emits the events for one canonical chunk (possibly none).
    fn encode<F: Framer>(&mut self, chunk: &C, out: &mut F);

    /// Emits whatever closes a normal stream (`[DONE]`, `message_stop`, `metadata`, …).
    fn finish<F: Framer>(&mut self, out: &mut F);
}

#[cfg(test)]
pub(crate) mod testing {
    //! A framer that records events as `(name, JSON)` pairs, for encoder tests; a paced chunk
    //! stream, for the tests of what times a stream.

    use super::*;
    use serde_json::Value;

    /// A chunk stream that yields `items` chunks, one every `gap`, then never ends.
    pub(crate) fn paced(items: usize, gap: std::time::Duration) -> crate::model::ChunkStream {
        use crate::model::{ChatChunk, ChunkMeta, Delta};
        let meta = ChunkMeta::new("m");
        crate::model::ChunkStream::new(futures_util::stream::unfold(0usize, move |i| {
            let meta = meta.clone();
            async move {
                if i >= items {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(gap).await;
                Some((Ok(ChatChunk::delta(&meta, Delta::text("x"), None)), i + 1))
            }
        }))
    }

    /// Records every event; errors as `("error", body)`.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub(crate) events: Vec<(Option<&'static str>, Value)>,
    }

    impl Framer for Recorder {
        fn event<E: WireEvent + ?Sized>(&mut self, event: &E) {
            let value = match (event.literal(), event.raw_json()) {
                (Some(lit), _) => Value::String(String::from_utf8_lossy(lit).into_owned()),
                (None, Some(raw)) => serde_json::from_slice(raw).unwrap_or(Value::Null),
                (None, None) => serde_json::to_value(event).unwrap_or(Value::Null),
            };
            self.events.push((event.name(), value));
        }

        fn error(&mut self, error: &GatewayError) {
            self.events.push((
                Some("error"),
                error.to_body_json(crate::error::ErrorDialect::OpenAi),
            ));
        }

        fn content_type(&self) -> &'static str {
            "application/x-test"
        }

        fn take(&mut self) -> Bytes {
            Bytes::new()
        }
    }

    /// Runs `encoder` over `chunks` and its finish, returning the events.
    pub(crate) fn record<E: EventEncoder>(
        mut encoder: E,
        chunks: &[ChatChunk],
    ) -> Vec<(Option<&'static str>, Value)> {
        let mut rec = Recorder::default();
        for c in chunks {
            encoder.encode(c, &mut rec);
        }
        encoder.finish(&mut rec);
        rec.events
    }
}
