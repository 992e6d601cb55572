//! OpenAI-format clients → Bedrock (Claude and Titan over InvokeModel, other families over
//! Converse) through the real stack, against a fake Bedrock that verifies SigV4 and validates
//! native bodies as strictly as the service.

mod common;

use common::fake::{self, Fake};
use common::*;
use http::Method;
use serde_json::{json, Value};

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    (upstream, gw)
}

fn chunks(res: &TestResponse) -> (Vec<Value>, bool) {
    let data = res.sse_data();
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let chunks = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (chunks, done)
}

fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn model_of(req: &fake::Recorded) -> String {
    let rest = req.path.strip_prefix("/model/").unwrap();
    let raw = rest.rsplit_once('/').unwrap().0;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test]
async fn claude_complete_through_a_us_profile() {
    let (upstream, gw) = setup().await;
    let model = "us.anthropic.claude-3-5-sonnet-20241022-v2:0";
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({
            "model": model,
            "messages": [
                {"role":"system","content":"You are terse."},
                {"role":"developer","content":"Answer in English."},
                {"role":"user","content":"Hello"},
                {"role":"user","content":"Paris?"}
            ],
            "temperature": 1.7,
            "stop": "END",
            "max_completion_tokens": 300
        }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["model"], model);
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "You said: Hello Paris?"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["prompt_tokens"], 15, "input + cache reads");
    assert_eq!(r["usage"]["completion_tokens"], 9);
    assert_eq!(r["usage"]["total_tokens"], 24);
    assert_eq!(r["usage"]["prompt_tokens_details"]["cached_tokens"], 3);

    let sent = upstream.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].path.ends_with("/invoke"), "{}", sent[0].path);
    assert!(
        sent[0].path.contains("%3A0"),
        "model id percent-encoded: {}",
        sent[0].path
    );
    assert_eq!(model_of(&sent[0]), model);
    assert!(sent[0]
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDFAKEGATEWAY/"));
    assert_eq!(
        sent[0].header("x-request-id"),
        res.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        "one request id end to end"
    );
    let body = sent[0].json();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["system"], "You are terse.\n\nAnswer in English.");
    assert_eq!(body["temperature"], 1.0, "clamped to Bedrock's range");
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        1,
        "same-role turns merged"
    );
    assert!(body.get("model").is_none() && body.get("stream").is_none());
}

#[tokio::test]
async fn claude_default_max_tokens_and_streaming_with_usage() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({
            "model": "anthropic.claude-3-haiku-20240307-v1:0", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role":"user","content":"stream it"}]
        }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let (chunks, done) = chunks(&res);
    assert!(done);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&chunks), "You said: stream it");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 15);
    assert_eq!(usage["usage"]["completion_tokens"], 9);
    let ids: std::collections::HashSet<&str> =
        chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one stable id");
    let sent = upstream.requests();
    assert!(sent[0].path.ends_with("/invoke-with-response-stream"));
    assert_eq!(sent[0].json()["max_tokens"], 4096, "configured default");
}

