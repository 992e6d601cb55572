//! The Bedrock provider: `aws-sdk-bedrockruntime` with `aws-config`'s default chain.
//!
//! - **Client**: credentials from the default chain (environment, profile, SSO, web identity/IRSA,
//!   ECS task role, IMDS; they refresh by themselves), region from configuration /
//!   `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (and
//!   `AWS_ENDPOINT_URL_BEDROCK` for the control plane) honoured by aws-config, Bedrock API keys
//!   (`AWS_BEARER_TOKEN_BEDROCK`) picked up by the SDK. One client per region, built once at
//!   start-up: the configured region plus the region of every configured ARN.
//! - **Named providers** (`[providers.<name>]`, [`BedrockProviderConfig`]): any number of regions
//!   and accounts side by side, each with its region, credentials from the default chain or a
//!   named profile, optionally a role assumed through aws-config's STS provider (with an external
//!   id), an endpoint override, or a Bedrock API key read from a variable or a file, and its own
//!   connect timeout ([`BedrockProvider::from_provider_config`]).
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
//! - **Streams** answer once their first event has arrived (failures before it stay retryable);
//!   exception frames become in-band errors (the `stream` module).
//! - **Errors** map per PROTOCOLS.md §5.8 (the `error` module).

mod error;
mod models;
mod stops;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockruntime::types::ResponseStream;
use aws_sdk_bedrockruntime::Client;
use serde_json::Value;
use tower_service::Service;

use super::{first_then_rest, ProviderFuture};
use crate::config::{BedrockProviderConfig, Config, Secret, Timeouts};
use crate::error::GatewayError;
use crate::format::bedrock_claude::{self, ClaudeRequestOptions, ClaudeStreamDecoder};
use crate::format::bedrock_titan::{self, TitanRequestOptions, TitanStreamDecoder};
use crate::format::converse::{self, ConverseOptions, ConverseStreamDecoder};
use crate::format::InboundFormat;
use crate::model::{ChatCall, ChatReply, ChatRequest, ChunkMeta};
use crate::route::{BedrockFamily, ProviderKind};
use crate::stream::decode_stream;

pub use models::list_models_with;

/// The Bedrock upstream. Cheap to clone.
#[derive(Clone)]
pub struct BedrockProvider {
    inner: Arc<Inner>,
}

struct Inner {
    region: Option<String>,
    client: Client,
    regional: HashMap<String, Client>,
    control: aws_sdk_bedrock::Client,
    claude: ClaudeRequestOptions,
    titan: TitanRequestOptions,
    converse: ConverseOptions,
}

