//! `/v1/responses` in front of an OpenAI upstream configured with `responses_api = true`: the
//! client's body goes to the upstream's `/v1/responses` as received (only `model` rewritten when
//! an alias resolved) and the upstream's reply comes back as its bytes, complete or streamed,
//! with the usage still counted; built-in tools work there and stay a 400 everywhere else.

mod common;

use bytes::Bytes;
use common::fake::{self, Fake};
use common::*;
use http::Method;
use serde_json::{json, Value};

const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";

async fn setup(responses_api: bool) -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.openai.responses_api = responses_api;
        c.models.aliases.insert("fast".into(), "gpt-4o-mini".into());
    })
    .await;
    (upstream, gw)
}

async fn post_raw(gw: &TestGateway, body: &'static [u8]) -> TestResponse {
    send_raw(
        Method::POST,
        &gw.url("/v1/responses"),
        Some(KEY),
        Some(Bytes::from_static(body)),
        &[],
    )
    .await
}

/// What the fake received on its Responses route.
fn responses_bodies(upstream: &Fake) -> Vec<Bytes> {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/responses")
        .map(|r| r.body.clone())
        .collect()
}

/// The fake's usage (20 in, 9 out) reached the metrics.
async fn assert_fake_usage_counted(gw: &TestGateway) {
    let text = metrics_with(gw, "obs_tokens_total").await;
    for needle in [
        r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 20"#,
        r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 9"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn a_complete_response_goes_both_ways_as_bytes_with_built_in_tools_and_its_usage_counts() {
    let (upstream, gw) = setup(true).await;
    const SENT: &[u8] = br#"{ "model":"gpt-4o",  "input":"find news", "tools":[{"type":"web_search_preview"}],
        "include":["web_search_call.action.sources"], "prompt_cache_key":"k1", "x_future":{"a":[1, 2.50]} }"#;
    let res = post_raw(&gw, SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let received = responses_bodies(&upstream);
    assert_eq!(received.len(), 1);
    assert_eq!(&received[0][..], SENT, "the client's bytes, as sent");
    let chat = upstream
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count();
    assert_eq!(chat, 0, "no chat completion was made");

    let upstream_reply = {
        let fake_res = fake::openai_responses_answer(&upstream.requests()[0]);
        match fake_res {
            fake::Reply::Body { body, .. } => body,
            _ => unreachable!(),
        }
    };
    assert_eq!(
        res.body, upstream_reply,
        "the upstream's bytes, as they came"
    );
    let r = res.json();
    assert_eq!(r["id"], "resp_upstream_1");
    assert_eq!(r["output"][0]["type"], "web_search_call");
    assert_eq!(res.headers["x-gateway-provider"], "openai");

    assert_fake_usage_counted(&gw).await;
}

#[tokio::test]
async fn an_alias_rewrites_only_the_model_and_previous_response_id_goes_upstream() {
    let (upstream, gw) = setup(true).await;
    const SENT: &[u8] =
        br#"{"input":"again", "model" : "fast","previous_response_id":"resp_upstream_1","store":true}"#;
    let res = post_raw(&gw, SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        &responses_bodies(&upstream)[0][..],
        &br#"{"input":"again", "model" : "gpt-4o-mini","previous_response_id":"resp_upstream_1","store":true}"#[..]
    );
    assert_eq!(res.json()["previous_response_id"], "resp_upstream_1");
    // A repeated `model` (an escaped spelling too) is sent as the model the request was admitted
    // and routed by, the last one, in every occurrence: an upstream reading the first runs it too.
    for (sent, upstream_sees) in [
        (
            &br#"{"model":"gpt-4o","input":"hi","m\u006fdel":"fast"}"#[..],
            &br#"{"model":"gpt-4o-mini","input":"hi","m\u006fdel":"gpt-4o-mini"}"#[..],
        ),
        (
            br#"{"model":"fast","input":"hi","model":"gpt-4o"}"#,
            br#"{"model":"gpt-4o","input":"hi","model":"gpt-4o"}"#,
        ),
    ] {
        let res = post_raw(&gw, sent).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(responses_bodies(&upstream).last().unwrap(), upstream_sees);
    }
    // The upstream keeps what it answered: the gateway's store does not have it.
    let got = send(
        Method::GET,
        &gw.url("/v1/responses/resp_upstream_1"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(got.status, 404, "{}", got.text());
}

#[tokio::test]
async fn a_stream_is_relayed_event_for_event_and_metered() {
    let (upstream, gw) = setup(true).await;
    const SENT: &[u8] = br#"{"model":"gpt-4o","input":"hello","stream":true}"#;
    let res = post_raw(&gw, SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(&responses_bodies(&upstream)[0][..], SENT);
    let expected: Vec<u8> = match fake::openai_responses_answer(&upstream.requests()[0]) {
        fake::Reply::Stream { parts, .. } => parts.concat(),
        _ => unreachable!(),
    };
    assert_eq!(
        res.text(),
        String::from_utf8(expected).unwrap(),
        "the upstream's events, as they came"
    );
    assert_fake_usage_counted(&gw).await;
}

#[tokio::test]
async fn upstream_errors_keep_the_openai_dialect() {
    let (_upstream, gw) = setup(true).await;
    // The fake refuses a chat-only member, as OpenAI does.
    let res = post_raw(
        &gw,
        br#"{"model":"gpt-4o","input":"x","tools":[{"type":"nope"}]}"#,
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    let e = res.json();
    assert_eq!(e["error"]["type"], "invalid_request_error", "{e}");
}

#[tokio::test]
async fn built_in_tools_and_unknown_previous_ids_are_refused_without_the_setting_or_off_openai() {
    for (responses_api, model) in [(false, "gpt-4o"), (true, CLAUDE)] {
        let (upstream, gw) = setup(responses_api).await;
        let cases: [(Value, &str, u16); 3] = [
            (
                json!({"model": model, "input": "x", "tools": [{"type": "web_search_preview"}]}),
                "tools[0].type",
                400,
            ),
            (
                json!({"model": model, "input": "x", "include": ["reasoning.encrypted_content"]}),
                "include",
                400,
            ),
            (
                json!({"model": model, "input": "x", "previous_response_id": "resp_nope"}),
                "previous_response_id",
                404,
            ),
        ];
        for (body, param, status) in cases {
            let res = post(&gw, "/v1/responses", &body).await;
            assert_eq!(res.status, status, "{body}: {}", res.text());
            assert_eq!(res.json()["error"]["param"], param, "{body}");
        }
        assert_eq!(upstream.count(), 0, "nothing refused reached an upstream");
        // A translated call still works (the gateway keeps it).
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "input": "hi"}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let id = res.json()["id"].as_str().unwrap().to_owned();
        let got = send(
            Method::GET,
            &gw.url(&format!("/v1/responses/{id}")),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
}

#[tokio::test]
async fn a_named_provider_with_the_setting_forwards_and_one_without_translates() {
    let resp = Fake::start(fake::openai_smart()).await;
    let plain = Fake::start(fake::openai_smart()).await;
    let toml_text = format!(
        "[providers.resp]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nresponses_api = true\n\
         [providers.plain]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\
         [model_groups.agent]\ndeployments = [{{ provider = \"resp\", model = \"gpt-4o\" }}]\n\
         [model_groups.chatty]\ndeployments = [{{ provider = \"plain\", model = \"gpt-4o\" }}]\n",
        resp.url(),
        plain.url()
    );
    let mut config: open_bedrock_server::config::Config = toml::from_str(&toml_text).unwrap();
    config.auth.api_keys = vec![KEY.into()];
    config.bedrock.enabled = false;
    config.validate().unwrap();
    let gw = start_gateway_from_config(config).await;

    let body =
        json!({"model": "agent", "input": "news", "tools": [{"type": "web_search_preview"}]});
    let res = post(&gw, "/v1/responses", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["output"][0]["type"], "web_search_call");
    let sent = resp.requests()[0].json();
    assert_eq!(resp.requests()[0].path, "/v1/responses");
    assert_eq!(sent["model"], "gpt-4o", "the group's deployment model");
    assert_eq!(sent["tools"], body["tools"]);

    let res = post(
        &gw,
        "/v1/responses",
        &json!({"model": "chatty", "input": "news",
        "tools": [{"type": "web_search_preview"}]}),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.json()["error"]["param"], "tools[0].type");
    let res = post(
        &gw,
        "/v1/responses",
        &json!({"model": "chatty", "input": "hi"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(plain.requests()[0].path, "/v1/chat/completions");
    assert_eq!(plain.count(), 1);
}

#[tokio::test]
async fn input_items_only_openai_reads_go_upstream_and_stay_a_400_elsewhere() {
    let body = json!({"model": "gpt-4o", "store": false, "input": [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
        {"type": "item_reference", "id": "ws_1"},
        {"role": "user", "content": "and now?"}]});
    let (upstream, gw) = setup(true).await;
    let res = post(&gw, "/v1/responses", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.requests()[0].json(), body);
    let (upstream, gw) = setup(false).await;
    let res = post(&gw, "/v1/responses", &body).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.json()["error"]["param"]
        .as_str()
        .unwrap()
        .starts_with("input["));
    assert_eq!(upstream.count(), 0);
}
