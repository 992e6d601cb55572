//! The OpenAI provider: any OpenAI-compatible chat-completions API (OpenAI, Azure-style proxies,
//! vLLM, …) over a pooled hyper-util client with rustls (HTTP/2 where the server offers it by ALPN).
//!
//! - The request goes out as the canonical request serializes — every field the client sent, known or
//!   not, in place; only `model` changes when an alias was resolved.
//! - The upstream key is `OPENAI_API_KEY`; the client's gateway key is never forwarded (the upstream
//!   request is built from scratch; no client header is copied except `x-request-id`).
//! - Streams are decoded with the split-safe [`crate::sse::SseDecoder`] and yielded chunk
//!   by chunk as they arrive.
//! - Upstream errors: 4xx keep their status and the upstream's message, `code` and `param`; 5xx
//!   become 502 (503 and 504 stay); connect failures and resets are 502; `Retry-After` /
//!   `retry-after-ms` are kept for the retry layer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

use super::first_then_rest;
use crate::config::{OpenAiConfig, Timeouts};
use crate::error::GatewayError;
use crate::model::{ChatCall, ChatChunk, ChatReply, ChatRequest, ChatResponse};
use crate::route::Route;
use crate::sse::SseDecoder;

/// Largest upstream response body read into memory (complete replies and error bodies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// Largest single stream event (an upstream that never ends an event is cut off here).
const MAX_STREAM_EVENT: usize = 16 * 1024 * 1024;

/// The OpenAI-compatible upstream. Cheap to clone.
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    chat_url: Uri,
    models_url: Uri,
    base_url: String,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

/// One entry of an OpenAI `/v1/models` list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ModelObject {
    /// Model id.
    pub id: String,
    /// Always `model`.
    #[serde(default = "model_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// Owner.
    #[serde(default)]
    pub owned_by: String,
}

fn model_object() -> String {
    "model".into()
}