impl std::fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockProvider")
            .field("region", &self.inner.region)
            .field(
                "extra_regions",
                &self.inner.regional.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The region field of an ARN (`arn:aws:bedrock:<region>:…`).
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

impl BedrockProvider {
    /// Loads the AWS configuration (default chain) and builds the clients. `Ok(None)` when no
    /// region can be found: Bedrock is then reported as not configured.
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
        let loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
        let sdk = loader.load().await;
        Ok(Some(Self::from_sdk_config(&sdk, config)))
    }

    /// Builds the clients from an explicit SDK configuration (used by tests and embedders that
    /// load AWS configuration themselves). Retries and stalled-stream protection are turned off
    /// whatever `sdk` says.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &Config) -> Self {
        Self::build(sdk, config, &config.timeouts, None, None)
    }

    /// Builds the named provider `name` (`[providers.<name>]`, `kind = "bedrock"`): loads the AWS
    /// configuration for its region and profile (the default chain without one), then as
    /// [`from_provider_sdk_config`](Self::from_provider_sdk_config). Fails when no region is
    /// found, naming the provider.
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
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
        if let Some(p) = &settings.profile {
            // The profile's credentials (static, SSO, process, a role chain), not the default
            // chain's, which would take the environment's first.
            loader = loader.profile_name(p).credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(p)
                    .build(),
            );
        }
        let sdk = loader.load().await;
        Self::from_provider_sdk_config(name, &sdk, settings, config).await
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
        let sdk = match &settings.role_arn {
            Some(role) => {
                let mut base = sdk.clone();
                if base.time_source().is_none() {
                    base = base
                        .into_builder()
                        .time_source(aws_smithy_async::time::SystemTimeSource::new())
                        .build();
                }
                let mut assume =
                    aws_config::sts::AssumeRoleProvider::builder(role).configure(&base);
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
            None => sdk.clone(),
        };
        Ok(Self::build(
            &sdk,
            config,
            &settings.timeouts.over(&config.timeouts),
            settings.endpoint_url.as_deref(),
            key.as_ref(),
        ))
    }

    fn build(
        sdk: &SdkConfig,
        config: &Config,
        timeouts: &Timeouts,
        endpoint_url: Option<&str>,
        api_key: Option<&Secret>,
    ) -> Self {
        let runtime_config = |region: Option<&str>| {
            let mut b = aws_sdk_bedrockruntime::config::Builder::from(sdk)
                .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
                .stalled_stream_protection(
                    aws_sdk_bedrockruntime::config::StalledStreamProtectionConfig::disabled(),
                )
                .timeout_config(
                    aws_sdk_bedrockruntime::config::timeout::TimeoutConfig::builder()
                        .connect_timeout(timeouts.connect)
                        .build(),
                );
            if let Some(r) = region {
                b = b.region(aws_sdk_bedrockruntime::config::Region::new(r.to_owned()));
            }
            if let Some(url) = endpoint_url {
                b = b.endpoint_url(url);
            }
            if let Some(key) = api_key {
                b = b
                    .bearer_token(aws_sdk_bedrockruntime::config::Token::new(
                        key.expose(),
                        None,
                    ))
                    .auth_scheme_preference([
                        aws_smithy_runtime_api::client::auth::AuthSchemeId::from("httpBearerAuth"),
                    ]);
            }
            Client::from_conf(b.build())
        };
        let region = sdk.region().map(|r| r.to_string());
        let mut regional = HashMap::new();
        for arn in config.bedrock.arn_families.keys() {
            if let Some(r) = arn_region(arn) {
                if Some(r) != region.as_deref() && !regional.contains_key(r) {
                    regional.insert(r.to_owned(), runtime_config(Some(r)));
                }
            }
        }
        let control = aws_sdk_bedrock::Client::from_conf(
            aws_sdk_bedrock::config::Builder::from(sdk)
                .retry_config(
                    aws_sdk_bedrock::config::retry::RetryConfig::standard().with_max_attempts(2),
                )
                .build(),
        );
        BedrockProvider {
            inner: Arc::new(Inner {
                region,
                client: runtime_config(None),
                regional,
                control,
                claude: ClaudeRequestOptions {
                    default_max_tokens: config.bedrock.claude_default_max_tokens(),
                },
                titan: TitanRequestOptions {
                    default_max_tokens: config.bedrock.titan_default_max_tokens(),
                },
                converse: ConverseOptions {
                    default_max_tokens: config.bedrock.converse_default_max_tokens(),
                },
            }),
        }
    }

    /// The primary region.
    pub fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }

    /// Lists Bedrock text models and system inference profiles from the control plane.
    pub async fn list_models(
        &self,
    ) -> Result<Vec<crate::provider::openai::ModelObject>, GatewayError> {
        list_models_with(&self.inner.control).await
    }

    fn client_for(&self, model: &str) -> &Client {
        if model.starts_with("arn:") {
            if let Some(c) = arn_region(model).and_then(|r| self.inner.regional.get(r)) {
                return c;
            }
        }
        &self.inner.client
    }

    /// Sends one routed chat call and answers once the reply, or the first stream event, has
    /// arrived.
    async fn chat(self, call: ChatCall) -> Result<ChatReply, GatewayError> {
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
        let req = &*call.request;
        check_supported(req)?;
        let rid = call
            .context
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let meta = ChunkMeta::new(req.model.clone());
        let model = &*route.upstream_model;
        let client = self.client_for(model);
        match family {
            BedrockFamily::Claude => {
                let body = match &call.context.original {
                    Some(o) if o.format == InboundFormat::BedrockClaude => {
                        bedrock_claude::native_body(&o.json, &self.inner.claude)?
                    }
                    _ => bedrock_claude::encode_request_bytes(req, &self.inner.claude)?,
                };
                match invoke(client, model, body, req.is_stream(), rid).await? {
                    Invoked::Stream(rx) => {
                        first_then_rest(decode_stream(
                            stream::invoke_payloads(rx),
                            ClaudeStreamDecoder::new(meta),
                        ))
                        .await
                    }
                    Invoked::Complete(bytes) => Ok(ChatReply::Complete(
                        bedrock_claude::decode_response(bytes.as_ref(), &meta)?,
                    )),
                }
            }
            BedrockFamily::Titan => {
                let body = match &call.context.original {
                    Some(o) if o.format == InboundFormat::BedrockTitan => {
                        bedrock_titan::native_body(&o.json)?
                    }
                    _ => bedrock_titan::encode_request_bytes(req, &self.inner.titan)?,
                };
                let stops = bedrock_titan::unsupported_stops(req);
                match invoke(client, model, body, req.is_stream(), rid).await? {
                    Invoked::Stream(rx) => {
                        let stream = decode_stream(
                            stream::invoke_payloads(rx),
                            TitanStreamDecoder::new(meta),
                        );
                        first_then_rest(stops::stop_at_sequences(stream, stops)).await
                    }
                    Invoked::Complete(bytes) => {
                        let mut response = bedrock_titan::decode_response(bytes.as_ref(), &meta)?;
                        stops::truncate_complete(&mut response, &stops);
                        Ok(ChatReply::Complete(response))
                    }
                }
            }
            BedrockFamily::Converse => {
                let mut parts = converse::encode_request(req, &self.inner.converse)?;
                parts.additional_model_request_fields =
                    reasoning_fields(model, parts.additional_model_request_fields.take())?;
                // Converse and ConverseStream take the same request; only the builder type differs.
                macro_rules! send_converse {
                    ($builder:expr) => {
                        $builder
                            .model_id(model)
                            .set_messages(Some(parts.messages))
                            .set_system((!parts.system.is_empty()).then_some(parts.system))
                            .set_inference_config(parts.inference_config)
                            .set_tool_config(parts.tool_config)
                            .set_additional_model_request_fields(
                                parts.additional_model_request_fields,
                            )
                            .customize()
                            .mutate_request(request_id_hook(rid))
                            .send()
                            .await
                            .map_err(error::from_sdk)?
                    };
                }
                if req.is_stream() {
                    let out = send_converse!(client.converse_stream());
                    first_then_rest(decode_stream(
                        stream::converse_events(out.stream),
                        ConverseStreamDecoder::new(meta),
                    ))
                    .await
                } else {
                    let out = send_converse!(client.converse());
                    Ok(ChatReply::Complete(converse::decode_response(&out, &meta)?))
                }
            }
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
        Box::pin(self.clone().chat(call))
    }
}

