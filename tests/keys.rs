//! Virtual keys end to end: the real gateway (built from configuration, as the binary builds it)
//! in front of the strict fake OpenAI upstream, with a keys file — allowlists by glob and model
//! group, budgets charged and corrected, cost in every output format, concurrency with held
//! streams, hot reload with requests in flight, and a client that hangs up after the first token.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::fake::{self, Fake};
use common::{send, start_service, TestGateway};
use http::Method;
use http_body_util::BodyExt;
use open_bedrock_server::config::Config;
use open_bedrock_server::cost::PriceSpec;
use open_bedrock_server::keys::hash_line;
use open_bedrock_server::Gateway;
use serde_json::{json, Value};

const TEAM_A: &str = "sk-team-a-secret";
const TEAM_B: &str = "sk-team-b-secret";
const LEGACY: &str = "legacy-api-key";

/// A keys file in the temp directory, removed on drop.
struct KeysFile(std::path::PathBuf);

impl KeysFile {
    fn new(text: &str) -> KeysFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "obs-keys-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        KeysFile(path)
    }

    /// Replaces the file's content by a rename, as editors and ConfigMaps do.
    fn rewrite(&self, text: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for KeysFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A `[[keys]]` entry for `key` with `id` and extra TOML lines.
fn entry(id: &str, key: &str, extra: &str) -> String {
    format!("[[keys]]\nid = \"{id}\"\n{}\n{extra}\n", hash_line(key))
}

/// A configuration from TOML (model groups, providers) with the fake as the OpenAI upstream, the
/// keys file, `API_KEY` = [`LEGACY`], and a price for the fake's `o3-cached` model.
fn config(fake: &Fake, keys: &KeysFile, toml_text: &str) -> Config {
    let mut c: Config = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    c.auth.api_keys = vec![LEGACY.into()];
    c.openai.base_url = format!("{}/v1", fake.url());
    c.openai.api_key = Some(common::UPSTREAM_KEY.into());
    c.bedrock.enabled = false;
    c.retry.base_delay = Duration::from_millis(1);
    c.retry.max_delay = Duration::from_millis(5);
    c.keys.file = Some(keys.0.clone());
    // 2 in, 0.5 cached in, 8 out (USD per million tokens).
    c.prices.insert(
        "o3-cached".into(),
        PriceSpec::new(2.0, 8.0).with_cache(0.5, 2.5),
    );
    c
}

async fn start(config: &Config) -> (Gateway, TestGateway) {
    let gateway = Gateway::from_config(config).await.unwrap();
    let gw = start_service(gateway.clone()).await;
    (gateway, gw)
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20})
}

async fn chat_as(gw: &TestGateway, key: &str, body: &Value) -> common::TestResponse {
    send(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(key),
        Some(body),
    )
    .await
}

