//! Named providers (`[providers.<name>]`) and model groups (`[model_groups.<name>]`): the
//! configuration of many upstreams and of routing across them.
//!
//! A provider is one upstream account or endpoint: any number of OpenAI-compatible ones (OpenAI,
//! Azure OpenAI, vLLM, Ollama, …) and Bedrock ones (a region, an account, a role). The implicit
//! providers `openai`, `bedrock` and `mock` (configured by `[openai]`, `[bedrock]`, `[mock]` and
//! their environment variables) keep their names; a named provider may not take one of them.
//!
//! A model group is a public model name served by a list of deployments (a provider, the model id
//! it knows, a weight and a priority tier), balanced by a strategy, with fallbacks and passive
//! outlier ejection ([`crate::provider::group`]).
//!
//! ```
//! use open_bedrock_server::config::{BalanceStrategy, Config, ProviderConfig};
//!
//! let config: Config = toml::from_str(r#"
//!     [providers.azure-eu]
//!     kind = "openai"
//!     base_url = "https://my-resource.openai.azure.com/openai/deployments/gpt-4o"
//!     api_key_env = "AZURE_OPENAI_KEY"
//!     auth_header = "api-key"
//!     query = { api-version = "2024-10-21" }
//!
//!     [providers.bedrock-west]
//!     kind = "bedrock"
//!     region = "us-west-2"
//!
//!     [model_groups.claude]
//!     strategy = "least_outstanding"
//!     deployments = [
//!         { provider = "bedrock", model = "us.anthropic.claude-3-5-haiku-20241022-v1:0", weight = 3 },
//!         { provider = "bedrock-west", model = "us.anthropic.claude-3-5-haiku-20241022-v1:0" },
//!         { provider = "azure-eu", model = "gpt-4o", priority = 1 },
//!     ]
//! "#).unwrap();
//! assert!(config.validate().is_ok());
//! let ProviderConfig::OpenAi(azure) = &config.providers["azure-eu"] else { unreachable!() };
//! assert_eq!(azure.auth_header, "api-key");
//! assert_eq!(azure.auth_prefix(), "", "no `Bearer ` before a key in a custom header");
//! let claude = &config.model_groups["claude"];
//! assert_eq!(claude.strategy, BalanceStrategy::LeastOutstanding);
//! assert_eq!(claude.deployments[2].priority, 1);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{millis, ConfigError, Secret, Timeouts};
use crate::route::BedrockFamily;

/// The names of the implicit providers, which named providers may not take.
pub const IMPLICIT_PROVIDERS: [&str; 3] = ["openai", "bedrock", "mock"];

/// One named upstream (`[providers.<name>]`), by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ProviderConfig {
    /// An OpenAI-compatible chat-completions API (`kind = "openai"`).
    #[serde(rename = "openai")]
    OpenAi(OpenAiProviderConfig),
    /// An AWS Bedrock runtime (`kind = "bedrock"`).
    #[serde(rename = "bedrock")]
    Bedrock(BedrockProviderConfig),
}

impl ProviderConfig {
    /// `openai` or `bedrock`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ProviderConfig::OpenAi(_) => "openai",
            ProviderConfig::Bedrock(_) => "bedrock",
        }
    }

    /// The provider's own timeouts, over the gateway's.
    pub fn timeouts(&self) -> &ProviderTimeouts {
        match self {
            ProviderConfig::OpenAi(c) => &c.timeouts,
            ProviderConfig::Bedrock(c) => &c.timeouts,
        }
    }
}

/// Where a provider's key is read from at start-up: an environment variable (`api_key_env`) or a
/// file (`api_key_file`, its content without surrounding blanks). Never written inline, so the
/// configuration file holds no secret.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeySource<'a> {
    /// The environment variable holding the key.
    pub env: Option<&'a str>,
    /// The file holding the key (e.g. a mounted Kubernetes or Docker secret).
    pub file: Option<&'a std::path::Path>,
}

