//! Configuration: one serde tree, [`Config`], read from an optional TOML file, overlaid by the
//! environment (and `.env`), then by the command line (`Config::load_with`, with the `server`
//! feature; the tree itself is plain serde and needs no feature). Validated once at
//! start-up; a bad value stops start-up with a message naming its key: the TOML path
//! (`server.port`) for the file, the variable (`PORT`) for the environment.
//!
//! | Environment | TOML key | Default |
//! |---|---|---|
//! | `HOST` / `PORT` | `server.host` / `server.port` | `0.0.0.0` / `8000` |
//! | `API_KEY` (comma-separated) | `auth.api_keys` | none: start-up fails unless auth is disabled or a keys file is set |
//! | `AUTH_DISABLED` | `auth.disabled` | `false` |
//! | `KEYS_FILE` | `keys.file` | none (keys only from `API_KEY`) |
//! | `AWS_CLIENT_CREDENTIALS` (`AKID:SECRET[:API_KEY]`, comma-separated) | `[[auth.aws_credentials]]` | none: SigV4 clients are refused |
//! | `OPENAI_API_KEY` | `openai.api_key` | none |
//! | `OPENAI_BASE_URL` | `openai.base_url` | `https://api.openai.com/v1` |
//! | `OPENAI_RESPONSES_API` | `openai.responses_api` | `false` (`/v1/responses` served by the gateway, not forwarded) |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | `bedrock.region` | the AWS profile's region |
//! | `BEDROCK_ENABLED` | `bedrock.enabled` | `true` |
//! | `MOCK_PROVIDER` (or `--mock`) | `mock.enabled` | `false` (`mock/…` models answered in-process) |
//! | `DEFAULT_MAX_TOKENS` | `bedrock.default_max_tokens` | `4096` |
//! | `MAX_REQUEST_BYTES` | `server.max_request_bytes` | `33554432` (32 MiB, room for images) |
//! | `MAX_IN_FLIGHT` | `server.max_in_flight` | `4096` (503 beyond) |
//! | `METRICS_PORT` / `METRICS_HOST` | `server.metrics_port` / `server.metrics_host` | none (`/metrics` only on the main port, with a key) / `127.0.0.1` |
//! | `MAX_JSON_VALUES` | `server.max_json_values` | `262144` (413 beyond: what bounds a body's decoded size) |
//! | `MAX_BODY_BYTES_IN_FLIGHT` | `server.max_body_bytes_in_flight` | `134217728` (128 MiB of request bodies at once; 503 beyond) |
//! | `MAX_CONNECTIONS` | `server.max_connections` | `10000` (accepting pauses beyond) |
//! | `SERVER_THREADS` | `server.threads` | one per core (`std::thread::available_parallelism`: serving threads of their own, each keeping its connections and upstream pools; `0`: one work-stealing runtime, a worker per core) |
//! | `FIRST_REQUEST_TIMEOUT_MS`, `IDLE_TIMEOUT_MS`, `HEADER_READ_TIMEOUT_MS`, `HTTP2_KEEP_ALIVE_MS` | `server.*_ms` | 10 s, 120 s, 30 s, 20 s |
//! | `MAX_CONCURRENT_PER_ACCESS_KEY` | `auth.max_concurrent_per_access_key` | `64` (SigV4 requests per access key at once; 429 beyond) |
//! | `SHUTDOWN_DRAIN_SECS` | `server.shutdown_drain_secs` | `10` |
//! | `RATE_LIMIT_REQUESTS_PER_MINUTE`, `RATE_LIMIT_BURST`, `RATE_LIMIT_TOKENS_PER_MINUTE`, `REDIS_URL` | `[rate_limit]` | off |
//! | `RETRY_MAX_ATTEMPTS` | `retry.max_attempts` | `3` (attempts in total) |
//! | `CONNECT_TIMEOUT_MS`, `BODY_READ_TIMEOUT_MS`, `FIRST_BYTE_TIMEOUT_MS`, `STREAM_IDLE_TIMEOUT_MS`, `TOTAL_TIMEOUT_MS` | `timeouts.*_ms` | 5 s, 30 s, 120 s, 60 s, 600 s |
//! | `LOG_LEVEL` / `LOG_FORMAT` | `log.level` / `log.format` | `info` / `text` |
//! | `LOG_FLUSH_MS` | `log.flush_ms` | `100` (access lines written in batches about this late; `0`: each at once) |
//! | `PROMPT_CACHING_AUTO` (comma-separated model ids / prefixes) | `prompt_caching.auto` | none (off) |
//! | `GUARDRAILS_ALLOW_CLIENT` | `guardrails.allow_client` | `false` |
//! | `BEDROCK_MAX_N` | `bedrock.max_n` | `8` |
//! | `BEDROCK_EMBEDDING_CONCURRENCY` | `bedrock.embedding_concurrency` | `8` |
//! | `RESPONSES_MAX_STORED`, `RESPONSES_TTL_SECS`, `RESPONSES_REDIS_URL` | `responses.*` | `10000`, `86400` (a day), none (in process) |
//! | `MEDIA_FETCH_ENABLED`, `MEDIA_FETCH_ALLOWED_HOSTS` (comma-separated), `MEDIA_FETCH_MAX_BYTES` | `media_fetch.*` | off, none, 10 MiB |
//!
//! The TOML file also carries model aliases (`[models.aliases]`), routing overrides (`[[routes]]`),
//! ARN families (`[bedrock.arn_families]`), the reasoning budgets (`[reasoning.budget_tokens]`),
//! named providers (`[providers.<name>]`) and model groups (`[model_groups.<name>]`, see the
//! `upstreams` types). A new setting is one field here (plus one row in
//! the environment table if it has a variable).
//!
//! Secrets are [`Secret`]s: `Debug` and `Serialize` show them masked, so the printed tree
//! (`check-config`) and debug logs never carry one.
//!
//! ```
//! use open_bedrock_server::config::{Config, Secret};
//!
//! let mut config = Config::default();
//! assert_eq!(config.server.port, 8000);
//! assert!(config.check_startable().is_err(), "no key and auth not disabled");
//! config.auth.api_keys = vec![Secret::new("sk-gateway-0123456789")];
//! assert!(config.check_startable().is_ok());
//! assert_eq!(config.api_keys(), ["sk-gateway-0123456789"]);
//! assert!(!format!("{config:?}").contains("0123456789"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::format::reasoning::ReasoningBudgets;
use crate::rate_limit::RateLimitConfig;
use crate::route::{BedrockFamily, ProviderKind, RouteOverride, Router};

