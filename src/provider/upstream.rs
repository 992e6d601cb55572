//! What the network providers (OpenAI, Bedrock) share: their response future, the wait for a
//! stream's first event, the TCP and TLS connectors of their HTTP clients, and the bounded read of
//! a complete reply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};

use futures_util::{Stream, StreamExt};

use crate::error::GatewayError;
use crate::format::InboundFormat;
use crate::model::{ChatChunk, ChatReply, ChunkStream};
use crate::model::{RelayedBody, RelayedReply, RelayedStream};

/// The response future of the OpenAI and Bedrock provider services.
pub type ProviderFuture = Pin<Box<dyn Future<Output = Result<ChatReply, GatewayError>> + Send>>;

/// Awaits the first item of `stream` so that failures before the first byte stay retryable, then
/// answers the stream with that item put back in front.
pub(crate) async fn first_then_rest<S>(mut stream: S) -> Result<ChatReply, GatewayError>
where
    S: Stream<Item = Result<ChatChunk, GatewayError>> + Send + Unpin + 'static,
{
    match stream.next().await {
        None => Err(GatewayError::upstream_protocol(
            "The upstream stream ended before its first event.",
        )),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(ChatReply::Stream(ChunkStream::new(
            futures_util::stream::once(std::future::ready(Ok(first))).chain(stream),
        ))),
    }
}

/// [`first_then_rest`] for a relayed stream of payloads in `format` (the client's), for `model`.
pub(crate) async fn first_relayed(
    mut stream: RelayedStream,
    format: InboundFormat,
    model: &str,
) -> Result<ChatReply, GatewayError> {
    match stream.next().await {
        None => Err(GatewayError::upstream_protocol(
            "The upstream stream ended before its first event.",
        )),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(ChatReply::Relayed(RelayedReply {
            format,
            model: model.to_owned(),
            body: RelayedBody::Stream(RelayedStream::new(
                futures_util::stream::once(std::future::ready(Ok(first))).chain(stream),
            )),
        })),
    }
}

/// Largest upstream response body read into memory (complete replies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// A complete reply's body, read whole, at most [`MAX_UPSTREAM_BODY`]; a failed read is a
/// connect error naming `upstream` ("the `upstream` response").
pub(crate) async fn read_reply(body: Incoming, upstream: &str) -> Result<Bytes, GatewayError> {
    crate::body::to_bytes(Limited::new(body, MAX_UPSTREAM_BODY))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "failed to read the {upstream} response");
            GatewayError::upstream_connect(format!("Failed to read the {upstream} response."))
        })
}

/// The TCP connector under an upstream client's TLS: `https://` URIs handed on to the TLS layer,
/// no Nagle delay, `connect` as the connect timeout, TCP keepalive every 60 s.
pub(crate) fn tcp_connector(connect: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// The TLS connector over `http` every upstream client uses: rustls with the webpki roots,
/// `http://` allowed, HTTP/1.1 and HTTP/2 by ALPN, over [`Quiet`] connections.
pub(crate) fn https_connector<R>(
    http: HttpConnector<R>,
) -> Result<hyper_rustls::HttpsConnector<Quiet<HttpConnector<R>>>, GatewayError> {
    let roots = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| GatewayError::internal(format!("TLS setup failed: {e}")))?;
    Ok(over(roots, http))
}

/// [`https_connector`] trusting the system's root certificates (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` too), as the AWS SDK's own client does: the Bedrock provider's, so a
/// certificate authority an operator added for AWS traffic is trusted on either path. An error
/// when the system has no usable roots.
#[cfg(feature = "bedrock")]
pub(crate) fn https_connector_native<R>(
    http: HttpConnector<R>,
) -> Result<hyper_rustls::HttpsConnector<Quiet<HttpConnector<R>>>, GatewayError> {
    let roots = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| GatewayError::internal(format!("TLS setup failed: {e}")))?;
    Ok(over(roots, http))
}

/// The rest both connectors share once their roots are chosen.
fn over<R>(
    roots: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>,
    http: HttpConnector<R>,
) -> hyper_rustls::HttpsConnector<Quiet<HttpConnector<R>>> {
    roots
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(Quiet(http))
}

/// A connector whose connections carry no "extra" connection info.
///
/// hyper-util's TCP connection reports its addresses (`HttpInfo`) as extra info, and its client
/// then inserts a copy into every response's extensions: an extensions map and a box or two per
/// upstream request, for a value nothing here reads. A `Quiet` connection reports a plain
/// [`Connected`]: not proxied, and HTTP/2 still taken from the TLS layer's ALPN above it.
#[derive(Clone, Debug)]
pub(crate) struct Quiet<C>(C);

impl<C> tower_service::Service<http::Uri> for Quiet<C>
where
    C: tower_service::Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = Quiet<C::Response>;
    type Error = C::Error;
    type Future = futures_util::future::MapOk<C::Future, fn(C::Response) -> Quiet<C::Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        use futures_util::TryFutureExt;
        self.0.call(uri).map_ok(Quiet)
    }
}

impl<T> Connection for Quiet<T> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Quiet<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Quiet<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
