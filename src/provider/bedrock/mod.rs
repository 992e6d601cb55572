//! The Bedrock provider: `aws-config`'s default chain, runtime calls sent by the gateway's own
//! client, and `aws-sdk-bedrockruntime` where it must send.
//!
//! - **Client**: credentials from the default chain (environment, profile, SSO, web identity/IRSA,
//!   ECS task role, IMDS; they refresh by themselves), region from configuration /
//!   `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (and
//!   `AWS_ENDPOINT_URL_BEDROCK` for the control plane) honoured by aws-config, Bedrock API keys
//!   (`AWS_BEARER_TOKEN_BEDROCK`) read as the SDK reads them. One client per region: the configured
//!   region plus the region of every configured ARN. The region is found at start-up; the AWS
//!   configuration is loaded, and each client built, when first used (the `clients` module).
//! - **Named providers** (`[providers.<name>]`, [`BedrockProviderConfig`]): any number of regions
//!   and accounts side by side, each with its region, credentials from the default chain or a
//!   named profile, optionally a role assumed through aws-config's STS provider (with an external
//!   id), an endpoint override, or a Bedrock API key read from a variable or a file, and its own
//!   connect timeout ([`BedrockProvider::from_provider_config`]).
//! - **Runtime calls without the SDK's orchestrator** (the `direct` module): InvokeModel (Claude,
//!   Titan, embeddings) and Converse calls are signed with `aws-sigv4` (credentials from the same
//!   providers), or carry the Bedrock API key as a bearer token, and are sent over a pooled hyper
//!   client per serving thread, their event streams read with `aws-smithy-eventstream`,
//!   Converse's JSON written and read by `format::converse::wire`: 30–45 % less CPU per call
//!   than through the SDK. An embedder's HTTP client or token provider, a proxy, bearer tokens
//!   preferred without an API key (SSO), or neither credentials nor an API key keep the SDK's
//!   client (the `direct` module lists them), as does a Converse call whose guardrail asks for
//!   its trace; the model list always uses it.
//! - **Retries**: the SDK's own retries and stalled-stream protection are off — the gateway's one
//!   retry layer owns retries (so an upstream sees at most the configured attempts) and its own
//!   idle timeout owns stalls (a thinking model may legitimately pause).
//! - **Service**: a `Service<ChatCall>`, always ready. It takes the model and the family strategy
//!   from the call's [`Route`](crate::route::Route), which [`Dispatch`](super::Dispatch) sets; a call
//!   without a Bedrock route is an internal error (nothing here guesses a family).
//! - **Strategies** by family ([`BedrockFamily`]): Claude and Titan over InvokeModel /
//!   InvokeModelWithResponseStream with their native bodies ([`crate::format::bedrock_claude`],
//!   [`crate::format::bedrock_titan`]); every other family over Converse / ConverseStream
//!   ([`crate::format::converse`]). A client's own Claude (Titan) body bound for a Claude (Titan)
//!   model is forwarded as written, minus routing-only keys.
//! - **Pass-through** (issue 18): when that native body went up unchanged in meaning (no fetched
//!   media, no automatic or dropped cache points, no structured-output lowering, for Titan no
//!   stop sequence the gateway enforces itself) and the client reads the model's own format
//!   (`translate::relays`: a Claude body on `/v1/messages`, `invoke`, or the chat route; a Titan
//!   body likewise), the reply is relayed as Bedrock's bytes ([`ChatReply::Relayed`]): a complete
//!   body as it came, its usage found by a byte scan ([`crate::format::scan`]); a stream's `chunk`
//!   payloads one by one ([`ClaudeStreamRelay`], [`TitanStreamRelay`]), so `amazon-bedrock-*`
//!   members, ids and the upstream's `model` reach the client as Bedrock wrote them. A stream
//!   without its final event (`message_stop`, `completionReason`) still ends in an in-band error.
//!   **No relay when a guardrail applies** (the client's own or a configured one): its
//!   intervention is read by the codecs and reaches the client as it does on the canonical path
//!   (`content_filter`, the trace), so a configured guardrail's verdict never depends on the
//!   client's format. A complete body the scan cannot read, or one without a usage, is decoded as
//!   before (a malformed body stays a clear `upstream_protocol` error).
//! - **Streams** answer once their first event has arrived (failures before it stay retryable);
//!   exception frames become in-band errors (the `stream` module).
//! - **Embeddings** (`Service<EmbeddingsCall>`): Titan and Cohere over InvokeModel, lists fanned
//!   out with a bound and reassembled in order (the `embeddings` module). A chat call to an
//!   embedding model, or an embeddings call to a chat model, is a 400 naming `model`.
//! - **Errors** map per PROTOCOLS.md §5.8 (the `error` module).

