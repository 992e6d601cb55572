//! [`StreamDecoder`] and [`decode_stream`]: the one loop that turns every upstream stream into
//! canonical chunks.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::error::GatewayError;
use crate::model::{ChatChunk, ChunkStream};

/// Turns the items of one upstream stream wire into canonical chunks (or, for a pass-through relay,
/// into [`RelayedEvent`](crate::model::RelayedEvent)s: `C`). Pure and synchronous.
///
/// Implemented per wire: [`crate::format::openai::OpenAiStreamDecoder`] (SSE body bytes),
/// [`crate::format::bedrock_claude::ClaudeStreamDecoder`] and
/// [`crate::format::bedrock_titan::TitanStreamDecoder`] (InvokeModel `chunk` payloads), and the
/// ConverseStream decoder (SDK events); the relays of [`super::relay`].
pub trait StreamDecoder<C = ChatChunk>: Send + 'static {
    /// One item of the wire (a piece of body, one event's payload, one decoded event).
    type Item;

    /// Decodes one item, appending the chunks it yields. An `Err` ends the stream with that error
    /// after the chunks already appended.
    fn push(&mut self, item: Self::Item, out: &mut Vec<C>) -> Result<(), GatewayError>;

    /// Whether the wire said the stream is over (e.g. OpenAI's `[DONE]`): the loop stops reading.
    fn is_done(&self) -> bool {
        false
    }

    /// The source ended (or [`is_done`](Self::is_done)): appends any last chunks, or fails when
    /// the stream stopped before it finished — a cut stream is never a normal-looking end.
    fn finish(&mut self, out: &mut Vec<C>) -> Result<(), GatewayError>;
}

/// Test helper: `decoder` fed `pieces` of a body one after the other, as [`decode_stream`] feeds
/// it (stopping at [`StreamDecoder::is_done`]); what it yielded and how it ended.
#[cfg(test)]
pub(crate) fn drive<C, D>(mut decoder: D, pieces: &[&[u8]]) -> (Vec<C>, Result<(), GatewayError>)
where
    D: StreamDecoder<C, Item = bytes::Bytes>,
{
    let mut out = Vec::new();
    for p in pieces {
        if let Err(e) = decoder.push(bytes::Bytes::copy_from_slice(p), &mut out) {
            return (out, Err(e));
        }
        if decoder.is_done() {
            break;
        }
    }
    let end = decoder.finish(&mut out);
    (out, end)
}

/// Decodes `source` with `decoder` into a canonical chunk stream.
///
/// Chunks are yielded as soon as their item arrives. A source error, a decoder error, or an
/// unfinished end becomes one `Err` item (an in-band error for the client) after the chunks that
/// came before it, and the stream ends. The source is dropped as soon as the stream is over, so a
/// client that goes away (dropping the stream) closes the upstream connection at once.
///
/// ```
/// use futures_util::StreamExt;
/// use open_bedrock_server::format::bedrock_titan::TitanStreamDecoder;
/// use open_bedrock_server::model::ChunkMeta;
/// use open_bedrock_server::stream::decode_stream;
///
/// # futures_executor_block_on(async {
/// let payloads = vec![
///     Ok(bytes::Bytes::from_static(br#"{"outputText":"Hi","index":0}"#)),
///     Ok(bytes::Bytes::from_static(br#"{"outputText":"","index":1,"completionReason":"FINISH","inputTextTokenCount":3,"totalOutputTextTokenCount":1}"#)),
/// ];
/// let chunks: Vec<_> = decode_stream(
///     futures_util::stream::iter(payloads),
///     TitanStreamDecoder::new(ChunkMeta::new("amazon.titan-text-express-v1")),
/// )
/// .collect()
/// .await;
/// assert!(chunks.iter().all(Result::is_ok));
/// assert_eq!(chunks.len(), 4); // role, "Hi", finish, usage
/// # });
/// # fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub fn decode_stream<S, D>(source: S, decoder: D) -> ChunkStream
where
    S: Stream<Item = Result<D::Item, GatewayError>> + Send + 'static,
    D: StreamDecoder,
{
    ChunkStream::new(decoded(source, decoder))
}

/// The loop of [`decode_stream`], for any output `C`.
pub(crate) fn decoded<S, D, C>(source: S, decoder: D) -> Decoded<S, D, C>
where
    S: Stream<Item = Result<D::Item, GatewayError>> + Send + 'static,
    D: StreamDecoder<C>,
{
    Decoded {
        source: Some(Box::pin(source)),
        decoder,
        ready: VecDeque::new(),
        scratch: Vec::new(),
        pending: None,
    }
}

