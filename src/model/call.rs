//! What the typed core is called with and what it answers.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use smallvec::SmallVec;

use super::{ChatChunk, ChatRequest, ChatResponse, RelayedReply, Usage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::{ErrorKind, GatewayError};
use crate::format::{InboundFormat, ReplyFormat};
use crate::route::Route;

/// One call through the typed core: the request of one operation (chat, embeddings), its context
/// and its route. Cheap to clone (a few `Arc`s), so the retry layer can keep a copy for the next
/// attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Call<R> {
    /// The canonical request.
    pub request: Arc<R>,
    /// Per-request facts for the layers below (formats, ids, original bytes, deadline).
    pub context: Arc<CallContext>,
    /// Where the call goes: set by [`Dispatch`](crate::provider::Dispatch) before it calls the
    /// provider, which reads the upstream model (and Bedrock's strategy) from it. `None` above
    /// dispatch.
    pub route: Option<Route>,
}

/// One chat call through the typed core.
pub type ChatCall = Call<ChatRequest>;

/// A request the typed core routes and bounds: it names its model, and says whether its reply
/// streams (then the timeout layer gives its first byte a limit of its own).
pub trait CallRequest {
    /// The model the client named.
    fn model(&self) -> &str;
    /// Whether the reply is a stream.
    fn streams(&self) -> bool;
}

impl CallRequest for ChatRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn streams(&self) -> bool {
        self.is_stream()
    }
}

impl<R> Call<R> {
    /// A call with default context for `request` (for chat: OpenAI in, OpenAI out).
    pub fn new(request: R) -> Self {
        Call::with_context(request, CallContext::default())
    }

    /// A call with the given context (the request as it is, or shared already).
    pub fn with_context(request: impl Into<Arc<R>>, context: CallContext) -> Self {
        Call {
            request: request.into(),
            context: Arc::new(context),
            route: None,
        }
    }

    /// The call routed by `route`: how to call a provider service directly, without
    /// [`Dispatch`](crate::provider::Dispatch).
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }
}

impl<R: CallRequest> Call<R> {
    /// The model to send upstream: the route's, else the request's.
    pub fn upstream_model(&self) -> &str {
        self.route
            .as_ref()
            .map_or(self.request.model(), |r| &*r.upstream_model)
    }
}

/// Per-request facts that the typed core may need beyond the canonical request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallContext {
    /// The request id (from `x-request-id` or generated), sent upstream and logged.
    pub request_id: Option<http::HeaderValue>,
    /// The format the client wrote.
    pub inbound: InboundFormat,
    /// The format the client reads.
    pub target: ReplyFormat,
    /// The client's body as written, for lossless pass-through when formats match.
    pub original: Option<OriginalBody>,
    /// The client's OpenAI body as received, when the canonical request is exactly what it says
    /// (nothing was added or overridden): an OpenAI upstream that needs no rewrite gets these bytes
    /// as they are, without serializing the request again.
    pub body: Option<bytes::Bytes>,
    /// What the core learns about the call (attempts, provider, usage), for logs and metrics.
    pub record: Arc<CallRecord>,
    /// When the whole request must be answered by: one deadline for every attempt, so retries
    /// cannot stretch a request past its total time. Set where the call is made (translation,
    /// the Bedrock runtime surface); `None` gives each attempt the total timeout from its start.
    pub deadline: Option<tokio::time::Instant>,
    /// For a `/v1/responses` call (whose [`body`](Self::body) is the client's Responses body as
    /// received): the error a provider that cannot forward that body as is must answer with — the
    /// body asks for something only a Responses API upstream serves (a built-in tool, a
    /// `previous_response_id` the gateway did not create). An OpenAI provider configured with
    /// `responses_api` forwards the body instead; every other provider answers this error.
    pub needs_responses_api: Option<crate::error::GatewayError>,
}

