//! Loading: defaults ← TOML file ← `.env` and the environment ← command line, merged key by key
//! with figment, then validated; and printing the result with secrets masked.

use std::path::Path;

use figment::error::{Kind, OneOf};
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Profile, Provider};
use serde::Serialize;

use super::env::{self, Environment};
use super::{Config, ConfigError};

impl Config {
    /// Loads defaults ← `file` (if given) ← environment (after reading `.env` if present), and
    /// validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        load_with(file, None)
    }

    /// As [`Config::load`], with `overrides` laid over everything (the command line): a partial
    /// tree in the TOML file's shape, such as `{"server": {"port": 9000}}`. Plain values only:
    /// a [`Secret`](super::Secret) serializes masked, so passing a whole `Config` would replace
    /// its secrets with their masks.
    ///
    /// ```no_run
    /// use open_bedrock_server::config::Config;
    ///
    /// let config = Config::load_with(None, serde_json::json!({ "auth": { "disabled": true } }))?;
    /// assert!(config.auth.disabled);
    /// # Ok::<(), open_bedrock_server::config::ConfigError>(())
    /// ```
    pub fn load_with(
        file: Option<&Path>,
        overrides: impl Serialize,
    ) -> Result<Config, ConfigError> {
        let overrides = Value::serialize(overrides)
            .map_err(|e| ConfigError::new("command line", e.to_string()))?;
        load_with(file, Some(overrides))
    }

    /// The defaults laid under one TOML text, validated — no file, no environment, no command
    /// line (what the property tests and fuzz targets drive; the same loader as [`Config::load`]).
    ///
    /// ```
    /// use open_bedrock_server::config::Config;
    ///
    /// let config = Config::from_toml("[server]\nport = 9000\n").unwrap();
    /// assert_eq!(config.server.port, 9000);
    /// assert_eq!(Config::from_toml("[server]\nport = \"x\"").unwrap_err().key, "server.port");
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        load_from(Some(("config", text)), |_| None, None)
    }

    /// The tree as TOML with every secret masked: what `check-config` prints. Should the tree
    /// not print as TOML, its (equally masked) `Debug` form follows a comment saying why.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string(self)
            .unwrap_or_else(|e| format!("# not printable as TOML ({e}):\n# {self:?}\n"))
    }
}

fn load_with(file: Option<&Path>, overrides: Option<Value>) -> Result<Config, ConfigError> {
    // Variables already set win over `.env`, as dotenvy never overwrites one.
    let _ = dotenvy::dotenv();
    let text = match file {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    load_from(
        text.as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str())),
        |name| std::env::var(name).ok(),
        overrides,
    )
}

/// The loader itself, over a file's `(name, text)`, an environment and the command line's tree.
fn load_from(
    file: Option<(&str, &str)>,
    get: impl Fn(&str) -> Option<String>,
    overrides: Option<Value>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    if let Some((name, text)) = file {
        let toml = Toml::string(text);
        // A file that does not parse is reported before the environment is read, naming the file.
        toml.data()
            .map_err(|e| ConfigError::new(name, problem(&e.kind)))?;
        figment = figment.merge(toml);
    }
    let environment = Environment::read(get, &figment)?;
    figment = figment.merge(environment);
    if let Some(overrides) = overrides {
        figment = figment.merge(Serialized::defaults(overrides));
    }
    // Lossy: the environment's text reads as a number or a boolean where the tree wants one.
    let config: Config = figment
        .extract_lossy()
        .map_err(|e| extract_error(e, &figment))?;
    config
        .validate()
        .map_err(|e| from_environment(e, &figment))?;
    Ok(config)
}

/// Names the key of a figment error: the variable for a value from the environment, the TOML
/// path (`routes[0].family`) otherwise.
fn extract_error(e: figment::Error, figment: &Figment) -> ConfigError {
    let key = match &e.metadata {
        Some(source) if source.name == env::SOURCE => {
            source.interpolate(&e.profile.clone().unwrap_or_default(), &e.path)
        }
        _ if e.path.is_empty() => "configuration".to_owned(),
        _ => toml_path(&e.path, figment),
    };
    ConfigError::new(key, problem(&e.kind))
}

