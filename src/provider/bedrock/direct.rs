//! Bedrock runtime calls sent by the gateway's own HTTP client: InvokeModel,
//! InvokeModelWithResponseStream, Converse and ConverseStream.
//!
//! **Why not the SDK's client here.** The SDK sends an operation through its orchestrator: per call
//! it rebuilds the operation's configuration from runtime plugins, runs its interceptors (the
//! user agent among them), resolves the endpoint and the identity through type-erased config
//! bags, and only then signs and sends. For a body the gateway has already encoded, that work is
//! most of the call: against the same local Bedrock fake (SigV4 checked), the gateway spent
//! 30–45 % less CPU per Claude or Titan request with this client than through the SDK's
//! (BENCHMARKS.md, "Where it stands (2026-12-07 08:20 to 09:02: a Bedrock request's own
//! client)"), and about as much less per Converse request once Converse went the same way. The
//! operations are plain: a `POST` of a JSON body to `/model/{modelId}/{operation}` ([`Operation`]):
//! the model's native body for InvokeModel, with what it accepts and up to three guardrail
//! headers; Converse's JSON, written and read by [`crate::format::converse::wire`], for Converse;
//! and the request id.
//!
//! **What stays the SDK's.** Everything it does well and the gateway does not re-implement:
//! credentials come from the SDK configuration's own provider (`aws-config`'s default chain, a
//! profile, an assumed role), the request is signed by `aws-sigv4` (the SDK's signer, its default
//! settings: the path encoded twice, the session token signed), the endpoint by the SDK's own
//! endpoint rules (region, FIPS, dual-stack, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, an override),
//! event-stream frames are read by `aws-smithy-eventstream`, and errors map through the same table
//! as the SDK's ([`super::error::from_code`]). TLS trusts the system's roots, as the SDK's client
//! does. A Bedrock API key (the provider's own, or `AWS_BEARER_TOKEN_BEDROCK` as the SDK takes it)
//! is sent as the SDK sends it, `Authorization: Bearer …`, with nothing signed.
//!
//! **When the SDK still sends** ([`Direct::new`] returns `None`): bearer tokens preferred with no
//! API key (the SDK's token provider, an SSO token, answers then), `AWS_BEARER_TOKEN_BEDROCK`
//! beside an embedder's own token provider or auth-scheme preference (the SDK weighs them), an
//! embedder's own HTTP client in the SDK configuration, a proxy for the endpoint (`HTTPS_PROXY`
//! and its kin, which the SDK's client honours and this one does not), or neither an API key nor
//! a credentials provider. A Converse call whose guardrail asks for its trace goes through the SDK
//! too (the codecs read a trace in the SDK's types, which only its parser builds), and so does the
//! control plane. Embeddings (Titan, Cohere) are InvokeModel calls too ([`Invoker::embed`]).
//!
//! **What differs from the SDK.** Credentials are cached here ([`CredentialsCache`]: loaded again
//! 10 s before they expire, or after 15 minutes without an expiry, one load at a time, as the
//! SDK's lazy cache does), apart from the SDK client's own cache (for the calls it still sends).
//! The connect timeout bounds the TCP connect, shared among the addresses a name resolves to (the
//! SDK's bounded the name lookup and the TLS handshake too; here the gateway's own first-byte and
//! total timeouts bound them). A clock off from Bedrock's is corrected as the SDK corrects it,
//! but learnt from a clock-skew refusal only, not from every reply's `Date` ([`Invoker::send`]).

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_bedrockruntime::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::ConverseStreamOutput;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::Message;
use aws_types::service_config::ServiceConfigKey;
use aws_types::SdkConfig;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::error::from_code;
use crate::error::GatewayError;
use crate::format::converse::wire;
use crate::model::GuardrailConfig;
use crate::provider::{read_reply, Quiet};

/// The SDK's label encoding of `{modelId}`: everything but the unreserved characters
/// (an ARN's `:` and `/` become `%3A` and `%2F`).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest error body read (its message is all the gateway keeps).
const MAX_ERROR: usize = 64 * 1024;
/// How long credentials may take to load before the call fails: a safety net past the providers'
/// own timeouts and retries (the SDK's lazy cache derives about 22 s from its default retry and
/// connect settings).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Credentials this close to their expiry are loaded again, as the SDK's lazy cache does.
const REFRESH_BEFORE: Duration = Duration::from_secs(10);
/// How long credentials without an expiry are kept before they are loaded again (the SDK's lazy
/// cache's default), so a rotating provider that names no expiry is still asked again.
const KEEP_WITHOUT_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// The error codes of a refusal that may be a clock-skew one (the SDK's list).
const CLOCK_SKEW_CODES: &[&str] = &[
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "RequestTimeTooSkewed",
    "AccessDeniedException",
];
/// Below this difference between the clocks a refusal is what it says, not a skew (the SDK's
/// threshold; AWS refuses a signature more than five minutes off).
const SKEW_THRESHOLD: Duration = Duration::from_secs(4 * 60);
/// A reply whose round trip took longer says too little of when its `Date` was written (the SDK's
/// limit).
const MAX_TRUSTED_ROUND_TRIP: Duration = Duration::from_secs(15 * 60);
/// The largest event-stream frame read (the format's own limit): a longer one the upstream
/// announces is a protocol error, not a buffer that grows with it.
const MAX_FRAME: usize = 16 * 1024 * 1024;

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static BEDROCK_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-bedrock-accept");
static GUARDRAIL_ID: HeaderName = HeaderName::from_static("x-amzn-bedrock-guardrailidentifier");
static GUARDRAIL_VERSION: HeaderName = HeaderName::from_static("x-amzn-bedrock-guardrailversion");
static TRACE: HeaderName = HeaderName::from_static("x-amzn-bedrock-trace");
static ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
static INPUT_TOKENS: HeaderName = HeaderName::from_static("x-amzn-bedrock-input-token-count");

type HttpClient = Client<HttpsConnector<Quiet<HttpConnector>>, Full<Bytes>>;

/// The payloads of an InvokeModelWithResponseStream reply's `chunk` events, as the SDK path's
/// [`invoke_payloads`](super::stream::invoke_payloads) gives them.
pub(super) type Payloads =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, GatewayError>> + Send + 'static>>;

/// What InvokeModel answered: the model's JSON, or its stream's payloads.
pub(super) enum Invoked {
    Complete(Bytes),
    Stream(Payloads),
}

/// Credentials loaded from the SDK configuration's provider, kept until [`REFRESH_BEFORE`] their
/// expiry (credentials without one for [`KEEP_WITHOUT_EXPIRY`]), as the SDK's lazy cache keeps
/// them. One load at a time: callers arriving during a load wait for it and take its result.
pub(super) struct CredentialsCache {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Loaded>>,
    loading: tokio::sync::Mutex<()>,
    /// The configuration's clock, when it has one (as the SDK's cache reads it).
    clock: Option<SharedTimeSource>,
}

/// One load's credentials, when they are to be loaded again, and which load it was.
#[derive(Clone)]
struct Loaded {
    identity: Identity,
    refresh_at: SystemTime,
    load: u64,
}

impl CredentialsCache {
    pub(super) fn new(
        provider: SharedCredentialsProvider,
        clock: Option<SharedTimeSource>,
    ) -> Arc<Self> {
        Arc::new(CredentialsCache {
            provider,
            current: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            clock,
        })
    }

    fn now(&self) -> SystemTime {
        now(self.clock.as_ref())
    }

    fn current(&self) -> Option<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Valid credentials, loaded when none are cached or they are about to expire.
    pub(super) async fn identity(&self) -> Result<Identity, GatewayError> {
        let before = self.current();
        if let Some(c) = &before {
            if self.now() < c.refresh_at {
                return Ok(c.identity.clone());
            }
        }
        let seen = before.map_or(0, |c| c.load);
        let _one_load = self.loading.lock().await;
        match self.current() {
            // Loaded while this call waited: that load's result is this call's too, while it
            // has not expired.
            Some(c)
                if c.load != seen && c.identity.expiration().is_none_or(|at| self.now() < at) =>
            {
                return Ok(c.identity)
            }
            _ => {}
        }
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, self.provider.provide_credentials()).await;
        let credentials = match loaded {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(e)) => {
                tracing::error!(error = %crate::error::error_chain(&e), "no usable AWS credentials for Bedrock");
                return Err(no_credentials());
            }
            // (The SDK's cache would ask the provider for its last credentials here, but through
            // the configuration's `SharedCredentialsProvider`, which has none to give.)
            Err(_) => {
                tracing::error!(
                    "loading AWS credentials for Bedrock took more than {LOAD_TIMEOUT:?}"
                );
                return Err(no_credentials());
            }
        };
        let expiry = credentials.expiry();
        let refresh_at = match expiry {
            Some(at) => at.checked_sub(REFRESH_BEFORE).unwrap_or(at),
            None => self.now() + KEEP_WITHOUT_EXPIRY,
        };
        let identity = Identity::new(credentials, expiry);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Loaded {
            identity: identity.clone(),
            refresh_at,
            load: seen.wrapping_add(1).max(1),
        });
        Ok(identity)
    }
}

