//! What the network providers (OpenAI, Bedrock) share: their response future, and the wait for a
//! stream's first event.

use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use crate::error::GatewayError;
use crate::model::{ChatChunk, ChatReply, ChunkStream};

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
