//! One structured log line and one metrics observation per request, when it is finished.
//!
//! Written by hand rather than with `tower_http::trace` because the line carries gateway facts the
//! inner stages attach to the response — the key id ([`ApiKeyId`]), the call's model, provider,
//! model-group deployment, formats, attempts (each with its deployment and outcome, as
//! `attempt_log`) and usage ([`CallRecord`]) — and because a stream is finished only when its
//! last byte is sent: for streams the line is written when the body ends (or the client goes
//! away), so it has the total time, the time to first token and the tokens.
//!
//! The line is a `tracing` event (target `access`, message `request`), except once the binary's
//! logging is installed with `LOG_FORMAT=json` (`telemetry::init_tracing`): from then on the log
//! writes the same JSON line straight from the fields (`set_line_writer`), without the event.
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
        let request_id = (self.line.request_id.as_ref()).and_then(|v| v.to_str().ok());
        AccessLine {
            method: &self.line.method,
            path: &self.line.path,
            status: self.status,
            request_id: request_id.unwrap_or("-"),
            key_id: self.key.as_ref().map(|k| &*k.0).unwrap_or("-"),
            model: record.map(|r| r.model.as_str()).unwrap_or("-"),
            provider: provider.as_deref().unwrap_or("-"),
            deployment: deployment.as_deref().unwrap_or("-"),
            format_in: record.map(|r| r.inbound.as_str()).unwrap_or("-"),
            format_out: record.map(|r| r.target.as_str()).unwrap_or("-"),
            // What the client asked for: a stream that failed before its first byte is a stream.
            stream: self.stream || record.is_some_and(|r| r.stream),
            latency_ms: millis(duration),
            ttft_ms: millis(self.first_byte),
            usage: usage.unwrap_or_default(),
            cache: cache.unwrap_or_default(),
            attempts: record.map(CallRecord::attempts).unwrap_or(0),
            fallbacks: record.map(CallRecord::fallbacks).unwrap_or(0),
            attempt_log: AttemptLog(record),
            cost_usd: CostField(record.and_then(CallRecord::cost)),
            error: error_name.as_deref().unwrap_or("-"),
            outcome,
        }
        .write();
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

/// The access log line: one per request, target `access`, message `request`.
pub(crate) struct AccessLine<'a> {
    method: &'a Method,
    path: &'a str,
    status: u16,
    request_id: &'a str,
    key_id: &'a str,
    model: &'a str,
    provider: &'a str,
    deployment: &'a str,
    format_in: &'a str,
    format_out: &'a str,
    stream: bool,
    latency_ms: f64,
    ttft_ms: f64,
    /// Input and output tokens.
    usage: (u64, u64),
    /// Tokens read from and written to the prompt cache.
    cache: (u64, u64),
    attempts: u32,
    fallbacks: u32,
    attempt_log: AttemptLog<'a>,
    cost_usd: CostField,
    error: &'a str,
    outcome: &'static str,
}

impl AccessLine<'_> {
    /// Writes the line: straight to the log where the binary's logging takes it so
    /// ([`set_line_writer`]), otherwise as a `tracing` event.
    fn write(&self) {
        match LINE_WRITER.get() {
            Some(write) => write(self),
            None => self.event(),
        }
    }

    /// The line as a `tracing` event.
    fn event(&self) {
        tracing::info!(
            target: "access",
            // Display (`%`), not `&str`: the text format quotes `&str` fields.
            method = %self.method,
            path = %self.path,
            status = self.status,
            request_id = self.request_id,
            key_id = self.key_id,
            model = self.model,
            provider = self.provider,
            deployment = self.deployment,
            format_in = self.format_in,
            format_out = self.format_out,
            stream = self.stream,
            latency_ms = self.latency_ms,
            ttft_ms = self.ttft_ms,
            tokens_in = self.usage.0,
            tokens_out = self.usage.1,
            tokens_cache_read = self.cache.0,
            tokens_cache_write = self.cache.1,
            attempts = self.attempts,
            fallbacks = self.fallbacks,
            attempt_log = %self.attempt_log,
            cost_usd = %self.cost_usd,
            error = self.error,
            outcome = self.outcome,
            "request"
        );
    }

    /// The line's fields in the event's order, each handed to `to` (for a writer that formats
    /// the line itself). Kept equal to the event's fields by a test.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn fields(&self, to: &mut impl AccessFields) {
        to.word(key!("message"), "request");
        to.word(key!("method"), self.method.as_str());
        to.str(key!("path"), self.path);
        to.u64(key!("status"), self.status.into());
        to.str(key!("request_id"), self.request_id);
        to.str(key!("key_id"), self.key_id);
        to.str(key!("model"), self.model);
        to.str(key!("provider"), self.provider);
        to.str(key!("deployment"), self.deployment);
        to.word(key!("format_in"), self.format_in);
        to.word(key!("format_out"), self.format_out);
        to.bool(key!("stream"), self.stream);
        to.f64(key!("latency_ms"), self.latency_ms);
        to.f64(key!("ttft_ms"), self.ttft_ms);
        to.u64(key!("tokens_in"), self.usage.0);
        to.u64(key!("tokens_out"), self.usage.1);
        to.u64(key!("tokens_cache_read"), self.cache.0);
        to.u64(key!("tokens_cache_write"), self.cache.1);
        to.u64(key!("attempts"), self.attempts.into());
        to.u64(key!("fallbacks"), self.fallbacks.into());
        // Writing to a `String` cannot fail.
        to.text(key!("attempt_log"), &|out| {
            let _ = self.attempt_log.write_to(out);
        });
        to.text(key!("cost_usd"), &|out| {
            let _ = self.cost_usd.write_to(out);
        });
        to.str(key!("error"), self.error);
        to.word(key!("outcome"), self.outcome);
    }
}