async fn info(gw: &TestGateway, key: &str, query: &str) -> Value {
    let res = send(
        Method::GET,
        &gw.url(&format!("/v1/key/info{query}")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()
}

/// A streamed chat request whose body the test reads at its own pace.
async fn open_stream(
    gw: &TestGateway,
    key: &str,
    body: &Value,
) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    common::client().request(req).await.unwrap()
}

async fn metrics(gw: &TestGateway) -> String {
    send(Method::GET, &gw.url("/metrics"), Some(LEGACY), None)
        .await
        .text()
}

#[tokio::test]
async fn allowlists_by_name_glob_and_model_group_refuse_before_any_upstream_call() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        entry("team-a", TEAM_A, "models = [\"gpt-4o*\", \"fast-chat\"]"),
        entry("team-b", TEAM_B, "models = [\"o3-cached\"]"),
    ));
    let c = config(
        &upstream,
        &keys,
        &format!(
            "[providers.second]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\n[model_groups.fast-chat]\ndeployments = [ {{ provider = \"second\", model = \"gpt-4o-mini\" }} ]\n",
            upstream.url()
        ),
    );
    let (_gateway, gw) = start(&c).await;

    for model in ["gpt-4o", "gpt-4o-mini", "fast-chat"] {
        let res = chat_as(&gw, TEAM_A, &chat(model)).await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
    }
    assert_eq!(upstream.count(), 3);
    for (key, model) in [
        (TEAM_A, "o3-cached"),
        (TEAM_A, "gpt-4"),
        (TEAM_B, "fast-chat"),
    ] {
        let res = chat_as(&gw, key, &chat(model)).await;
        assert_eq!(res.status, 403, "{model}: {}", res.text());
        let e = res.json();
        assert_eq!(e["error"]["code"], "model_not_allowed");
        assert_eq!(e["error"]["param"], "model");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(model),
            "{e}"
        );
    }
    // The Anthropic and Bedrock surfaces answer in their own dialects, the model from the path.
    let res = send(
        Method::POST,
        &gw.url("/v1/messages"),
        Some(TEAM_B),
        Some(&json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["error"]["type"], "permission_error");
    let res = send(
        Method::POST,
        &gw.url("/model/gpt-4o/converse"),
        Some(TEAM_B),
        Some(&json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})),
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        upstream.count(),
        3,
        "no refused request reached the upstream"
    );
    // API_KEY keeps working, with every model.
    assert_eq!(chat_as(&gw, LEGACY, &chat("o3-cached")).await.status, 200);
    let m = metrics(&gw).await;
    assert!(
        m.contains("obs_key_rejections_total{key=\"team-a\",reason=\"model_not_allowed\"} 2"),
        "{m}"
    );
}

/// A native body that names its model twice is checked against the allowlist with the model it
/// is then routed by (the last, as a JSON map keeps it): repeating `model` does not get a key
/// past its allowlist, whether the first one is allowed or not a string.
#[tokio::test]
async fn a_repeated_model_member_cannot_get_past_the_allowlist() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-b", TEAM_B, "models = [\"o3-cached\"]"));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;
    let bodies = [
        r#"{"anthropic_version":"bedrock-2023-05-31","model":"o3-cached","model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"anthropic_version":"bedrock-2023-05-31","model":5,"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"inputText":"hi","model":"o3-cached","m\u006fdel":"gpt-4o"}"#,
    ];
    let url = gw.url("/v1/chat/completions");
    let post = |body: &str| {
        common::send_raw(
            Method::POST,
            &url,
            Some(TEAM_B),
            Some(body.as_bytes().to_vec().into()),
            &[],
        )
    };
    for body in bodies {
        let res = post(body).await;
        assert_eq!(res.status, 403, "{body}: {}", res.text());
        assert_eq!(res.json()["error"]["code"], "model_not_allowed", "{body}");
    }
    assert_eq!(
        upstream.count(),
        0,
        "no refused request reached the upstream"
    );
    // The allowed model named last is served.
    let allowed = r#"{"anthropic_version":"bedrock-2023-05-31","model":"gpt-4o","model":"o3-cached","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let res = post(allowed).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.count(), 1);
}

/// `o3-cached` at the fake: 11 prompt tokens of which 8 cached, 7 completion tokens of which 5
/// reasoning (with `reasoning_effort`): 3 × 2 + 8 × 0.5 + 7 × 8 = 66 per million.
const O3_CACHED_COST: &str = "0.000066";