impl KeySource<'_> {
    /// Whether a source is configured.
    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Reads the key: `Ok(None)` when no source is configured, an error naming `key` (the TOML
    /// path of the provider) when the variable is unset or empty, or the file is unreadable.
    pub fn read(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        self.read_with(key, |name| std::env::var(name).ok())
    }

    /// [`read`](Self::read) for the provider `[providers.<provider>]`, as start-up reports it.
    pub fn read_for(&self, provider: &str) -> Result<Option<Secret>, crate::error::GatewayError> {
        self.read(&format!("providers.{provider}"))
            .map_err(|e| crate::error::GatewayError::internal(e.to_string()))
    }

    fn read_with(
        &self,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, ConfigError> {
        let value = match (self.env, self.file) {
            (Some(var), _) => env(var).ok_or_else(|| {
                ConfigError::new(
                    format!("{key}.api_key_env"),
                    format!("the environment variable `{var}` is not set"),
                )
            })?,
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    format!("{key}.api_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?,
            (None, None) => return Ok(None),
        };
        let value = value.trim();
        if value.is_empty() {
            let which = if self.env.is_some() {
                "api_key_env"
            } else {
                "api_key_file"
            };
            return Err(ConfigError::new(
                format!("{key}.{which}"),
                "the key is empty",
            ));
        }
        Ok(Some(Secret::new(value)))
    }
}

/// A provider's own timeouts (`[providers.<name>.timeouts]`); each unset one is the gateway's
/// (`[timeouts]`). The request's total time stays the gateway's: it bounds every attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderTimeouts {
    /// TCP/TLS connect.
    #[serde(
        rename = "connect_ms",
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<Duration>,
    /// Request sent → first byte (complete reply, or a stream's first event).
    #[serde(
        rename = "first_byte_ms",
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub first_byte: Option<Duration>,
    /// Largest gap between two stream events.
    #[serde(
        rename = "stream_idle_ms",
        with = "optional_millis",
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_idle: Option<Duration>,
}

impl ProviderTimeouts {
    /// `gateway`'s timeouts with this provider's overrides.
    pub fn over(&self, gateway: &Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(gateway.connect),
            first_byte: self.first_byte.unwrap_or(gateway.first_byte),
            stream_idle: self.stream_idle.unwrap_or(gateway.stream_idle),
            ..*gateway
        }
    }
}

/// An OpenAI-compatible upstream (`kind = "openai"`): OpenAI, Azure OpenAI, vLLM, Ollama, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiProviderConfig {
    /// Base URL up to the path that `/chat/completions` is appended to (`…/v1`, or Azure's
    /// `…/openai/deployments/<deployment>`).
    pub base_url: String,
    /// The environment variable holding the upstream key; with neither this nor `api_key_file`,
    /// requests go without an auth header (vLLM, Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The file holding the upstream key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The header that carries the key (Azure OpenAI: `api-key`).
    #[serde(default = "authorization")]
    pub auth_header: String,
    /// What precedes the key in that header: `Bearer ` for `authorization`, nothing for any
    /// other header, unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_prefix: Option<String>,
    /// Headers sent with every request (`OpenAI-Organization`, a proxy's routing header, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to every request URL (Azure OpenAI: `api-version`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Idle connections kept open per host in this provider's pool.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Timeouts over the gateway's.
    #[serde(default)]
    pub timeouts: ProviderTimeouts,
    /// The upstream speaks the Responses API: `/v1/responses` bodies go to `{base_url}/responses`
    /// as received (built-in tools included) and its replies come back as sent.
    #[serde(default)]
    pub responses_api: bool,
}

fn authorization() -> String {
    "authorization".into()
}

fn default_pool_max_idle() -> usize {
    256
}

impl OpenAiProviderConfig {
    /// A provider at `base_url` with the defaults (Bearer key in `authorization`, none set).
    pub fn new(base_url: impl Into<String>) -> Self {
        OpenAiProviderConfig {
            base_url: base_url.into(),
            api_key_env: None,
            api_key_file: None,
            auth_header: authorization(),
            auth_prefix: None,
            headers: BTreeMap::new(),
            query: BTreeMap::new(),
            pool_max_idle: default_pool_max_idle(),
            timeouts: ProviderTimeouts::default(),
            responses_api: false,
        }
    }

    /// Where the upstream key is read from.
    pub fn api_key(&self) -> KeySource<'_> {
        KeySource {
            env: self.api_key_env.as_deref(),
            file: self.api_key_file.as_deref(),
        }
    }

    /// What precedes the key in [`auth_header`](Self::auth_header).
    pub fn auth_prefix(&self) -> &str {
        match &self.auth_prefix {
            Some(p) => p,
            None if self.auth_header.eq_ignore_ascii_case("authorization") => "Bearer ",
            None => "",
        }
    }
}

