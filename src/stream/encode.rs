//! [`EncodedBody`]: the response body of a streamed reply — canonical chunks in, one client
//! format on one wire out.
//!
//! **Slow readers.** The body's own timers only run while hyper polls it, and hyper stops polling
//! a body whose client has stopped reading (the socket is full). So a stream given its
//! connection's [`ConnectionCloser`] ([`EncodedBody::with_reader_timeout`]) notes when it handed
//! hyper its last frame and when hyper came back for the next; the connection's own watchdog
//! (`server::connection`), which runs whether or not anything polls the body, closes the
//! connection when hyper has not come back within the timeout. hyper then drops the body — and
//! with it the upstream call (its connection is closed, so the upstream sees the cancel), the
//! in-flight slot and the buffers. On HTTP/2 the whole connection goes, with any other stream of
//! that client on it: hyper offers no handle to reset one stream from outside, and a client that
//! has stopped reading one stream is rarely reading the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{EventEncoder, Framer};
use crate::body::BoxError;
use crate::error::GatewayError;
use crate::model::ChunkStream;
use crate::server::{ConnectionCloser, ReaderWatch};
use crate::woken::Woken;

pin_project_lite::pin_project! {
    /// The body of a streamed reply.
    ///
    /// Every chunk is encoded into typed events and framed. Chunks that arrive together go to
    /// hyper as one frame (at most 32 of them), so the client gets one write where it got one per
    /// event: when the upstream has nothing ready and chunks are held, and less than 500 µs has
    /// passed since the last frame, the body yields to the runtime (tokio's `yield_now`), so that
    /// the tasks already woken run first — the upstream connection's among them, which hands over
    /// the next chunk it has read — and hands what it holds when nothing more came meanwhile (it
    /// yields again after each chunk that did, while both bounds hold). Nothing waits on the
    /// network. The first frame, and a chunk after a quieter spell (a stream of tokens), go out at
    /// once. When the upstream is silent for `keep_alive` the framer's keep-alive goes out (if the
    /// wire has one); an error item becomes the framer's in-band error and ends the stream; so
    /// does shutdown, when a token is given.
    #[project = EncodedBodyProj]
    pub struct EncodedBody<E, F, S = ChunkStream> {
        stream: S,
        encoder: E,
        framer: F,
        done: bool,
        keep_alive: Option<Duration>,
        // When the last frame went out: the keep-alive timer is re-armed from it only when it
        // fires, rather than reset on every frame; chunks are held for more only soon after it.
        last_sent: tokio::time::Instant,
        #[pin]
        idle: Option<tokio::time::Sleep>,
        shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        // The waker the keep-alive timer and the shutdown token are polled with: while the body
        // waits for its upstream (once per upstream event), they are polled again only after one
        // of them woke it. Each poll of the token locks its mutex, which every stream shares.
        woken: Option<Woken>,
        reader: Option<Arc<ReaderWatch>>,
        // Upstream items encoded since the last frame was handed to hyper.
        held: u8,
        // Whether the body has yielded to the runtime for more items since the last one came.
        yielding: bool,
        // The waker the yield is polled with, noting when the runtime came back; made by the
        // first yield.
        returned: Option<Woken>,
        // Whether a frame has been handed (the first goes out at once).
        started: bool,
    }
}