pub(crate) struct Decoded<S, D, C> {
    /// `None` once the stream is over.
    source: Option<Pin<Box<S>>>,
    decoder: D,
    ready: VecDeque<C>,
    scratch: Vec<C>,
    /// The error to yield once the chunks decoded before it are out.
    pending: Option<GatewayError>,
}

impl<S, D: StreamDecoder<C>, C> Decoded<S, D, C> {
    /// Moves freshly decoded chunks to the queue; records an error to yield after them.
    fn settle(&mut self, step: Result<(), GatewayError>) {
        self.ready.extend(self.scratch.drain(..));
        if let Err(e) = step {
            self.pending = Some(e);
            self.source = None;
        }
    }

    /// The source is over: let the decoder close the stream.
    fn end(&mut self) {
        self.source = None;
        let step = self.decoder.finish(&mut self.scratch);
        self.settle(step);
    }
}

impl<S, D, C> Stream for Decoded<S, D, C>
where
    S: Stream<Item = Result<D::Item, GatewayError>>,
    D: StreamDecoder<C>,
{
    type Item = Result<C, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Only `Pin<Box<S>>` is polled, so `Decoded` itself is `Unpin`.
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if let Some(e) = this.pending.take() {
                return Poll::Ready(Some(Err(e)));
            }
            let Some(source) = this.source.as_mut() else {
                return Poll::Ready(None);
            };
            match source.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(item))) => {
                    let step = this.decoder.push(item, &mut this.scratch);
                    this.settle(step);
                    if this.pending.is_none() && this.decoder.is_done() {
                        this.end();
                    }
                }
                Poll::Ready(Some(Err(e))) => this.settle(Err(e)),
                Poll::Ready(None) => this.end(),
            }
        }
    }
}

impl<S, D, C> Unpin for Decoded<S, D, C> {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// Counts items; `"end"` marks the stream done, `"bad"` is an error, and the stream is
    /// finished only after `"fin"`.
    #[derive(Default)]
    struct Toy {
        done: bool,
        finished: bool,
    }

    impl StreamDecoder for Toy {
        type Item = &'static str;

        fn push(
            &mut self,
            item: &'static str,
            out: &mut Vec<ChatChunk>,
        ) -> Result<(), GatewayError> {
            match item {
                "bad" => return Err(GatewayError::upstream_protocol("bad item")),
                "end" => self.done = true,
                "fin" => self.finished = true,
                _ => {}
            }
            out.push(ChatChunk::delta(
                &crate::model::ChunkMeta::new(item),
                crate::model::Delta::default(),
                None,
            ));
            Ok(())
        }

        fn is_done(&self) -> bool {
            self.done
        }

        fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<(), GatewayError> {
            if self.finished || self.done {
                Ok(())
            } else {
                Err(GatewayError::upstream_protocol("cut"))
            }
        }
    }

    async fn run(items: Vec<Result<&'static str, GatewayError>>) -> Vec<Result<String, String>> {
        decode_stream(futures_util::stream::iter(items), Toy::default())
            .map(|r| r.map(|c| c.model).map_err(|e| e.message().to_owned()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn chunks_then_the_end() {
        assert_eq!(
            run(vec![Ok("a"), Ok("fin")]).await,
            [Ok("a".into()), Ok("fin".into())]
        );
    }

    #[tokio::test]
    async fn a_cut_stream_is_an_error_after_its_chunks() {
        assert_eq!(
            run(vec![Ok("a")]).await,
            [Ok("a".into()), Err("cut".into())]
        );
    }

    #[tokio::test]
    async fn errors_end_the_stream() {
        assert_eq!(
            run(vec![Ok("a"), Ok("bad"), Ok("b")]).await,
            [Ok("a".into()), Err("bad item".into())]
        );
        assert_eq!(
            run(vec![
                Ok("a"),
                Err(GatewayError::upstream_connect("reset")),
                Ok("b")
            ])
            .await,
            [Ok("a".into()), Err("reset".into())]
        );
    }

    #[tokio::test]
    async fn done_stops_reading_the_source() {
        assert_eq!(run(vec![Ok("end"), Ok("more")]).await, [Ok("end".into())]);
    }
}