/// The configuration's clock, else the system's (as the SDK reads time).
fn now(clock: Option<&SharedTimeSource>) -> SystemTime {
    clock.map_or_else(SystemTime::now, |c| c.now())
}

fn no_credentials() -> GatewayError {
    GatewayError::upstream_auth(
        "The gateway has no usable AWS credentials for Bedrock (see the gateway's logs).",
    )
}

/// Where one region's runtime calls go and how they are authorized: made once per region, and an
/// [`Invoker`] from it per serving thread.
pub(super) struct Direct {
    target: Arc<Target>,
    connector: HttpsConnector<Quiet<HttpConnector>>,
}

struct Target {
    /// The endpoint, without a trailing `/`.
    base: String,
    region: String,
    auth: Auth,
    /// The configuration's clock, when it has one (signing reads it, as the SDK's signer does).
    clock: Option<SharedTimeSource>,
    /// Bedrock's clock less this host's, in milliseconds, as a clock-skew refusal showed it
    /// (see [`Invoker::send`]); signing adds it to the clock. [`HOST_SKEW_MS`], but for tests.
    skew_ms: &'static AtomicI64,
}

/// Bedrock's clock less this host's, in milliseconds: one for the process, as the host's clock is
/// one for every region and account (a model group's deployments learn it once).
static HOST_SKEW_MS: AtomicI64 = AtomicI64::new(0);

impl Target {
    /// The clock, without the skew.
    fn now(&self) -> SystemTime {
        now(self.clock.as_ref())
    }

    /// The time to sign with: the clock shifted by the skew learnt.
    fn signing_time(&self) -> SystemTime {
        let skew = self.skew_ms.load(Ordering::Relaxed);
        let shift = Duration::from_millis(skew.unsigned_abs());
        if skew >= 0 {
            self.now().checked_add(shift)
        } else {
            self.now().checked_sub(shift)
        }
        .unwrap_or_else(|| self.now())
    }
}

/// How a call is authorized.
enum Auth {
    /// SigV4, with credentials from the configuration's provider.
    SigV4(Arc<CredentialsCache>),
    /// A Bedrock API key: `Authorization: Bearer …` (the SDK's `httpBearerAuth`), nothing signed.
    Bearer(HeaderValue),
}

impl Direct {
    /// The direct client for `region` (else the configuration's) over `sdk`, or `None` when the
    /// SDK must send (see the module docs): `api_key` is the provider's Bedrock API key (the
    /// provider's SDK client is configured to prefer it too),
    /// `endpoint_url` its endpoint override, `connect` its connect timeout, `proxies` the proxy
    /// settings of the environment (`Matcher::from_env`, as the SDK's client reads them).
    pub(super) fn new(
        sdk: &SdkConfig,
        region: Option<&str>,
        endpoint_url: Option<&str>,
        api_key: Option<&str>,
        connect: Duration,
        credentials: Option<&Arc<CredentialsCache>>,
        proxies: &Matcher,
    ) -> Option<Direct> {
        if sdk.http_client().is_some() {
            return None;
        }
        let auth = match bearer_token(sdk, api_key)? {
            Some(key) => match HeaderValue::from_str(&format!("Bearer {key}")) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    Auth::Bearer(value)
                }
                Err(_) => {
                    tracing::warn!("the Bedrock API key is not a valid header value: Bedrock calls go through the AWS SDK");
                    return None;
                }
            },
            None => Auth::SigV4(credentials?.clone()),
        };
        let region = region
            .map(str::to_owned)
            .or_else(|| sdk.region().map(|r| r.to_string()))?;
        let base = match endpoint(sdk, &region, endpoint_url) {
            Ok(base) => base,
            Err(e) => {
                // The SDK reports the same rules' error on each call; leave it to do so.
                tracing::warn!(error = %e, "no Bedrock endpoint resolved: Bedrock calls go through the AWS SDK");
                return None;
            }
        };
        if proxied(proxies, &base) {
            tracing::info!("a proxy applies to the Bedrock endpoint (HTTPS_PROXY, …): Bedrock calls go through the AWS SDK, whose client uses it");
            return None;
        }
        let http = crate::provider::tcp_connector(connect);
        let connector = match crate::provider::https_connector_native(http) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Bedrock calls go through the AWS SDK");
                return None;
            }
        };
        Some(Direct {
            target: Arc::new(Target {
                base,
                region,
                auth,
                clock: sdk.time_source(),
                skew_ms: &HOST_SKEW_MS,
            }),
            connector,
        })
    }

    /// A client with a connection pool of its own (one per serving thread, as the SDK clients).
    pub(super) fn invoker(&self) -> Invoker {
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(self.connector.clone());
        Invoker {
            http,
            target: self.target.clone(),
        }
    }
}

/// The Bedrock API key the SDK's client would send as its bearer token (`Some(None)`: none, it
/// signs with SigV4), or `None` when the SDK must choose: the provider's own key (its SDK client
/// is configured with it and prefers it); else `AWS_BEARER_TOKEN_BEDROCK`, as the SDK takes it,
/// unless the embedder's configuration names its own token provider or auth-scheme preference
/// (the SDK then weighs them); else, with bearer tokens preferred, the SDK's token provider (an
/// SSO token, which this client does not load).
fn bearer_token<'a>(sdk: &SdkConfig, api_key: Option<&'a str>) -> Option<Option<Cow<'a, str>>> {
    if let Some(key) = api_key {
        return Some(Some(Cow::Borrowed(key)));
    }
    match service_setting(sdk, "bedrock", "AWS_BEARER_TOKEN", "") {
        Some(_)
            if sdk.get_origin("token_provider").is_client_config()
                || sdk.get_origin("auth_scheme_preference").is_client_config() =>
        {
            None
        }
        Some(token) => Some(Some(Cow::Owned(token))),
        None if prefers_bearer(sdk) => None,
        None => Some(None),
    }
}

/// Whether the configuration's auth-scheme preference (`AWS_AUTH_SCHEME_PREFERENCE`, the
/// profile's `auth_scheme_preference`) puts bearer tokens before SigV4. (aws-config gives every
/// loaded configuration a token provider, for SSO tokens; the SDK signs with SigV4 unless told to
/// prefer a token.)
fn prefers_bearer(sdk: &SdkConfig) -> bool {
    sdk.auth_scheme_preference()
        .cloned()
        .into_iter()
        .flatten()
        .find(|id| matches!(id.inner(), "sigv4" | "httpBearerAuth"))
        .is_some_and(|id| id.inner() == "httpBearerAuth")
}

/// Whether the proxy settings `matcher` holds (the SDK's client reads the same `HTTP_PROXY`,
/// `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`) send requests to `base` through a proxy: the
/// gateway's client does not speak to proxies, so the SDK's sends then.
pub(super) fn proxied(matcher: &Matcher, base: &str) -> bool {
    base.parse::<http::Uri>()
        .is_ok_and(|uri| matcher.intercept(&uri).is_some())
}

/// `AWS_ENDPOINT_URL`-style service settings (environment, profile) as the SDK reads them.
fn service_setting(sdk: &SdkConfig, service: &str, env: &str, profile: &str) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id(service)
        .env(env)
        .profile(profile)
        .build()
        .ok()?;
    sdk.service_config()?.load_config(key)
}

/// The endpoint as the SDK resolves it: the provider's override, else a client-set endpoint,
/// else `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (or the profile's), else the shared endpoint URL, run
/// through the SDK's endpoint rules with the region, FIPS and dual-stack settings.
fn endpoint(sdk: &SdkConfig, region: &str, over: Option<&str>) -> Result<String, String> {
    let url = match over {
        Some(url) => Some(url.to_owned()),
        None if sdk.get_origin("endpoint_url").is_client_config() => {
            sdk.endpoint_url().map(str::to_owned)
        }
        None => service_setting(sdk, "Bedrock Runtime", "AWS_ENDPOINT_URL", "endpoint_url")
            .or_else(|| sdk.endpoint_url().map(str::to_owned)),
    };
    let params = Params::builder()
        .region(region)
        .set_use_fips(sdk.use_fips())
        .set_use_dual_stack(sdk.use_dual_stack())
        .set_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = DefaultResolver::new();
    let resolved = resolver
        .resolve_endpoint(&params)
        .now_or_never()
        .ok_or("the endpoint rules did not answer at once")?
        .map_err(|e| e.to_string())?;
    let base = resolved.url().trim_end_matches('/').to_owned();
    base.parse::<http::Uri>().map_err(|e| e.to_string())?;
    Ok(base)
}