#[cfg(feature = "server")]
mod env;
#[cfg(feature = "server")]
mod load;
mod upstreams;

pub use upstreams::{
    BalanceStrategy, BedrockProviderConfig, DeploymentConfig, KeySource, ModelGroupConfig,
    OpenAiProviderConfig, OutlierSettings, ProviderConfig, ProviderTimeouts, IMPLICIT_PROVIDERS,
};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The key: a TOML path (`server.port`, `routes[0].family`), an environment variable
    /// (`PORT`), or a command-line flag (`--config`).
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error in `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// A secret string (a gateway key, an upstream key, a SigV4 secret). Read like a string;
/// `Debug` and `Serialize` show only its first four characters and its length, so printing the
/// configuration never prints a secret. [`Secret::expose`] is the one way to the value.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the code that sends or checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is shown instead: the first four characters and the length, or `****` for eight
    /// characters or fewer (where four would be half of it).
    pub fn masked(&self) -> String {
        let n = self.0.chars().count();
        if n <= 8 {
            "****".into()
        } else {
            let head: String = self.0.chars().take(4).collect();
            format!("{head}…({n} chars)")
        }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// The configuration of one gateway: the TOML file's shape, section by section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Listening, request limits, shutdown (`[server]`).
    pub server: ServerConfig,
    /// Who may call the gateway (`[auth]`).
    pub auth: AuthConfig,
    /// The OpenAI-compatible upstream (`[openai]`).
    pub openai: OpenAiConfig,
    /// The Bedrock upstream (`[bedrock]`).
    pub bedrock: BedrockConfig,
    /// The in-process mock provider (`[mock]`).
    pub mock: MockConfig,
    /// Model aliases and extra listed models (`[models]`).
    pub models: ModelsConfig,
    /// Routing overrides by model-id prefix (`[[routes]]`).
    pub routes: Vec<RouteConfig>,
    /// Named upstreams beside the implicit `openai`, `bedrock` and `mock` (`[providers.<name>]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Public model names served by several deployments (`[model_groups.<name>]`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub model_groups: BTreeMap<String, ModelGroupConfig>,
    /// Upstream retries (`[retry]`).
    pub retry: RetrySettings,
    /// Timeouts (`[timeouts]`).
    pub timeouts: Timeouts,
    /// Logging (`[log]`).
    pub log: LogConfig,
    /// Per-key rate limits (`[rate_limit]`); `None` = no limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// The keys file, budgets and their counters (`[keys]`).
    pub keys: KeysConfig,
    /// Price overrides and additions (`[prices]`): model id or glob → USD per million tokens,
    /// over the shipped table (`src/cost/prices.json`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, crate::cost::PriceSpec>,
    /// Automatic prompt caching (`[prompt_caching]`).
    pub prompt_caching: PromptCachingConfig,
    /// Reasoning requests (`[reasoning]`).
    pub reasoning: ReasoningConfig,
    /// Fetching `http(s)` image and document URLs for Bedrock models (`[media_fetch]`).
    pub media_fetch: MediaFetchConfig,
    /// Bedrock guardrails (`[guardrails]`).
    pub guardrails: GuardrailsConfig,
    /// The Responses API's stored responses (`[responses]`).
    pub responses: ResponsesConfig,
}

