//! Raw hyper serving: the accept loop, HTTP/1.1 and h2c on one port (told apart by a peek at the
//! first bytes: hyper's HTTP/1 connection, or hyper-util's auto builder for what may be HTTP/2),
//! `TCP_NODELAY`, graceful shutdown with a bounded drain.
//!
//! Unauthenticated load holds a bounded amount of memory and descriptors ([`ServerLimits`]):
//! - at most `max_connections` open connections: past it the loop stops accepting (the kernel's
//!   backlog holds the rest) instead of accepting and failing — back-pressure, not errors;
//! - a new connection must send its first request within `first_request_timeout` (silent
//!   connections and half HTTP/2 prefaces are closed), then is closed after `idle_timeout` without
//!   a request in flight; an HTTP/1 request head must arrive whole within `header_read_timeout`
//!   of its first byte; HTTP/2 sends keep-alive pings and closes a peer that does not answer them
//!   within `http2_keep_alive`;
//! - TCP keepalive on accepted sockets, so a peer that vanished is noticed by the kernel;
//! - a stream whose client stopped reading (hyper has not come back for its next frame within the
//!   stream's timeout) has its connection closed by the connection's watchdog, which drops the
//!   stream, its in-flight slot and its upstream call; a response body can also close its
//!   connection itself ([`ConnectionCloser`]).
//!
//! Each connection's task is polled through `coalesce`: the wakes it gives itself while polled
//! (hyper's body channel does, when a body is read) are taken in that poll instead of queueing the
//! task again and unparking a second worker.
//!
//! By default the loop and its connections run on the caller's runtime. With
//! [`ServerLimits::threads`] set, the same loop runs on that many threads of their own, each a
//! single-threaded runtime accepting from its own copy of the socket (`threads`).
//!
//! Accept errors (e.g. too many open files) are logged and the loop goes on after a short pause;
//! they never stop the server. On shutdown the listener closes, every connection is told to finish
//! (HTTP/1 closes after its in-flight response, HTTP/2 sends GOAWAY), and whatever is still open
//! after the drain period — a long stream, typically — is dropped.

mod coalesce;
mod connection;
mod threads;

pub use connection::ConnectionCloser;
pub(crate) use connection::ReaderWatch;
#[cfg(all(test, feature = "bedrock"))]
pub(crate) use threads::mark_serving;
#[cfg(any(feature = "openai", feature = "bedrock"))]
pub(crate) use threads::PerThread;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use self::connection::{Bounds, ConnectionService, ConnectionState, HeadTimed};
use crate::body::Body;
use crate::woken::Woken;

/// The bounds of a server's connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// Open connections at most; accepting pauses at the limit.
    pub max_connections: usize,
    /// A new connection's first request must arrive within this.
    pub first_request_timeout: Duration,
    /// A connection without a request in flight (and no request head begun) is closed after
    /// this.
    pub idle_timeout: Duration,
    /// HTTP/1: a request head must arrive whole within this of its first byte (the connection's
    /// watchdog enforces it, not hyper); zero sets no bound of its own. A connection whose first
    /// bytes looked like the HTTP/2 preface and turned out HTTP/1 is served by hyper-util's auto
    /// builder, whose hyper runs this from the end of the previous response instead.
    pub header_read_timeout: Duration,
    /// HTTP/2: a keep-alive ping goes out after this much silence, and the connection is closed
    /// when the ping is not answered within it.
    pub http2_keep_alive: Duration,
    /// TCP keepalive probes start after this much silence.
    pub tcp_keepalive: Duration,
    /// Serving threads: `0` serves on the caller's runtime (tokio's work-stealing scheduler
    /// moves connections between its workers); `n` serves on `n` threads of their own, each a
    /// single-threaded runtime with a copy of the listening socket, so a connection, its
    /// upstream calls (`PerThread` pools) and its memory stay on one thread (see `threads`).
    pub threads: usize,
    /// How each connection calls the service for a request: a clone per request unless the
    /// service is the gateway's own (`Gateway::serve`).
    pub(crate) per_request: PerRequest,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 10_000,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(30),
            http2_keep_alive: Duration::from_secs(20),
            tcp_keepalive: Duration::from_secs(60),
            threads: 0,
            per_request: PerRequest::Clone,
        }
    }
}

