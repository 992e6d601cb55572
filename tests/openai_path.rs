//! The OpenAI path end to end through the real stack and server: a fake OpenAI upstream on
//! `127.0.0.1:0`, asserting what the client got and what the upstream received.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fake::{self, Fake, Reply};
use common::*;
use http::Method;
use serde_json::{json, Value};

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::openai_smart()).await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    (upstream, gw)
}

#[tokio::test]
async fn complete_request_reaches_upstream_with_every_field_intact() {
    let (upstream, gw) = setup().await;
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hello"}], "name": "ann"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "none",
        "response_format": {"type": "json_object"},
        "stop": ["END"],
        "seed": 7,
        "n": 1,
        "logprobs": false,
        "user": "u-1",
        "temperature": 0.5,
        "frequency_penalty": 0.25,
        "metadata": {"team": "a"},
        "some_future_field": {"nested": [1, 2, 3]}
    });
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let got = res.json();
    assert_eq!(got["object"], "chat.completion");
    // json_object is native at OpenAI: the fake answers with a JSON object.
    assert_eq!(
        got["choices"][0]["message"]["content"],
        r#"{"answer":"You said: hello"}"#
    );
    assert_eq!(got["usage"]["total_tokens"], 18);
    assert_eq!(
        got["system_fingerprint"], "fp_fake",
        "unknown response fields survive"
    );
    assert!(res.headers.get("x-request-id").is_some());

    let reqs = upstream.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.json(),
        body,
        "the upstream received exactly what the client sent"
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    // The upstream's own authority, once, as HTTP/1.1 requires.
    assert_eq!(
        sent.header("host"),
        Some(upstream.addr.to_string().as_str())
    );
    assert_eq!(sent.headers.get_all("host").iter().count(), 1);
    assert!(
        !format!("{:?}", sent.headers).contains(KEY),
        "the gateway key is never forwarded"
    );
    assert_eq!(
        sent.header("x-request-id"),
        res.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    );
}

#[tokio::test]
async fn client_request_id_is_propagated() {
    let (upstream, gw) = setup().await;
    let body = json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]});
    let res = send_raw(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        Some(serde_json::to_vec(&body).unwrap().into()),
        &[("x-request-id", "my-req-42")],
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["x-request-id"], "my-req-42");
    assert_eq!(
        upstream.requests()[0].header("x-request-id"),
        Some("my-req-42")
    );
}

#[tokio::test]
async fn streaming_with_usage_passes_every_chunk_and_ends_with_done() {
    let (upstream, gw) = setup().await;
    let body = json!({"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
        "messages":[{"role":"user","content":"stream me"}]});
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 200);
    assert!(res.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = res.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: stream me");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 18);
    assert!(chunks.iter().all(|c| c["id"] == "chatcmpl-fake1"));
    assert_eq!(
        upstream.requests()[0].json()["stream_options"]["include_usage"],
        true
    );
}

#[tokio::test]
async fn streaming_tool_call_deltas_are_intact() {
    let (_upstream, gw) = setup().await;
    let body = json!({"model":"gpt-4o","stream":true,
        "messages":[{"role":"user","content":"weather?"}],
        "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]});
    let res = post(&gw, "/v1/chat/completions", &body).await;
    let data = res.sse_data();
    let chunks: Vec<Value> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0][0]["id"], "call_fake1");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    let args: String = calls
        .iter()
        .filter_map(|c| c[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(
        chunks
            .iter()
            .all(|c| c.get("usage").is_none() || c["usage"].is_null()),
        "no usage chunk unless asked"
    );
}

#[tokio::test]
async fn split_sse_from_upstream_is_reassembled() {
    let chunk = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
        "choices":[{"index":0,"delta":{"content":"héllo wörld"},"finish_reason":null}]});
    let fin = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
        "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
    let whole = format!("data: {chunk}\n\ndata: {fin}\n\ndata: [DONE]\n\n").into_bytes();
    // Split into 3-byte pieces, cutting through multi-byte characters and event boundaries.
    let parts: Vec<bytes::Bytes> = whole.chunks(3).map(bytes::Bytes::copy_from_slice).collect();
    let upstream = Fake::start(Arc::new(move |_, _| Reply::Stream {
        content_type: "text/event-stream",
        parts: parts.clone(),
        gap: Duration::from_millis(1),
        stall: false,
    }))
    .await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    let data = res.sse_data();
    assert_eq!(data.len(), 3, "{data:?}");
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "héllo wörld");
}