/// Where `/v1/responses` keeps stored responses (`[responses]`): in process (bounded) by
/// default, in Redis when `redis_url` is set (the `redis` cargo feature), so a follow-up turn
/// works across replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ResponsesConfig {
    /// The most responses the in-process store keeps (the oldest go first).
    pub max_stored: usize,
    /// How long a stored response is kept, in seconds (Redis: the key's expiry).
    pub ttl_secs: u64,
    /// `redis://…`: keep them in Redis instead (printed masked).
    pub redis_url: Option<Secret>,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            max_stored: crate::responses_store::DEFAULT_MAX_STORED_RESPONSES,
            ttl_secs: crate::responses_store::DEFAULT_STORED_RESPONSE_TTL.as_secs(),
            redis_url: None,
        }
    }
}

/// Bedrock guardrails (`[guardrails]`): per model or route, and whether clients may name their
/// own per request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    /// Clients may name a guardrail per request (InvokeModel's guardrail headers, Converse's
    /// `guardrailConfig`, the `guardrailConfig` extension of OpenAI bodies); off, such a request is
    /// a 400. Gateway-wide: a key has no guardrail policy of its own.
    pub allow_client: bool,
    /// The guardrail each model gets (`[[guardrails.models]]`): the first rule whose prefix
    /// matches the model as the client names it or as it is sent upstream. A client's own
    /// guardrail, where allowed, replaces it.
    pub models: Vec<GuardrailRule>,
}

/// One `[[guardrails.models]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailRule {
    /// Model id prefix (an id, an alias, a route prefix).
    pub prefix: String,
    /// Guardrail id or ARN.
    pub identifier: String,
    /// `1`… or `DRAFT`.
    pub version: String,
    /// `enabled`, `disabled` or `enabled_full`: whether replies carry the guardrail's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Fetching `http(s)` image and document URLs for models that take them inline (Claude and the
/// Converse families on Bedrock) (`[media_fetch]`): off by default, and then only from the
/// allowed hosts, with a size cap, a timeout, content types sniffed from the bytes, every redirect
/// checked again, and private, loopback and link-local addresses refused unless allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaFetchConfig {
    /// Fetch at all.
    pub enabled: bool,
    /// Hosts fetched from: `images.example.com` (that host), `.example.com` (its subdomains), or
    /// `*` (any host).
    pub allowed_hosts: Vec<String>,
    /// Largest body fetched, per URL.
    pub max_bytes: usize,
    /// The whole fetch of one URL, redirects included (`timeout_ms`).
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Redirects followed, each checked like the first URL.
    pub max_redirects: u8,
    /// Also fetch from private, loopback and link-local addresses (tests, private networks).
    pub allow_private_addresses: bool,
}

impl Default for MediaFetchConfig {
    fn default() -> Self {
        MediaFetchConfig {
            enabled: false,
            allowed_hosts: Vec::new(),
            max_bytes: 10 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            max_redirects: 3,
            allow_private_addresses: false,
        }
    }
}

/// Virtual keys (`[keys]`): the keys file (`keys::file` format) beside `API_KEY`, and
/// where budgets are counted.
///
/// ```toml
/// [keys]
/// file = "/etc/open-bedrock-server/keys.toml"   # KEYS_FILE; reloaded on SIGHUP and on change
/// reload_interval_ms = 2000     # how often the file is checked for changes (0: only SIGHUP)
/// max_concurrent = 32           # default concurrency limit of the file's keys
/// estimate_output_tokens = 1024 # output assumed at admission when a request names no cap
/// redis_url = "redis://redis:6379"  # budgets shared by replicas; default: [rate_limit]'s
/// redis_timeout_ms = 100
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeysConfig {
    /// The keys file.
    pub file: Option<std::path::PathBuf>,
    /// How often the file is checked for changes, in milliseconds; 0 = only on SIGHUP.
    pub reload_interval_ms: u64,
    /// `max_concurrent` of the file's keys that set none.
    pub max_concurrent: Option<usize>,
    /// Output tokens a budget's estimate assumes for a request without `max_tokens`.
    pub estimate_output_tokens: u64,
    /// Redis for the budget counters (needs the `redis` feature); default: `[rate_limit]`'s
    /// `redis_url`; neither = in this process.
    pub redis_url: Option<Secret>,
    /// Bound on one Redis call, in milliseconds (past it the request goes through unchecked).
    pub redis_timeout_ms: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            file: None,
            reload_interval_ms: 2000,
            max_concurrent: None,
            estimate_output_tokens: crate::keys::DEFAULT_ESTIMATE_OUTPUT_TOKENS,
            redis_url: None,
            redis_timeout_ms: 100,
        }
    }
}

/// Automatic prompt caching (`[prompt_caching]`): off unless models are listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptCachingConfig {
    /// Model ids or id prefixes (as the client names the model, or as it is sent upstream, so an
    /// alias or a `[[routes]]` prefix works too) whose requests get cache breakpoints on the
    /// system prompt and the tool definitions when the client set none.
    pub auto: Vec<String>,
}

