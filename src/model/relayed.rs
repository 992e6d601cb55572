//! Replies relayed as the upstream's own bytes: the pass-through half of [`ChatReply`].
//!
//! When the client reads the very format the upstream writes and nothing in the reply has to
//! change, a provider answers [`ChatReply::Relayed`]: the upstream's body (a complete reply), or
//! its stream's event payloads, each with the facts a byte scan found in it
//! ([`crate::format::scan`]): the usage for the limiter, the log line and the metrics, whether the
//! stream finished, what the output estimate counts. Translation writes those bytes as they came;
//! only a reader of another format (a layer of the embedder's, say) pays for decoding them, through
//! [`crate::stream::relay::canonical`].
//!
//! [`ChatReply`]: super::ChatReply
//! [`ChatReply::Relayed`]: super::ChatReply::Relayed

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use super::Usage;
use crate::error::GatewayError;
use crate::format::InboundFormat;

/// A reply in the upstream's own format, which is the client's.
#[derive(Debug)]
#[non_exhaustive]
pub struct RelayedReply {
    /// The format the bytes are written in: OpenAI chat completions, Claude (Anthropic Messages)
    /// or Titan text.
    pub format: InboundFormat,
    /// The model the client asked for (what a decoder of these bytes names its chunks with).
    pub model: String,
    /// The body or the stream.
    pub body: RelayedBody,
}

impl RelayedReply {
    /// A reply of `body`, written in `format`, for a client that asked for `model`.
    pub fn new(format: InboundFormat, model: impl Into<String>, body: RelayedBody) -> Self {
        RelayedReply {
            format,
            model: model.into(),
            body,
        }
    }
}

/// A relayed body: complete, or a stream of event payloads.
#[non_exhaustive]
pub enum RelayedBody {
    /// A complete reply: the upstream's JSON, and its usage.
    Complete {
        /// The upstream's body, as it came.
        body: Bytes,
        /// Its usage, when it reports one.
        usage: Option<Usage>,
    },
    /// A stream whose first event has already arrived.
    Stream(RelayedStream),
}

impl fmt::Debug for RelayedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayedBody::Complete { body, usage } => f
                .debug_struct("Complete")
                .field("bytes", &body.len())
                .field("usage", usage)
                .finish(),
            RelayedBody::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// One relayed stream event: its payload as the upstream wrote it, and what the scan found in it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayedEvent {
    /// One JSON document: an OpenAI chunk, an Anthropic event, a Titan chunk.
    pub payload: Bytes,
    /// The event's name, where the format names its events (the Anthropic `type`).
    pub name: Option<&'static str>,
    /// The final usage, on the event that completes it.
    pub usage: Option<Usage>,
    /// An OpenAI usage-only chunk: not sent to a client that did not ask for the usage.
    pub usage_only: bool,
    /// Text, reasoning and tool-argument bytes in this event (for the estimate of a stream cut
    /// before its usage).
    pub output_bytes: usize,
}

impl RelayedEvent {
    /// An event carrying `payload`, with nothing found in it.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        RelayedEvent {
            payload: payload.into(),
            name: None,
            usage: None,
            usage_only: false,
            output_bytes: 0,
        }
    }
}

/// A boxed stream of relayed events. An `Err` item ends it: one in-band error for the client.
pub struct RelayedStream {
    inner: Pin<Box<dyn Stream<Item = Result<RelayedEvent, GatewayError>> + Send>>,
}

impl RelayedStream {
    /// Boxes a stream.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<RelayedEvent, GatewayError>> + Send + 'static,
    {
        RelayedStream {
            inner: Box::pin(stream),
        }
    }
}

impl fmt::Debug for RelayedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayedStream(..)")
    }
}

impl Stream for RelayedStream {
    type Item = Result<RelayedEvent, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
