//! [`UpstreamTimeoutLayer`] / [`UpstreamTimeout`]: the typed core's time limits, around each
//! attempt at a provider ([`Dispatch`](super::Dispatch) wraps the provider it chose, with that
//! provider's own limits when it has them).
//!
//! - **One deadline per request.** A call carries its request's deadline
//!   ([`CallContext::deadline`](crate::model::CallContext::deadline), set where the call is made
//!   to "now + `total`"); every attempt is bounded by it, so retries cannot stretch a request past
//!   its total time. A call without one gets `total` from the start of each attempt.
//! - **A stream** must show its first event within `first_byte` (a 504 the retry layer may retry);
//!   after that a stream guard ends it with an in-band 504 when it is silent for `stream_idle` or
//!   when the deadline passes.
//! - **A complete reply** arrives all at once, so it gets until the deadline — and is not retried
//!   when that runs out, since the upstream did (and billed) the work.
//!
//! The limits cover the provider's readiness too (`Dispatch` awaits the wrapped provider's
//! `poll_ready` inside its response future), and sit below the choice of a model group's
//! deployment, so a deployment that times out is seen to fail and its fallback waits afresh.
//!
//! ```
//! use std::time::Duration;
//! use open_bedrock_server::config::Timeouts;
//! use open_bedrock_server::error::GatewayError;
//! use open_bedrock_server::model::{ChatCall, ChatReply, ChatRequest};
//! use open_bedrock_server::provider::UpstreamTimeoutLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut timeouts = Timeouts::default();
//! timeouts.total = Duration::from_millis(20);
//! let never = tower::service_fn(|_call: ChatCall| async {
//!     std::future::pending::<Result<ChatReply, GatewayError>>().await
//! });
//! let core = ServiceBuilder::new()
//!     .layer(UpstreamTimeoutLayer::new(timeouts))
//!     .service(never);
//! let err = core.oneshot(ChatCall::new(ChatRequest::default())).await.unwrap_err();
//! assert_eq!(err.status(), 504);
//! assert!(!err.is_retryable(), "a complete reply that ran out of time is not retried");
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::Timeouts;
use crate::error::GatewayError;
use crate::model::{Call, CallRequest, ChatReply, ChunkStream, EmbeddingsResponse, StreamWrapper};
use crate::woken::Woken;

/// Layer that applies [`UpstreamTimeout`] with the given timeouts (`first_byte`, `stream_idle`,
/// `total`; the others are not the core's).
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeoutLayer {
    timeouts: Timeouts,
}

impl UpstreamTimeoutLayer {
    /// Time limits from `timeouts`.
    pub fn new(timeouts: Timeouts) -> Self {
        UpstreamTimeoutLayer { timeouts }
    }
}

impl<S> Layer<S> for UpstreamTimeoutLayer {
    type Service = UpstreamTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UpstreamTimeout::new(inner, self.timeouts)
    }
}

/// Bounds each call to `S` by the first-byte timeout (streams) and the request's deadline, and
/// ends the streams it answers when they stall (idle gap) or outlive the deadline.
#[derive(Debug, Clone)]
pub struct UpstreamTimeout<S> {
    inner: S,
    timeouts: Timeouts,
}

impl<S> UpstreamTimeout<S> {
    /// `inner` with the limits from `timeouts`.
    pub fn new(inner: S, timeouts: Timeouts) -> Self {
        UpstreamTimeout { inner, timeouts }
    }

    /// A layer with the limits from `timeouts`.
    pub fn layer(timeouts: Timeouts) -> UpstreamTimeoutLayer {
        UpstreamTimeoutLayer::new(timeouts)
    }

    crate::macros::define_inner_service_accessors!();
}

