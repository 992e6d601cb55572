//! Server-sent events: a split-safe decoder, the event writer, and the streaming body adapter.
//!
//! Hand-written rather than taken from a crate: the decoder must work on `Bytes` without copying the
//! common single-line `data:` event, keep its state across arbitrary HTTP chunk boundaries (tested at
//! every split offset), and the body adapter must flush after every event and interleave keep-alive
//! comments — a few dozen lines that no SSE crate offers in this shape.
//!
//! ```
//! use open_bedrock_server::sse::SseDecoder;
//!
//! let mut dec = SseDecoder::new();
//! dec.push(b"data: {\"a\"");
//! assert!(dec.next_event().is_none()); // split mid-event: nothing yet
//! dec.push(b":1}\n\n: comment\n\ndata: [DONE]\n\n");
//! assert_eq!(&dec.next_event().unwrap().data[..], b"{\"a\":1}");
//! assert_eq!(&dec.next_event().unwrap().data[..], b"[DONE]");
//! assert!(dec.next_event().is_none());
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Serialize;

use crate::body::BoxError;
use crate::format::StreamEncoder;
use crate::model::ChunkStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
}

/// A split-safe SSE decoder: push bytes as they arrive, pull complete events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// How far `buf` has been scanned for line ends without finding an event end.
    scanned: usize,
    event: Option<String>,
    data: Option<BytesMut>,
    single: Option<Bytes>,
}

impl SseDecoder {
    /// A new decoder.
    pub fn new() -> Self {
        SseDecoder::default()
    }

    /// Appends bytes from the wire.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for the event in progress (unfinished line plus `data:` lines so far); callers
    /// bound this so an upstream that never ends an event cannot grow it without limit.
    pub fn buffered(&self) -> usize {
        self.buf.len()
            + self.data.as_ref().map_or(0, |d| d.len())
            + self.single.as_ref().map_or(0, |s| s.len())
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let rest = &self.buf[self.scanned..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                // Remember how far we looked, so a long line is scanned once, not once per push.
                self.scanned = self.buf.len();
                return None;
            };
            let line_end = self.scanned + nl;
            let mut line = self.buf.split_to(line_end + 1).freeze();
            self.scanned = 0;
            line.truncate(line.len() - 1);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if line.is_empty() {
                if let Some(ev) = self.take_event() {
                    return Some(ev);
                }
                continue;
            }
            self.field(line);
        }
    }

    fn field(&mut self, line: Bytes) {
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let colon = line.iter().position(|&b| b == b':');
        let (name, value) = match colon {
            Some(i) => {
                let mut v = line.slice(i + 1..);
                if v.first() == Some(&b' ') {
                    v.advance(1);
                }
                (line.slice(..i), v)
            }
            None => (line.clone(), Bytes::new()),
        };
        match &name[..] {
            b"data" => match (&mut self.data, self.single.take()) {
                (Some(acc), _) => {
                    acc.extend_from_slice(b"\n");
                    acc.extend_from_slice(&value);
                }
                (None, Some(first)) => {
                    let mut acc = BytesMut::from(&first[..]);
                    acc.extend_from_slice(b"\n");
                    acc.extend_from_slice(&value);
                    self.data = Some(acc);
                }
                (None, None) => self.single = Some(value),
            },
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {} // id, retry: not used by chat streams
        }
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        let data = match (self.data.take(), self.single.take()) {
            (Some(acc), _) => acc.freeze(),
            (None, Some(one)) => one,
            (None, None) => {
                self.event = None;
                return None;
            }
        };
        Some(SseEvent {
            event: self.event.take(),
            data,
        })
    }
}

/// Appends `event: <name>\n` (when given) and `data: <json>\n\n` to `out`.
pub fn write_json_event<T: Serialize + ?Sized>(out: &mut BytesMut, event: Option<&str>, value: &T) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    let mut w = BufWriter(out);
    // Serializing our own types into memory cannot fail.
    let _ = serde_json::to_writer(&mut w, value);
    w.0.extend_from_slice(b"\n\n");
}

struct BufWriter<'a>(&'a mut BytesMut);

impl std::io::Write for BufWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pin_project_lite::pin_project! {
    /// The response body of a streamed reply: canonical chunks in, one client format out.
    ///
    /// Every chunk is encoded and handed to hyper as its own frame (no buffering); a keep-alive
    /// comment goes out when the upstream is silent for `keep_alive`; an error item becomes the
    /// encoder's in-band error event and ends the stream.
    pub struct EncodedStream<E> {
        stream: ChunkStream,
        encoder: E,
        buf: BytesMut,
        done: bool,
        keep_alive: Option<Duration>,
        // When the last frame went out; the keep-alive timer is re-armed from it only when it
        // fires, rather than reset on every frame.
        last_sent: tokio::time::Instant,
        #[pin]
        idle: Option<tokio::time::Sleep>,
        shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    }
}

impl<E: StreamEncoder> EncodedStream<E> {
    /// A body over `stream`; `keep_alive` = idle time before a `: ping` comment.
    pub fn new(stream: ChunkStream, encoder: E, keep_alive: Option<Duration>) -> Self {
        // A zero period would always be ready: a hot loop of pings. Zero means off.
        let keep_alive = keep_alive.filter(|d| !d.is_zero());
        EncodedStream {
            stream,
            encoder,
            buf: BytesMut::with_capacity(512),
            done: false,
            keep_alive,
            last_sent: tokio::time::Instant::now(),
            idle: keep_alive.map(tokio::time::sleep),
            shutdown: None,
        }
    }

    /// Ends the stream with an in-band "shutting down" error when `token` is cancelled.
    pub fn with_shutdown(mut self, token: &CancellationToken) -> Self {
        self.shutdown = Some(Box::pin(token.clone().cancelled_owned()));
        self
    }
}

