//! `/metrics` shows the requests just made; the metrics port serves them without a key.

mod common;

use common::fake::{self, Fake};
use common::*;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn metrics_show_the_request_just_made() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"anthropic.claude-3-haiku-20240307-v1:0","stream":true,
        "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-fail-500","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 502);

    assert_eq!(
        send(Method::GET, &gw.url("/metrics"), None, None)
            .await
            .status,
        401,
        "metrics need a key on the main port"
    );
    let mut text = String::new();
    for _ in 0..50 {
        // The stream's observation lands when its body ends; give the server a moment.
        text = send(Method::GET, &gw.url("/metrics"), Some(KEY), None)
            .await
            .text();
        if text.contains("provider=\"bedrock\",route=\"chat\",status=\"200\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for needle in [
        r#"obs_requests_total{model="gpt-4o",provider="openai",route="chat",status="200"} 1"#,
        r#"obs_requests_total{model="anthropic.claude-3-haiku-20240307-v1:0",provider="bedrock",route="chat",status="200"} 1"#,
        r#"obs_requests_total{model="gpt-fail-500",provider="openai",route="chat",status="502"} 1"#,
        r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 11"#,
        r#"obs_tokens_total{direction="output",model="anthropic.claude-3-haiku-20240307-v1:0",provider="bedrock"} 9"#,
        r#"obs_retries_total{provider="openai"} 2"#,
        r#"obs_upstream_errors_total{kind="Upstream",provider="openai"} 1"#,
        "obs_open_streams 0",
        "obs_time_to_first_token_seconds_bucket",
        "obs_request_duration_seconds_bucket",
        "obs_in_flight_requests",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn metrics_port_serves_metrics_without_a_key() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = config_for(&upstream.url());
    config.server.host = [127, 0, 0, 1].into();
    config.server.metrics_port = Some(port);
    let gw = start_gateway(config, None).await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200);
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(Ok(res)) = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            client().request(
                http::Request::get(format!("http://127.0.0.1:{port}/metrics"))
                    .body(Default::default())
                    .unwrap(),
            ),
        )
        .await
        {
            ok = Some(res);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let res = ok.expect("metrics port reachable");
    assert_eq!(res.status(), 200);
    use http_body_util::BodyExt;
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains(
            r#"obs_requests_total{model="gpt-4o",provider="openai",route="chat",status="200"} 1"#
        ),
        "{text}"
    );
    let res = client()
        .request(
            http::Request::get(format!("http://127.0.0.1:{port}/v1/models"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the metrics port serves nothing else");
}
