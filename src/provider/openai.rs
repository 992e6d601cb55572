//! The OpenAI provider: any OpenAI-compatible chat-completions API (OpenAI, Azure-style proxies,
//! vLLM, …) over a pooled hyper-util client with rustls (HTTP/2 where the server offers it by ALPN).
//!
//! - A `Service<ChatCall>`, always ready (the pool has no back-pressure to report). The request
//!   goes out as the canonical request serializes — every field the client sent, known or not, in
//!   place; only `model` changes, to the route's upstream model when an alias was resolved (a call
//!   without a route sends the request's model as is).
//! - The upstream key is `OPENAI_API_KEY` for the implicit `openai` provider; a named provider
//!   (`[providers.<name>]`, [`OpenAiProviderConfig`]) reads its key from an environment variable or
//!   a file, sends it in the header and form it configures (Azure OpenAI: `api-key: <key>`; the
//!   default: `Authorization: Bearer <key>`; none for vLLM or Ollama), adds its extra headers and
//!   query parameters (Azure's `api-version`) to every request, and has its own connect timeout and
//!   idle pool size. The client's gateway key is never forwarded (the upstream request is built
//!   from scratch; no client header is copied except `x-request-id`).
//! - Embeddings (`Service<EmbeddingsCall>`) go to `{base}/embeddings` as the client wrote them
//!   (model rewritten by the route); a vector answered as floats or as base64 decodes alike.
//! - `/v1/responses` calls, on a provider configured with `responses_api`: the client's Responses
//!   body (carried in [`CallContext::body`](crate::model::CallContext)) goes to `{base}/responses`
//!   as received, only `model` spliced ([`scan::with_member`]) when an alias resolved; the reply is
//!   relayed as its bytes ([`ResponsesStreamRelay`] for a stream, the usage by a byte scan).
//!   Without the setting the call is translated to chat completions, and a body that needs the
//!   Responses API (built-in tools, …) is refused with the call's `needs_responses_api` error.
//! - Streams are decoded by [`OpenAiStreamDecoder`] in the one [`decode_stream`] loop and
//!   yielded chunk by chunk as they arrive.
//! - Upstream errors: 4xx keep their status and the upstream's message, `code` and `param`; 5xx
//!   become 502 (503 and 504 stay); connect failures and resets are 502; `Retry-After` /
//!   `retry-after-ms` are kept for the retry layer.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{header, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tower_service::Service;

use super::{first_relayed, first_then_rest, ProviderFuture, Quiet};
use crate::config::{OpenAiConfig, OpenAiProviderConfig, Secret, Timeouts};
use crate::error::GatewayError;
use crate::format::openai::{decode_error, encode_request, OpenAiStreamDecoder};
use crate::format::reasoning::ReasoningBudgets;
use crate::format::{scan, InboundFormat, ReplyFormat};
use crate::model::{
    ChatCall, ChatReply, ChatResponse, EmbeddingsCall, EmbeddingsResponse, ModelObject,
    RelayedBody, RelayedReply,
};
use crate::server::PerThread;
use crate::stream::decode_stream;
use crate::stream::relay::{relay_stream, OpenAiStreamRelay, ResponsesStreamRelay};

/// Header values every upstream request carries, built once.
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// The pooled HTTP client requests go out on.
type UpstreamClient = Client<HttpsConnector<Quiet<HttpConnector>>, Full<Bytes>>;