impl ServerLimits {
    /// Sets every bound at once (the fields are public for reading; this keeps the struct
    /// extensible).
    pub fn new(
        max_connections: usize,
        first_request_timeout: Duration,
        idle_timeout: Duration,
        http2_keep_alive: Duration,
    ) -> Self {
        ServerLimits {
            max_connections,
            first_request_timeout,
            idle_timeout,
            http2_keep_alive,
            ..ServerLimits::default()
        }
    }

    /// Bounds each HTTP/1 request head to `timeout` from its first byte; see
    /// [`ServerLimits::header_read_timeout`].
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The request-head bound, if any: `header_read_timeout`, zero meaning none. Both HTTP/1
    /// paths take it from here, the watchdog's and hyper-util's auto builder's.
    fn head_timeout(&self) -> Option<Duration> {
        (!self.header_read_timeout.is_zero()).then_some(self.header_read_timeout)
    }

    /// Serves on `threads` threads of their own (`0`: on the caller's runtime); see
    /// [`ServerLimits::threads`].
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// How each connection calls the shared service for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PerRequest {
    /// A clone per request, readiness awaited (`Oneshot`): what tower expects of any service.
    Clone,
    /// One clone kept per connection, called in place when ready (`crate::ready`): only for a
    /// stack ready by construction with no per-clone state, as the gateway's own outer stack is
    /// (`Gateway::serve`).
    Kept,
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains: connections finish their
/// in-flight requests for at most `drain`; streams still open then are ended cleanly (an in-band
/// error event) through `close_streams`, and whatever remains a second later is dropped. Uses
/// the default [`ServerLimits`].
///
/// `service` is shared by every connection and cloned for each request, which calls its clone
/// once (`poll_ready`, then `call`), as `tower::ServiceExt::oneshot` does.
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    shutdown: F,
    drain: Duration,
    close_streams: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    serve_with(
        listener,
        service,
        shutdown,
        drain,
        close_streams,
        ServerLimits::default(),
    )
    .await;
}

/// [`serve`] with explicit connection bounds.
pub async fn serve_with<S, F>(
    listener: TcpListener,
    service: S,
    shutdown: F,
    drain: Duration,
    close_streams: CancellationToken,
    limits: ServerLimits,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let serving = Serving {
        service: Arc::new(service),
        drain,
        close_streams,
        limits,
        slots: Arc::new(Semaphore::new(
            limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        )),
    };
    if limits.threads > 0 {
        threads::serve(listener, shutdown, serving).await;
    } else {
        accept_loop(listener, shutdown, serving).await;
    }
}

/// What a server's accept loops share: one per server, or one per serving thread.
#[derive(Clone)]
struct Serving<S> {
    service: Arc<S>,
    drain: Duration,
    close_streams: CancellationToken,
    limits: ServerLimits,
    /// One per open connection, across every loop of the server.
    slots: Arc<Semaphore>,
}

/// The services a server serves: what [`serve`] asks of its `service`.
trait Served:
    Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Served for S
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
}