mod capabilities;
mod clients;
mod direct;
mod embeddings;
mod error;
mod fan_out;
pub(crate) mod guardrail;
mod models;
mod stops;
mod stream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_bedrockruntime::primitives::Blob;
use bytes::Bytes;
use serde_json::Value;
use tower_service::Service;

use super::{first_relayed, first_then_rest, MediaFetcher, ProviderFuture};
use crate::config::{
    BedrockProviderConfig, Config, GuardrailsConfig, PromptCachingConfig, Secret, Timeouts,
};
use crate::error::GatewayError;
use crate::format::bedrock_claude::{self, ClaudeRequestOptions, ClaudeStreamDecoder};
use crate::format::bedrock_titan::{self, TitanRequestOptions, TitanStreamDecoder};
use crate::format::caching::{self, CacheSupport};
use crate::format::converse::ReasoningStyle;
use crate::format::converse::{self, ConverseOptions, ConverseStreamDecoder};
use crate::format::reasoning;
use crate::format::scan;
use crate::format::structured::{self, Lowering, StructuredReply};
use crate::format::InboundFormat;
use crate::model::{
    ChatCall, ChatReply, ChatRequest, ChunkMeta, EmbeddingsCall, EmbeddingsResponse,
    GuardrailConfig, RelayedBody, RelayedReply, Usage,
};
use crate::route::{BedrockFamily, ProviderKind};
use crate::stream::decode_stream;
use crate::stream::relay::{relay_stream, ClaudeStreamRelay, TitanStreamRelay};
use crate::translate::relays;

use clients::{Clients, Runtime};
use direct::{Conversed, Invoked};
use models::list_models_with;

/// The Bedrock upstream. Cheap to clone.
#[derive(Clone)]
pub struct BedrockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    region: Option<String>,
    clients: Clients,
    claude: ClaudeRequestOptions,
    titan: TitanRequestOptions,
    converse: ConverseOptions,
    caching: PromptCachingConfig,
    /// Fetches `http(s)` media when `[media_fetch]` is on.
    fetcher: Option<MediaFetcher>,
    guardrails: GuardrailsConfig,
    /// The most choices (`n`) one request may fan out to.
    max_n: u32,
    /// The most embedding calls one request runs at a time.
    embedding_concurrency: usize,
}

impl std::fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockProvider")
            .field("region", &self.inner.region)
            .field(
                "extra_regions",
                &self.inner.clients.regions().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The region field of an ARN (`arn:aws:bedrock:<region>:…`).
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// `sdk` with the role `settings` names assumed through STS (its external id and session name),
/// or `sdk` as it is without one. Building the role's provider cannot fail; the role is assumed
/// when credentials are first needed.
async fn with_role(sdk: SdkConfig, settings: &BedrockProviderConfig) -> SdkConfig {
    let Some(role) = &settings.role_arn else {
        return sdk;
    };
    let mut base = sdk;
    if base.time_source().is_none() {
        base = base
            .into_builder()
            .time_source(aws_smithy_async::time::SystemTimeSource::new())
            .build();
    }
    let mut assume = aws_config::sts::AssumeRoleProvider::builder(role).configure(&base);
    if let Some(id) = &settings.external_id {
        assume = assume.external_id(id);
    }
    if let Some(session) = &settings.role_session_name {
        assume = assume.session_name(session);
    }
    let credentials = assume.build().await;
    base.into_builder()
        .credentials_provider(
            aws_sdk_bedrockruntime::config::SharedCredentialsProvider::new(credentials),
        )
        .build()
}

/// The SDK configuration a provider is built over: loaded later, on its first call, or already.
enum Sdk {
    Later(clients::Load),
    Loaded(Box<SdkConfig>),
}

/// The retry settings of the environment and the AWS profile (`AWS_MAX_ATTEMPTS`,
/// `AWS_RETRY_MODE`, the profile's `max_attempts` and `retry_mode`), read at start-up and handed
/// to the later load: aws-config panics on an invalid one while loading, and that must stop
/// start-up with a configuration error, not fail each Bedrock call. (The runtime clients turn
/// the SDK's retries off; these reach the STS calls of the credentials chain.)
async fn retry_settings(profile: Option<&str>) -> Result<RetryConfig, GatewayError> {
    use futures_util::FutureExt;
    let mut settings = aws_config::default_provider::retry_config::default_provider();
    if let Some(p) = profile {
        settings = settings.profile_name(p);
    }
    match std::panic::AssertUnwindSafe(settings.retry_config())
        .catch_unwind()
        .await
    {
        Ok(retry) => Ok(retry),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("invalid");
            Err(GatewayError::internal(format!(
                "configuration error in the AWS retry settings (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, or the profile's max_attempts, retry_mode): {why}"
            )))
        }
    }
}

