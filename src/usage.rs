//! Usage hooks: how stages above translation learn a reply's final token usage.
//!
//! A stage that needs the usage (the rate limiter's token budget, metrics) adds a hook to the
//! request's [`UsageHooks`] extension; [translation](crate::translate) calls every hook once, when
//! the usage is known — at once for a complete reply, when the usage chunk passes for a stream.
//! A stream that fails or is abandoned before its usage is known reports nothing.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::error::GatewayError;
use crate::model::{CallRecord, ChatChunk, ChunkStream, Usage};

type Hook = Arc<dyn Fn(&Usage) + Send + Sync>;

/// The hooks of one request (a request extension).
#[derive(Clone, Default)]
pub struct UsageHooks {
    hooks: Vec<Hook>,
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

    /// Whether no hook is registered.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Calls every hook with `usage`.
    pub fn report(&self, usage: &Usage) {
        for h in &self.hooks {
            h(usage);
        }
    }

    /// Wraps `stream` so the hooks and `record` see the usage chunk (and an in-band error) as it
    /// passes.
    pub fn tap(self, stream: ChunkStream, record: Arc<CallRecord>) -> ChunkStream {
        ChunkStream::new(UsageTap {
            inner: stream,
            hooks: Some(self),
            record,
        })
    }
}

struct UsageTap {
    inner: ChunkStream,
    hooks: Option<UsageHooks>,
    record: Arc<CallRecord>,
}

impl Stream for UsageTap {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                if let Some(usage) = &chunk.usage {
                    self.record
                        .record_usage(usage.prompt_tokens, usage.completion_tokens);
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