/// An AWS Bedrock runtime (`kind = "bedrock"`): a region, and credentials from the default chain,
/// a named profile, an assumed role, or a Bedrock API key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BedrockProviderConfig {
    /// Region; `None`: the profile's (or `AWS_REGION`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A named profile of the AWS config and credentials files, instead of the default chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A role to assume (through STS) with the credentials above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The assumed role's session name (default: chosen by the SDK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_session_name: Option<String>,
    /// The Bedrock runtime endpoint instead of AWS's (a VPC endpoint, a proxy, a test fake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The environment variable holding a Bedrock API key, used instead of SigV4 credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The file holding a Bedrock API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Timeouts over the gateway's.
    pub timeouts: ProviderTimeouts,
}

impl BedrockProviderConfig {
    /// Where the Bedrock API key is read from.
    pub fn api_key(&self) -> KeySource<'_> {
        KeySource {
            env: self.api_key_env.as_deref(),
            file: self.api_key_file.as_deref(),
        }
    }
}

/// How a model group spreads requests over the deployments of one priority tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStrategy {
    /// At random, in proportion to the weights.
    #[default]
    #[serde(alias = "weighted_random", alias = "random")]
    Weighted,
    /// The less loaded of two deployments drawn by weight (power of two choices); load is
    /// outstanding requests (a stream counts until its end). An idle group splits by weight.
    #[serde(alias = "least_requests", alias = "p2c")]
    LeastOutstanding,
    /// As `least_outstanding`, with the load scaled by each deployment's peak-EWMA latency.
    #[serde(alias = "peak_ewma", alias = "latency")]
    LowestLatency,
}

impl BalanceStrategy {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceStrategy::Weighted => "weighted",
            BalanceStrategy::LeastOutstanding => "least_outstanding",
            BalanceStrategy::LowestLatency => "lowest_latency",
        }
    }
}

/// Passive health of each deployment of a group, Envoy-style (`[model_groups.<name>.outlier]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSettings {
    /// This many failures in a row eject a deployment (0: never by count).
    pub consecutive_failures: u32,
    /// A failure share (0.0–1.0) within one interval that ejects a deployment (0: never by rate).
    pub failure_rate: f64,
    /// Attempts an interval needs before its failure share counts.
    pub min_requests: u32,
    /// The window the failure share is counted over (`interval_ms`).
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// The first ejection's cooldown; each ejection that follows doubles it (`base_ejection_ms`).
    #[serde(rename = "base_ejection_ms", with = "millis")]
    pub base_ejection: Duration,
    /// The longest cooldown (`max_ejection_ms`); a deployment healthy for this long starts over
    /// at the base.
    #[serde(rename = "max_ejection_ms", with = "millis")]
    pub max_ejection: Duration,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        OutlierSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
        }
    }
}

/// A public model name served by several deployments (`[model_groups.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelGroupConfig {
    /// How requests are spread within a priority tier.
    #[serde(default)]
    pub strategy: BalanceStrategy,
    /// The deployments, in any order (tiers by `priority`).
    pub deployments: Vec<DeploymentConfig>,
    /// A model (id, alias or group) to send the request to when a deployment answers that it
    /// exceeds the context window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_fallback: Option<String>,
    /// Outlier ejection.
    #[serde(default)]
    pub outlier: OutlierSettings,
}

/// One deployment of a model group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// The provider (a `[providers.<name>]`, or `openai`, `bedrock`, `mock`).
    pub provider: String,
    /// The model id the provider knows (a Bedrock model, profile or ARN; an OpenAI model; an
    /// Azure deployment's model).
    pub model: String,
    /// Share of the tier's traffic, relative to the other deployments of the tier.
    #[serde(default = "one")]
    pub weight: u32,
    /// The tier: 0 first; a higher tier serves only when every deployment of the lower ones has
    /// been tried or is ejected.
    #[serde(default)]
    pub priority: u32,
    /// The name in headers, logs and metrics (default: the provider's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Bedrock family, when the model id does not tell (an application inference profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<BedrockFamily>,
}

fn one() -> u32 {
    1
}

impl DeploymentConfig {
    /// The name in headers, logs and metrics.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.provider)
    }
}

