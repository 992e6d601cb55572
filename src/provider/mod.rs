//! Providers, and the dispatch and timeout stages of the typed core.
//!
//! Every provider is a `Service<ChatCall, Response = ChatReply, Error = GatewayError>`, and the
//! built-in ones also a `Service<EmbeddingsCall, Response = EmbeddingsResponse>` (the core's second
//! operation: OpenAI forwards `/v1/embeddings`, Bedrock calls Titan and Cohere, the mock answers
//! deterministic vectors):
//! `OpenAiProvider` (the `openai` feature), `BedrockProvider` (the `bedrock` feature),
//! [`MockProvider`], or any service of the user's. [`Dispatch`] holds them by name, routes each
//! [`ChatCall`] by model ([`Router`](crate::route::Router)) to the named provider — or, for a
//! model that names a [`ModelGroup`], to one of the group's deployments per attempt ([`group`]:
//! balancing, fallbacks, outlier ejection) — and hands it the [`Route`](crate::route::Route) in
//! the call; an unknown model is answered with 404 and a provider name with no service behind it
//! with 503, before any upstream is called. Each attempt runs under its provider's
//! [`UpstreamTimeout`] (the wait for the first byte and the whole request, [`timeout`]).
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

#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod dispatch;
#[cfg(feature = "bedrock")]
pub mod fetch;
pub mod group;
pub mod mock;
#[cfg(feature = "openai")]
pub mod openai;
pub mod timeout;
#[cfg(any(feature = "openai", feature = "bedrock"))]
mod upstream;

#[cfg(feature = "bedrock")]
pub use bedrock::BedrockProvider;
pub use dispatch::{Dispatch, EmbeddingsProviderService, ProviderService};
#[cfg(feature = "bedrock")]
pub use fetch::MediaFetcher;
pub use group::{Deployment, ModelGroup};
pub use mock::MockProvider;
#[cfg(feature = "openai")]
pub use openai::OpenAiProvider;
pub use timeout::{TimedReply, UpstreamTimeout, UpstreamTimeoutLayer};
#[cfg(any(feature = "openai", feature = "bedrock"))]
pub use upstream::ProviderFuture;

#[cfg(feature = "bedrock")]
pub(crate) use upstream::https_connector_native;
#[cfg(any(feature = "openai", feature = "bedrock"))]
pub(crate) use upstream::{
    first_relayed, first_then_rest, https_connector, read_reply, tcp_connector, Quiet,
};

use crate::error::GatewayError;
use crate::model::{ChatCall, ChatReply, EmbeddingsCall, EmbeddingsResponse};

/// What the gateway can call, box and share as a typed core or a provider: a
/// `Service<ChatCall, Response = ChatReply, Error = GatewayError>` that is
/// `Clone + Send + Sync + 'static` with a `Send` future. Implemented for every such service.
pub trait ChatService:
    tower_service::Service<
        ChatCall,
        Response = ChatReply,
        Error = GatewayError,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> ChatService for S where
    S: tower_service::Service<
            ChatCall,
            Response = ChatReply,
            Error = GatewayError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// What the gateway can call for embeddings: a `Service<EmbeddingsCall, Response =
/// EmbeddingsResponse, Error = GatewayError>` that is `Clone + Send + Sync + 'static` with a `Send`
/// future. Implemented for every such service (the built-in providers, [`Dispatch`], the core).
pub trait EmbeddingsService:
    tower_service::Service<
        EmbeddingsCall,
        Response = EmbeddingsResponse,
        Error = GatewayError,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> EmbeddingsService for S where
    S: tower_service::Service<
            EmbeddingsCall,
            Response = EmbeddingsResponse,
            Error = GatewayError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}