#[tokio::test]
async fn upstream_4xx_passes_through_with_status_and_message() {
    let upstream = Fake::start(Arc::new(|_, _| {
        Reply::json(
            400,
            json!({"error":{"message":"This model's maximum context length is 8192 tokens.",
            "type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}),
        )
    }))
    .await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 400);
    let e = res.json();
    assert_eq!(
        e["error"]["message"],
        "This model's maximum context length is 8192 tokens."
    );
    assert_eq!(e["error"]["code"], "context_length_exceeded");
    assert_eq!(e["error"]["param"], "messages");
    assert_eq!(upstream.count(), 1, "a 4xx is never retried");
}

#[tokio::test]
async fn upstream_5xx_becomes_502_after_three_attempts() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-fail-500","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 502);
    assert_eq!(res.json()["error"]["type"], "server_error");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn upstream_429_once_succeeds_on_the_second_attempt() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-fail-429-once","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn upstream_reset_is_502() {
    let upstream = Fake::start(Arc::new(|_, _| Reply::Reset)).await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "upstream_connect_error");
    assert_eq!(upstream.count(), 3, "resets are retried");
}

#[tokio::test]
async fn connect_failure_is_502() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = start_gateway(config_for(&format!("http://127.0.0.1:{port}")), None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 502);
}

#[tokio::test]
async fn slow_first_byte_is_504() {
    let upstream = Fake::start(Arc::new(|_, _| {
        Reply::Delayed(
            Duration::from_secs(5),
            Box::new(Reply::json(200, json!({}))),
        )
    }))
    .await;
    let mut config = config_for(&upstream.url());
    config.timeouts.first_byte = Duration::from_millis(100);
    config.retry.max_attempts = 2;
    let gw = start_gateway(config, None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 504);
    assert_eq!(
        upstream.count(),
        2,
        "no first event yet: the stream may be retried"
    );
}

#[tokio::test]
async fn a_complete_reply_gets_the_total_time_and_is_not_retried_when_it_runs_out() {
    let upstream = Fake::start(Arc::new(|req: &fake::Recorded, attempt| {
        Reply::Delayed(
            Duration::from_millis(300),
            Box::new(fake::openai_answer(req, attempt)),
        )
    }))
    .await;
    let mut config = config_for(&upstream.url());
    // A slow complete reply within the total time succeeds although it exceeds first_byte.
    config.timeouts.first_byte = Duration::from_millis(50);
    config.timeouts.total = Duration::from_secs(5);
    let gw = start_gateway(config.clone(), None).await;
    let body = json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]});
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    assert_eq!(upstream.count(), 1);

    config.timeouts.total = Duration::from_millis(100);
    let gw = start_gateway(config, None).await;
    let res = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(res.status, 504);
    assert_eq!(
        upstream.count(),
        2,
        "one more attempt, not three: the upstream did the work"
    );
}

#[tokio::test]
async fn malformed_upstream_json_is_502() {
    let upstream = Fake::start(Arc::new(|_, _| Reply::Body {
        status: 200,
        content_type: "application/json",
        headers: vec![],
        body: bytes::Bytes::from_static(b"{not json"),
    }))
    .await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 502);
    assert_eq!(res.json()["error"]["code"], "upstream_protocol_error");
}

#[tokio::test]
async fn stall_mid_stream_becomes_in_band_error() {
    let chunk = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
        "choices":[{"index":0,"delta":{"role":"assistant","content":"partial"},"finish_reason":null}]});
    let upstream = Fake::start(Arc::new(move |_, _| Reply::Stream {
        content_type: "text/event-stream",
        parts: vec![format!("data: {chunk}\n\n").into()],
        gap: Duration::ZERO,
        stall: true,
    }))
    .await;
    let mut config = config_for(&upstream.url());
    config.timeouts.stream_idle = Duration::from_millis(200);
    let gw = start_gateway(config, None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let data = res.sse_data();
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "an error never looks like a normal finish"
    );
    assert_eq!(
        upstream.count(),
        1,
        "never retried after bytes reached the client"
    );
}

