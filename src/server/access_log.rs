//! One structured log line per request, when its response head is ready.
//!
//! Written by hand rather than with `tower_http::trace` because the line carries gateway facts the
//! inner stages attach to the response (key id, model, provider, formats) rather than generic spans.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::ApiKeyId;
use crate::body::Body;
use crate::error::ErrorSummary;

/// Layer that applies [`AccessLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

/// Middleware that logs every request once.
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for AccessLog<S>
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
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        ResponseFuture {
            fut: self.inner.call(req),
            started: Instant::now(),
            method,
            path,
            request_id,
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`AccessLog`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        fut: F,
        started: Instant,
        method: Method,
        path: String,
        request_id: Option<String>,
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
        if let Ok(res) = &out {
            let latency_ms = this.started.elapsed().as_secs_f64() * 1000.0;
            let key = res.extensions().get::<ApiKeyId>().map(|k| &*k.0).unwrap_or("-");
            let error = res.extensions().get::<ErrorSummary>().map(|e| format!("{:?}", e.kind));
            tracing::info!(
                target: "access",
                method = %this.method,
                path = %this.path,
                status = res.status().as_u16(),
                latency_ms,
                request_id = this.request_id.as_deref().unwrap_or("-"),
                key_id = key,
                error = error.as_deref().unwrap_or("-"),
                "request"
            );
        }
        Poll::Ready(out)
    }
}