/// Checks the providers and groups of a configuration; keys are TOML paths.
pub(super) fn validate(
    providers: &BTreeMap<String, ProviderConfig>,
    groups: &BTreeMap<String, ModelGroupConfig>,
    aliases: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, provider) in providers {
        let key = format!("providers.{name}");
        if IMPLICIT_PROVIDERS.contains(&name.as_str()) {
            return Err(ConfigError::new(
                key,
                format!("`{name}` is the implicit provider configured by [{name}] and its environment variables: name this one differently"),
            ));
        }
        match provider {
            ProviderConfig::OpenAi(c) => {
                if !(c.base_url.starts_with("http://") || c.base_url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        format!("{key}.base_url"),
                        format!("`{}` must start with http:// or https://", c.base_url),
                    ));
                }
                if http::HeaderName::from_bytes(c.auth_header.as_bytes()).is_err() {
                    return Err(ConfigError::new(
                        format!("{key}.auth_header"),
                        format!("`{}` is not a valid header name", c.auth_header),
                    ));
                }
                for (h, v) in &c.headers {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err()
                        || http::HeaderValue::from_str(v).is_err()
                    {
                        return Err(ConfigError::new(
                            format!("{key}.headers"),
                            format!("`{h}` is not a valid header"),
                        ));
                    }
                }
            }
            ProviderConfig::Bedrock(c) => {
                if let Some(url) = &c.endpoint_url {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(ConfigError::new(
                            format!("{key}.endpoint_url"),
                            format!("`{url}` must start with http:// or https://"),
                        ));
                    }
                }
                if c.external_id.is_some() && c.role_arn.is_none() {
                    return Err(ConfigError::new(
                        format!("{key}.external_id"),
                        "an external id goes with a role to assume: set role_arn",
                    ));
                }
                if c.api_key().is_set() && (c.role_arn.is_some() || c.profile.is_some()) {
                    return Err(ConfigError::new(
                        format!("{key}.api_key_env"),
                        "a Bedrock API key replaces SigV4 credentials: drop profile / role_arn, or the key",
                    ));
                }
            }
        }
        let t = provider.timeouts();
        for (which, value) in [
            ("connect_ms", t.connect),
            ("first_byte_ms", t.first_byte),
            ("stream_idle_ms", t.stream_idle),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(
                    format!("{key}.timeouts.{which}"),
                    "must be greater than 0",
                ));
            }
        }
    }
    for (name, group) in groups {
        let key = format!("model_groups.{name}");
        if aliases.contains_key(name) {
            return Err(ConfigError::new(
                key,
                format!("`{name}` is also an alias in [models.aliases]: one name, one meaning"),
            ));
        }
        if group.deployments.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.deployments"),
                "a group needs at least one deployment",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, d) in group.deployments.iter().enumerate() {
            let dkey = format!("{key}.deployments[{i}]");
            let kind = if IMPLICIT_PROVIDERS.contains(&d.provider.as_str()) {
                d.provider.as_str()
            } else {
                match providers.get(&d.provider) {
                    Some(p) => p.kind_name(),
                    None => {
                        return Err(ConfigError::new(
                            format!("{dkey}.provider"),
                            format!("no provider `{}` (configure [providers.{}], or use openai, bedrock or mock)", d.provider, d.provider),
                        ))
                    }
                }
            };
            if d.family.is_some() && kind != "bedrock" {
                return Err(ConfigError::new(
                    format!("{dkey}.family"),
                    "a family only applies to a Bedrock provider",
                ));
            }
            if d.weight == 0 {
                return Err(ConfigError::new(
                    format!("{dkey}.weight"),
                    "must be at least 1 (use a higher priority for a standby)",
                ));
            }
            if d.model.is_empty() {
                return Err(ConfigError::new(format!("{dkey}.model"), "is empty"));
            }
            if !names.insert(d.name()) {
                return Err(ConfigError::new(
                    format!("{dkey}.name"),
                    format!(
                        "two deployments are named `{}`: give one a `name`",
                        d.name()
                    ),
                ));
            }
        }
        if group.context_window_fallback.as_deref() == Some(name.as_str()) {
            return Err(ConfigError::new(
                format!("{key}.context_window_fallback"),
                "a group cannot fall back to itself",
            ));
        }
        let o = &group.outlier;
        if !(0.0..=1.0).contains(&o.failure_rate) {
            return Err(ConfigError::new(
                format!("{key}.outlier.failure_rate"),
                "must be between 0.0 and 1.0",
            ));
        }
        if o.base_ejection.is_zero() || o.max_ejection < o.base_ejection {
            return Err(ConfigError::new(
                format!("{key}.outlier.max_ejection_ms"),
                "the cooldowns must be greater than 0, the largest at least the base",
            ));
        }
        if o.interval.is_zero() {
            return Err(ConfigError::new(
                format!("{key}.outlier.interval_ms"),
                "must be greater than 0",
            ));
        }
    }
    Ok(())
}

