//! The environment layer: one table from variable to configuration key, read into a figment
//! provider that sits between the TOML file and the command line.
//!
//! Values are the variables' trimmed text; an empty or blank variable counts as unset. Numbers
//! and booleans need nothing here: the loader reads them from text (`1/true/yes/on`,
//! `0/false/no/off`, any case). figment's own `Env` provider is not used because it guesses a
//! type from the text (an `API_KEY` of digits would become a number) and knows neither lists nor
//! the credential format.

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::ConfigError;

/// The metadata name of this layer, by which the loader recognises its values.
pub(super) const SOURCE: &str = "environment variable";

/// How a variable's text becomes a value.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// The trimmed text.
    Text,
    /// Comma-separated: each item trimmed, empty items dropped.
    List,
    /// `AKID:SECRET[:API_KEY],…`; an entry without `API_KEY` maps to the first gateway key.
    AwsCredentials,
}

use Shape::*;

/// Every variable the gateway reads, the key it sets, and how its text is read. When two rows
/// set one key, the later row wins: `AWS_REGION` over `AWS_DEFAULT_REGION`.
const TABLE: &[(&str, &str, Shape)] = &[
    ("HOST", "server.host", Text),
    ("PORT", "server.port", Text),
    ("MAX_REQUEST_BYTES", "server.max_request_bytes", Text),
    ("MAX_IN_FLIGHT", "server.max_in_flight", Text),
    ("METRICS_PORT", "server.metrics_port", Text),
    ("METRICS_HOST", "server.metrics_host", Text),
    ("MAX_JSON_VALUES", "server.max_json_values", Text),
    (
        "MAX_BODY_BYTES_IN_FLIGHT",
        "server.max_body_bytes_in_flight",
        Text,
    ),
    ("MAX_CONNECTIONS", "server.max_connections", Text),
    ("SERVER_THREADS", "server.threads", Text),
    (
        "FIRST_REQUEST_TIMEOUT_MS",
        "server.first_request_timeout_ms",
        Text,
    ),
    ("IDLE_TIMEOUT_MS", "server.idle_timeout_ms", Text),
    (
        "HEADER_READ_TIMEOUT_MS",
        "server.header_read_timeout_ms",
        Text,
    ),
    ("HTTP2_KEEP_ALIVE_MS", "server.http2_keep_alive_ms", Text),
    ("SHUTDOWN_DRAIN_SECS", "server.shutdown_drain_secs", Text),
    ("API_KEY", "auth.api_keys", List),
    ("AUTH_DISABLED", "auth.disabled", Text),
    (
        "AWS_CLIENT_CREDENTIALS",
        "auth.aws_credentials",
        AwsCredentials,
    ),
    (
        "MAX_CONCURRENT_PER_ACCESS_KEY",
        "auth.max_concurrent_per_access_key",
        Text,
    ),
    ("KEYS_FILE", "keys.file", Text),
    ("OPENAI_API_KEY", "openai.api_key", Text),
    ("OPENAI_BASE_URL", "openai.base_url", Text),
    ("OPENAI_RESPONSES_API", "openai.responses_api", Text),
    ("AWS_DEFAULT_REGION", "bedrock.region", Text),
    ("AWS_REGION", "bedrock.region", Text),
    ("BEDROCK_ENABLED", "bedrock.enabled", Text),
    ("DEFAULT_MAX_TOKENS", "bedrock.default_max_tokens", Text),
    ("BEDROCK_MAX_N", "bedrock.max_n", Text),
    (
        "BEDROCK_EMBEDDING_CONCURRENCY",
        "bedrock.embedding_concurrency",
        Text,
    ),
    ("RESPONSES_MAX_STORED", "responses.max_stored", Text),
    ("RESPONSES_TTL_SECS", "responses.ttl_secs", Text),
    ("RESPONSES_REDIS_URL", "responses.redis_url", Text),
    ("MOCK_PROVIDER", "mock.enabled", Text),
    ("RETRY_MAX_ATTEMPTS", "retry.max_attempts", Text),
    ("CONNECT_TIMEOUT_MS", "timeouts.connect_ms", Text),
    ("BODY_READ_TIMEOUT_MS", "timeouts.body_read_ms", Text),
    ("FIRST_BYTE_TIMEOUT_MS", "timeouts.first_byte_ms", Text),
    ("STREAM_IDLE_TIMEOUT_MS", "timeouts.stream_idle_ms", Text),
    ("TOTAL_TIMEOUT_MS", "timeouts.total_ms", Text),
    ("LOG_LEVEL", "log.level", Text),
    ("LOG_FORMAT", "log.format", Text),
    ("LOG_FLUSH_MS", "log.flush_ms", Text),
    ("PROMPT_CACHING_AUTO", "prompt_caching.auto", List),
    ("GUARDRAILS_ALLOW_CLIENT", "guardrails.allow_client", Text),
    ("MEDIA_FETCH_ENABLED", "media_fetch.enabled", Text),
    (
        "MEDIA_FETCH_ALLOWED_HOSTS",
        "media_fetch.allowed_hosts",
        List,
    ),
    ("MEDIA_FETCH_MAX_BYTES", "media_fetch.max_bytes", Text),
    (RATE, "rate_limit.requests_per_minute", Text),
    ("RATE_LIMIT_BURST", "rate_limit.burst", Text),
    (
        "RATE_LIMIT_TOKENS_PER_MINUTE",
        "rate_limit.tokens_per_minute",
        Text,
    ),
    (REDIS_URL, "rate_limit.redis_url", Text),
];