impl CallContext {
    /// [`needs_responses_api`](Self::needs_responses_api) as a result, for a provider that
    /// translates the call.
    pub fn check_translatable(&self) -> Result<(), crate::error::GatewayError> {
        match &self.needs_responses_api {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl CallContext {
    /// The context of a call whose client wrote `inbound` and reads `target`; set the other
    /// fields (request id, original body, deadline) as they are known.
    pub fn new(inbound: InboundFormat, target: ReplyFormat) -> Self {
        CallContext {
            inbound,
            target,
            ..CallContext::default()
        }
    }
}

/// Facts about one call, filled in as it goes through the stack and read by the log line and the
/// metrics when the reply is finished. Shared (`Arc`) between the core, the reply stream and the
/// response extensions.
#[derive(Debug, Default)]
pub struct CallRecord {
    /// The model as the client wrote it.
    pub model: String,
    /// The format the client wrote.
    pub inbound: InboundFormat,
    /// The format the client reads.
    pub target: ReplyFormat,
    /// Whether the reply is streamed.
    pub stream: bool,
    /// The first attempt held inline: a call that needs no retry makes no list on the heap.
    attempts: Mutex<SmallVec<[Attempt; 1]>>,
    /// Set by dispatch when a failed attempt can go to another deployment (read by the retry
    /// policy, which then tries again at once).
    fallback: AtomicBool,
    /// The model the call was redirected to after a context-window error (at most once).
    redirect: OnceLock<Arc<str>>,
    usage: OnceLock<(u64, u64)>,
    cache_usage: OnceLock<(u64, u64)>,
    stream_error: OnceLock<ErrorKind>,
    /// What the call cost: `Some(None)` when its price is unknown.
    cost: OnceLock<Option<crate::cost::Usd>>,
}

/// One upstream attempt of a call: where it went and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The provider service called.
    pub provider: Arc<str>,
    /// The model group, when the model named one.
    pub group: Option<Arc<str>>,
    /// The group's deployment.
    pub deployment: Option<Arc<str>>,
    /// The model id sent upstream (what the price table prices), once routed.
    pub upstream_model: Option<Arc<str>>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

impl Attempt {
    /// An attempt at `provider` (outside any model group), still running.
    pub fn new(provider: Arc<str>) -> Self {
        Attempt {
            provider,
            group: None,
            deployment: None,
            upstream_model: None,
            outcome: AttemptOutcome::Pending,
        }
    }

    /// Sending `model` upstream.
    pub fn sending(mut self, model: Arc<str>) -> Self {
        self.upstream_model = Some(model);
        self
    }

    /// The attempt at `deployment` of `group`.
    pub fn in_group(mut self, group: Arc<str>, deployment: Arc<str>) -> Self {
        self.group = Some(group);
        self.deployment = Some(deployment);
        self
    }
}

/// How an upstream attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Not finished yet.
    Pending,
    /// Answered: a complete reply, or a stream's first event.
    Ok,
    /// Failed before the first byte.
    Failed {
        /// What went wrong.
        kind: ErrorKind,
        /// The status the upstream answered with, when it answered.
        upstream_status: Option<u16>,
    },
    /// Dropped before it finished (the client went away, or the request's time ran out).
    Cancelled,
}

impl AttemptOutcome {
    /// The outcome of an attempt that failed with `error`.
    pub fn failed(error: &GatewayError) -> Self {
        AttemptOutcome::Failed {
            kind: error.kind(),
            upstream_status: error.upstream_status_code(),
        }
    }
}

impl AttemptOutcome {
    /// What [`Display`](fmt::Display) writes, into any writer (the access log writes it straight
    /// into its line).
    pub(crate) fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self {
            AttemptOutcome::Pending => f.write_str("pending"),
            AttemptOutcome::Ok => f.write_str("ok"),
            AttemptOutcome::Cancelled => f.write_str("cancelled"),
            AttemptOutcome::Failed {
                upstream_status: Some(status),
                ..
            } => {
                f.write_str("http_")?;
                f.write_str(itoa::Buffer::new().format(*status))
            }
            AttemptOutcome::Failed { kind, .. } => f.write_str(match kind {
                ErrorKind::UpstreamTimeout => "timeout",
                ErrorKind::UpstreamConnect => "connect_error",
                ErrorKind::UpstreamProtocol => "protocol_error",
                ErrorKind::UpstreamAuth => "auth_error",
                ErrorKind::ProviderNotConfigured => "not_configured",
                ErrorKind::InvalidRequest => "invalid_request",
                _ => "error",
            }),
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl CallRecord {
    /// A record for a call of `model`.
    pub fn new(
        model: impl Into<String>,
        inbound: InboundFormat,
        target: ReplyFormat,
        stream: bool,
    ) -> Self {
        CallRecord {
            model: model.into(),
            inbound,
            target,
            stream,
            ..CallRecord::default()
        }
    }

    fn attempt_list(&self) -> std::sync::MutexGuard<'_, SmallVec<[Attempt; 1]>> {
        // A panic while the lock was held leaves a list that is still a list.
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one upstream attempt at the provider service named `provider`.
    pub fn record_attempt(&self, provider: &Arc<str>) {
        self.begin_attempt(Attempt::new(provider.clone()));
    }

    /// Records the start of `attempt`; its number is what [`end_attempt`](Self::end_attempt)
    /// takes.
    pub fn begin_attempt(&self, attempt: Attempt) -> usize {
        let mut list = self.attempt_list();
        list.push(attempt);
        list.len() - 1
    }

    /// Records how attempt number `index` ended.
    pub fn end_attempt(&self, index: usize, outcome: AttemptOutcome) {
        if let Some(a) = self.attempt_list().get_mut(index) {
            a.outcome = outcome;
        }
    }

    /// The latest attempt.
    pub fn last_attempt(&self) -> Option<Attempt> {
        self.attempt_list().last().cloned()
    }

    /// Every attempt so far, in order.
    pub fn attempt_log(&self) -> Vec<Attempt> {
        self.attempt_list().to_vec()
    }

    /// `f` over the attempts so far, without copying them.
    pub(crate) fn with_attempts<R>(&self, f: impl FnOnce(&[Attempt]) -> R) -> R {
        f(&self.attempt_list())
    }

    /// The deployments of `group` tried so far.
    pub fn tried_in(&self, group: &str) -> Vec<Arc<str>> {
        self.attempt_list()
            .iter()
            .filter(|a| a.group.as_deref() == Some(group))
            .filter_map(|a| a.deployment.clone())
            .collect()
    }

    /// The attempts that went to another deployment than the attempt before them.
    pub fn fallbacks(&self) -> u32 {
        let list = self.attempt_list();
        let moved = list
            .windows(2)
            .filter(|w| (&w[0].provider, &w[0].deployment) != (&w[1].provider, &w[1].deployment))
            .count();
        u32::try_from(moved).unwrap_or(u32::MAX)
    }

    /// Marks whether the attempt that just failed may go on to another deployment at once.
    pub(crate) fn set_fallback(&self, available: bool) {
        self.fallback.store(available, Ordering::Relaxed);
    }

    /// Whether the attempt that just failed may go on to another deployment (and clears it).
    pub(crate) fn take_fallback(&self) -> bool {
        self.fallback.swap(false, Ordering::Relaxed)
    }

    /// Sends every later attempt to `model` (once: a second redirect is refused).
    pub(crate) fn redirect_to(&self, model: Arc<str>) -> bool {
        self.redirect.set(model).is_ok()
    }

    /// The model later attempts go to instead of the request's, after a context-window error.
    pub fn redirected(&self) -> Option<Arc<str>> {
        self.redirect.get().cloned()
    }

    /// Records the final usage (first report wins).
    pub fn record_usage(&self, prompt_tokens: u64, completion_tokens: u64) {
        let _ = self.usage.set((prompt_tokens, completion_tokens));
    }

    /// Records a reply's final usage, prompt-cache reads and writes included (first report wins).
    pub fn record_usage_of(&self, usage: &Usage) {
        self.record_usage(usage.prompt_tokens, usage.completion_tokens);
        let _ = self
            .cache_usage
            .set((usage.cached_tokens(), usage.cache_write_tokens()));
    }

    /// Records that the stream ended with an in-band error.
    pub fn record_stream_error(&self, kind: ErrorKind) {
        let _ = self.stream_error.set(kind);
    }

    /// Upstream attempts made (0 when the call never reached a provider).
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.attempt_list().len()).unwrap_or(u32::MAX)
    }

    /// The name of the provider service of the last attempt: the one that served the call when
    /// it succeeded.
    pub fn provider(&self) -> Option<Arc<str>> {
        self.attempt_list().last().map(|a| a.provider.clone())
    }

    /// The model-group deployment of the last attempt, when the model named a group.
    pub fn deployment(&self) -> Option<Arc<str>> {
        self.attempt_list()
            .last()
            .and_then(|a| a.deployment.clone())
    }

    /// `(prompt, completion)` tokens, once known (`prompt` counts cache reads and writes too).
    pub fn usage(&self) -> Option<(u64, u64)> {
        self.usage.get().copied()
    }

    /// `(read, written)` prompt-cache tokens, once known: the part of the prompt tokens the
    /// cache served, and the part written to it.
    pub fn cache_usage(&self) -> Option<(u64, u64)> {
        self.cache_usage.get().copied()
    }

    /// Records what the call cost (`None`: its price is unknown); the first record wins.
    pub fn record_cost(&self, cost: Option<crate::cost::Usd>) {
        let _ = self.cost.set(cost);
    }

    /// What the call cost, once known: `Some(None)` when the model's price is unknown.
    pub fn cost(&self) -> Option<Option<crate::cost::Usd>> {
        self.cost.get().copied()
    }

    /// The model the last attempt sent upstream.
    pub fn upstream_model(&self) -> Option<Arc<str>> {
        self.attempt_list()
            .last()
            .and_then(|a| a.upstream_model.clone())
    }

    /// The in-band error a stream ended with, if any.
    pub fn stream_error(&self) -> Option<ErrorKind> {
        self.stream_error.get().copied()
    }
}

/// The client's body as written (native Bedrock formats only), with its format.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OriginalBody {
    /// The format the body is in.
    pub format: InboundFormat,
    /// The parsed top-level object, forwarded after routing-only keys are removed.
    pub json: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl OriginalBody {
    /// The client's `json` body, written in `format`.
    pub fn new(
        format: InboundFormat,
        json: impl Into<Arc<serde_json::Map<String, serde_json::Value>>>,
    ) -> Self {
        OriginalBody {
            format,
            json: json.into(),
        }
    }
}

/// The typed core's answer: a complete reply, or a stream whose first item has already arrived.
// The complete variant is moved once per request; boxing it would add an allocation per request to
// save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum ChatReply {
    /// A complete reply.
    Complete(ChatResponse),
    /// A stream of canonical chunks; ends after the final (or usage) chunk, or after one error.
    Stream(ChunkStream),
    /// The upstream's own bytes, in the client's format: relayed as they are (pass-through).
    /// [`crate::stream::relay::canonical`] decodes them for a reader that needs canonical chunks.
    Relayed(RelayedReply),
}

impl ChatReply {
    /// The reply with its stream, whichever kind (canonical chunks or relayed events), passed
    /// through `wrapper`; a complete reply as it is. The one place the layers that guard or track
    /// a stream (the timeout's stall guard, a model group's ticket) reach both kinds.
    pub(crate) fn wrap_stream(self, wrapper: impl StreamWrapper) -> Self {
        match self {
            ChatReply::Stream(s) => ChatReply::Stream(ChunkStream::new(wrapper.wrap(s))),
            ChatReply::Relayed(RelayedReply {
                format,
                model,
                body: super::RelayedBody::Stream(s),
            }) => ChatReply::Relayed(RelayedReply {
                format,
                model,
                body: super::RelayedBody::Stream(super::RelayedStream::new(wrapper.wrap(s))),
            }),
            complete => complete,
        }
    }
}

/// What [`ChatReply::wrap_stream`] applies to a stream of either item type.
pub(crate) trait StreamWrapper {
    /// `stream`, wrapped.
    fn wrap<T: Send + 'static>(
        self,
        stream: impl Stream<Item = Result<T, GatewayError>> + Send + Unpin + 'static,
    ) -> impl Stream<Item = Result<T, GatewayError>> + Send + 'static;
}

impl fmt::Debug for ChatReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatReply::Complete(r) => f.debug_tuple("Complete").field(r).finish(),
            ChatReply::Stream(_) => f.write_str("Stream(..)"),
            ChatReply::Relayed(r) => f.debug_tuple("Relayed").field(r).finish(),
        }
    }
}

/// A boxed stream of canonical chunks. An `Err` item ends the stream: it becomes one in-band error
/// event for the client.
pub struct ChunkStream {
    inner: Pin<Box<dyn Stream<Item = Result<ChatChunk, GatewayError>> + Send>>,
}

impl ChunkStream {
    /// Boxes a stream.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<ChatChunk, GatewayError>> + Send + 'static,
    {
        ChunkStream {
            inner: Box::pin(stream),
        }
    }

    /// A stream that yields the given items (handy for tests and in-memory providers).
    pub fn from_chunks(items: Vec<Result<ChatChunk, GatewayError>>) -> Self {
        ChunkStream::new(futures_util::stream::iter(items))
    }
}

impl fmt::Debug for ChunkStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkStream(..)")
    }
}

impl Stream for ChunkStream {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