impl<E, F, S, C> EncodedBody<E, F, S>
where
    E: EventEncoder<C>,
    F: Framer,
    S: Stream<Item = Result<C, GatewayError>> + Unpin,
{
    /// A body over `stream` (canonical chunks, or relayed events); `keep_alive` = idle time before
    /// the framer's keep-alive (ignored on a wire without one).
    pub fn new(stream: S, encoder: E, framer: F, keep_alive: Option<Duration>) -> Self {
        // A zero period would always be ready: a hot loop of pings. Zero means off.
        let keep_alive = keep_alive
            .filter(|d| !d.is_zero())
            .filter(|_| framer.keep_alive().is_some());
        EncodedBody {
            stream,
            encoder,
            framer,
            done: false,
            keep_alive,
            last_sent: tokio::time::Instant::now(),
            idle: keep_alive.map(tokio::time::sleep),
            shutdown: None,
            woken: keep_alive.map(|_| Woken::new()),
            reader: None,
            held: 0,
            yielding: false,
            returned: None,
            started: false,
        }
    }

    /// Closes the connection through `closer` when the client has not taken the next frame within
    /// `timeout` of the last one (see the module docs). The connection's watchdog does the
    /// watching: with a [`ConnectionCloser::detached`] closer, or a zero timeout, nothing does.
    pub fn with_reader_timeout(mut self, timeout: Duration, closer: ConnectionCloser) -> Self {
        self.reader = closer.watch_reader(timeout);
        self
    }

    /// Ends the stream with an in-band "shutting down" error when `token` is cancelled.
    pub fn with_shutdown(mut self, token: &CancellationToken) -> Self {
        self.shutdown = Some(Box::pin(token.clone().cancelled_owned()));
        self.woken.get_or_insert_with(Woken::new);
        self
    }

    /// The response `Content-Type` of the wire.
    pub fn content_type(&self) -> &'static str {
        self.framer.content_type()
    }
}