/// What InvokeModel answered: the model-native JSON, or the event stream of
/// InvokeModelWithResponseStream. Built and matched once per call: boxing the receiver would
/// only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Invoked {
    Complete(Blob),
    Stream(EventReceiver<ResponseStream, ResponseStreamError>),
}

/// InvokeModel (or InvokeModelWithResponseStream) with a native `body`: the one call both
/// InvokeModel strategies (Claude, Titan) make.
async fn invoke(
    client: &Client,
    model: &str,
    body: Vec<u8>,
    stream: bool,
    rid: Option<String>,
) -> Result<Invoked, GatewayError> {
    // InvokeModel and its streaming twin take the same request; only the builder type differs.
    macro_rules! send_invoke {
        ($builder:expr) => {
            $builder
                .model_id(model)
                .content_type("application/json")
                .accept("application/json")
                .body(Blob::new(body))
                .customize()
                .mutate_request(request_id_hook(rid))
                .send()
                .await
                .map_err(error::from_sdk)?
        };
    }
    Ok(if stream {
        Invoked::Stream(send_invoke!(client.invoke_model_with_response_stream()).body)
    } else {
        Invoked::Complete(send_invoke!(client.invoke_model()).body)
    })
}

/// Sends the request id upstream too (`x-request-id`), so one id follows the call end to end.
fn request_id_hook(
    id: Option<String>,
) -> impl Fn(&mut aws_smithy_runtime_api::client::orchestrator::HttpRequest) + Send + Sync + 'static
{
    move |req| {
        if let Some(id) = &id {
            req.headers_mut().insert("x-request-id", id.clone());
        }
    }
}