impl PromptCachingConfig {
    /// Whether a call of `model` (client id) sent as `upstream` gets automatic breakpoints.
    pub fn auto_for(&self, model: &str, upstream: &str) -> bool {
        self.auto
            .iter()
            .any(|p| model.starts_with(p.as_str()) || upstream.starts_with(p.as_str()))
    }
}

/// Reasoning requests (`[reasoning]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReasoningConfig {
    /// `reasoning_effort` → thinking `budget_tokens` (`[reasoning.budget_tokens]`).
    pub budget_tokens: ReasoningBudgets,
}

/// Listening, request limits and shutdown (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Listen address.
    pub host: IpAddr,
    /// Listen port.
    pub port: u16,
    /// Largest accepted request body.
    pub max_request_bytes: usize,
    /// Requests (and open streams) in flight before new ones are shed with 503.
    pub max_in_flight: usize,
    /// A second port serving only `GET /metrics`, without auth (for scrapers inside the network).
    pub metrics_port: Option<u16>,
    /// How long graceful shutdown waits for in-flight requests (`shutdown_drain_secs`).
    #[serde(rename = "shutdown_drain_secs", with = "secs")]
    pub shutdown_drain: Duration,
    /// Keep-alive comment interval on idle streams (`stream_keep_alive_secs`).
    #[serde(rename = "stream_keep_alive_secs", with = "secs")]
    pub stream_keep_alive: Duration,
    /// The address the metrics port binds to: loopback unless told otherwise, since it has no
    /// auth.
    pub metrics_host: IpAddr,
    /// JSON values (object keys included) one body may hold (413 beyond).
    pub max_json_values: usize,
    /// Request-body bytes in flight across all requests (503 beyond).
    pub max_body_bytes_in_flight: usize,
    /// Open connections at most (accepting pauses beyond).
    pub max_connections: usize,
    /// Serving threads: `n` serves on `n` threads of their own, each with a single-threaded
    /// runtime, a copy of the listening socket and its own OpenAI-compatible upstream pools and
    /// Bedrock runtime clients, so a connection and its upstream calls stay on one thread
    /// (`server::ServerLimits::threads`); `0` on the process's work-stealing runtime (a worker
    /// per core). One per core by default ([`default_server_threads`]).
    pub threads: usize,
    /// A new connection's first request must arrive within this (`first_request_timeout_ms`).
    #[serde(rename = "first_request_timeout_ms", with = "millis")]
    pub first_request_timeout: Duration,
    /// A connection without a request in flight is closed after this (`idle_timeout_ms`).
    #[serde(rename = "idle_timeout_ms", with = "millis")]
    pub idle_timeout: Duration,
    /// An HTTP/1 request head must arrive whole within this of its first byte
    /// (`header_read_timeout_ms`).
    #[serde(rename = "header_read_timeout_ms", with = "millis")]
    pub header_read_timeout: Duration,
    /// HTTP/2 keep-alive ping interval and answer deadline (`http2_keep_alive_ms`).
    #[serde(rename = "http2_keep_alive_ms", with = "millis")]
    pub http2_keep_alive: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8000,
            max_request_bytes: 32 * 1024 * 1024,
            max_in_flight: 4096,
            metrics_port: None,
            shutdown_drain: Duration::from_secs(10),
            stream_keep_alive: Duration::from_secs(15),
            metrics_host: IpAddr::from([127, 0, 0, 1]),
            max_json_values: crate::detect::DEFAULT_MAX_JSON_VALUES,
            max_body_bytes_in_flight: 128 * 1024 * 1024,
            max_connections: 10_000,
            threads: default_server_threads(),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(30),
            http2_keep_alive: Duration::from_secs(20),
        }
    }
}

/// Who may call the gateway (`[auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Accepted gateway keys; blanks around a key are dropped, empty keys are ignored (an empty
    /// key would let a request with an empty `x-api-key` in).
    #[serde(deserialize_with = "gateway_keys")]
    pub api_keys: Vec<Secret>,
    /// Auth turned off explicitly.
    pub disabled: bool,
    /// SigV4 credentials that Bedrock runtime clients (boto3, AWS SDKs) may sign with, each mapped
    /// to a gateway key.
    pub aws_credentials: Vec<AwsClientCredential>,
    /// Requests one SigV4 access key may have in flight at once (429 beyond).
    pub max_concurrent_per_access_key: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            api_keys: Vec::new(),
            disabled: false,
            aws_credentials: Vec::new(),
            max_concurrent_per_access_key: 64,
        }
    }
}

fn gateway_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Secret>, D::Error> {
    let keys = Vec::<String>::deserialize(deserializer)?;
    Ok(keys
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .map(Secret::from)
        .collect())
}