impl<E: StreamEncoder> HttpBody for EncodedStream<E> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut *this.stream).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.encoder.encode(&chunk, this.buf);
                }
                Poll::Ready(Some(Err(err))) => {
                    this.encoder.encode_error(&err, this.buf);
                    *this.done = true;
                }
                Poll::Ready(None) => {
                    this.encoder.finish(this.buf);
                    *this.done = true;
                }
                Poll::Pending => {
                    if let Some(shutdown) = this.shutdown.as_mut() {
                        if shutdown.as_mut().poll(cx).is_ready() {
                            let err = crate::error::GatewayError::overloaded(
                                "The gateway is shutting down; the stream was ended. Retry the request.",
                            );
                            this.encoder.encode_error(&err, this.buf);
                            *this.done = true;
                            return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                        }
                    }
                    if let (Some(period), Some(mut idle)) =
                        (*this.keep_alive, this.idle.as_mut().as_pin_mut())
                    {
                        while idle.as_mut().poll(cx).is_ready() {
                            let now = tokio::time::Instant::now();
                            let due = *this.last_sent + period;
                            if due > now {
                                // Frames went out since the timer was armed: wait out the gap.
                                idle.as_mut().reset(due);
                                continue;
                            }
                            idle.as_mut().reset(now + period);
                            // Register the timer's waker for the next period.
                            let _ = idle.as_mut().poll(cx);
                            *this.last_sent = now;
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                                b": ping\n\n",
                            )))));
                        }
                    }
                    return Poll::Pending;
                }
            }
            if !this.buf.is_empty() {
                if this.keep_alive.is_some() {
                    *this.last_sent = tokio::time::Instant::now();
                }
                let frame = this.buf.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.buf.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"data: {\"id\":1}\n\n: keep-alive\n\nevent: message_start\r\ndata: {\"a\":\r\ndata: 2}\r\n\r\nretry: 5\ndata:nospace\n\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: None,
                data: Bytes::from_static(b"{\"id\":1}"),
            },
            SseEvent {
                event: Some("message_start".into()),
                data: Bytes::from_static(b"{\"a\":\n2}"),
            },
            SseEvent {
                event: None,
                data: Bytes::from_static(b"nospace"),
            },
            SseEvent {
                event: None,
                data: Bytes::from_static(b"[DONE]"),
            },
        ]
    }

    fn decode_in_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut dec = SseDecoder::new();
        let mut out = Vec::new();
        for p in pieces {
            dec.push(p);
            while let Some(ev) = dec.next_event() {
                out.push(ev);
            }
        }
        out
    }

    #[test]
    fn decodes_whole() {
        assert_eq!(decode_in_pieces(&[STREAM]), expected());
    }

    #[test]
    fn decodes_split_at_every_offset() {
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(decode_in_pieces(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn decodes_byte_by_byte() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(decode_in_pieces(&pieces), expected());
    }

    #[test]
    fn a_long_line_is_scanned_once_and_counted() {
        let mut dec = SseDecoder::new();
        for _ in 0..1000 {
            dec.push(&[b'x'; 100]);
            assert!(dec.next_event().is_none());
        }
        assert_eq!(dec.scanned, 100_000, "the scan resumes where it stopped");
        assert_eq!(dec.buffered(), 100_000);
        dec.push(b"\n");
        assert!(dec.next_event().is_none());
        assert_eq!(dec.buffered(), 0, "a field line without data is dropped");
        dec.push(b"data: a\ndata: b\n");
        assert!(dec.next_event().is_none());
        assert_eq!(
            dec.buffered(),
            3,
            "the data of the event in progress counts"
        );
    }

    /// A chunk stream that yields its items, one every `gap`, then never ends.
    fn paced(items: usize, gap: Duration) -> ChunkStream {
        use crate::model::{ChatChunk, ChunkMeta, Delta};
        let meta = ChunkMeta::new("m");
        let s = futures_util::stream::unfold(0usize, move |i| {
            let meta = meta.clone();
            async move {
                if i >= items {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(gap).await;
                Some((Ok(ChatChunk::delta(&meta, Delta::text("x"), None)), i + 1))
            }
        });
        ChunkStream::new(s)
    }

    async fn next_frame<E: StreamEncoder>(body: &mut Pin<Box<EncodedStream<E>>>) -> Bytes {
        use http_body_util::BodyExt;
        body.frame().await.unwrap().unwrap().into_data().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_pings_only_after_a_silent_period() {
        let period = Duration::from_secs(10);
        let mut body = Box::pin(EncodedStream::new(
            paced(3, Duration::from_secs(6)),
            crate::format::openai::OpenAiSseEncoder::new(false),
            Some(period),
        ));
        let start = tokio::time::Instant::now();
        // Three chunks 6 s apart: never 10 s of silence, so no ping between them.
        for i in 1..=3u64 {
            let f = next_frame(&mut body).await;
            assert!(f.starts_with(b"data: "), "{f:?}");
            assert_eq!(start.elapsed(), Duration::from_secs(6 * i));
        }
        // Then silence: a ping 10 s after the last chunk, and every 10 s after that.
        assert_eq!(&next_frame(&mut body).await[..], b": ping\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(28));
        assert_eq!(&next_frame(&mut body).await[..], b": ping\n\n");
        assert_eq!(start.elapsed(), Duration::from_secs(38));
    }

    #[test]
    fn writes_events() {
        let mut out = BytesMut::new();
        write_json_event(&mut out, Some("ping"), &serde_json::json!({"type":"ping"}));
        assert_eq!(&out[..], b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
    }
}
