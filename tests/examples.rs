//! The examples as their users run them: each example binary is started as a child process (on
//! `127.0.0.1:0`, in front of an in-process fake upstream where it needs one), found through the
//! `listening on <addr>` line it prints, and exercised with real HTTP requests.
//!
//! The binaries live next to this test (`target/<profile>/examples/<name>`); each test first runs
//! `cargo build --example <name>` with the same profile, features and target directory, so
//! `cargo test --test examples` never runs a missing or stale example.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::{self, Fake};
use common::{send, TestResponse, KEY, UPSTREAM_KEY};
use http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long building one example may take (the library is already built by then).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an example may take to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The example binary `name`, built fresh: `target/<profile>/examples/<name>`, next to this test
/// binary (`target/<profile>/deps/examples-<hash>`).
///
/// A plain `cargo test` builds the examples, but `cargo test --test examples` does not (and
/// `--examples` only builds them as test harnesses), so the binary may be missing or stale: build
/// it here with `cargo build --example <name>` for the same profile, features and target dir (a
/// no-op when it is fresh).
fn example_binary(name: &str) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));

    let _one_build_at_a_time = BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => {}
    }
    if cfg!(feature = "redis") {
        cmd.args(["--features", "redis"]);
    }
    let mut build = cmd
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run cargo to build example {name}: {e}"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = build.try_wait().expect("poll cargo build") {
            break status;
        }
        if started.elapsed() > BUILD_TIMEOUT {
            let _ = build.kill();
            let _ = build.wait();
            panic!("cargo build --example {name} did not finish within {BUILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "cargo build --example {name} failed ({status})"
    );
    assert!(
        bin.exists(),
        "example binary {} missing after the build",
        bin.display()
    );
    bin
}

/// A running example; killed when dropped.
struct Example {
    name: &'static str,
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Example {
    /// Starts example `name` with exactly `env` (plus `PATH`), in an empty working directory so no
    /// `.env` file is picked up, and waits for its `listening on <addr>` line.
    async fn start(name: &'static str, env: &[(&str, &str)]) -> Example {
        let workdir = unique_temp_dir(name);
        let mut cmd = Command::new(example_binary(name));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .current_dir(&workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let addr = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Some(addr.trim().to_owned());
                }
            }
            None
        })
        .await;
        let addr = match addr {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!(
                "example {name} exited before listening (status {:?}); stderr:\n{}",
                child.try_wait().ok().flatten(),
                stderr.lock().expect("stderr lock")
            ),
            Err(_) => panic!(
                "example {name} did not print `listening on` within {START_TIMEOUT:?}; stderr:\n{}",
                stderr.lock().expect("stderr lock")
            ),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let _ = std::fs::remove_dir_all(&workdir);
        Example {
            name,
            child,
            addr,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Panics (with the child's stderr) if the example died.
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "example {} exited with {status}; stderr:\n{}",
                self.name,
                self.stderr.lock().expect("stderr lock")
            );
        }
    }
}

fn unique_temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "obs-example-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// The environment for an example in front of the fake OpenAI upstream `fake`.
fn gateway_env(fake: &Fake) -> Vec<(&'static str, String)> {
    vec![
        ("OPENAI_BASE_URL", format!("{}/v1", fake.url())),
        ("OPENAI_API_KEY", UPSTREAM_KEY.to_owned()),
        ("API_KEY", KEY.to_owned()),
        ("BEDROCK_ENABLED", "false".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("RETRY_MAX_ATTEMPTS", "1".to_owned()),
    ]
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello there"}
        ]
    })
}

fn assert_openai_complete(res: &TestResponse, text: &str) {
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["object"], "chat.completion", "{r}");
    assert_eq!(r["choices"][0]["message"]["role"], "assistant", "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], text, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
}