/// Accepts connections on `listener` and serves each on a task of the current runtime until
/// `shutdown`, then drains (see [`serve`]).
async fn accept_loop<S: Served>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serving: Serving<S>,
) {
    let Serving {
        service,
        drain,
        close_streams,
        limits,
        slots,
    } = serving;
    let protocols = Arc::new(Protocols::new(&limits));
    // Cancelled when the loop ends: a connection still waiting for its first bytes then closes
    // at once (hyper-util's auto connection cancelled its version read the same way), and every
    // other one is asked to end gracefully (`end_with`) while the drain waits for it.
    let stopping = CancellationToken::new();
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Back-pressure: a connection slot first, then the accept (the kernel queues the rest).
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "could not set TCP_NODELAY");
        }
        let keepalive = socket2::TcpKeepalive::new().with_time(limits.tcp_keepalive);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, %peer, "could not set TCP keepalive");
        }
        let state = ConnectionState::new();
        let hyper_service =
            ConnectionService::new(service.clone(), state.clone(), limits.per_request);
        // Counted by the drain from here on, while the protocol is still being told apart too:
        // held until the connection's task ends (the drain's signal is `stopping`, in `end_with`).
        let watcher = graceful.watcher();
        let protocols = protocols.clone();
        let stopping = stopping.clone();
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        // Wakes the connection gives itself while polled are taken in that poll (`coalesce`).
        connections.spawn(coalesce::Coalesced::new(async move {
            let (_slot, _counted) = (slot, watcher);
            let watchdog = state.clone().watchdog(Bounds {
                first_request: limits.first_request_timeout,
                idle: limits.idle_timeout,
                head: limits.head_timeout(),
            });
            tokio::pin!(watchdog);
            let protocol = tokio::select! {
                protocol = Protocol::sniff(&stream) => protocol.map_err(End::Io),
                () = &mut watchdog => Err(End::Watchdog),
                () = stopping.cancelled() => Err(End::Stopping),
            };
            let res = match protocol {
                Ok(Protocol::Http1) => {
                    // The watchdog bounds each request head from its first byte read.
                    let io = TokioIo::new(HeadTimed::new(stream, state.clone()));
                    let conn = std::pin::pin!(protocols.http1.serve_connection(io, hyper_service));
                    end_with(conn, watchdog, &stopping).await
                }
                // Boxed: an HTTP/2 connection's state is several times an HTTP/1 one's, and it
                // would otherwise size every connection's task.
                Ok(Protocol::Other) => {
                    let io = TokioIo::new(stream);
                    let conn = protocols.auto.serve_connection(io, hyper_service);
                    end_with(Box::pin(conn.into_owned()).as_mut(), watchdog, &stopping).await
                }
                Err(end) => Err(end),
            };
            match res {
                Ok(()) => {}
                Err(End::Watchdog) if state.closed_by_closer() => {
                    tracing::debug!(%peer, "connection closed: a stream's reader stalled, or a body closed it");
                }
                Err(End::Watchdog) => {
                    tracing::debug!(%peer, "connection closed: no first request in time, or idle");
                }
                Err(End::Stopping) => {
                    tracing::debug!(%peer, "connection closed: shutting down before its first request");
                }
                Err(End::Io(e)) => tracing::debug!(error = %e, %peer, "connection ended with an error"),
                Err(End::Http(e)) => tracing::debug!(error = %e, %peer, "connection ended with an error"),
            }
        }));
    }

    drop(listener);
    stopping.cancel();
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        drain_secs = drain.as_secs_f64(),
        "shutting down: draining"
    );
    let all_closed = graceful.shutdown();
    tokio::pin!(all_closed);
    tokio::select! {
        () = &mut all_closed => {
            tracing::info!("all connections closed");
            return;
        }
        () = tokio::time::sleep(drain) => {
            tracing::warn!("drain period over; ending the streams still open");
        }
    }
    close_streams.cancel();
    tokio::select! {
        () = &mut all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(Duration::from_secs(1)) => {
            tracing::warn!(open = connections.len(), "closing the remaining connections");
            connections.abort_all();
        }
    }
}

/// The connection builders, configured once from the limits and shared by every connection.
struct Protocols {
    /// Plain HTTP/1.1: nearly every connection.
    http1: http1::Builder,
    /// Anything that may be HTTP/2 (h2c with prior knowledge): hyper-util reads the preface.
    auto: auto::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &ServerLimits) -> Self {
        // hyper's header-read timeout off: the connection's watchdog bounds each request head
        // from its first byte (`HeadTimed`; `connection`'s docs say why).
        let mut http1 = http1::Builder::new();
        http1.header_read_timeout(None).keep_alive(true);
        // The auto builder also serves HTTP/1 (a request that began like the preface). Its
        // connections are not read through `HeadTimed` (an HTTP/2 connection's pings are no
        // request head), so its HTTP/1 keeps hyper's header-read timeout.
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.head_timeout())
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keep_alive)
            .keep_alive_timeout(limits.http2_keep_alive)
            .max_concurrent_streams(1024);
        Protocols { http1, auto }
    }
}