#[tokio::test]
async fn cost_of_cached_and_reasoning_usage_in_every_output_format() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-a", TEAM_A, "team = \"a\""));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;

    let openai = json!({"model": "o3-cached", "reasoning_effort": "low", "messages": [{"role": "user", "content": "hi"}]});
    let anthropic = json!({"model": "o3-cached", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let converse = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let cases: [(&str, &Value); 5] = [
        ("/v1/chat/completions", &openai),
        ("/v1/chat/completions?target_format=bedrock_claude", &openai),
        ("/v1/chat/completions?target_format=bedrock_titan", &openai),
        ("/v1/messages", &anthropic),
        ("/model/o3-cached/converse", &converse),
    ];
    for (path, body) in cases {
        let res = send(Method::POST, &gw.url(path), Some(TEAM_A), Some(body)).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        assert_eq!(res.headers["x-gateway-cost"], O3_CACHED_COST, "{path}");
    }
    // Streams: no header (the cost is known after the last event), the metric has it.
    let mut stream = openai.clone();
    stream["stream"] = json!(true);
    let res = send(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(TEAM_A),
        Some(&stream),
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(res.headers.get("x-gateway-cost").is_none());
    let res = send(
        Method::POST,
        &gw.url("/model/o3-cached/converse-stream"),
        Some(TEAM_A),
        Some(&converse),
    )
    .await;
    assert_eq!(res.status, 200);
    // An unknown price is unknown, not zero.
    let res = chat_as(&gw, TEAM_A, &chat("gpt-unpriced-model")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["x-gateway-cost"], "unknown");

    let m = metrics(&gw).await;
    let line = m
        .lines()
        .find(|l| l.starts_with("obs_cost_usd_total{key=\"team-a\",model=\"o3-cached\""))
        .unwrap_or_else(|| panic!("{m}"));
    let total: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (total - 7.0 * 0.000066).abs() < 1e-12,
        "seven calls: {line}"
    );
    assert!(
        m.contains("obs_cost_unknown_total{key=\"team-a\",model=\"gpt-unpriced-model\",provider=\"openai\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "obs_key_tokens_total{key=\"team-a\",model=\"o3-cached\",provider=\"openai\"} 126"
        ),
        "7 × 18 tokens: {m}"
    );
}

#[tokio::test]
async fn budgets_stop_a_key_with_the_reset_time_and_key_info_shows_the_spend() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        // 66 µ$ a call: the second call reaches 132 µ$ ≥ 100 µ$.
        entry("team-a", TEAM_A, "usd_per_day = 0.0001"),
        entry(
            "team-b",
            TEAM_B,
            "tokens_per_day = 40\nadmin = true\nname = \"Team B\""
        ),
    ));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;

    for _ in 0..2 {
        let res = chat_as(&gw, TEAM_A, &chat("o3-cached")).await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let before = upstream.count();
    let res = chat_as(&gw, TEAM_A, &chat("o3-cached")).await;
    assert_eq!(res.status, 429, "{}", res.text());
    let e = res.json();
    assert_eq!(e["error"]["code"], "budget_exceeded");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("usd_per_day") && message.contains("T00:00:00Z"),
        "{message}"
    );
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(
        upstream.count(),
        before,
        "a refused request never goes upstream"
    );

    let a = info(&gw, TEAM_A, "").await;
    assert_eq!(a["id"], "team-a");
    assert_eq!(a["budgets"]["usd_per_day"], 0.0001);
    assert_eq!(
        a["spend"]["usd_today"], 0.000132,
        "corrected to the real cost: {a}"
    );
    assert_eq!(a["spend"]["tokens_today"], 36);
    // Tokens: 18 a call; the third is refused at 54 ≥ 40.
    for _ in 0..3 {
        chat_as(&gw, TEAM_B, &chat("gpt-4o")).await;
    }
    let res = chat_as(&gw, TEAM_B, &chat("gpt-4o")).await;
    assert_eq!(res.status, 429);
    assert!(res.text().contains("tokens_per_day"), "{}", res.text());
    // Admin reads any key; others only their own.
    let a_by_admin = info(&gw, TEAM_B, "?key_id=team-a").await;
    assert_eq!(a_by_admin["spend"]["usd_today"], 0.000132);
    let res = send(
        Method::GET,
        &gw.url("/v1/key/info?key_id=team-b"),
        Some(TEAM_A),
        None,
    )
    .await;
    assert_eq!(res.status, 403);
    let m = metrics(&gw).await;
    assert!(
        m.contains("obs_key_rejections_total{key=\"team-a\",reason=\"usd_per_day\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("obs_budget_used_ratio{budget=\"usd_per_day\",key=\"team-a\"} 1.32"),
        "{m}"
    );
}

