//! One accepted connection: its deadlines, its requests in flight, and the handle that closes it.
//!
//! hyper bounds a connection only once a request is under way (HTTP/1 header timeout, HTTP/2
//! keep-alive pings); a connection that never sends a byte, sends half an HTTP/2 preface, or sits
//! idle between requests would stay open forever. So each connection runs beside a watchdog that
//! closes it when:
//!
//! - its **first request** (HTTP/1 request head; HTTP/2 preface, settings and first HEADERS) has
//!   not arrived within `first_request` of the accept;
//! - it has had **no request in flight** (the last response fully sent) for `idle`;
//! - a response body asks for it through [`ConnectionCloser`] — what a stream does when its client
//!   has stopped reading (see [`crate::stream`]): hyper then drops the connection and with it the
//!   body, its in-flight slot and its upstream call.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::util::Oneshot;
use tower_service::Service;

/// Closes the connection a request arrived on (a request extension set by the gateway's server).
/// Closing drops every response body on it, which cancels their upstream calls.
#[derive(Debug, Clone)]
pub struct ConnectionCloser(CancellationToken);

impl ConnectionCloser {
    /// A closer that closes nothing (for tests and other servers).
    pub fn detached() -> Self {
        ConnectionCloser(CancellationToken::new())
    }

    /// Closes the connection now.
    pub fn close(&self) {
        self.0.cancel();
    }

    /// Whether the connection was closed through this handle.
    pub fn is_closed(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// What the watchdog of one connection reads.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    opened: Instant,
    /// Requests whose response has not been fully sent (or dropped).
    active: AtomicUsize,
    /// Milliseconds after `opened` of the last request start or end.
    last_change_ms: AtomicU64,
    got_request: AtomicBool,
    closer: ConnectionCloser,
}

impl ConnectionState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnectionState {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            got_request: AtomicBool::new(false),
            closer: ConnectionCloser(CancellationToken::new()),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_change_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves when the connection must close: its first request is late, it has been idle too
    /// long, or a body closed it. Never resolves for a zero duration's check.
    pub(crate) async fn watchdog(self: Arc<Self>, first_request: Duration, idle: Duration) {
        let closed = self.closer.0.clone();
        let check = async {
            loop {
                let now = Instant::now();
                let deadline = if !self.got_request.load(Ordering::Acquire) {
                    self.opened + first_request
                } else if self.active.load(Ordering::Acquire) == 0 {
                    let last = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
                    self.opened + last + idle
                } else {
                    // Requests in flight bound themselves (timeouts, the stream watchdog); look
                    // again after one idle period.
                    now + idle
                };
                if deadline <= now {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        };
        tokio::select! {
            () = check => {}
            () = closed.cancelled() => {}
        }
    }

    pub(crate) fn closed_by_body(&self) -> bool {
        self.closer.is_closed()
    }
}

/// The gateway's service for one connection, as hyper calls it: records request starts and ends
/// for the watchdog and gives each request the connection's [`ConnectionCloser`].
///
/// Every connection shares the one stack behind an `Arc`; each request calls its own clone of it
/// (poll_ready, then call, as tower requires), which is what hyper-util's tower adapter did per
/// request anyway — without the per-connection clone the adapter also kept.
///
/// A request counts as in flight for the watchdog from the moment hyper hands it over, before
/// the stack is ready for it.
#[derive(Debug)]
pub(crate) struct ConnectionService<S> {
    inner: Arc<S>,
    state: Arc<ConnectionState>,
}

impl<S> ConnectionService<S> {
    pub(crate) fn new(inner: Arc<S>, state: Arc<ConnectionState>) -> Self {
        ConnectionService { inner, state }
    }
}

impl<S, ReqB, ResB> hyper::service::Service<Request<ReqB>> for ConnectionService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
{
    type Response = Response<TrackedBody<ResB>>;
    type Error = S::Error;
    type Future = TrackedFuture<Oneshot<S, Request<ReqB>>>;

    fn call(&self, mut req: Request<ReqB>) -> Self::Future {
        let state = self.state.clone();
        state.got_request.store(true, Ordering::Release);
        state.active.fetch_add(1, Ordering::AcqRel);
        state.touch();
        req.extensions_mut().insert(state.closer.clone());
        TrackedFuture {
            fut: Oneshot::new(S::clone(&self.inner), req),
            guard: Some(ActiveGuard(state)),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ConnectionService`]: hands the request's guard to the body.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        fut: F,
        guard: Option<ActiveGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.fut.poll(cx))?;
        let guard = this.guard.take();
        Poll::Ready(Ok(res.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

/// Counts one request in flight on its connection until dropped.
#[derive(Debug)]
struct ActiveGuard(Arc<ConnectionState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as a request in flight on its connection until it is dropped.
    #[derive(Debug)]
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<ActiveGuard>,
    }
}

impl<B: HttpBody> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