/// One serving thread's Bedrock runtime client. Cheap to clone.
#[derive(Clone)]
pub(super) struct Invoker {
    http: HttpClient,
    target: Arc<Target>,
}

/// A Bedrock runtime operation the gateway's client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    InvokeModel,
    InvokeModelWithResponseStream,
    Converse,
    ConverseStream,
}

impl Operation {
    /// InvokeModel, or its streaming twin.
    pub(super) fn invoke(stream: bool) -> Self {
        if stream {
            Operation::InvokeModelWithResponseStream
        } else {
            Operation::InvokeModel
        }
    }

    /// Converse, or ConverseStream.
    pub(super) fn converse(stream: bool) -> Self {
        if stream {
            Operation::ConverseStream
        } else {
            Operation::Converse
        }
    }

    /// The last segment of the operation's path, `/model/{modelId}/…`.
    fn path(self) -> &'static str {
        match self {
            Operation::InvokeModel => "invoke",
            Operation::InvokeModelWithResponseStream => "invoke-with-response-stream",
            Operation::Converse => "converse",
            Operation::ConverseStream => "converse-stream",
        }
    }

    /// Whether the reply is an event stream.
    fn streams(self) -> bool {
        matches!(
            self,
            Operation::InvokeModelWithResponseStream | Operation::ConverseStream
        )
    }
}

/// One call: the model, its body (the model's native JSON for InvokeModel, Converse's JSON), and
/// the headers that vary.
pub(super) struct Invocation<'a> {
    pub(super) model: &'a str,
    pub(super) body: Bytes,
    pub(super) operation: Operation,
    /// Sent as `x-request-id`.
    pub(super) request_id: Option<&'a str>,
    /// InvokeModel's guardrail headers (Converse takes its guardrail in the body).
    pub(super) guardrail: Option<&'a GuardrailConfig>,
}

/// What Converse answered: the reply, or its stream's events, in the SDK's types.
pub(super) enum Conversed {
    Complete(Box<ConverseOutput>),
    Stream(ConverseEvents),
}

/// A ConverseStream's events, as the SDK path's
/// [`converse_events`](super::stream::converse_events) gives them.
pub(super) type ConverseEvents = std::pin::Pin<
    Box<dyn Stream<Item = Result<ConverseStreamOutput, GatewayError>> + Send + 'static>,
>;

impl Invoker {
    /// InvokeModel, or InvokeModelWithResponseStream.
    pub(super) async fn invoke(&self, call: Invocation<'_>) -> Result<Invoked, GatewayError> {
        let stream = call.operation.streams();
        let body = self.send(call).await?.into_body();
        Ok(if stream {
            Invoked::Stream(Box::pin(frames(body, chunk_of)))
        } else {
            Invoked::Complete(read_reply(body, "Bedrock").await?)
        })
    }

    /// Converse, or ConverseStream: `call`'s body is the JSON
    /// [`wire::write_input`](crate::format::converse::wire::write_input) wrote.
    pub(super) async fn converse(&self, call: Invocation<'_>) -> Result<Conversed, GatewayError> {
        let stream = call.operation.streams();
        let body = self.send(call).await?.into_body();
        Ok(if stream {
            Conversed::Stream(Box::pin(frames(body, converse_event_of)))
        } else {
            let reply = read_reply(body, "Bedrock").await?;
            Conversed::Complete(Box::new(wire::read_output(&reply)?))
        })
    }

    /// One InvokeModel call of an embeddings request: the reply, and the input token count
    /// Bedrock put in its `X-Amzn-Bedrock-Input-Token-Count` header.
    pub(super) async fn embed(
        &self,
        model: &str,
        body: Bytes,
        request_id: Option<&str>,
    ) -> Result<(Bytes, Option<u64>), GatewayError> {
        let res = self
            .send(Invocation {
                model,
                body,
                operation: Operation::InvokeModel,
                request_id,
                guardrail: None,
            })
            .await?;
        let tokens = res
            .headers()
            .get(&INPUT_TOKENS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok((read_reply(res.into_body(), "Bedrock").await?, tokens))
    }

    /// Signs and sends; an error status becomes the mapped error.
    ///
    /// **Clock skew**, as the SDK corrects it: a refusal with a clock-skew code
    /// ([`CLOCK_SKEW_CODES`]) and a usable `Date` (no `Age`, a round trip under
    /// [`MAX_TRUSTED_ROUND_TRIP`]) records the difference of Bedrock's clock from this host's at
    /// the request's midpoint, which every later signature adds ([`HOST_SKEW_MS`]). When it differs
    /// by more than [`SKEW_THRESHOLD`] from the difference this call was signed with, the refusal
    /// was the clock's and is retryable, as the SDK classifies it: the gateway's retry layer sends
    /// the call again within its attempts. The SDK measures every reply's `Date`; here only such a
    /// refusal is read, so a success costs nothing, and a host clock corrected later (or a wrong
    /// `Date`) is measured again by the refusal it causes.
    async fn send(&self, call: Invocation<'_>) -> Result<http::Response<Incoming>, GatewayError> {
        let signed_with = self.target.skew_ms.load(Ordering::Relaxed);
        let req = self.signed(call).await?;
        let sent = self.target.now();
        let res = self.http.request(req).await.map_err(connect_error)?;
        if res.status().is_success() {
            return Ok(res);
        }
        let received = self.target.now();
        let date = match res.headers().contains_key(http::header::AGE) {
            true => None,
            false => res.headers().get(http::header::DATE).cloned(),
        };
        // Boxed: rare, and inline its state would size every call's future.
        let (e, code) = Box::pin(error_reply(res)).await;
        let measured = Some(())
            .filter(|()| matches!(self.target.auth, Auth::SigV4(_)))
            .filter(|()| code.is_some_and(|c| CLOCK_SKEW_CODES.contains(&c.as_str())))
            .and_then(|()| skew_of(date.as_ref()?, sent, received));
        let Some(skew) = measured else {
            return Err(e);
        };
        self.target.skew_ms.store(skew, Ordering::Relaxed);
        let off = Duration::from_millis(skew.abs_diff(signed_with));
        if off <= SKEW_THRESHOLD {
            return Err(e);
        }
        tracing::warn!(
            skew_ms = skew,
            "this host's clock is off from Bedrock's: signing with the difference"
        );
        Err(e.with_retryable(true))
    }

    /// The request, signed with SigV4 for `bedrock` in the target's region (or carrying the API
    /// key).
    async fn signed(&self, call: Invocation<'_>) -> Result<Request<Full<Bytes>>, GatewayError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let Invocation {
            model,
            body,
            operation,
            request_id,
            guardrail,
        } = call;
        if model.is_empty() {
            return Err(GatewayError::invalid_request("`model` is empty.").with_param("model"));
        }
        let uri = format!(
            "{}/model/{}/{}",
            self.target.base,
            percent_encoding::utf8_percent_encode(model, LABEL),
            operation.path()
        );
        let mut req = Request::post(uri.as_str())
            .body(Full::new(body.clone()))
            .map_err(|e| GatewayError::internal(format!("the Bedrock request: {e}")))?;
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, JSON.clone());
        match operation {
            Operation::InvokeModel => {
                headers.insert(ACCEPT, JSON.clone());
            }
            Operation::InvokeModelWithResponseStream => {
                headers.insert(&BEDROCK_ACCEPT, JSON.clone());
            }
            // The SDK sends Converse's without either.
            Operation::Converse | Operation::ConverseStream => {}
        }
        // Converse's guardrail is in its body.
        let invoke = matches!(
            operation,
            Operation::InvokeModel | Operation::InvokeModelWithResponseStream
        );
        if let Some(g) = guardrail.filter(|_| invoke) {
            headers.insert(
                &GUARDRAIL_ID,
                header_value("guardrailIdentifier", &g.guardrail_identifier)?,
            );
            headers.insert(
                &GUARDRAIL_VERSION,
                header_value("guardrailVersion", &g.guardrail_version)?,
            );
            if let Some(trace) = super::guardrail::invoke_trace(g) {
                headers.insert(&TRACE, header_value("trace", trace.as_str())?);
            }
        }
        if let Some(id) = request_id.and_then(|id| header_value("x-request-id", id).ok()) {
            headers.insert(crate::header_name::X_REQUEST_ID.clone(), id);
        }
        let identity = match &self.target.auth {
            Auth::Bearer(key) => {
                headers.insert(http::header::AUTHORIZATION, key.clone());
                return Ok(req);
            }
            Auth::SigV4(credentials) => credentials.identity().await?,
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.target.region)
            .name("bedrock")
            .time(self.target.signing_time())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| GatewayError::internal(format!("SigV4 parameters: {e}")))?
            .into();
        // Every value above is visible ASCII (built from `&str`s a header accepts).
        let signable = SignableRequest::new(
            "POST",
            &uri,
            req.headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or_default())),
            SignableBody::Bytes(&body),
        )
        .and_then(|r| sign(r, &params))
        .map_err(|e| GatewayError::internal(format!("signing the Bedrock request: {e}")))?;
        signable.into_parts().0.apply_to_request_http1x(&mut req);
        Ok(req)
    }
}