impl<E, F, S, C> HttpBody for EncodedBody<E, F, S>
where
    E: EventEncoder<C>,
    F: Framer,
    S: Stream<Item = Result<C, GatewayError>> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(watch) = this.reader.as_ref() {
            // hyper came back: the client took the last frame.
            watch.taken();
        }
        poll_encoded(this, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Upstream items encoded into one frame at most.
const BATCH: u8 = 32;

/// Items are held for more only while less than this has passed since the last frame: a burst
/// the upstream connection has read comes within microseconds, a stream of tokens spaced wider.
const HOLD: Duration = Duration::from_micros(500);

/// One poll of the body's frames.
fn poll_encoded<E, F, S, C>(
    mut this: EncodedBodyProj<'_, E, F, S>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    E: EventEncoder<C>,
    F: Framer,
    S: Stream<Item = Result<C, GatewayError>> + Unpin,
{
    {
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut *this.stream).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.encoder.encode(&chunk, this.framer);
                    *this.held += 1;
                    *this.yielding = false;
                    if *this.started && *this.held < BATCH {
                        continue;
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.framer.error(&err);
                    *this.done = true;
                }
                Poll::Ready(None) => {
                    this.encoder.finish(this.framer);
                    *this.done = true;
                }
                Poll::Pending if *this.held > 0 => {
                    if !*this.yielding && this.last_sent.elapsed() < HOLD {
                        // Items coming soon after the last frame: likely a burst the upstream
                        // connection has read. Let the tasks that are ready run first (that
                        // connection's among them, with the next item perhaps already read),
                        // then look again: items that arrived together leave in one frame.
                        let returned = this.returned.get_or_insert_with(Woken::new);
                        // Taken (registered, and any earlier wake cleared) before yielding.
                        let _ = returned.take(cx);
                        let pending = std::pin::pin!(tokio::task::yield_now())
                            .poll(&mut Context::from_waker(returned.waker()));
                        debug_assert!(pending.is_pending());
                        *this.yielding = true;
                        return Poll::Pending;
                    }
                    // Polled again before the runtime came back (hyper polls a body twice in a
                    // row): keep waiting.
                    if *this.yielding
                        && this.returned.as_ref().is_some_and(|r| r.take(cx).is_none())
                    {
                        return Poll::Pending;
                    }
                    // Nothing more came while the others ran, or an item after a quiet spell
                    // (a stream of tokens), or held long enough: hand it.
                }
                Poll::Pending => {
                    // The timer and the token only when one of them woke the body.
                    let Some(waker) = this.woken.as_ref().and_then(|w| w.take(cx)) else {
                        return Poll::Pending;
                    };
                    let cx = &mut Context::from_waker(waker);
                    if let Some(shutdown) = this.shutdown.as_mut() {
                        if shutdown.as_mut().poll(cx).is_ready() {
                            let err = GatewayError::overloaded(
                                "The gateway is shutting down; the stream was ended. Retry the request.",
                            );
                            this.framer.error(&err);
                            *this.done = true;
                            if let Some(watch) = this.reader.as_ref() {
                                watch.handed(tokio::time::Instant::now());
                            }
                            return Poll::Ready(Some(Ok(Frame::data(this.framer.take()))));
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
                            if let Some(ping) = this.framer.keep_alive() {
                                if let Some(watch) = this.reader.as_ref() {
                                    watch.handed(now);
                                }
                                return Poll::Ready(Some(Ok(Frame::data(ping))));
                            }
                        }
                    }
                    return Poll::Pending;
                }
            }
            *this.held = 0;
            *this.yielding = false;
            let frame = this.framer.take();
            if !frame.is_empty() {
                // One clock read per frame, shared by the batching, the keep-alive and the
                // reader watch.
                let now = tokio::time::Instant::now();
                *this.last_sent = now;
                *this.started = true;
                if let Some(watch) = this.reader.as_ref() {
                    watch.handed(now);
                }
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorDialect;
    use crate::format::openai::OpenAiStreamEncoder;
    use crate::model::{ChatChunk, ChunkMeta, Delta};
    use crate::sse::SseFramer;
    use crate::stream::testing::paced;

    async fn next_frame<B: HttpBody<Data = Bytes> + Unpin>(body: &mut B) -> Bytes
    where
        B::Error: std::fmt::Debug,
    {
        use http_body_util::BodyExt;
        body.frame().await.unwrap().unwrap().into_data().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_pings_only_after_a_silent_period() {
        let period = Duration::from_secs(10);
        let mut body = Box::pin(EncodedBody::new(
            paced(3, Duration::from_secs(6)),
            OpenAiStreamEncoder::new(false),
            SseFramer::new(ErrorDialect::OpenAi),
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

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_stream_that_waited_for_its_upstream_many_times() {
        let token = CancellationToken::new();
        let mut body = Box::pin(
            EncodedBody::new(
                paced(3, Duration::from_secs(1)),
                OpenAiStreamEncoder::new(false),
                SseFramer::new(ErrorDialect::OpenAi),
                Some(Duration::from_secs(60)),
            )
            .with_shutdown(&token),
        );
        let start = tokio::time::Instant::now();
        // Each chunk is waited for: the body is polled with the same waker, and neither the timer
        // nor the token has woken it, so it does not poll them again.
        for _ in 0..3 {
            assert!(next_frame(&mut body).await.starts_with(b"data: "));
        }
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cancel.cancel();
        });
        let end = tokio::time::timeout(Duration::from_secs(100), next_frame(&mut body))
            .await
            .expect("the shutdown ends the stream");
        assert!(
            std::str::from_utf8(&end)
                .unwrap()
                .contains("The gateway is shutting down"),
            "{end:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_taking_frames_gets_its_connection_closed() {
        let timeout = Duration::from_secs(5);
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        // The watchdog sleeps on the connection's hour-long idle deadline when the stream starts.
        tokio::task::yield_now().await;
        let mut body = Box::pin(
            EncodedBody::new(
                paced(1000, Duration::from_millis(100)),
                OpenAiStreamEncoder::new(false),
                SseFramer::new(ErrorDialect::OpenAi),
                None,
            )
            .with_reader_timeout(timeout, closer.clone()),
        );
        // A reader that keeps taking frames, however slowly the upstream sends them, is fine.
        for _ in 0..80 {
            next_frame(&mut body).await;
        }
        assert!(!closer.is_closed(), "a live reader is never cut");
        // Then the reader stops coming back for the next frame: nothing polls the body any more,
        // yet the connection is closed once the timeout has passed.
        tokio::time::sleep(timeout - Duration::from_millis(100)).await;
        assert!(!closer.is_closed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(closer.is_closed(), "the watchdog closed the connection");
        assert!(watchdog.is_finished(), "and ended the connection");
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_ends_with_its_body() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        let mut body = Box::pin(
            EncodedBody::new(
                paced(5, Duration::from_millis(10)),
                OpenAiStreamEncoder::new(false),
                SseFramer::new(ErrorDialect::OpenAi),
                None,
            )
            .with_reader_timeout(Duration::from_secs(1), closer.clone()),
        );
        next_frame(&mut body).await;
        drop(body); // the client went away: hyper drops the body
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!closer.is_closed(), "a dropped body closes nothing");
        assert!(!watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_detached_closer_watches_nothing() {
        let closer = ConnectionCloser::detached();
        let mut body = Box::pin(
            EncodedBody::new(
                paced(5, Duration::from_millis(10)),
                OpenAiStreamEncoder::new(false),
                SseFramer::new(ErrorDialect::OpenAi),
                None,
            )
            .with_reader_timeout(Duration::from_secs(1), closer.clone()),
        );
        assert!(body.reader.is_none());
        next_frame(&mut body).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!closer.is_closed());
    }

    /// Items from a task that sends each as soon as the last was taken (as hyper's client
    /// connection hands a body's chunks over), `gap` before each of the last `late`.
    fn handed_over(items: usize, late: usize, gap: Duration) -> ChunkStream {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let meta = ChunkMeta::new("m");
            for i in 0..items {
                if i >= items - late {
                    tokio::time::sleep(gap).await;
                }
                let chunk = ChatChunk::delta(&meta, Delta::text("x"), None);
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        ChunkStream::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// The next frame, polled as hyper's dispatcher polls a body (once more at once when
    /// pending), and how many polls were pending before it.
    async fn polled_as_hyper_does<B: HttpBody<Data = Bytes> + Unpin>(body: &mut B) -> (Bytes, usize)
    where
        B::Error: std::fmt::Debug,
    {
        let mut pending = 0;
        let mut poll = |cx: &mut Context<'_>| {
            let polled = Pin::new(&mut *body).poll_frame(cx);
            pending += usize::from(polled.is_pending());
            polled
        };
        let frame = std::future::poll_fn(|cx| match poll(cx) {
            Poll::Pending => poll(cx),
            ready => ready,
        })
        .await;
        (frame.unwrap().unwrap().into_data().unwrap(), pending)
    }

    #[tokio::test(start_paused = true)]
    async fn items_that_arrive_together_leave_in_one_frame_and_a_late_one_at_once() {
        let mut body = Box::pin(EncodedBody::new(
            handed_over(42, 2, Duration::from_secs(5)),
            OpenAiStreamEncoder::new(false),
            SseFramer::new(ErrorDialect::OpenAi),
            None,
        ));
        let events = |frame: &Bytes| frame.windows(6).filter(|w| w == b"data: ").count();
        let start = tokio::time::Instant::now();
        let (first, _) = polled_as_hyper_does(&mut body).await;
        assert_eq!(events(&first), 1, "the first at once");
        // The next 39 were ready one after the other: at most `BATCH` to a frame.
        let (full, _) = polled_as_hyper_does(&mut body).await;
        assert_eq!(events(&full), usize::from(BATCH));
        let (rest, _) = polled_as_hyper_does(&mut body).await;
        assert_eq!(events(&rest), 39 - usize::from(BATCH));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // One came 5 s later, after a quiet spell: handed as it came, without a yield (the two
        // pending polls are the wait for it).
        let (late, pending) = polled_as_hyper_does(&mut body).await;
        assert_eq!((events(&late), pending), (1, 2));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // The last, 5 s later again, and the end right after it: one frame.
        let (last, _) = polled_as_hyper_does(&mut body).await;
        assert_eq!(events(&last), 2);
        assert!(last.ends_with(b"data: [DONE]\n\n"), "{last:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn an_error_item_is_one_in_band_event_then_the_end() {
        use http_body_util::BodyExt;
        let meta = ChunkMeta::new("m");
        let stream = ChunkStream::from_chunks(vec![
            Ok(ChatChunk::delta(&meta, Delta::text("a"), None)),
            Err(GatewayError::upstream_timeout("slow")),
            Ok(ChatChunk::delta(&meta, Delta::text("never"), None)),
        ]);
        let body = EncodedBody::new(
            stream,
            OpenAiStreamEncoder::new(false),
            SseFramer::new(ErrorDialect::OpenAi),
            None,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"content\":\"a\""), "{text}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        assert!(last.starts_with("data: {\"error\":"), "{text}");
        assert!(last.contains("\"code\":\"upstream_timeout\""), "{text}");
        assert!(
            !text.contains("never") && !text.contains("[DONE]"),
            "{text}"
        );
    }
}
