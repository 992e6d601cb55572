//! Providers, and the dispatch and timeout stages of the typed core.
//!
//! Every provider is a `Service<ChatCall, Response = ChatReply, Error = GatewayError>`:
//! [`OpenAiProvider`], [`BedrockProvider`], [`MockProvider`], or any service of the user's.
//! [`Dispatch`] holds them by name, routes each [`ChatCall`] by model
//! ([`Router`](crate::route::Router)) to the named provider — or, for a model that names a
//! [`ModelGroup`], to one of the group's deployments per attempt ([`group`]: balancing, fallbacks,
//! outlier ejection) — and hands it the [`Route`](crate::route::Route) in the call; an unknown
//! model is answered with 404 and a provider name with no service behind it with 503, before any
//! upstream is called. Each attempt runs under its provider's [`UpstreamTimeout`] (the wait for
//! the first byte and the whole request, [`timeout`]).
//!
//! A provider answers a stream only once its first event has arrived, so every failure before the
//! first byte is an `Err` the retry layer above can act on.
//!
//! ```
//! use open_bedrock_server::error::GatewayError;
//! use open_bedrock_server::model::{ChatCall, ChatReply, ChatRequest};
//! use open_bedrock_server::provider::{mock, Dispatch};
//! use open_bedrock_server::route::{ProviderKind, RouteOverride, Router};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // `local-…` models go to a provider service named `local`: here, one that answers with the
//! // upstream model its route names (`llama` is an alias).
//! let router = Router::new(
//!     [("llama".to_owned(), "local-llama-3-8b".to_owned())].into(),
//!     vec![RouteOverride::new("local-", ProviderKind::OpenAi).with_provider("local")],
//!     Default::default(),
//! );
//! let local = tower::service_fn(|call: ChatCall| async move {
//!     let mut request = (*call.request).clone();
//!     request.model = call.route.map(|r| r.upstream_model.to_string()).unwrap_or_default();
//!     Ok::<_, GatewayError>(ChatReply::Complete(mock::mock_response(&request)))
//! });
//! let dispatch = Dispatch::new(router).with_provider("local", local);
//!
//! let mut request = ChatRequest::default();
//! request.model = "llama".into();
//! let reply = dispatch.clone().oneshot(ChatCall::new(request.clone())).await.unwrap();
//! let ChatReply::Complete(reply) = reply else { unreachable!() };
//! assert_eq!(reply.model, "local-llama-3-8b");
//!
//! // `gpt-4o` routes to the built-in `openai` provider, which this dispatcher does not have.
//! request.model = "gpt-4o".into();
//! let err = dispatch.oneshot(ChatCall::new(request)).await.unwrap_err();
//! assert_eq!(err.status(), 503);
//! # }
//! ```

pub mod bedrock;
pub mod dispatch;
pub mod group;
pub mod mock;
pub mod openai;
pub mod timeout;

use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use crate::error::GatewayError;
use crate::model::{ChatChunk, ChatReply, ChunkStream};

pub use bedrock::BedrockProvider;
pub use dispatch::{Dispatch, ProviderService};
pub use group::{Deployment, ModelGroup};
pub use mock::MockProvider;
pub use openai::OpenAiProvider;
pub use timeout::{TimedStream, UpstreamTimeout, UpstreamTimeoutLayer};

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
