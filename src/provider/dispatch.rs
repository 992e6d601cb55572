//! [`Dispatch`]: routes each call by model to a provider service held by name, or to a
//! [model group](super::group) of deployments.
//!
//! The map is name → [`ProviderService`] (a cloneable provider: boxed, or a built-in one
//! shared), so any number of OpenAI-compatible upstreams or Bedrock accounts can sit side by
//! side, and a user's own service can be registered with [`Dispatch::with_provider`]. The typed
//! built-in providers are kept beside the map for what is not a call: model listings and health.
//!
//! Embeddings are the core's second operation: `Dispatch` is also a `Service<EmbeddingsCall>`,
//! routed by the same [`Router`] to a second map of the same names
//! ([`Dispatch::with_embeddings_provider`]; the built-in providers register both). A route whose
//! provider serves no embeddings is a 400 naming `model`.
//!
//! - **Groups.** A model that names a [`ModelGroup`] (directly or through an alias) is served by one
//!   of its deployments per attempt: the group chooses, skipping the deployments this request has
//!   already tried (the [`CallRecord`]'s attempts) and ejected ones. After a failure that may fall
//!   back, the record says so, and the retry layer above sends the next attempt at once.
//! - **Timeouts per provider.** Every attempt runs under its provider's [`UpstreamTimeout`] (the
//!   gateway's timeouts, or the provider's own first-byte and idle limits; the request's one
//!   deadline bounds them all), below the choice of deployment, so a deployment that times out is
//!   seen to fail, and its fallback gets its own first-byte wait.
//! - **Attempts.** Each attempt is written to the call's [`CallRecord`] with its provider,
//!   deployment and outcome (the access log's `attempt_log`).
//!
//! Routing happens in `call`, so `poll_ready` cannot know which provider a call needs: it is always
//! ready, and the chosen provider's own readiness is awaited inside the response future (a
//! [`Oneshot`] on a clone), under its timeouts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::util::{BoxCloneSyncService, Oneshot};
use tower_service::Service;

use super::group::{self, AttemptTicket, ModelGroup};
use super::timeout::UpstreamTimeout;
#[cfg(feature = "bedrock")]
use super::BedrockProvider;
use super::MockProvider;
#[cfg(feature = "openai")]
use super::OpenAiProvider;
use crate::config::Timeouts;
use crate::error::GatewayError;
use crate::model::{
    Attempt, AttemptOutcome, CallRecord, ChatCall, ChatReply, EmbeddingsCall, EmbeddingsResponse,
};
use crate::provider::{ChatService, EmbeddingsService};
use crate::route::{ProviderKind, Route, Router};
use crate::NameMap;

/// A provider as [`Dispatch`] holds it: any `Service<ChatCall>` answering [`ChatReply`], boxed
/// ([`ProviderService::new`]), or a built-in network provider held shared.
///
/// The built-in OpenAI and Bedrock providers answer with a boxed future already and need only
/// `&self` to make it: held shared, an attempt's clone of the provider is a
/// reference count and its future that one box. Through [`BoxCloneSyncService`] each attempt's
/// clone would be a heap block of its own and the future a second box around the first (issue 18).
#[derive(Clone)]
pub struct ProviderService(Held);

#[derive(Clone)]
enum Held {
    Shared(Arc<dyn SharedProvider>),
    Boxed(BoxCloneSyncService<ChatCall, ChatReply, GatewayError>),
}

/// A provider whose calls take `&self` (its state shared behind an `Arc`), always ready, whose
/// future is boxed already: the built-in network providers.
pub(crate) trait SharedProvider: Send + Sync + 'static {
    fn call_shared(&self, call: ChatCall) -> BoxFuture<'static, Result<ChatReply, GatewayError>>;
}

impl ProviderService {
    /// `service`, boxed.
    pub fn new<S>(service: S) -> Self
    where
        S: ChatService,
    {
        ProviderService(Held::Boxed(BoxCloneSyncService::new(service)))
    }

    /// A built-in provider, held shared (see the type's docs).
    #[cfg_attr(not(any(feature = "openai", feature = "bedrock")), allow(dead_code))]
    pub(crate) fn shared(provider: impl SharedProvider) -> Self {
        ProviderService(Held::Shared(Arc::new(provider)))
    }
}