impl OpenAiProvider {
    /// Builds the provider and its connection pool. Fails on a base URL that is not a valid URI.
    pub fn new(config: &OpenAiConfig, timeouts: &Timeouts) -> Result<Self, GatewayError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.connect));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| GatewayError::internal(format!("TLS setup failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https);
        let base = config.base_url.trim_end_matches('/').to_owned();
        let parse = |suffix: &str| {
            format!("{base}{suffix}").parse::<Uri>().map_err(|e| {
                GatewayError::internal(format!("invalid OPENAI_BASE_URL `{base}`: {e}"))
            })
        };
        let auth = match &config.api_key {
            Some(k) => Some(
                HeaderValue::from_str(&format!("Bearer {}", k.expose())).map_err(|_| {
                    GatewayError::internal("OPENAI_API_KEY contains invalid characters")
                })?,
            ),
            None => None,
        };
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                client,
                chat_url: parse("/chat/completions")?,
                models_url: parse("/models")?,
                base_url: base,
                auth,
            }),
        })
    }

    /// The configured base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Sends one chat call (the model already routed) and answers once the reply, or the first
    /// stream event, has arrived.
    pub async fn chat(self, call: ChatCall, route: Route) -> Result<ChatReply, GatewayError> {
        let body = if *route.upstream_model == *call.request.model {
            serde_json::to_vec(&*call.request)
        } else {
            let mut aliased: ChatRequest = (*call.request).clone();
            aliased.model = route.upstream_model.to_string();
            serde_json::to_vec(&aliased)
        }
        .map_err(|e| {
            GatewayError::internal(format!("failed to encode the upstream request: {e}"))
        })?;
        let stream = call.request.is_stream();

        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.inner.chat_url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        if let Some(id) = &call.context.request_id {
            req.headers_mut().insert("x-request-id", id.clone());
        }
        let res = self.send(req).await?;
        if stream {
            first_then_rest(OpenAiChunkStream::new(res.into_body())).await
        } else {
            let bytes = read_body(res.into_body()).await?;
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

    /// Sends `req` with the upstream key; an error status becomes the mapped error.
    async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        if let Some(auth) = &self.inner.auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let res = self
            .inner
            .client
            .request(req)
            .await
            .map_err(connect_error)?;
        if !res.status().is_success() {
            return Err(error_from_response(res).await);
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

fn connect_error(e: hyper_util::client::legacy::Error) -> GatewayError {
    let what = if e.is_connect() {
        "connect to"
    } else {
        "talk to"
    };
    let mut msg = format!("Failed to {what} the upstream: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::upstream_connect(msg)
}

async fn read_body(body: Incoming) -> Result<Bytes, GatewayError> {
    Limited::new(body, MAX_UPSTREAM_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            GatewayError::upstream_connect(format!("Failed to read the upstream response: {e}"))
        })
}

/// Retry hint from `retry-after-ms` or `retry-after` (seconds).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    // `inf`, `1e30` and negatives parse as f64: only finite, representable values count.
    let num = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = num("retry-after-ms") {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    num("retry-after").and_then(|s| Duration::try_from_secs_f64(s).ok())
}

async fn error_from_response(res: http::Response<Incoming>) -> GatewayError {
    let status = res.status();
    let after = retry_after(res.headers());
    let bytes = Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    upstream_error(status, &bytes).with_retry_after(after)
}

/// Maps an OpenAI-shaped error body (`{"error":{message,type,param,code}}`) and status.
fn upstream_error(status: StatusCode, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        message: Option<String>,
        param: Option<String>,
        code: Option<Value>,
    }
    let parsed = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    let message = parsed
        .as_ref()
        .and_then(|d| d.message.clone())
        .unwrap_or_else(|| format!("The upstream answered {}.", status.as_u16()));
    if matches!(status.as_u16(), 401 | 403) {
        // The gateway's own upstream key was refused: the client's key was fine, so never a 401,
        // and the upstream's message (which may quote the masked key) stays in the log.
        tracing::error!(status = status.as_u16(), upstream_message = %message, "the OpenAI upstream refused the gateway's API key");
        return GatewayError::upstream_auth("The gateway's upstream credentials were refused.");
    }
    let message = if status.is_server_error() {
        format!("Upstream error ({}): {message}", status.as_u16())
    } else {
        message
    };
    let mut err = GatewayError::upstream_status(status.as_u16(), message);
    if let Some(d) = parsed {
        if let Some(p) = d.param {
            err = err.with_param(p);
        }
        match d.code {
            Some(Value::String(c)) => err = err.with_code(c),
            Some(Value::Number(n)) => err = err.with_code(n.to_string()),
            _ => {}
        }
    }
    err
}

/// Upstream SSE bytes → canonical chunks, as they arrive.
struct OpenAiChunkStream {
    body: Incoming,
    decoder: SseDecoder,
    /// `[DONE]` seen, or the body ended, or an error was yielded.
    done: bool,
    /// A choice finished: a body that ends now without `[DONE]` is still a complete stream.
    finished: bool,
}

impl OpenAiChunkStream {
    fn new(body: Incoming) -> Self {
        OpenAiChunkStream {
            body,
            decoder: SseDecoder::new(),
            done: false,
            finished: false,
        }
    }

    fn parse(&mut self, data: &[u8]) -> Result<ChatChunk, GatewayError> {
        match serde_json::from_slice::<ChatChunk>(data) {
            Ok(chunk) => {
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    self.finished = true;
                }
                Ok(chunk)
            }
            Err(e) => {
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    if v.get("error").is_some() {
                        let status = v["error"]["code"]
                            .as_u64()
                            .and_then(|c| u16::try_from(c).ok());
                        let mut err = upstream_error(
                            StatusCode::from_u16(status.unwrap_or(500))
                                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                            data,
                        );
                        if status.is_none() {
                            err = err.with_status(StatusCode::BAD_GATEWAY);
                        }
                        return Err(err);
                    }
                }
                Err(GatewayError::upstream_protocol(format!(
                    "The upstream sent an invalid stream chunk: {e}"
                )))
            }
        }
    }
}

impl Stream for OpenAiChunkStream {
    type Item = Result<ChatChunk, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(event) = this.decoder.next_event() {
                let data = event.data;
                if data.starts_with(b"[DONE]") {
                    this.done = true;
                    return Poll::Ready(None);
                }
                if data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item = this.parse(&data);
                if item.is_err() {
                    this.done = true;
                }
                return Poll::Ready(Some(item));
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.decoder.push(data);
                        if this.decoder.buffered() > MAX_STREAM_EVENT {
                            this.done = true;
                            return Poll::Ready(Some(Err(GatewayError::upstream_protocol(
                                "The upstream sent a stream event larger than the gateway accepts.",
                            ))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(GatewayError::upstream_connect(format!(
                        "The upstream stream broke: {e}"
                    )))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if this.finished {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(GatewayError::upstream_protocol(
                        "The upstream stream ended before it finished.",
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_upstream_errors() {
        let e = upstream_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(e.message(), "too long");
        assert_eq!(e.param(), Some("messages"));
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let e = upstream_error(
            StatusCode::UNAUTHORIZED,
            br#"{"error":{"message":"Incorrect API key provided: sk-proj-****abcd","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(e.status(), 500, "never a 401: the client's key was fine");
        assert_eq!(e.code(), Some("upstream_auth_error"));
        assert!(!e.message().contains("sk-proj"));
        let e = upstream_error(StatusCode::INTERNAL_SERVER_ERROR, b"<html>oops</html>");
        assert_eq!(e.status(), 502);
        assert!(e.is_retryable());
        assert!(!e.message().contains("html"));
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
}
