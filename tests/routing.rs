//! Routing across deployments, end to end: the real gateway on 127.0.0.1:0 in front of several
//! fake upstreams (OpenAI-compatible servers, and Bedrock "regions" reached through endpoint
//! overrides), configured the way a user writes it (`[providers.*]`, `[model_groups.*]`).
//!
//! Every test asserts what the client got and what each upstream received. No timed assertions:
//! cooldowns are configured short or long enough that the test does not depend on how fast the
//! machine is, and waits are bounded polls.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::fake::{self, Fake, Recorded, Reply};
use common::{post, send, start_gateway_from_config, TestGateway, TestResponse, KEY};
use http::Method;
use open_bedrock_server::config::{BedrockProviderConfig, Config};
use open_bedrock_server::provider::group::{Deployment, ModelGroup};
use open_bedrock_server::provider::BedrockProvider;
use open_bedrock_server::route::{BedrockFamily, ProviderKind, Route};
use open_bedrock_server::GatewayBuilder;
use serde_json::{json, Value};

const CLAUDE_FAILING: &str = "anthropic.claude-fail-500-v1:0";
const CLAUDE_MIDSTREAM: &str = "anthropic.claude-midstream-error-v1:0";
const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A file holding `content`, removed when dropped (a key file, as a mounted secret would be).
struct KeyFile(PathBuf);

impl KeyFile {
    fn new(name: &str, content: &str) -> KeyFile {
        let path = std::env::temp_dir().join(format!(
            "obs-routing-{}-{name}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&path, format!("{content}\n")).unwrap();
        KeyFile(path)
    }
    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A gateway configuration from TOML, with the test key, the implicit Bedrock off and fast
/// retries.
fn config(toml_text: &str) -> Config {
    let mut c: Config = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    c.auth.api_keys = vec![KEY.into()];
    c.bedrock.enabled = false;
    c.retry.base_delay = Duration::from_millis(1);
    c.retry.max_delay = Duration::from_millis(5);
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    c
}

/// A `[providers.<name>]` table for a fake Bedrock region at `fake`, with a Bedrock API key read
/// from `key`.
fn bedrock_region(name: &str, region: &str, fake: &Fake, key: &KeyFile) -> String {
    format!(
        "[providers.{name}]\nkind = \"bedrock\"\nregion = \"{region}\"\nendpoint_url = \"{}\"\napi_key_file = \"{}\"\n",
        fake.url(),
        key.path()
    )
}

fn openai_provider(name: &str, fake: &Fake) -> String {
    format!(
        "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n",
        fake.url()
    )
}

/// Outlier ejection off: every request tries every deployment in order.
const NO_EJECTION: &str = "consecutive_failures = 0\nfailure_rate = 0.0\n";

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn header<'a>(res: &'a TestResponse, name: &str) -> Option<&'a str> {
    res.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Chat requests the fake received (model listings and STS calls aside).
fn chats(fake: &Fake) -> Vec<Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path != "/")
        .collect()
}

async fn metrics(gw: &TestGateway) -> String {
    send(Method::GET, &gw.url("/metrics"), Some(KEY), None)
        .await
        .text()
}

/// The value of the metric line that starts with `prefix` (labels in alphabetical order).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A handler that throttles while `throttled` is set, and answers like `inner` otherwise.
fn throttling(throttled: Arc<AtomicBool>, inner: fake::Handler) -> fake::Handler {
    Arc::new(move |req: &Recorded, n| {
        if throttled.load(Ordering::SeqCst) {
            fake::throttled(req)
        } else {
            inner(req, n)
        }
    })
}