/// A SigV4 credential a client may sign Bedrock runtime requests with, and the gateway key the
/// request then counts as (`[[auth.aws_credentials]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AwsClientCredential {
    /// The access key id the client signs with.
    #[serde(deserialize_with = "non_empty")]
    pub access_key_id: String,
    /// The secret the signature is checked against.
    #[serde(deserialize_with = "non_empty")]
    pub secret_access_key: Secret,
    /// The gateway key (one of `auth.api_keys`) the request authenticates as.
    #[serde(deserialize_with = "non_empty")]
    pub api_key: Secret,
}

impl AwsClientCredential {
    /// Requests signed with `access_key_id` / `secret_access_key` count as the gateway key
    /// `api_key`.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<Secret>,
        api_key: impl Into<Secret>,
    ) -> Self {
        AwsClientCredential {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            api_key: api_key.into(),
        }
    }
}

/// A credential part, as the environment parser takes it: trimmed, and never empty (an empty
/// secret would let anyone sign).
fn non_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(T::from(text.to_owned()))
}

/// The OpenAI-compatible upstream (`[openai]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`.
    pub base_url: String,
    /// Bearer key sent upstream.
    pub api_key: Option<Secret>,
    /// The upstream speaks the Responses API (`OPENAI_RESPONSES_API`): `/v1/responses` bodies go
    /// to `{base_url}/responses` as received and its replies come back as sent.
    pub responses_api: bool,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            responses_api: false,
        }
    }
}

/// The Bedrock upstream (`[bedrock]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BedrockConfig {
    /// Whether Bedrock is used at all.
    pub enabled: bool,
    /// Region; `None` = the AWS SDK's default chain.
    pub region: Option<String>,
    /// `max_tokens` sent to Claude when the client gave none (Claude requires one); see
    /// [`BedrockConfig::claude_default_max_tokens`].
    pub default_max_tokens: u32,
    /// Per-family defaults for a missing max-tokens (`[bedrock.default_max_tokens_by_family]`).
    pub default_max_tokens_by_family: MaxTokensByFamily,
    /// Family of configured ARNs (`[bedrock.arn_families]`).
    pub arn_families: BTreeMap<String, BedrockFamily>,
    /// S3 buckets a client may name in `s3://` image and document URLs, with the account that
    /// owns each (`[bedrock.s3_buckets]`, bucket = "123456789012"). Bedrock reads them with the
    /// gateway's own role, so any other bucket is a 400.
    pub s3_buckets: BTreeMap<String, String>,
    /// The most choices (`n`) a request may ask of a Bedrock model: each is one upstream call.
    pub max_n: u32,
    /// The most InvokeModel calls one embeddings request runs at a time (Titan embeds one text
    /// per call, Cohere 96).
    pub embedding_concurrency: u32,
}

impl Default for BedrockConfig {
    fn default() -> Self {
        BedrockConfig {
            enabled: true,
            region: None,
            default_max_tokens: 4096,
            default_max_tokens_by_family: MaxTokensByFamily::default(),
            arn_families: BTreeMap::new(),
            s3_buckets: BTreeMap::new(),
            max_n: 8,
            embedding_concurrency: 8,
        }
    }
}

impl BedrockConfig {
    /// `max_tokens` sent to Claude when the client gave none: the family's own setting, else
    /// `default_max_tokens`.
    pub fn claude_default_max_tokens(&self) -> u32 {
        self.default_max_tokens_by_family
            .claude
            .unwrap_or(self.default_max_tokens)
    }

    /// `maxTokenCount` sent to Titan when the client gave none (`None`: Titan's own default).
    pub fn titan_default_max_tokens(&self) -> Option<u32> {
        self.default_max_tokens_by_family.titan
    }

    /// `maxTokens` sent over Converse when the client gave none (`None`: the model's maximum).
    pub fn converse_default_max_tokens(&self) -> Option<u32> {
        self.default_max_tokens_by_family.converse
    }
}

/// Max-tokens defaults per Bedrock family (`[bedrock.default_max_tokens_by_family]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MaxTokensByFamily {
    /// Claude: overrides `bedrock.default_max_tokens`.
    #[serde(alias = "anthropic")]
    pub claude: Option<u32>,
    /// Titan: `None` leaves Titan's own default.
    pub titan: Option<u32>,
    /// Converse: `None` leaves the model's maximum.
    pub converse: Option<u32>,
}

/// The in-process mock provider (`[mock]`, `--mock`, `MOCK_PROVIDER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MockConfig {
    /// Serve `mock/…` models in-process.
    pub enabled: bool,
}

/// Model aliases and extra listed models (`[models]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ModelsConfig {
    /// Alias → model id.
    pub aliases: BTreeMap<String, String>,
    /// Extra model ids to list in `/v1/models`.
    pub list: Vec<String>,
}

/// One routing override (`[[routes]]`): model ids starting with `prefix` go to `provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// Model id prefix.
    pub prefix: String,
    /// Target provider.
    pub provider: RouteProvider,
    /// Bedrock family (`bedrock` only; default `converse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<BedrockFamily>,
}