/// Loads the AWS configuration for `region` when first needed: the default chain, or `settings`'
/// profile (its credentials too) and role; `retry` read at start-up ([`retry_settings`]).
fn later(
    region: aws_config::Region,
    retry: RetryConfig,
    settings: BedrockProviderConfig,
) -> clients::Load {
    Arc::new(move || {
        let (region, retry, settings) = (region.clone(), retry.clone(), settings.clone());
        Box::pin(async move {
            count_load();
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .retry_config(retry);
            if let Some(p) = &settings.profile {
                // The profile's credentials (static, SSO, process, a role chain), not the default
                // chain's, which would take the environment's first.
                loader = loader.profile_name(p).credentials_provider(
                    aws_config::profile::ProfileFileCredentialsProvider::builder()
                        .profile_name(p)
                        .build(),
                );
            }
            with_role(loader.load().await, &settings).await
        })
    })
}

#[cfg(test)]
thread_local! {
    /// How many times this thread started loading an AWS configuration for a provider.
    static LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a load (tests only).
fn count_load() {
    #[cfg(test)]
    LOADS.set(LOADS.get() + 1);
}

impl BedrockProvider {
    /// Finds the region, and the AWS configuration (default chain) to load on first use.
    /// `Ok(None)` when no region can be found: Bedrock is then reported as not configured.
    pub async fn from_config(config: &Config) -> Result<Option<Self>, GatewayError> {
        // The region comes from configuration (AWS_REGION / AWS_DEFAULT_REGION) or the AWS
        // profile — not from instance metadata, so a gateway without AWS configuration starts
        // without probing the network. Credentials keep the whole default chain (IMDS included).
        let region = match &config.bedrock.region {
            Some(region) => Some(aws_config::Region::new(region.clone())),
            None => {
                aws_config::meta::region::RegionProviderChain::first_try(
                    aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(aws_config::profile::ProfileFileRegionProvider::new())
                .region()
                .await
            }
        };
        let Some(region) = region else {
            tracing::warn!("no AWS region configured (AWS_REGION / AWS_DEFAULT_REGION / profile): Bedrock is disabled");
            return Ok(None);
        };
        let retry = retry_settings(None).await?;
        let primary = region.to_string();
        let load = later(region, retry, BedrockProviderConfig::default());
        Ok(Some(Self::build(
            Sdk::Later(load),
            Some(primary),
            config,
            &config.timeouts,
            None,
            None,
        )))
    }

    /// The provider over an explicit SDK configuration (used by tests and embedders that load AWS
    /// configuration themselves), its clients built from it at once. Retries and stalled-stream
    /// protection are turned off whatever `sdk` says.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &Config) -> Self {
        let region = sdk.region().map(|r| r.to_string());
        let sdk = Sdk::Loaded(Box::new(sdk.clone()));
        Self::build(sdk, region, config, &config.timeouts, None, None)
    }

    /// Builds the named provider `name` (`[providers.<name>]`, `kind = "bedrock"`): the AWS
    /// configuration for its region and profile (the default chain without one), loaded on first
    /// use, then as [`from_provider_sdk_config`](Self::from_provider_sdk_config). Fails when no
    /// region is found, naming the provider, or when its API key cannot be read.
    pub async fn from_provider_config(
        name: &str,
        settings: &BedrockProviderConfig,
        config: &Config,
    ) -> Result<Self, GatewayError> {
        let region = match &settings.region {
            Some(region) => Some(aws_config::Region::new(region.clone())),
            None => {
                let mut profile = aws_config::profile::ProfileFileRegionProvider::builder();
                if let Some(p) = &settings.profile {
                    profile = profile.profile_name(p);
                }
                aws_config::meta::region::RegionProviderChain::first_try(
                    aws_config::environment::region::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(profile.build())
                .region()
                .await
            }
        };
        let Some(region) = region else {
            return Err(GatewayError::internal(format!(
                "configuration error in `providers.{name}.region`: no region (set it, or use a profile that has one)"
            )));
        };
        let key = settings.api_key().read_for(name)?;
        let retry = retry_settings(settings.profile.as_deref()).await?;
        let name_of_region = region.to_string();
        let load = later(region, retry, settings.clone());
        Ok(Self::build(
            Sdk::Later(load),
            Some(name_of_region),
            config,
            &settings.timeouts.over(&config.timeouts),
            settings.endpoint_url.as_deref(),
            key.as_ref(),
        ))
    }

    /// Builds the named provider `name` over `sdk` (its region and base credentials): assumes the
    /// configured role through STS (with the external id and session name) when there is one,
    /// points the runtime client at the endpoint override, sends the Bedrock API key instead of
    /// SigV4 when one is configured, and applies the provider's connect timeout.
    pub async fn from_provider_sdk_config(
        name: &str,
        sdk: &SdkConfig,
        settings: &BedrockProviderConfig,
        config: &Config,
    ) -> Result<Self, GatewayError> {
        let key = settings.api_key().read_for(name)?;
        let sdk = with_role(sdk.clone(), settings).await;
        let region = sdk.region().map(|r| r.to_string());
        Ok(Self::build(
            Sdk::Loaded(Box::new(sdk)),
            region,
            config,
            &settings.timeouts.over(&config.timeouts),
            settings.endpoint_url.as_deref(),
            key.as_ref(),
        ))
    }

    /// The provider over `sdk` (see [`Clients`]), its primary region `region`.
    fn build(
        sdk: Sdk,
        region: Option<String>,
        config: &Config,
        timeouts: &Timeouts,
        endpoint_url: Option<&str>,
        api_key: Option<&Secret>,
    ) -> Self {
        let mut regions = std::collections::BTreeSet::new();
        for arn in config.bedrock.arn_families.keys() {
            if let Some(r) = arn_region(arn) {
                if Some(r) != region.as_deref() {
                    regions.insert(r.to_owned());
                }
            }
        }
        let (connect, endpoint_url) = (timeouts.connect, endpoint_url.map(str::to_owned));
        let clients = match sdk {
            Sdk::Later(load) => {
                Clients::new(load, regions, connect, endpoint_url, api_key.cloned())
            }
            Sdk::Loaded(sdk) => {
                Clients::built(*sdk, regions, connect, endpoint_url, api_key.cloned())
            }
        };
        BedrockProvider {
            inner: Arc::new(Inner {
                region,
                clients,
                claude: ClaudeRequestOptions {
                    default_max_tokens: config.bedrock.claude_default_max_tokens(),
                    cache: CacheSupport::ALL,
                    reasoning: config.reasoning.budget_tokens,
                },
                titan: TitanRequestOptions {
                    default_max_tokens: config.bedrock.titan_default_max_tokens(),
                },
                converse: ConverseOptions {
                    default_max_tokens: config.bedrock.converse_default_max_tokens(),
                    budgets: config.reasoning.budget_tokens,
                    s3_buckets: Arc::new(config.bedrock.s3_buckets.clone()),
                    ..ConverseOptions::default()
                },
                caching: config.prompt_caching.clone(),
                guardrails: config.guardrails.clone(),
                max_n: config.bedrock.max_n,
                embedding_concurrency: config.bedrock.embedding_concurrency as usize,
                // The configuration was validated; a TLS set-up failure leaves fetching off.
                fetcher: MediaFetcher::new(&config.media_fetch).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "media fetching is off: its client could not be built");
                    None
                }),
            }),
        }
    }

    /// The primary region.
    pub fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }

    /// Lists Bedrock text models and system inference profiles from the control plane.
    pub async fn list_models(&self) -> Result<Vec<crate::model::ModelObject>, GatewayError> {
        list_models_with(self.inner.clients.control().await).await
    }

    /// The runtime clients for `model`: its ARN's region's, else the primary region's.
    async fn client_for(&self, model: &str) -> Runtime {
        let region = model
            .starts_with("arn:")
            .then(|| arn_region(model))
            .flatten();
        self.inner.clients.runtime(region).await
    }

    /// Sends one routed chat call and answers once the reply, or the first stream event, has
    /// arrived.
    async fn chat(self, call: ChatCall) -> Result<ChatReply, GatewayError> {
        call.context.check_translatable()?;
        let Some(route) = &call.route else {
            return Err(GatewayError::internal(
                "a call without a route reached the Bedrock provider (the route names the model family)",
            ));
        };
        let ProviderKind::Bedrock(family) = route.kind else {
            return Err(GatewayError::internal(
                "a non-Bedrock route reached the Bedrock provider",
            ));
        };
        let model = &*route.upstream_model;
        if family.is_embedding() {
            return Err(GatewayError::unsupported(
                "model",
                format!(
                    "`{}` is an embedding model: call it through /v1/embeddings.",
                    call.request.model
                ),
            ));
        }
        let claude_family = family == BedrockFamily::Claude;
        let cache = capabilities::cache_support(model, claude_family);
        // Fetched media, automatic caching and structured outputs rewrite the request;
        // everything else reads the client's as is.
        let fetched = self.fetch(&call.request).await?;
        let base = fetched.as_ref().unwrap_or(&*call.request);
        let (rewritten, structured) = self.rewrite(base, family, model, cache)?;
        let req = rewritten.as_ref().unwrap_or(base);
        check_supported(req)?;
        let guardrail = guardrail::effective(req, model, &self.inner.guardrails)?;
        let (guardrail, stream) = (guardrail.as_ref(), req.is_stream());
        let rid = upstream_request_id(&call.context);
        let meta = ChunkMeta::new(req.model.clone());
        let client = &self.client_for(model).await;
        let reply = match family {
            BedrockFamily::Claude => {
                let opts = ClaudeRequestOptions {
                    cache,
                    ..self.inner.claude
                };
                let native = match &call.context.original {
                    // A native body goes as written, unless breakpoints must be dropped (a model
                    // without caching) or added (automatic caching): then it is re-encoded.
                    Some(o)
                        if o.format == InboundFormat::BedrockClaude
                            && rewritten.is_none()
                            && fetched.is_none()
                            && (cache == CacheSupport::ALL || !caching::has_cache_points(req)) =>
                    {
                        bedrock_claude::check_native(req, &opts)?;
                        Some(bedrock_claude::native_body(&o.json, &opts)?)
                    }
                    _ => None,
                };
                // Relayed when the client reads Claude and neither the request nor the reply is
                // rewritten (see the module docs: a guardrail's verdict keeps the codecs).
                let relay = native.is_some()
                    && structured.is_none()
                    && guardrail.is_none()
                    && relays(InboundFormat::BedrockClaude, call.context.target);
                let body = match native {
                    Some(body) => body,
                    None => bedrock_claude::encode_request_bytes(req, &opts)?,
                };
                match invoke(client, model, body, stream, rid, guardrail).await? {
                    Invoked::Stream(rx) if relay => {
                        first_relayed(
                            relay_stream(rx, ClaudeStreamRelay::new()),
                            InboundFormat::BedrockClaude,
                            &call.request.model,
                        )
                        .await
                    }
                    Invoked::Stream(rx) => {
                        first_then_rest(decode_stream(rx, ClaudeStreamDecoder::new(meta))).await
                    }
                    Invoked::Complete(bytes) => match relayed_complete(
                        relay,
                        InboundFormat::BedrockClaude,
                        &call.request.model,
                        bytes,
                        scan::claude_message_usage,
                    ) {
                        Ok(reply) => Ok(reply),
                        Err(bytes) => Ok(ChatReply::Complete(bedrock_claude::decode_response(
                            bytes.as_ref(),
                            &meta,
                        )?)),
                    },
                }
            }
            BedrockFamily::Titan => {
                let native = match &call.context.original {
                    Some(o) if o.format == InboundFormat::BedrockTitan => {
                        Some(bedrock_titan::native_body(&o.json)?)
                    }
                    _ => None,
                };
                let stops = bedrock_titan::unsupported_stops(req);
                // Likewise for Titan; stop sequences the gateway enforces cut the reply itself.
                let relay = native.is_some()
                    && rewritten.is_none()
                    && fetched.is_none()
                    && stops.is_empty()
                    && guardrail.is_none()
                    && relays(InboundFormat::BedrockTitan, call.context.target);
                let body = match native {
                    Some(body) => body,
                    None => bedrock_titan::encode_request_bytes(req, &self.inner.titan)?,
                };
                match invoke(client, model, body, stream, rid, guardrail).await? {
                    Invoked::Stream(rx) if relay => {
                        first_relayed(
                            relay_stream(rx, TitanStreamRelay::new()),
                            InboundFormat::BedrockTitan,
                            &call.request.model,
                        )
                        .await
                    }
                    Invoked::Stream(rx) => {
                        let stream = decode_stream(rx, TitanStreamDecoder::new(meta));
                        first_then_rest(stops::stop_at_sequences(stream, stops)).await
                    }
                    Invoked::Complete(bytes) => match relayed_complete(
                        relay,
                        InboundFormat::BedrockTitan,
                        &call.request.model,
                        bytes,
                        scan::titan_result_usage,
                    ) {
                        Ok(reply) => Ok(reply),
                        Err(bytes) => {
                            let mut response =
                                bedrock_titan::decode_response(bytes.as_ref(), &meta)?;
                            stops::truncate_complete(&mut response, &stops);
                            Ok(ChatReply::Complete(response))
                        }
                    },
                }
            }
            BedrockFamily::TitanEmbedding | BedrockFamily::CohereEmbedding => unreachable_family(),
            BedrockFamily::Converse => {
                let reasoning = capabilities::reasoning_style(model);
                let opts = ConverseOptions {
                    cache,
                    reasoning,
                    citations: reasoning == ReasoningStyle::ClaudeThinking,
                    ..self.inner.converse.clone()
                };
                let parts = converse::encode_request(req, &opts)?;
                match converse_call(client, model, parts, req.is_stream(), rid, guardrail).await? {
                    Conversed::Stream(events) => {
                        first_then_rest(decode_stream(events, ConverseStreamDecoder::new(meta)))
                            .await
                    }
                    Conversed::Complete(out) => {
                        Ok(ChatReply::Complete(converse::decode_response(&out, &meta)?))
                    }
                }
            }
        }?;
        match &structured {
            Some(s) => s.lift(reply),
            None => Ok(reply),
        }
    }

    /// The request with its `http(s)` media inlined, when the fetcher is on and it has any.
    async fn fetch(&self, req: &ChatRequest) -> Result<Option<ChatRequest>, GatewayError> {
        match &self.inner.fetcher {
            Some(fetcher) => fetcher.inline(req).await,
            None => Ok(None),
        }
    }

    /// The request as it is sent, when it differs from the client's: automatic cache breakpoints
    /// added, `response_format` lowered for a model without a JSON mode (and how to lift the
    /// reply back).
    fn rewrite(
        &self,
        req: &ChatRequest,
        family: BedrockFamily,
        model: &str,
        cache: CacheSupport,
    ) -> Result<(Option<ChatRequest>, Option<StructuredReply>), GatewayError> {
        let mut rewritten = None;
        if cache.any() && self.inner.caching.auto_for(&req.model, model) {
            let mut request = req.clone();
            if caching::add_automatic(&mut request) {
                rewritten = Some(request);
            }
        }
        if family == BedrockFamily::Titan {
            return Ok((rewritten, None)); // Titan's encoder refuses a JSON mode itself.
        }
        let current = rewritten.as_ref().unwrap_or(req);
        let claude = family == BedrockFamily::Claude
            || capabilities::reasoning_style(model) == ReasoningStyle::ClaudeThinking;
        // Claude cannot be forced to a tool, nor continue a prefill, while it thinks.
        let thinking =
            claude && reasoning::requested(current, &self.inner.claude.reasoning)?.is_some();
        let can = Lowering {
            force_tool: !thinking && (claude || capabilities::forces_tools(model)),
            prefill: claude && !thinking,
        };
        match structured::lower(current, can)? {
            Some((lowered, reply)) => Ok((Some(lowered), Some(reply))),
            None => Ok((rewritten, None)),
        }
    }
}

