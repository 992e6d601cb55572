//! [`DetectLayer`] / [`Detect`]: bounded body read (size limit, deadline, global byte budget), one
//! typed pass over the top level ([`BodyHead`]), classification.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Request, Response};
use http_body::Body as _;
use http_body_util::Limited;
use tower_layer::Layer;
use tower_service::Service;

use super::budget::BodyBytes;
use super::{
    body_read_error, body_timeout_error, check_declared_length, BodyBudget, BodyHead,
    ChatClassifier, Classify, DetectedRequest, DEFAULT_MAX_JSON_VALUES,
};
use crate::body::BoxError;
use crate::error::{ErrorDialect, GatewayError};
use crate::format::openai::client_request;

/// How long a client may take to send its body by default (408 beyond it).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Layer that applies [`Detect`] with a body limit and a classifier.
#[derive(Debug, Clone)]
pub struct DetectLayer<C = ChatClassifier> {
    limit: usize,
    read_timeout: Duration,
    max_json_values: usize,
    budget: BodyBudget,
    classifier: C,
}

impl DetectLayer {
    /// Detection for `POST /v1/chat/completions` ([`ChatClassifier`]) with a body limit of
    /// `limit` bytes (413 beyond it).
    pub fn chat(limit: usize) -> Self {
        DetectLayer::new(limit, ChatClassifier)
    }
}

impl<C: Classify> DetectLayer<C> {
    /// Detection with a body limit of `limit` bytes (413 beyond it) and `classifier`.
    pub fn new(limit: usize, classifier: C) -> Self {
        DetectLayer {
            limit,
            read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_json_values: DEFAULT_MAX_JSON_VALUES,
            budget: BodyBudget::unlimited(),
            classifier,
        }
    }

    /// At most `max` JSON values per body (413 `request_too_complex` beyond; default
    /// [`DEFAULT_MAX_JSON_VALUES`]): what bounds the memory a body's decoding may take.
    pub fn max_json_values(mut self, max: usize) -> Self {
        self.max_json_values = max;
        self
    }

    /// Bodies take their bytes from `budget`, shared with every other route that uses it (503
    /// when it is spent); default: no global budget.
    pub fn body_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = budget;
        self
    }

    /// How long the whole body may take to arrive (408 beyond it), so a client trickling bytes
    /// cannot hold a request slot forever.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }
}