/// Any call (chat, embeddings): a streamed chat call waits for its first byte under the first-byte
/// limit, and everything under the request's deadline. A complete reply gets until the deadline,
/// and is not retried when that runs out.
impl<S, R, Rep> Service<Call<R>> for UpstreamTimeout<S>
where
    S: Service<Call<R>, Response = Rep, Error = GatewayError>,
    R: CallRequest,
    Rep: TimedReply,
{
    type Response = Rep;
    type Error = GatewayError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call<R>) -> Self::Future {
        let now = Instant::now();
        let deadline = call
            .context
            .deadline
            .unwrap_or_else(|| instant_after(now, self.timeouts.total));
        let first_byte = instant_after(now, self.timeouts.first_byte);
        // Only a stream has a first byte apart from its end; whichever comes first bounds the wait.
        let (until, limit) = if call.request.streams() && first_byte < deadline {
            (first_byte, Limit::FirstByte(self.timeouts.first_byte))
        } else {
            (deadline, Limit::Deadline)
        };
        ResponseFuture {
            inner: self.inner.call(call),
            sleep: tokio::time::sleep_until(until),
            limit,
            idle: self.timeouts.stream_idle,
            deadline,
        }
    }
}

/// A reply the timeout layer answers: a chat stream gets its stall and deadline guard, anything
/// complete passes as it is.
pub trait TimedReply {
    /// The reply with its stream (if any) guarded by the `idle` gap and the `deadline`.
    fn guarded(self, idle: Duration, deadline: Instant) -> Self;
}

impl TimedReply for ChatReply {
    fn guarded(self, idle: Duration, deadline: Instant) -> Self {
        self.wrap_stream(StallGuard { idle, deadline })
    }
}

/// [`TimedStream`] as a [`StreamWrapper`].
struct StallGuard {
    idle: Duration,
    deadline: Instant,
}

impl StreamWrapper for StallGuard {
    fn wrap<T: Send + 'static>(
        self,
        stream: impl Stream<Item = Result<T, GatewayError>> + Send + Unpin + 'static,
    ) -> impl Stream<Item = Result<T, GatewayError>> + Send + 'static {
        TimedStream::new(stream, self.idle, self.deadline)
    }
}

impl TimedReply for EmbeddingsResponse {
    fn guarded(self, _idle: Duration, _deadline: Instant) -> Self {
        self
    }
}

/// `now + d`, or a time far enough away to mean "never" when that does not fit an `Instant`
/// (a configured timeout of years must not panic).
pub(crate) fn instant_after(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Which limit bounds an attempt's wait for its reply.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A stream's first event, within this long.
    FirstByte(Duration),
    /// The request's deadline.
    Deadline,
}