/// Optional durations written as whole milliseconds.
mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problem(text: &str) -> ConfigError {
        parse(text).validate().unwrap_err()
    }

    #[test]
    fn keys_come_from_an_env_var_or_a_file() {
        let env = |name: &str| (name == "K").then(|| " sk-from-env \n".to_owned());
        let from_env = KeySource {
            env: Some("K"),
            file: None,
        };
        assert_eq!(
            from_env
                .read_with("providers.x", env)
                .unwrap()
                .unwrap()
                .expose(),
            "sk-from-env"
        );
        let unset = KeySource {
            env: Some("UNSET"),
            file: None,
        };
        let e = unset.read_with("providers.x", env).unwrap_err();
        assert_eq!(e.key, "providers.x.api_key_env");
        assert!(e.problem.contains("UNSET"), "{e}");

        let path = std::env::temp_dir().join(format!("obs-key-{}", std::process::id()));
        std::fs::write(&path, "sk-from-file\n").unwrap();
        let from_file = KeySource {
            env: None,
            file: Some(&path),
        };
        assert_eq!(
            from_file.read("providers.x").unwrap().unwrap().expose(),
            "sk-from-file"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            from_file.read("providers.x").unwrap_err().key,
            "providers.x.api_key_file"
        );
        assert!(KeySource::default().read("x").unwrap().is_none());
    }

    #[test]
    fn an_inline_key_or_an_unknown_setting_is_refused() {
        for bad in [
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\napi_key = \"sk-inline\"\n",
            "[providers.a]\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"http://h\"\n",
            "[providers.a]\nkind = \"anthropic\"\n",
        ] {
            assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_timeouts_override_the_gateways() {
        let c = parse("[providers.a]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\n[providers.a.timeouts]\nfirst_byte_ms = 1500\n");
        let t = c.providers["a"].timeouts().over(&Timeouts::default());
        assert_eq!(t.first_byte, Duration::from_millis(1500));
        assert_eq!(t.stream_idle, Timeouts::default().stream_idle);
        assert_eq!(t.total, Timeouts::default().total);
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("[providers.openai]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\n", "providers.openai"),
            ("[providers.a]\nkind = \"openai\"\nbase_url = \"h/v1\"\n", "providers.a.base_url"),
            ("[providers.a]\nkind = \"openai\"\nbase_url = \"http://h\"\nauth_header = \"bad header\"\n", "providers.a.auth_header"),
            ("[providers.a]\nkind = \"bedrock\"\nexternal_id = \"x\"\n", "providers.a.external_id"),
            ("[providers.a]\nkind = \"bedrock\"\nendpoint_url = \"localhost:1\"\n", "providers.a.endpoint_url"),
            ("[providers.a]\nkind = \"bedrock\"\n[providers.a.timeouts]\nconnect_ms = 0\n", "providers.a.timeouts.connect_ms"),
            ("[model_groups.g]\ndeployments = []\n", "model_groups.g.deployments"),
            ("[model_groups.g]\ndeployments = [{ provider = \"nope\", model = \"m\" }]\n", "model_groups.g.deployments[0].provider"),
            ("[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"m\", family = \"claude\" }]\n", "model_groups.g.deployments[0].family"),
            ("[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"m\", weight = 0 }]\n", "model_groups.g.deployments[0].weight"),
            ("[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"a\" }, { provider = \"openai\", model = \"b\" }]\n", "model_groups.g.deployments[1].name"),
            ("[model_groups.g]\ncontext_window_fallback = \"g\"\ndeployments = [{ provider = \"openai\", model = \"a\" }]\n", "model_groups.g.context_window_fallback"),
            ("[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"a\" }]\n[model_groups.g.outlier]\nfailure_rate = 2.0\n", "model_groups.g.outlier.failure_rate"),
            ("[models.aliases]\ng = \"gpt-4o\"\n[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"a\" }]\n", "model_groups.g"),
        ];
        for (text, key) in cases {
            assert_eq!(problem(text).key, key, "{text}");
        }
        let ok = parse("[model_groups.g]\ndeployments = [{ provider = \"openai\", model = \"a\" }, { provider = \"openai\", model = \"b\", name = \"second\" }]\n");
        assert!(ok.validate().is_ok());
    }
}