#[tokio::test]
async fn the_concurrency_limit_counts_held_streams() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-a", TEAM_A, "max_concurrent = 1"));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;

    // A stream of 10 chunks 100 ms apart, read slowly.
    let mut body = chat("gpt-slow-stream-10-100");
    body["stream"] = json!(true);
    let res = open_stream(&gw, TEAM_A, &body).await;
    assert_eq!(res.status(), 200);
    let mut held = res.into_body();
    let first = held.frame().await.unwrap().unwrap();
    assert!(first.is_data());

    let res = chat_as(&gw, TEAM_A, &chat("gpt-4o")).await;
    assert_eq!(res.status, 429, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "concurrency_limit_exceeded");
    let seen = info(&gw, TEAM_A, "").await;
    assert_eq!(seen["in_flight"], 1);

    // Read the stream to its end: the slot is free again.
    while let Some(frame) = held.frame().await {
        frame.unwrap();
    }
    assert_eq!(chat_as(&gw, TEAM_A, &chat("gpt-4o")).await.status, 200);
    assert_eq!(
        chat_as(&gw, LEGACY, &chat("gpt-4o")).await.status,
        200,
        "other keys are not limited"
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_after_the_first_token_pays_for_what_was_streamed() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-a", TEAM_A, "tokens_per_day = 1000000"));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;

    // 40 chunks of "word " 50 ms apart; max_tokens 5000 is the admission estimate's output.
    let body = json!({"model": "gpt-slow-stream-40-50", "stream": true, "max_tokens": 5000,
        "messages": [{"role": "user", "content": "x".repeat(4000)}]});
    let prompt_estimate = (body.to_string().len() as u64).div_ceil(4);
    let res = open_stream(&gw, TEAM_A, &body).await;
    let mut stream = res.into_body();
    // Read until the first token, then hang up.
    loop {
        let frame = stream.frame().await.unwrap().unwrap();
        if String::from_utf8_lossy(frame.data_ref().unwrap()).contains("word") {
            break;
        }
    }
    let charged_at_admission = info(&gw, TEAM_A, "").await["spend"]["tokens_today"]
        .as_u64()
        .unwrap();
    assert_eq!(charged_at_admission, prompt_estimate + 5000);
    drop(stream);

    // The gateway notices the hang-up at its next write and corrects the charge.
    let mut charged = charged_at_admission;
    for _ in 0..200 {
        charged = info(&gw, TEAM_A, "").await["spend"]["tokens_today"]
            .as_u64()
            .unwrap();
        if charged != charged_at_admission {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The prompt (it went upstream) and the words streamed before the hang-up (2 tokens each),
    // not the 5000 output tokens the client allowed nor the 40 words it did not take.
    let streamed = charged - prompt_estimate;
    assert!(
        (2..40).contains(&streamed),
        "charged {charged} = prompt {prompt_estimate} + {streamed}"
    );
}

/// The output estimate charged at admission is the cap the upstream is sent: OpenAI chat reads
/// `max_completion_tokens`, else `max_tokens`, so a Responses-API `max_output_tokens` beside them
/// does not lower it (it did: one precedence for every format read that member first).
#[tokio::test]
async fn the_admission_estimate_is_the_cap_the_upstream_is_sent() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-a", TEAM_A, "tokens_per_day = 1000000"));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;

    let body = json!({"model": "gpt-slow-stream-10-100", "stream": true,
        "max_output_tokens": 1, "max_tokens": 5000,
        "messages": [{"role": "user", "content": "hi"}]});
    let prompt_estimate = (body.to_string().len() as u64).div_ceil(4);
    let res = open_stream(&gw, TEAM_A, &body).await;
    assert_eq!(res.status(), 200);
    let mut held = res.into_body();
    assert!(held.frame().await.unwrap().unwrap().is_data());
    let charged = info(&gw, TEAM_A, "").await["spend"]["tokens_today"]
        .as_u64()
        .unwrap();
    assert_eq!(charged, prompt_estimate + 5000);
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(sent["max_tokens"], 5000, "{sent}");
    while let Some(frame) = held.frame().await {
        frame.unwrap();
    }
}

#[tokio::test]
async fn hot_reload_adds_and_revokes_keys_while_requests_are_in_flight() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        entry("team-a", TEAM_A, ""),
        entry("team-b", TEAM_B, "")
    ));
    let mut c = config(&upstream, &keys, "");
    c.keys.reload_interval_ms = 0; // reloads by hand first; the watcher is checked below
    let (gateway, gw) = start(&c).await;

    // Team A has a stream in flight.
    let mut body = chat("gpt-slow-stream-10-50");
    body["stream"] = json!(true);
    let url = gw.url("/v1/chat/completions");
    let in_flight =
        tokio::spawn(async move { send(Method::POST, &url, Some(TEAM_A), Some(&body)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    const TEAM_C: &str = "sk-team-c-secret";
    keys.rewrite(&format!(
        "{}{}",
        entry("team-b", TEAM_B, ""),
        entry("team-c", TEAM_C, "")
    ));
    let summary = gateway.key_store().reload().unwrap();
    assert_eq!(
        (summary.added, summary.removed),
        (vec!["team-c".to_owned()], vec!["team-a".to_owned()])
    );

    assert_eq!(chat_as(&gw, TEAM_C, &chat("gpt-4o")).await.status, 200);
    assert_eq!(chat_as(&gw, TEAM_A, &chat("gpt-4o")).await.status, 401);
    let streamed = in_flight.await.unwrap();
    assert_eq!(streamed.status, 200);
    let words = streamed
        .sse_data()
        .iter()
        .filter(|d| d.contains("word"))
        .count();
    assert_eq!(
        words, 10,
        "the stream admitted before the revocation finished whole"
    );

    // A broken file keeps the keys in force.
    keys.rewrite("[[keys]]\nid = \"team-b\"\nsha256 = \"not hex\"\n");
    let e = gateway.key_store().reload().unwrap_err();
    assert!(e.contains("sha256"), "{e}");
    assert_eq!(chat_as(&gw, TEAM_C, &chat("gpt-4o")).await.status, 200);
    assert_eq!(chat_as(&gw, TEAM_B, &chat("gpt-4o")).await.status, 200);
    assert_eq!(chat_as(&gw, LEGACY, &chat("gpt-4o")).await.status, 200);
}

#[tokio::test]
async fn a_changed_keys_file_is_picked_up_without_a_signal() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&entry("team-a", TEAM_A, ""));
    let mut c = config(&upstream, &keys, "");
    c.keys.reload_interval_ms = 20;
    let (_gateway, gw) = start(&c).await;
    assert_eq!(chat_as(&gw, TEAM_B, &chat("gpt-4o")).await.status, 401);
    keys.rewrite(&format!(
        "{}{}",
        entry("team-a", TEAM_A, ""),
        entry("team-b", TEAM_B, "")
    ));
    let mut status = 0;
    for _ in 0..250 {
        status = chat_as(&gw, TEAM_B, &chat("gpt-4o")).await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the watcher did not pick up the change");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        entry("old", TEAM_A, "expires_at = 2020-01-01T00:00:00Z"),
        entry("new", TEAM_B, "expires_at = 2999-01-01")
    ));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;
    let res = chat_as(&gw, TEAM_A, &chat("gpt-4o")).await;
    assert_eq!(res.status, 401);
    assert!(res.text().contains("expired"), "{}", res.text());
    assert_eq!(chat_as(&gw, TEAM_B, &chat("gpt-4o")).await.status, 200);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn bedrock_calls_are_priced_in_the_region_they_go_to() {
    use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
    use open_bedrock_server::cost::PriceTable;
    use open_bedrock_server::model::Usage;
    use open_bedrock_server::provider::BedrockProvider;

    let upstream = Fake::start(fake::smart()).await;
    let mut c = common::config_for(&upstream.url());
    c.bedrock.enabled = true;
    let creds = Credentials::new(
        fake::AWS_ACCESS_KEY,
        fake::AWS_SECRET_KEY,
        None,
        None,
        "tests",
    );
    let sdk = aws_config::SdkConfig::builder()
        .endpoint_url(upstream.url())
        .region(aws_config::Region::new("eu-west-2"))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let bedrock = BedrockProvider::from_sdk_config(&sdk, &c);
    let gw = start_service(
        open_bedrock_server::GatewayBuilder::from_config(&c)
            .bedrock(bedrock)
            .build(),
    )
    .await;
    let model = "meta.llama3-70b-instruct-v1:0";
    let res = send(
        Method::POST,
        &gw.url(&format!("/model/{model}/converse")),
        Some(common::KEY),
        Some(&json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let u = &res.json()["usage"];
    let usage = Usage::from_parts(
        u["inputTokens"].as_u64().unwrap(),
        u["outputTokens"].as_u64().unwrap(),
        u["cacheReadInputTokens"].as_u64().unwrap_or(0),
        u["cacheWriteInputTokens"].as_u64().unwrap_or(0),
    );
    let prices = PriceTable::builtin();
    let london = prices.cost(model, Some("eu-west-2"), &usage).unwrap();
    assert_ne!(Some(london), prices.cost(model, Some("us-east-1"), &usage));
    assert_eq!(res.headers["x-gateway-cost"], london.to_string().as_str());
}

#[tokio::test]
async fn embeddings_and_responses_obey_the_key_s_allowlist() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        entry(
            "team-a",
            TEAM_A,
            "models = [\"text-embedding-*\", \"gpt-4o\"]"
        ),
        entry("team-b", TEAM_B, "models = [\"o3-cached\"]"),
    ));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;
    let embed = json!({"model": "text-embedding-3-small", "input": ["one", "two"]});
    let respond = json!({"model": "gpt-4o", "input": "hi", "max_output_tokens": 20});

    let res = send(
        Method::POST,
        &gw.url("/v1/embeddings"),
        Some(TEAM_A),
        Some(&embed),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["data"].as_array().map(Vec::len), Some(2));
    let res = send(
        Method::POST,
        &gw.url("/v1/responses"),
        Some(TEAM_A),
        Some(&respond),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["object"], "response");
    assert_eq!(upstream.count(), 2);

    for (path, body) in [("/v1/embeddings", &embed), ("/v1/responses", &respond)] {
        let res = send(Method::POST, &gw.url(path), Some(TEAM_B), Some(body)).await;
        assert_eq!(res.status, 403, "{path}: {}", res.text());
        let e = res.json();
        assert_eq!(e["error"]["code"], "model_not_allowed", "{path}: {e}");
        assert_eq!(e["error"]["param"], "model", "{path}: {e}");
    }
    assert_eq!(
        upstream.count(),
        2,
        "no refused request reached the upstream"
    );
    let m = metrics(&gw).await;
    assert!(
        m.contains("obs_key_rejections_total{key=\"team-b\",reason=\"model_not_allowed\"} 2"),
        "{m}"
    );
}

