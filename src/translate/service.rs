//! [`TranslateLayer`] / [`Translate`]: inbound format → typed core → reply format.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use super::decode_shared;
use super::reply::{
    complete_headers, encode_complete_in, relayed_stream_reply, relays, responses_stream_reply,
    stream_reply, Room, StreamSettings,
};
use crate::body::Body;
use crate::detect::DetectedRequest;
use crate::error::{ErrorDialect, GatewayError};
use crate::format::responses::{self as responses_format, ResponseMeta};
use crate::format::{embeddings, InboundFormat, ReplyFormat};
use crate::model::{
    CallContext, CallRecord, ChatCall, ChatReply, EmbeddingsCall, EmbeddingsResponse,
    GuardrailConfig, RelayedBody, Usage,
};
use crate::provider::dispatch::EmbeddingsProviderService as EmbeddingsCore;
use crate::provider::timeout::instant_after;
use crate::responses_store::{ResponseStore, StoredResponse};
use crate::usage::UsageHooks;

/// Layer that applies [`Translate`]. The service it makes shares the inner service behind an
/// `Arc`, so it is `Send` when the inner service is `Send + Sync`.
#[derive(Debug, Clone)]
pub struct TranslateLayer {
    keep_alive: Option<Duration>,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
    reader_timeout: Option<Duration>,
    embeddings: Option<Arc<EmbeddingsCore>>,
    store: ResponseStore,
}

impl TranslateLayer {
    /// Translation with keep-alives on SSE streams idle for `keep_alive` (`None` = never).
    pub fn new(keep_alive: Option<Duration>) -> Self {
        TranslateLayer {
            keep_alive,
            shutdown: None,
            total: None,
            reader_timeout: None,
            embeddings: None,
            store: ResponseStore::default(),
        }
    }

    /// Responses requests ([`InboundFormat::Responses`]) keep and read their stored responses in
    /// `store` (default: a bounded in-process store).
    pub fn with_response_store(mut self, store: ResponseStore) -> Self {
        self.store = store;
        self
    }

    /// Embeddings requests ([`InboundFormat::Embeddings`]) go to `core`, the typed core's second
    /// operation (retry → dispatch → provider, as chat calls); without one they are a 404 naming
    /// the missing operation.
    pub fn with_embeddings(mut self, core: EmbeddingsCore) -> Self {
        self.embeddings = Some(Arc::new(core));
        self
    }

    /// A stream whose client has not taken a frame for `timeout` closes its connection (through
    /// the request's [`ConnectionCloser`](crate::server::ConnectionCloser), which the gateway's
    /// server provides), ending the upstream call and freeing its slot even when nothing polls
    /// the body any more.
    pub fn with_reader_timeout(mut self, timeout: Duration) -> Self {
        self.reader_timeout = Some(timeout);
        self
    }

    /// Open streams end cleanly (an in-band error event) when `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = Some(token);
        self
    }

    /// Every call gets one deadline, `total` from when it is made, for all its attempts
    /// ([`CallContext::deadline`]). Without it the core gives each attempt its own total time.
    pub fn with_total_timeout(mut self, total: Duration) -> Self {
        self.total = Some(total);
        self
    }
}

impl Default for TranslateLayer {
    fn default() -> Self {
        TranslateLayer::new(Some(Duration::from_secs(15)))
    }
}

impl<S> Layer<S> for TranslateLayer {
    type Service = Translate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Translate {
            inner: Arc::new(inner),
            keep_alive: self.keep_alive,
            shutdown: self.shutdown.clone(),
            total: self.total,
            reader_timeout: self.reader_timeout,
            embeddings: self.embeddings.clone(),
            store: self.store.clone(),
        }
    }
}

/// The adapter service: `Request<DetectedRequest>` in, `Response<Body>` out, the typed core inside.
#[derive(Debug, Clone)]
pub struct Translate<S> {
    /// The typed core, shared: the stage above (detection) clones this service per request, and
    /// a boxed core's clone allocates, so the core is cloned only for a call, once.
    inner: Arc<S>,
    keep_alive: Option<Duration>,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
    reader_timeout: Option<Duration>,
    /// Shared, and its boxed service cloned only for an embeddings call, not with this service.
    embeddings: Option<Arc<EmbeddingsCore>>,
    store: ResponseStore,
}

