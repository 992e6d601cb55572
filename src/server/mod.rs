//! Raw hyper serving: the accept loop, HTTP/1.1 and h2c on one port (hyper-util's auto builder),
//! `TCP_NODELAY`, graceful shutdown with a bounded drain.
//!
//! Accept errors (e.g. too many open files) are logged and the loop goes on after a short pause;
//! they never stop the server. On shutdown the listener closes, every connection is told to finish
//! (HTTP/1 closes after its in-flight response, HTTP/2 sends GOAWAY), and whatever is still open
//! after the drain period — a long stream, typically — is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::body::Body;

/// Serves `service` on `listener` until `shutdown` resolves, then drains: connections finish their
/// in-flight requests for at most `drain`; streams still open then are ended cleanly (an in-band
/// error event) through `close_streams`, and whatever remains a second later is dropped.
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
        + 'static,
    S::Future: Send + 'static,
    F: Future<Output = ()>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);

    loop {
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
        let hyper_service = TowerToHyperService::new(service.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_service);
        let conn = graceful.watch(conn.into_owned());
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }

    drop(listener);
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
