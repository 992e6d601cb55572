//! A panic below the outermost layers becomes a 500 in the OpenAI error shape, never a dropped
//! connection: one in a service's `call`, and one while its response future is polled (the body
//! of a stream is not covered: hyper polls it after the response has gone out).
//!
//! Written here rather than with `tower_http::catch_panic`, which boxes every response body — an
//! allocation per response and a virtual call per frame — so that its panic response has the same
//! body type; here the gateway's [`Body`] is that type already.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::Body;
use crate::error::{ErrorDialect, GatewayError};

/// Layer that applies [`CatchPanic`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// Middleware that answers a panic of the inner service with a 500 (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct CatchPanic<S> {
    inner: S,
}

impl<S, R> Service<R> for CatchPanic<S>
where
    S: Service<R, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => CatchPanicFuture::Running { future },
            Err(panic) => CatchPanicFuture::Panicked {
                response: Some(panic_response(panic)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`CatchPanic`].
    #[project = CatchPanicProj]
    pub(crate) enum CatchPanicFuture<F> {
        /// The inner call's future.
        Running { #[pin] future: F },
        /// The inner `call` panicked: its 500, until taken (`None` after, or once the inner
        /// future panicked and was dropped: a plain 500 if polled again).
        Panicked { response: Option<Response<Body>> },
    }
}

impl<F, E> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.as_mut().project() {
            CatchPanicProj::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => {
                        // The inner future is dropped here, not polled again after its panic.
                        self.set(CatchPanicFuture::Panicked { response: None });
                        Poll::Ready(Ok(panic_response(panic)))
                    }
                }
            }
            CatchPanicProj::Panicked { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(internal_error)))
            }
        }
    }
}

/// Logs the panic's message and answers a 500.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %detail, "a request handler panicked");
    internal_error()
}

fn internal_error() -> Response<Body> {
    GatewayError::internal("The gateway hit an internal error.").into_response(ErrorDialect::OpenAi)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::Request;
    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    use super::*;

    async fn answer(res: Response<Body>) -> (u16, String) {
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panic_in_call_or_in_the_future_is_a_500_in_the_openai_shape() {
        // Panics inside `call` itself.
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<Body>> for PanicsInCall {
            type Response = Response<Body>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<Body>, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<Body>) -> Self::Future {
                panic!("boom in call")
            }
        }
        let res = CatchPanicLayer
            .layer(PanicsInCall)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        let (status, text) = answer(res).await;
        assert_eq!(status, 500);
        assert!(text.contains("\"type\":\"server_error\""), "{text}");

        // Panics while its future is polled, after an await.
        let in_future = service_fn(|_: Request<Body>| async {
            tokio::task::yield_now().await;
            if true {
                panic!("boom in the future");
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let res = CatchPanicLayer
            .layer(in_future)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        let (status, text) = answer(res).await;
        assert_eq!(status, 500);
        assert!(text.contains("internal error"), "{text}");
    }

    #[test]
    fn a_future_that_panicked_is_dropped_at_once_and_a_second_poll_is_a_plain_500() {
        // A future that holds a resource as a field (unwinding out of `poll` does not drop it, as
        // it would an async block's locals) and panics when polled.
        struct Holds(#[allow(dead_code)] std::sync::Arc<()>);
        impl Future for Holds {
            type Output = Result<Response<Body>, Infallible>;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
                panic!("boom")
            }
        }
        let held = std::sync::Arc::new(());
        let in_future = {
            let held = held.clone();
            service_fn(move |_: Request<Body>| Holds(held.clone()))
        };
        let mut svc = CatchPanicLayer.layer(in_future);
        let mut fut = std::pin::pin!(svc.call(Request::new(Body::empty())));
        assert_eq!(std::sync::Arc::strong_count(&held), 3);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(first)) = fut.as_mut().poll(&mut cx) else {
            panic!("a panic is answered at once");
        };
        assert_eq!(first.status(), 500);
        // Only the service's own copy is left: the panicked future (and what it held) is gone.
        assert_eq!(std::sync::Arc::strong_count(&held), 2);
        let Poll::Ready(Ok(again)) = fut.as_mut().poll(&mut cx) else {
            panic!("polled again, still an answer");
        };
        assert_eq!(again.status(), 500);
    }

    #[tokio::test]
    async fn an_answer_passes_through_with_its_own_body() {
        let ok = service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("hello")))
        });
        let res = CatchPanicLayer
            .layer(ok)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        assert_eq!(answer(res).await, (200, "hello".to_owned()));
    }
}