/// An access line field's name as a JSON line writes it in front of its value: `,"name":`, and
/// `,"name":"` when the value is a string ([`key!`]). Whole, each is one copy of a constant.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Key {
    /// `,"name":`
    pub(crate) bare: &'static str,
    /// `,"name":"`
    pub(crate) quoted: &'static str,
}

/// The [`Key`] of a field named `$name` (a plain identifier: nothing in it needs escaping).
macro_rules! key {
    ($name:literal) => {
        Key {
            bare: concat!(",\"", $name, "\":"),
            quoted: concat!(",\"", $name, "\":\""),
        }
    };
}
use key;

/// What [`AccessLine::fields`] hands each field to.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) trait AccessFields {
    fn str(&mut self, key: Key, value: &str);
    /// A string with nothing JSON escapes: a fixed name (a format's, an outcome's) or an HTTP
    /// method (a token, RFC 9110: no quote, backslash or control byte).
    fn word(&mut self, key: Key, value: &str);
    fn u64(&mut self, key: Key, value: u64);
    fn f64(&mut self, key: Key, value: f64);
    fn bool(&mut self, key: Key, value: bool);
    /// A string `write` appends to `out`, as it is (the writer escapes what JSON requires).
    fn text(&mut self, key: Key, write: &dyn Fn(&mut String));
}

/// Writes an access line straight to the log (or, where the log leaves access lines out, not at
/// all), in place of the `tracing` event.
pub(crate) type AccessWriter = Box<dyn Fn(&AccessLine<'_>) + Send + Sync>;

/// The binary's direct writer of access lines, if it set one.
static LINE_WRITER: std::sync::OnceLock<AccessWriter> = std::sync::OnceLock::new();

/// Has every later access line of the process written by `write` instead of as a `tracing`
/// event. Set once, by the binary's logging (`telemetry::init_tracing`) when its JSON lines would
/// take the event anyway: the same line, without the event's dispatch and field-by-field visit
/// (3–4 k instructions a request, by callgrind; BENCHMARKS.md, issue 18). From then on no
/// subscriber sees the access event, a scoped one set later included. A second call is ignored.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn set_line_writer(write: AccessWriter) {
    let _ = LINE_WRITER.set(write);
}

/// The access event with placeholder values, for a subscriber that asks whether its filter takes
/// it (`telemetry`).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn emit_access_probe() {
    AccessLine {
        method: &Method::GET,
        path: "/",
        status: 200,
        request_id: "-",
        key_id: "-",
        model: "-",
        provider: "-",
        deployment: "-",
        format_in: "-",
        format_out: "-",
        stream: false,
        latency_ms: 0.0,
        ttft_ms: 0.0,
        usage: (0, 0),
        cache: (0, 0),
        attempts: 0,
        fallbacks: 0,
        attempt_log: AttemptLog(None),
        cost_usd: CostField(None),
        error: "-",
        outcome: "complete",
    }
    .event();
}

/// Each attempt as `where:outcome`, space-separated (`bedrock-east:http_429 bedrock-west:ok`):
/// where is the model group's deployment, or the provider outside a group. Written straight into
/// the log line.
struct AttemptLog<'a>(Option<&'a CallRecord>);

