//! One structured log line and one metrics observation per request, when it is finished.
//!
//! Written by hand rather than with `tower_http::trace` because the line carries gateway facts the
//! inner stages attach to the response — the key id ([`ApiKeyId`]), the call's model, provider,
//! model-group deployment, formats, attempts (each with its deployment and outcome, as
//! `attempt_log`) and usage ([`CallRecord`]) — and because a stream is finished only when its
//! last byte is sent: for streams the line is written when the body ends (or the client goes
//! away), so it has the total time, the time to first token and the tokens.
//!
//! Each request also gets a `tracing` span (target `access`, name `request`) opened when the
//! request arrives and closed when the log line is written, with OpenTelemetry semantic-convention
//! fields (`http.request.method`, `url.path`, `http.response.status_code`, `gen_ai.*`) recorded at
//! the end. It is never entered, so log lines do not change; the `otel` feature exports it
//! (the `telemetry` module).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::ApiKeyId;
use crate::body::{Body, BoxError};
use crate::cost::Usd;
use crate::endpoint::Endpoint;
use crate::error::{ErrorKind, ErrorSummary};
use crate::metrics::{Metrics, Observation};
use crate::model::CallRecord;

/// Layer that applies [`Observe`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    /// Logs and records into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ObserveLayer { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Middleware that logs and measures every request once.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The `route` label of `path`, and `path` itself: borrowed when it is an endpoint's fixed path,
/// copied otherwise (the URI's bytes would keep the connection's whole read buffer alive for as
/// long as a stream lasts).
fn route_of(path: &str) -> (&'static str, Cow<'static, str>) {
    let endpoint = Endpoint::of(path);
    let path = match endpoint.and_then(|e| e.fixed_path(path)) {
        Some(fixed) => Cow::Borrowed(fixed),
        None => Cow::Owned(path.to_owned()),
    };
    (endpoint.map_or("other", Endpoint::label), path)
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (route, path) = route_of(req.uri().path());
        let span = tracing::info_span!(
            target: "access",
            "request",
            otel.name = %format_args!("{} {route}", req.method()),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %req.method(),
            url.path = req.uri().path(),
            http.response.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            gen_ai.operation.name = tracing::field::Empty,
            gen_ai.system = tracing::field::Empty,
            gen_ai.request.model = tracing::field::Empty,
            gen_ai.usage.input_tokens = tracing::field::Empty,
            gen_ai.usage.output_tokens = tracing::field::Empty,
        );
        let line = RequestLine {
            started: Instant::now(),
            method: req.method().clone(),
            route,
            path,
            // Not copied like the path: the call context keeps the request id's bytes alive anyway.
            request_id: req
                .headers()
                .get(&crate::header_name::X_REQUEST_ID)
                .cloned(),
            metrics: self.metrics.clone(),
            span,
        };
        ResponseFuture {
            fut: self.inner.call(req),
            line: Some(line),
        }
    }
}

/// What the log line needs from the request.
#[derive(Debug)]
struct RequestLine {
    started: Instant,
    method: Method,
    route: &'static str,
    path: Cow<'static, str>,
    request_id: Option<http::HeaderValue>,
    metrics: Arc<Metrics>,
    /// Closed (dropped) with the line.
    span: tracing::Span,
}

/// Seconds as milliseconds to the microsecond: what a log line can resolve, and written by the
/// JSON line without `ryu` (`telemetry::json_line`).
fn millis(secs: f64) -> f64 {
    (secs * 1e6).round() / 1000.0
}

/// What the log line needs from the response head.
#[derive(Debug)]
struct Finish {
    line: RequestLine,
    status: u16,
    first_byte: f64,
    key: Option<ApiKeyId>,
    record: Option<Arc<CallRecord>>,
    error: Option<ErrorKind>,
    stream: bool,
}