/// Bedrock's clock less this host's, in milliseconds, from a reply's `Date` and when the request
/// was sent and its reply received (by this host's clock): `None` for a `Date` that cannot be read
/// or a round trip too long to trust.
fn skew_of(date: &HeaderValue, sent: SystemTime, received: SystemTime) -> Option<i64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let server = DateTime::from_str(date.to_str().ok()?, Format::HttpDate).ok()?;
    let server = SystemTime::try_from(server).ok()?;
    let round_trip = received.duration_since(sent).unwrap_or_default();
    if round_trip > MAX_TRUSTED_ROUND_TRIP {
        return None;
    }
    let midpoint = sent + round_trip / 2;
    Some(match server.duration_since(midpoint) {
        Ok(ahead) => i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_millis()).unwrap_or(i64::MAX),
    })
}

/// A guardrail setting as a header value: one a header cannot carry is the client's error, as the
/// SDK's request construction failed on it. Visible ASCII, spaces and tabs only: the signer reads
/// header values as text, and a byte it could not read would be signed as something other than
/// what is sent.
fn header_value(name: &'static str, value: &str) -> Result<HeaderValue, GatewayError> {
    let visible = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
        .ok_or_else(|| {
            GatewayError::invalid_request(format!("`{name}` is not a valid header value."))
                .with_param(name)
        })
}

/// A send that failed: the connect timeout as the SDK reported it (a timeout), else a failure to
/// reach Bedrock.
fn connect_error(e: hyper_util::client::legacy::Error) -> GatewayError {
    tracing::warn!(error = %crate::error::error_chain(&e), "failed to reach Bedrock");
    if e.is_connect() && timed_out(&e) {
        GatewayError::upstream_timeout("Bedrock did not answer in time.")
    } else {
        GatewayError::upstream_connect("Failed to reach Bedrock.")
    }
}

/// Whether an I/O timeout is among `e`'s causes (hyper-util's connect timeout is one: an
/// `io::Error` of kind `TimedOut` under its connect error).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = e.source();
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A Bedrock error reply as the SDK reads it (`aws-smithy-json`'s error parsing): the code from
/// `x-amzn-ErrorType`, else the body's `code`, else its `__type`, each cut before the first `:`
/// and after the first `#`; the message from the last of the body's `message`, `Message` and
/// `errorMessage`. With the code, for what the caller reads of it.
async fn error_reply<B>(res: http::Response<B>) -> (GatewayError, Option<String>)
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let status = res.status();
    let header_code = res
        .headers()
        .get(&ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = crate::body::to_bytes(Limited::new(res.into_body(), MAX_ERROR))
        .await
        .unwrap_or_default();
    let fields: ErrorFields = serde_json::from_slice(&body).unwrap_or_default();
    let code = header_code
        .as_deref()
        .or(fields.code.as_deref())
        .or(fields.kind.as_deref())
        .map(sanitize_code);
    let e = from_code(code, fields.message.as_deref());
    if e.status().is_server_error() {
        tracing::warn!(
            status = status.as_u16(),
            code = code.unwrap_or(""),
            "bedrock call failed"
        );
    }
    (e, code.map(str::to_owned))
}

/// `aws.protocoltests#FooError:http://…` → `FooError`, as the SDK cuts an error code
/// (`sanitize_error_code`).
fn sanitize_code(code: &str) -> &str {
    let code = code.split_once(':').map_or(code, |(before, _)| before);
    code.split_once('#').map_or(code, |(_, after)| after)
}

/// The members of an error body the SDK reads, in the body's order: a later message member
/// replaces an earlier one, as in the SDK's parser. Members that are not strings are skipped.
#[derive(Default)]
struct ErrorFields {
    code: Option<String>,
    kind: Option<String>,
    message: Option<String>,
}

impl<'de> Deserialize<'de> for ErrorFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = ErrorFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an error object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ErrorFields, A::Error> {
                let mut fields = ErrorFields::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: serde_json::Value = map.next_value()?;
                    let Some(text) = value.as_str() else { continue };
                    let slot = match &*key {
                        "code" => &mut fields.code,
                        "__type" => &mut fields.kind,
                        "message" | "Message" | "errorMessage" => &mut fields.message,
                        _ => continue,
                    };
                    *slot = Some(text.to_owned());
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Members)
    }
}

/// The items of an event-stream body, each event's read by `item_of` (`None`: skipped); an
/// exception or error frame the mapped error, then the end. Frames are decoded as soon as they
/// are whole, so what waits in the buffer is part of one frame and the last read; more than
/// [`MAX_FRAME`] of one frame's bytes is an error (the decoder itself has no limit: it would wait
/// for whatever length a prelude announced).
fn frames<B, T>(
    body: B,
    item_of: fn(&Message) -> Result<Option<T>, GatewayError>,
) -> impl Stream<Item = Result<T, GatewayError>> + Send
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
    T: Send + 'static,
{
    struct Reading<B> {
        body: B,
        buf: BytesMut,
        decoder: MessageFrameDecoder,
        /// Bytes of a frame not yet complete were read (the decoder keeps a prelude it has read
        /// out of `buf`, so `buf` alone cannot tell).
        in_frame: bool,
    }
    let start = Reading {
        body,
        buf: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        in_frame: false,
    };
    futures_util::stream::unfold(Some(start), move |reading| async move {
        let mut r = reading?;
        loop {
            match r.decoder.decode_frame(&mut r.buf) {
                Ok(DecodedFrame::Complete(message)) => {
                    r.in_frame = !r.buf.is_empty();
                    match item_of(&message) {
                        Ok(Some(item)) => return Some((Ok(item), Some(r))),
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), None)),
                    }
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    return Some((
                        Err(GatewayError::upstream_protocol(format!(
                            "Bedrock sent an invalid event-stream frame: {e}"
                        ))),
                        None,
                    ))
                }
            }
            match r.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        // `buf` holds part of one frame here: everything before it was decoded.
                        if r.buf.len() > MAX_FRAME {
                            return Some((
                                Err(GatewayError::upstream_protocol(
                                    "Bedrock sent an event-stream frame over 16 MiB.",
                                )),
                                None,
                            ));
                        }
                        r.in_frame |= !data.is_empty();
                        r.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the Bedrock stream broke");
                    return Some((
                        Err(GatewayError::upstream_connect("The Bedrock stream broke.")),
                        None,
                    ));
                }
                None if !r.in_frame => return None,
                None => {
                    return Some((
                        Err(GatewayError::upstream_protocol(
                            "Bedrock's event stream ended inside a frame.",
                        )),
                        None,
                    ))
                }
            }
        }
    })
}

/// An InvokeModelWithResponseStream frame's item: a `chunk` event's bytes, base64-decoded;
/// `None` for events of other kinds and chunks without bytes.
fn chunk_of(message: &Message) -> Result<Option<Bytes>, GatewayError> {
    /// A chunk's base64 text is read in place (it has no escapes to undo), not copied.
    #[derive(Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        bytes: Option<std::borrow::Cow<'a, str>>,
    }
    let Some(("chunk", payload)) = event_of(message)? else {
        return Ok(None);
    };
    let chunk: Chunk<'_> = serde_json::from_slice(payload).map_err(invalid_payload)?;
    let Some(b64) = chunk.bytes else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(|b| Some(Bytes::from(b)))
        .map_err(|e| {
            GatewayError::upstream_protocol(format!("Bedrock sent a chunk that is not base64: {e}"))
        })
}

/// A ConverseStream frame's item: its event in the SDK's type; `None` for kinds the codecs do not
/// read.
fn converse_event_of(message: &Message) -> Result<Option<ConverseStreamOutput>, GatewayError> {
    match event_of(message)? {
        Some((kind, payload)) => wire::read_event(kind, payload),
        None => Ok(None),
    }
}

/// An event frame's `:event-type` and payload; an exception or error frame as its mapped error.
fn event_of(message: &Message) -> Result<Option<(&str, &[u8])>, GatewayError> {
    let header = |name: &str| {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    };
    match header(":message-type") {
        Some("event") => Ok(header(":event-type").map(|kind| (kind, &message.payload()[..]))),
        Some("exception") => {
            #[derive(Deserialize)]
            struct Exception {
                #[serde(alias = "Message")]
                message: Option<String>,
            }
            let message = serde_json::from_slice::<Exception>(message.payload())
                .ok()
                .and_then(|p| p.message);
            Err(logged(from_code(
                header(":exception-type"),
                message.as_deref(),
            )))
        }
        Some("error") => Err(logged(from_code(
            header(":error-code"),
            header(":error-message"),
        ))),
        other => Err(GatewayError::upstream_protocol(format!(
            "Bedrock sent an event-stream message of type {other:?}"
        ))),
    }
}