impl<S> Translate<S> {
    /// The typed core.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S> Service<Request<DetectedRequest>> for Translate<S>
where
    S: Service<ChatCall, Response = ChatReply, Error = GatewayError> + Clone,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The core's readiness is awaited inside the call (`Oneshot`), so a core that fails to get
        // ready is rendered as an error response in the client's dialect instead of failing the
        // connection.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<DetectedRequest>) -> Self::Future {
        let (mut parts, mut detected) = req.into_parts();
        // The request's hooks (the rate limiter's), then those the stages after detection added.
        let mut hooks = parts.extensions.remove::<UsageHooks>().unwrap_or_default();
        hooks.append(&mut detected.usage_hooks);
        let reply = detected.reply;
        let inbound = detected.inbound;
        if inbound == InboundFormat::Embeddings {
            return self.embed(&parts, detected, hooks);
        }
        if inbound == InboundFormat::Responses {
            return self.respond(&parts, detected, hooks);
        }
        let request_id = request_id(&parts);
        // Bedrock clients read the request id as `x-amzn-RequestId`.
        let amzn_id = (reply.error_dialect() == ErrorDialect::Bedrock)
            .then(|| request_id.clone())
            .flatten();
        // An OpenAI body whose request nothing overrides can go upstream as received. Taken, not
        // cloned, when detection decoded it (decoding does not read it again): the first clone of
        // a body read into one buffer is a heap block of its own (`Bytes`' shared count).
        let mut body = (inbound == InboundFormat::OpenAi
            && detected.model.is_none()
            && detected.stream.is_none())
        .then(|| match detected.decoded {
            Some(_) => std::mem::take(&mut detected.body),
            None => detected.body.clone(),
        });
        // The model as detection read it: the call record's own copy when the request names the
        // same (moved, not copied again).
        let requested = detected.requested_model.take();
        // Shared from here: a request detection decoded stays in its one heap block; the
        // changes below are made in place (nothing shares it yet).
        let (mut shared, original) = match decode_shared(detected) {
            Ok(r) => r,
            Err(e) => return ResponseFuture::error(e, reply, amzn_id),
        };
        if shared.n.is_some_and(|n| n > 1) && reply != ReplyFormat::OpenAi {
            // Only OpenAI replies have more than one choice.
            let e = GatewayError::unsupported(
                "n",
                format!("{} replies carry one choice; n must be 1.", reply.as_str()),
            );
            return ResponseFuture::error(e, reply, amzn_id);
        }
        if matches!(
            reply,
            ReplyFormat::BedrockInvokeClaude | ReplyFormat::BedrockInvokeTitan
        ) {
            // InvokeModel names a guardrail in headers, not in the model's body.
            if let Some(g) = invoke_guardrail(&parts.headers) {
                Arc::make_mut(&mut shared).guardrail_config = Some(g);
                body = None;
            }
        }
        let include_usage = shared.include_usage();
        if shared.is_stream() && !include_usage {
            // Always ask the upstream for the final usage: Claude, Titan and Converse streams end
            // with token counts, and the token budget, the log line and the metrics need them. An
            // OpenAI reader that did not ask never sees the usage chunk (its encoder drops it).
            Arc::make_mut(&mut shared)
                .stream_options
                .get_or_insert_with(Default::default)
                .include_usage = Some(true);
            // The received body says the same once the member is spliced in (when it has none).
            body = body.and_then(|b| with_include_usage(&b));
        }
        let model = requested
            .filter(|m| *m == shared.model)
            .unwrap_or_else(|| shared.model.clone());
        let record = Arc::new(CallRecord::new(model, inbound, reply, shared.is_stream()));
        let context = CallContext {
            request_id,
            inbound,
            target: reply,
            original,
            body,
            record: record.clone(),
            deadline: self
                .total
                .map(|t| instant_after(tokio::time::Instant::now(), t)),
            needs_responses_api: None,
        };
        let call = ChatCall::with_context(shared, context);
        let settings = self.settings(&parts, include_usage);
        ResponseFuture {
            state: State::Calling {
                fut: Oneshot::new(S::clone(&self.inner), call),
            },
            reply,
            settings,
            hooks,
            record: Some(record),
            amzn_id,
            responses: None,
            room: Room::of(&mut parts),
        }
    }
}