/// The variable that turns rate limiting on from the environment.
const RATE: &str = "RATE_LIMIT_REQUESTS_PER_MINUTE";
/// Shared with other parts of a deployment, so it never turns rate limiting on by itself.
const REDIS_URL: &str = "REDIS_URL";

/// The variables that were set, as a provider: their values at their keys, and their names for
/// error messages.
#[derive(Debug, Clone)]
pub(super) struct Environment {
    values: Dict,
    /// `(key, variable)` for every variable that supplied a value.
    names: Vec<(&'static str, &'static str)>,
}

impl Environment {
    /// Reads every variable in the table through `get` (a closure, so tests need not touch the
    /// process environment). `below` is the configuration under this layer (the file): it
    /// supplies the first gateway key for `AWS_CLIENT_CREDENTIALS` when `API_KEY` is unset, and
    /// tells whether a `[rate_limit]` exists for `RATE_LIMIT_*` and `REDIS_URL` to join.
    pub(super) fn read(
        get: impl Fn(&str) -> Option<String>,
        below: &Figment,
    ) -> Result<Environment, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        // A rate limit exists when a request rate does, in the file or here. Without one,
        // REDIS_URL is left alone and a burst or token budget is a mistake worth stopping for.
        let rate_limited = below.contains("rate_limit") || get(RATE).is_some();
        let mut env = Environment {
            values: Dict::new(),
            names: Vec::new(),
        };
        for &(name, key, shape) in TABLE {
            let Some(text) = get(name) else { continue };
            if key.starts_with("rate_limit.") && !rate_limited {
                if name == REDIS_URL {
                    continue;
                }
                return Err(ConfigError::new(
                    name,
                    format!("is set but `{RATE}` is not (nor `rate_limit.requests_per_minute`): set a request rate to turn rate limiting on"),
                ));
            }
            let value = match shape {
                Text => Value::from(text),
                List => Value::from(list(&text)),
                AwsCredentials => {
                    let first_key = match get("API_KEY") {
                        Some(keys) => list(&keys).into_iter().next(),
                        None => first_file_key(below),
                    };
                    aws_credentials(name, &text, first_key.as_deref())?
                }
            };
            insert(&mut env.values, key, value);
            env.names.retain(|(k, _)| *k != key);
            env.names.push((key, name));
        }
        Ok(env)
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        let names = self.names.clone();
        // Errors and validation name the variable, never the internal key path.
        Metadata::named(SOURCE).interpolater(move |_: &Profile, path: &[&str]| {
            variable_for(&names, path).unwrap_or_else(|| path.join("."))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The variable whose key is the longest prefix of `path` (`auth.aws_credentials.0.api_key`
/// → `AWS_CLIENT_CREDENTIALS`).
fn variable_for(names: &[(&str, &'static str)], path: &[&str]) -> Option<String> {
    names
        .iter()
        .filter(|(key, _)| {
            let key: Vec<&str> = key.split('.').collect();
            path.starts_with(&key)
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(_, name)| (*name).to_owned())
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

/// The file's first non-blank gateway key, if it has one.
fn first_file_key(below: &Figment) -> Option<String> {
    below
        .find_value("auth.api_keys")
        .ok()?
        .into_array()?
        .into_iter()
        .filter_map(Value::into_string)
        .map(|k| k.trim().to_owned())
        .find(|k| !k.is_empty())
}

/// `AKID:SECRET[:API_KEY],…` as a list of `[[auth.aws_credentials]]` tables.
fn aws_credentials(name: &str, text: &str, first_key: Option<&str>) -> Result<Value, ConfigError> {
    let mut out = Vec::new();
    for item in list(text) {
        let mut parts = item.splitn(3, ':');
        let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
            return Err(ConfigError::new(
                name,
                "each entry must be ACCESS_KEY_ID:SECRET[:API_KEY]",
            ));
        };
        let api_key = match parts.next().or(first_key) {
            Some(k) if !id.is_empty() && !secret.is_empty() => k,
            _ => return Err(ConfigError::new(name, "each entry must be ACCESS_KEY_ID:SECRET[:API_KEY] (API_KEY needed when no API_KEY is configured)")),
        };
        let mut entry = Dict::new();
        entry.insert("access_key_id".into(), id.into());
        entry.insert("secret_access_key".into(), secret.into());
        entry.insert("api_key".into(), api_key.into());
        out.push(Value::from(entry));
    }
    Ok(Value::from(out))
}

/// Puts `value` at the dotted `key`, creating the tables on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((table, rest)) => {
            let entry = dict
                .entry(table.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_in_the_table_is_a_key_of_the_tree() {
        // Serialize a tree with every optional section present, so each key path exists.
        let mut c = super::super::Config::default();
        c.server.metrics_port = Some(9090);
        c.openai.api_key = Some("k".into());
        c.bedrock.region = Some("r".into());
        let mut limits = crate::rate_limit::RateLimitConfig::new(std::num::NonZeroU32::MIN);
        limits.tokens_per_minute = std::num::NonZeroU64::new(1);
        limits.redis_url = Some("redis://h".into());
        c.rate_limit = Some(limits);
        let tree = Figment::from(figment::providers::Serialized::defaults(&c));
        for (name, key, _) in TABLE {
            assert!(tree.contains(key), "{name} → {key} is not in the tree");
        }
    }
}