impl Finish {
    fn emit(self, outcome: &'static str) {
        let duration = self.line.started.elapsed().as_secs_f64();
        let record = self.record.as_deref();
        let usage = record.and_then(CallRecord::usage);
        let cache = record.and_then(CallRecord::cache_usage);
        let error = self
            .error
            .or_else(|| record.and_then(CallRecord::stream_error));
        let error_name = error.map(|k| format!("{k:?}"));
        let provider = record.and_then(CallRecord::provider);
        let deployment = record.and_then(CallRecord::deployment);
        let cost = CostField(record.and_then(CallRecord::cost));
        let request_id = (self.line.request_id.as_ref()).and_then(|v| v.to_str().ok());
        tracing::info!(
            target: "access",
            // Display (`%`), not `&str`: the text format quotes `&str` fields.
            method = %self.line.method,
            path = %self.line.path,
            status = self.status,
            request_id = request_id.unwrap_or("-"),
            key_id = self.key.as_ref().map(|k| &*k.0).unwrap_or("-"),
            model = record.map(|r| r.model.as_str()).unwrap_or("-"),
            provider = provider.as_deref().unwrap_or("-"),
            deployment = deployment.as_deref().unwrap_or("-"),
            format_in = record.map(|r| r.inbound.as_str()).unwrap_or("-"),
            format_out = record.map(|r| r.target.as_str()).unwrap_or("-"),
            // What the client asked for: a stream that failed before its first byte is a stream.
            stream = self.stream || record.is_some_and(|r| r.stream),
            latency_ms = millis(duration),
            ttft_ms = millis(self.first_byte),
            tokens_in = usage.map(|u| u.0).unwrap_or(0),
            tokens_out = usage.map(|u| u.1).unwrap_or(0),
            tokens_cache_read = cache.map(|c| c.0).unwrap_or(0),
            tokens_cache_write = cache.map(|c| c.1).unwrap_or(0),
            attempts = record.map(CallRecord::attempts).unwrap_or(0),
            fallbacks = record.map(CallRecord::fallbacks).unwrap_or(0),
            attempt_log = %AttemptLog(record),
            cost_usd = %cost,
            error = error_name.as_deref().unwrap_or("-"),
            outcome,
            "request"
        );
        self.line.metrics.observe(&Observation {
            route: self.line.route,
            model: record.map(|r| r.model.as_str()),
            provider: provider.as_deref(),
            status: self.status,
            duration,
            first_byte: self.first_byte,
            usage,
            cache,
            attempts: record.map(CallRecord::attempts).unwrap_or(0),
            error: error_name.as_deref(),
            rate_limited: error == Some(ErrorKind::RateLimited),
        });
        if self.stream {
            self.line.metrics.stream_opened(-1);
        }
        let span = &self.line.span;
        // OpenTelemetry has signed integers only: u64 fields would be exported as strings.
        span.record("http.response.status_code", i64::from(self.status));
        if let Some(id) = request_id {
            span.record("request_id", id);
        }
        if let Some(r) = record {
            span.record("gen_ai.operation.name", "chat");
            span.record("gen_ai.request.model", r.model.as_str());
            if let Some(p) = &provider {
                span.record("gen_ai.system", &**p);
            }
        }
        if let Some((input, output)) = usage {
            let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            span.record("gen_ai.usage.input_tokens", int(input));
            span.record("gen_ai.usage.output_tokens", int(output));
        }
        if let Some(e) = &error_name {
            span.record("error.type", e.as_str());
        }
        // Server spans: 4xx is the client's error, not this span's; a broken stream is.
        if self.status >= 500 || record.and_then(CallRecord::stream_error).is_some() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// Each attempt as `where:outcome`, space-separated (`bedrock-east:http_429 bedrock-west:ok`):
/// where is the model group's deployment, or the provider outside a group. Written straight into
/// the log line.
struct AttemptLog<'a>(Option<&'a CallRecord>);

impl fmt::Display for AttemptLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(record) = self.0 else {
            return Ok(());
        };
        record.with_attempts(|attempts| {
            for (i, a) in attempts.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                // Piece by piece: a nested `write!` walks its format string per attempt.
                f.write_str(a.deployment.as_deref().unwrap_or(&a.provider))?;
                f.write_str(":")?;
                fmt::Display::fmt(&a.outcome, f)?;
            }
            Ok(())
        })
    }
}

/// The access log's `cost_usd`: the price, `unknown` (the model has no price) or `-` (not priced:
/// no usage).
struct CostField(Option<Option<Usd>>);

impl fmt::Display for CostField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Some(usd)) => usd.fmt(f),
            Some(None) => f.write_str("unknown"),
            None => f.write_str("-"),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Observe`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        line: Option<RequestLine>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        let res = match out {
            Ok(res) => res,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some(line) = this.line.take() else {
            return Poll::Ready(Ok(res));
        };
        let stream = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.starts_with("text/event-stream")
                    || ct.starts_with("application/vnd.amazon.eventstream")
            });
        let finish = Finish {
            status: res.status().as_u16(),
            first_byte: line.started.elapsed().as_secs_f64(),
            key: res.extensions().get::<ApiKeyId>().cloned(),
            record: res.extensions().get::<Arc<CallRecord>>().cloned(),
            error: res.extensions().get::<ErrorSummary>().map(|e| e.kind),
            stream,
            line,
        };
        if !stream {
            finish.emit("complete");
            return Poll::Ready(Ok(res));
        }
        finish.line.metrics.stream_opened(1);
        Poll::Ready(Ok(res.map(|body| {
            Body::new(ObservedBody {
                body,
                finish: Some(finish),
            })
        })))
    }
}

pin_project_lite::pin_project! {
    /// A streamed body that logs its request when it ends, fails, or is dropped (client gone).
    struct ObservedBody {
        #[pin]
        body: Body,
        finish: Option<Finish>,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(finish) = this.finish.take() {
                // hyper drops a body without polling past its last frame once it reports its end.
                let ended = this.body.is_end_stream();
                finish.emit(if ended { "complete" } else { "client_disconnected" });
            }
        }
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let out = ready!(this.body.poll_frame(cx));
        match &out {
            None => {
                if let Some(f) = this.finish.take() {
                    f.emit("complete");
                }
            }
            Some(Err(_)) => {
                if let Some(f) = this.finish.take() {
                    f.emit("body_error");
                }
            }
            Some(Ok(_)) => {}
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;
    use crate::telemetry::capture::Capture;

    #[tokio::test(flavor = "current_thread")]
    async fn the_text_access_line_writes_method_and_path_unquoted() {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let inner = tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from(Bytes::from_static(b"{}"))))
        });
        let service = ObserveLayer::new(Arc::new(Metrics::new())).layer(inner);
        let req = Request::post("/v1/chat/completions")
            .header("x-request-id", "req-1")
            .body(Body::from(Bytes::new()))
            .unwrap_or_default();
        let res = service.oneshot(req).await;
        assert!(res.is_ok());
        let text = capture.text();
        assert!(
            text.contains("method=POST path=/v1/chat/completions status=200 request_id=\"req-1\""),
            "{text}"
        );
    }
}