impl std::fmt::Debug for ProviderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Held::Shared(_) => "ProviderService(built-in)",
            Held::Boxed(_) => "ProviderService(boxed)",
        })
    }
}

impl Service<ChatCall> for ProviderService {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<ChatReply, GatewayError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        match &mut self.0 {
            Held::Shared(_) => Poll::Ready(Ok(())),
            Held::Boxed(s) => s.poll_ready(cx),
        }
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        match &mut self.0 {
            Held::Shared(p) => p.call_shared(call),
            Held::Boxed(s) => s.call(call),
        }
    }
}

/// An embeddings provider as [`Dispatch`] holds it: any `Service<EmbeddingsCall>`, boxed.
pub type EmbeddingsProviderService =
    BoxCloneSyncService<EmbeddingsCall, EmbeddingsResponse, GatewayError>;

/// Routes calls to named provider services and model groups. Cheap to clone: one reference
/// count (a request's core is cloned at least twice, by translation and by the retry layer).
#[derive(Clone)]
pub struct Dispatch {
    shared: Arc<Shared>,
}

/// What a [`Dispatch`] and its clones share.
#[derive(Clone)]
struct Shared {
    router: Arc<Router>,
    providers: Arc<NameMap<Arc<str>, ProviderService>>,
    embedders: Arc<NameMap<Arc<str>, EmbeddingsProviderService>>,
    groups: Arc<NameMap<Arc<str>, ModelGroup>>,
    timeouts: Timeouts,
    provider_timeouts: Arc<NameMap<Arc<str>, Timeouts>>,
    #[cfg(feature = "openai")]
    openai: Option<OpenAiProvider>,
    #[cfg(feature = "bedrock")]
    bedrock: Option<BedrockProvider>,
    mock: Option<MockProvider>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.provider_names().collect();
        names.sort_unstable();
        let mut groups: Vec<&str> = self.shared.groups.keys().map(|k| &**k).collect();
        groups.sort_unstable();
        f.debug_struct("Dispatch")
            .field("router", &self.shared.router)
            .field("providers", &names)
            .field("groups", &groups)
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    /// A dispatcher routing by `router`, with no providers yet and the default timeouts.
    pub fn new(router: Router) -> Self {
        let shared = Shared {
            router: Arc::new(router),
            providers: Arc::new(NameMap::new()),
            embedders: Arc::new(NameMap::new()),
            groups: Arc::new(NameMap::new()),
            timeouts: Timeouts::default(),
            provider_timeouts: Arc::new(NameMap::new()),
            #[cfg(feature = "openai")]
            openai: None,
            #[cfg(feature = "bedrock")]
            bedrock: None,
            mock: None,
        };
        Dispatch {
            shared: Arc::new(shared),
        }
    }

    /// The shared part, to change while building (a copy of it if a clone shares it too).
    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Bounds every attempt by `timeouts` (first byte, stream idle; total when the call carries
    /// no deadline), unless its provider has its own.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.shared_mut().timeouts = timeouts;
        self
    }

    /// Bounds attempts at the provider named `name` by `timeouts` instead.
    pub fn with_provider_timeouts(mut self, name: impl Into<Arc<str>>, timeouts: Timeouts) -> Self {
        Arc::make_mut(&mut self.shared_mut().provider_timeouts).insert(name.into(), timeouts);
        self
    }

    /// Serves the `openai` provider with `provider` (also used for the model listing and health).
    #[cfg(feature = "openai")]
    pub fn with_openai(mut self, provider: OpenAiProvider) -> Self {
        self =
            self.with_provider_service("openai".into(), ProviderService::shared(provider.clone()));
        self = self.with_embeddings_provider("openai", provider.clone());
        self.shared_mut().openai = Some(provider);
        self
    }

    /// Serves the `bedrock` provider with `provider` (also used for the model listing and health).
    #[cfg(feature = "bedrock")]
    pub fn with_bedrock(mut self, provider: BedrockProvider) -> Self {
        self =
            self.with_provider_service("bedrock".into(), ProviderService::shared(provider.clone()));
        self = self.with_embeddings_provider("bedrock", provider.clone());
        self.shared_mut().bedrock = Some(provider);
        self
    }

    /// Serves `mock/…` models (the `mock` provider) with the in-process [`MockProvider`].
    pub fn with_mock(mut self, provider: MockProvider) -> Self {
        self = self.with_provider("mock", provider);
        self = self.with_embeddings_provider("mock", provider);
        self.shared_mut().mock = Some(provider);
        self
    }