#[tokio::test]
async fn unknown_model_is_404_before_any_upstream_call() {
    let (upstream, gw) = setup().await;
    for stream in [false, true] {
        let res = post(&gw, "/v1/chat/completions", &json!({"model":"no-such-model","stream":stream,"messages":[{"role":"user","content":"x"}]})).await;
        assert_eq!(res.status, 404);
        let e = res.json();
        assert_eq!(e["error"]["code"], "model_not_found");
        assert_eq!(e["error"]["param"], "model");
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn aliases_rewrite_the_upstream_model() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    config
        .models
        .aliases
        .insert("fast".into(), "gpt-4o-mini".into());
    let gw = start_gateway(config, None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"fast","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(upstream.requests()[0].json()["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn auth_rejects_missing_and_wrong_keys_and_leaves_health_open() {
    let (upstream, gw) = setup().await;
    let body = json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]});
    let res = send(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        None,
        Some(&body),
    )
    .await;
    assert_eq!(res.status, 401);
    assert_eq!(res.json()["error"]["code"], "invalid_api_key");
    let res = send(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some("wrong"),
        Some(&body),
    )
    .await;
    assert_eq!(res.status, 401);
    let res = send_raw(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        None,
        Some(serde_json::to_vec(&body).unwrap().into()),
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(res.status, 200);
    let res = send(Method::GET, &gw.url("/v1/models"), None, None).await;
    assert_eq!(res.status, 401);
    assert_eq!(upstream.count(), 1);
    let res = send(Method::GET, &gw.url("/health"), None, None).await;
    assert_eq!((res.status, res.json()), (200, json!({"status":"ok"})));
    let res = send(
        Method::GET,
        &gw.url("/v1/chat/completions/health"),
        None,
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    let h = res.json();
    assert_eq!(h["providers"]["openai"]["configured"], true);
    assert_eq!(h["providers"]["bedrock"]["configured"], false);
    assert_eq!(
        h["formats"]["target"],
        json!(["openai", "bedrock_claude", "bedrock_titan"])
    );
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405_in_openai_shape() {
    let (_u, gw) = setup().await;
    let res = send(Method::GET, &gw.url("/v2/nothing"), Some(KEY), None).await;
    assert_eq!(res.status, 404);
    assert!(res.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v2/nothing"));
    let res = send(
        Method::GET,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(res.status, 405);
    assert_eq!(res.headers["allow"], "POST");
    assert_eq!(res.json()["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn bad_input_is_a_clear_400() {
    let (upstream, gw) = setup().await;
    let cases: Vec<(&[u8], Option<&str>)> = vec![
        (b"{not json", None),
        (b"", None),
        (b"[1,2]", None),
        (
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
            Some("model"),
        ),
        (br#"{"model":"gpt-4o"}"#, Some("messages")),
        (br#"{"model":"gpt-4o","messages":[]}"#, Some("messages")),
        (
            br#"{"model":"gpt-4o","messages":[{"role":"robot","content":"x"}]}"#,
            None,
        ),
        (
            br#"{"model":42,"messages":[{"role":"user","content":"x"}]}"#,
            None,
        ),
        (br#"{"prompt":"hello"}"#, None),
    ];
    for (body, param) in cases {
        let res = send_raw(
            Method::POST,
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            Some(bytes::Bytes::from_static(body)),
            &[],
        )
        .await;
        assert_eq!(
            res.status,
            400,
            "{} -> {}",
            String::from_utf8_lossy(body),
            res.text()
        );
        let e = res.json();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(e["error"]["param"], p, "{}", String::from_utf8_lossy(body));
        }
    }
    let res = send(
        Method::POST,
        &gw.url("/v1/chat/completions?target_format=xml"),
        Some(KEY),
        Some(&json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]})),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["param"], "target_format");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.max_request_bytes = 2048;
    let gw = start_gateway(config, None).await;
    let big = "x".repeat(4096);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":big}]}),
    )
    .await;
    assert_eq!(res.status, 413);
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn models_merge_upstream_and_configured() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    config.models.aliases.insert(
        "claude".into(),
        "us.anthropic.claude-3-5-haiku-20241022-v1:0".into(),
    );
    config.models.list.push("gpt-4.1".into());
    let gw = start_gateway(config, None).await;
    let res = send(Method::GET, &gw.url("/v1/models"), Some(KEY), None).await;
    assert_eq!(res.status, 200);
    let list = res.json();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for id in ["gpt-4o", "gpt-4o-mini", "claude", "gpt-4.1"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let claude = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "claude")
        .unwrap();
    assert_eq!(claude["owned_by"], "anthropic");
    let res = send(Method::GET, &gw.url("/v1/models/gpt-4o"), Some(KEY), None).await;
    assert_eq!(
        (res.status, res.json()["id"].clone()),
        (200, json!("gpt-4o"))
    );
    let res = send(Method::GET, &gw.url("/v1/models/nope"), Some(KEY), None).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn http2_prior_knowledge_works() {
    let (_u, gw) = setup().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::get(gw.url("/health"))
        .body(Default::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
}

/// The whole stack is one `Clone + Send + Sync + 'static` service with `Error = Infallible` and a
/// `Send` future: exactly what axum's `nest_service` and hyper need (a compile-time proof).
#[test]
fn the_gateway_service_is_mountable() {
    fn assert_mountable<S, B>(_: &S)
    where
        S: tower::Service<
                http::Request<B>,
                Response = http::Response<open_bedrock_server::body::Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
    }
    let config = config_for("http://127.0.0.1:9");
    let gateway = open_bedrock_server::GatewayBuilder::from_config(&config).build();
    assert_mountable(&gateway.service::<axum::body::Body>());
    assert_mountable(&gateway.service::<hyper::body::Incoming>());
    let _router: axum::Router =
        axum::Router::new().nest_service("/llm", gateway.service::<axum::body::Body>());
}

#[tokio::test]
async fn streams_work_over_http2() {
    use http_body_util::BodyExt;
    let (_u, gw) = setup().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = json!({"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},
        "messages":[{"role":"user","content":"over h2"}]});
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::to_vec(&body).unwrap(),
        )))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(text.contains("over h2"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(text.contains("\"total_tokens\":18"));
}

#[tokio::test]
async fn a_provider_that_is_not_configured_is_a_503_at_once_in_every_dialect() {
    // Bedrock is off in this gateway: its models are refused at once, never retried, and no
    // dialect calls it "overloaded".
    let (upstream, gw) = setup().await;
    let claude = "anthropic.claude-3-haiku-20240307-v1:0";
    let started = std::time::Instant::now();
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": claude, "stream": true, "messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 503, "{}", res.text());
    let err = &res.json()["error"];
    assert_eq!(err["code"], "provider_not_configured");
    assert_eq!(err["type"], "server_error");
    assert!(err["message"].as_str().unwrap().contains("AWS_REGION"));
    assert!(res.headers.get("retry-after").is_none());

    let res = post(
        &gw,
        "/v1/messages",
        &json!({"model": claude, "max_tokens": 5, "messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 503);
    assert_eq!(res.json()["error"]["type"], "api_error");

    let res = send_raw(
        Method::POST,
        &gw.url(&format!("/model/{claude}/converse")),
        Some(KEY),
        Some(r#"{"messages":[{"role":"user","content":[{"text":"x"}]}]}"#.into()),
        &[],
    )
    .await;
    assert_eq!(res.status, 503);
    assert_eq!(
        res.headers["x-amzn-errortype"],
        "ServiceUnavailableException"
    );

    // Nothing waited for a backoff, nothing went upstream, no retry was counted.
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(upstream.count(), 0);
    let metrics = send(Method::GET, &gw.url("/metrics"), Some(KEY), None)
        .await
        .text();
    assert!(!metrics.contains("obs_retries_total{"), "{metrics}");
}

#[tokio::test]
async fn a_failed_upstream_listing_is_said_in_the_model_list() {
    let upstream = Fake::start(Arc::new(|req: &fake::Recorded, attempt| {
        if req.path.ends_with("/models") {
            Reply::json(500, json!({"error": {"message": "listing is down"}}))
        } else {
            fake::openai_answer(req, attempt)
        }
    }))
    .await;
    let mut config = config_for(&upstream.url());
    config.models.list = vec!["my-model".into()];
    config.mock.enabled = true;
    let gw = start_gateway(config, None).await;
    let res = send(Method::GET, &gw.url("/v1/models"), Some(KEY), None).await;
    assert_eq!(res.status, 200);
    let body = res.json();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock/echo", "my-model"]);
    let warnings = body["warnings"].as_array().expect("a warnings field");
    assert_eq!(warnings.len(), 1, "{body}");
    assert!(warnings[0].as_str().unwrap().contains("OpenAI"), "{body}");
    assert!(res.headers.get("x-gateway-warning").is_some());
}

#[tokio::test]
async fn the_mock_provider_answers_mock_models_in_every_format() {
    let (upstream, gw) = setup().await;
    // Off by default: a clear 503 that says how to turn it on.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"mock/echo","messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(res.status, 503);
    assert!(res.text().contains("--mock"), "{}", res.text());

    let mut config = config_for(&upstream.url());
    config.mock.enabled = true;
    let gw = start_gateway(config, None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"mock/echo","messages":[{"role":"user","content":"hi there"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json()["choices"][0]["message"]["content"],
        "You said: hi there"
    );
    let res = post(
        &gw,
        "/v1/chat/completions?target_format=bedrock_claude",
        &json!({"model":"mock/echo","stream":true,"messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let names: Vec<String> = res
        .sse_events()
        .into_iter()
        .filter_map(|(e, _)| e)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    let res = post(
        &gw,
        "/v1/messages",
        &json!({"model":"mock/echo","max_tokens":5,"messages":[{"role":"user","content":"one two three four five six"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let msg = res.json();
    assert_eq!(msg["stop_reason"], "max_tokens");
    assert_eq!(msg["content"][0]["text"], "You said: one two three");
    assert_eq!(upstream.count(), 0, "the mock never goes upstream");
}
