//! What the network providers (OpenAI, Bedrock) share: their response future, the wait for a
//! stream's first event, and the TLS connector of their HTTP clients.

use std::future::Future;
use std::pin::Pin;

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

/// The TLS connector over `http` every upstream client uses: rustls with the webpki roots,
/// `http://` allowed, HTTP/1.1 and HTTP/2 by ALPN.
pub(crate) fn https_connector<R>(
    http: hyper_util::client::legacy::connect::HttpConnector<R>,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector<R>>,
    GatewayError,
> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        .map_err(|e| GatewayError::internal(format!("TLS setup failed: {e}")))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}
