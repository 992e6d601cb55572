//! [`DetectLayer`] / [`Detect`]: bounded body read, one JSON parse, classification.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{combinators::Collect, BodyExt, Limited};
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    body_read_error, body_timeout_error, check_declared_length, ChatClassifier, Classify,
    DetectedRequest,
};
use crate::body::BoxError;
use crate::error::{ErrorDialect, GatewayError};

/// How long a client may take to send its body by default (408 beyond it).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Layer that applies [`Detect`] with a body limit and a classifier.
#[derive(Debug, Clone)]
pub struct DetectLayer<C = ChatClassifier> {
    limit: usize,
    read_timeout: Duration,
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
            classifier,
        }
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
        if let Err(e) = check_declared_length(&parts.headers, self.limit) {
            return ResponseFuture::rejected(e, dialect);
        }
        ResponseFuture {
            state: State::Reading {
                collect: Limited::new(body, self.limit).collect(),
                deadline: tokio::time::sleep(self.read_timeout),
                parts: Some(parts),
                inner: Some(inner),
                classifier: self.classifier.clone(),
                dialect,
                limit: self.limit,
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
            collect: Collect<Limited<B>>,
            #[pin]
            deadline: tokio::time::Sleep,
            parts: Option<Parts>,
            inner: Option<S>,
            classifier: C,
            dialect: ErrorDialect,
            limit: usize,
        },
        Calling { #[pin] fut: S::Future },
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

fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid_request(
            "The request body is empty; send a JSON object.",
        ));
    }
    serde_json::from_slice::<Map<String, Value>>(bytes).map_err(|e| {
        GatewayError::invalid_request(format!(
            "We could not parse the JSON body of your request ({e}). The body must be a JSON object."
        ))
        .with_code("invalid_json")
    })
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
                    collect,
                    deadline,
                    parts,
                    inner,
                    classifier,
                    dialect,
                    limit,
                } => {
                    let dialect = *dialect;
                    let polled = collect.poll(cx);
                    if polled.is_pending() {
                        ready!(deadline.poll(cx));
                        return Poll::Ready(Ok(body_timeout_error().to_response(dialect)));
                    }
                    let bytes = match ready!(polled) {
                        Ok(collected) => collected.to_bytes(),
                        Err(e) => {
                            let err = body_read_error(&e, *limit);
                            return Poll::Ready(Ok(err.to_response(dialect)));
                        }
                    };
                    let (Some(parts), Some(mut svc)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(GatewayError::internal(
                            "detect future polled after completion",
                        )
                        .to_response(dialect)));
                    };
                    let detected = parse_body(&bytes).and_then(|body| {
                        let classified = classifier.classify(&parts, &body)?;
                        Ok(DetectedRequest::new(classified, body))
                    });
                    let detected = match detected {
                        Ok(d) => d,
                        Err(e) => return Poll::Ready(Ok(e.to_response(dialect))),
                    };
                    let fut = svc.call(Request::from_parts(parts, detected));
                    State::Calling { fut }
                }
                StateProj::Calling { fut } => return fut.poll(cx),
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