#[tokio::test]
async fn a_weighted_split_holds_within_five_points_over_2000_requests() {
    let (a, b) = (
        Fake::start(fake::openai_smart()).await,
        Fake::start(fake::openai_smart()).await,
    );
    let region = Fake::start(fake::bedrock_smart()).await;
    let key = KeyFile::new("split", fake::AWS_BEARER);
    let gw = start_gateway_from_config(config(&format!(
        "{}{}{}
[model_groups.chat]
strategy = \"weighted\"
deployments = [
  {{ provider = \"openai-a\", model = \"gpt-4o\", weight = 5 }},
  {{ provider = \"openai-b\", model = \"gpt-4o-mini\", weight = 3 }},
  {{ provider = \"bedrock-east\", model = \"{CLAUDE}\", weight = 2 }},
]
",
        openai_provider("openai-a", &a),
        openai_provider("openai-b", &b),
        bedrock_region("bedrock-east", "us-east-1", &region, &key),
    )))
    .await;

    const N: usize = 2000;
    let gw = Arc::new(gw);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let gw = gw.clone();
        tasks.spawn(async move {
            let mut served = Vec::new();
            for i in (worker..N).step_by(16) {
                let res = post(&gw, "/v1/chat/completions", &chat("chat", &format!("n{i}"))).await;
                assert_eq!(res.status, 200, "{}", res.text());
                served.push(header(&res, "x-gateway-deployment").unwrap().to_owned());
            }
            served
        });
    }
    let mut served = Vec::new();
    while let Some(r) = tasks.join_next().await {
        served.extend(r.unwrap());
    }
    assert_eq!(served.len(), N);
    for (deployment, fake, weight) in [
        ("openai-a", &a, 5.0),
        ("openai-b", &b, 3.0),
        ("bedrock-east", &region, 2.0),
    ] {
        let by_header = served.iter().filter(|d| *d == deployment).count();
        let received = chats(fake).len();
        assert_eq!(
            by_header, received,
            "{deployment}: the header names who served"
        );
        let share = received as f64 / N as f64;
        let want = weight / 10.0;
        assert!(
            (share - want).abs() <= 0.05,
            "{deployment}: {received} of {N} ({share:.3}), weight share {want}"
        );
    }
    // Each upstream got its own model id, in its own wire format.
    assert!(chats(&a).iter().all(|r| r.json()["model"] == "gpt-4o"));
    assert!(chats(&b).iter().all(|r| r.json()["model"] == "gpt-4o-mini"));
    assert!(chats(&region).iter().all(|r| r
        .path
        .starts_with(&format!("/model/{}/invoke", CLAUDE.replace(':', "%3A")))));
    // The provider's Bedrock API key, sent by the gateway's own client (the SDK's names itself
    // in `x-amz-user-agent`).
    let bearer = format!("Bearer {}", fake::AWS_BEARER);
    assert!(chats(&region)
        .iter()
        .all(|r| r.header("authorization") == Some(bearer.as_str())
            && r.header("x-amz-user-agent").is_none()));
    // Per-deployment metrics count the attempts.
    let text = metrics(&gw).await;
    let requests = metric(
        &text,
        "obs_deployment_requests_total{deployment=\"openai-a\",group=\"chat\",provider=\"openai-a\"}",
    )
    .unwrap();
    assert_eq!(requests as usize, chats(&a).len());
}

#[tokio::test]
async fn a_throttled_deployment_rests_and_comes_back_after_its_cooldown() {
    let throttled = Arc::new(AtomicBool::new(true));
    let east = Fake::start(throttling(throttled.clone(), fake::bedrock_smart())).await;
    let west = Fake::start(fake::bedrock_smart()).await;
    let backup = Fake::start(fake::openai_smart()).await;
    let key = KeyFile::new("throttle", fake::AWS_BEARER);
    // One failure ejects for 3 s: far longer than the first phase takes, and short to wait for.
    let gw = start_gateway_from_config(config(&format!(
        "{}{}{}
[model_groups.claude]
deployments = [
  {{ provider = \"bedrock-east\", model = \"{CLAUDE}\" }},
  {{ provider = \"bedrock-west\", model = \"{CLAUDE}\" }},
  {{ provider = \"openai\", model = \"gpt-4o\", name = \"backup\" }},
]
[model_groups.claude.outlier]
consecutive_failures = 1
base_ejection_ms = 3000
max_ejection_ms = 60000
",
        bedrock_region("bedrock-east", "us-east-1", &east, &key),
        bedrock_region("bedrock-west", "us-west-2", &west, &key),
        // The implicit `openai` provider, from its usual settings, is a deployment too.
        format_args!("[openai]\nbase_url = \"{}/v1\"\n", backup.url()),
    )))
    .await;

    // Throttled: every request is answered, and east, once it said so, is left alone.
    for i in 0..30 {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &chat("claude", &format!("t{i}")),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_ne!(header(&res, "x-gateway-deployment"), Some("bedrock-east"));
        assert_eq!(
            res.json()["choices"][0]["message"]["content"],
            format!("You said: t{i}")
        );
    }
    let throttled_calls = chats(&east).len();
    assert_eq!(throttled_calls, 1, "east was asked once, then rested");
    assert_eq!(chats(&west).len() + chats(&backup).len(), 30);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "obs_deployment_state{deployment=\"bedrock-east\",group=\"claude\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "obs_deployment_failures_total{deployment=\"bedrock-east\",group=\"claude\",reason=\"throttled\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "obs_deployment_fallbacks_total{deployment=\"bedrock-east\",group=\"claude\"}"
        ),
        Some(1.0)
    );

    // East recovers; after its cooldown a probe finds it healthy and traffic comes back.
    throttled.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let mut back = 0;
    for i in 0..60 {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &chat("claude", &format!("r{i}")),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        if header(&res, "x-gateway-deployment") == Some("bedrock-east") {
            back += 1;
        }
    }
    assert!(back >= 5, "east serves its share again ({back} of 60)");
    assert_eq!(
        chats(&east).len(),
        throttled_calls + back,
        "no attempt at east failed"
    );
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "obs_deployment_state{deployment=\"bedrock-east\",group=\"claude\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_dead_deployment_is_ejected() {
    let alive = Fake::start(fake::openai_smart()).await;
    // A port that is bound but not listening refuses every connection, and no other test can
    // take it meanwhile.
    let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead_url = format!("http://{}", dead_socket.local_addr().unwrap());
    let gw = start_gateway_from_config(config(&format!(
        "{}[providers.dead]\nkind = \"openai\"\nbase_url = \"{dead_url}/v1\"\n
[model_groups.chat]
strategy = \"least_outstanding\"
deployments = [
  {{ provider = \"alive\", model = \"gpt-4o\" }},
  {{ provider = \"dead\", model = \"gpt-4o\" }},
]
[model_groups.chat.outlier]
consecutive_failures = 2
base_ejection_ms = 600000
max_ejection_ms = 600000
",
        openai_provider("alive", &alive),
    )))
    .await;
    for i in 0..40 {
        let body = json!({"model": "chat", "stream": i % 2 == 0, "messages": [{"role": "user", "content": "hi"}]});
        let res = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(header(&res, "x-gateway-deployment"), Some("alive"));
        assert_eq!(header(&res, "x-gateway-provider"), Some("alive"));
    }
    assert_eq!(chats(&alive).len(), 40);
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "obs_deployment_requests_total{deployment=\"dead\",group=\"chat\",provider=\"dead\"}"
        ),
        Some(2.0),
        "two connection failures, then ejected: {text}"
    );
    assert_eq!(
        metric(
            &text,
            "obs_deployment_failures_total{deployment=\"dead\",group=\"chat\",reason=\"connect\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            "obs_deployment_state{deployment=\"dead\",group=\"chat\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "obs_deployment_ejections_total{deployment=\"dead\",group=\"chat\"}"
        ),
        Some(1.0)
    );
}

/// The text of an event-stream body's `chunk` frames (InvokeModelWithResponseStream) or its
/// Converse deltas, and the last event's type.
fn event_stream_text(body: &[u8]) -> (String, String) {
    let mut text = String::new();
    let mut last = String::new();
    for (_, event, payload) in common::read_frames(body) {
        let delta = if event == "chunk" {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(payload["bytes"].as_str().unwrap())
                .unwrap();
            let native: Value = serde_json::from_slice(&raw).unwrap();
            last = native["type"].as_str().unwrap_or("chunk").to_owned();
            native["delta"]["text"].as_str().map(str::to_owned)
        } else {
            last = event;
            payload["delta"]["text"].as_str().map(str::to_owned)
        };
        text.push_str(delta.as_deref().unwrap_or(""));
    }
    (text, last)
}

/// A fake Bedrock region serving `bedrock_model` and a fake OpenAI, behind the group `claude`:
/// the region first, OpenAI's `gpt-4o` in the next tier; ejection off.
struct Fallback {
    region: Fake,
    openai: Fake,
    gw: TestGateway,
    _key: KeyFile,
}

async fn bedrock_then_openai(bedrock_model: &str) -> Fallback {
    let region = Fake::start(fake::bedrock_smart()).await;
    let openai = Fake::start(fake::openai_smart()).await;
    let key = KeyFile::new("fallback", fake::AWS_BEARER);
    let gw = start_gateway_from_config(config(&format!(
        "{}{}
[model_groups.claude]
deployments = [
  {{ provider = \"bedrock-east\", model = \"{bedrock_model}\" }},
  {{ provider = \"openai-backup\", model = \"gpt-4o\", priority = 1 }},
]
[model_groups.claude.outlier]
{NO_EJECTION}",
        bedrock_region("bedrock-east", "us-east-1", &region, &key),
        openai_provider("openai-backup", &openai),
    )))
    .await;
    Fallback {
        region,
        openai,
        gw,
        _key: key,
    }
}

#[tokio::test]
async fn a_bedrock_group_falls_back_to_openai_in_every_client_format() {
    let Fallback {
        region, openai, gw, ..
    } = bedrock_then_openai(CLAUDE_FAILING).await;

    let claude_native = |stream: bool| {
        let mut b = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
            "messages": [{"role": "user", "content": "native"}]});
        if stream {
            b["stream"] = json!(true);
        }
        b
    };
    let messages = |stream: bool| {
        json!({"model": "claude", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "anthropic"}]})
    };
    let converse = json!({"messages": [{"role": "user", "content": [{"text": "converse"}]}]});
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "openai",
            "/v1/chat/completions".into(),
            chat("claude", "openai"),
            "openai",
        ),
        (
            "openai stream",
            "/v1/chat/completions".into(),
            json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "openai"}]}),
            "openai",
        ),
        (
            "anthropic",
            "/v1/messages".into(),
            messages(false),
            "anthropic",
        ),
        (
            "anthropic stream",
            "/v1/messages".into(),
            messages(true),
            "anthropic",
        ),
        (
            "converse",
            "/model/claude/converse".into(),
            converse.clone(),
            "converse",
        ),
        (
            "converse-stream",
            "/model/claude/converse-stream".into(),
            converse,
            "converse",
        ),
        (
            "invoke",
            "/model/claude/invoke".into(),
            claude_native(false),
            "native",
        ),
        (
            "invoke stream",
            "/model/claude/invoke-with-response-stream".into(),
            claude_native(true),
            "native",
        ),
    ];
    for (i, (what, path, body, said)) in cases.into_iter().enumerate() {
        let res = post(&gw, &path, &body).await;
        assert_eq!(res.status, 200, "{what}: {}", res.text());
        assert_eq!(
            header(&res, "x-gateway-deployment"),
            Some("openai-backup"),
            "{what}"
        );
        assert_eq!(
            header(&res, "x-gateway-provider"),
            Some("openai-backup"),
            "{what}"
        );
        let want = format!("You said: {said}");
        let ct = header(&res, "content-type").unwrap_or("").to_owned();
        match what {
            "openai" => assert_eq!(res.json()["choices"][0]["message"]["content"], want),
            "openai stream" => {
                let text: String = res
                    .sse_data()
                    .iter()
                    .filter(|d| *d != "[DONE]")
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .filter_map(|c| {
                        c["choices"][0]["delta"]["content"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect();
                assert_eq!(text, want);
                assert_eq!(res.sse_data().last().map(String::as_str), Some("[DONE]"));
            }
            "anthropic" => {
                let v = res.json();
                assert_eq!(
                    (v["type"].as_str(), v["content"][0]["text"].as_str()),
                    (Some("message"), Some(want.as_str()))
                );
            }
            "anthropic stream" => {
                let events = res.sse_events();
                assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
                let text: String = events
                    .iter()
                    .filter_map(|(_, d)| d["delta"]["text"].as_str())
                    .collect();
                assert_eq!(text, want);
            }
            "converse" => assert_eq!(res.json()["output"]["message"]["content"][0]["text"], want),
            "invoke" => assert_eq!(res.json()["content"][0]["text"], want),
            _ => {
                assert!(
                    ct.starts_with("application/vnd.amazon.eventstream"),
                    "{what}: {ct}"
                );
                let (text, last) = event_stream_text(&res.body);
                assert_eq!(text, want, "{what}");
                assert!(
                    last == "message_stop" || last == "metadata",
                    "{what}: ends with {last}"
                );
            }
        }
        // Bedrock was tried first, each time, with the body for its own family…
        let tried = chats(&region);
        assert_eq!(tried.len(), i + 1, "{what}");
        let bedrock_body = tried[i].json();
        assert!(
            bedrock_body["anthropic_version"].is_string(),
            "{what}: {bedrock_body}"
        );
        if said == "native" {
            assert_eq!(
                bedrock_body["messages"][0]["content"], "native",
                "{what}: passed through"
            );
        }
        // …and the OpenAI deployment got an OpenAI request for its own model.
        let got = chats(&openai);
        assert_eq!(got.len(), i + 1, "{what}");
        let upstream = got[i].json();
        assert_eq!(upstream["model"], "gpt-4o", "{what}");
        assert!(
            upstream.get("anthropic_version").is_none(),
            "{what}: {upstream}"
        );
        let last = &upstream["messages"].as_array().unwrap().last().unwrap()["content"];
        let last_text = match last {
            Value::String(s) => s.clone(),
            parts => parts
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect(),
        };
        assert_eq!(last_text, said, "{what}: {upstream}");
    }
}

#[tokio::test]
async fn nothing_falls_back_once_a_byte_has_been_streamed() {
    let Fallback {
        region, openai, gw, ..
    } = bedrock_then_openai(CLAUDE_MIDSTREAM).await;
    let body = json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "hello there"}]});
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200);
    assert_eq!(header(&res, "x-gateway-deployment"), Some("bedrock-east"));
    let data = res.sse_data();
    assert!(data.iter().any(|d| d.contains("You said")), "{data:?}");
    assert!(
        data.last().unwrap().contains("error"),
        "an in-band error ends it: {data:?}"
    );
    let anthropic = json!({"model": "claude", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hello there"}]});
    let res = post(&gw, "/v1/messages", &anthropic).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.sse_events().last().unwrap().0.as_deref(), Some("error"));
    assert_eq!(chats(&region).len(), 2);
    assert_eq!(
        chats(&openai).len(),
        0,
        "nothing fell back after the first byte"
    );
}

#[tokio::test]
async fn total_attempts_never_exceed_the_budget() {
    let failing: fake::Handler = Arc::new(|req: &Recorded, n| {
        if req.path.starts_with("/v1/") {
            Reply::json(
                500,
                json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
            )
        } else {
            fake::bedrock_answer(req, n)
        }
    });
    let fakes = [
        Fake::start(failing.clone()).await,
        Fake::start(failing.clone()).await,
        Fake::start(failing.clone()).await,
        Fake::start(failing).await,
    ];
    let key = KeyFile::new("budget", fake::AWS_BEARER);
    let total = |fakes: &[Fake]| fakes.iter().map(|f| chats(f).len()).sum::<usize>();
    for max_attempts in [1u32, 2, 3, 5] {
        let mut c = config(&format!(
            "{}{}{}{}
[model_groups.all-failing]
deployments = [
  {{ provider = \"o1\", model = \"gpt-4o\" }},
  {{ provider = \"o2\", model = \"gpt-4o\" }},
  {{ provider = \"b1\", model = \"{CLAUDE_FAILING}\", priority = 1 }},
  {{ provider = \"b2\", model = \"{CLAUDE_FAILING}\", priority = 1 }},
]
[model_groups.all-failing.outlier]
{NO_EJECTION}
[model_groups.one]
deployments = [{{ provider = \"o1\", model = \"gpt-4o\" }}]
",
            openai_provider("o1", &fakes[0]),
            openai_provider("o2", &fakes[1]),
            bedrock_region("b1", "us-east-1", &fakes[2], &key),
            bedrock_region("b2", "eu-west-1", &fakes[3], &key),
        ));
        c.retry.max_attempts = max_attempts;
        let gw = start_gateway_from_config(c).await;
        for stream in [false, true] {
            let before = total(&fakes);
            let body = json!({"model": "all-failing", "stream": stream, "messages": [{"role": "user", "content": "x"}]});
            let res = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(res.status, 502, "{}", res.text());
            let attempts = total(&fakes) - before;
            assert_eq!(
                attempts as u32, max_attempts,
                "max_attempts {max_attempts}: one budget for retries and fallbacks"
            );
            // Four deployments, five attempts: the fifth retries one of them, never more.
            let before_one = chats(&fakes[0]).len();
            let body = json!({"model": "one", "stream": stream, "messages": [{"role": "user", "content": "x"}]});
            let res = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(res.status, 502);
            assert_eq!(
                (chats(&fakes[0]).len() - before_one) as u32,
                max_attempts,
                "a one-deployment group retries like a plain route"
            );
        }
        let text = metrics(&gw).await;
        assert!(text.contains("obs_deployment_failures_total"), "{text}");
    }
}

#[tokio::test]
async fn an_azure_style_upstream_receives_its_api_key_header_and_api_version() {
    let azure = Fake::start(fake::openai_smart()).await;
    let key = KeyFile::new("azure", "azure-key-0123456789abcdef");
    let gw = start_gateway_from_config(config(&format!(
        "[providers.azure-eu]
kind = \"openai\"
base_url = \"{}/openai/deployments/gpt-4o-prod\"
api_key_file = \"{}\"
auth_header = \"api-key\"
headers = {{ x-ms-client-request-source = \"gateway\" }}
query = {{ api-version = \"2024-10-21\" }}
pool_max_idle = 8
[providers.azure-eu.timeouts]
connect_ms = 2000

[model_groups.gpt-4o]
deployments = [{{ provider = \"azure-eu\", model = \"gpt-4o\" }}]
",
        azure.url(),
        key.path()
    )))
    .await;
    for stream in [false, true] {
        let body = json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "azure"}]});
        let res = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(header(&res, "x-gateway-provider"), Some("azure-eu"));
    }
    let got = chats(&azure);
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(
            r.path,
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(r.header("api-key"), Some("azure-key-0123456789abcdef"));
        assert_eq!(
            r.header("authorization"),
            None,
            "the key goes in api-key only"
        );
        assert_eq!(r.header("x-ms-client-request-source"), Some("gateway"));
        assert_ne!(r.header("api-key"), Some(KEY), "never the client's key");
    }
}

#[tokio::test]
async fn a_vllm_style_upstream_without_a_key_gets_no_auth_header() {
    let vllm = Fake::start(fake::openai_smart()).await;
    let gw = start_gateway_from_config(config(&format!(
        "{}[model_groups.llama]\ndeployments = [{{ provider = \"vllm\", model = \"meta-llama/Llama-3.1-8B-Instruct\" }}]\n",
        openai_provider("vllm", &vllm)
    )))
    .await;
    let res = post(&gw, "/v1/chat/completions", &chat("llama", "hi")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let got = chats(&vllm);
    assert_eq!(got[0].json()["model"], "meta-llama/Llama-3.1-8B-Instruct");
    assert_eq!(got[0].header("authorization"), None);
    assert_eq!(got[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn a_context_window_error_goes_to_the_larger_model() {
    let handler: fake::Handler = Arc::new(|req: &Recorded, n| {
        if req.json()["model"] == "small-context" {
            Reply::json(
                400,
                json!({"error": {"message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
            )
        } else {
            fake::openai_answer(req, n)
        }
    });
    let upstream = Fake::start(handler).await;
    let gw = start_gateway_from_config(config(&format!(
        "{}
[model_groups.small]
context_window_fallback = \"large\"
deployments = [{{ provider = \"up\", model = \"small-context\" }}]
[model_groups.large]
deployments = [{{ provider = \"up\", model = \"large-context\" }}]
[model_groups.no-fallback]
deployments = [{{ provider = \"up\", model = \"small-context\" }}]
",
        openai_provider("up", &upstream)
    )))
    .await;
    let res = post(&gw, "/v1/chat/completions", &chat("small", "a long one")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(header(&res, "x-gateway-deployment"), Some("up"));
    let models: Vec<Value> = chats(&upstream)
        .iter()
        .map(|r| r.json()["model"].clone())
        .collect();
    assert_eq!(models, [json!("small-context"), json!("large-context")]);
    // Without a configured fallback, the client's 400 is the answer, after one attempt.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &chat("no-fallback", "a long one"),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(chats(&upstream).len(), 3);
}

/// Two fake OpenAI upstreams: one that answers after `delay`, one at once.
async fn slow_and_quick(delay: Duration) -> (Fake, Fake) {
    let slow: fake::Handler = Arc::new(move |req: &Recorded, n| {
        Reply::Delayed(delay, Box::new(fake::openai_answer(req, n)))
    });
    (
        Fake::start(slow).await,
        Fake::start(fake::openai_smart()).await,
    )
}

#[tokio::test]
async fn a_deployment_slower_than_its_first_byte_limit_falls_back() {
    let (slow, quick) = slow_and_quick(Duration::from_secs(30)).await;
    let gw = start_gateway_from_config(config(&format!(
        "{}[providers.slow.timeouts]\nfirst_byte_ms = 200\n{}
[model_groups.chat]
deployments = [
  {{ provider = \"slow\", model = \"gpt-4o\" }},
  {{ provider = \"quick\", model = \"gpt-4o\", priority = 1 }},
]
",
        openai_provider("slow", &slow),
        openai_provider("quick", &quick),
    )))
    .await;
    let body =
        json!({"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(header(&res, "x-gateway-deployment"), Some("quick"));
    assert_eq!(slow.count(), 1);
    assert_eq!(chats(&quick).len(), 1);
}

#[tokio::test]
async fn v1_models_lists_the_groups() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut c = config(&format!(
        "{}[model_groups.claude-sonnet]\ndeployments = [{{ provider = \"up\", model = \"gpt-4o\" }}]\n",
        openai_provider("up", &upstream)
    ));
    c.openai.base_url = format!("{}/v1", upstream.url());
    let gw = start_gateway_from_config(c).await;
    let list = send(Method::GET, &gw.url("/v1/models"), Some(KEY), None)
        .await
        .json();
    let listed = list["data"].as_array().unwrap();
    assert!(listed.iter().any(|m| m["id"] == "claude-sonnet"), "{list}");
    let res = send(
        Method::GET,
        &gw.url("/v1/models/claude-sonnet"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["id"], "claude-sonnet");
}

#[tokio::test]
async fn a_bedrock_provider_assumes_its_role_with_the_external_id() {
    let region = Fake::start(fake::bedrock_smart()).await;
    let mut c = config("");
    c.bedrock.enabled = false;
    // The base credentials come from the SDK configuration (here static; in production the
    // default chain or a profile); STS and Bedrock are both the fake.
    use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
    let base = aws_config::SdkConfig::builder()
        .endpoint_url(region.url())
        .region(aws_config::Region::new("eu-central-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            fake::AWS_ACCESS_KEY,
            fake::AWS_SECRET_KEY,
            None,
            None,
            "tests",
        )))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let settings = |external_id: &str| BedrockProviderConfig {
        role_arn: Some("arn:aws:iam::210987654321:role/bedrock-invoker-external".into()),
        external_id: Some(external_id.into()),
        role_session_name: Some("gateway-test".into()),
        ..BedrockProviderConfig::default()
    };
    let assumed = BedrockProvider::from_provider_sdk_config(
        "partner",
        &base,
        &settings("fake-external-id"),
        &c,
    )
    .await
    .unwrap();
    let wrong = BedrockProvider::from_provider_sdk_config("wrong", &base, &settings("guess"), &c)
        .await
        .unwrap();
    let route = |p: &str| Route::new(p, ProviderKind::Bedrock(BedrockFamily::Claude), CLAUDE);
    let gateway = GatewayBuilder::from_config(&c)
        .provider("partner", assumed)
        .provider("wrong", wrong)
        .model_group(
            ModelGroup::builder("partner-claude")
                .deployment(Deployment::new("partner", route("partner")))
                .build(),
        )
        .model_group(
            ModelGroup::builder("wrong-claude")
                .deployment(Deployment::new("wrong", route("wrong")))
                .build(),
        )
        .build();
    let gw = common::start_service(gateway).await;

    let res = post(
        &gw,
        "/v1/chat/completions",
        &chat("partner-claude", "assumed"),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json()["choices"][0]["message"]["content"],
        "You said: assumed"
    );
    let sts: Vec<Recorded> = region
        .requests()
        .into_iter()
        .filter(|r| r.path == "/")
        .collect();
    assert_eq!(sts.len(), 1, "one AssumeRole, then cached credentials");
    assert_eq!(
        fake::form_field(&sts[0].body, "ExternalId").as_deref(),
        Some("fake-external-id")
    );
    assert_eq!(
        fake::form_field(&sts[0].body, "RoleSessionName").as_deref(),
        Some("gateway-test")
    );
    assert!(
        sts[0]
            .header("authorization")
            .unwrap()
            .contains(fake::AWS_ACCESS_KEY),
        "signed with the base credentials"
    );
    let call = chats(&region).pop().unwrap();
    assert!(call
        .header("authorization")
        .unwrap()
        .contains(fake::ASSUMED_ACCESS_KEY));
    assert_eq!(
        call.header("x-amz-security-token"),
        Some(fake::ASSUMED_SESSION_TOKEN)
    );
    // A call second reuses the credentials.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &chat("partner-claude", "again"),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        region.requests().iter().filter(|r| r.path == "/").count(),
        1
    );

    // STS refuses the wrong external id: the gateway's credentials are at fault, not the client.
    let res = post(&gw, "/v1/chat/completions", &chat("wrong-claude", "x")).await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "upstream_auth_error");
}

#[tokio::test]
async fn an_alias_may_name_a_group_and_the_access_log_fields_are_recorded() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let failing: fake::Handler = Arc::new(|_req: &Recorded, _n| {
        Reply::json(
            503,
            json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}),
        )
    });
    let down = Fake::start(failing).await;
    let gw = start_gateway_from_config(config(&format!(
        "{}{}[models.aliases]\nsonnet = \"claude\"\n[model_groups.claude]\ndeployments = [{{ provider = \"down\", model = \"gpt-4o\" }}, {{ provider = \"up\", model = \"gpt-4o\", priority = 1 }}]\n",
        openai_provider("up", &upstream),
        openai_provider("down", &down),
    )))
    .await;
    let res = post(&gw, "/v1/chat/completions", &chat("sonnet", "alias")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(header(&res, "x-gateway-deployment"), Some("up"));
    assert_eq!(down.count(), 1);
    // The whole path is visible in the metrics: one attempt each, one fallback away from `down`.
    let text = metrics(&gw).await;
    assert_eq!(
        metric(
            &text,
            "obs_deployment_fallbacks_total{deployment=\"down\",group=\"claude\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "obs_deployment_failures_total{deployment=\"down\",group=\"claude\",reason=\"server_error\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn lowest_latency_prefers_the_quicker_deployment() {
    let (slow, quick) = slow_and_quick(Duration::from_millis(500)).await;
    let gw = start_gateway_from_config(config(&format!(
        "{}{}
[model_groups.chat]
strategy = \"lowest_latency\"
deployments = [
  {{ provider = \"slow\", model = \"gpt-4o\" }},
  {{ provider = \"quick\", model = \"gpt-4o\" }},
]
",
        openai_provider("slow", &slow),
        openai_provider("quick", &quick),
    )))
    .await;
    for i in 0..40 {
        let res = post(&gw, "/v1/chat/completions", &chat("chat", &format!("q{i}"))).await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    // Once each has been measured, the 500 ms one loses every comparison; its estimate would
    // take half a minute of decay to look quick again.
    assert!(
        chats(&slow).len() <= 3,
        "slow served {}",
        chats(&slow).len()
    );
    assert_eq!(chats(&slow).len() + chats(&quick).len(), 40);
}
