//! Bedrock event streams → canonical chunk streams.
//!
//! The SDK decodes the AWS event-stream framing (prelude and message CRCs, headers, exception
//! frames); these adapters feed each event to the family's pure decoder and yield its chunks. An
//! exception frame becomes one `Err` item (an in-band error event for the client) and the stream
//! ends; a stream that stops before the decoder saw its final event is an error too, never a
//! normal-looking finish.

use std::collections::VecDeque;

use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::{ConverseStreamOutputError, ResponseStreamError};
use aws_sdk_bedrockruntime::types::{ConverseStreamOutput, ResponseStream};
use futures_util::Stream;

use super::error::from_sdk;
use crate::error::GatewayError;
use crate::format::bedrock_claude::ClaudeStreamDecoder;
use crate::format::bedrock_titan::TitanStreamDecoder;
use crate::format::converse::ConverseStreamDecoder;
use crate::model::ChatChunk;

/// A decoder of InvokeModelWithResponseStream chunk payloads (one model-native JSON per chunk).
pub(crate) trait PayloadDecoder: Send + 'static {
    fn push(&mut self, payload: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), GatewayError>;
    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError>;
}

impl PayloadDecoder for ClaudeStreamDecoder {
    fn push(&mut self, payload: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        ClaudeStreamDecoder::push(self, payload, out)
    }
    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        ClaudeStreamDecoder::finish(self, out)
    }
}

impl PayloadDecoder for TitanStreamDecoder {
    fn push(&mut self, payload: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        TitanStreamDecoder::push(self, payload, out)
    }
    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        TitanStreamDecoder::finish(self, out)
    }
}

struct State<R, D> {
    rx: R,
    decoder: D,
    ready: VecDeque<ChatChunk>,
    scratch: Vec<ChatChunk>,
    /// An error to yield once the chunks decoded before it are out.
    pending: Option<GatewayError>,
    done: bool,
}

impl<R, D> State<R, D> {
    fn new(rx: R, decoder: D) -> Self {
        State {
            rx,
            decoder,
            ready: VecDeque::new(),
            scratch: Vec::new(),
            pending: None,
            done: false,
        }
    }

    fn take_scratch(&mut self) {
        self.ready.extend(self.scratch.drain(..));
    }
}

/// InvokeModelWithResponseStream events → canonical chunks, through `decoder`.
pub(crate) fn invoke_stream<D: PayloadDecoder>(
    rx: EventReceiver<ResponseStream, ResponseStreamError>,
    decoder: D,
) -> impl Stream<Item = Result<ChatChunk, GatewayError>> + Send + 'static {
    futures_util::stream::unfold(State::new(rx, decoder), |mut st| async move {
        loop {
            if let Some(chunk) = st.ready.pop_front() {
                return Some((Ok(chunk), st));
            }
            if let Some(e) = st.pending.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            let step = match st.rx.recv().await {
                Ok(Some(ResponseStream::Chunk(part))) => match part.bytes() {
                    Some(bytes) => st.decoder.push(bytes.as_ref(), &mut st.scratch),
                    None => Ok(()),
                },
                Ok(Some(_unknown)) => Ok(()),
                Ok(None) => {
                    st.done = true;
                    st.decoder.finish(&mut st.scratch)
                }
                Err(e) => Err(from_sdk(e)),
            };
            st.take_scratch();
            if let Err(e) = step {
                st.done = true;
                st.pending = Some(e);
            }
        }
    })
}

/// ConverseStream events → canonical chunks.
pub(crate) fn converse_stream(
    rx: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
    decoder: ConverseStreamDecoder,
) -> impl Stream<Item = Result<ChatChunk, GatewayError>> + Send + 'static {
    futures_util::stream::unfold(State::new(rx, decoder), |mut st| async move {
        loop {
            if let Some(chunk) = st.ready.pop_front() {
                return Some((Ok(chunk), st));
            }
            if let Some(e) = st.pending.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            let step = match st.rx.recv().await {
                Ok(Some(event)) => st.decoder.push(&event, &mut st.scratch),
                Ok(None) => {
                    st.done = true;
                    st.decoder.finish(&mut st.scratch)
                }
                Err(e) => Err(from_sdk(e)),
            };
            st.take_scratch();
            if let Err(e) = step {
                st.done = true;
                st.pending = Some(e);
            }
        }
    })
}
