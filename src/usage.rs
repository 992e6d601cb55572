//! Usage hooks: how stages above translation learn a reply's final token usage.
//!
//! A stage that needs the usage (the rate limiter's token budget, metrics) adds a hook to the
//! request's [`UsageHooks`] extension, or, after detection, to the detected request's own
//! ([`DetectedRequest::usage_hooks`](crate::detect::DetectedRequest::usage_hooks), as the key
//! policy does); [translation](crate::translate) calls every hook once, when
//! the usage is known — at once for a complete reply, when the usage chunk passes for a stream.
//! A stream that fails or is abandoned before its usage is known reports an estimate from the
//! output it streamed (about four bytes per token), so a token budget cannot be dodged by hanging
//! up just before the end; logs and metrics then show the usage as unknown.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use smallvec::SmallVec;

use crate::error::GatewayError;
use crate::model::{CallRecord, ChatChunk, ChunkStream, RelayedEvent, RelayedStream, Usage};

/// What a hook is: a closure, or a stage's own shared state that already sits in an `Arc` (so
/// adding it costs no second allocation per request).
pub(crate) trait UsageHook: Send + Sync {
    fn report(&self, usage: &Usage);
}

impl<F: Fn(&Usage) + Send + Sync> UsageHook for F {
    fn report(&self, usage: &Usage) {
        self(usage)
    }
}

type Hook = Arc<dyn UsageHook>;

/// The hooks of one request (a request extension, and a field of the detected request).
#[derive(Clone, Default)]
pub struct UsageHooks {
    /// Two held inline (the rate limiter's and the key policy's): no list on the heap per request.
    hooks: SmallVec<[Hook; 2]>,
}

impl fmt::Debug for UsageHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsageHooks")
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl UsageHooks {
    /// Adds a hook.
    pub fn push(&mut self, hook: impl Fn(&Usage) + Send + Sync + 'static) {
        self.hooks.push(Arc::new(hook));
    }

    /// Adds a hook that is already shared.
    pub(crate) fn push_shared(&mut self, hook: Arc<dyn UsageHook>) {
        self.hooks.push(hook);
    }

    /// Moves `other`'s hooks after these.
    pub(crate) fn append(&mut self, other: &mut UsageHooks) {
        if self.hooks.is_empty() {
            // `other`'s taken as they are.
            std::mem::swap(&mut self.hooks, &mut other.hooks);
        } else {
            self.hooks.append(&mut other.hooks);
        }
    }

    /// Whether no hook is registered.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Calls every hook with `usage`.
    pub fn report(&self, usage: &Usage) {
        for h in &self.hooks {
            h.report(usage);
        }
    }

    /// Wraps `stream` so the hooks and `record` see the usage chunk (and an in-band error) as it
    /// passes.
    pub(crate) fn tap(self, stream: ChunkStream, record: Arc<CallRecord>) -> ChunkStream {
        ChunkStream::new(UsageTap {
            inner: stream,
            hooks: Some(self),
            record,
            streamed_bytes: 0,
        })
    }

    /// [`tap`](Self::tap) for a relayed stream: the usage and output bytes its byte scan found.
    pub(crate) fn tap_relayed(
        self,
        stream: RelayedStream,
        record: Arc<CallRecord>,
    ) -> RelayedStream {
        RelayedStream::new(UsageTap {
            inner: stream,
            hooks: Some(self),
            record,
            streamed_bytes: 0,
        })
    }
}

/// What a stream item tells the tap.
trait Reported {
    /// The final usage, on the item that carries it.
    fn usage(&self) -> Option<&Usage>;
    /// Output bytes (text, reasoning, tool arguments) for the estimate.
    fn output_bytes(&self) -> usize;
}

impl Reported for ChatChunk {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    fn output_bytes(&self) -> usize {
        let Some(choice) = self.choices.first() else {
            return 0;
        };
        let d = &choice.delta;
        let args: usize = d
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|c| c.function.as_ref()?.arguments.as_ref().map(String::len))
            .sum();
        // Reasoning is billed as output too.
        let reasoning = d.reasoning_content.as_ref().map_or(0, String::len);
        d.content.as_ref().map_or(0, String::len) + args + reasoning
    }
}

impl Reported for RelayedEvent {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    fn output_bytes(&self) -> usize {
        self.output_bytes
    }
}

struct UsageTap<S> {
    inner: S,
    hooks: Option<UsageHooks>,
    record: Arc<CallRecord>,
    /// Text and argument bytes streamed so far, for the estimate when no usage ever arrives.
    streamed_bytes: usize,
}

impl<S> Drop for UsageTap<S> {
    fn drop(&mut self) {
        // A stream that ends (or is abandoned) before its usage chunk still produced output:
        // the hooks get an estimate (about four bytes per token) so a token budget cannot be
        // dodged by disconnecting just before the end. Logs and metrics keep "unknown".
        if let Some(hooks) = self.hooks.take() {
            let completion = (self.streamed_bytes as u64).div_ceil(4);
            if completion > 0 {
                hooks.report(&Usage {
                    completion_tokens: completion,
                    total_tokens: completion,
                    ..Usage::default()
                });
            }
        }
    }
}

impl<S, T> Stream for UsageTap<S>
where
    S: Stream<Item = Result<T, GatewayError>> + Unpin,
    T: Reported,
{
    type Item = Result<T, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                self.streamed_bytes += chunk.output_bytes();
                if let Some(usage) = chunk.usage() {
                    self.record.record_usage_of(usage);
                    if let Some(hooks) = self.hooks.take() {
                        hooks.report(usage);
                    }
                }
            }
            Some(Err(e)) => self.record.record_stream_error(e.kind()),
            None => {}
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChunkMeta, Delta};
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn an_abandoned_stream_reports_an_estimate_and_a_finished_one_the_real_usage() {
        let meta = ChunkMeta::new("m");
        let seen = Arc::new(AtomicU64::new(0));
        let mut hooks = UsageHooks::default();
        let s = seen.clone();
        hooks.push(move |u| {
            s.store(u.total_tokens, Ordering::SeqCst);
        });
        let chunks = vec![
            Ok(ChatChunk::delta(&meta, Delta::role(), None)),
            Ok(ChatChunk::delta(&meta, Delta::text("a".repeat(40)), None)),
            Ok(ChatChunk::delta(&meta, Delta::text("b".repeat(40)), None)),
        ];
        let mut tapped = hooks
            .clone()
            .tap(ChunkStream::from_chunks(chunks.clone()), Arc::default());
        tapped.next().await;
        tapped.next().await;
        drop(tapped);
        assert_eq!(
            seen.load(Ordering::SeqCst),
            10,
            "40 bytes streamed before the hang-up"
        );

        let mut all = chunks;
        all.push(Ok(ChatChunk::usage(&meta, Usage::from_parts(5, 20, 0, 0))));
        let record = Arc::new(CallRecord::default());
        let tapped = hooks.tap(ChunkStream::from_chunks(all), record.clone());
        let _: Vec<_> = tapped.collect().await;
        assert_eq!(seen.load(Ordering::SeqCst), 25, "the real usage, once");
        assert_eq!(record.usage(), Some((5, 20)));
    }
}