#[tokio::test]
async fn claude_tool_calls_complete_streamed_and_round_trip() {
    let (upstream, gw) = setup().await;
    let tools = json!([{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]);
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let res = post(&gw, "/v1/chat/completions", &json!({"model":model,"messages":[{"role":"user","content":"Weather?"}],"tools":tools,"tool_choice":"required"})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    let call = &r["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(call["id"], "toolu_bdrk_01");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city":"Paris"})
    );
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent["tools"][0],
        json!({"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}})
    );
    assert_eq!(sent["tool_choice"], json!({"type":"any"}));

    let res = post(&gw, "/v1/chat/completions", &json!({"model":model,"stream":true,"messages":[{"role":"user","content":"Weather?"}],"tools":tools})).await;
    let (chunks, done) = chunks(&res);
    assert!(done);
    let frags: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(frags[0][0]["index"], 0);
    assert_eq!(frags[0][0]["id"], "toolu_bdrk_01");
    assert_eq!(frags[0][0]["function"]["name"], "get_weather");
    let args: String = frags
        .iter()
        .filter_map(|f| f[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));

    let res = post(&gw, "/v1/chat/completions", &json!({"model":model,"tools":tools,"messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_bdrk_01","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"toolu_bdrk_01","content":"{\"temp_c\":21}"}
    ]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests().last().unwrap().json();
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type":"tool_use","id":"toolu_bdrk_01","name":"get_weather","input":{"city":"Paris"}})
    );
    assert_eq!(sent["messages"][2]["role"], "user");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(
        sent["messages"][2]["content"][0]["tool_use_id"],
        "toolu_bdrk_01"
    );
}

#[tokio::test]
async fn claude_images_become_base64_blocks() {
    let (upstream, gw) = setup().await;
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"anthropic.claude-3-haiku-20240307-v1:0","messages":[
        {"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent["messages"][0]["content"][1],
        json!({"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}})
    );
}

#[tokio::test]
async fn titan_complete_and_streamed() {
    let (upstream, gw) = setup().await;
    let model = "amazon.titan-text-express-v1";
    let res = post(&gw, "/v1/chat/completions", &json!({"model":model,"max_tokens":100,"temperature":0.5,
        "messages":[{"role":"system","content":"Be brief"},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Tell a joke"}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "You said: Tell a joke"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["prompt_tokens"], 8);
    assert_eq!(r["usage"]["completion_tokens"], 6);
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent,
        json!({"inputText":"Be brief\n\nUser: Hi\nBot: Hello!\nUser: Tell a joke\nBot:",
        "textGenerationConfig":{"maxTokenCount":100,"temperature":0.5}})
    );

    let res = post(&gw, "/v1/chat/completions", &json!({"model":model,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream Titan"}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let (chunks, done) = chunks(&res);
    assert!(done);
    assert_eq!(streamed_text(&chunks), "You said: Stream Titan");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 14);
}

#[tokio::test]
async fn titan_stop_sequences_are_limited_to_what_titan_accepts() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"amazon.titan-text-lite-v1","stop":["User:","###"],
        "messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent["textGenerationConfig"]["stopSequences"],
        json!(["User:"])
    );
}

#[tokio::test]
async fn converse_families_complete_streamed_and_tools() {
    let (upstream, gw) = setup().await;
    for model in [
        "amazon.nova-pro-v1:0",
        "us.meta.llama3-2-11b-instruct-v1:0",
        "mistral.mistral-large-2407-v1:0",
    ] {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"max_tokens":64,"temperature":0.2,
            "messages":[{"role":"system","content":"sys"},{"role":"user","content":"Hi there"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        let r = res.json();
        assert_eq!(
            r["choices"][0]["message"]["content"], "You said: Hi there",
            "{model}"
        );
        assert_eq!(
            r["usage"]["prompt_tokens"], 22,
            "{model}: input + cache read"
        );
        assert_eq!(r["usage"]["completion_tokens"], 5);
        let sent = upstream.requests().last().unwrap().clone();
        assert!(sent.path.ends_with("/converse"), "{}", sent.path);
        assert_eq!(model_of(&sent), model);
        let body = sent.json();
        assert_eq!(body["system"], json!([{"text":"sys"}]));
        assert_eq!(body["inferenceConfig"]["maxTokens"], 64);
        // The client's value as written (the SDK's client would send the f32 widened,
        // 0.20000000298023224), by the gateway's own client (the SDK's names itself).
        assert_eq!(
            body["inferenceConfig"]["temperature"],
            json!(0.2),
            "{model}"
        );
        assert_eq!(sent.header("x-amz-user-agent"), None, "{model}");
        assert!(sent.header("authorization").is_some(), "{model}: signed");

        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"stream":true,"stream_options":{"include_usage":true},
            "messages":[{"role":"user","content":"Stream please"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        let (chunks, done) = chunks(&res);
        assert!(done, "{model}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(streamed_text(&chunks), "You said: Stream please", "{model}");
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 27);
    }
    let tools = json!([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]);
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"amazon.nova-lite-v1:0","stream":true,"tools":tools,
        "messages":[{"role":"user","content":"Weather?"}]}),
    )
    .await;
    let (chunks, _) = chunks(&res);
    let frags: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(frags[0][0]["id"], "tooluse_Ab12");
    let args: String = frags
        .iter()
        .filter_map(|f| f[0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"amazon.nova-lite-v1:0","tools":tools,"messages":[
        {"role":"user","content":"Weather?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"tooluse_Ab12","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"tooluse_Ab12","content":"{\"temp_c\":21}"}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = upstream.requests().last().unwrap().json();
    assert_eq!(
        body["messages"][2]["content"][0]["toolResult"]["toolUseId"],
        "tooluse_Ab12"
    );
    assert_eq!(
        body["messages"][2]["content"][0]["toolResult"]["content"][0]["json"],
        json!({"temp_c":21})
    );
}

#[tokio::test]
async fn throttled_once_then_success_after_two_attempts() {
    let (upstream, gw) = setup().await;
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"anthropic.claude-throttle-once-v1:0","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn persistent_500_is_502_after_exactly_three_attempts() {
    let (upstream, gw) = setup().await;
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"anthropic.claude-fail-500-v1:0","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert_eq!(
        upstream.count(),
        3,
        "the SDK's own retries are off: exactly the gateway's attempts"
    );
}

#[tokio::test]
async fn errors_map_and_hide_account_ids() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"anthropic.claude-denied-v1:0","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 403);
    assert!(!res.text().contains("123456789012"), "{}", res.text());
    assert!(!res.text().contains("arn:aws"), "{}", res.text());
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"amazon.nova-not-found-v1:0","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"]["code"], "model_not_found");
    // More choices than `bedrock.max_n` (default 8) fan out to.
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"anthropic.claude-3-haiku-20240307-v1:0","n":9,"messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["param"], "n");
    assert_eq!(upstream.count(), 2, "the 400 never reached Bedrock");
}

#[tokio::test]
async fn refused_gateway_credentials_are_500_upstream_auth_error_never_401() {
    let upstream = Fake::start(fake::bedrock_smart()).await;
    let mut config = config_for(&upstream.url());
    config.bedrock.enabled = true;
    let bedrock = bedrock_for(&upstream.url(), &config, Some("the-wrong-secret"));
    let gw = start_gateway(config, Some(bedrock)).await;
    let res = post(&gw, "/v1/chat/completions", &json!({"model":"anthropic.claude-3-haiku-20240307-v1:0","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(res.status, 500, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "upstream_auth_error");
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn mid_stream_exception_is_an_in_band_error_not_a_finish() {
    let (upstream, gw) = setup().await;
    for model in [
        "anthropic.claude-midstream-error-v1:0",
        "amazon.nova-midstream-error-v1:0",
    ] {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{model}");
        let data = res.sse_data();
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert!(last.get("error").is_some(), "{model}: {data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"), "{model}");
        assert!(
            !data
                .iter()
                .any(|d| d.contains("\"finish_reason\":\"stop\"")),
            "{model}"
        );
    }
    assert_eq!(upstream.count(), 2, "never retried after the first byte");
}

#[tokio::test]
async fn truncated_event_stream_is_an_in_band_error() {
    let (_upstream, gw) = setup().await;
    for model in [
        "anthropic.claude-truncated-v1:0",
        "amazon.titan-text-truncated-v1",
        "meta.llama-truncated-v1:0",
    ] {
        let res = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model":model,"stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        let data = res.sse_data();
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert!(last.get("error").is_some(), "{model}: {data:?}");
        assert!(!data.iter().any(|d| d == "[DONE]"), "{model}");
    }
}

#[tokio::test]
async fn models_list_includes_bedrock_foundation_models_and_profiles() {
    let (_upstream, gw) = setup().await;
    let res = send(Method::GET, &gw.url("/v1/models"), Some(KEY), None).await;
    assert_eq!(res.status, 200);
    let list = res.json();
    let data = list["data"].as_array().unwrap();
    let find = |id: &str| data.iter().find(|m| m["id"] == id).cloned();
    assert_eq!(
        find("anthropic.claude-3-haiku-20240307-v1:0").unwrap()["owned_by"],
        "anthropic"
    );
    assert_eq!(
        find("amazon.titan-text-express-v1").unwrap()["owned_by"],
        "amazon"
    );
    assert_eq!(
        find("us.anthropic.claude-3-5-sonnet-20241022-v2:0").unwrap()["owned_by"],
        "anthropic"
    );
    assert!(
        find("anthropic.claude-3-5-sonnet-20241022-v2:0").is_none(),
        "profile-only models are listed by profile"
    );
    assert!(find("gpt-4o").is_some(), "OpenAI models are still there");
    let h = send(
        Method::GET,
        &gw.url("/v1/chat/completions/health"),
        None,
        None,
    )
    .await
    .json();
    assert_eq!(h["providers"]["bedrock"]["configured"], true);
    assert_eq!(h["providers"]["bedrock"]["region"], "us-east-1");
}

#[tokio::test]
async fn control_plane_failure_degrades_to_configured_models() {
    // A Bedrock "control plane" that refuses everything.
    let upstream = Fake::start(std::sync::Arc::new(|req: &fake::Recorded, attempt| {
        if req.path.starts_with("/v1/") {
            fake::openai_answer(req, attempt)
        } else {
            fake::Reply::json(500, json!({"message":"down"}))
        }
    }))
    .await;
    let gw = start_full(&upstream, |c| {
        c.models.aliases.insert(
            "claude".into(),
            "anthropic.claude-3-haiku-20240307-v1:0".into(),
        );
    })
    .await;
    let res = send(Method::GET, &gw.url("/v1/models"), Some(KEY), None).await;
    assert_eq!(res.status, 200);
    let ids: Vec<String> = res.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.contains(&"claude".to_owned()) && ids.contains(&"gpt-4o".to_owned()),
        "{ids:?}"
    );
}

#[tokio::test]
async fn titan_stops_it_cannot_take_are_applied_by_the_gateway_streamed_and_not() {
    let (upstream, gw) = setup().await;
    let model = "amazon.titan-text-express-v1";
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":model,"stop":[" said"],"messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert_eq!(r["choices"][0]["message"]["content"], "You");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":model,"stream":true,"stop":[" said"],
        "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    let (chunks, done) = chunks(&res);
    assert!(done);
    assert_eq!(streamed_text(&chunks), "You");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    for r in upstream.requests() {
        assert!(
            r.json()["textGenerationConfig"]
                .get("stopSequences")
                .is_none(),
            "Titan never sees a stop it rejects"
        );
    }
}