/// The OpenAI-compatible upstream. Cheap to clone.
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    /// Sent through only by `OpenAiProvider::send_as_is`, with `headers` in every request (added
    /// by `send`, or cloned in with `post_headers`): when `Host` is one of them (an `http://`
    /// upstream, or a configured one), the client does not add its own. One pool per serving
    /// thread when the server has threads of its own (`server.threads`).
    client: Arc<PerThread<UpstreamClient>>,
    chat_url: Uri,
    embeddings_url: Uri,
    /// `{base}/responses`, for an upstream configured with `responses_api`.
    responses_url: Option<Uri>,
    models_url: Uri,
    base_url: String,
    /// The auth header (marked sensitive), the configured extra headers, and `Host` for an
    /// `http://` upstream.
    headers: http::HeaderMap,
    /// What every JSON `POST` sends, made once and cloned per request ([`post_request`]).
    post_headers: http::HeaderMap,
    /// Whether `headers` names `Accept` or `x-request-id`: a configured value wins over the
    /// request's, as it does on every other request (`send` adds `headers` last).
    accept_configured: bool,
    request_id_configured: bool,
    budgets: ReasoningBudgets,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// Builds the implicit `openai` provider (`[openai]`, `OPENAI_BASE_URL`, `OPENAI_API_KEY`) and
    /// its connection pool. Fails on a base URL that is not a valid URI.
    pub fn new(config: &OpenAiConfig, timeouts: &Timeouts) -> Result<Self, GatewayError> {
        let mut settings = OpenAiProviderConfig::new(config.base_url.clone());
        settings.responses_api = config.responses_api;
        Self::build(
            "OPENAI_BASE_URL",
            &settings,
            config.api_key.as_ref(),
            timeouts,
        )
    }

    /// Builds the named provider `name` (`[providers.<name>]`): its key is read now, from its
    /// variable or file; `timeouts` are the gateway's, under the provider's own.
    pub fn from_provider_config(
        name: &str,
        config: &OpenAiProviderConfig,
        timeouts: &Timeouts,
    ) -> Result<Self, GatewayError> {
        let key = config.api_key().read_for(name)?;
        Self::build(
            &format!("providers.{name}.base_url"),
            config,
            key.as_ref(),
            &config.timeouts.over(timeouts),
        )
    }

    fn build(
        label: &str,
        config: &OpenAiProviderConfig,
        key: Option<&Secret>,
        timeouts: &Timeouts,
    ) -> Result<Self, GatewayError> {
        let https = super::https_connector(super::tcp_connector(timeouts.connect))?;
        let base = config.base_url.trim_end_matches('/').to_owned();
        let query = query_string(&config.query);
        let parse = |suffix: &str| {
            format!("{base}{suffix}{query}")
                .parse::<Uri>()
                .map_err(|e| GatewayError::internal(format!("invalid {label} `{base}`: {e}")))
        };
        let chat_url = parse("/chat/completions")?;
        let mut headers = http::HeaderMap::new();
        // Every URL shares the base's authority: for an `http://` upstream its `Host` is built
        // here once, as hyper-util would build it per request (`host_header`). A configured
        // `Host` below replaces it, as it did hyper-util's.
        if let Some(host) = host_header(&chat_url) {
            headers.insert(header::HOST, host);
        }
        for (name, value) in &config.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| GatewayError::internal(format!("invalid header name `{name}`")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                GatewayError::internal(format!("invalid value for the header `{name}`"))
            })?;
            headers.insert(name, value);
        }
        if let Some(k) = key {
            let name =
                http::HeaderName::from_bytes(config.auth_header.as_bytes()).map_err(|_| {
                    GatewayError::internal(format!("invalid auth header `{}`", config.auth_header))
                })?;
            let mut value =
                HeaderValue::from_str(&format!("{}{}", config.auth_prefix(), k.expose())).map_err(
                    |_| GatewayError::internal("the upstream key contains invalid characters"),
                )?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(config.pool_max_idle)
            // When every request gets its `Host` from `headers`, hyper-util's own look for one (a
            // copy of the URI and a header-map entry per request) would only find it.
            .set_host(!headers.contains_key(header::HOST));
        let client = Arc::new(PerThread::new(move || builder.build(https.clone())));
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                client,
                chat_url,
                embeddings_url: parse("/embeddings")?,
                responses_url: if config.responses_api {
                    Some(parse("/responses")?)
                } else {
                    None
                },
                models_url: parse("/models")?,
                base_url: base,
                post_headers: post_headers(&headers),
                accept_configured: headers.contains_key(header::ACCEPT),
                request_id_configured: headers.contains_key(&crate::header_name::X_REQUEST_ID),
                headers,
                budgets: ReasoningBudgets::default(),
            }),
        })
    }

    /// Maps an Anthropic-style `thinking` budget to `reasoning_effort` with `budgets` (the
    /// configuration's `[reasoning.budget_tokens]`) instead of the defaults.
    pub fn with_reasoning_budgets(mut self, budgets: ReasoningBudgets) -> Self {
        Arc::make_mut(&mut self.inner).budgets = budgets;
        self
    }

    /// The configured base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Sends one chat call and answers once the reply, or the first stream event, has arrived.
    async fn chat(self, call: ChatCall) -> Result<ChatReply, GatewayError> {
        let upstream_model = call.upstream_model();
        if call.context.inbound == InboundFormat::Responses {
            if let (Some(url), Some(body)) = (&self.inner.responses_url, &call.context.body) {
                let body = body.clone();
                let url = url.clone();
                // Boxed: inline, its state would size every chat call's future (see `send_as_is`).
                return Box::pin(self.responses(call, url, body)).await;
            }
            call.context.check_translatable()?;
        }
        if call.request.guardrail_config.is_some() {
            return Err(GatewayError::unsupported(
                "guardrailConfig",
                "Bedrock guardrails apply to Bedrock models only.",
            ));
        }
        // The encoded request lives in this block only, not in the future's state across the
        // awaits below.
        let body = {
            let request = encode_request(&call.request, upstream_model, &self.inner.budgets);
            match (&request, &call.context.body) {
                // Nothing to rewrite: the client's bytes, as received (and validated).
                (Cow::Borrowed(_), Some(received))
                    if call.context.inbound == InboundFormat::OpenAi =>
                {
                    received.clone()
                }
                _ => Bytes::from(serde_json::to_vec(&*request).map_err(|e| {
                    GatewayError::internal(format!("failed to encode the upstream request: {e}"))
                })?),
            }
        };
        let stream = call.request.is_stream();
        // An OpenAI client reads the upstream's own format: the reply is relayed as its bytes.
        let relay = call.context.target == ReplyFormat::OpenAi;

        let id = call.context.request_id.as_ref();
        let req = post_request(&self.inner, self.inner.chat_url.clone(), body, stream, id);
        let res = self.send_as_is(req).await?;
        if stream && relay {
            first_relayed(
                relay_stream(body_bytes(res.into_body()), OpenAiStreamRelay::new()),
                InboundFormat::OpenAi,
                &call.request.model,
            )
            .await
        } else if stream {
            first_then_rest(decode_stream(
                body_bytes(res.into_body()),
                OpenAiStreamDecoder::new(),
            ))
            .await
        } else {
            let bytes = read_body(res.into_body()).await?;
            if relay {
                // Relayed when the scan finds one well-formed object that names its model.
                if let Ok(facts) = scan::openai_completion(&bytes) {
                    if facts.has_model {
                        return Ok(ChatReply::Relayed(RelayedReply {
                            format: InboundFormat::OpenAi,
                            model: call.request.model.clone(),
                            body: RelayedBody::Complete {
                                body: bytes,
                                usage: facts.usage,
                            },
                        }));
                    }
                }
            }
            let mut response: ChatResponse = serde_json::from_slice(&bytes).map_err(|e| {
                GatewayError::upstream_protocol(format!(
                    "The upstream returned an invalid chat completion: {e}"
                ))
            })?;
            if response.model.is_empty() {
                response.model = call.request.model.clone();
            }
            Ok(ChatReply::Complete(response))
        }
    }

    /// Sends a `/v1/responses` call to an upstream that speaks the Responses API: the client's
    /// body as received (only `model` spliced to the route's upstream model when an alias was
    /// resolved), and the upstream's reply relayed as its bytes, the usage found by a byte scan.
    async fn responses(
        self,
        call: ChatCall,
        url: Uri,
        body: Bytes,
    ) -> Result<ChatReply, GatewayError> {
        // The model sent is the route's upstream model (an alias resolved), else the one the
        // request was admitted and routed by (a repeated `model`'s last), in every `model`
        // member, so a reader of the first occurrence runs it too. A body whose members already
        // hold it goes as received.
        let model = call
            .route
            .as_ref()
            .map_or(&*call.request.model, |r| &*r.upstream_model);
        let value = serde_json::to_vec(model)
            .map_err(|e| GatewayError::internal(format!("failed to encode the model: {e}")))?;
        let body = scan::with_member(&body, "model", &value)
            .ok_or_else(|| GatewayError::internal("the Responses body has no model to rewrite"))?;
        let stream = call.request.is_stream();
        let req = post_request(
            &self.inner,
            url,
            body,
            stream,
            call.context.request_id.as_ref(),
        );
        let res = self.send_as_is(req).await?;
        if stream {
            return first_relayed(
                relay_stream(body_bytes(res.into_body()), ResponsesStreamRelay::new()),
                InboundFormat::Responses,
                &call.request.model,
            )
            .await;
        }
        let bytes = read_body(res.into_body()).await?;
        let usage = scan::responses_object_usage(&bytes).map_err(|_| {
            GatewayError::upstream_protocol("The upstream returned an invalid Response object.")
        })?;
        Ok(ChatReply::Relayed(RelayedReply {
            format: InboundFormat::Responses,
            model: call.request.model.clone(),
            body: RelayedBody::Complete { body: bytes, usage },
        }))
    }

    /// Sends one embeddings call: the request as the client wrote it (every member, known or
    /// not), with the route's upstream model.
    async fn embed(self, call: EmbeddingsCall) -> Result<EmbeddingsResponse, GatewayError> {
        let mut request = (*call.request).clone();
        request.model = call.upstream_model().to_owned();
        let body = serde_json::to_vec(&request).map_err(|e| {
            GatewayError::internal(format!("failed to encode the upstream request: {e}"))
        })?;
        let url = self.inner.embeddings_url.clone();
        let id = call.context.request_id.as_ref();
        let req = post_request(&self.inner, url, Bytes::from(body), false, id);
        let res = self.send_as_is(req).await?;
        let bytes = read_body(res.into_body()).await?;
        let mut response: EmbeddingsResponse = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::upstream_protocol(format!(
                "The upstream returned an invalid embeddings response: {e}"
            ))
        })?;
        if response.model.is_empty() {
            response.model = call.request.model.clone();
        }
        Ok(response)
    }

    /// Sends `req` with the upstream key and the configured headers; an error status becomes
    /// the mapped error.
    async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        for (name, value) in &self.inner.headers {
            req.headers_mut().insert(name, value.clone());
        }
        self.send_as_is(req).await
    }

    /// [`send`](Self::send) for a request that has the key and the configured headers already
    /// (one [`post_request`] made: a chat call, a Responses call, embeddings).
    async fn send_as_is(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let res = self
            .inner
            .client
            .with(|client| client.request(req))
            .await
            .map_err(connect_error)?;
        if !res.status().is_success() {
            // Boxed: an error's body read is rare, and inline its state would size every call's
            // future (and the chat future around it) by half a kilobyte.
            return Err(Box::pin(error_from_response(res)).await);
        }
        Ok(res)
    }

    /// Lists the upstream's models (`GET {base}/models`).
    pub async fn list_models(&self) -> Result<Vec<ModelObject>, GatewayError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(self.inner.models_url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        let res = self.send(req).await?;
        #[derive(Deserialize)]
        struct List {
            data: Vec<ModelObject>,
        }
        let bytes = read_body(res.into_body()).await?;
        let list: List = serde_json::from_slice(&bytes).map_err(|e| {
            GatewayError::upstream_protocol(format!("invalid model list from upstream: {e}"))
        })?;
        Ok(list.data)
    }
}