/// figment's message, with the expected names of an unknown key or value listed plainly.
fn problem(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(found, expected) => {
            format!("unknown key `{found}` (expected {})", OneOf(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}` (expected {})", OneOf(expected))
        }
        Kind::MissingField(name) => format!("missing key `{name}`"),
        other => other.to_string().trim_end().to_owned(),
    }
}

/// A validation error's key renamed to its variable when the value came from the environment.
fn from_environment(e: ConfigError, figment: &Figment) -> ConfigError {
    match figment.find_metadata(&e.key) {
        Some(source) if source.name == env::SOURCE => {
            let path: Vec<&str> = e.key.split('.').collect();
            ConfigError::new(source.interpolate(&Profile::Default, &path), e.problem)
        }
        _ => e,
    }
}

/// `["routes", "0", "family"]` → `routes[0].family`; keys that are not bare TOML keys are quoted
/// (`bedrock.arn_families."arn:aws:…"`).
fn toml_path(path: &[String], figment: &Figment) -> String {
    let mut out = String::new();
    let mut at = figment.find_value("").ok();
    for segment in path {
        let (next, indexed) = match at {
            Some(Value::Array(_, items)) => (
                segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i).cloned()),
                true,
            ),
            Some(Value::Dict(_, mut dict)) => (dict.remove(segment), false),
            _ => (None, false),
        };
        if indexed {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            let bare = segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare && !segment.is_empty() {
                out.push_str(segment);
            } else {
                out.push_str(&format!("{segment:?}"));
            }
        }
        at = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::LogFormat;
    use crate::route::{BedrockFamily, ProviderKind};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load_from(file.map(|text| ("test.toml", text)), env(vars), None)
    }

    fn load_cli(
        file: Option<&str>,
        vars: &[(&str, &str)],
        cli: serde_json::Value,
    ) -> Result<Config, ConfigError> {
        load_from(
            file.map(|text| ("test.toml", text)),
            env(vars),
            Some(Value::serialize(cli).unwrap()),
        )
    }

    #[test]
    fn defaults_without_file_or_environment() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.server.port, 8000);
        assert_eq!(c.timeouts, crate::config::Timeouts::default());
        assert!(c.rate_limit.is_none());
        // One serving thread per core the process may use; `0` keeps the work-stealing runtime.
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get().min(crate::config::MAX_SERVER_THREADS));
        assert_eq!(c.server.threads, cores);
        let shared = load(None, &[("SERVER_THREADS", "0")]).unwrap();
        assert_eq!(shared.server.threads, 0);
    }

    #[test]
    fn env_values_apply() {
        let c = load(
            None,
            &[
                ("API_KEY", " a, b,,c "),
                ("PORT", "9000"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
                ("RETRY_MAX_ATTEMPTS", " 2 "),
                ("LOG_FORMAT", "JSON"),
                ("LOG_FLUSH_MS", "250"),
                ("AUTH_DISABLED", "on"),
                ("BEDROCK_ENABLED", "0"),
                ("MOCK_PROVIDER", "Yes"),
                ("FIRST_BYTE_TIMEOUT_MS", "1500"),
                ("SHUTDOWN_DRAIN_SECS", "3"),
                ("METRICS_PORT", "9100"),
                ("OPENAI_API_KEY", "12345678901234"),
                ("SERVER_THREADS", "4"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.threads, 4);
        assert_eq!(c.api_keys(), ["a", "b", "c"]);
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.retry.max_attempts, 2);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.flush, Duration::from_millis(250));
        assert!(c.auth.disabled && !c.bedrock.enabled && c.mock.enabled);
        assert_eq!(c.timeouts.first_byte, Duration::from_millis(1500));
        assert_eq!(c.server.shutdown_drain, Duration::from_secs(3));
        assert_eq!(c.server.metrics_port, Some(9100));
        // Digits stay a string where the tree wants one.
        assert_eq!(
            c.openai.api_key.as_ref().map(|k| k.expose()),
            Some("12345678901234")
        );
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let c = load(
            Some("[server]\nport = 8080\n[auth]\napi_keys = [\"file-key\"]\n"),
            &[("PORT", ""), ("API_KEY", "  "), ("LOG_LEVEL", "\t")],
        )
        .unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.api_keys(), ["file-key"]);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn env_overrides_the_file_and_the_command_line_overrides_both() {
        let file = "[server]\nhost = \"127.0.0.1\"\nport = 8080\nmax_in_flight = 7\n[auth]\ndisabled = false\n";
        let c = load(Some(file), &[("PORT", "9000")]).unwrap();
        assert_eq!(c.server.port, 9000, "env over file");
        assert_eq!(c.server.max_in_flight, 7, "the file's other keys stay");
        assert_eq!(c.server.host, IpAddr::from([127, 0, 0, 1]));

        let c = load_cli(
            Some(file),
            &[("PORT", "9000"), ("AUTH_DISABLED", "false")],
            serde_json::json!({"server": {"port": 9999}, "auth": {"disabled": true}, "mock": {"enabled": true}}),
        )
        .unwrap();
        assert_eq!(c.server.port, 9999, "command line over env and file");
        assert!(c.auth.disabled && c.mock.enabled);
        assert_eq!(c.server.host, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn aws_region_wins_over_aws_default_region() {
        let c = load(None, &[("AWS_DEFAULT_REGION", "eu-west-1")]).unwrap();
        assert_eq!(c.bedrock.region.as_deref(), Some("eu-west-1"));
        let c = load(
            None,
            &[
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_REGION", "us-east-2"),
            ],
        )
        .unwrap();
        assert_eq!(c.bedrock.region.as_deref(), Some("us-east-2"));
    }

    #[test]
    fn aws_client_credentials_from_env_and_toml() {
        let c = load(
            None,
            &[
                ("API_KEY", "gw1,gw2"),
                ("AWS_CLIENT_CREDENTIALS", "AKID1:sec/ret, AKID2:s2:gw2"),
            ],
        )
        .unwrap();
        let got: Vec<(&str, &str, &str)> = c
            .auth
            .aws_credentials
            .iter()
            .map(|a| {
                (
                    a.access_key_id.as_str(),
                    a.secret_access_key.expose(),
                    a.api_key.expose(),
                )
            })
            .collect();
        assert_eq!(got, [("AKID1", "sec/ret", "gw1"), ("AKID2", "s2", "gw2")]);
        assert!(!format!("{:?}", c.auth.aws_credentials).contains("sec/ret"));

        // Without API_KEY, the first key comes from the file.
        let c = load(
            Some("[auth]\napi_keys = [\" \", \"file-key\"]\n"),
            &[("AWS_CLIENT_CREDENTIALS", "AKID1:s1")],
        )
        .unwrap();
        assert_eq!(c.auth.aws_credentials[0].api_key.expose(), "file-key");

        for bad in ["AKID1", "AKID1:s1", ":s1:k", "AKID1::k"] {
            let e = load(None, &[("AWS_CLIENT_CREDENTIALS", bad)]).unwrap_err();
            assert_eq!(e.key, "AWS_CLIENT_CREDENTIALS", "{bad}: {e}");
        }

        let c = load(Some("[auth]\napi_keys = [\"k\"]\n[[auth.aws_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\napi_key = \"k\"\n"), &[]).unwrap();
        assert_eq!(c.auth.aws_credentials[0].access_key_id, "A");
    }

    #[test]
    fn redis_url_alone_creates_no_rate_limit() {
        let c = load(None, &[("REDIS_URL", "redis://h:6379")]).unwrap();
        assert!(c.rate_limit.is_none());
        let c = load(
            None,
            &[
                ("REDIS_URL", "redis://h:6379"),
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", " "),
            ],
        )
        .unwrap();
        assert!(c.rate_limit.is_none(), "an empty rate is no rate");
        // …but joins a [rate_limit] from the file.
        let c = load(
            Some("[rate_limit]\nrequests_per_minute = 60\n"),
            &[("REDIS_URL", "redis://h:6379")],
        )
        .unwrap();
        let r = c.rate_limit.unwrap();
        assert_eq!(r.redis_url.as_deref(), Some("redis://h:6379"));
        assert_eq!(r.requests_per_minute.get(), 60);
    }

    #[test]
    fn rate_limit_from_env_combines_with_the_files_key_overrides() {
        let c = load(
            Some("[rate_limit]\nrequests_per_minute = 60\n[rate_limit.keys.key-1]\nburst = 100\n"),
            &[
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "600"),
                ("RATE_LIMIT_BURST", " 5 "),
                ("RATE_LIMIT_TOKENS_PER_MINUTE", "90000"),
                ("REDIS_URL", "redis://127.0.0.1:6379/0"),
            ],
        )
        .unwrap();
        let r = c.rate_limit.unwrap();
        assert_eq!(r.requests_per_minute.get(), 600);
        assert_eq!(r.burst, 5);
        assert_eq!(r.tokens_per_minute.map(|t| t.get()), Some(90000));
        assert_eq!(r.redis_url.as_deref(), Some("redis://127.0.0.1:6379/0"));
        assert_eq!(r.keys["key-1"].burst, Some(100));

        let c = load(None, &[("RATE_LIMIT_REQUESTS_PER_MINUTE", "60")]).unwrap();
        assert_eq!(c.rate_limit.unwrap().burst, 0);
    }

    #[test]
    fn rate_limit_errors_name_the_variable() {
        let e = load(None, &[("RATE_LIMIT_TOKENS_PER_MINUTE", "10")]).unwrap_err();
        assert_eq!(e.key, "RATE_LIMIT_TOKENS_PER_MINUTE", "{e}");
        assert!(e.problem.contains("RATE_LIMIT_REQUESTS_PER_MINUTE"), "{e}");
        let e = load(None, &[("RATE_LIMIT_REQUESTS_PER_MINUTE", "0")]).unwrap_err();
        assert_eq!(e.key, "RATE_LIMIT_REQUESTS_PER_MINUTE", "{e}");
        let e = load(
            None,
            &[
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "10"),
                ("RATE_LIMIT_BURST", "many"),
            ],
        )
        .unwrap_err();
        assert_eq!(e.key, "RATE_LIMIT_BURST", "{e}");
        assert!(e.problem.contains("many"), "{e}");
        let e = load(
            None,
            &[
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "10"),
                ("REDIS_URL", "http://:pw@host"),
            ],
        )
        .unwrap_err();
        assert!(
            e.problem.contains("REDIS_URL") && !e.problem.contains("pw"),
            "{e}"
        );
        let e = load(
            None,
            &[
                ("RATE_LIMIT_REQUESTS_PER_MINUTE", "4294967295"),
                ("RATE_LIMIT_BURST", "1"),
            ],
        )
        .unwrap_err();
        assert!(e.problem.contains("too large"), "{e}");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("PORT", "99999"),
            ("HOST", "localhost"),
            ("AUTH_DISABLED", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("LOG_FLUSH_MS", "60001"),
            ("LOG_FLUSH_MS", "soon"),
            ("OPENAI_BASE_URL", "ftp://x"),
            ("RETRY_MAX_ATTEMPTS", "0"),
            ("DEFAULT_MAX_TOKENS", "0"),
            ("TOTAL_TIMEOUT_MS", "0"),
            ("MAX_REQUEST_BYTES", "12"),
            ("SERVER_THREADS", "1025"),
            ("SERVER_THREADS", "-1"),
        ] {
            let e = load(None, &[(var, value)]).unwrap_err();
            assert_eq!(e.key, var, "{var}={value}: {e}");
            assert_eq!(
                e.to_string(),
                format!("configuration error in `{var}`: {}", e.problem)
            );
        }
    }

    #[test]
    fn bad_file_values_name_the_toml_path() {
        let e = load(Some("[retry]\nmax_attempt = 3\n"), &[]).unwrap_err();
        assert_eq!(e.key, "retry.max_attempt", "{e}");
        assert!(e.problem.contains("max_attempt"), "{e}");
        let e = load(
            Some("[auth]\napi_keys = [\"k\"]\n\n[server]\nport = \"eighty\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "server.port", "{e}");
        let e = load(Some("[server]\nport = 99999\n"), &[]).unwrap_err();
        assert_eq!(e.key, "server.port", "{e}");
        let e = load(Some("[retry]\nmax_attempts = 0\n"), &[]).unwrap_err();
        assert_eq!(e.key, "retry.max_attempts", "{e}");
        let e = load(
            Some("[[routes]]\nprefix = \"x\"\nprovider = \"openai\"\n[[routes]]\nprefix = \"y\"\nprovider = \"azure\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "routes[1].provider", "{e}");
        assert!(e.problem.contains("`openai` or `bedrock`"), "{e}");
        let e = load(Some("[[routes]]\nprovider = \"openai\"\n"), &[]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.problem.as_str()),
            ("routes[0]", "missing key `prefix`")
        );
        let e = load(
            Some("[[routes]]\nprefix = \"x\"\nprovider = \"bedrock\"\nfamily = \"llama\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "routes[0].family", "{e}");
        let e = load(
            Some("[bedrock.arn_families]\n\"arn:aws:bedrock:x\" = \"gpt\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "bedrock.arn_families.\"arn:aws:bedrock:x\"", "{e}");
        let e = load(
            Some("[bedrock.default_max_tokens_by_family]\nllama = 5\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "bedrock.default_max_tokens_by_family.llama", "{e}");
        let e = load(Some("[retry\n"), &[]).unwrap_err();
        assert_eq!(e.key, "test.toml", "a syntax error names the file: {e}");
        // The file's error comes first, even when the environment has one too.
        let e = load(Some("[retry\n"), &[("AWS_CLIENT_CREDENTIALS", "x")]).unwrap_err();
        assert_eq!(e.key, "test.toml", "{e}");
    }

    #[test]
    fn toml_file_applies() {
        let c = load(
            Some(
                r#"
            [server]
            port = 8080
            stream_keep_alive_secs = 5
            [models.aliases]
            claude = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
            [[routes]]
            prefix = "local-"
            provider = "openai"
            [[routes]]
            prefix = "titan-"
            provider = "bedrock"
            family = "Titan"
            [bedrock.arn_families]
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/x" = "anthropic"
            [timeouts]
            first_byte_ms = 1500
            [bedrock.default_max_tokens_by_family]
            claude = 2048
            titan = 512
            converse = 1000
            [log]
            format = "pretty"
            "#,
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.server.stream_keep_alive, Duration::from_secs(5));
        assert_eq!(c.timeouts.first_byte, Duration::from_millis(1500));
        assert_eq!(c.bedrock.claude_default_max_tokens(), 2048);
        assert_eq!(c.bedrock.titan_default_max_tokens(), Some(512));
        assert_eq!(c.bedrock.converse_default_max_tokens(), Some(1000));
        assert_eq!(c.log.format, LogFormat::Text);
        let router = c.router();
        assert_eq!(
            router.resolve("claude").unwrap().kind,
            ProviderKind::Bedrock(BedrockFamily::Claude)
        );
        assert_eq!(
            router.resolve("local-llama").unwrap().kind,
            ProviderKind::OpenAi
        );
        assert_eq!(
            router.resolve("titan-x").unwrap().kind,
            ProviderKind::Bedrock(BedrockFamily::Titan)
        );
        assert_eq!(
            router
                .resolve("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/x")
                .unwrap()
                .kind,
            ProviderKind::Bedrock(BedrockFamily::Claude)
        );
    }

    #[test]
    fn masked_toml_round_trips_everything_but_secrets() {
        let file = r#"
            [auth]
            api_keys = ["sk-gateway-very-secret"]
            disabled = true
            [[auth.aws_credentials]]
            access_key_id = "AKID"
            secret_access_key = "aws-very-secret-key"
            api_key = "sk-gateway-very-secret"
            [openai]
            api_key = "sk-openai-very-secret"
            [models.aliases]
            fast = "gpt-4o-mini"
            [[routes]]
            prefix = "local-"
            provider = "openai"
            [rate_limit]
            requests_per_minute = 60
            redis_url = "redis://user:hunter2-very-secret@redis:6379/0"
            [rate_limit.keys.key-1]
            burst = 5
        "#;
        let c = load(Some(file), &[("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")]).unwrap();
        let printed = c.to_masked_toml();
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("sk-g…(22 chars)"), "{printed}");
        assert!(printed.contains("redis://****@redis:6379/0"), "{printed}");
        assert!(
            printed.contains("[auth]\napi_keys = [\"sk-g…(22 chars)\"]\ndisabled = true\n"),
            "{printed}"
        );
        assert!(
            printed.contains("base_url = \"http://127.0.0.1:1/v1\""),
            "{printed}"
        );
        assert!(printed.contains("fast = \"gpt-4o-mini\""), "{printed}");
        assert!(printed.contains("first_byte_ms = 120000"), "{printed}");
        // Everything but the secrets reads back as the same tree.
        let back = load(Some(&printed), &[]).unwrap();
        assert_eq!(back.server, c.server);
        assert_eq!(back.models, c.models);
        assert_eq!(back.routes, c.routes);
        assert_eq!(back.timeouts, c.timeouts);
        assert_eq!(back.bedrock, c.bedrock);
    }
}