impl RouteConfig {
    /// Model ids starting with `prefix` go to `provider` (Bedrock: over Converse).
    pub fn new(prefix: impl Into<String>, provider: RouteProvider) -> Self {
        RouteConfig {
            prefix: prefix.into(),
            provider,
            family: None,
        }
    }

    /// The Bedrock family to call the models with.
    pub fn with_family(mut self, family: BedrockFamily) -> Self {
        self.family = Some(family);
        self
    }
}

/// The provider a `[[routes]]` entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RouteProvider {
    /// The OpenAI-compatible upstream.
    #[serde(rename = "openai")]
    OpenAi,
    /// AWS Bedrock.
    #[serde(rename = "bedrock")]
    Bedrock,
}

// Family names in configuration go through `BedrockFamily::parse`, so `anthropic` and any case
// keep working.
impl Serialize for BedrockFamily {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BedrockFamily {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        BedrockFamily::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown family `{name}` (expected claude, titan or converse)"
            ))
        })
    }
}

/// Retry settings (`[retry]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Attempts in total, first included.
    pub max_attempts: u32,
    /// First backoff step (`base_delay_ms`).
    #[serde(rename = "base_delay_ms", with = "millis")]
    pub base_delay: Duration,
    /// Largest backoff, also the cap on `Retry-After` (`max_delay_ms`).
    #[serde(rename = "max_delay_ms", with = "millis")]
    pub max_delay: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// Upstream timeouts (`[timeouts]`, each in milliseconds as `<name>_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Timeouts {
    /// TCP/TLS connect.
    #[serde(rename = "connect_ms", with = "millis")]
    pub connect: Duration,
    /// The client's request body must arrive within this (408 beyond).
    #[serde(rename = "body_read_ms", with = "millis")]
    pub body_read: Duration,
    /// Request sent → first byte (complete reply, or first stream event).
    #[serde(rename = "first_byte_ms", with = "millis")]
    pub first_byte: Duration,
    /// Largest gap between two stream events.
    #[serde(rename = "stream_idle_ms", with = "millis")]
    pub stream_idle: Duration,
    /// Whole request, stream included.
    #[serde(rename = "total_ms", with = "millis")]
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            body_read: Duration::from_secs(30),
            first_byte: Duration::from_secs(120),
            stream_idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Logging (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogConfig {
    /// Log filter (`info`, `debug`, `open_bedrock_server=trace`, …).
    pub level: String,
    /// Log line format.
    pub format: LogFormat,
    /// The access log is written in batches, each about this long after its first line (or
    /// sooner, before it would hold more than 64 KiB); every other line is written at once. Zero writes each access line
    /// at once, as a `write` of its own.
    #[serde(rename = "flush_ms", with = "millis")]
    pub flush: Duration,
}

/// The longest `log.flush_ms` accepted: a minute.
const MAX_LOG_FLUSH: Duration = Duration::from_secs(60);

/// `server.threads` unless set: one serving thread per core the process may use
/// (`available_parallelism`, which counts a container's CPU quota), 1 if that is unknown.
///
/// Why threads of their own and not the work-stealing runtime by default: measured side by side
/// in six runs (`scripts/bench-load --compare-threads`, BENCHMARKS.md), two serving threads on two
/// cores sustained 0.83–0.96× the bare proxy's rate against 0.64–0.74× (higher in every round),
/// at 1.25–1.39× its CPU per request against 1.56–1.83×, and were no worse at the fixed rates,
/// where the work-stealing runtime's p99 at 5,000 requests a second jumped by 60–82 ms in two
/// runs. What they give up: no thread takes over a busy one's connections.
pub fn default_server_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_SERVER_THREADS)
}

/// The most `server.threads` accepted: far past any core count a gateway runs on, well short of
/// what would only be a typo.
const MAX_SERVER_THREADS: usize = 1024;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            flush: Duration::from_millis(100),
        }
    }
}

/// Log line format: `text` (also `pretty`) or `json`, in any case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.trim().to_ascii_lowercase().as_str() {
            "text" | "pretty" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(serde::de::Error::custom(format!(
                "`{name}` is not json or text"
            ))),
        }
    }
}