impl Limit {
    fn error(self) -> GatewayError {
        match self {
            // Nothing reached the client yet: another attempt may be quicker.
            Limit::FirstByte(d) => GatewayError::upstream_timeout(format!(
                "The upstream did not answer within {} ms.",
                d.as_millis()
            )),
            // The request's time is up: no attempt could finish, and a complete reply's upstream
            // may well have done the work.
            Limit::Deadline => GatewayError::upstream_timeout(
                "The upstream did not answer within the request's total time limit.",
            )
            .with_retryable(false),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`UpstreamTimeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        limit: Limit,
        idle: Duration,
        deadline: Instant,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("timeout::ResponseFuture")
            .field("limit", &self.limit)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F, R> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, GatewayError>>,
    R: TimedReply,
{
    type Output = Result<R, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The reply first: one that is ready when the timer fires still counts.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|reply| reply.guarded(*this.idle, *this.deadline)));
        }
        ready!(this.sleep.poll(cx));
        Poll::Ready(Err(this.limit.error()))
    }
}

pin_project_lite::pin_project! {
    /// A stream guard: ends the stream with an in-band 504 when the upstream is silent for longer
    /// than the idle gap, or when the total deadline passes — a stalled stream never hangs a client.
    /// Over canonical chunks or relayed events alike.
    ///
    /// One timer serves both limits: it is armed for whichever comes first, the idle gap's end or
    /// the deadline, and decides which it was when it fires (a stream first polled again after
    /// both have passed ends with the one the timer was armed for). Two timers were polled, and
    /// their wakers registered, on every poll the upstream had nothing for (callgrind, issue 18).
    pub(crate) struct TimedStream<S = ChunkStream> {
        inner: S,
        idle: Duration,
        deadline: Instant,
        // When the last item arrived (one clock read per item); the timer is re-armed from it only
        // when it fires, instead of being reset (a timer-wheel update) on every chunk.
        last: Instant,
        #[pin]
        timer: Sleep,
        // The waker the timer is polled with: a stream waits once per upstream item, and the
        // timer is polled again only after it woke the task (see `crate::woken`).
        woken: Woken,
        done: bool,
    }
}

impl<S> TimedStream<S> {
    /// Guards `inner` with an `idle` gap and an absolute `deadline`.
    pub(crate) fn new(inner: S, idle: Duration, deadline: Instant) -> Self {
        let last = Instant::now();
        TimedStream {
            inner,
            idle,
            deadline,
            last,
            timer: tokio::time::sleep_until(gap_end(last, idle, deadline)),
            woken: Woken::new(),
            done: false,
        }
    }
}

impl<S> std::fmt::Debug for TimedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStream")
            .field("idle", &self.idle)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<S, T> Stream for TimedStream<S>
where
    S: Stream<Item = Result<T, GatewayError>> + Unpin,
{
    type Item = Result<T, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut *this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                *this.last = Instant::now();
                if item.is_err() {
                    *this.done = true;
                }
                return Poll::Ready(Some(item));
            }
            Poll::Ready(None) => {
                *this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let Some(waker) = this.woken.take(cx) else {
            return Poll::Pending;
        };
        let cx = &mut Context::from_waker(waker);
        while this.timer.as_mut().poll(cx).is_ready() {
            // Armed for the deadline (also when the gap ends with it): the total time is up.
            if this.timer.deadline() >= *this.deadline {
                *this.done = true;
                return Poll::Ready(Some(Err(GatewayError::upstream_timeout(
                    "The upstream stream exceeded the total time limit.",
                ))));
            }
            let next = gap_end(*this.last, *this.idle, *this.deadline);
            if next > this.timer.deadline() {
                // Items arrived since the timer was armed: wait for the rest of the gap.
                this.timer.as_mut().reset(next);
                continue;
            }
            *this.done = true;
            return Poll::Ready(Some(Err(GatewayError::upstream_timeout(format!(
                "The upstream stream was idle for more than {} ms.",
                this.idle.as_millis()
            )))));
        }
        Poll::Pending
    }
}

/// When a stream last heard from at `last` is due to be checked: the end of its idle gap, or the
/// deadline when that comes first (or the gap's end is past what an `Instant` holds).
fn gap_end(last: Instant, idle: Duration, deadline: Instant) -> Instant {
    last.checked_add(idle)
        .map_or(deadline, |end| end.min(deadline))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use futures_util::StreamExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::RetrySettings;
    use crate::model::{CallContext, ChatCall, ChatChunk, ChatRequest, ChunkMeta, Delta};
    use crate::provider::mock::mock_chunks;
    use crate::provider::{Dispatch, MockProvider, ProviderService};
    use crate::retry::RetryPolicy;
    use crate::route::Router;

    fn timeouts(first_byte: u64, idle: u64, total: u64) -> Timeouts {
        Timeouts {
            first_byte: Duration::from_secs(first_byte),
            stream_idle: Duration::from_secs(idle),
            total: Duration::from_secs(total),
            ..Timeouts::default()
        }
    }

    fn request(stream: bool) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": "mock/echo",
            "stream": stream,
            "messages": [{"role": "user", "content": "hi there"}],
        }))
        .unwrap()
    }

    /// A provider that answers like the mock provider after `delay`.
    fn slow(delay: Duration) -> ProviderService {
        ProviderService::new(tower::service_fn(move |call: ChatCall| async move {
            tokio::time::sleep(delay).await;
            MockProvider::new().answer(&call.request)
        }))
    }

    /// `items` chunks, 5 s apart, then silence.
    fn five_seconds_apart(items: usize) -> ChunkStream {
        crate::stream::testing::paced(items, Duration::from_secs(5))
    }

    #[tokio::test(start_paused = true)]
    async fn idle_gap_counts_from_the_last_item() {
        // Items 5 s apart never trip an 8 s idle limit; the silence after the last one does.
        let start = Instant::now();
        let mut timed = Box::pin(TimedStream::new(
            five_seconds_apart(3),
            Duration::from_secs(8),
            start + Duration::from_secs(3600),
        ));
        for _ in 0..3 {
            assert!(timed.next().await.unwrap().is_ok());
        }
        // The timer fired at 8 s, while items still came (the stream was polled between them
        // with the same waker): it must still be polled after its re-arming.
        let err = tokio::time::timeout(Duration::from_secs(60), timed.next())
            .await
            .expect("the idle limit ends the stream")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.status(), 504);
        assert!(
            err.message().contains("idle for more than 8000 ms"),
            "{}",
            err.message()
        );
        assert_eq!(start.elapsed(), Duration::from_secs(15 + 8));
        assert!(
            timed.next().await.is_none(),
            "the stream ends after the timeout"
        );
    }

    /// A first poll that finds the task's cooperative budget spent (the stages before it used it
    /// up) leaves the timer unregistered: the budget's wake must still lead to its poll.
    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_holds_when_the_first_poll_found_the_budget_spent() {
        let mut spent = false;
        let silent = futures_util::stream::poll_fn(move |cx| {
            if !std::mem::replace(&mut spent, true) {
                // Spend the task's budget, as busy stages before the stream would.
                let mut spend = Box::pin(tokio::task::consume_budget());
                while spend.as_mut().poll(cx).is_ready() {
                    spend.set(tokio::task::consume_budget());
                }
            }
            Poll::<Option<Result<ChatChunk, GatewayError>>>::Pending
        });
        let start = Instant::now();
        let mut timed = Box::pin(TimedStream::new(
            ChunkStream::new(silent),
            Duration::from_secs(8),
            start + Duration::from_secs(3600),
        ));
        let err = tokio::time::timeout(Duration::from_secs(60), timed.next())
            .await
            .expect("the idle limit ends the stream")
            .unwrap()
            .unwrap_err();
        assert!(err.message().contains("idle for more than 8000 ms"));
        assert_eq!(start.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn total_deadline_ends_a_busy_stream() {
        let meta = ChunkMeta::new("m");
        let s = futures_util::stream::unfold((), move |()| {
            let meta = meta.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((Ok(ChatChunk::delta(&meta, Delta::text("x"), None)), ()))
            }
        });
        let start = Instant::now();
        let mut timed = Box::pin(TimedStream::new(
            ChunkStream::new(s),
            Duration::from_secs(8),
            start + Duration::from_millis(4500),
        ));
        let mut n = 0;
        while let Some(item) = timed.next().await {
            match item {
                Ok(_) => n += 1,
                Err(e) => {
                    assert_eq!(e.status(), 504);
                    assert!(e.message().contains("total time limit"), "{}", e.message());
                    break;
                }
            }
        }
        assert_eq!(n, 4);
        assert_eq!(start.elapsed(), Duration::from_millis(4500));
    }

    /// One timer for both limits: a gap that would end after the deadline ends at the deadline,
    /// as the total limit; one that ends before it, as the idle limit, re-armed from the last item.
    #[tokio::test(start_paused = true)]
    async fn the_first_limit_to_pass_ends_a_silent_stream() {
        for (deadline_secs, items, elapsed_ms, says) in [
            // Items at 5 s and 10 s; the gap would end at 18 s, the deadline is at 12 s.
            (12, 2, 12_000, "total time limit"),
            // The same, with the deadline after the gap's end.
            (30, 2, 18_000, "idle for more than 8000 ms"),
            // Silent from the start: the gap (8 s) ends first.
            (30, 0, 8_000, "idle for more than 8000 ms"),
            // Silent from the start, the deadline first.
            (3, 0, 3_000, "total time limit"),
        ] {
            let start = Instant::now();
            let mut timed = Box::pin(TimedStream::new(
                five_seconds_apart(items),
                Duration::from_secs(8),
                start + Duration::from_secs(deadline_secs),
            ));
            for _ in 0..items {
                assert!(timed.next().await.unwrap().is_ok());
            }
            let err = timed.next().await.unwrap().unwrap_err();
            assert_eq!(err.status(), 504);
            assert!(
                err.message().contains(says),
                "{deadline_secs} s: {}",
                err.message()
            );
            assert_eq!(
                start.elapsed(),
                Duration::from_millis(elapsed_ms),
                "{deadline_secs} s"
            );
            assert!(timed.next().await.is_none());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_must_start_within_first_byte_and_may_be_retried() {
        let start = Instant::now();
        let core = UpstreamTimeout::new(slow(Duration::from_secs(10)), timeouts(2, 8, 60));
        let err = core
            .oneshot(ChatCall::new(request(true)))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 504);
        assert!(err.is_retryable(), "nothing reached the client yet");
        assert!(err.message().contains("2000 ms"), "{}", err.message());
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        // A stream that starts in time is answered, its chunks intact.
        let core = UpstreamTimeout::new(slow(Duration::from_secs(1)), timeouts(2, 8, 60));
        let ChatReply::Stream(s) = core.oneshot(ChatCall::new(request(true))).await.unwrap() else {
            panic!("a stream was asked for");
        };
        let chunks: Vec<_> = s.collect().await;
        assert_eq!(chunks.len(), mock_chunks(&request(true)).len());
        assert!(chunks.iter().all(Result::is_ok));
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_reply_gets_the_total_time_and_is_not_retried_when_it_runs_out() {
        // Slower than first_byte, within total: answered.
        let core = UpstreamTimeout::new(slow(Duration::from_secs(5)), timeouts(2, 8, 10));
        let reply = core.oneshot(ChatCall::new(request(false))).await.unwrap();
        let ChatReply::Complete(r) = reply else {
            panic!("a complete reply was asked for");
        };
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("You said: hi there")
        );

        let start = Instant::now();
        let core = UpstreamTimeout::new(slow(Duration::from_secs(12)), timeouts(2, 8, 10));
        let err = core
            .oneshot(ChatCall::new(request(false)))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 504);
        assert!(!err.is_retryable(), "the upstream did the work");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_the_requests_deadline() {
        let start = Instant::now();
        let meta = ChunkMeta::new("m");
        let busy = tower::service_fn(move |_call: ChatCall| {
            let meta = meta.clone();
            async move {
                // A chunk every second, forever: only the total limit ends it.
                let s = futures_util::stream::unfold((), move |()| {
                    let meta = meta.clone();
                    async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Some((Ok(ChatChunk::delta(&meta, Delta::text("x"), None)), ()))
                    }
                });
                Ok::<_, GatewayError>(ChatReply::Stream(ChunkStream::new(s)))
            }
        });
        let context = CallContext {
            deadline: Some(start + Duration::from_millis(4500)),
            ..CallContext::default()
        };
        let core = UpstreamTimeout::new(busy, timeouts(2, 8, 600));
        let call = ChatCall::with_context(request(true), context);
        let ChatReply::Stream(mut s) = core.oneshot(call).await.unwrap() else {
            panic!("a stream was asked for");
        };
        let mut n = 0;
        let err = loop {
            match s.next().await.unwrap() {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.status(), 504);
        assert_eq!(n, 4);
        assert_eq!(start.elapsed(), Duration::from_millis(4500));
    }

    #[tokio::test(start_paused = true)]
    async fn three_slow_attempts_share_one_deadline() {
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        let never = tower::service_fn(move |_call: ChatCall| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<ChatReply, GatewayError>>()
        });
        let limits = timeouts(4, 8, 10);
        let dispatch = Dispatch::new(Router::default())
            .with_timeouts(limits)
            .with_provider("mock", never);
        let policy = RetryPolicy::new(RetrySettings {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        });
        let core = tower::retry::Retry::new(policy, dispatch);

        let start = Instant::now();
        let context = CallContext {
            deadline: Some(instant_after(start, limits.total)),
            ..CallContext::default()
        };
        let call = ChatCall::with_context(request(true), context);
        let err = core.oneshot(call).await.unwrap_err();
        assert_eq!(err.status(), 504);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        // 4 s + 4 s + what was left: the request's 10 s, not three first-byte waits (12 s).
        assert_eq!(start.elapsed(), limits.total);
    }
}