impl Service<ChatCall> for OpenAiProvider {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = ProviderFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        crate::provider::dispatch::SharedProvider::call_shared(self, call)
    }
}

impl crate::provider::dispatch::SharedProvider for OpenAiProvider {
    fn call_shared(&self, call: ChatCall) -> ProviderFuture {
        Box::pin(self.clone().chat(call))
    }
}

impl Service<EmbeddingsCall> for OpenAiProvider {
    type Response = EmbeddingsResponse;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<EmbeddingsResponse, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: EmbeddingsCall) -> Self::Future {
        Box::pin(self.clone().embed(call))
    }
}

/// Room in an upstream request's header map: its own four (`Content-Length`, `Content-Type`,
/// `Accept`, `x-request-id`), `Authorization`, `Host`, and the configured extra headers (the
/// OpenAI organization and project, custom ones) up to twelve in all; with more, `post_headers`
/// makes the map larger. Eight slots (room for six) would be a smaller block, but hyper's encoder
/// takes an entry for `Transfer-Encoding`, and a full map grows on an entry even for a header it
/// never inserts.
const UPSTREAM_HEADERS: usize = 12;

/// The headers of every JSON `POST` to the upstream: `Content-Type`, and the three a request
/// sets as placeholders it replaces in place (`Accept`, `Content-Length`, `x-request-id`), then
/// `headers` (the key, `Host`, the configured ones) over them, so that a configured value wins as
/// it does on the requests `send` makes. Cloned per request, it saves inserting the same names
/// each time; a clone's list of entries has no room to grow, so a request only replaces (or
/// removes) entries, never adds one. (hyper-util adds `Host` itself where `headers` has none, an
/// `https://` connection that speaks HTTP/1.1 or an `http://` URL whose `Host` is not built
/// once, and then grows the list once per request: still less than the inserts saved.)
fn post_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut post = http::HeaderMap::with_capacity(UPSTREAM_HEADERS.max(headers.len() + 5));
    post.insert(header::CONTENT_TYPE, JSON.clone());
    post.insert(header::ACCEPT, JSON.clone());
    post.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    post.insert(
        crate::header_name::X_REQUEST_ID.clone(),
        HeaderValue::from_static("-"),
    );
    for (name, value) in headers {
        post.insert(name, value.clone());
    }
    post
}

