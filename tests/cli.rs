//! The `open-bedrock-server` command line: help, version, `check-config` (valid and broken
//! files), and the refusal to start without a key. Every run gets a cleared environment (only
//! `PATH`) and an empty working directory, so neither the developer's variables nor a `.env` file
//! leak in; every run is bounded by a timeout.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_open-bedrock-server");
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A unique scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "obs-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The binary with `args` and exactly `env` (plus `PATH`) in `dir`, no input, standard output
/// piped.
fn command(dir: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

/// Runs the binary with `args` and exactly `env` (plus `PATH`) in `dir`; kills it after
/// [`RUN_TIMEOUT`].
fn run(dir: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = command(dir, args, env)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start open-bedrock-server");
    let started = Instant::now();
    loop {
        match child.try_wait().expect("poll the child") {
            Some(_) => break,
            None if started.elapsed() > RUN_TIMEOUT => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "open-bedrock-server {args:?} still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("collect output");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[test]
fn help_lists_every_flag_and_the_subcommand() {
    let dir = Scratch::new("help");
    let r = run(&dir, &["--help"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for needle in [
        "--config",
        "--host",
        "--port",
        "--no-auth",
        "check-config",
        "--help",
        "--version",
    ] {
        assert!(
            r.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            r.stdout
        );
    }
}

#[test]
fn version_prints_the_crate_version() {
    let dir = Scratch::new("version");
    let r = run(&dir, &["--version"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        format!("open-bedrock-server {}", env!("CARGO_PKG_VERSION"))
    );
}

const GATEWAY_SECRET: &str = "gw-key-super-secret-0123456789";
const UPSTREAM_SECRET: &str = "sk-upstream-very-secret-abcdefghij";

#[test]
fn check_config_prints_a_masked_summary_and_never_a_secret() {
    let dir = Scratch::new("check-ok");
    let config = dir.file(
        "gateway.toml",
        &format!(
            r#"
[server]
host = "127.0.0.1"
port = 9123

[auth]
api_keys = ["{GATEWAY_SECRET}"]

[openai]
base_url = "http://127.0.0.1:1/v1"
api_key = "{UPSTREAM_SECRET}"

[bedrock]
enabled = false

[retry]
max_attempts = 2
"#
        ),
    );
    let config = config.to_str().expect("a UTF-8 temp path");
    let r = run(&dir, &["--config", config, "check-config"], &[]);
    assert_eq!(
        r.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("configuration OK"), "{}", r.stdout);
    assert!(r.stdout.contains("127.0.0.1:9123"), "{}", r.stdout);
    assert!(r.stdout.contains("http://127.0.0.1:1/v1"), "{}", r.stdout);
    assert!(r.stdout.contains("api_keys"), "{}", r.stdout);
    for secret in [GATEWAY_SECRET, UPSTREAM_SECRET] {
        assert!(
            !r.stdout.contains(secret),
            "secret in stdout:\n{}",
            r.stdout
        );
        assert!(
            !r.stderr.contains(secret),
            "secret in stderr:\n{}",
            r.stderr
        );
        // Not even most of it.
        assert!(
            !r.stdout.contains(&secret[..12]),
            "secret prefix in stdout:\n{}",
            r.stdout
        );
    }

    // Command-line flags override the file, and secrets from the environment are masked too.
    let r = run(
        &dir,
        &[
            "--config",
            config,
            "--port",
            "9999",
            "--no-auth",
            "check-config",
        ],
        &[("OPENAI_API_KEY", "sk-from-env-secret-zyxwvutsrq")],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("127.0.0.1:9999"), "{}", r.stdout);
    let auth_table: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| *l != "[auth]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect();
    assert!(auth_table.contains(&"disabled = true"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("sk-from-env-secret-zyxwvutsrq"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = Scratch::new("check-unknown");
    let config = dir.file(
        "broken.toml",
        "[auth]\napi_keys = [\"k\"]\n\n[retry]\nmax_attempt = 3\n",
    );
    let r = run(
        &dir,
        &[
            "--config",
            config.to_str().expect("UTF-8 path"),
            "check-config",
        ],
        &[],
    );
    assert_eq!(
        r.code,
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("`retry.max_attempt`"),
        "the message names the key: {}",
        r.stderr
    );
    assert!(!r.stdout.contains("configuration OK"), "{}", r.stdout);
}

#[test]
fn check_config_names_a_mistyped_key() {
    let dir = Scratch::new("check-type");
    let config = dir.file("broken.toml", "[server]\nport = \"eighty\"\n");
    let r = run(
        &dir,
        &[
            "--config",
            config.to_str().expect("UTF-8 path"),
            "check-config",
        ],
        &[],
    );
    assert_eq!(
        r.code,
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains("`server.port`"),
        "the message names the key: {}",
        r.stderr
    );
    assert!(!r.stdout.contains("configuration OK"), "{}", r.stdout);
}

#[test]
fn check_config_names_a_bad_environment_value() {
    let dir = Scratch::new("check-env");
    let r = run(
        &dir,
        &["check-config"],
        &[("API_KEY", "k"), ("PORT", "eighty")],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("`PORT`"), "{}", r.stderr);
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let dir = Scratch::new("check-missing");
    let missing = dir.0.join("does-not-exist.toml");
    let r = run(
        &dir,
        &[
            "--config",
            missing.to_str().expect("UTF-8 path"),
            "check-config",
        ],
        &[],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("does-not-exist.toml"), "{}", r.stderr);
}

#[test]
fn starting_without_a_key_refuses_with_one_line_that_mentions_no_auth() {
    let dir = Scratch::new("nokey");
    let r = run(&dir, &["--port", "0"], &[("BEDROCK_ENABLED", "false")]);
    assert_eq!(
        r.code,
        Some(2),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line, got:\n{}", r.stderr);
    assert!(lines[0].contains("--no-auth"), "{}", lines[0]);
    assert!(lines[0].contains("API_KEY"), "{}", lines[0]);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}

/// The `providers:` lines of `check-config`, as `(name, "live"|"off", detail)`.
fn check_config_providers(r: &Run) -> Vec<(String, String, String)> {
    r.stdout
        .lines()
        .skip_while(|l| *l != "providers:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next().unwrap_or_default().to_owned();
            let state = it.next().unwrap_or_default().to_owned();
            (name, state, it.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// The `provider` log lines the server writes at start-up, as `(name, "live"|"off", detail)`;
/// the server is stopped once it is listening.
fn startup_providers(
    dir: &Scratch,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<(String, String, String)> {
    use std::io::{BufRead, BufReader};
    let args = [args, &["--host", "127.0.0.1", "--port", "0"]].concat();
    let env = [&[("LOG_FORMAT", "json")], env].concat();
    let mut child = command(dir, &args, &env)
        .stderr(Stdio::null())
        .spawn()
        .expect("start open-bedrock-server");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &v;
            if fields["message"] == "provider" {
                let state = if fields["live"] == true {
                    "live"
                } else {
                    "off"
                };
                found.push((
                    fields["provider"].as_str().unwrap_or_default().to_owned(),
                    state.to_owned(),
                    fields["detail"].as_str().unwrap_or_default().to_owned(),
                ));
                if found.len() == 3 {
                    break;
                }
            }
        }
        let _ = tx.send(found);
    });
    let found = rx.recv_timeout(RUN_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    found.expect("the server logged its providers")
}

#[test]
fn check_config_and_start_up_tell_the_same_truth_about_providers() {
    let dir = Scratch::new("providers");
    let base = [
        ("API_KEY", "k"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
    ];
    /// Arguments, extra environment, and the expected state of openai, bedrock and mock.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], [&'a str; 3]);
    let cases: [Case; 3] = [
        // No region anywhere: Bedrock is off, and both say why.
        (&[], &[], ["live", "off", "off"]),
        (
            &["--mock"],
            &[("AWS_REGION", "eu-west-1")],
            ["live", "live", "live"],
        ),
        (
            &[],
            &[("AWS_REGION", "eu-west-1"), ("BEDROCK_ENABLED", "false")],
            ["live", "off", "off"],
        ),
    ];
    for (args, env, states) in cases {
        let env: Vec<(&str, &str)> = base.iter().chain(env.iter()).copied().collect();
        let mut check_args = args.to_vec();
        check_args.push("check-config");
        let r = run(&dir, &check_args, &env);
        assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
        let checked = check_config_providers(&r);
        let names: Vec<&str> = checked.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, ["openai", "bedrock", "mock"], "{}", r.stdout);
        let got: Vec<&str> = checked.iter().map(|p| p.1.as_str()).collect();
        assert_eq!(got, states, "{}", r.stdout);
        assert_eq!(
            startup_providers(&dir, args, &env),
            checked,
            "{args:?} {env:?}"
        );
        if states[1] == "live" {
            assert!(checked[1].2.contains("eu-west-1"), "{checked:?}");
        } else if env.iter().any(|(k, _)| *k == "BEDROCK_ENABLED") {
            assert!(checked[1].2.contains("disabled"), "{checked:?}");
        } else {
            assert!(checked[1].2.contains("no AWS region"), "{checked:?}");
        }
    }
}

#[test]
fn check_config_lists_named_providers_and_groups_and_never_their_keys() {
    let dir = Scratch::new("check-routing");
    let key_file = dir.file("azure.key", "azure-key-very-secret-0123456789\n");
    let config = dir.file(
        "routing.toml",
        &format!(
            r#"
[auth]
api_keys = ["{GATEWAY_SECRET}"]

[bedrock]
enabled = false

[providers.azure-eu]
kind = "openai"
base_url = "https://example.openai.azure.com/openai/deployments/gpt-4o"
api_key_file = "{}"
auth_header = "api-key"
query = {{ api-version = "2024-10-21" }}

[providers.bedrock-west]
kind = "bedrock"
region = "us-west-2"
role_arn = "arn:aws:iam::123456789012:role/invoker"
external_id = "partner-7"

[model_groups.gpt-4o]
deployments = [
  {{ provider = "azure-eu", model = "gpt-4o" }},
  {{ provider = "bedrock-west", model = "us.anthropic.claude-3-5-haiku-20241022-v1:0", priority = 1 }},
]
"#,
            key_file.display()
        ),
    );
    let config = config.to_str().expect("a UTF-8 temp path");
    let r = run(&dir, &["--config", config, "check-config"], &[]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("[model_groups.gpt-4o]"), "{}", r.stdout);
    for line in [
        "azure-eu",
        "OpenAI-compatible at https://example.openai.azure.com/openai/deployments/gpt-4o",
        "bedrock-west",
        "Bedrock in us-west-2 (credentials: role arn:aws:iam::123456789012:role/invoker assumed with the AWS default chain)",
    ] {
        assert!(r.stdout.contains(line), "{line}:\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("very-secret"), "{}", r.stdout);

    // A key variable that is not set stops start-up, naming the provider's key.
    let broken = dir.file(
        "broken.toml",
        "[auth]\napi_keys = [\"k\"]\n[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key_env = \"P_KEY\"\n",
    );
    let r = run(
        &dir,
        &["--config", broken.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stderr.contains("providers.p.api_key_env") && r.stderr.contains("P_KEY"),
        "{}",
        r.stderr
    );
    // A group naming an unknown provider is refused before anything starts.
    let broken = dir.file(
        "broken-group.toml",
        "[auth]\napi_keys = [\"k\"]\n[model_groups.g]\ndeployments = [{ provider = \"nope\", model = \"m\" }]\n",
    );
    let r = run(
        &dir,
        &["--config", broken.to_str().unwrap(), "check-config"],
        &[],
    );
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("model_groups.g.deployments[0].provider"),
        "{}",
        r.stderr
    );
}

#[test]
fn keys_new_prints_a_key_and_an_entry_the_keys_file_accepts() {
    use sha2::Digest as _;
    let dir = Scratch::new("keysnew");
    let r = run(&dir, &["keys", "new", "--id", "team-x"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let key = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("# sk-obs-"))
        .map(|k| format!("sk-obs-{k}"))
        .unwrap_or_else(|| panic!("no key printed:\n{}", r.stdout));
    let entry: String = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    assert!(
        entry.contains(&format!("sha256 = \"{hash}\"")) && entry.contains("id = \"team-x\""),
        "{entry}"
    );
    assert!(!entry.contains(&key), "the file never holds the key itself");
    let again = run(&dir, &["keys", "new"], &[]);
    assert!(!again.stdout.contains(&key), "every key is fresh");

    // The printed entry is a keys file the gateway starts with, without API_KEY.
    let file = dir.file("keys.toml", &entry);
    let r = run(
        &dir,
        &["check-config"],
        &[
            ("KEYS_FILE", file.to_str().unwrap()),
            ("BEDROCK_ENABLED", "false"),
        ],
    );
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("configuration OK"), "{}", r.stdout);
    // A broken keys file stops start-up with the key and field named.
    let bad = dir.file("bad.toml", "[[keys]]\nid = \"team-y\"\nsha256 = \"xyz\"\n");
    let r = run(
        &dir,
        &["check-config"],
        &[
            ("KEYS_FILE", bad.to_str().unwrap()),
            ("BEDROCK_ENABLED", "false"),
        ],
    );
    assert_eq!(r.code, Some(2), "{}", r.stdout);
    assert!(
        r.stderr.contains("team-y") && r.stderr.contains("sha256"),
        "{}",
        r.stderr
    );
}

#[test]
fn invalid_aws_retry_settings_stop_start_up_not_each_bedrock_call() {
    // aws-config panics on these when it loads; the gateway loads on the first Bedrock call, so
    // it reads them at start-up and refuses there, naming them.
    let dir = Scratch::new("aws-retry");
    for (name, value) in [("AWS_MAX_ATTEMPTS", "0"), ("AWS_RETRY_MODE", "sometimes")] {
        let env = [
            ("API_KEY", "k"),
            ("AWS_REGION", "us-east-1"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            (name, value),
        ];
        for args in [&["check-config"][..], &[][..]] {
            let r = run(&dir, args, &env);
            assert_ne!(
                r.code,
                Some(0),
                "{args:?} with {name}={value}: {}",
                r.stdout
            );
            assert!(
                r.code.is_some(),
                "{args:?} with {name}={value} did not exit"
            );
            assert!(
                r.stderr.contains("AWS retry settings") && r.stderr.contains(value),
                "{args:?} with {name}={value}: {}",
                r.stderr
            );
        }
    }
}

/// One request over a fresh connection: the status line's code.
fn post_chat(addr: &str, key: &str, request_id: &str) -> u16 {
    use std::io::{Read, Write};
    let body = r#"{"model":"mock/echo","messages":[{"role":"user","content":"Hello!"}]}"#;
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the gateway");
    conn.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         x-request-id: {request_id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read the reply");
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply:?}"))
}

/// What a gateway on the mock provider logged: the JSON lines on standard output up to a short
/// while after a chat request for each of `ids` (as `x-request-id`), then every line up to its
/// graceful exit on SIGTERM. `env` is added to a JSON-logging gateway's environment.
#[cfg(unix)]
fn logged(
    tag: &str,
    env: &[(&str, &str)],
    ids: &[String],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};
    let dir = Scratch::new(tag);
    let key = "sk-logged-test";
    let base = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("API_KEY", key),
        ("MOCK_PROVIDER", "true"),
        ("BEDROCK_ENABLED", "false"),
        ("LOG_FORMAT", "json"),
    ];
    /// Kills the gateway if the test fails before its graceful exit.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Running(
        command(&dir, &[], &[&base[..], env].concat())
            .stderr(Stdio::null())
            .spawn()
            .expect("start open-bedrock-server"),
    );
    let child = &mut child.0;
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                if v["message"] == "open-bedrock-server listening" {
                    let _ = tx.send(v["address"].as_str().unwrap_or_default().to_owned());
                }
                lines.lock().unwrap().push(v);
            }
        })
    };
    let addr = rx
        .recv_timeout(RUN_TIMEOUT)
        .expect("the gateway logged its address");
    for id in ids {
        assert_eq!(post_chat(&addr, key, id), 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let running = lines.lock().unwrap().clone();
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let started = Instant::now();
    while child.try_wait().expect("poll the child").is_none() {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "no exit within {RUN_TIMEOUT:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().expect("the reader thread");
    let all = lines.lock().unwrap().clone();
    (running, all)
}

/// The request ids of the access lines among `lines`, in order.
fn access_ids(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|v| v["target"] == "access")
        .map(|v| v["request_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The access log is written in batches: with a minute's delay no access line reaches standard
/// output while the gateway runs, and the next other line (the SIGTERM's) or the graceful exit
/// writes every one of them, in order, before the lines logged after them.
#[cfg(unix)]
#[test]
fn access_lines_are_batched_and_a_graceful_exit_writes_them_all() {
    let ids: Vec<String> = (0..5).map(|i| format!("batched-{i}")).collect();
    let (running, lines) = logged("batched-log", &[("LOG_FLUSH_MS", "60000")], &ids);
    assert_eq!(
        access_ids(&running),
        Vec::<String>::new(),
        "access lines written before their batch was due"
    );
    assert_eq!(access_ids(&lines), ids, "every access line, in order");
    // The SIGTERM is logged (a line of its own, written at once) after the requests: their
    // batched lines come before it.
    let sigterm = lines
        .iter()
        .position(|v| v["message"] == "received SIGTERM")
        .expect("the SIGTERM logged");
    let last_access = lines.iter().rposition(|v| v["target"] == "access");
    assert!(last_access < Some(sigterm), "{lines:?}");
}

/// The access line the JSON log writes itself: every field, written at once with
/// `LOG_FLUSH_MS=0`, and left out exactly when `LOG_LEVEL` leaves the access event out (a
/// directive on a field the event lacks does not). `warn` is in the unit tests: it hides the
/// line this test finds the address in.
#[cfg(unix)]
#[test]
fn access_lines_follow_log_level_and_flush_zero() {
    let ids = vec!["level-0".to_owned(), "level-1".to_owned()];
    let flush = ("LOG_FLUSH_MS", "0");
    let (running, _) = logged("level-info", &[flush, ("LOG_LEVEL", "info")], &ids);
    assert_eq!(access_ids(&running), ids, "written at once: {running:?}");
    let line = running
        .iter()
        .find(|v| v["target"] == "access")
        .and_then(|v| v.as_object())
        .expect("an access line");
    // Every member (the order is held to the event's by a unit test; a parsed map sorts keys).
    let keys: std::collections::BTreeSet<&str> = line.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        std::collections::BTreeSet::from([
            "timestamp",
            "level",
            "message",
            "method",
            "path",
            "status",
            "request_id",
            "key_id",
            "model",
            "provider",
            "deployment",
            "format_in",
            "format_out",
            "stream",
            "latency_ms",
            "ttft_ms",
            "tokens_in",
            "tokens_out",
            "tokens_cache_read",
            "tokens_cache_write",
            "attempts",
            "fallbacks",
            "attempt_log",
            "cost_usd",
            "error",
            "outcome",
            "target"
        ])
    );
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "request");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "complete");
    for (tag, level, written) in [
        ("level-off", "info,access=off", false),
        ("level-field", "info,[{password}]=off", true),
    ] {
        let (_, all) = logged(tag, &[flush, ("LOG_LEVEL", level)], &ids);
        let expected = if written { ids.clone() } else { Vec::new() };
        assert_eq!(access_ids(&all), expected, "LOG_LEVEL={level}");
    }
}