impl<S> Translate<S>
where
    S: Service<ChatCall, Response = ChatReply, Error = GatewayError> + Clone,
{
    /// An embeddings request: decoded and checked, sent to the embeddings core, answered as the
    /// client's `encoding_format` says.
    fn embed(
        &self,
        parts: &http::request::Parts,
        detected: DetectedRequest,
        hooks: UsageHooks,
    ) -> ResponseFuture<S> {
        let reply = detected.reply;
        let mut request = match embeddings::decode_client_request(&detected.body) {
            Ok(r) => r,
            Err(e) => return ResponseFuture::error(e, reply, None),
        };
        if let Some(model) = detected.model {
            request.model = model;
        }
        let Some(core) = self.embeddings.as_deref().cloned() else {
            let e = GatewayError::not_found(&http::Method::POST, parts.uri.path());
            return ResponseFuture::error(e, reply, None);
        };
        let base64 = request.wants_base64();
        let record = Arc::new(CallRecord::new(
            request.model.clone(),
            InboundFormat::Embeddings,
            reply,
            false,
        ));
        let context = CallContext {
            request_id: request_id(parts),
            inbound: InboundFormat::Embeddings,
            target: reply,
            original: None,
            body: None,
            record: record.clone(),
            deadline: self
                .total
                .map(|t| instant_after(tokio::time::Instant::now(), t)),
            needs_responses_api: None,
        };
        ResponseFuture {
            state: State::Embedding {
                fut: Oneshot::new(core, EmbeddingsCall::with_context(request, context)),
                base64,
            },
            reply,
            settings: StreamSettings {
                include_usage: false,
                keep_alive: None,
                shutdown: None,
                reader: None,
            },
            hooks,
            record: Some(record),
            amzn_id: None,
            responses: None,
            room: Room::default(),
        }
    }

    fn settings(&self, parts: &http::request::Parts, include_usage: bool) -> StreamSettings {
        StreamSettings {
            include_usage,
            keep_alive: self.keep_alive,
            shutdown: self.shutdown.clone(),
            reader: self.reader_timeout.zip(
                parts
                    .extensions
                    .get::<crate::server::ConnectionCloser>()
                    .cloned(),
            ),
        }
    }

    /// A Responses request: the stored conversation of `previous_response_id` fetched (the
    /// caller's own only), the body decoded into a chat call, then the core called as for chat.
    fn respond(
        &self,
        parts: &http::request::Parts,
        detected: DetectedRequest,
        hooks: UsageHooks,
    ) -> ResponseFuture<S> {
        let reply = detected.reply;
        let owner = owner_of(parts);
        let store = self.store.clone();
        let request_id = request_id(parts);
        let deadline = self
            .total
            .map(|t| instant_after(tokio::time::Instant::now(), t));
        let body = detected.body;
        let prepare = async move {
            let previous_id = responses_format::previous_response_id(&body);
            // An id the gateway's store does not know may be the upstream's own: a provider
            // that forwards the body as is (`responses_api`) sends it on; any other answers 404.
            let mut unknown_previous = None;
            let previous = match &previous_id {
                Some(id) => match store.get(&owner, id).await? {
                    Some(stored) => stored.conversation,
                    None => {
                        unknown_previous = Some(
                            GatewayError::invalid_request(format!(
                                "Previous response with id '{id}' not found."
                            ))
                            .with_param("previous_response_id")
                            .with_code("previous_response_not_found")
                            .with_status(http::StatusCode::NOT_FOUND),
                        );
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            let decoded = match responses_format::decode_client_request(&body, &previous) {
                Ok(d) => d,
                Err(e) => {
                    // Still a request for an upstream that speaks the Responses API; any other
                    // provider answers this error.
                    let e = unknown_previous.clone().unwrap_or(e);
                    responses_format::forward_only(&body, e.clone()).ok_or(e)?
                }
            };
            let mut request = decoded.chat;
            if request.is_stream() {
                // The final usage goes into `response.completed`, the budget and the metrics.
                request
                    .stream_options
                    .get_or_insert_with(Default::default)
                    .include_usage = Some(true);
            }
            let record = Arc::new(CallRecord::new(
                request.model.clone(),
                InboundFormat::Responses,
                reply,
                request.is_stream(),
            ));
            let mut meta = ResponseMeta::new(request.model.clone(), decoded.echo);
            meta.previous_response_id = decoded.previous_response_id;
            meta.store = decoded.store;
            let context = CallContext {
                request_id,
                inbound: InboundFormat::Responses,
                target: reply,
                original: None,
                // The client's Responses body, for an upstream that speaks the Responses API.
                body: Some(body),
                record: record.clone(),
                deadline,
                needs_responses_api: unknown_previous.or(decoded.needs_responses_api),
            };
            let call = ChatCall::with_context(request, context);
            Ok(Prepared {
                call,
                record,
                responses: ResponsesReply {
                    meta,
                    conversation: decoded.conversation,
                    store: decoded.store.then_some(store),
                    owner,
                },
            })
        };
        ResponseFuture {
            state: State::Preparing {
                fut: Box::pin(prepare),
                core: Some(S::clone(&self.inner)),
            },
            reply,
            settings: self.settings(parts, false),
            hooks,
            record: None,
            amzn_id: None,
            responses: None,
            room: Room::default(),
        }
    }
}

/// The name of the key a request authenticated with (`anonymous` without auth).
fn owner_of(parts: &http::request::Parts) -> String {
    parts
        .extensions
        .get::<crate::auth::ApiKeyId>()
        .map_or_else(|| "anonymous".to_owned(), |k| k.0.to_string())
}

/// A Responses call ready for the core.
struct Prepared {
    call: ChatCall,
    record: Arc<CallRecord>,
    responses: ResponsesReply,
}

/// What answering a Responses call needs besides the chat reply.
#[derive(Debug)]
struct ResponsesReply {
    meta: ResponseMeta,
    /// The conversation so far (the previous turns and this input), for the store.
    conversation: Vec<Value>,
    /// Where the response is kept (`store: true`).
    store: Option<ResponseStore>,
    owner: String,
}

impl ResponsesReply {
    /// The stored entry for the Response object `object` and the assistant's `turn`.
    fn stored(self, object: &Value, turn: Value) -> Option<(ResponseStore, StoredResponse)> {
        let store = self.store?;
        let mut conversation = self.conversation;
        conversation.push(turn);
        Some((
            store,
            StoredResponse::new(self.owner, object.clone(), conversation),
        ))
    }
}

type PrepareFuture = Pin<Box<dyn Future<Output = Result<Prepared, GatewayError>> + Send>>;
type FinishFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// `body` (one JSON object) with `"stream_options":{"include_usage":true}` as its first member,
/// unless it has a `stream_options` member already, however its key is written (then the request
/// is serialized instead: an upstream reads the last of two members, the client's).
fn with_include_usage(body: &bytes::Bytes) -> Option<bytes::Bytes> {
    const MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;
    for member in crate::format::scan::Members::of(body) {
        // The key as serde_json reads it: unescaped.
        if *member.ok()?.0 == *b"stream_options" {
            return None;
        }
    }
    let open = body.iter().position(|&b| b == b'{')?;
    let mut out = Vec::with_capacity(body.len() + MEMBER.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(MEMBER);
    out.extend_from_slice(&body[open + 1..]);
    Some(out.into())
}

/// The request's id (`x-request-id`, the client's or the one the gateway set), for the call.
fn request_id(parts: &http::request::Parts) -> Option<HeaderValue> {
    parts
        .headers
        .get(&crate::header_name::X_REQUEST_ID)
        .cloned()
}

/// The guardrail an InvokeModel request names in its `X-Amzn-Bedrock-Guardrail*` headers (and
/// `X-Amzn-Bedrock-Trace`).
fn invoke_guardrail(headers: &http::HeaderMap) -> Option<GuardrailConfig> {
    let get = |name: &http::HeaderName| headers.get(name)?.to_str().ok().map(str::to_owned);
    let identifier = get(&crate::header_name::X_AMZN_BEDROCK_GUARDRAILIDENTIFIER)?;
    Some(GuardrailConfig {
        guardrail_identifier: identifier,
        guardrail_version: get(&crate::header_name::X_AMZN_BEDROCK_GUARDRAILVERSION)
            .unwrap_or_default(),
        trace: get(&crate::header_name::X_AMZN_BEDROCK_TRACE).map(|t| t.to_ascii_lowercase()),
        stream_processing_mode: None,
    })
}

pin_project_lite::pin_project! {
    /// Response future of [`Translate`].
    pub struct ResponseFuture<S>
    where
        S: Service<ChatCall>,
    {
        #[pin]
        state: State<S>,
        reply: ReplyFormat,
        settings: StreamSettings,
        hooks: UsageHooks,
        record: Option<Arc<CallRecord>>,
        amzn_id: Option<HeaderValue>,
        // A Responses call's reply, boxed: the chat calls' futures are not sized by it.
        responses: Option<Box<ResponsesReply>>,
        // The request's header map and extensions, emptied: the reply's go into them.
        room: Room,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<ChatCall>,
    {
        Calling { #[pin] fut: Oneshot<S, ChatCall> },
        Embedding { #[pin] fut: Oneshot<EmbeddingsCore, EmbeddingsCall>, base64: bool },
        // The core waits here until the Responses call is prepared.
        Preparing { fut: PrepareFuture, core: Option<S> },
        Finishing { fut: FinishFuture },
        Failed { error: Option<GatewayError> },
    }
}

impl<S: Service<ChatCall>> ResponseFuture<S> {
    fn error(error: GatewayError, reply: ReplyFormat, amzn_id: Option<HeaderValue>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            reply,
            settings: StreamSettings {
                include_usage: false,
                keep_alive: None,
                shutdown: None,
                reader: None,
            },
            hooks: UsageHooks::default(),
            record: None,
            amzn_id,
            responses: None,
            room: Room::default(),
        }
    }
}

impl<S: Service<ChatCall>> std::fmt::Debug for ResponseFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("translate::ResponseFuture")
            .field("reply", &self.reply)
            .finish()
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<ChatCall, Response = ChatReply, Error = GatewayError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Preparing { fut, core } => match ready!(fut.as_mut().poll(cx)) {
                    Ok(prepared) => match core.take() {
                        Some(core) => {
                            *this.record = Some(prepared.record);
                            *this.responses = Some(Box::new(prepared.responses));
                            State::Calling {
                                fut: Oneshot::new(core, prepared.call),
                            }
                        }
                        None => State::Failed {
                            error: Some(GatewayError::internal(
                                "a Responses call was prepared twice",
                            )),
                        },
                    },
                    Err(e) => State::Failed { error: Some(e) },
                },
                StateProj::Finishing { fut } => {
                    let res = ready!(fut.as_mut().poll(cx));
                    return Poll::Ready(Ok(finish(
                        res,
                        this.amzn_id.take(),
                        this.record.take(),
                        this.room,
                    )));
                }
                StateProj::Calling { fut } if this.responses.is_some() => {
                    let result = ready!(fut.poll(cx));
                    let Some(ctx) = this.responses.take() else {
                        continue;
                    };
                    let fut = responses_reply(
                        result,
                        *ctx,
                        this.hooks,
                        this.record.clone(),
                        this.settings,
                    );
                    State::Finishing { fut }
                }
                _ => break,
            };
            self.as_mut().project().state.set(next);
        }
        let this = self.project();
        let reply = *this.reply;
        let result = match this.state.project() {
            StateProj::Failed { error } => match error.take() {
                Some(e) => Err(e),
                None => return Poll::Pending,
            },
            StateProj::Calling { fut } => ready!(fut.poll(cx)),
            StateProj::Embedding { fut, base64 } => {
                let result = ready!(fut.poll(cx));
                let res = embeddings_response(result, *base64, this.hooks, this.record.as_deref());
                return Poll::Ready(Ok(finish(
                    res,
                    this.amzn_id.take(),
                    this.record.take(),
                    this.room,
                )));
            }
            // Handled in the loop above.
            StateProj::Preparing { .. } | StateProj::Finishing { .. } => return Poll::Pending,
        };
        let result = match result {
            // Bytes in a format this client does not read are decoded and encoded after all.
            Ok(ChatReply::Relayed(r)) if !relays(r.format, reply) => {
                crate::stream::relay::canonical(r)
            }
            other => other,
        };
        let room = std::mem::take(&mut this.room.headers);
        let res = match result {
            Ok(ChatReply::Relayed(relayed)) => match relayed.body {
                RelayedBody::Complete { body, usage } => {
                    if let Some(usage) = &usage {
                        this.hooks.report(usage);
                        if let Some(r) = this.record.as_ref() {
                            r.record_usage_of(usage);
                        }
                    }
                    let mut res = Response::new(Body::from(body));
                    *res.headers_mut() = complete_headers(room, reply, usage.as_ref());
                    res
                }
                RelayedBody::Stream(stream) => {
                    let record = this.record.clone().unwrap_or_default();
                    let stream = std::mem::take(this.hooks).tap_relayed(stream, record);
                    let (body, headers) =
                        relayed_stream_reply(stream, relayed.format, reply, this.settings, room);
                    let mut res = Response::new(body);
                    *res.headers_mut() = headers;
                    res
                }
            },
            Ok(ChatReply::Complete(response)) => {
                let encoded = encode_complete_in(room, &response, reply);
                if let Some(usage) = &response.usage {
                    this.hooks.report(usage);
                    if let Some(r) = this.record.as_ref() {
                        r.record_usage_of(usage);
                    }
                }
                let mut res = Response::new(Body::from(encoded.body));
                *res.headers_mut() = encoded.headers;
                res
            }
            Ok(ChatReply::Stream(stream)) => {
                let record = this.record.clone().unwrap_or_default();
                let stream = std::mem::take(this.hooks).tap(stream, record);
                let (body, headers) = stream_reply(stream, reply, this.settings, room);
                let mut res = Response::new(body);
                *res.headers_mut() = headers;
                res
            }
            Err(e) => e.into_response(reply.error_dialect()),
        };
        Poll::Ready(Ok(finish(
            res,
            this.amzn_id.take(),
            this.record.take(),
            this.room,
        )))
    }
}

/// The reply to a Responses call: the Response object (kept in the store first, when asked), or
/// its typed event stream (kept when it completes); errors in the OpenAI dialect.
fn responses_reply(
    result: Result<ChatReply, GatewayError>,
    ctx: ResponsesReply,
    hooks: &mut UsageHooks,
    record: Option<Arc<CallRecord>>,
    settings: &StreamSettings,
) -> FinishFuture {
    match result {
        // A Responses API upstream's own reply (`responses_api`): relayed as its bytes; the
        // upstream keeps the response (`store`), not the gateway.
        Ok(ChatReply::Relayed(r)) if r.format == InboundFormat::Responses => match r.body {
            RelayedBody::Complete { body, usage } => {
                if let Some(usage) = &usage {
                    hooks.report(usage);
                    if let Some(r) = &record {
                        r.record_usage_of(usage);
                    }
                }
                Box::pin(std::future::ready(crate::gateway::json_response(
                    http::StatusCode::OK,
                    body,
                )))
            }
            RelayedBody::Stream(stream) => {
                let stream = std::mem::take(hooks).tap_relayed(stream, record.unwrap_or_default());
                let (body, headers) = relayed_stream_reply(
                    stream,
                    InboundFormat::Responses,
                    ReplyFormat::Responses,
                    settings,
                    HeaderMap::new(),
                );
                let mut res = Response::new(body);
                *res.headers_mut() = headers;
                Box::pin(std::future::ready(res))
            }
        },
        // Any other relayed reply is decoded first (into a complete reply or a stream, never
        // relayed again): a Responses client reads no chat upstream's bytes.
        Ok(ChatReply::Relayed(r)) => responses_reply(
            crate::stream::relay::canonical(r),
            ctx,
            hooks,
            record,
            settings,
        ),
        Ok(ChatReply::Complete(response)) => {
            if let Some(usage) = &response.usage {
                hooks.report(usage);
                if let Some(r) = &record {
                    r.record_usage_of(usage);
                }
            }
            let (object, turn) = responses_format::encode_client_response(&ctx.meta, &response);
            let body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
            let stored = ctx.stored(&object, turn);
            Box::pin(async move {
                if let Some((store, entry)) = stored {
                    store.put(entry).await;
                }
                crate::gateway::json_response(http::StatusCode::OK, body)
            })
        }
        Ok(ChatReply::Stream(stream)) => {
            let stream = std::mem::take(hooks).tap(stream, record.unwrap_or_default());
            let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let mut encoder =
                responses_format::ResponsesStreamEncoder::new(ctx.meta.clone(), seq.clone());
            if ctx.store.is_some() {
                encoder = encoder.on_complete(Box::new(move |object, turn| {
                    if let Some((store, entry)) = ctx.stored(object, turn) {
                        store.put_detached(entry);
                    }
                }));
            }
            let (body, headers) = responses_stream_reply(stream, encoder, seq, settings);
            let mut res = Response::new(body);
            *res.headers_mut() = headers;
            Box::pin(std::future::ready(res))
        }
        Err(e) => Box::pin(std::future::ready(e.into_response(ErrorDialect::OpenAi))),
    }
}

/// The reply to an embeddings call: the list as the client asked for its vectors, with its usage
/// reported to the token budget and the record; or the error in the OpenAI dialect.
fn embeddings_response(
    result: Result<EmbeddingsResponse, GatewayError>,
    base64: bool,
    hooks: &UsageHooks,
    record: Option<&CallRecord>,
) -> Response<Body> {
    match result {
        Ok(response) => {
            let usage = Usage::from_parts(response.usage.prompt_tokens, 0, 0, 0);
            hooks.report(&usage);
            if let Some(r) = record {
                r.record_usage_of(&usage);
            }
            let body = embeddings::encode_client_response(&response, base64);
            crate::gateway::json_response(http::StatusCode::OK, body)
        }
        Err(e) => e.into_response(ErrorDialect::OpenAi),
    }
}

/// The headers and extensions every reply gets: Bedrock's request id, who served it, and the
/// call's record for the log line and the metrics (in the request's extensions map, emptied,
/// when the reply has none of its own yet).
fn finish(
    mut res: Response<Body>,
    amzn_id: Option<HeaderValue>,
    record: Option<Arc<CallRecord>>,
    room: &mut Room,
) -> Response<Body> {
    if res.extensions().is_empty() {
        *res.extensions_mut() = std::mem::take(&mut room.extensions);
    }
    if let Some(id) = amzn_id {
        res.headers_mut()
            .insert(crate::header_name::X_AMZN_REQUESTID.clone(), id);
    }
    if let Some(r) = record {
        if res.status().is_success() {
            served_by_headers(&r, res.headers_mut());
        }
        // The log line and the metrics read the call's facts from the response.
        res.extensions_mut().insert(r);
    }
    res
}

/// `x-gateway-provider` and, for a model group, `x-gateway-deployment`: who served the reply.
fn served_by_headers(record: &CallRecord, headers: &mut http::HeaderMap) {
    use crate::header_value::LastValue;
    thread_local! {
        // A name that repeats response after response is reused (see `LastValue`).
        static PROVIDER: LastValue = const { LastValue::new() };
        static DEPLOYMENT: LastValue = const { LastValue::new() };
    }
    if let Some(p) = record.provider() {
        if let Some(p) = PROVIDER.with(|l| l.get(p.as_bytes())) {
            headers.insert(crate::header_name::X_GATEWAY_PROVIDER.clone(), p);
        }
    }
    if let Some(d) = record.deployment() {
        if let Some(d) = DEPLOYMENT.with(|l| l.get(d.as_bytes())) {
            headers.insert(crate::header_name::X_GATEWAY_DEPLOYMENT.clone(), d);
        }
    }
}