/// A JSON `POST` of `body` to `url` with `inner`'s headers: an event stream accepted when it
/// `stream`s, the call's request id `id` sent on.
fn post_request(
    inner: &Inner,
    url: Uri,
    body: Bytes,
    stream: bool,
    id: Option<&HeaderValue>,
) -> Request<Full<Bytes>> {
    let mut headers = inner.post_headers.clone();
    // Written here without a heap block; hyper would add it in two (see `header_value::int`).
    headers.insert(header::CONTENT_LENGTH, crate::header_value::int(body.len()));
    if stream && !inner.accept_configured {
        headers.insert(header::ACCEPT, EVENT_STREAM.clone());
    }
    if !inner.request_id_configured {
        match id {
            Some(id) => headers.insert(crate::header_name::X_REQUEST_ID.clone(), id.clone()),
            None => headers.remove(&crate::header_name::X_REQUEST_ID),
        };
    }
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = url;
    *req.headers_mut() = headers;
    req
}

/// The `Host` header for requests to `uri`, when it can be built once: what hyper-util's client
/// writes per request (the host, with the port only when it is not the scheme's default).
///
/// Only for `http://`, which this client speaks as HTTP/1.1 alone. An `https://` upstream may
/// negotiate HTTP/2, where hyper-util writes no `Host` (the authority goes as `:authority`) and
/// some servers (Google's front ends) reset a stream that carries one; it is left to hyper-util,
/// which knows the connection's protocol. A URI with user info is left to it too.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let value = match uri.port() {
        Some(port) if port.as_u16() != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    if value != uri.authority()?.as_str() {
        return None;
    }
    HeaderValue::try_from(value).ok()
}