impl AttemptLog<'_> {
    /// What [`Display`](fmt::Display) writes, into any writer.
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let Some(record) = self.0 else {
            return Ok(());
        };
        record.with_attempts(|attempts| {
            for (i, a) in attempts.iter().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(a.deployment.as_deref().unwrap_or(&a.provider))?;
                f.write_str(":")?;
                a.outcome.write_to(f)?;
            }
            Ok(())
        })
    }
}

impl fmt::Display for AttemptLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// The access log's `cost_usd`: the price, `unknown` (the model has no price) or `-` (not priced:
/// no usage).
struct CostField(Option<Option<Usd>>);

impl CostField {
    /// What [`Display`](fmt::Display) writes, into any writer.
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        match self.0 {
            Some(Some(usd)) => usd.write(f),
            Some(None) => f.write_str("unknown"),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for CostField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
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
    use crate::format::{InboundFormat, ReplyFormat};
    use crate::model::{Attempt, AttemptOutcome};
    use crate::telemetry::capture::Capture;
    use crate::telemetry::json_line::{access_line, JsonLine};

    /// The line `line.event()` makes through the JSON log's formatter, and the one the direct
    /// writer makes, each without its timestamp.
    fn both_lines(line: &AccessLine<'_>) -> (String, String) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_target(true)
            .json()
            .flatten_event(true)
            .event_format(JsonLine::new())
            .finish();
        tracing::subscriber::with_default(subscriber, || line.event());
        let mut direct = Vec::new();
        access_line(std::time::SystemTime::now(), line, |b| {
            direct.extend_from_slice(b);
        });
        let untimed = |l: &str| {
            let at = l.find("\",\"level\":").unwrap_or(0);
            assert!(l.starts_with("{\"timestamp\":\""), "{l}");
            l[at..].to_owned()
        };
        (
            untimed(&capture.text()),
            untimed(&String::from_utf8_lossy(&direct)),
        )
    }

    /// Every field kind, values JSON must escape, each cost and attempt form: the line written
    /// directly is, byte for byte, the line the access event makes.
    #[test]
    fn the_directly_written_access_line_is_the_event_s_line() {
        let record = CallRecord::new(
            "model \"quoted\"\n",
            InboundFormat::OpenAi,
            ReplyFormat::Claude,
            true,
        );
        let i = record.begin_attempt(Attempt::new(Arc::from("bedrock-east")));
        record.end_attempt(
            i,
            AttemptOutcome::Failed {
                kind: ErrorKind::RateLimited,
                upstream_status: Some(429),
            },
        );
        record.record_attempt(&Arc::from("é then a tab\there"));
        // An extension method: `Method` holds it apart from the standard ones.
        let method = Method::from_bytes(b"PURGE").unwrap_or_default();
        let costs = [
            None,
            Some(None),
            Some(Some(Usd::from_dollars(0.001_25))),
            Some(Some(Usd::from_dollars(12.0))),
        ];
        let mut n = 0;
        for (j, cost) in costs.into_iter().enumerate() {
            for with_record in [false, true] {
                let line = AccessLine {
                    method: if j % 2 == 0 { &Method::POST } else { &method },
                    path: if with_record {
                        "/v1/chat/completions"
                    } else {
                        "/p\\\u{1}é✓"
                    },
                    status: [200, 429, 503, 0][j],
                    request_id: "req-\"1\"",
                    key_id: if with_record { "team-a" } else { "-" },
                    model: if with_record { &record.model } else { "-" },
                    provider: "bedrock",
                    deployment: "-",
                    format_in: record.inbound.as_str(),
                    format_out: record.target.as_str(),
                    stream: with_record,
                    latency_ms: [0.0, 1.25, 1234.567, 0.1 + 0.2][j],
                    ttft_ms: [0.001, -0.0, 1e12, f64::NAN][j],
                    usage: (j as u64, u64::MAX),
                    cache: (0, 17),
                    attempts: j as u32,
                    fallbacks: u32::MAX,
                    attempt_log: AttemptLog(with_record.then_some(&record)),
                    cost_usd: CostField(cost),
                    error: ["-", "RateLimited", "a\u{1f}b", ""][j],
                    outcome: "complete",
                };
                let (event, direct) = both_lines(&line);
                assert_eq!(direct, event);
                assert!(
                    serde_json::from_str::<serde_json::Value>(&format!("{{{}", &direct[2..]))
                        .is_ok()
                );
                n += 1;
            }
        }
        assert_eq!(n, 8);
    }

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