/// What a connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// The bytes already differ from the HTTP/2 preface (or the peer closed): HTTP/1.
    Http1,
    /// The HTTP/2 preface, or a prefix of it: hyper-util's auto builder reads on and decides.
    Other,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Protocol {
    /// Looks at the first bytes without taking them off the socket, so hyper reads them as if
    /// nothing had. hyper-util's auto builder does the same by reading them into a buffer it
    /// replays, behind an enum that holds an HTTP/2 connection's state inline; telling the two
    /// apart first lets an HTTP/1 connection — nearly all of them — hold only its own (BENCHMARKS.md,
    /// memory per open stream).
    async fn sniff(stream: &TcpStream) -> io::Result<Protocol> {
        let mut head = [0u8; H2_PREFACE.len()];
        let n = stream.peek(&mut head).await?;
        Ok(Protocol::of(&head[..n]))
    }

    /// The protocol the first bytes `head` (all that has arrived) say.
    fn of(head: &[u8]) -> Protocol {
        if !head.is_empty() && H2_PREFACE.starts_with(head) {
            Protocol::Other
        } else {
            Protocol::Http1
        }
    }
}

/// Why a connection's task ended other than by the connection finishing.
enum End {
    /// The watchdog closed it (no first request in time, idle, a stream's reader stalled, or a
    /// body asked).
    Watchdog,
    /// The server stopped while the connection's first bytes were still awaited.
    Stopping,
    /// Reading the first bytes failed.
    Io(io::Error),
    /// hyper ended the connection with an error.
    Http(Box<dyn std::error::Error + Send + Sync>),
}

/// Drives `conn` until it ends or `watchdog` fires, and asks it to end gracefully (finish the
/// request in flight, then close) once `stopping` is cancelled. The connection is polled on every
/// wake; the watchdog (a timer and a `Notify`) and `stopping` only when one of them woke the task
/// (see `crate::woken`), not again on every read and write of the connection. (hyper-util's
/// `Watcher::watch` polled its shutdown signal, a `watch` channel, on every one: about 0.5 k
/// instructions per request, BENCHMARKS.md.)
async fn end_with<C>(
    mut conn: Pin<&mut C>,
    mut watchdog: Pin<&mut impl Future<Output = ()>>,
    stopping: &CancellationToken,
) -> Result<(), End>
where
    C: GracefulConnection,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let woken = Woken::new();
    let mut stop = std::pin::pin!(stopping.cancelled());
    // A connection that begins after the server began to stop is asked before its first read,
    // so it ends without serving a request, as one still waiting for its first bytes does.
    let mut asked = stopping.is_cancelled();
    if asked {
        conn.as_mut().graceful_shutdown();
    }
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(res) = conn.as_mut().poll(cx) {
            return Poll::Ready(res.map_err(|e| End::Http(e.into())));
        }
        let Some(waker) = woken.take(cx) else {
            return Poll::Pending;
        };
        let mut quiet = Context::from_waker(waker);
        if watchdog.as_mut().poll(&mut quiet).is_ready() {
            return Poll::Ready(Err(End::Watchdog));
        }
        if asked || stop.as_mut().poll(&mut quiet).is_pending() {
            return Poll::Pending;
        }
        // Polled again at once: an idle connection ends on the next poll.
        asked = true;
        conn.as_mut().graceful_shutdown();
    })
    .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = term => tracing::info!("received SIGTERM"),
    }
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::{Protocol, H2_PREFACE};

    #[test]
    fn the_first_bytes_tell_http1_from_what_may_be_http2() {
        assert_eq!(Protocol::of(b"POST /v1/chat/completions"), Protocol::Http1);
        assert_eq!(Protocol::of(b"GET"), Protocol::Http1);
        // "PU" (PUT) already differs from the preface at its second byte.
        assert_eq!(Protocol::of(b"PUT /x"), Protocol::Http1);
        // The peer closed before sending anything: hyper sees the end and closes.
        assert_eq!(Protocol::of(b""), Protocol::Http1);
        assert_eq!(Protocol::of(H2_PREFACE), Protocol::Other);
        // A prefix could still be either (POST, or the preface): the auto builder reads on.
        assert_eq!(Protocol::of(b"P"), Protocol::Other);
        assert_eq!(Protocol::of(b"PRI * HTTP/2.0\r\n"), Protocol::Other);
    }
}