/// The stage under the key policy's answer as translation's is: a finished future that still
/// holds the request's usage hooks (the key policy's settlement among them) until it is dropped.
struct HoldsHooks {
    _hooks: open_bedrock_server::usage::UsageHooks,
    res: Option<http::Response<open_bedrock_server::body::Body>>,
}

impl std::future::Future for HoldsHooks {
    type Output = Result<http::Response<open_bedrock_server::body::Body>, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut().res.take() {
            Some(res) => std::task::Poll::Ready(Ok(res)),
            None => std::task::Poll::Pending,
        }
    }
}

/// A complete reply that carries no usage is charged its prompt estimate, and priced, before the
/// key policy's answer leaves it: the access line and the metrics, further out, read the call's
/// cost from the response as it passes. (The stage below may still hold the settlement in its
/// finished future; the key policy lets go of that future first.)
#[tokio::test]
async fn a_reply_without_usage_is_priced_before_the_key_policy_answers() {
    use open_bedrock_server::cost::PriceTable;
    use open_bedrock_server::detect::{Classified, DetectedRequest};
    use open_bedrock_server::format::{InboundFormat, ReplyFormat};
    use open_bedrock_server::keys::KeyPolicy;
    use open_bedrock_server::metrics::Metrics;
    use open_bedrock_server::model::CallRecord;
    use std::sync::Arc;
    use tower::{Layer, Service, ServiceExt};

    let record = Arc::new(CallRecord::new(
        "gpt-4o",
        InboundFormat::OpenAi,
        ReplyFormat::OpenAi,
        false,
    ));
    let answered = record.clone();
    let inner = tower::service_fn(move |req: http::Request<DetectedRequest>| {
        let mut res = http::Response::new(open_bedrock_server::body::Body::empty());
        res.extensions_mut().insert(answered.clone());
        HoldsHooks {
            _hooks: req.into_body().usage_hooks,
            res: Some(res),
        }
    });
    let policy = KeyPolicy::new(PriceTable::builtin(), Arc::new(Metrics::new()));
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello in one short sentence, please."}]}"#;
    let detected = DetectedRequest::new(
        Classified::new(InboundFormat::OpenAi, ReplyFormat::OpenAi).with_model("gpt-4o"),
        body.to_vec(),
    );
    let mut service = policy.layer().layer(inner);
    // The key policy's own future, kept until the end (a `oneshot` would drop it at once).
    let mut call = Box::pin(
        service
            .ready()
            .await
            .unwrap()
            .call(http::Request::new(detected)),
    );
    let res = (&mut call).await.unwrap();
    assert_eq!(res.status(), 200);
    let cost = record
        .cost()
        .expect("the call was settled before the answer left");
    assert!(cost.is_some(), "gpt-4o has a price: {cost:?}");
    drop(call);
}