/// Durations written as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Durations written as whole seconds.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Config {
    /// The gateway keys, exposed: what the auth layers compare requests against.
    pub fn api_keys(&self) -> Vec<String> {
        self.auth
            .api_keys
            .iter()
            .map(|k| k.expose().to_owned())
            .collect()
    }

    /// Checks the rules serde cannot. Keys are TOML paths; `Config::load` renames a key to its
    /// environment variable when the value came from there.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::new(
                "retry.max_attempts",
                "must be at least 1 (attempts in total)",
            ));
        }
        if self.retry.max_attempts > 10 {
            return Err(ConfigError::new("retry.max_attempts", "must be at most 10"));
        }
        if self.server.max_in_flight == 0 {
            return Err(ConfigError::new(
                "server.max_in_flight",
                "must be at least 1",
            ));
        }
        if self.server.max_request_bytes < 1024 {
            return Err(ConfigError::new(
                "server.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if self.server.max_body_bytes_in_flight < self.server.max_request_bytes {
            return Err(ConfigError::new(
                "server.max_body_bytes_in_flight",
                "must be at least server.max_request_bytes (else the largest body could never be read)",
            ));
        }
        if self.server.threads > MAX_SERVER_THREADS {
            return Err(ConfigError::new(
                "server.threads",
                format!("must be at most {MAX_SERVER_THREADS}"),
            ));
        }
        for (key, value) in [
            ("server.max_json_values", self.server.max_json_values),
            ("server.max_connections", self.server.max_connections),
            (
                "auth.max_concurrent_per_access_key",
                self.auth.max_concurrent_per_access_key,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            (
                "server.first_request_timeout_ms",
                self.server.first_request_timeout,
            ),
            ("server.idle_timeout_ms", self.server.idle_timeout),
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout,
            ),
            ("server.http2_keep_alive_ms", self.server.http2_keep_alive),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        let base_url = &self.openai.base_url;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "openai.base_url",
                format!("`{base_url}` must start with http:// or https://"),
            ));
        }
        if self.bedrock.claude_default_max_tokens() == 0 {
            let key = if self.bedrock.default_max_tokens_by_family.claude.is_some() {
                "bedrock.default_max_tokens_by_family.claude"
            } else {
                "bedrock.default_max_tokens"
            };
            return Err(ConfigError::new(key, "must be at least 1"));
        }
        let t = &self.timeouts;
        for (key, value) in [
            ("timeouts.connect_ms", t.connect),
            ("timeouts.body_read_ms", t.body_read),
            ("timeouts.first_byte_ms", t.first_byte),
            ("timeouts.stream_idle_ms", t.stream_idle),
            ("timeouts.total_ms", t.total),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if self.log.flush > MAX_LOG_FLUSH {
            return Err(ConfigError::new(
                "log.flush_ms",
                "must be at most 60000 (a minute); 0 writes every line at once",
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.provider == RouteProvider::OpenAi && route.family.is_some() {
                return Err(ConfigError::new(
                    format!("routes[{i}].family"),
                    "a family only applies to provider = \"bedrock\"",
                ));
            }
        }
        if let Some(limits) = &self.rate_limit {
            limits
                .validate()
                .map_err(|e| ConfigError::new("rate_limit", e))?;
        }
        self.reasoning
            .budget_tokens
            .validate()
            .map_err(|e| ConfigError::new("reasoning.budget_tokens", e))?;
        for (i, rule) in self.guardrails.models.iter().enumerate() {
            let version_ok = rule.version == "DRAFT"
                || (!rule.version.is_empty()
                    && rule.version.len() <= 8
                    && rule.version.bytes().all(|b| b.is_ascii_digit()));
            if !version_ok {
                return Err(ConfigError::new(
                    format!("guardrails.models[{i}].version"),
                    "must be a version number or DRAFT",
                ));
            }
            if rule
                .trace
                .as_deref()
                .is_some_and(|t| !matches!(t, "enabled" | "disabled" | "enabled_full"))
            {
                return Err(ConfigError::new(
                    format!("guardrails.models[{i}].trace"),
                    "must be enabled, disabled or enabled_full",
                ));
            }
        }
        if self.media_fetch.enabled && self.media_fetch.allowed_hosts.is_empty() {
            return Err(ConfigError::new(
                "media_fetch.allowed_hosts",
                "fetching is enabled but no host is allowed (list hosts, `.domain` suffixes, or `*`)",
            ));
        }
        if self.media_fetch.enabled && self.media_fetch.max_bytes == 0 {
            return Err(ConfigError::new(
                "media_fetch.max_bytes",
                "must be at least 1",
            ));
        }
        if self.responses.max_stored == 0 {
            return Err(ConfigError::new(
                "responses.max_stored",
                "must be at least 1",
            ));
        }
        if self.responses.ttl_secs == 0 {
            return Err(ConfigError::new("responses.ttl_secs", "must be at least 1"));
        }
        if self.bedrock.embedding_concurrency == 0 {
            return Err(ConfigError::new(
                "bedrock.embedding_concurrency",
                "must be at least 1",
            ));
        }
        if self.bedrock.max_n == 0 {
            return Err(ConfigError::new("bedrock.max_n", "must be at least 1"));
        }
        for (bucket, owner) in &self.bedrock.s3_buckets {
            if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(
                    format!("bedrock.s3_buckets.{bucket}"),
                    "must be the 12-digit id of the account that owns the bucket",
                ));
            }
        }
        if self.prompt_caching.auto.iter().any(|p| p.trim().is_empty()) {
            return Err(ConfigError::new(
                "prompt_caching.auto",
                "an empty prefix would match every model",
            ));
        }
        upstreams::validate(&self.providers, &self.model_groups, &self.models.aliases)
    }

    /// Checks that the gateway may start: a key is configured or auth is disabled explicitly.
    pub fn check_startable(&self) -> Result<(), ConfigError> {
        if self.auth.api_keys.is_empty() && !self.auth.disabled && self.keys.file.is_none() {
            return Err(ConfigError::new(
                "API_KEY",
                "no API key configured: set API_KEY (comma-separated for several) or a keys file (KEYS_FILE, [keys] file), or disable auth explicitly with --no-auth / AUTH_DISABLED=true",
            ));
        }
        Ok(())
    }

    /// The `[[routes]]` as the router takes them (a Bedrock route without a family uses
    /// Converse).
    pub fn route_overrides(&self) -> Vec<RouteOverride> {
        self.routes
            .iter()
            .map(|r| {
                RouteOverride::new(
                    r.prefix.clone(),
                    match r.provider {
                        RouteProvider::OpenAi => ProviderKind::OpenAi,
                        RouteProvider::Bedrock => {
                            ProviderKind::Bedrock(r.family.unwrap_or(BedrockFamily::Converse))
                        }
                    },
                )
            })
            .collect()
    }

    /// The router this configuration describes.
    pub fn router(&self) -> Router {
        Router::new(
            self.models
                .aliases
                .iter()
                .map(|(a, t)| (a.clone(), t.clone()))
                .collect(),
            self.route_overrides(),
            self.bedrock
                .arn_families
                .iter()
                .map(|(arn, family)| (arn.clone(), *family))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug_and_serialize() {
        let long = Secret::new("sk-gateway-very-secret");
        assert_eq!(long.masked(), "sk-g…(22 chars)");
        assert_eq!(format!("{long:?}"), "sk-g…(22 chars)");
        assert_eq!(serde_json::to_string(&long).unwrap(), "\"sk-g…(22 chars)\"");
        assert_eq!(Secret::new("12345678").masked(), "****");
        assert_eq!(long.expose(), "sk-gateway-very-secret");

        let mut c = Config::default();
        c.auth.api_keys = vec![long];
        c.openai.api_key = Some("sk-openai-very-secret".into());
        c.auth.aws_credentials = vec![AwsClientCredential {
            access_key_id: "AKID".into(),
            secret_access_key: "aws/very-secret/key".into(),
            api_key: "sk-gateway-very-secret".into(),
        }];
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).unwrap();
        for shown in [&debug, &json] {
            assert!(!shown.contains("very-secret"), "{shown}");
            assert!(shown.contains("sk-g…"), "{shown}");
        }
    }

    #[test]
    fn no_key_refuses_to_start_unless_disabled() {
        let c = Config::default();
        let e = c.check_startable().unwrap_err();
        assert_eq!(e.key, "API_KEY");
        assert!(e.to_string().contains("--no-auth"));
        let mut c = Config::default();
        c.auth.disabled = true;
        assert!(c.check_startable().is_ok());
    }

    #[test]
    fn validation_names_the_toml_key() {
        let check = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(check(|c| c.retry.max_attempts = 0), "retry.max_attempts");
        assert_eq!(check(|c| c.retry.max_attempts = 11), "retry.max_attempts");
        assert_eq!(
            check(|c| c.server.max_in_flight = 0),
            "server.max_in_flight"
        );
        assert_eq!(
            check(|c| c.server.max_request_bytes = 1023),
            "server.max_request_bytes"
        );
        assert_eq!(
            check(|c| c.openai.base_url = "ftp://x".into()),
            "openai.base_url"
        );
        assert_eq!(
            check(|c| c.bedrock.default_max_tokens = 0),
            "bedrock.default_max_tokens"
        );
        assert_eq!(
            check(|c| c.bedrock.default_max_tokens_by_family.claude = Some(0)),
            "bedrock.default_max_tokens_by_family.claude"
        );
        assert_eq!(
            check(|c| c.timeouts.stream_idle = Duration::ZERO),
            "timeouts.stream_idle_ms"
        );
        assert_eq!(
            check(|c| c.routes = vec![RouteConfig {
                prefix: "x".into(),
                provider: RouteProvider::OpenAi,
                family: Some(BedrockFamily::Titan),
            }]),
            "routes[0].family"
        );
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn family_defaults_keep_their_meaning() {
        let mut b = BedrockConfig::default();
        assert_eq!(b.claude_default_max_tokens(), 4096);
        assert_eq!(b.titan_default_max_tokens(), None);
        b.default_max_tokens = 1000;
        assert_eq!(b.claude_default_max_tokens(), 1000);
        b.default_max_tokens_by_family.claude = Some(2048);
        b.default_max_tokens_by_family.titan = Some(512);
        assert_eq!(b.claude_default_max_tokens(), 2048, "claude overrides");
        assert_eq!(b.titan_default_max_tokens(), Some(512));
        assert_eq!(b.converse_default_max_tokens(), None);
    }
}