    /// Serves the provider named `name` with `service`, replacing any provider of that name —
    /// a built-in one included, which then no longer lists models, reports health or serves
    /// embeddings either (register those with
    /// [`with_embeddings_provider`](Self::with_embeddings_provider) afterwards).
    pub fn with_provider<S>(self, name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: ChatService,
    {
        self.with_provider_service(name.into(), ProviderService::new(service))
    }

    /// [`with_provider`](Self::with_provider) for a provider held already.
    pub(crate) fn with_provider_service(
        mut self,
        name: Arc<str>,
        service: ProviderService,
    ) -> Self {
        match &*name {
            #[cfg(feature = "openai")]
            "openai" => self.shared_mut().openai = None,
            #[cfg(feature = "bedrock")]
            "bedrock" => self.shared_mut().bedrock = None,
            "mock" => self.shared_mut().mock = None,
            _ => {}
        }
        Arc::make_mut(&mut self.shared_mut().embedders).remove(&name);
        Arc::make_mut(&mut self.shared_mut().providers).insert(name, service);
        self
    }

    /// Serves embeddings for the provider named `name` with `service` (chat calls to that name go
    /// to the service [`with_provider`](Self::with_provider) registered).
    pub fn with_embeddings_provider<S>(self, name: impl Into<Arc<str>>, service: S) -> Self
    where
        S: EmbeddingsService,
    {
        self.with_embeddings_service(name.into(), BoxCloneSyncService::new(service))
    }

    /// [`with_embeddings_provider`](Self::with_embeddings_provider) for a service boxed already.
    pub(crate) fn with_embeddings_service(
        mut self,
        name: Arc<str>,
        service: EmbeddingsProviderService,
    ) -> Self {
        Arc::make_mut(&mut self.shared_mut().embedders).insert(name, service);
        self
    }

    /// Serves the model named after `group` with its deployments (replacing a group of that
    /// name). A group's name wins over the routing rules; an alias may name a group.
    pub fn with_group(mut self, group: ModelGroup) -> Self {
        Arc::make_mut(&mut self.shared_mut().groups).insert(group.name_arc().clone(), group);
        self
    }

    /// The names of the registered provider services (in no particular order).
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.shared.providers.keys().map(|k| &**k)
    }

    /// The model groups (in no particular order).
    pub fn groups(&self) -> impl Iterator<Item = &ModelGroup> {
        self.shared.groups.values()
    }

    /// The mock provider, if enabled.
    pub fn mock(&self) -> Option<&MockProvider> {
        self.shared.mock.as_ref()
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.shared.router
    }

    /// The built-in OpenAI provider, if it serves the `openai` provider.
    #[cfg(feature = "openai")]
    pub fn openai(&self) -> Option<&OpenAiProvider> {
        self.shared.openai.as_ref()
    }

    /// The built-in Bedrock provider, if it serves the `bedrock` provider.
    #[cfg(feature = "bedrock")]
    pub fn bedrock(&self) -> Option<&BedrockProvider> {
        self.shared.bedrock.as_ref()
    }

    /// The group `model` names, directly or through an alias.
    fn group_for(&self, model: &str) -> Option<&ModelGroup> {
        self.shared.groups.get(model).or_else(|| {
            self.shared
                .router
                .aliases()
                .get(model)
                .and_then(|target| self.shared.groups.get(target.as_str()))
        })
    }

    /// The provider named `route.provider` under its timeouts, with `call` routed there.
    fn attempt(
        &self,
        route: Route,
        mut call: ChatCall,
        attempt: Attempt,
        ticket: Option<AttemptTicket>,
    ) -> ResponseFuture {
        let Some(provider) = self.shared.providers.get(&*route.provider) else {
            return ResponseFuture::failed(not_configured(&route));
        };
        let timeouts = self
            .shared
            .provider_timeouts
            .get(&*route.provider)
            .copied()
            .unwrap_or(self.shared.timeouts);
        let record = call.context.record.clone();
        self.count_fallback(&record, &attempt);
        let index = record.begin_attempt(attempt.sending(route.upstream_model.clone()));
        call.route = Some(route);
        ResponseFuture::calling(
            Oneshot::new(UpstreamTimeout::new(provider.clone(), timeouts), call),
            AttemptState {
                record,
                index,
                ticket,
                settled: false,
            },
        )
    }

