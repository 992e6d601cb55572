//! A global in-flight limit with load shedding: past `max` requests in flight, new ones get an
//! immediate 503 (`Retry-After: 1`) instead of queueing behind the others.
//!
//! The permit is held by the response *body*, not the response future, so a stream counts as in
//! flight until its last byte is sent or the client goes away — streams cannot escape the limit.
//! [`InFlight::current`] reads the live count (metrics use it).
//!
//! ```
//! use open_bedrock_server::{body::Body, load_shed::InFlightLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = InFlightLimitLayer::new(0);
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//! });
//! let res = svc.oneshot(http::Request::new(Body::empty())).await.unwrap();
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

use crate::body::{Body, BoxError};
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

    /// Renders the 503 in `dialect` (default OpenAI); the permits stay shared with `self`.
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

impl<S, B> Service<Request<B>> for InFlightLimit<S>
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
                let res = GatewayError::overloaded("The gateway is at capacity; retry shortly.")
                    .into_response(
                        req.extensions()
                            .get::<ErrorDialect>()
                            .copied()
                            .unwrap_or(self.dialect),
                    );
                ResponseFuture {
                    state: State::Shed { res: Some(res) },
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
        Shed { res: Option<Response<Body>> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, permit } => {
                let out = ready!(fut.poll(cx));
                Poll::Ready(out.map(|res| match permit.take() {
                    Some(permit) => res.map(|body| {
                        Body::new(PermitBody {
                            body,
                            _permit: permit,
                        })
                    }),
                    None => res,
                }))
            }
            StateProj::Shed { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that holds an in-flight permit until it is finished or dropped.
    struct PermitBody {
        #[pin]
        body: Body,
        _permit: OwnedSemaphorePermit,
    }
}

impl HttpBody for PermitBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx)
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
}