/// Request features no Bedrock family serves: a clear 400 instead of a silent drop.
fn check_supported(req: &ChatRequest) -> Result<(), GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::unsupported(
            "n",
            "Bedrock models return one choice per request; `n` must be 1.",
        )
        .with_code("unsupported_value"));
    }
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
    if req.extra.get("audio").is_some_and(|a| !a.is_null()) {
        return Err(GatewayError::unsupported(
            "audio",
            "Audio output is not available on Bedrock text models.",
        ));
    }
    Ok(())
}

/// `reasoning_effort` in the spelling each Converse family takes: native for gpt-oss, Qwen and
/// DeepSeek, `reasoningConfig` for Nova 2; other families have no reasoning control (400).
fn reasoning_fields(
    model: &str,
    fields: Option<aws_smithy_types::Document>,
) -> Result<Option<aws_smithy_types::Document>, GatewayError> {
    let Some(doc) = fields else { return Ok(None) };
    let mut json = converse::document_to_json(&doc);
    let Some(effort) = json
        .as_object_mut()
        .and_then(|o| o.remove("reasoning_effort"))
    else {
        return Ok(Some(doc));
    };
    let id = model.rsplit('/').next().unwrap_or(model);
    let vendor_model = match id.split_once('.') {
        Some((geo, rest))
            if ["us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"].contains(&geo) =>
        {
            rest
        }
        _ => id,
    };
    let effort_str = effort.as_str().unwrap_or("medium");
    if let Some(obj) = json.as_object_mut() {
        if vendor_model.starts_with("openai.")
            || vendor_model.starts_with("qwen.")
            || vendor_model.starts_with("deepseek.")
        {
            obj.insert("reasoning_effort".into(), effort);
        } else if vendor_model.starts_with("amazon.nova-2") {
            if effort_str != "none" {
                let level = match effort_str {
                    "minimal" | "low" => "low",
                    "high" | "xhigh" | "max" => "high",
                    _ => "medium",
                };
                obj.insert(
                    "reasoningConfig".into(),
                    serde_json::json!({"type": "enabled", "maxReasoningEffort": level}),
                );
            }
        } else if effort_str != "none" {
            return Err(GatewayError::unsupported(
                "reasoning_effort",
                format!(
                    "The model `{}` has no reasoning-effort control on Bedrock.",
                    crate::error::scrub_aws_identifiers(model)
                ),
            ));
        }
    }
    let empty = json.as_object().is_some_and(|o| o.is_empty());
    Ok((!empty).then(|| converse::json_to_document(&json)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_effort_per_family() {
        let doc = |v: Value| Some(converse::json_to_document(&v));
        let out = reasoning_fields(
            "openai.gpt-oss-120b-1:0",
            doc(serde_json::json!({"reasoning_effort":"high"})),
        )
        .unwrap();
        assert_eq!(
            converse::document_to_json(&out.unwrap()),
            serde_json::json!({"reasoning_effort":"high"})
        );
        let out = reasoning_fields(
            "us.amazon.nova-2-lite-v1:0",
            doc(serde_json::json!({"reasoning_effort":"low","top_k":5})),
        )
        .unwrap();
        assert_eq!(
            converse::document_to_json(&out.unwrap()),
            serde_json::json!({"top_k":5,"reasoningConfig":{"type":"enabled","maxReasoningEffort":"low"}})
        );
        let e = reasoning_fields(
            "meta.llama3-1-70b-instruct-v1:0",
            doc(serde_json::json!({"reasoning_effort":"high"})),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("reasoning_effort"));
        assert!(reasoning_fields("meta.llama3", None).unwrap().is_none());
    }

    #[test]
    fn unsupported_features_are_400() {
        let mut r = ChatRequest {
            n: Some(2),
            ..ChatRequest::default()
        };
        assert_eq!(check_supported(&r).unwrap_err().param(), Some("n"));
        r.n = Some(1);
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

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/x"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("anthropic.claude"), None);
    }
}