/// A key's id and record belong to its own request: on one kept-alive connection, where the server
/// reuses a reply's extension map for the connection's next request, a key without a record
/// (`API_KEY`) is never held to the allowlist of the key before it, each keys-file key is held to
/// its own, and a request without a key is refused (a key id left in the map would pass it as
/// authenticated, as SigV4's stage does).
#[tokio::test]
async fn a_key_s_allowlist_never_carries_over_to_the_next_request_on_its_connection() {
    use tokio::io::AsyncWriteExt as _;

    let upstream = Fake::start(fake::openai_smart()).await;
    let keys = KeysFile::new(&format!(
        "{}{}",
        entry("team-a", TEAM_A, "models = [\"gpt-4o*\"]"),
        entry("team-b", TEAM_B, "models = [\"o3-cached\"]"),
    ));
    let (_gateway, gw) = start(&config(&upstream, &keys, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    for (key, model, status) in [
        (Some(TEAM_A), "gpt-4o", 200),
        (Some(LEGACY), "o3-cached", 200),
        (Some(TEAM_B), "gpt-4o", 403),
        (Some(LEGACY), "gpt-4o-mini", 200),
        (Some(TEAM_A), "o3-cached", 403),
        (Some(TEAM_B), "o3-cached", 200),
        (None, "gpt-4o", 401),
    ] {
        let request = common::raw_post_as(key, "/v1/chat/completions", &chat(model), &[]);
        s.write_all(&request).await.unwrap();
        let reply = common::read_response(&mut s).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{key:?} asking for {model}: {reply}"
        );
    }
}
