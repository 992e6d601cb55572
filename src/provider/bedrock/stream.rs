//! Bedrock event streams the SDK received, as sources for
//! [`decode_stream`](crate::stream::decode_stream).
//!
//! The SDK decodes the AWS event-stream framing (prelude and message CRCs, headers, exception
//! frames); these adapters turn its receivers into streams of decoder items — the payload of each
//! InvokeModel `chunk`, or each ConverseStream event — with exception frames and transport errors
//! mapped to [`GatewayError`]s (one in-band error for the client, then the end). Streams the
//! gateway's own client received are read in the `direct` module, to the same items.

use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::{ConverseStreamOutputError, ResponseStreamError};
use aws_sdk_bedrockruntime::types::{ConverseStreamOutput, ResponseStream};
use bytes::Bytes;
use futures_util::Stream;

use super::error::from_sdk;
use crate::error::GatewayError;

/// The payloads of InvokeModelWithResponseStream `chunk` events (events of kinds newer than this
/// code, and chunks without bytes, are skipped).
pub(crate) fn invoke_payloads(
    rx: EventReceiver<ResponseStream, ResponseStreamError>,
) -> impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(Some(ResponseStream::Chunk(part))) => match part.bytes {
                    Some(blob) => return Some((Ok(Bytes::from(blob.into_inner())), Some(rx))),
                    None => continue,
                },
                Ok(Some(_unknown)) => continue,
                Ok(None) => return None,
                Err(e) => return Some((Err(from_sdk(e)), None)),
            }
        }
    })
}

/// The events of a ConverseStream.
pub(crate) fn converse_events(
    rx: EventReceiver<ConverseStreamOutput, ConverseStreamOutputError>,
) -> impl Stream<Item = Result<ConverseStreamOutput, GatewayError>> + Send + 'static {
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(Some(event)) => Some((Ok(event), Some(rx))),
            Ok(None) => None,
            Err(e) => Some((Err(from_sdk(e)), None)),
        }
    })
}