fn assert_openai_stream(res: &TestResponse, text: &str) {
    assert_eq!(res.status, 200, "{}", res.text());
    let content_type = res
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let data = res.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{chunks:?}"
    );
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{chunks:?}"
    );
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(
        chunks.iter().any(|c| c["choices"]
            .get(0)
            .is_some_and(|c| c["finish_reason"] == "stop")),
        "{chunks:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// examples/serve.rs

#[tokio::test]
async fn serve_example_proxies_complete_and_streamed_chat() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let env = gateway_env(&upstream);
    let mut ex = Example::start("serve", &as_refs(&env)).await;
    let url = ex.url("/v1/chat/completions");

    let res = send(Method::POST, &url, Some(KEY), Some(&openai_body(false))).await;
    assert_openai_complete(&res, "You said: hello there");

    let res = send(Method::POST, &url, Some(KEY), Some(&openai_body(true))).await;
    assert_openai_stream(&res, "You said: hello there");

    // What the upstream saw: the OpenAI path, the upstream key (never the gateway key).
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for rec in &seen {
        assert_eq!(rec.path, "/v1/chat/completions");
        assert_eq!(
            rec.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
    }

    // Auth is on: no key, no answer, and nothing reaches the upstream.
    let res = send(Method::POST, &url, None, Some(&openai_body(false))).await;
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(upstream.count(), 2);

    // The rest of the stack is there too.
    let res = send(Method::GET, &ex.url("/health"), None, None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    ex.assert_alive();
}

#[tokio::test]
async fn serve_example_refuses_to_start_without_a_key() {
    let bin = example_binary("serve");
    let workdir = unique_temp_dir("serve-nokey");
    let run = Command::new(bin)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BEDROCK_ENABLED", "false")
        .env("PORT", "0")
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("serve exits in time")
        .expect("serve runs");
    let _ = std::fs::remove_dir_all(&workdir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("API_KEY") && stderr.contains("AUTH_DISABLED"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
}

// ---------------------------------------------------------------------------------------------
// examples/axum_mount.rs

#[tokio::test]
async fn axum_mount_example_serves_its_own_routes_and_the_gateway_under_llm() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let env = gateway_env(&upstream);
    let mut ex = Example::start("axum_mount", &as_refs(&env)).await;

    // The app's own routes.
    let res = send(Method::GET, &ex.url("/"), None, None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "my app");
    let res = send(Method::GET, &ex.url("/users"), None, None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let users = res.json();
    assert_eq!(users[0]["name"], "Ada", "{users}");
    assert_eq!(users.as_array().map(Vec::len), Some(2), "{users}");

    // The gateway under /llm: nest_service strips the prefix, so the gateway's own routes match.
    let chat = ex.url("/llm/v1/chat/completions");
    let res = send(Method::POST, &chat, Some(KEY), Some(&openai_body(false))).await;
    assert_openai_complete(&res, "You said: hello there");
    let res = send(Method::POST, &chat, Some(KEY), Some(&openai_body(true))).await;
    assert_openai_stream(&res, "You said: hello there");
    assert!(
        res.headers.contains_key("x-request-id"),
        "the gateway's own layers ran"
    );

    let res = send(Method::GET, &ex.url("/llm/v1/models"), Some(KEY), None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["object"], "list");
    let res = send(Method::GET, &ex.url("/llm/health"), None, None).await;
    assert_eq!(res.status, 200, "{}", res.text());

    // The gateway's auth applies under the prefix, and only there.
    let res = send(Method::POST, &chat, None, Some(&openai_body(false))).await;
    assert_eq!(res.status, 401, "{}", res.text());
    // Without the prefix the path is the app's, which has no such route.
    let res = send(
        Method::POST,
        &ex.url("/v1/chat/completions"),
        Some(KEY),
        Some(&openai_body(false)),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text());
    // An unknown path under the prefix is the gateway's 404, in the OpenAI error shape.
    let res = send(Method::GET, &ex.url("/llm/nope"), Some(KEY), None).await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert!(res.json()["error"]["message"].is_string(), "{}", res.text());

    // The upstream was called on its own path, twice (complete + stream), plus the model list.
    let chats = upstream
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count();
    assert_eq!(chats, 2);
    ex.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// examples/custom_stack.rs

fn claude_body(stream: bool) -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "max_tokens": 100,
        "stream": stream,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
            {"role": "user", "content": [{"type": "text", "text": "Tell me"}]}
        ]
    })
}

fn titan_body(stream: bool) -> Value {
    json!({
        "model": "amazon.titan-text-express-v1",
        "stream": stream,
        "inputText": "Be brief.\n\nUser: Hi\nBot: Hello!\nUser: Tell me\nBot:",
        "textGenerationConfig": {"maxTokenCount": 100}
    })
}

#[tokio::test]
async fn custom_stack_example_accepts_every_format_without_an_upstream() {
    let mut ex = Example::start("custom_stack", &[("HOST", "127.0.0.1"), ("PORT", "0")]).await;
    let base = ex.url("/v1/chat/completions");
    let claude_url = format!("{base}?target_format=bedrock_claude");
    let titan_url = format!("{base}?target_format=bedrock_titan");

    // OpenAI in, OpenAI out.
    let res = send(Method::POST, &base, None, Some(&openai_body(false))).await;
    assert_openai_complete(&res, "You said: hello there");
    let res = send(Method::POST, &base, None, Some(&openai_body(true))).await;
    assert_openai_stream(&res, "You said: hello there");

    // Claude in, Claude out (complete).
    let res = send(Method::POST, &claude_url, None, Some(&claude_body(false))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["type"], "message", "{r}");
    assert_eq!(r["role"], "assistant", "{r}");
    assert_eq!(
        r["content"],
        json!([{"type": "text", "text": "You said: Tell me"}]),
        "{r}"
    );
    assert_eq!(r["stop_reason"], "end_turn", "{r}");
    assert!(
        r["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );

    // Claude in, Claude out (streamed): Anthropic's event sequence.
    let res = send(Method::POST, &claude_url, None, Some(&claude_body(true))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let events = res.sse_events();
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(names.contains(&"message_delta"), "{names:?}");
    let text: String = events
        .iter()
        .filter(|(e, _)| e.as_deref() == Some("content_block_delta"))
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: Tell me");
    let delta = events
        .iter()
        .find(|(e, _)| e.as_deref() == Some("message_delta"))
        .map(|(_, d)| d.clone())
        .expect("a message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{delta}");

    // Claude in, OpenAI out (no target_format: the default).
    let res = send(Method::POST, &base, None, Some(&claude_body(false))).await;
    assert_openai_complete(&res, "You said: Tell me");

    // Titan in, Titan out (complete and streamed).
    let res = send(Method::POST, &titan_url, None, Some(&titan_body(false))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["results"][0]["outputText"], "You said: Tell me", "{r}");
    assert_eq!(r["results"][0]["completionReason"], "FINISH", "{r}");
    assert!(r["inputTextTokenCount"].is_u64(), "{r}");

    let res = send(Method::POST, &titan_url, None, Some(&titan_body(true))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let chunks: Vec<Value> = res
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).expect("Titan chunk is JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["outputText"].as_str())
        .collect();
    assert_eq!(text, "You said: Tell me");
    assert_eq!(
        chunks.last().map(|c| c["completionReason"].clone()),
        Some(json!("FINISH")),
        "{chunks:?}"
    );

    // Titan in, Claude out.
    let res = send(Method::POST, &claude_url, None, Some(&titan_body(false))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["content"][0]["text"], "You said: Tell me");

    // Detection's errors: an unknown target format, an unknown body shape.
    let res = send(
        Method::POST,
        &format!("{base}?target_format=yaml"),
        None,
        Some(&openai_body(false)),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("target_format"), "{}", res.text());
    let res = send(Method::POST, &base, None, Some(&json!({"prompt": "hi"}))).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(
        res.json()["error"]["code"],
        "unknown_format",
        "{}",
        res.text()
    );
    ex.assert_alive();
}

#[tokio::test]
async fn axum_layers_example_puts_the_gateways_layers_on_its_own_router() {
    let mut ex = Example::start("axum_layers", &[("HOST", "127.0.0.1"), ("PORT", "0")]).await;
    const APP_KEY: &str = "my-app-key";
    // The gateway's auth guards the app's own handler.
    let res = send(Method::GET, &ex.url("/hello"), None, None).await;
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "invalid_api_key");
    let res = send(Method::GET, &ex.url("/hello"), Some(APP_KEY), None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), "hello from the app's own handler");
    assert!(res.headers.contains_key("x-ratelimit-remaining-requests"));

    // Detection + translation in front of the mock provider: every format in, every format out.
    let chat = ex.url("/v1/chat/completions");
    let body =
        json!({"model": "mock/echo", "messages": [{"role": "user", "content": "hello there"}]});
    let res = send(Method::POST, &chat, Some(APP_KEY), Some(&body)).await;
    assert_openai_complete(&res, "You said: hello there");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let res = send(Method::POST, &chat, Some(APP_KEY), Some(&streamed)).await;
    assert_openai_stream(&res, "You said: hello there");
    let claude = json!({"anthropic_version": "bedrock-2023-05-31", "model": "mock/echo",
        "max_tokens": 20, "messages": [{"role": "user", "content": "hello there"}]});
    let res = send(
        Method::POST,
        &format!("{chat}?target_format=bedrock_claude"),
        Some(APP_KEY),
        Some(&claude),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["content"][0]["text"], "You said: hello there");
    ex.assert_alive();
}

/// The README's library example is the example's own code, word for word.
#[test]
fn the_readme_library_example_is_the_axum_layers_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/examples/axum_layers.rs")).unwrap();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start =
        example.find("// README: begin\n").expect("begin marker") + "// README: begin\n".len();
    let end = example.find("    // README: end").expect("end marker");
    let snippet: String = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        readme.contains(snippet.trim_end()),
        "README.md lacks the example's code:\n{snippet}"
    );
}