    /// Counts a fallback away from the previous attempt's deployment when this attempt goes
    /// elsewhere.
    fn count_fallback(&self, record: &CallRecord, next: &Attempt) {
        let Some(prev) = record.last_attempt() else {
            return;
        };
        let (Some(group), Some(deployment)) = (&prev.group, &prev.deployment) else {
            return;
        };
        if (&prev.group, &prev.deployment) == (&next.group, &next.deployment) {
            return;
        }
        if let Some(g) = self.shared.groups.get(group) {
            if let Some(index) = g.index_of(deployment) {
                g.note_fallback(index);
            }
        }
    }

    /// One attempt at a deployment of `group`.
    fn call_group(&self, group: &ModelGroup, call: ChatCall) -> ResponseFuture {
        let tried = call.context.record.tried_in(group.name());
        let Some((pick, deployment)) = group
            .pick(&tried)
            .and_then(|pick| Some((pick, group.deployment_at(pick.index)?)))
        else {
            return ResponseFuture::failed(GatewayError::internal(format!(
                "the model group `{}` has no deployment",
                group.name()
            )));
        };
        let route = deployment.route().clone();
        let attempt = Attempt::new(route.provider.clone())
            .in_group(group.name_arc().clone(), deployment.name().into());
        // Started at once: should the attempt not go out, dropping the ticket gives back a probe
        // the pick may have claimed.
        let ticket = group.start(pick);
        self.attempt(route, call, attempt, Some(ticket))
    }
}

impl Service<ChatCall> for Dispatch {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        // After a context-window error, the group's larger model serves the later attempts.
        let redirect = call.context.record.redirected();
        let model = redirect.as_deref().unwrap_or(&call.request.model);
        if let Some(group) = self.group_for(model) {
            return self.call_group(group, call);
        }
        let route = match self.shared.router.resolve(model) {
            Ok(r) => r,
            Err(e) => return ResponseFuture::failed(e),
        };
        let attempt = Attempt::new(route.provider.clone());
        self.attempt(route, call, attempt, None)
    }
}

impl Service<EmbeddingsCall> for Dispatch {
    type Response = EmbeddingsResponse;
    type Error = GatewayError;
    type Future = EmbeddingsFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: EmbeddingsCall) -> Self::Future {
        let model = &call.request.model;
        if self.group_for(model).is_some() {
            return EmbeddingsFuture::failed(GatewayError::unsupported(
                "model",
                format!("`{model}` names a model group, and model groups serve chat only; name an embedding model."),
            ));
        }
        let route = match self.shared.router.resolve(model) {
            Ok(r) => r,
            Err(e) => return EmbeddingsFuture::failed(e),
        };
        let Some(provider) = self.shared.embedders.get(&*route.provider) else {
            let e = if self.shared.providers.contains_key(&*route.provider) {
                GatewayError::unsupported(
                    "model",
                    format!(
                        "The provider `{}` that serves `{}` does not serve embeddings.",
                        route.provider, model
                    ),
                )
            } else {
                not_configured(&route)
            };
            return EmbeddingsFuture::failed(e);
        };
        let timeouts = self
            .shared
            .provider_timeouts
            .get(&*route.provider)
            .copied()
            .unwrap_or(self.shared.timeouts);
        let record = call.context.record.clone();
        let index = record.begin_attempt(Attempt::new(route.provider.clone()));
        call.route = Some(route);
        EmbeddingsFuture::calling(
            Oneshot::new(UpstreamTimeout::new(provider.clone(), timeouts), call),
            AttemptState {
                record,
                index,
                ticket: None,
                settled: false,
            },
        )
    }
}

/// The 503 for a route whose provider has no service here, with what to set for a built-in one.
fn not_configured(route: &Route) -> GatewayError {
    if *route.provider != *route.kind.as_str() {
        return GatewayError::provider_not_configured(
            &format!("`{}`", route.provider),
            "no provider service of that name is registered",
        );
    }
    let (name, how) = match route.kind {
        ProviderKind::OpenAi => ("OpenAI", "set OPENAI_BASE_URL / OPENAI_API_KEY"),
        ProviderKind::Bedrock(_) => (
            "Bedrock",
            "set AWS_REGION and AWS credentials, and leave BEDROCK_ENABLED on",
        ),
        ProviderKind::Mock => (
            "mock",
            "start the gateway with --mock or MOCK_PROVIDER=true",
        ),
    };
    GatewayError::provider_not_configured(name, how)
}

