//! [`DetectLayer`] / [`Detect`]: bounded body read, one JSON parse, format detection.

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
    body_read_error, body_timeout_error, check_declared_length, detect_format, target_format,
    DetectedRequest,
};
use crate::body::{Body, BoxError};
use crate::error::GatewayError;
use crate::format::TargetFormat;

/// Layer that applies [`Detect`] with a body limit.
#[derive(Debug, Clone, Copy)]
pub struct DetectLayer {
    limit: usize,
    read_timeout: Duration,
}

/// How long a client may take to send its body by default (408 beyond it).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl DetectLayer {
    /// Detection with a body limit of `limit` bytes (413 beyond it).
    pub fn new(limit: usize) -> Self {
        DetectLayer {
            limit,
            read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }

    /// How long the whole body may take to arrive (408 beyond it), so a client trickling bytes
    /// cannot hold a request slot forever.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }
}

impl<S> Layer<S> for DetectLayer {
    type Service = Detect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Detect {
            inner,
            limit: self.limit,
            read_timeout: self.read_timeout,
        }
    }
}

/// Middleware that turns `Request<B>` into `Request<DetectedRequest>`.
#[derive(Debug, Clone)]
pub struct Detect<S> {
    inner: S,
    limit: usize,
    read_timeout: Duration,
}

impl<S> Detect<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for Detect<S>
where
    S: Service<Request<DetectedRequest>, Response = Response<Body>> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The polled-ready service goes into the future; a clone stays for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        let target = match target_format(parts.uri.query()) {
            Ok(t) => t,
            Err(e) => return ResponseFuture::rejected(e, TargetFormat::OpenAi),
        };
        if let Err(e) = check_declared_length(&parts.headers, self.limit) {
            return ResponseFuture::rejected(e, target);
        }
        ResponseFuture {
            state: State::Reading {
                collect: Limited::new(body, self.limit).collect(),
                deadline: tokio::time::sleep(self.read_timeout),
                parts: Some(parts),
                inner: Some(inner),
                target,
                limit: self.limit,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Detect`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<DetectedRequest>>,
        B: http_body::Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, B>
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
            target: TargetFormat,
            limit: usize,
        },
        Calling { #[pin] fut: S::Future },
        Rejected { res: Option<Response<Body>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<DetectedRequest>>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    fn rejected(error: GatewayError, target: TargetFormat) -> Self {
        ResponseFuture {
            state: State::Rejected {
                res: Some(error.into_response(target.error_dialect())),
            },
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
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

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<DetectedRequest>, Response = Response<Body>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Reading {
                    collect,
                    deadline,
                    parts,
                    inner,
                    target,
                    limit,
                } => {
                    let target = *target;
                    let polled = collect.poll(cx);
                    if polled.is_pending() {
                        ready!(deadline.poll(cx));
                        return Poll::Ready(Ok(
                            body_timeout_error().into_response(target.error_dialect())
                        ));
                    }
                    let bytes = match ready!(polled) {
                        Ok(collected) => collected.to_bytes(),
                        Err(e) => {
                            let err = body_read_error(&e, *limit);
                            return Poll::Ready(Ok(err.into_response(target.error_dialect())));
                        }
                    };
                    let detected = parse_body(&bytes).and_then(|body| {
                        let inbound = detect_format(&body)?;
                        Ok(DetectedRequest {
                            inbound,
                            target,
                            body,
                        })
                    });
                    let detected = match detected {
                        Ok(d) => d,
                        Err(e) => return Poll::Ready(Ok(e.into_response(target.error_dialect()))),
                    };
                    let (Some(parts), Some(mut svc)) = (parts.take(), inner.take()) else {
                        return Poll::Ready(Ok(GatewayError::internal(
                            "detect future polled after completion",
                        )
                        .into_response(target.error_dialect())));
                    };
                    let fut = svc.call(Request::from_parts(parts, detected));
                    State::Calling { fut }
                }
                StateProj::Calling { fut } => return fut.poll(cx),
                StateProj::Rejected { res } => {
                    return match res.take() {
                        Some(r) => Poll::Ready(Ok(r)),
                        None => Poll::Pending,
                    }
                }
            };
            this.state.set(next);
        }
    }
}