/// `?k=v&…` with keys and values percent-encoded, or nothing.
fn query_string(query: &std::collections::BTreeMap<String, String>) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut out = String::new();
    for (k, v) in query {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.extend(percent_encoding::utf8_percent_encode(k, COMPONENT));
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(v, COMPONENT));
    }
    out
}

fn connect_error(e: hyper_util::client::legacy::Error) -> GatewayError {
    let what = if e.is_connect() {
        "connect to"
    } else {
        "talk to"
    };
    // The cause chain names hosts, addresses and TLS details: the log gets it, the client does not.
    tracing::warn!(error = %crate::error::error_chain(&e), "failed to {what} the OpenAI-compatible upstream");
    GatewayError::upstream_connect(format!("Failed to {what} the upstream."))
}

/// A complete reply from the OpenAI-compatible upstream, read whole (bounded).
async fn read_body(body: Incoming) -> Result<Bytes, GatewayError> {
    super::read_reply(body, "upstream").await
}

/// Retry hint from `retry-after-ms` or `retry-after` (seconds).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    // `inf`, `1e30` and negatives parse as f64: only finite, representable values count.
    let num = |name: &http::HeaderName| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = num(&crate::header_name::RETRY_AFTER_MS) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    num(&header::RETRY_AFTER).and_then(|s| Duration::try_from_secs_f64(s).ok())
}

