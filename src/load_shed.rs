//! A global in-flight limit with load shedding: past `max` requests in flight, new ones get an
//! immediate 503 (`Retry-After: 1`) instead of queueing behind the others, rendered in the request's
//! [`ErrorDialect`] extension, else the layer's.
//!
//! The permit is held by the response *body* ([`InFlightBody`]), not the response future, so a
//! stream counts as in flight until its last frame is read or the body is dropped (the client went
//! away) — streams cannot escape the limit. [`InFlight::current`] reads the live count (metrics use
//! it). Generic over request and response bodies (the 503 needs `ResB: From<Bytes>`).
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use open_bedrock_server::load_shed::InFlightLimitLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = InFlightLimitLayer::new(0);
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
//! });
//! let res = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 503);
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ErrorDialect, GatewayError};

/// Shared in-flight accounting.
#[derive(Debug, Clone)]
pub struct InFlight {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    /// Requests (and open streams) in flight now.
    pub fn current(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// Layer that applies [`InFlightLimit`].
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    state: InFlight,
    dialect: ErrorDialect,
}

impl InFlightLimitLayer {
    /// At most `max` requests in flight.
    pub fn new(max: usize) -> Self {
        InFlightLimitLayer {
            state: InFlight {
                semaphore: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
                max: max.min(Semaphore::MAX_PERMITS),
            },
            dialect: ErrorDialect::OpenAi,
        }
    }

    /// Renders the 503 in `dialect` (default OpenAI) when the request carries no [`ErrorDialect`]
    /// extension; the permits stay shared with `self`.
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// The shared accounting (for metrics).
    pub fn in_flight(&self) -> InFlight {
        self.state.clone()
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            state: self.state.clone(),
            dialect: self.dialect,
        }
    }
}

/// Middleware that sheds requests over the in-flight limit.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    state: InFlight,
    dialect: ErrorDialect,
}

impl<S> InFlightLimit<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for InFlightLimit<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Response = Response<InFlightBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self.state.semaphore.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture {
                state: State::Inner {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                },
            },
            Err(_) => {
                tracing::warn!(
                    max = self.state.max,
                    "shedding load: too many requests in flight"
                );
                let dialect = req
                    .extensions()
                    .get::<ErrorDialect>()
                    .copied()
                    .unwrap_or(self.dialect);
                let error = GatewayError::overloaded("The gateway is at capacity; retry shortly.");
                ResponseFuture {
                    state: State::Shed {
                        error: Some((error, dialect)),
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`InFlightLimit`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Inner { #[pin] fut: F, permit: Option<OwnedSemaphorePermit> },
        Shed { error: Option<(GatewayError, ErrorDialect)> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<InFlightBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, permit } => {
                let out = ready!(fut.poll(cx));
                let permit = permit.take();
                Poll::Ready(out.map(|res| res.map(|body| InFlightBody { body, permit })))
            }
            StateProj::Shed { error } => match error.take() {
                Some((error, dialect)) => Poll::Ready(Ok(error
                    .to_response(dialect)
                    .map(|body| InFlightBody { body, permit: None }))),
                None => Poll::Pending,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`InFlightLimit`]: the inner body, holding its in-flight permit until the
    /// last frame has been read or the body is dropped (a 503's body holds none).
    #[derive(Debug)]
    pub struct InFlightBody<B> {
        #[pin]
        body: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B: From<Bytes>> From<Bytes> for InFlightBody<B> {
    fn from(bytes: Bytes) -> Self {
        InFlightBody {
            body: B::from(bytes),
            permit: None,
        }
    }
}

impl<B> InFlightBody<B> {
    /// `body`, holding `permit` until its last frame is read or it is dropped.
    pub(crate) fn holding(body: B, permit: Option<OwnedSemaphorePermit>) -> Self {
        InFlightBody { body, permit }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }

    /// The inner body, its permit released.
    pub(crate) fn release(self) -> B {
        self.body
    }
}

impl<B: HttpBody> HttpBody for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if frame.is_none() {
            // The stream is over even if its reader keeps the body around.
            this.permit.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_streaming_body_holds_its_permit_until_dropped() {
        let layer = InFlightLimitLayer::new(1);
        let in_flight = layer.in_flight();
        let svc = layer.layer(tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("hello")))
        }));
        let res = svc
            .clone()
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(
            in_flight.current(),
            1,
            "the response body still holds the permit"
        );
        let second = svc
            .clone()
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(second.status(), 503);
        assert_eq!(second.headers()["retry-after"], "1");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        assert_eq!(in_flight.current(), 0, "released once the body is gone");
        assert_eq!(
            svc.oneshot(Request::new(Body::empty()))
                .await
                .unwrap()
                .status(),
            200
        );
    }

    #[tokio::test]
    async fn the_permit_comes_back_at_the_end_of_the_stream_and_503s_follow_the_request_dialect() {
        let layer = InFlightLimitLayer::new(1);
        let in_flight = layer.in_flight();
        let svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Body::from("hello")))
        }));
        let mut body = svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .into_body();
        let mut anthropic = Request::new(());
        anthropic.extensions_mut().insert(ErrorDialect::Anthropic);
        let shed = svc.clone().oneshot(anthropic).await.unwrap();
        assert_eq!(shed.status(), 503);
        let text = shed.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
        while body.frame().await.is_some() {}
        assert_eq!(
            in_flight.current(),
            0,
            "released at the end, body still alive"
        );
        drop(body);
        assert_eq!(in_flight.current(), 0);
    }
}
