//! Configuration: defaults, then an optional TOML file, then the environment (and `.env`), then the
//! command line. Validated once at start-up; a bad value stops start-up with a message naming the key.
//!
//! | Environment | TOML key | Default |
//! |---|---|---|
//! | `HOST` / `PORT` | `server.host` / `server.port` | `0.0.0.0` / `8000` |
//! | `API_KEY` (comma-separated) | `auth.api_keys` | none: start-up fails unless auth is disabled |
//! | `AUTH_DISABLED` | `auth.disabled` | `false` |
//! | `AWS_CLIENT_CREDENTIALS` (`AKID:SECRET[:API_KEY]`, comma-separated) | `[[auth.aws_credentials]]` | none: SigV4 clients are refused |
//! | `OPENAI_API_KEY` | `openai.api_key` | none |
//! | `OPENAI_BASE_URL` | `openai.base_url` | `https://api.openai.com/v1` |
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | `bedrock.region` | the AWS profile's region |
//! | `BEDROCK_ENABLED` | `bedrock.enabled` | `true` |
//! | `MOCK_PROVIDER` (or `--mock`) | `mock.enabled` | `false` (`mock/…` models answered in-process) |
//! | `DEFAULT_MAX_TOKENS` | `bedrock.default_max_tokens` | `4096` |
//! | `MAX_REQUEST_BYTES` | `server.max_request_bytes` | `33554432` (32 MiB, room for images) |
//! | `MAX_IN_FLIGHT` | `server.max_in_flight` | `4096` (503 beyond) |
//! | `METRICS_PORT` | `server.metrics_port` | none (`/metrics` only on the main port, with a key) |
//! | `SHUTDOWN_DRAIN_SECS` | `server.shutdown_drain_secs` | `10` |
//! | `RATE_LIMIT_REQUESTS_PER_MINUTE`, `RATE_LIMIT_BURST`, `RATE_LIMIT_TOKENS_PER_MINUTE`, `REDIS_URL` | `[rate_limit]` | off |
//! | `RETRY_MAX_ATTEMPTS` | `retry.max_attempts` | `3` (attempts in total) |
//! | `CONNECT_TIMEOUT_MS`, `BODY_READ_TIMEOUT_MS`, `FIRST_BYTE_TIMEOUT_MS`, `STREAM_IDLE_TIMEOUT_MS`, `TOTAL_TIMEOUT_MS` | `timeouts.*_ms` | 5 s, 30 s, 120 s, 60 s, 600 s |
//! | `LOG_LEVEL` / `LOG_FORMAT` | `log.level` / `log.format` | `info` / `text` |
//!
//! The TOML file also carries model aliases (`[models.aliases]`), routing overrides (`[[routes]]`)
//! and ARN families (`[bedrock.arn_families]`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::rate_limit::RateLimitConfig;
use crate::route::{BedrockFamily, ProviderKind, RouteOverride, Router};

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key (environment variable or TOML path).
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

/// The dotted key a TOML error span points at: the key itself (unknown field) or the key of the
/// value (wrong type), prefixed by the enclosing `[table]` / `[[array]]` header. Best effort: `None`
/// when the span is not inside a `key = value` line.
fn toml_error_key(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..start)?;
    let key = match before.split_once('=') {
        // The span is (inside) the value: the key is left of the `=`.
        Some((key, _)) => key.trim(),
        // The span is the key.
        None => text.get(span)?.trim(),
    };
    let key = key.trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|t| !t.is_empty());
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// The validated configuration of one gateway.
#[derive(Clone)]
pub struct Config {
    /// Listen address.
    pub host: IpAddr,
    /// Listen port.
    pub port: u16,
    /// Accepted gateway keys.
    pub api_keys: Vec<String>,
    /// Auth turned off explicitly.
    pub auth_disabled: bool,
    /// SigV4 credentials that Bedrock runtime clients (boto3, AWS SDKs) may sign with, each mapped
    /// to a gateway key.
    pub aws_credentials: Vec<AwsClientCredential>,
    /// OpenAI upstream.
    pub openai: OpenAiConfig,
    /// Bedrock upstream.
    pub bedrock: BedrockConfig,
    /// Serve `mock/…` models with the in-process mock provider (`--mock`, `MOCK_PROVIDER`,
    /// `[mock] enabled`).
    pub mock_enabled: bool,
    /// Model aliases.
    pub aliases: HashMap<String, String>,
    /// Extra model ids to list in `/v1/models`.
    pub listed_models: Vec<String>,
    /// Routing overrides.
    pub routes: Vec<RouteOverride>,
    /// Largest accepted request body.
    pub max_request_bytes: usize,
    /// Requests (and open streams) in flight before new ones are shed with 503.
    pub max_in_flight: usize,
    /// A second port serving only `GET /metrics`, without auth (for scrapers inside the network).
    pub metrics_port: Option<u16>,
    /// Retry settings.
    pub retry: RetrySettings,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_drain: Duration,
    /// Keep-alive comment interval on idle streams.
    pub stream_keep_alive: Duration,
    /// Log filter (`info`, `debug`, `open_bedrock_server=trace`, …).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Per-key rate limits (`[rate_limit]`, `RATE_LIMIT_*`, `REDIS_URL`); `None` = no limit.
    pub rate_limit: Option<RateLimitConfig>,
}