async fn error_from_response(res: http::Response<Incoming>) -> GatewayError {
    let status = res.status();
    let after = retry_after(res.headers());
    let bytes = crate::body::to_bytes(Limited::new(res.into_body(), 64 * 1024))
        .await
        .unwrap_or_default();
    decode_error(status, &bytes).with_retry_after(after)
}

/// The body of a streamed reply as a source of SSE bytes for [`decode_stream`].
fn body_bytes(body: Incoming) -> impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static {
    futures_util::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        loop {
            match body.frame().await {
                None => return None,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => return Some((Ok(data), Some(body))),
                    Err(_trailers) => continue,
                },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the upstream stream broke");
                    let e = GatewayError::upstream_connect("The upstream stream broke.");
                    return Some((Err(e), None));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_encoded() {
        let q = std::collections::BTreeMap::from([
            ("api-version".to_owned(), "2024-10-21".to_owned()),
            ("x y".to_owned(), "a&b".to_owned()),
        ]);
        assert_eq!(query_string(&q), "?api-version=2024-10-21&x%20y=a%26b");
        assert_eq!(query_string(&Default::default()), "");
    }

    #[test]
    fn the_host_header_is_what_hyper_util_would_write() {
        let host = |uri: &str| host_header(&uri.parse().unwrap());
        let is = |uri: &str, want: &str| assert_eq!(host(uri).unwrap(), want, "{uri}");
        is("http://vllm.internal/v1/chat/completions", "vllm.internal");
        is("http://127.0.0.1:443/v1", "127.0.0.1:443");
        is("http://[::1]:8080/v1", "[::1]:8080");
        // Left to hyper-util, per request: `https://` may be HTTP/2, where no `Host` is sent;
        // an explicit default port (hyper-util drops it) and user info are left to it as well.
        assert_eq!(host("https://api.openai.com/v1/chat/completions"), None);
        assert_eq!(host("https://gw.internal:8443/v1"), None);
        assert_eq!(host("http://127.0.0.1:80/v1"), None);
        assert_eq!(host("http://user:secret@proxy.internal/v1"), None);
    }

    #[test]
    fn parses_retry_after_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        for bad in ["inf", "1e30", "-5", "NaN", "soon"] {
            let mut h = http::HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_static(bad));
            h.insert("retry-after-ms", HeaderValue::from_static(bad));
            assert_eq!(retry_after(&h), None, "{bad}");
        }
    }

    /// The chat call's future is boxed once per attempt: kept within what glibc's per-thread
    /// cache serves (blocks up to 1,032 bytes), which a larger block bypasses for the slower
    /// shared bins. The rare paths' states (a Responses API upstream, an error's body) are boxed
    /// on their own so they do not size it (issue 18). 824 bytes when written, in a test build and
    /// in the shipped one alike.
    #[test]
    fn the_chat_future_fits_the_allocators_per_thread_cache() {
        fn future_of<A, R>(_: impl FnOnce(A) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let chat = future_of(|(p, c): (OpenAiProvider, ChatCall)| p.chat(c));
        assert!(chat <= 1024, "the chat future is {chat} bytes");
    }

    /// A chat `POST`'s headers, made from the provider's once-built map: the key and `Host`,
    /// `Content-Type` JSON, `Accept` as the call streams or not,
    /// `Content-Length` the body's, `x-request-id` the call's or none; and room left, so hyper's
    /// look for `Transfer-Encoding` does not grow the map.
    #[test]
    fn a_post_carries_each_header_once() {
        // `p`'s chat `POST` of `{}` for a call with request id `id`.
        let post = |p: &OpenAiProvider, id: Option<HeaderValue>, stream: bool| {
            let url = p.inner.chat_url.clone();
            post_request(
                &p.inner,
                url,
                Bytes::from_static(b"{}"),
                stream,
                id.as_ref(),
            )
        };
        let mut config = crate::config::Config::default();
        config.openai.base_url = "http://127.0.0.1:9/v1".into();
        config.openai.api_key = Some(crate::config::Secret::from("sk-test"));
        let p = OpenAiProvider::new(&config.openai, &config.timeouts).unwrap();
        for (stream, id) in [
            (false, None),
            (true, Some(HeaderValue::from_static("req-1"))),
        ] {
            let req = post(&p, id.clone(), stream);
            let h = req.headers();
            assert_eq!(h[header::CONTENT_LENGTH], "2");
            assert_eq!(h[header::CONTENT_TYPE], "application/json");
            let accept = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            assert_eq!(h[header::ACCEPT], accept);
            assert_eq!(h.get(&crate::header_name::X_REQUEST_ID), id.as_ref());
            assert_eq!(h[header::HOST], "127.0.0.1:9");
            assert_eq!(h[header::AUTHORIZATION], "Bearer sk-test");
            assert!(h[header::AUTHORIZATION].is_sensitive());
            assert_eq!(h.len(), if id.is_some() { 6 } else { 5 });
            assert!(h.len() < h.capacity());
        }
        // Configured `Accept`, `Content-Type` and `x-request-id` win over the request's, as on
        // the requests `send` makes; `Content-Length` is always the body's.
        let mut settings = OpenAiProviderConfig::new("https://up.example/v1".to_owned());
        for (name, value) in [
            ("accept", "application/x-custom"),
            ("content-type", "application/json; charset=utf-8"),
            ("x-request-id", "fixed"),
            ("content-length", "7"),
            ("openai-organization", "org-1"),
        ] {
            settings.headers.insert(name.into(), value.into());
        }
        let p = OpenAiProvider::build("test", &settings, None, &config.timeouts).unwrap();
        let req = post(&p, Some(HeaderValue::from_static("req-2")), true);
        let h = req.headers();
        assert_eq!(h[header::ACCEPT], "application/x-custom");
        assert_eq!(h[header::CONTENT_TYPE], "application/json; charset=utf-8");
        assert_eq!(h[&crate::header_name::X_REQUEST_ID], "fixed");
        assert_eq!(h[header::CONTENT_LENGTH], "2");
        assert_eq!(h["openai-organization"], "org-1");
        assert!(
            h.get(header::HOST).is_none(),
            "hyper-util's to add for https"
        );
        assert_eq!(h.len(), 5);
    }
}