impl Service<ChatCall> for BedrockProvider {
    type Response = ChatReply;
    type Error = GatewayError;
    type Future = ProviderFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ChatCall) -> Self::Future {
        crate::provider::dispatch::SharedProvider::call_shared(self, call)
    }
}

impl crate::provider::dispatch::SharedProvider for BedrockProvider {
    fn call_shared(&self, call: ChatCall) -> ProviderFuture {
        let this = self.clone();
        match call.request.n.filter(|n| *n > 1) {
            None => Box::pin(this.chat(call)),
            // Bedrock answers with one choice: n calls, merged.
            Some(n) => Box::pin(async move {
                if n > this.inner.max_n {
                    return Err(GatewayError::unsupported(
                        "n",
                        format!(
                            "This gateway answers at most {} choices per request on Bedrock (bedrock.max_n).",
                            this.inner.max_n
                        ),
                    )
                    .with_code("unsupported_value"));
                }
                // Media is fetched once, not once per choice.
                let call = match this.fetch(&call.request).await? {
                    Some(fetched) => ChatCall {
                        request: Arc::new(fetched),
                        context: call.context,
                        route: call.route,
                    },
                    None => call,
                };
                fan_out::fan_out(n, call, |c| this.clone().chat(c)).await
            }),
        }
    }
}