fn invalid_payload(e: serde_json::Error) -> GatewayError {
    GatewayError::upstream_protocol(format!("Bedrock sent an invalid event payload: {e}"))
}

fn logged(e: GatewayError) -> GatewayError {
    if e.status().is_server_error() {
        tracing::warn!(status = e.status().as_u16(), message = %e.message(), "bedrock stream failed");
    }
    e
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_config::BehaviorVersion;
    use aws_credential_types::provider::future;
    use aws_credential_types::Credentials;
    use futures_util::StreamExt;
    use http_body_util::StreamBody;

    use super::*;

    const SECRET: &str = "test/secret";

    fn sdk(credentials: Option<Credentials>) -> SdkConfig {
        let mut b = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"));
        if let Some(c) = credentials {
            b = b.credentials_provider(SharedCredentialsProvider::new(c));
        }
        b.build()
    }

    fn call<'a>(
        model: &'a str,
        body: Bytes,
        operation: Operation,
        request_id: Option<&'a str>,
        guardrail: Option<&'a GuardrailConfig>,
    ) -> Invocation<'a> {
        Invocation {
            model,
            body,
            operation,
            request_id,
            guardrail,
        }
    }

    /// The direct client over `sdk`, with no proxy whatever the environment says.
    /// Its clock difference its own, not the process's.
    fn direct(sdk: &SdkConfig, endpoint: Option<&str>) -> Option<Direct> {
        let credentials = sdk
            .credentials_provider()
            .map(|p| CredentialsCache::new(p, sdk.time_source()));
        let mut direct = Direct::new(
            sdk,
            None,
            endpoint,
            None,
            Duration::from_secs(1),
            credentials.as_ref(),
            &Matcher::builder().build(),
        )?;
        Arc::get_mut(&mut direct.target)?.skew_ms = Box::leak(Box::new(AtomicI64::new(0)));
        Some(direct)
    }

    /// Service settings as aws-config reads them from the environment and profile: `values` by
    /// (service id, variable).
    #[derive(Debug)]
    struct Settings(Vec<(&'static str, &'static str, &'static str)>);

    impl aws_types::service_config::LoadServiceConfig for Settings {
        fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
            self.0
                .iter()
                .find(|(service, env, _)| *service == key.service_id() && *env == key.env())
                .map(|(_, _, value)| (*value).to_owned())
        }
    }

    /// An embedder's HTTP client (never called here).
    #[derive(Debug)]
    struct Embedded;

    impl aws_smithy_runtime_api::client::http::HttpClient for Embedded {
        fn http_connector(
            &self,
            _: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(Never)
        }
    }

    #[derive(Debug)]
    struct Never;

    impl aws_smithy_runtime_api::client::http::HttpConnector for Never {
        fn call(
            &self,
            _: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(std::future::pending())
        }
    }

    #[tokio::test]
    async fn requests_are_signed_and_addressed_as_the_sdk_sends_them() {
        let creds = Credentials::new("AKIDTEST", SECRET, Some("session".into()), None, "t");
        let invoker = direct(&sdk(Some(creds)), Some("http://127.0.0.1:9/base/"))
            .expect("static credentials: the gateway sends")
            .invoker();
        let guardrail = GuardrailConfig {
            guardrail_identifier: "gr-1".into(),
            guardrail_version: "DRAFT".into(),
            trace: Some("enabled".into()),
            stream_processing_mode: None,
        };
        let model = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        let body = Bytes::from_static(br#"{"messages":[]}"#);
        let req = invoker
            .signed(call(
                model,
                body.clone(),
                Operation::InvokeModelWithResponseStream,
                Some("req-7"),
                Some(&guardrail),
            ))
            .await
            .unwrap();
        assert_eq!(
            req.uri().to_string(),
            "http://127.0.0.1:9/base/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc/invoke-with-response-stream"
        );
        let h = req.headers();
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-amzn-bedrock-accept"], "application/json");
        assert!(
            h.get("accept").is_none(),
            "the stream asks through x-amzn-bedrock-accept"
        );
        assert_eq!(h["x-amzn-bedrock-guardrailidentifier"], "gr-1");
        assert_eq!(h["x-amzn-bedrock-guardrailversion"], "DRAFT");
        assert_eq!(h["x-amzn-bedrock-trace"], "ENABLED");
        assert_eq!(h["x-request-id"], "req-7");
        assert_eq!(h["x-amz-security-token"], "session");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.contains("Credential=AKIDTEST/"), "{auth}");
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        let (parts, _) = req.into_parts();
        crate::sigv4::verify(&parts, &body, SECRET).expect("a valid signature");
        assert!(crate::sigv4::verify(&parts, &body, "other").is_err());
        assert!(crate::sigv4::verify(&parts, b"{}", SECRET).is_err());

        let req = invoker
            .signed(call(
                "amazon.titan-text-express-v1",
                body.clone(),
                Operation::InvokeModel,
                None,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(
            req.uri().path(),
            "/base/model/amazon.titan-text-express-v1/invoke"
        );
        assert_eq!(req.headers()["accept"], "application/json");
        assert!(req
            .headers()
            .get("x-amzn-bedrock-guardrailidentifier")
            .is_none());

        // Converse and ConverseStream: their own paths, JSON in and out, no `accept` of either
        // kind (as the SDK sends them), and no guardrail headers (Converse's is in the body).
        for (operation, path) in [
            (Operation::Converse, "converse"),
            (Operation::ConverseStream, "converse-stream"),
        ] {
            let req = invoker
                .signed(call(
                    "meta.llama3-8b-instruct-v1:0",
                    body.clone(),
                    operation,
                    Some("req-8"),
                    Some(&guardrail),
                ))
                .await
                .unwrap();
            assert_eq!(
                req.uri().path(),
                format!("/base/model/meta.llama3-8b-instruct-v1%3A0/{path}")
            );
            let h = req.headers();
            assert_eq!(h["content-type"], "application/json");
            assert_eq!(h["x-request-id"], "req-8");
            for absent in [
                "accept",
                "x-amzn-bedrock-accept",
                "x-amzn-bedrock-guardrailidentifier",
                "x-amzn-bedrock-trace",
            ] {
                assert!(h.get(absent).is_none(), "{path}: {absent}");
            }
            let (parts, _) = req.into_parts();
            crate::sigv4::verify(&parts, &body, SECRET).expect("a valid signature");
        }

        // A value the signer could not read as text is refused before anything is signed.
        let odd = GuardrailConfig {
            guardrail_identifier: "gr-\u{e9}".into(),
            ..guardrail
        };
        let e = invoker
            .signed(call(
                "m",
                Bytes::new(),
                Operation::InvokeModel,
                None,
                Some(&odd),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some("guardrailIdentifier"))
        );
        let e = invoker
            .signed(call("", Bytes::new(), Operation::InvokeModel, None, None))
            .await
            .unwrap_err();
        assert_eq!((e.status().as_u16(), e.param()), (400, Some("model")));
    }

    #[tokio::test]
    async fn an_api_key_is_sent_as_a_bearer_token_and_nothing_is_signed() {
        let creds = Credentials::new("AKIDTEST", SECRET, Some("session".into()), None, "t");
        let with = sdk(Some(creds));
        let env_key = with
            .to_builder()
            .service_config(Settings(vec![("bedrock", "AWS_BEARER_TOKEN", "ABSK-env")]))
            .build();
        let none = Matcher::builder().build();
        let second = Duration::from_secs(1);
        for (sdk, key, expected) in [
            (&with, Some("ABSK-own"), "Bearer ABSK-own"),
            (&env_key, Some("ABSK-own"), "Bearer ABSK-own"),
            (&env_key, None, "Bearer ABSK-env"),
        ] {
            let invoker = Direct::new(
                sdk,
                None,
                Some("http://127.0.0.1:9"),
                key,
                second,
                None,
                &none,
            )
            .expect("a key: the gateway sends")
            .invoker();
            for operation in [Operation::InvokeModel, Operation::ConverseStream] {
                let req = invoker
                    .signed(call(
                        "m",
                        Bytes::from_static(b"{}"),
                        operation,
                        Some("r"),
                        None,
                    ))
                    .await
                    .unwrap();
                let h = req.headers();
                assert_eq!(h["authorization"], expected);
                assert!(
                    h["authorization"].is_sensitive(),
                    "kept out of debug output"
                );
                for unsigned in ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
                    assert!(h.get(unsigned).is_none(), "{unsigned}");
                }
                assert_eq!(h["x-request-id"], "r");
            }
        }
    }

    #[test]
    fn the_sdk_sends_what_the_gateway_does_not_sign() {
        let creds = Credentials::new("AKIDTEST", SECRET, None, None, "t");
        let with = sdk(Some(creds.clone()));
        let embedded = with.to_builder().http_client(Embedded).build();
        assert!(
            direct(&embedded, None).is_none(),
            "an embedder's HTTP client"
        );
        // AWS_BEARER_TOKEN_BEDROCK: the gateway sends it, unless the embedder's configuration
        // names its own token provider or auth-scheme preference (the SDK weighs those).
        let env_key = with
            .to_builder()
            .service_config(Settings(vec![("bedrock", "AWS_BEARER_TOKEN", "key")]))
            .build();
        use aws_smithy_runtime_api::client::auth::AuthSchemeId;
        let bearer = |sdk: &SdkConfig, key: Option<&str>| {
            let direct = Direct::new(
                sdk,
                None,
                None,
                key,
                Duration::from_secs(1),
                None,
                &Matcher::builder().build(),
            )?;
            match &direct.target.auth {
                Auth::Bearer(value) => Some(value.to_str().unwrap().to_owned()),
                Auth::SigV4(_) => None,
            }
        };
        assert_eq!(
            bearer(&env_key, None).as_deref(),
            Some("Bearer key"),
            "AWS_BEARER_TOKEN_BEDROCK"
        );
        // A preference from the environment or a profile (`AWS_AUTH_SCHEME_PREFERENCE=sigv4`):
        // the SDK replaces it with bearer when the variable is set, and so does the gateway.
        let sigv4_first = [
            AuthSchemeId::new("sigv4"),
            AuthSchemeId::new("httpBearerAuth"),
        ];
        for setting in ["token_provider", "auth_scheme_preference"] {
            let mut own = env_key
                .to_builder()
                .auth_scheme_preference(sigv4_first.clone());
            own.insert_origin(setting, aws_types::origin::Origin::shared_config());
            assert!(direct(&own.build(), None).is_none(), "{setting} of its own");
            let mut from_env = env_key
                .to_builder()
                .auth_scheme_preference(sigv4_first.clone());
            from_env.insert_origin(
                setting,
                aws_types::origin::Origin::shared_environment_variable(),
            );
            assert_eq!(
                bearer(&from_env.build(), None).as_deref(),
                Some("Bearer key"),
                "{setting} from the environment"
            );
        }
        // The provider's own key, whatever else is set.
        let bearer_first = env_key
            .to_builder()
            .auth_scheme_preference([AuthSchemeId::new("httpBearerAuth")])
            .build();
        assert_eq!(
            bearer(&bearer_first, Some("k")).as_deref(),
            Some("Bearer k")
        );
        let proxy = Matcher::builder()
            .https("http://proxy.internal:3128")
            .no("localhost")
            .build();
        assert!(proxied(
            &proxy,
            "https://bedrock-runtime.us-east-1.amazonaws.com"
        ));
        assert!(!proxied(&proxy, "https://localhost:4566"), "NO_PROXY");
        assert!(!proxied(
            &Matcher::builder().build(),
            "https://bedrock-runtime.us-east-1.amazonaws.com"
        ));
        let cache = with
            .credentials_provider()
            .map(|p| CredentialsCache::new(p, None));
        let (second, none) = (Duration::from_secs(1), Matcher::builder().build());
        assert!(
            Direct::new(&sdk(None), None, None, Some("k"), second, None, &none).is_some(),
            "an API key needs no credentials"
        );
        assert!(
            Direct::new(
                &with,
                None,
                None,
                Some("k\n"),
                second,
                cache.as_ref(),
                &none
            )
            .is_none(),
            "an API key a header cannot carry: the SDK reports it"
        );
        let proxies = Matcher::builder()
            .https("http://proxy.internal:3128")
            .build();
        assert!(
            Direct::new(&with, None, None, None, second, cache.as_ref(), &proxies).is_none(),
            "a proxy for the endpoint"
        );
        assert!(
            direct(&sdk(None), None).is_none(),
            "no credentials provider"
        );
        // aws-config gives every loaded configuration a token provider (for SSO): SigV4 still
        // signs unless bearer tokens are preferred.
        let token = with
            .to_builder()
            .token_provider(
                aws_credential_types::provider::token::SharedTokenProvider::new(
                    aws_credential_types::Token::new("t", None),
                ),
            )
            .build();
        assert!(direct(&token, None).is_some(), "a token provider alone");
        let prefers = |ids: &[&'static str]| {
            let ids: Vec<AuthSchemeId> = ids.iter().map(|i| AuthSchemeId::new(i)).collect();
            token.to_builder().auth_scheme_preference(ids).build()
        };
        assert!(
            direct(&prefers(&["httpBearerAuth", "sigv4"]), None).is_none(),
            "bearer preferred"
        );
        assert!(direct(&prefers(&["sigv4", "httpBearerAuth"]), None).is_some());
        assert!(
            direct(&prefers(&["sigv4a"]), None).is_some(),
            "neither named: SigV4"
        );
    }

    #[test]
    fn endpoints_follow_the_sdks_rules() {
        let creds = Credentials::new("AKIDTEST", SECRET, None, None, "t");
        let base = sdk(Some(creds));
        let resolved =
            |sdk: &SdkConfig, over: Option<&str>| endpoint(sdk, "us-west-2", over).unwrap();
        assert_eq!(
            resolved(&base, None),
            "https://bedrock-runtime.us-west-2.amazonaws.com"
        );
        let fips = base.to_builder().use_fips(true).build();
        assert_eq!(
            resolved(&fips, None),
            "https://bedrock-runtime-fips.us-west-2.amazonaws.com"
        );
        let dual = base.to_builder().use_dual_stack(true).build();
        assert_eq!(
            resolved(&dual, None),
            "https://bedrock-runtime.us-west-2.api.aws"
        );
        let configured = base
            .to_builder()
            .endpoint_url("http://localhost:4566/")
            .build();
        assert_eq!(resolved(&configured, None), "http://localhost:4566");
        // `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (or the profile's) before the shared endpoint URL.
        let service = configured
            .to_builder()
            .service_config(Settings(vec![(
                "Bedrock Runtime",
                "AWS_ENDPOINT_URL",
                "http://127.0.0.1:8555",
            )]))
            .build();
        assert_eq!(resolved(&service, None), "http://127.0.0.1:8555");
        assert_eq!(
            resolved(&configured, Some("https://vpce.example/x")),
            "https://vpce.example/x"
        );
        assert!(endpoint(&base, "us-west-2", Some("not a url")).is_err());
    }

    /// A body's frames, as a test hands them over.
    type Pieces = futures_util::stream::Iter<
        std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>,
    >;

    /// An event-stream body delivered in pieces of `size` bytes.
    fn pieces(wire: &[u8], size: usize) -> StreamBody<Pieces> {
        let frames: Vec<_> = wire
            .chunks(size)
            .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn chunk(out: &mut BytesMut, json: &str) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        crate::eventstream::write_event(
            out,
            "chunk",
            format!(r#"{{"bytes":"{b64}","p":"abc"}}"#).as_bytes(),
        );
    }

    async fn read(wire: &[u8], size: usize) -> Vec<Result<Bytes, GatewayError>> {
        frames(pieces(wire, size), chunk_of).collect().await
    }

    #[tokio::test]
    async fn chunk_payloads_come_out_whole_however_the_frames_are_split() {
        let mut wire = BytesMut::new();
        chunk(&mut wire, r#"{"type":"message_start"}"#);
        crate::eventstream::write_event(&mut wire, "newKind", b"{}");
        crate::eventstream::write_event(&mut wire, "chunk", b"{}");
        chunk(&mut wire, r#"{"type":"message_stop"}"#);
        for size in [1, 7, 64, wire.len()] {
            let got: Vec<Bytes> = read(&wire, size)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                got,
                [
                    &br#"{"type":"message_start"}"#[..],
                    br#"{"type":"message_stop"}"#
                ],
                "pieces of {size}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Whatever an upstream sends, in whatever pieces, the reader ends (the body does) without
        /// a panic, and an error is the last item it gives.
        #[test]
        fn any_bytes_in_any_pieces_end_the_stream_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            size in 1usize..64,
            after_a_frame in proptest::prelude::any::<bool>(),
        ) {
            let mut wire = BytesMut::new();
            if after_a_frame {
                chunk(&mut wire, "{}");
            }
            wire.extend_from_slice(&bytes);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = runtime.block_on(read(&wire, size));
            if let Some((_, before)) = got.split_last() {
                proptest::prop_assert!(before.iter().all(Result::is_ok), "{:?}", got);
            }
            proptest::prop_assert_eq!(
                after_a_frame,
                got.first().and_then(|first| first.as_ref().ok()).is_some_and(|b| b[..] == b"{}"[..])
            );
        }
    }

    #[tokio::test]
    async fn converse_stream_frames_are_its_events_until_an_exception() {
        let mut wire = BytesMut::new();
        crate::eventstream::write_event(
            &mut wire,
            "messageStart",
            br#"{"role":"assistant","p":"ab"}"#,
        );
        crate::eventstream::write_event(&mut wire, "aNewEvent", b"{}");
        crate::eventstream::write_event(
            &mut wire,
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        );
        crate::eventstream::write_exception(
            &mut wire,
            "modelStreamErrorException",
            "The model broke",
        );
        crate::eventstream::write_event(&mut wire, "messageStop", br#"{"stopReason":"end_turn"}"#);
        for size in [1, 9, wire.len()] {
            let got: Vec<_> = frames(pieces(&wire, size), converse_event_of)
                .collect()
                .await;
            assert_eq!(
                got.len(),
                3,
                "two events, the exception, nothing after it: {got:?}"
            );
            assert!(matches!(got[0], Ok(ConverseStreamOutput::MessageStart(_))));
            match &got[1] {
                Ok(ConverseStreamOutput::ContentBlockDelta(d)) => assert_eq!(
                    d.delta(),
                    Some(&aws_sdk_bedrockruntime::types::ContentBlockDelta::Text(
                        "Hi".into()
                    ))
                ),
                other => panic!("{other:?}"),
            }
            let e = got[2].as_ref().unwrap_err();
            assert_eq!(e.message(), "The model broke");
            assert!(e.status().is_server_error(), "{}", e.status());
        }
        let mut bad = BytesMut::new();
        crate::eventstream::write_event(&mut bad, "contentBlockDelta", b"{\"delta\":");
        let got: Vec<_> = frames(pieces(&bad, 4), converse_event_of).collect().await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].as_ref().unwrap_err().code(),
            Some("upstream_protocol_error")
        );
    }

    #[tokio::test]
    async fn exceptions_errors_and_broken_frames_end_the_stream_with_the_mapped_error() {
        let mut wire = BytesMut::new();
        chunk(&mut wire, "{}");
        crate::eventstream::write_exception(&mut wire, "throttlingException", "Too many requests");
        chunk(&mut wire, "{}");
        let got = read(&wire, 5).await;
        assert_eq!(got.len(), 2, "nothing after the exception");
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (429, Some("rate_limit_exceeded"))
        );
        assert_eq!(e.message(), "Too many requests");

        let mut error = BytesMut::new();
        let message = Message::new(Bytes::new())
            .add_header(aws_smithy_types::event_stream::Header::new(
                ":message-type",
                aws_smithy_types::event_stream::HeaderValue::String("error".into()),
            ))
            .add_header(aws_smithy_types::event_stream::Header::new(
                ":error-code",
                aws_smithy_types::event_stream::HeaderValue::String("ModelTimeoutException".into()),
            ))
            .add_header(aws_smithy_types::event_stream::Header::new(
                ":error-message",
                aws_smithy_types::event_stream::HeaderValue::String("slow".into()),
            ));
        let mut buf = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut buf).unwrap();
        error.extend_from_slice(&buf);
        let got = read(&error, 3).await;
        assert_eq!(got[0].as_ref().unwrap_err().status().as_u16(), 504);

        let mut cut = BytesMut::new();
        chunk(&mut cut, "{}");
        let got = read(&cut[..cut.len() - 1], 4).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].as_ref().unwrap_err().code(),
            Some("upstream_protocol_error")
        );

        // Cut just after the second frame's 12-byte prelude: the decoder holds the prelude.
        let mut two = BytesMut::new();
        chunk(&mut two, "{}");
        let first = two.len();
        chunk(&mut two, "{}");
        let got = read(&two[..first + 12], 4).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_ok());
        assert_eq!(
            got[1].as_ref().unwrap_err().code(),
            Some("upstream_protocol_error")
        );

        // A prelude announcing a 64 MiB frame: refused past 16 MiB, not buffered to the end.
        let mut huge = vec![0u8; 12];
        huge[..4].copy_from_slice(&(64u32 << 20).to_be_bytes());
        let crc = crc32fast::hash(&huge[..8]);
        huge[8..12].copy_from_slice(&crc.to_be_bytes());
        huge.resize(18 << 20, 0);
        let got = read(&huge, 1 << 20).await;
        assert_eq!(got.len(), 1);
        assert!(
            got[0].as_ref().unwrap_err().message().contains("16 MiB"),
            "{got:?}"
        );

        let mut garbled = BytesMut::new();
        crate::eventstream::write_event(&mut garbled, "chunk", br#"{"bytes":"not base64!"}"#);
        let got = read(&garbled, 100).await;
        assert!(got[0].as_ref().unwrap_err().message().contains("base64"));

        let mut corrupt = BytesMut::new();
        chunk(&mut corrupt, "{}");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let got = read(&corrupt, 100).await;
        assert!(
            got[0].as_ref().unwrap_err().message().contains("frame"),
            "{:?}",
            got[0]
        );
    }

    #[tokio::test]
    async fn error_replies_read_as_the_sdk_reads_them() {
        let reply = |code: Option<&str>, body: &str| {
            let mut b = http::Response::builder().status(400);
            if let Some(c) = code {
                b = b.header("x-amzn-errortype", c);
            }
            b.body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                .unwrap()
        };
        let (e, code) = error_reply(reply(
            Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            r#"{"message":"Input is too long for requested model."}"#,
        ))
        .await;
        assert_eq!(code.as_deref(), Some("ValidationException"));
        assert_eq!(
            (e.status().as_u16(), e.code()),
            (400, Some("context_length_exceeded"))
        );
        let e = error_reply(reply(
            None,
            r#"{"__type":"com.amazon.coral#ThrottlingException","message":"slow"}"#,
        ))
        .await
        .0;
        assert_eq!((e.status().as_u16(), e.message()), (429, "slow"));
        let e = error_reply(reply(
            Some("AccessDeniedException"),
            r#"{"Message":"no access"}"#,
        ))
        .await
        .0;
        assert_eq!((e.status().as_u16(), e.message()), (403, "no access"));
        // The body's `code` before its `__type`; `errorMessage`; both spellings of the message.
        let e = error_reply(reply(
            None,
            r#"{"code":"ThrottlingException","__type":"AccessDeniedException","errorMessage":"m"}"#,
        ))
        .await
        .0;
        assert_eq!((e.status().as_u16(), e.message()), (429, "m"));
        let (e, code) = error_reply(reply(
            None,
            r#"{"__type":"ns#ResourceNotFoundException:http://x","message":"a","Message":"b"}"#,
        ))
        .await;
        assert_eq!(code.as_deref(), Some("ResourceNotFoundException"));
        assert_eq!(
            (e.status().as_u16(), e.message()),
            (404, "b"),
            "the last one, as the SDK"
        );
        // The first `#` ends the namespace, as the SDK cuts it.
        assert_eq!(sanitize_code("a#b#C:http://x"), "b#C");
        let e = error_reply(reply(None, "<html>bad gateway</html>")).await.0;
        assert_eq!(
            e.status().as_u16(),
            502,
            "no code: Bedrock's internal error"
        );
    }

    /// A Bedrock whose clock runs `ahead` of this host's: it refuses a signature more than five
    /// minutes from its clock (or every call, with `refuse_all`) as Bedrock does, with its `Date`
    /// (and an `Age`, with `cached`); the calls it received are counted.
    async fn skewed_bedrock(
        ahead: Duration,
        refuse_all: bool,
        cached: bool,
    ) -> (String, Arc<AtomicUsize>) {
        use aws_smithy_types::date_time::{DateTime, Format};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    return;
                };
                let calls = counted.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let now = SystemTime::now() + ahead;
                    let signed = req
                        .headers()
                        .get("x-amz-date")
                        .and_then(|d| d.to_str().ok())
                        .and_then(crate::sigv4::parse_amz_date)
                        .and_then(|secs| u64::try_from(secs).ok())
                        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                    let off = signed.map_or(Duration::MAX, |t| match now.duration_since(t) {
                        Ok(d) => d,
                        Err(e) => e.duration(),
                    });
                    let mut res = if refuse_all || off > Duration::from_secs(300) {
                        http::Response::builder()
                            .status(403)
                            .header(
                                "x-amzn-errortype",
                                "InvalidSignatureException:http://internal.amazon.com/coral/",
                            )
                            .body(Full::new(Bytes::from_static(
                                br#"{"message":"Signature expired"}"#,
                            )))
                    } else {
                        http::Response::builder().body(Full::new(Bytes::from_static(b"{}")))
                    }
                    .unwrap();
                    let date = DateTime::from(now).fmt(Format::HttpDate).unwrap();
                    res.headers_mut()
                        .insert("date", HeaderValue::from_str(&date).unwrap());
                    if cached {
                        res.headers_mut()
                            .insert("age", HeaderValue::from_static("7"));
                    }
                    async move { Ok::<_, std::convert::Infallible>(res) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(io), service),
                );
            }
        });
        (url, calls)
    }

    #[tokio::test]
    async fn a_clock_off_from_bedrocks_is_corrected_as_the_sdk_corrects_it() {
        let creds = Credentials::new("AKIDTEST", SECRET, None, None, "t");
        let invoke = |invoker: &Invoker| {
            let invoker = invoker.clone();
            async move {
                let call = call(
                    "m",
                    Bytes::from_static(b"{}"),
                    Operation::InvokeModel,
                    None,
                    None,
                );
                invoker.invoke(call).await.map(|_| ())
            }
        };
        let an_hour = Duration::from_secs(3600);
        // Bedrock an hour ahead: the refusal's `Date` sets the difference and the refusal is
        // retryable; the next call signs with Bedrock's time.
        let (url, calls) = skewed_bedrock(an_hour, false, false).await;
        let invoker = direct(&sdk(Some(creds.clone())), Some(&url))
            .unwrap()
            .invoker();
        let e = invoke(&invoker).await.unwrap_err();
        assert_eq!(e.code(), Some("upstream_auth_error"));
        assert!(e.is_retryable(), "the retry layer sends it again");
        let skew = invoker.target.skew_ms.load(Ordering::SeqCst);
        assert!((3_590_000..=3_610_000).contains(&skew), "{skew}");
        invoke(&invoker).await.expect("signed with Bedrock's time");
        invoke(&invoker).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // This host's clock an hour ahead (Bedrock behind it), then set right (NTP): the
        // difference is learnt, then measured again from the refusal the old one causes.
        let offset = Arc::new(AtomicI64::new(3600));
        let (url, calls) = skewed_bedrock(Duration::ZERO, false, false).await;
        let shifted = sdk(Some(creds.clone()))
            .to_builder()
            .time_source(SharedTimeSource::new(Shifted(offset.clone())))
            .build();
        let invoker = direct(&shifted, Some(&url)).unwrap().invoker();
        assert!(invoke(&invoker).await.unwrap_err().is_retryable());
        let skew = invoker.target.skew_ms.load(Ordering::SeqCst);
        assert!((-3_610_000..=-3_590_000).contains(&skew), "{skew}");
        invoke(&invoker).await.expect("signed with Bedrock's time");
        offset.store(0, Ordering::SeqCst);
        assert!(invoke(&invoker).await.unwrap_err().is_retryable());
        let skew = invoker.target.skew_ms.load(Ordering::SeqCst);
        assert!(skew.abs() < 10_000, "measured again: {skew}");
        invoke(&invoker)
            .await
            .expect("signed with the host's own time again");
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        // A cached reply's `Date` says nothing of Bedrock's clock now: not read.
        let (url, _) = skewed_bedrock(an_hour, false, true).await;
        let invoker = direct(&sdk(Some(creds.clone())), Some(&url))
            .unwrap()
            .invoker();
        assert!(!invoke(&invoker).await.unwrap_err().is_retryable());
        assert_eq!(invoker.target.skew_ms.load(Ordering::SeqCst), 0);

        // The clocks agree: the refusal is what it says, not retryable; the difference measured
        // is the `Date`'s rounding.
        let (url, calls) = skewed_bedrock(Duration::ZERO, true, false).await;
        let invoker = direct(&sdk(Some(creds)), Some(&url)).unwrap().invoker();
        assert!(!invoke(&invoker).await.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let skew = invoker.target.skew_ms.load(Ordering::SeqCst);
        assert!(skew.abs() < 10_000, "{skew}");

        // An API key signs nothing: no time to correct.
        let (url, calls) = skewed_bedrock(an_hour, true, false).await;
        let none = Matcher::builder().build();
        let keyed = Direct::new(
            &sdk(None),
            None,
            Some(&url),
            Some("k"),
            Duration::from_secs(1),
            None,
            &none,
        )
        .unwrap()
        .invoker();
        assert!(!invoke(&keyed).await.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// A clock `.0` seconds ahead of the wall clock.
    #[derive(Debug)]
    struct Shifted(Arc<AtomicI64>);

    impl aws_smithy_async::time::TimeSource for Shifted {
        fn now(&self) -> SystemTime {
            let secs = self.0.load(Ordering::SeqCst);
            let shift = Duration::from_secs(secs.unsigned_abs());
            if secs >= 0 {
                SystemTime::now() + shift
            } else {
                SystemTime::now() - shift
            }
        }
    }

    /// Credentials that count their loads, valid for `lifetime` from each load.
    #[derive(Debug)]
    struct Counted {
        loads: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Counted {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(async move {
                self.loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                match self.lifetime {
                    Some(Duration::ZERO) => Err(
                        aws_credential_types::provider::error::CredentialsError::not_loaded(
                            "none here",
                        ),
                    ),
                    lifetime => Ok(Credentials::new(
                        "AKIDTEST",
                        SECRET,
                        None,
                        lifetime.map(|l| SystemTime::now() + l),
                        "counted",
                    )),
                }
            })
        }
    }

    fn counted(lifetime: Option<Duration>) -> (Arc<CredentialsCache>, Arc<AtomicUsize>) {
        let loads = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counted {
            loads: loads.clone(),
            lifetime,
        });
        (CredentialsCache::new(provider, None), loads)
    }

    #[tokio::test]
    async fn credentials_load_once_and_again_before_they_expire() {
        let (cache, loads) = counted(Some(Duration::from_secs(3600)));
        let (a, b) = tokio::join!(cache.identity(), cache.identity());
        a.unwrap();
        b.unwrap();
        cache.identity().await.unwrap();
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "callers together share one load"
        );

        let (cache, loads) = counted(None);
        cache.identity().await.unwrap();
        cache.identity().await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 1, "no expiry: kept a while");
        let kept = cache
            .current()
            .unwrap()
            .refresh_at
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(
            kept > Duration::from_secs(14 * 60) && kept <= KEEP_WITHOUT_EXPIRY,
            "{kept:?}"
        );

        let (cache, loads) = counted(Some(Duration::from_secs(5)));
        let (a, b) = tokio::join!(cache.identity(), cache.identity());
        a.unwrap();
        b.unwrap();
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "a waiter takes the load it waited for"
        );
        cache.identity().await.unwrap();
        assert_eq!(
            loads.load(Ordering::SeqCst),
            2,
            "within 10 s of expiry: loaded again"
        );

        // A failed load caches nothing: a caller that waited on it loads for itself.
        let (cache, loads) = counted(Some(Duration::ZERO));
        let (a, b) = tokio::join!(cache.identity(), cache.identity());
        assert_eq!(a.unwrap_err().code(), Some("upstream_auth_error"));
        assert_eq!(b.unwrap_err().code(), Some("upstream_auth_error"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_configurations_clock_signs_and_ages_the_credentials() {
        use aws_smithy_async::time::StaticTimeSource;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let creds = Credentials::new(
            "AKIDTEST",
            SECRET,
            None,
            Some(at + Duration::from_secs(60)),
            "t",
        );
        let config = sdk(Some(creds))
            .to_builder()
            .time_source(StaticTimeSource::new(at))
            .build();
        let invoker = direct(&config, Some("http://127.0.0.1:9"))
            .unwrap()
            .invoker();
        let req = invoker
            .signed(call("m", Bytes::new(), Operation::InvokeModel, None, None))
            .await
            .unwrap();
        assert_eq!(req.headers()["x-amz-date"], "20231114T221320Z");
        // By the configuration's clock these credentials have a minute left (by the wall clock
        // they expired long ago): kept, not loaded again.
        invoker
            .signed(call("m", Bytes::new(), Operation::InvokeModel, None, None))
            .await
            .unwrap();
        let Auth::SigV4(credentials) = &invoker.target.auth else {
            panic!("static credentials: SigV4")
        };
        assert_eq!(credentials.current().unwrap().load, 1);
    }

    #[test]
    fn a_connect_timeout_is_found_among_the_causes() {
        /// One layer of an error chain, as hyper-util's client and connect errors wrap the I/O.
        #[derive(Debug)]
        struct Layer(Box<dyn std::error::Error + Send + Sync>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("layer")
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        let chain = |io: std::io::Error| Layer(Box::new(Layer(Box::new(io))));
        let elapsed = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed");
        assert!(timed_out(&chain(elapsed)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!timed_out(&chain(refused)));
    }

    /// A provider whose loads never finish.
    #[derive(Debug)]
    struct Hanging;

    impl ProvideCredentials for Hanging {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_that_hangs_fails_after_30_s_and_the_next_call_tries_again() {
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(Hanging), None);
        let started = tokio::time::Instant::now();
        let e = cache.identity().await.unwrap_err();
        assert_eq!(e.code(), Some("upstream_auth_error"));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        cache.identity().await.unwrap_err();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(30),
            "tried again, not stuck"
        );
    }
}
