//! [`TranslateLayer`] / [`Translate`]: inbound format → typed core → reply format.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use super::decode_request;
use super::reply::{encode_complete, stream_reply, StreamSettings};
use crate::body::Body;
use crate::detect::DetectedRequest;
use crate::error::{ErrorDialect, GatewayError};
use crate::format::ReplyFormat;
use crate::model::{CallContext, CallRecord, ChatCall, ChatReply, GuardrailConfig};
use crate::provider::timeout::instant_after;
use crate::usage::UsageHooks;

/// Layer that applies [`Translate`].
#[derive(Debug, Clone)]
pub struct TranslateLayer {
    keep_alive: Option<Duration>,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
    reader_timeout: Option<Duration>,
}

impl TranslateLayer {
    /// Translation with keep-alives on SSE streams idle for `keep_alive` (`None` = never).
    pub fn new(keep_alive: Option<Duration>) -> Self {
        TranslateLayer {
            keep_alive,
            shutdown: None,
            total: None,
            reader_timeout: None,
        }
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
            inner,
            keep_alive: self.keep_alive,
            shutdown: self.shutdown.clone(),
            total: self.total,
            reader_timeout: self.reader_timeout,
        }
    }
}

/// The adapter service: `Request<DetectedRequest>` in, `Response<Body>` out, the typed core inside.
#[derive(Debug, Clone)]
pub struct Translate<S> {
    inner: S,
    keep_alive: Option<Duration>,
    shutdown: Option<CancellationToken>,
    total: Option<Duration>,
    reader_timeout: Option<Duration>,
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
        let (mut parts, detected) = req.into_parts();
        let hooks = parts.extensions.remove::<UsageHooks>().unwrap_or_default();
        let reply = detected.reply;
        let inbound = detected.inbound;
        // Bedrock clients read the request id as `x-amzn-RequestId`.
        let amzn_id = (reply.error_dialect() == ErrorDialect::Bedrock)
            .then(|| parts.headers.get("x-request-id").cloned())
            .flatten();
        let (mut request, original) = match decode_request(detected) {
            Ok(r) => r,
            Err(e) => return ResponseFuture::error(e, reply, amzn_id),
        };
        if request.n.is_some_and(|n| n > 1) && reply != ReplyFormat::OpenAi {
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
                request.guardrail_config = Some(g);
            }
        }
        let include_usage = request.include_usage();
        if request.is_stream() && !include_usage {
            // Always ask the upstream for the final usage: Claude, Titan and Converse streams end
            // with token counts, and the token budget, the log line and the metrics need them. An
            // OpenAI reader that did not ask never sees the usage chunk (its encoder drops it).
            request
                .stream_options
                .get_or_insert_with(Default::default)
                .include_usage = Some(true);
        }
        let record = Arc::new(CallRecord::new(
            request.model.clone(),
            inbound,
            reply,
            request.is_stream(),
        ));
        let context = CallContext {
            request_id: parts.headers.get("x-request-id").cloned(),
            inbound,
            target: reply,
            original,
            record: record.clone(),
            deadline: self
                .total
                .map(|t| instant_after(tokio::time::Instant::now(), t)),
        };
        let call = ChatCall::with_context(request, context);
        ResponseFuture {
            state: State::Calling {
                fut: Oneshot::new(self.inner.clone(), call),
            },
            reply,
            settings: StreamSettings {
                include_usage,
                keep_alive: self.keep_alive,
                shutdown: self.shutdown.clone(),
                reader: self.reader_timeout.zip(
                    parts
                        .extensions
                        .get::<crate::server::ConnectionCloser>()
                        .cloned(),
                ),
            },
            hooks,
            record: Some(record),
            amzn_id,
        }
    }
}

/// The guardrail an InvokeModel request names in its `X-Amzn-Bedrock-Guardrail*` headers (and
/// `X-Amzn-Bedrock-Trace`).
fn invoke_guardrail(headers: &http::HeaderMap) -> Option<GuardrailConfig> {
    let get = |name: &str| headers.get(name)?.to_str().ok().map(str::to_owned);
    let identifier = get("x-amzn-bedrock-guardrailidentifier")?;
    Some(GuardrailConfig {
        guardrail_identifier: identifier,
        guardrail_version: get("x-amzn-bedrock-guardrailversion").unwrap_or_default(),
        trace: get("x-amzn-bedrock-trace").map(|t| t.to_ascii_lowercase()),
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
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<ChatCall>,
    {
        Calling { #[pin] fut: Oneshot<S, ChatCall> },
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let reply = *this.reply;
        let result = match this.state.project() {
            StateProj::Failed { error } => match error.take() {
                Some(e) => Err(e),
                None => return Poll::Pending,
            },
            StateProj::Calling { fut } => ready!(fut.poll(cx)),
        };
        let mut res = match result {
            Ok(ChatReply::Complete(response)) => {
                let encoded = encode_complete(&response, reply);
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
                let (body, headers) = stream_reply(stream, reply, this.settings);
                let mut res = Response::new(body);
                *res.headers_mut() = headers;
                res
            }
            Err(e) => e.into_response(reply.error_dialect()),
        };
        if let Some(id) = this.amzn_id.take() {
            res.headers_mut().insert("x-amzn-requestid", id);
        }
        if let Some(r) = this.record.take() {
            if res.status().is_success() {
                served_by_headers(&r, res.headers_mut());
            }
            // The log line and the metrics read the call's facts from the response.
            res.extensions_mut().insert(r);
        }
        Poll::Ready(Ok(res))
    }
}

/// `x-gateway-provider` and, for a model group, `x-gateway-deployment`: who served the reply.
fn served_by_headers(record: &CallRecord, headers: &mut http::HeaderMap) {
    let value = |s: &str| HeaderValue::from_str(s).ok();
    if let Some(p) = record.provider().as_deref().and_then(value) {
        headers.insert("x-gateway-provider", p);
    }
    if let Some(d) = record.deployment().as_deref().and_then(value) {
        headers.insert("x-gateway-deployment", d);
    }
}