impl Service<EmbeddingsCall> for BedrockProvider {
    type Response = EmbeddingsResponse;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<EmbeddingsResponse, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: EmbeddingsCall) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let family =
                match call.route.as_ref().map(|r| r.kind) {
                    Some(ProviderKind::Bedrock(family)) => family,
                    _ => return Err(GatewayError::internal(
                        "an embeddings call without a Bedrock route reached the Bedrock provider",
                    )),
                };
            if !family.is_embedding() {
                return Err(GatewayError::unsupported(
                    "model",
                    format!(
                        "`{}` is not an embedding model (Bedrock embeds with amazon.titan-embed-* and cohere.embed-*).",
                        call.request.model
                    ),
                ));
            }
            let client = this.client_for(call.upstream_model()).await;
            embeddings::embed(&client, family, &call, this.inner.embedding_concurrency).await
        })
    }
}

/// The chat path returns before it matches an embedding family.
fn unreachable_family() -> Result<ChatReply, GatewayError> {
    Err(GatewayError::internal(
        "an embedding family reached the chat path",
    ))
}

/// InvokeModel (or InvokeModelWithResponseStream) with a native `body`: the one call both
/// InvokeModel strategies (Claude, Titan) make. Sent by the gateway's own client when the
/// provider has one ([`invoke`]), else by the SDK's.
async fn invoke(
    client: &Runtime,
    model: &str,
    body: Vec<u8>,
    stream: bool,
    rid: Option<String>,
    guardrail: Option<&GuardrailConfig>,
) -> Result<Invoked, GatewayError> {
    if let Some(direct) = &client.direct {
        let call = direct::Invocation {
            model,
            body: Bytes::from(body),
            operation: direct::Operation::invoke(stream),
            request_id: rid.as_deref(),
            guardrail,
        };
        return direct.invoke(call).await;
    }
    let client = &client.sdk;
    // InvokeModel and its streaming twin take the same request; only the builder type differs.
    macro_rules! send_invoke {
        ($builder:expr) => {
            $builder
                .model_id(model)
                .content_type("application/json")
                .accept("application/json")
                .set_guardrail_identifier(guardrail.map(|g| g.guardrail_identifier.clone()))
                .set_guardrail_version(guardrail.map(|g| g.guardrail_version.clone()))
                .set_trace(guardrail.and_then(guardrail::invoke_trace))
                .body(Blob::new(body))
                .customize()
                .mutate_request(request_id_hook(rid))
                .send()
                .await
                .map_err(error::from_sdk)?
        };
    }
    Ok(if stream {
        let rx = send_invoke!(client.invoke_model_with_response_stream()).body;
        Invoked::Stream(Box::pin(stream::invoke_payloads(rx)))
    } else {
        Invoked::Complete(Bytes::from(
            send_invoke!(client.invoke_model()).body.into_inner(),
        ))
    })
}