/// One attempt in flight: where its outcome is written.
#[derive(Debug)]
struct AttemptState {
    record: Arc<CallRecord>,
    index: usize,
    ticket: Option<AttemptTicket>,
    settled: bool,
}

impl AttemptState {
    /// Records the outcome; a group's stream keeps the ticket until its end.
    fn finish<R: Tracked>(mut self, result: Result<R, GatewayError>) -> Result<R, GatewayError> {
        self.settled = true;
        match result {
            Ok(reply) => {
                self.record.end_attempt(self.index, AttemptOutcome::Ok);
                let Some(mut ticket) = self.ticket.take() else {
                    return Ok(reply);
                };
                ticket.succeeded();
                Ok(reply.tracked(ticket))
            }
            Err(e) => {
                self.record
                    .end_attempt(self.index, AttemptOutcome::failed(&e));
                let mut fallback = false;
                if let Some(mut ticket) = self.ticket.take() {
                    ticket.failed(&e);
                    let g = ticket.group();
                    fallback = if group::is_context_window_error(&e) {
                        g.context_window_fallback()
                            .is_some_and(|m| self.record.redirect_to(m.clone()))
                    } else {
                        group::is_fallback_error(&e)
                            && g.has_untried(&self.record.tried_in(g.name()))
                    };
                }
                self.record.set_fallback(fallback);
                Err(e)
            }
        }
    }
}

impl Drop for AttemptState {
    fn drop(&mut self) {
        if !self.settled {
            // Dropped before it finished: the client went away, or the request's time ran out.
            self.record
                .end_attempt(self.index, AttemptOutcome::Cancelled);
        }
    }
}

/// A reply whose attempt [`AttemptState`] settles: a group's ticket stays with its stream (if
/// any) until the stream ends.
trait Tracked: Sized {
    fn tracked(self, ticket: AttemptTicket) -> Self;
}

impl Tracked for ChatReply {
    fn tracked(self, ticket: AttemptTicket) -> Self {
        self.wrap_stream(group::TrackStream(ticket))
    }
}

