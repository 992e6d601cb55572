//! Providers and the dispatch stage of the typed core.
//!
//! [`Dispatch`] routes each [`ChatCall`] by model ([`Router`]) to the [`openai`] or [`bedrock`]
//! provider, bounds the wait for the first byte, and guards streams with the idle-gap and total
//! timeouts ([`TimedStream`]). An unknown model is answered with 404 before any upstream is called.
//!
//! A provider answers a stream only once its first event has arrived, so every failure before the
//! first byte is an `Err` the retry layer above can act on.

pub mod bedrock;
pub mod mock;
pub mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use tower_service::Service;

use crate::config::Timeouts;
use crate::error::GatewayError;
use crate::model::{ChatCall, ChatChunk, ChatReply, ChunkStream};
use crate::route::{Provider, Router};

pub use bedrock::BedrockProvider;
pub use mock::MockProvider;
pub use openai::OpenAiProvider;

/// Routes calls to providers. Cheap to clone (all `Arc`s).
#[derive(Debug, Clone)]
pub struct Dispatch {
    router: Arc<Router>,
    openai: Option<OpenAiProvider>,
    bedrock: Option<BedrockProvider>,
    mock: Option<MockProvider>,
    timeouts: Timeouts,
}

impl Dispatch {
    /// A dispatcher over the configured providers.
    pub fn new(
        router: Router,
        openai: Option<OpenAiProvider>,
        bedrock: Option<BedrockProvider>,
        timeouts: Timeouts,
    ) -> Self {
        Dispatch {
            router: Arc::new(router),
            openai,
            bedrock,
            mock: None,
            timeouts,
        }
    }

    /// Serves `mock/…` models with the in-process [`MockProvider`].
    pub fn with_mock(mut self, mock: MockProvider) -> Self {
        self.mock = Some(mock);
        self
    }

    /// The mock provider, if enabled.
    pub fn mock(&self) -> Option<&MockProvider> {
        self.mock.as_ref()
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The OpenAI provider, if configured.
    pub fn openai(&self) -> Option<&OpenAiProvider> {
        self.openai.as_ref()
    }

    /// The Bedrock provider, if configured.
    pub fn bedrock(&self) -> Option<&BedrockProvider> {
        self.bedrock.as_ref()
    }
}

impl Service<ChatCall> for Dispatch {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<ChatReply, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        let route = match self.router.resolve(&call.request.model) {
            Ok(r) => r,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let timeouts = self.timeouts;
        let stream = call.request.is_stream();
        let provider = route.provider;
        let fut: BoxFuture<'static, Result<ChatReply, GatewayError>> = match route.provider {
            Provider::OpenAi => match &self.openai {
                Some(p) => Box::pin(p.clone().chat(call.clone(), route)),
                None => return not_configured("OpenAI", "set OPENAI_BASE_URL / OPENAI_API_KEY"),
            },
            Provider::Bedrock(_) => match &self.bedrock {
                Some(p) => Box::pin(p.clone().chat(call.clone(), route)),
                None => {
                    return not_configured(
                        "Bedrock",
                        "set AWS_REGION and AWS credentials, and leave BEDROCK_ENABLED on",
                    )
                }
            },
            Provider::Mock => match &self.mock {
                Some(p) => Box::pin(std::future::ready(p.answer(&call.request))),
                None => {
                    return not_configured(
                        "mock",
                        "start the gateway with --mock or MOCK_PROVIDER=true",
                    )
                }
            },
        };
        call.context.record.record_attempt(provider.as_str());
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            // A stream must show its first event within `first_byte` (then the idle and total
            // limits take over); a complete reply arrives all at once, so it gets the whole
            // `total` — and is not retried when that runs out, since the upstream did the work.
            let limit = if stream {
                timeouts.first_byte
            } else {
                timeouts.total
            };
            let reply = match tokio::time::timeout(limit, fut).await {
                Ok(r) => r?,
                Err(_) => {
                    let e = GatewayError::upstream_timeout(format!(
                        "The upstream did not answer within {} ms.",
                        limit.as_millis()
                    ));
                    return Err(if stream { e } else { e.with_retryable(false) });
                }
            };
            Ok(match reply {
                ChatReply::Stream(s) => ChatReply::Stream(ChunkStream::new(TimedStream::new(
                    s,
                    timeouts.stream_idle,
                    started + timeouts.total,
                ))),
                complete => complete,
            })
        })
    }
}