/// Converse (or ConverseStream) with `parts`. Sent by the gateway's own client when the provider
/// has one and the guardrail asks for no trace (the codecs read a trace in the SDK's types, which
/// only the SDK's parser builds), else by the SDK's.
async fn converse_call(
    client: &Runtime,
    model: &str,
    parts: converse::ConverseRequest,
    stream: bool,
    rid: Option<String>,
    guardrail: Option<&GuardrailConfig>,
) -> Result<Conversed, GatewayError> {
    let traced = guardrail.is_some_and(guardrail::traced);
    if let Some(direct) = client.direct.as_ref().filter(|_| !traced) {
        let body = converse::wire::write_input(&parts, guardrail, stream)?;
        let call = direct::Invocation {
            model,
            body: Bytes::from(body),
            operation: direct::Operation::converse(stream),
            request_id: rid.as_deref(),
            guardrail: None,
        };
        return direct.converse(call).await;
    }
    // Converse and ConverseStream take the same request; only the builder type differs.
    macro_rules! send_converse {
        ($builder:expr, $guardrail:expr) => {
            $builder
                .model_id(model)
                .set_messages(Some(parts.messages))
                .set_system((!parts.system.is_empty()).then_some(parts.system))
                .set_inference_config(parts.inference_config)
                .set_tool_config(parts.tool_config)
                .set_additional_model_request_fields(parts.additional_model_request_fields)
                .set_guardrail_config($guardrail)
                .customize()
                .mutate_request(request_id_hook(rid))
                .send()
                .await
                .map_err(error::from_sdk)?
        };
    }
    Ok(if stream {
        let out = send_converse!(
            client.sdk.converse_stream(),
            guardrail.map(guardrail::converse_stream)
        );
        Conversed::Stream(Box::pin(stream::converse_events(out.stream)))
    } else {
        let out = send_converse!(client.sdk.converse(), guardrail.map(guardrail::converse));
        Conversed::Complete(Box::new(out))
    })
}