impl<S, C: Clone> Layer<S> for DetectLayer<C> {
    type Service = Detect<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Detect {
            inner,
            limit: self.limit,
            read_timeout: self.read_timeout,
            max_json_values: self.max_json_values,
            budget: self.budget.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// Middleware that turns `Request<B>` into `Request<DetectedRequest>`; early failures (413, 408,
/// invalid JSON, an unknown format) are responses in the classifier's error dialect.
#[derive(Debug, Clone)]
pub struct Detect<S, C = ChatClassifier> {
    inner: S,
    limit: usize,
    read_timeout: Duration,
    max_json_values: usize,
    budget: BodyBudget,
    classifier: C,
}

impl<S, C> Detect<S, C> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, C, B, ResB> Service<Request<B>> for Detect<S, C>
where
    S: Service<Request<DetectedRequest>, Response = Response<ResB>> + Clone,
    C: Classify,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S, C, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The polled-ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        let dialect = self.classifier.dialect(&parts);
        let declared = match check_declared_length(&parts.headers, self.limit) {
            Ok(declared) => declared,
            Err(e) => return ResponseFuture::rejected(e, dialect),
        };
        // Each chunk takes its bytes from the budget as it arrives, so a client that declares a
        // large body and sends it slowly holds only what it has sent. A declared length only sizes
        // the buffer.
        let taken = BodyBytes::none();
        ResponseFuture {
            state: State::Reading {
                body: Limited::new(body, self.limit),
                buf: BytesMut::with_capacity(declared.unwrap_or(0)),
                due: crate::provider::timeout::instant_after(
                    tokio::time::Instant::now(),
                    self.read_timeout,
                ),
                deadline: None,
                parts: Some(parts),
                inner: Some(inner),
                classifier: self.classifier.clone(),
                dialect,
                limit: self.limit,
                max_json_values: self.max_json_values,
                budget: self.budget.clone(),
                taken: Some(taken),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Detect`].
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<Request<DetectedRequest>>,
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, C, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, C, B>
    where
        S: Service<Request<DetectedRequest>>,
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        Reading {
            #[pin]
            body: Limited<B>,
            buf: BytesMut,
            // When the whole body must have arrived: the read timeout from the call.
            due: tokio::time::Instant,
            // Its timer, made on the first poll that finds the body incomplete: a body that is
            // there at once (nearly every one) costs no timer, no runtime-handle clone and no
            // entry in the timer wheel.
            deadline: Option<Pin<Box<tokio::time::Sleep>>>,
            parts: Option<Parts>,
            inner: Option<S>,
            classifier: C,
            dialect: ErrorDialect,
            limit: usize,
            max_json_values: usize,
            budget: BodyBudget,
            taken: Option<BodyBytes>,
        },
        // The body's bytes stay taken from the budget until the inner service has answered.
        Calling { #[pin] fut: S::Future, taken: BodyBytes },
        Rejected { error: Option<(GatewayError, ErrorDialect)> },
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<Request<DetectedRequest>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    fn rejected(error: GatewayError, dialect: ErrorDialect) -> Self {
        ResponseFuture {
            state: State::Rejected {
                error: Some((error, dialect)),
            },
        }
    }
}

impl<S, C, B> std::fmt::Debug for ResponseFuture<S, C, B>
where
    S: Service<Request<DetectedRequest>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("detect::ResponseFuture")
    }
}

/// 503: the global budget of body bytes in flight is spent.
fn budget_spent() -> GatewayError {
    GatewayError::overloaded(
        "The gateway is receiving too many request bodies at once; retry shortly.",
    )
}

/// What one poll of the body gave.
enum Read {
    /// The body is complete.
    Done,
    /// More may come.
    Pending,
    /// The read failed.
    Failed(GatewayError),
}

/// Reads every frame available now into `buf`, taking each chunk's bytes from `budget`.
fn read_available<B>(
    mut body: Pin<&mut Limited<B>>,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
    limit: usize,
    budget: &BodyBudget,
    taken: &mut BodyBytes,
) -> Read
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Pending => return Read::Pending,
            Poll::Ready(None) => return Read::Done,
            Poll::Ready(Some(Err(e))) => return Read::Failed(body_read_error(&e, limit)),
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                let grown = buf.len() + data.len();
                if grown > taken.len() {
                    match budget.try_take(grown - taken.len()) {
                        Some(more) => taken.merge(more),
                        None => return Read::Failed(budget_spent()),
                    }
                }
                buf.extend_from_slice(&data);
            }
        }
    }
}

/// A chat body detected and decoded in one walk, on a route that reads one
/// ([`Classify::openai_chat`]): the typed decode counts the body's values against the budget as
/// detection's scan does. For any body that walk does not read wholly by itself — another format,
/// a member serde reads, anything past the budget or not JSON — `Err` with the bytes handed back,
/// which the two steps then detect and decode, with their own answer and error. (Moved in and
/// out, not borrowed: the first clone of a body read into one buffer is a heap block of its own,
/// `Bytes`' shared count.)
fn one_walk<C: Classify>(
    classifier: &C,
    parts: &Parts,
    bytes: Bytes,
    max_json_values: usize,
) -> Result<DetectedRequest, Bytes> {
    let Some(classified) = classifier.openai_chat(parts) else {
        return Err(bytes);
    };
    let request = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| client_request::decode_within(text, max_json_values));
    match request {
        Some(request) => Ok(DetectedRequest::decoded_chat(classified, bytes, request)),
        None => Err(bytes),
    }
}

impl<S, C, B, ResB> Future for ResponseFuture<S, C, B>
where
    S: Service<Request<DetectedRequest>, Response = Response<ResB>>,
    C: Classify,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResB: From<Bytes>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Reading {
                    body,
                    buf,
                    due,
                    deadline,
                    parts,
                    inner,
                    classifier,
                    dialect,
                    limit,
                    max_json_values,
                    budget,
                    taken,
                } => {
                    let dialect = *dialect;
                    let Some(taken_now) = taken.as_mut() else {
                        return Poll::Ready(Ok(GatewayError::internal(
                            "detect future polled after completion",
                        )
                        .to_response(dialect)));
                    };
                    match read_available(body, buf, cx, *limit, budget, taken_now) {
                        Read::Pending => {
                            let due = *due;
                            let timer = deadline
                                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                            ready!(timer.as_mut().poll(cx));
                            return Poll::Ready(Ok(body_timeout_error().to_response(dialect)));
                        }
                        Read::Failed(e) => return Poll::Ready(Ok(e.to_response(dialect))),
                        Read::Done => {}
                    }
                    let (Some(parts), Some(mut svc), Some(taken)) =
                        (parts.take(), inner.take(), taken.take())
                    else {
                        return Poll::Ready(Ok(GatewayError::internal(
                            "detect future polled after completion",
                        )
                        .to_response(dialect)));
                    };
                    let bytes = std::mem::take(buf).freeze();
                    let detected = match one_walk(classifier, &parts, bytes, *max_json_values) {
                        Ok(detected) => Ok(detected),
                        Err(bytes) => BodyHead::parse_with_limit(&bytes, *max_json_values)
                            .and_then(|head| {
                                let classified = classifier.classify(&parts, &head)?;
                                Ok(DetectedRequest::new(classified, bytes).with_head(&head))
                            }),
                    };
                    let detected = match detected {
                        Ok(d) => d,
                        Err(e) => return Poll::Ready(Ok(e.to_response(dialect))),
                    };
                    let fut = svc.call(Request::from_parts(parts, detected));
                    State::Calling { fut, taken }
                }
                StateProj::Calling { fut, .. } => return fut.poll(cx),
                StateProj::Rejected { error } => {
                    return match error.take() {
                        Some((e, dialect)) => Poll::Ready(Ok(e.to_response(dialect))),
                        None => Poll::Pending,
                    }
                }
            };
            this.state.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::ChatClassifier;
    use crate::translate::decode_request;

    /// What the client sees of a detection and decode: the facts detection hands on and the
    /// decoded request, or the error's status and text.
    fn outcome(detected: Result<DetectedRequest, GatewayError>) -> String {
        match detected {
            Ok(d) => {
                let facts = (d.inbound, d.reply, d.requested_model.clone(), d.max_tokens);
                match decode_request(d) {
                    Ok((request, original)) => format!("{facts:?} {request:?} {original:?}"),
                    Err(e) => format!("{facts:?} {} {e}", e.status()),
                }
            }
            Err(e) => format!("{} {e}", e.status()),
        }
    }

    fn two_steps(
        parts: &Parts,
        bytes: &Bytes,
        limit: usize,
    ) -> Result<DetectedRequest, GatewayError> {
        BodyHead::parse_with_limit(bytes, limit).and_then(|head| {
            let classified = ChatClassifier.classify(parts, &head)?;
            Ok(DetectedRequest::new(classified, bytes.clone()).with_head(&head))
        })
    }

    /// The one walk of a chat body ends where the two steps end, on seed bodies and their one-byte
    /// mutations, at the default budget and at the budget's edge: whenever it reads a body, the
    /// facts, the request and any validation error are the two steps' own, and it leaves every body
    /// the two steps refuse (a native body, a repeated or escaped marker, the reserved raw-value
    /// key, too many values) to them.
    #[test]
    fn the_one_walk_ends_where_the_two_steps_end() {
        let seeds: [&[u8]; 12] = [
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":20,"stream":true}"#,
            br#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a\n\u00e9"}]}],"model":"m","max_completion_tokens":7,"max_tokens":9,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}],"x":[1,{"y":null}]}"#,
            br#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}],"stop":["a"],"temperature":0.5}"#,
            // Native markers beside a chat body's members: the two steps decide.
            br#"{"model":"m","messages":[],"anthropic_version":"bedrock-2023-05-31","max_tokens":5}"#,
            br#"{"model":"m","messages":[],"inputText":"t","textGenerationConfig":{"maxTokenCount":3}}"#,
            br#"{"model":"m","messages":[],"anthropic\u005fversion":"v","max_output_tokens":4}"#,
            // Repeated members, the raw-value key, members serde reads.
            br#"{"model":"a","model":"b","messages":[]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"a","$serde_json::private::RawValue":"1"}]}"#,
            br#"{"model":"m","messages":[],"thinking":{"type":"enabled","budget_tokens":1024},"max_tokens":2048}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"a"}],"n":0,"max_tokens":0}"#,
            br#"{"model":"m","model_id":"x","messages":[{"role":"user","content":"a"}],"stream":null,"user":"u"}"#,
            br#" {"model":"m","messages":[]} "#,
        ];
        let cases = crate::detect::head::tests::mutations(&seeds, b"\"\\{}[],:0-.tfn x\x01\xff");
        let (mut walked, mut checked) = (0, 0);
        for query in ["", "?target_format=bedrock_claude"] {
            let parts = http::Request::post(format!("/v1/chat/completions{query}"))
                .body(())
                .unwrap()
                .into_parts()
                .0;
            for case in &cases {
                let bytes = Bytes::from(case.clone());
                let values = BodyHead::parse(&bytes).map(|h| h.values()).unwrap_or(8);
                for limit in [DEFAULT_MAX_JSON_VALUES, values, values - 1] {
                    let text = String::from_utf8_lossy(case);
                    let two = outcome(two_steps(&parts, &bytes, limit));
                    checked += 1;
                    if let Ok(one) = one_walk(&ChatClassifier, &parts, bytes.clone(), limit) {
                        walked += 1;
                        assert!(one.decoded.is_some());
                        assert_eq!(outcome(Ok(one)), two, "{text} within {limit}");
                    }
                }
            }
        }
        // Both paths taken, many times each.
        assert!(
            walked > 1000 && checked - walked > 1000,
            "{walked} of {checked}"
        );
    }
}