fn not_configured(name: &str, how: &str) -> BoxFuture<'static, Result<ChatReply, GatewayError>> {
    let e = GatewayError::provider_not_configured(name, how);
    Box::pin(std::future::ready(Err(e)))
}

/// Awaits the first item of `stream` so that failures before the first byte stay retryable, then
/// answers the stream with that item put back in front.
pub(crate) async fn first_then_rest<S>(mut stream: S) -> Result<ChatReply, GatewayError>
where
    S: Stream<Item = Result<ChatChunk, GatewayError>> + Send + Unpin + 'static,
{
    match stream.next().await {
        None => Err(GatewayError::upstream_protocol(
            "The upstream stream ended before its first event.",
        )),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(ChatReply::Stream(ChunkStream::new(
            futures_util::stream::once(std::future::ready(Ok(first))).chain(stream),
        ))),
    }
}

pin_project_lite::pin_project! {
    /// A stream guard: ends the stream with an in-band 504 when the upstream is silent for longer
    /// than the idle gap, or when the total deadline passes — a stalled stream never hangs a client.
    pub struct TimedStream {
        inner: ChunkStream,
        idle: Duration,
        // When the last item arrived; the idle timer is re-armed from it only when it fires,
        // instead of being reset (a timer-wheel update) on every chunk.
        last: tokio::time::Instant,
        #[pin]
        idle_timer: tokio::time::Sleep,
        #[pin]
        deadline: tokio::time::Sleep,
        done: bool,
    }
}

impl TimedStream {
    /// Guards `inner` with an `idle` gap and an absolute `deadline`.
    pub fn new(inner: ChunkStream, idle: Duration, deadline: tokio::time::Instant) -> Self {
        TimedStream {
            inner,
            idle,
            last: tokio::time::Instant::now(),
            idle_timer: tokio::time::sleep(idle),
            deadline: tokio::time::sleep_until(deadline),
            done: false,
        }
    }
}

impl std::fmt::Debug for TimedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStream")
            .field("idle", &self.idle)
            .finish()
    }
}

impl Stream for TimedStream {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut *this.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let idle = *this.idle;
                this.idle_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle);
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
        if this.deadline.poll(cx).is_ready() {
            *this.done = true;
            return Poll::Ready(Some(Err(GatewayError::upstream_timeout(
                "The upstream stream exceeded the total time limit.",
            ))));
        }
        while this.idle_timer.as_mut().poll(cx).is_ready() {
            let due = *this.last + *this.idle;
            if due > tokio::time::Instant::now() {
                // Items arrived since the timer was armed: wait for the rest of the gap.
                this.idle_timer.as_mut().reset(due);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta};

    #[tokio::test(start_paused = true)]
    async fn idle_gap_counts_from_the_last_item() {
        let meta = ChunkMeta::new("m");
        // Items 5 s apart never trip an 8 s idle limit; the silence after the last one does.
        let s = futures_util::stream::unfold(0usize, move |i| {
            let meta = meta.clone();
            async move {
                if i >= 3 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                Some((Ok(ChatChunk::delta(&meta, Delta::text("x"), None)), i + 1))
            }
        });
        let start = tokio::time::Instant::now();
        let mut timed = Box::pin(TimedStream::new(
            ChunkStream::new(s),
            Duration::from_secs(8),
            start + Duration::from_secs(3600),
        ));
        for _ in 0..3 {
            assert!(timed.next().await.unwrap().is_ok());
        }
        let err = timed.next().await.unwrap().unwrap_err();
        assert_eq!(err.status(), 504);
        assert_eq!(start.elapsed(), Duration::from_secs(15 + 8));
        assert!(
            timed.next().await.is_none(),
            "the stream ends after the timeout"
        );
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
        let start = tokio::time::Instant::now();
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
                    break;
                }
            }
        }
        assert_eq!(n, 4);
        assert_eq!(start.elapsed(), Duration::from_millis(4500));
    }
}