/// A complete InvokeModel reply relayed as its bytes, when `relay` and the byte scan `usage_of`
/// finds one well-formed object with its usage; else the bytes back, for the decoder (which names
/// what is wrong with a malformed body).
fn relayed_complete(
    relay: bool,
    format: InboundFormat,
    model: &str,
    bytes: Bytes,
    usage_of: fn(&[u8]) -> Result<Option<Usage>, scan::Malformed>,
) -> Result<ChatReply, Bytes> {
    if !relay {
        return Err(bytes);
    }
    match usage_of(bytes.as_ref()) {
        Ok(Some(usage)) => Ok(ChatReply::Relayed(RelayedReply::new(
            format,
            model,
            RelayedBody::Complete {
                body: bytes,
                usage: Some(usage),
            },
        ))),
        _ => Err(bytes),
    }
}

/// The call's request id as Bedrock's `x-request-id` carries it (text, when it is text).
fn upstream_request_id(context: &crate::model::CallContext) -> Option<String> {
    context
        .request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends the request id upstream too (`x-request-id`), so one id follows the call end to end.
fn request_id_hook(
    id: Option<String>,
) -> impl Fn(&mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) + Send + Sync + 'static
{
    move |req| {
        if let Some(id) = &id {
            req.headers_mut()
                .insert(crate::header_name::X_REQUEST_ID.clone(), id.clone());
        }
    }
}

/// Request features no Bedrock family serves: a clear 400 instead of a silent drop.
fn check_supported(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.extra.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(GatewayError::unsupported(
            "logprobs",
            "Bedrock models do not return log probabilities.",
        ));
    }
    if let Some(m) = req.extra.get("modalities").and_then(Value::as_array) {
        if m.iter().any(|v| v != "text") {
            return Err(GatewayError::unsupported(
                "modalities",
                "Bedrock text models only produce text output.",
            ));
        }
    }
    if req
        .extra
        .get("prompt_cache_key")
        .is_some_and(|k| !k.is_null())
    {
        return Err(GatewayError::unsupported(
            "prompt_cache_key",
            "Bedrock caches prompts at `cache_control` breakpoints, not by a cache key.",
        ));
    }
    if req.extra.get("audio").is_some_and(|a| !a.is_null()) {
        return Err(GatewayError::unsupported(
            "audio",
            "Audio output is not available on Bedrock text models.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_features_are_400() {
        let mut r = ChatRequest {
            n: Some(1),
            ..ChatRequest::default()
        };
        r.extra.insert("logprobs".into(), Value::Bool(true));
        assert_eq!(check_supported(&r).unwrap_err().param(), Some("logprobs"));
    }

    #[tokio::test]
    async fn a_call_without_a_bedrock_route_is_an_internal_error() {
        use tower::ServiceExt;
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let provider = BedrockProvider::from_sdk_config(&sdk, &Config::default());
        let request: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .unwrap();
        let err = provider
            .clone()
            .oneshot(ChatCall::new(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 500);
        assert!(
            err.message().contains("without a route"),
            "{}",
            err.message()
        );
        let openai_route = crate::route::Route::new("bedrock", ProviderKind::OpenAi, "x");
        let err = provider
            .oneshot(ChatCall::new(request).with_route(openai_route))
            .await
            .unwrap_err();
        assert_eq!(err.status(), 500);
    }

    #[tokio::test]
    async fn the_aws_configuration_is_loaded_on_the_first_call_not_at_start_up() {
        let mut config = Config::default();
        config.bedrock.region = Some("eu-central-1".into());
        let before = LOADS.get();
        let provider = BedrockProvider::from_config(&config)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(provider.region(), Some("eu-central-1"));
        assert_eq!(LOADS.get(), before, "nothing loaded at start-up");
        assert!(provider.inner.clients.loaded().is_none());
        let client = provider
            .client_for("anthropic.claude-3-haiku-20240307-v1:0")
            .await;
        assert_eq!(
            client.sdk.config().region().unwrap().as_ref(),
            "eu-central-1"
        );
        // aws-config's loaded configuration (its default chain, its SSO token provider) leaves
        // InvokeModel to the gateway's own client (unless this environment names a proxy).
        let proxied = direct::proxied(
            &hyper_util::client::proxy::matcher::Matcher::from_env(),
            "https://bedrock-runtime.eu-central-1.amazonaws.com",
        );
        assert_eq!(
            client.direct.is_some(),
            !proxied,
            "InvokeModel sent by the gateway"
        );
        assert_eq!(LOADS.get(), before + 1, "loaded by the first call");
        provider.client_for("amazon.titan-text-express-v1").await;
        assert_eq!(LOADS.get(), before + 1, "and only then");
        let sdk = provider
            .inner
            .clients
            .loaded()
            .expect("loaded by the first call");
        assert_eq!(sdk.region().unwrap().as_ref(), "eu-central-1");
    }

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/x"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("anthropic.claude"), None);
    }
}