/// A SigV4 credential a client may sign Bedrock runtime requests with, and the gateway key the
/// request then counts as (`[[auth.aws_credentials]]`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsClientCredential {
    /// The access key id the client signs with.
    pub access_key_id: String,
    /// The secret the signature is checked against.
    pub secret_access_key: String,
    /// The gateway key (one of `auth.api_keys`) the request authenticates as.
    pub api_key: String,
}

impl fmt::Debug for AwsClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsClientCredential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"****")
            .field("api_key", &mask(&self.api_key))
            .finish()
    }
}

/// OpenAI-compatible upstream settings.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`.
    pub base_url: String,
    /// Bearer key sent upstream.
    pub api_key: Option<String>,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_deref().map(mask))
            .finish()
    }
}

/// Bedrock settings.
#[derive(Debug, Clone)]
pub struct BedrockConfig {
    /// Whether Bedrock is used at all.
    pub enabled: bool,
    /// Region; `None` = the AWS SDK's default chain.
    pub region: Option<String>,
    /// `max_tokens` sent to Claude when the client gave none (Claude requires one).
    pub default_max_tokens: u32,
    /// `maxTokenCount` sent to Titan when the client gave none (`None`: Titan's own default).
    pub titan_default_max_tokens: Option<u32>,
    /// `maxTokens` sent over Converse when the client gave none (`None`: the model's maximum).
    pub converse_default_max_tokens: Option<u32>,
    /// Family of configured ARNs.
    pub arn_families: HashMap<String, BedrockFamily>,
}

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Attempts in total, first included.
    pub max_attempts: u32,
    /// First backoff step.
    pub base_delay: Duration,
    /// Largest backoff (also the cap on `Retry-After`).
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

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// The client's request body must arrive within this (408 beyond).
    pub body_read: Duration,
    /// Request sent → first byte (complete reply, or first stream event).
    pub first_byte: Duration,
    /// Largest gap between two stream events.
    pub stream_idle: Duration,
    /// Whole request, stream included.
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

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8000,
            api_keys: Vec::new(),
            auth_disabled: false,
            aws_credentials: Vec::new(),
            openai: OpenAiConfig {
                base_url: "https://api.openai.com/v1".into(),
                api_key: None,
            },
            bedrock: BedrockConfig {
                enabled: true,
                region: None,
                default_max_tokens: 4096,
                titan_default_max_tokens: None,
                converse_default_max_tokens: None,
                arn_families: HashMap::new(),
            },
            mock_enabled: false,
            aliases: HashMap::new(),
            listed_models: Vec::new(),
            routes: Vec::new(),
            max_request_bytes: 32 * 1024 * 1024,
            max_in_flight: 4096,
            metrics_port: None,
            retry: RetrySettings::default(),
            timeouts: Timeouts::default(),
            shutdown_drain: Duration::from_secs(10),
            stream_keep_alive: Duration::from_secs(15),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            rate_limit: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked_summary())
    }
}

fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n <= 8 {
        "****".into()
    } else {
        let head: String = secret.chars().take(4).collect();
        format!("{head}…({n} chars)")
    }
}