/// Complete: the ticket ends with the call (model groups serve chat only, so there is none).
impl Tracked for EmbeddingsResponse {
    fn tracked(self, _ticket: AttemptTicket) -> Self {
        self
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Dispatch`]: the routing error, or the provider's readiness and call
    /// (`F`), its outcome written to the call's record.
    pub struct DispatchFuture<F> {
        #[pin]
        state: State<F>,
    }
}

/// [`Dispatch`]'s future for chat calls.
pub type ResponseFuture = DispatchFuture<Oneshot<UpstreamTimeout<ProviderService>, ChatCall>>;

/// [`Dispatch`]'s future for embeddings calls.
pub type EmbeddingsFuture =
    DispatchFuture<Oneshot<UpstreamTimeout<EmbeddingsProviderService>, EmbeddingsCall>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Failed { error: Option<GatewayError> },
        Calling {
            #[pin]
            call: F,
            attempt: Option<AttemptState>,
        },
    }
}

impl<F> DispatchFuture<F> {
    fn failed(error: GatewayError) -> Self {
        DispatchFuture {
            state: State::Failed { error: Some(error) },
        }
    }

    fn calling(call: F, attempt: AttemptState) -> Self {
        DispatchFuture {
            state: State::Calling {
                call,
                attempt: Some(attempt),
            },
        }
    }
}

impl<F> std::fmt::Debug for DispatchFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dispatch::DispatchFuture")
    }
}

impl<F, R> Future for DispatchFuture<F>
where
    F: Future<Output = Result<R, GatewayError>>,
    R: Tracked,
{
    type Output = Result<R, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                GatewayError::internal("dispatch::DispatchFuture polled after completion")
            }))),
            StateProj::Calling { call, attempt } => {
                let result = std::task::ready!(call.poll(cx));
                Poll::Ready(match attempt.take() {
                    Some(state) => state.finish(result),
                    None => result,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tower::ServiceExt;

    use super::*;
    use crate::model::{CallContext, CallRecord, ChatRequest};
    use crate::provider::mock::mock_response;
    use crate::route::RouteOverride;

    fn request(model: &str) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .unwrap()
    }

    /// `my-…` models go to the provider service named `mine`, `gone-…` to `gone`.
    fn router() -> Router {
        Router::new(
            HashMap::from([("mine".to_owned(), "my-model-v2".to_owned())]),
            vec![
                RouteOverride::new("my-", ProviderKind::OpenAi).with_provider("mine"),
                RouteOverride::new("gone-", ProviderKind::OpenAi).with_provider("gone"),
            ],
            HashMap::new(),
        )
    }

    #[tokio::test]
    async fn a_provider_registered_by_name_is_dispatched_to_with_its_route() {
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let mine = tower::service_fn(move |call: ChatCall| {
            let _ = seen_tx.send(call.route.clone());
            async move { Ok::<_, GatewayError>(ChatReply::Complete(mock_response(&call.request))) }
        });
        let dispatch = Dispatch::new(router())
            .with_mock(MockProvider::new())
            .with_provider("mine", mine);
        let record = Arc::new(CallRecord::default());
        let call = ChatCall::with_context(
            request("mine"),
            CallContext {
                record: record.clone(),
                ..CallContext::default()
            },
        );
        let reply = dispatch.clone().oneshot(call).await.unwrap();
        assert!(matches!(reply, ChatReply::Complete(_)));
        let route = seen
            .recv()
            .await
            .unwrap()
            .expect("the call carries its route");
        assert_eq!(
            route,
            Route::new("mine", ProviderKind::OpenAi, "my-model-v2"),
            "the alias is resolved and the provider named"
        );
        assert_eq!(record.provider().as_deref(), Some("mine"));
        assert_eq!(record.attempts(), 1);

        // The built-in names still reach the built-in providers.
        let reply = dispatch
            .oneshot(ChatCall::new(request("mock/echo")))
            .await
            .unwrap();
        assert!(matches!(reply, ChatReply::Complete(_)));
        assert!(
            seen.try_recv().is_err(),
            "`mine` was not called for mock/echo"
        );
    }

    #[tokio::test]
    async fn a_route_to_an_unregistered_provider_is_503_and_calls_nothing() {
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = called.clone();
        let mine = tower::service_fn(move |call: ChatCall| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, GatewayError>(ChatReply::Complete(mock_response(&call.request))) }
        });
        let dispatch = Dispatch::new(router()).with_provider("mine", mine);
        let record = Arc::new(CallRecord::default());
        let call = ChatCall::with_context(
            request("gone-1"),
            CallContext {
                record: record.clone(),
                ..CallContext::default()
            },
        );
        let err = dispatch.clone().oneshot(call).await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert_eq!(err.code(), Some("provider_not_configured"));
        assert!(!err.is_retryable());
        assert!(err.message().contains("`gone`"), "{}", err.message());
        assert_eq!(record.attempts(), 0, "no upstream attempt was made");
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));

        // A built-in provider that is not configured keeps its hint.
        let err = dispatch
            .clone()
            .oneshot(ChatCall::new(request(
                "anthropic.claude-3-haiku-20240307-v1:0",
            )))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.message().contains("AWS_REGION"), "{}", err.message());
        let err = dispatch
            .oneshot(ChatCall::new(request("nonsense")))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 404, "an unknown model is still 404");
    }

    #[tokio::test]
    async fn a_provider_that_is_not_ready_is_awaited_before_its_call() {
        // The tower-test mock panics when called before it said it was ready.
        let (mock, mut handle) = tower_test::mock::pair::<ChatCall, ChatReply>();
        let mock = mock.map_err(|e| GatewayError::internal(e.to_string()));
        let dispatch = Dispatch::new(router()).with_provider("mine", mock);
        handle.allow(0);

        let mut reply = Box::pin(dispatch.oneshot(ChatCall::new(request("my-x"))));
        let pending = std::future::poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx).is_pending()));
        assert!(pending.await, "waits for the provider");
        assert!(handle.poll_request().is_pending(), "and has not called it");

        handle.allow(1);
        let reply = tokio::spawn(reply);
        let (call, respond) = handle.next_request().await.unwrap();
        assert_eq!(call.route.unwrap().provider.as_ref(), "mine");
        respond.send_response(ChatReply::Complete(mock_response(&call.request)));
        assert!(matches!(
            reply.await.unwrap(),
            Ok(ChatReply::Complete(r)) if r.model == "my-x"
        ));
    }
}
