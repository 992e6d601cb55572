//! An OpenAI-compatible upstream's SSE body → canonical chunks.

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::decode_error;
use crate::error::GatewayError;
use crate::model::ChatChunk;
use crate::sse::SseDecoder;
use crate::stream::StreamDecoder;

/// Largest single stream event (an upstream that never ends an event is cut off here).
pub(crate) const MAX_STREAM_EVENT: usize = 16 * 1024 * 1024;

/// Decodes the SSE body of a streamed chat completion, piece by piece as it arrives.
///
/// Each `data:` event is one `chat.completion.chunk`; `data: [DONE]` ends the stream; an event
/// with an `error` member is the upstream's in-band error (mapped like an error response, its
/// `code` read as the status when numeric). A body that ends without `[DONE]` is complete only if
/// a choice had finished; otherwise it is an error, never a normal-looking end.
#[derive(Debug, Default)]
pub struct OpenAiStreamDecoder {
    sse: SseDecoder,
    /// `[DONE]` seen.
    done: bool,
    /// A choice finished: a body that ends now without `[DONE]` is still a complete stream.
    finished: bool,
}

impl OpenAiStreamDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        OpenAiStreamDecoder::default()
    }

    fn chunk(&mut self, data: &[u8]) -> Result<ChatChunk, GatewayError> {
        match serde_json::from_slice::<ChatChunk>(data) {
            Ok(chunk) => {
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    self.finished = true;
                }
                Ok(chunk)
            }
            Err(e) => Err(in_band_error(data).unwrap_or_else(|| {
                GatewayError::upstream_protocol(format!(
                    "The upstream sent an invalid stream chunk: {e}"
                ))
            })),
        }
    }
}

/// The error an upstream's in-band `{"error": …}` event carries (its `code` read as the status when
/// numeric, else 502); `None` when `data` is not one.
pub(crate) fn in_band_error(data: &[u8]) -> Option<GatewayError> {
    let v = serde_json::from_slice::<Value>(data).ok()?;
    v.get("error")?;
    let status = v["error"]["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok());
    let mut err = decode_error(
        StatusCode::from_u16(status.unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        data,
    );
    if status.is_none() {
        err = err.with_status(StatusCode::BAD_GATEWAY);
    }
    Some(err)
}

impl StreamDecoder for OpenAiStreamDecoder {
    type Item = Bytes;

    fn push(&mut self, item: Bytes, out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
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
            out.push(self.chunk(&data)?);
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

    fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
        if self.done || self.finished {
            Ok(())
        } else {
            Err(GatewayError::upstream_protocol(
                "The upstream stream ended before it finished.",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(pieces: &[&[u8]]) -> (Vec<ChatChunk>, Result<(), GatewayError>) {
        crate::stream::drive(OpenAiStreamDecoder::new(), pieces)
    }

    const STREAM: &[u8] = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    #[test]
    fn chunks_at_every_split_then_done() {
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            let (chunks, end) = decode(&[a, b]);
            assert_eq!(chunks.len(), 2, "split at {i}");
            assert!(end.is_ok());
        }
    }

    #[test]
    fn in_band_errors_and_cut_streams() {
        let (chunks, end) =
            decode(&[b"data: {\"error\":{\"message\":\"slow down\",\"code\":429}}\n\n"]);
        assert!(chunks.is_empty());
        let e = end.unwrap_err();
        assert_eq!((e.status().as_u16(), e.message()), (429, "slow down"));
        let (_, end) = decode(&[b"data: {\"error\":{\"message\":\"x\",\"code\":\"boom\"}}\n\n"]);
        assert_eq!(end.unwrap_err().status(), 502);
        let (chunks, end) = decode(&[&STREAM[..STREAM.len() / 3]]);
        assert!(chunks.len() <= 1);
        assert_eq!(end.unwrap_err().status(), 502, "no finish, no [DONE]");
        let (_, end) = decode(&[b"data: not json\n\n"]);
        assert_eq!(end.unwrap_err().code(), Some("upstream_protocol_error"));
    }
}