impl Config {
    /// Loads defaults ← `file` (if given) ← environment (after reading `.env` if present).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?;
            config.apply_toml(&text)?;
        }
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies a TOML document on top of this configuration.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let key = e
                .span()
                .and_then(|span| toml_error_key(text, span))
                .unwrap_or_else(|| "config file".into());
            ConfigError::new(key, msg)
        })?;
        if let Some(s) = file.server {
            if let Some(h) = s.host {
                self.host = h.parse().map_err(|_| {
                    ConfigError::new("server.host", format!("`{h}` is not an IP address"))
                })?;
            }
            set(&mut self.port, s.port);
            set(&mut self.max_request_bytes, s.max_request_bytes);
            set(&mut self.max_in_flight, s.max_in_flight);
            if s.metrics_port.is_some() {
                self.metrics_port = s.metrics_port;
            }
            if let Some(d) = s.shutdown_drain_secs {
                self.shutdown_drain = Duration::from_secs(d);
            }
            if let Some(d) = s.stream_keep_alive_secs {
                self.stream_keep_alive = Duration::from_secs(d);
            }
        }
        if let Some(a) = file.auth {
            // An empty key would let a request with an empty `x-api-key` in.
            let keys = a.api_keys.map(|k| {
                k.into_iter()
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect()
            });
            set(&mut self.api_keys, keys);
            set(&mut self.auth_disabled, a.disabled);
            set(&mut self.aws_credentials, a.aws_credentials);
        }
        if let Some(o) = file.openai {
            set(&mut self.openai.base_url, o.base_url);
            if o.api_key.is_some() {
                self.openai.api_key = o.api_key;
            }
        }
        if let Some(b) = file.bedrock {
            set(&mut self.bedrock.enabled, b.enabled);
            if b.region.is_some() {
                self.bedrock.region = b.region;
            }
            set(&mut self.bedrock.default_max_tokens, b.default_max_tokens);
            for (family, tokens) in b.default_max_tokens_by_family.unwrap_or_default() {
                match BedrockFamily::parse(&family) {
                    Some(BedrockFamily::Claude) => self.bedrock.default_max_tokens = tokens,
                    Some(BedrockFamily::Titan) => {
                        self.bedrock.titan_default_max_tokens = Some(tokens)
                    }
                    Some(BedrockFamily::Converse) => {
                        self.bedrock.converse_default_max_tokens = Some(tokens)
                    }
                    None => {
                        return Err(ConfigError::new(
                            format!("bedrock.default_max_tokens_by_family.{family}"),
                            "unknown family (expected claude, titan or converse)",
                        ))
                    }
                }
            }
            for (arn, fam) in b.arn_families.unwrap_or_default() {
                let family = BedrockFamily::parse(&fam).ok_or_else(|| {
                    ConfigError::new(
                        format!("bedrock.arn_families.\"{arn}\""),
                        format!("unknown family `{fam}` (expected claude, titan or converse)"),
                    )
                })?;
                self.bedrock.arn_families.insert(arn, family);
            }
        }
        if let Some(m) = file.mock {
            set(&mut self.mock_enabled, m.enabled);
        }
        if let Some(m) = file.models {
            self.aliases.extend(m.aliases.unwrap_or_default());
            self.listed_models.extend(m.list.unwrap_or_default());
        }
        for (i, r) in file.routes.unwrap_or_default().into_iter().enumerate() {
            let provider = match (r.provider.as_str(), r.family.as_deref()) {
                ("openai", None) => ProviderKind::OpenAi,
                ("bedrock", fam) => {
                    let fam = fam.unwrap_or("converse");
                    ProviderKind::Bedrock(BedrockFamily::parse(fam).ok_or_else(|| {
                        ConfigError::new(
                            format!("routes[{i}].family"),
                            format!("unknown family `{fam}`"),
                        )
                    })?)
                }
                ("openai", Some(_)) => {
                    return Err(ConfigError::new(
                        format!("routes[{i}].family"),
                        "a family only applies to provider = \"bedrock\"",
                    ))
                }
                (other, _) => {
                    return Err(ConfigError::new(
                        format!("routes[{i}].provider"),
                        format!("unknown provider `{other}` (expected openai or bedrock)"),
                    ))
                }
            };
            self.routes.push(RouteOverride::new(r.prefix, provider));
        }
        if let Some(r) = file.retry {
            set(&mut self.retry.max_attempts, r.max_attempts);
            if let Some(ms) = r.base_delay_ms {
                self.retry.base_delay = Duration::from_millis(ms);
            }
            if let Some(ms) = r.max_delay_ms {
                self.retry.max_delay = Duration::from_millis(ms);
            }
        }
        if let Some(t) = file.timeouts {
            let ms = Duration::from_millis;
            if let Some(v) = t.connect_ms {
                self.timeouts.connect = ms(v);
            }
            if let Some(v) = t.body_read_ms {
                self.timeouts.body_read = ms(v);
            }
            if let Some(v) = t.first_byte_ms {
                self.timeouts.first_byte = ms(v);
            }
            if let Some(v) = t.stream_idle_ms {
                self.timeouts.stream_idle = ms(v);
            }
            if let Some(v) = t.total_ms {
                self.timeouts.total = ms(v);
            }
        }
        if let Some(r) = file.rate_limit {
            r.validate()
                .map_err(|e| ConfigError::new("rate_limit", e))?;
            self.rate_limit = Some(r);
        }
        if let Some(l) = file.log {
            set(&mut self.log_level, l.level);
            if let Some(f) = l.format {
                self.log_format = parse_log_format("log.format", &f)?;
            }
        }
        self.validate()
    }

    /// Applies environment variables read through `get` (a closure so tests need not touch the
    /// process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(h) = get("HOST") {
            self.host = h
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("HOST", format!("`{h}` is not an IP address")))?;
        }
        if let Some(v) = get("PORT") {
            self.port = parse_num("PORT", &v)?;
        }
        if let Some(v) = get("API_KEY") {
            self.api_keys = v
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get("AWS_CLIENT_CREDENTIALS") {
            self.aws_credentials = parse_aws_credentials(&v, self.api_keys.first())?;
        }
        if let Some(v) = get("AUTH_DISABLED") {
            self.auth_disabled = parse_bool("AUTH_DISABLED", &v)?;
        }
        if let Some(v) = get("OPENAI_API_KEY") {
            self.openai.api_key = Some(v.trim().to_owned());
        }
        if let Some(v) = get("OPENAI_BASE_URL") {
            self.openai.base_url = v.trim().to_owned();
        }
        if let Some(v) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
            self.bedrock.region = Some(v.trim().to_owned());
        }
        if let Some(v) = get("BEDROCK_ENABLED") {
            self.bedrock.enabled = parse_bool("BEDROCK_ENABLED", &v)?;
        }
        if let Some(v) = get("MOCK_PROVIDER") {
            self.mock_enabled = parse_bool("MOCK_PROVIDER", &v)?;
        }
        if let Some(v) = get("DEFAULT_MAX_TOKENS") {
            self.bedrock.default_max_tokens = parse_num("DEFAULT_MAX_TOKENS", &v)?;
        }
        if let Some(v) = get("MAX_REQUEST_BYTES") {
            self.max_request_bytes = parse_num("MAX_REQUEST_BYTES", &v)?;
        }
        if let Some(v) = get("METRICS_PORT") {
            self.metrics_port = Some(parse_num("METRICS_PORT", &v)?);
        }
        if let Some(v) = get("MAX_IN_FLIGHT") {
            self.max_in_flight = parse_num("MAX_IN_FLIGHT", &v)?;
        }
        if let Some(v) = get("SHUTDOWN_DRAIN_SECS") {
            self.shutdown_drain = Duration::from_secs(parse_num("SHUTDOWN_DRAIN_SECS", &v)?);
        }
        if let Some(v) = get("RETRY_MAX_ATTEMPTS") {
            self.retry.max_attempts = parse_num("RETRY_MAX_ATTEMPTS", &v)?;
        }
        for (key, slot) in [
            ("CONNECT_TIMEOUT_MS", &mut self.timeouts.connect),
            ("BODY_READ_TIMEOUT_MS", &mut self.timeouts.body_read),
            ("FIRST_BYTE_TIMEOUT_MS", &mut self.timeouts.first_byte),
            ("STREAM_IDLE_TIMEOUT_MS", &mut self.timeouts.stream_idle),
            ("TOTAL_TIMEOUT_MS", &mut self.timeouts.total),
        ] {
            if let Some(v) = get(key) {
                *slot = Duration::from_millis(parse_num(key, &v)?);
            }
        }
        if let Some(v) = get("LOG_LEVEL") {
            self.log_level = v.trim().to_owned();
        }
        if let Some(v) = get("LOG_FORMAT") {
            self.log_format = parse_log_format("LOG_FORMAT", &v)?;
        }
        match RateLimitConfig::from_env(get)
            .map_err(|e| ConfigError::new("RATE_LIMIT_REQUESTS_PER_MINUTE", e))?
        {
            Some(env) => {
                // The environment sets the defaults; per-key overrides from the file stay.
                let keys = self.rate_limit.take().map(|r| r.keys).unwrap_or_default();
                self.rate_limit = Some(RateLimitConfig { keys, ..env });
            }
            None => {
                if let (Some(url), Some(r)) = (get("REDIS_URL"), self.rate_limit.as_mut()) {
                    r.redis_url = Some(url.trim().to_owned());
                }
            }
        }
        self.validate()
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::new(
                "RETRY_MAX_ATTEMPTS",
                "must be at least 1 (attempts in total)",
            ));
        }
        if self.retry.max_attempts > 10 {
            return Err(ConfigError::new("RETRY_MAX_ATTEMPTS", "must be at most 10"));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("MAX_IN_FLIGHT", "must be at least 1"));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::new(
                "MAX_REQUEST_BYTES",
                "must be at least 1024",
            ));
        }
        if !(self.openai.base_url.starts_with("http://")
            || self.openai.base_url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "OPENAI_BASE_URL",
                format!(
                    "`{}` must start with http:// or https://",
                    self.openai.base_url
                ),
            ));
        }
        if self.bedrock.default_max_tokens == 0 {
            return Err(ConfigError::new("DEFAULT_MAX_TOKENS", "must be at least 1"));
        }
        for (k, v) in [
            ("CONNECT_TIMEOUT_MS", self.timeouts.connect),
            ("BODY_READ_TIMEOUT_MS", self.timeouts.body_read),
            ("FIRST_BYTE_TIMEOUT_MS", self.timeouts.first_byte),
            ("STREAM_IDLE_TIMEOUT_MS", self.timeouts.stream_idle),
            ("TOTAL_TIMEOUT_MS", self.timeouts.total),
        ] {
            if v.is_zero() {
                return Err(ConfigError::new(k, "must be greater than 0"));
            }
        }
        Ok(())
    }

    /// Checks that the gateway may start: a key is configured or auth is disabled explicitly.
    pub fn check_startable(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() && !self.auth_disabled {
            return Err(ConfigError::new(
                "API_KEY",
                "no API key configured: set API_KEY (comma-separated for several), or disable auth explicitly with --no-auth / AUTH_DISABLED=true",
            ));
        }
        Ok(())
    }

    /// The router this configuration describes.
    pub fn router(&self) -> Router {
        Router::new(
            self.aliases.clone(),
            self.routes.clone(),
            self.bedrock.arn_families.clone(),
        )
    }

    /// A human-readable summary with every secret masked.
    pub fn masked_summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "listen            = {}:{}", self.host, self.port);
        let keys: Vec<String> = self.api_keys.iter().map(|k| mask(k)).collect();
        let _ = writeln!(s, "api_keys          = [{}]", keys.join(", "));
        let _ = writeln!(s, "auth_disabled     = {}", self.auth_disabled);
        let _ = writeln!(s, "openai.base_url   = {}", self.openai.base_url);
        let _ = writeln!(
            s,
            "openai.api_key    = {}",
            self.openai
                .api_key
                .as_deref()
                .map(mask)
                .unwrap_or_else(|| "(none)".into())
        );
        let _ = writeln!(s, "bedrock.enabled   = {}", self.bedrock.enabled);
        let _ = writeln!(
            s,
            "bedrock.region    = {}",
            self.bedrock
                .region
                .as_deref()
                .unwrap_or("(AWS default chain)")
        );
        let _ = writeln!(
            s,
            "default_max_tokens= claude {}, titan {}, converse {}",
            self.bedrock.default_max_tokens,
            self.bedrock
                .titan_default_max_tokens
                .map(|t| t.to_string())
                .unwrap_or_else(|| "(model default)".into()),
            self.bedrock
                .converse_default_max_tokens
                .map(|t| t.to_string())
                .unwrap_or_else(|| "(model default)".into())
        );
        let mut aliases: Vec<_> = self.aliases.iter().collect();
        aliases.sort();
        for (a, t) in aliases {
            let _ = writeln!(s, "alias             {a} -> {t}");
        }
        for r in &self.routes {
            let _ = writeln!(s, "route             {}* -> {:?}", r.prefix, r.provider);
        }
        let _ = writeln!(s, "max_request_bytes = {}", self.max_request_bytes);
        let _ = writeln!(s, "max_in_flight     = {}", self.max_in_flight);
        let _ = writeln!(
            s,
            "metrics           = GET /metrics (with a key){}",
            self.metrics_port
                .map(|p| format!(", and open on port {p}"))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "shutdown_drain    = {:?}", self.shutdown_drain);
        let _ = writeln!(
            s,
            "retry             = {} attempts, backoff {:?}..{:?}",
            self.retry.max_attempts, self.retry.base_delay, self.retry.max_delay
        );
        let _ = writeln!(
            s,
            "timeouts          = connect {:?}, first byte {:?}, stream idle {:?}, total {:?}",
            self.timeouts.connect,
            self.timeouts.first_byte,
            self.timeouts.stream_idle,
            self.timeouts.total
        );
        match &self.rate_limit {
            Some(r) => {
                let _ = writeln!(
                    s,
                    "rate_limit        = {} requests/min + burst {}, tokens/min {}, backend {}, {} key override(s)",
                    r.requests_per_minute,
                    r.burst,
                    r.tokens_per_minute.map(|t| t.to_string()).unwrap_or_else(|| "unlimited".into()),
                    if r.redis_url.is_some() { "redis (shared)" } else { "memory" },
                    r.keys.len()
                );
            }
            None => {
                let _ = writeln!(s, "rate_limit        = off");
            }
        }
        let _ = writeln!(
            s,
            "log               = {} ({:?})",
            self.log_level, self.log_format
        );
        s
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::new(key, format!("`{v}` is not a valid number")))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(key, format!("`{v}` is not true or false"))),
    }
}

fn parse_log_format(key: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "text" | "pretty" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::new(key, format!("`{v}` is not json or text"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<FileServer>,
    auth: Option<FileAuth>,
    openai: Option<FileOpenAi>,
    bedrock: Option<FileBedrock>,
    mock: Option<FileMock>,
    models: Option<FileModels>,
    routes: Option<Vec<FileRoute>>,
    retry: Option<FileRetry>,
    timeouts: Option<FileTimeouts>,
    log: Option<FileLog>,
    rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMock {
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    port: Option<u16>,
    max_request_bytes: Option<usize>,
    max_in_flight: Option<usize>,
    metrics_port: Option<u16>,
    shutdown_drain_secs: Option<u64>,
    stream_keep_alive_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    api_keys: Option<Vec<String>>,
    disabled: Option<bool>,
    aws_credentials: Option<Vec<AwsClientCredential>>,
}

/// `AKID:SECRET[:API_KEY],…`; without `API_KEY` a credential maps to the first gateway key.
fn parse_aws_credentials(
    value: &str,
    first_key: Option<&String>,
) -> Result<Vec<AwsClientCredential>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.splitn(3, ':');
        let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
            return Err(ConfigError::new(
                "AWS_CLIENT_CREDENTIALS",
                "each entry must be ACCESS_KEY_ID:SECRET[:API_KEY]",
            ));
        };
        let api_key = match parts.next().or(first_key.map(String::as_str)) {
            Some(k) if !id.is_empty() && !secret.is_empty() => k.to_owned(),
            _ => return Err(ConfigError::new("AWS_CLIENT_CREDENTIALS", "each entry must be ACCESS_KEY_ID:SECRET[:API_KEY] (API_KEY needed when no API_KEY is configured)")),
        };
        out.push(AwsClientCredential {
            access_key_id: id.to_owned(),
            secret_access_key: secret.to_owned(),
            api_key,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOpenAi {
    base_url: Option<String>,
    api_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBedrock {
    enabled: Option<bool>,
    region: Option<String>,
    default_max_tokens: Option<u32>,
    default_max_tokens_by_family: Option<HashMap<String, u32>>,
    arn_families: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModels {
    aliases: Option<HashMap<String, String>>,
    list: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    prefix: String,
    provider: String,
    family: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRetry {
    max_attempts: Option<u32>,
    base_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect_ms: Option<u64>,
    body_read_ms: Option<u64>,
    first_byte_ms: Option<u64>,
    stream_idle_ms: Option<u64>,
    total_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    format: Option<String>,
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_values_apply() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("API_KEY", "a, b,,c"),
            ("PORT", "9000"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
            ("RETRY_MAX_ATTEMPTS", "2"),
            ("LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(c.api_keys, ["a", "b", "c"]);
        assert_eq!(c.port, 9000);
        assert_eq!(c.retry.max_attempts, 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.check_startable().is_ok());
    }

    #[test]
    fn no_key_refuses_to_start_unless_disabled() {
        let c = Config::default();
        let e = c.check_startable().unwrap_err();
        assert_eq!(e.key, "API_KEY");
        assert!(e.to_string().contains("--no-auth"));
        let mut c = Config::default();
        c.apply_env(env(&[("AUTH_DISABLED", "true")])).unwrap();
        assert!(c.check_startable().is_ok());
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = Config::default();
        assert_eq!(
            c.apply_env(env(&[("PORT", "eighty")])).unwrap_err().key,
            "PORT"
        );
        let mut c = Config::default();
        assert_eq!(
            c.apply_env(env(&[("OPENAI_BASE_URL", "ftp://x")]))
                .unwrap_err()
                .key,
            "OPENAI_BASE_URL"
        );
        let mut c = Config::default();
        let e = c.apply_toml("[retry]\nmax_attempt = 3\n").unwrap_err();
        assert!(e.problem.contains("max_attempt"), "{e}");
        assert_eq!(e.key, "retry.max_attempt", "{e}");
        let mut c = Config::default();
        let e = c
            .apply_toml("[auth]\napi_keys = [\"k\"]\n\n[server]\nport = \"eighty\"\n")
            .unwrap_err();
        assert_eq!(e.key, "server.port", "{e}");
        let mut c = Config::default();
        let e = c.apply_toml("[server]\nport = 99999\n").unwrap_err();
        assert_eq!(e.key, "server.port", "{e}");
        let mut c = Config::default();
        let e = c
            .apply_toml("[[routes]]\nprefix = \"x\"\nprovider = \"azure\"\n")
            .unwrap_err();
        assert_eq!(e.key, "routes[0].provider");
    }

    #[test]
    fn toml_file_applies() {
        let mut c = Config::default();
        c.apply_toml(
            r#"
            [server]
            port = 8080
            [models.aliases]
            claude = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
            [[routes]]
            prefix = "local-"
            provider = "openai"
            [bedrock.arn_families]
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/x" = "claude"
            [timeouts]
            first_byte_ms = 1500
            [bedrock.default_max_tokens_by_family]
            claude = 2048
            titan = 512
            converse = 1000
            "#,
        )
        .unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.timeouts.first_byte, Duration::from_millis(1500));
        assert_eq!(c.bedrock.default_max_tokens, 2048);
        assert_eq!(c.bedrock.titan_default_max_tokens, Some(512));
        assert_eq!(c.bedrock.converse_default_max_tokens, Some(1000));
        let router = c.router();
        assert_eq!(
            router.resolve("claude").unwrap().kind,
            ProviderKind::Bedrock(BedrockFamily::Claude)
        );
        assert_eq!(
            router.resolve("local-llama").unwrap().kind,
            ProviderKind::OpenAi
        );
    }

    #[test]
    fn summary_masks_secrets() {
        let mut c = Config::default();
        c.api_keys = vec!["sk-gateway-very-secret".into()];
        c.openai.api_key = Some("sk-openai-very-secret".into());
        let s = c.masked_summary();
        assert!(!s.contains("very-secret"), "{s}");
        assert!(s.contains("sk-g"));
    }

    #[test]
    fn aws_client_credentials_from_env_and_toml() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("API_KEY", "gw1,gw2"),
            ("AWS_CLIENT_CREDENTIALS", "AKID1:sec/ret, AKID2:s2:gw2"),
        ]))
        .unwrap();
        let got: Vec<(&str, &str, &str)> = c
            .aws_credentials
            .iter()
            .map(|a| {
                (
                    a.access_key_id.as_str(),
                    a.secret_access_key.as_str(),
                    a.api_key.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("AKID1", "sec/ret", "gw1"), ("AKID2", "s2", "gw2")]);
        assert!(!format!("{:?}", c.aws_credentials).contains("sec/ret"));
        let e = Config::default()
            .apply_env(env(&[("AWS_CLIENT_CREDENTIALS", "AKID1")]))
            .unwrap_err();
        assert_eq!(e.key, "AWS_CLIENT_CREDENTIALS");

        let mut c = Config::default();
        c.apply_toml("[auth]\napi_keys = [\"k\"]\n[[auth.aws_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\napi_key = \"k\"\n")
            .unwrap();
        assert_eq!(c.aws_credentials[0].access_key_id, "A");
    }
}
