//! `POST /v1/responses` (and `GET`/`DELETE /v1/responses/{id}`) through the real stack, in front
//! of the strict fakes: OpenAI and Claude on Bedrock, complete and streamed, tool calls, stored
//! conversations continued with `previous_response_id`, isolation between keys.

mod common;

use common::fake::{self, Fake};
use common::*;
use http::Method;
use serde_json::{json, Value};

const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const OTHER_KEY: &str = "second-gateway-key";

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.auth.api_keys.push(OTHER_KEY.into());
    })
    .await;
    (upstream, gw)
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}})
}

/// The bodies the fake received on its OpenAI chat route.
fn chat_bodies(upstream: &Fake) -> Vec<Value> {
    upstream
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .map(|r| r.json())
        .collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_complete_response_from_openai_and_from_claude() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/responses",
        &json!({"model": "gpt-4o", "instructions": "Be brief.", "input": "hello",
            "max_output_tokens": 100, "metadata": {"team": "a"}}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "gpt-4o");
    assert_eq!(r["instructions"], "Be brief.");
    assert_eq!(r["metadata"], json!({"team": "a"}));
    assert_eq!(output_text(&r), "You said: hello");
    assert_eq!(r["output"][0]["role"], "assistant");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 18})
    );
    let sent = chat_bodies(&upstream);
    assert_eq!(
        sent[0]["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}])
    );
    assert_eq!(sent[0]["max_completion_tokens"], 100);
    assert!(
        sent[0].get("metadata").is_none(),
        "metadata stays at the gateway"
    );

    let res = post(
        &gw,
        "/v1/responses",
        &json!({"model": CLAUDE, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "hi claude"}]}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let r = res.json();
    assert!(output_text(&r).contains("hi claude"), "{r}");
    assert_eq!(res.headers["x-gateway-provider"], "bedrock");
}

#[tokio::test]
async fn a_stream_is_the_typed_event_sequence_with_sequence_numbers() {
    let (_upstream, gw) = setup().await;
    for model in ["gpt-4o", CLAUDE] {
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "input": "stream me", "stream": true}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert!(res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let events = res.sse_events();
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(name.as_deref(), data["type"].as_str(), "{data}");
            assert_eq!(data["sequence_number"], i, "{data}");
        }
        let kinds: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
        assert_eq!(
            kinds[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ]
        );
        assert_eq!(
            kinds[kinds.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        let done = &events.last().unwrap().1["response"];
        assert_eq!(output_text(done), deltas);
        assert!(deltas.contains("stream me"), "{model}: {deltas}");
        assert!(
            done["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{done}"
        );
    }
}

#[tokio::test]
async fn tool_calls_and_a_follow_up_turn_from_the_store() {
    let (upstream, gw) = setup().await;
    for model in ["gpt-4o", CLAUDE] {
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "input": "weather in Paris?", "tools": [weather_tool()]}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let first = res.json();
        let call = first["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: {first}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap()["city"],
            "Paris"
        );

        // The same turn streamed: the arguments arrive as deltas.
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "input": "weather in Paris?", "tools": [weather_tool()], "stream": true, "store": false}),
        )
        .await;
        let events = res.sse_events();
        let args: String = events
            .iter()
            .filter(|(n, _)| n.as_deref() == Some("response.function_call_arguments.delta"))
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        let done = events
            .iter()
            .find(|(n, _)| n.as_deref() == Some("response.function_call_arguments.done"))
            .unwrap_or_else(|| panic!("{model}: {}", res.text()));
        assert_eq!(done.1["arguments"], args);
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap()["city"],
            "Paris"
        );

        // The tool's result, continuing the stored conversation.
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "previous_response_id": first["id"], "tools": [weather_tool()],
                "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 24C"}]}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let second = res.json();
        assert_eq!(second["previous_response_id"], first["id"]);
        assert_eq!(second["status"], "completed", "{model}: {second}");
        assert!(!output_text(&second).is_empty(), "{model}: {second}");
    }
    // What OpenAI received for the follow-up: the whole conversation, the call and its result.
    let sent = chat_bodies(&upstream);
    let last = sent.last().unwrap();
    let roles: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
    assert_eq!(
        last["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(last["messages"][2]["content"], "sunny, 24C");
    // And what Claude received: the tool_use turn and its tool_result.
    let claude: Vec<Value> = upstream
        .requests()
        .iter()
        .filter(|r| r.path.contains("claude") && r.path.ends_with("/invoke"))
        .map(|r| r.json())
        .collect();
    let messages = &claude.last().unwrap()["messages"];
    assert_eq!(messages[1]["content"][1]["type"], "tool_use", "{messages}");
    assert_eq!(
        messages[2]["content"][0]["type"], "tool_result",
        "{messages}"
    );
    assert!(messages[2].to_string().contains("sunny, 24C"), "{messages}");
}

#[tokio::test]
async fn stored_responses_are_read_and_deleted_by_their_own_key_only() {
    let (_upstream, gw) = setup().await;
    let created = post(
        &gw,
        "/v1/responses",
        &json!({"model": "gpt-4o", "input": "keep me"}),
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap();
    let path = format!("/v1/responses/{id}");
    let got = send(Method::GET, &gw.url(&path), Some(KEY), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), created);

    let other = send(Method::GET, &gw.url(&path), Some(OTHER_KEY), None).await;
    assert_eq!(other.status, 404, "another key does not see it");
    assert!(other.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains(id));
    let other = post_as(
        &gw,
        OTHER_KEY,
        &json!({"model": "gpt-4o", "input": "x", "previous_response_id": id}),
    )
    .await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"]["param"], "previous_response_id");
    let other = send(Method::DELETE, &gw.url(&path), Some(OTHER_KEY), None).await;
    assert_eq!(other.status, 404);
    assert_eq!(
        send(Method::GET, &gw.url(&path), None, None).await.status,
        401
    );

    let deleted = send(Method::DELETE, &gw.url(&path), Some(KEY), None).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(
        deleted.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    assert_eq!(
        send(Method::GET, &gw.url(&path), Some(KEY), None)
            .await
            .status,
        404
    );

    // `store: false` keeps nothing; a streamed response is kept when it completes.
    let unstored = post(
        &gw,
        "/v1/responses",
        &json!({"model": "gpt-4o", "input": "x", "store": false}),
    )
    .await
    .json();
    assert_eq!(unstored["store"], false);
    let path = format!("/v1/responses/{}", unstored["id"].as_str().unwrap());
    assert_eq!(
        send(Method::GET, &gw.url(&path), Some(KEY), None)
            .await
            .status,
        404
    );
    let streamed = post(
        &gw,
        "/v1/responses",
        &json!({"model": "gpt-4o", "input": "x", "stream": true}),
    )
    .await;
    let done = streamed.sse_events().last().unwrap().1["response"].clone();
    let path = format!("/v1/responses/{}", done["id"].as_str().unwrap());
    let got = send(Method::GET, &gw.url(&path), Some(KEY), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), done);
    let res = send(Method::POST, &gw.url(&path), Some(KEY), Some(&json!({}))).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.headers["allow"], "GET, DELETE");
}

async fn post_as(gw: &TestGateway, key: &str, body: &Value) -> TestResponse {
    send(
        Method::POST,
        &gw.url("/v1/responses"),
        Some(key),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn structured_outputs_reasoning_and_what_is_refused() {
    let (upstream, gw) = setup().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false});
    for model in ["gpt-4o", CLAUDE] {
        let res = post(
            &gw,
            "/v1/responses",
            &json!({"model": model, "input": "Paris", "text": {"format": {"type": "json_schema",
                "name": "place", "schema": schema, "strict": true}}}),
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let r = res.json();
        let answer: Value =
            serde_json::from_str(&output_text(&r)).unwrap_or_else(|e| panic!("{model}: {e}: {r}"));
        assert!(answer["city"].is_string(), "{model}: {answer}");
        assert_eq!(r["text"]["format"]["name"], "place");
    }
    assert_eq!(
        chat_bodies(&upstream)[0]["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": true}})
    );

    let cases = [
        (
            json!({"model": "gpt-4o", "input": "x", "tools": [{"type": "web_search_preview"}]}),
            "tools[0].type",
            400,
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "background": true}),
            "background",
            400,
        ),
        (json!({"model": "gpt-4o"}), "input", 400),
        (json!({"input": "x"}), "model", 400),
        (
            json!({"model": "gpt-4o", "input": [{"type": "item_reference", "id": "x"}]}),
            "input[0].type",
            400,
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "previous_response_id": "resp_nope"}),
            "previous_response_id",
            404,
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "temperature": 3}),
            "temperature",
            400,
        ),
    ];
    let before = upstream.count();
    for (body, param, status) in cases {
        let res = post(&gw, "/v1/responses", &body).await;
        assert_eq!(res.status, status, "{body}: {}", res.text());
        assert_eq!(res.json()["error"]["param"], param, "{body}");
    }
    assert_eq!(
        upstream.count(),
        before,
        "nothing refused reached an upstream"
    );
}

#[tokio::test]
async fn prompt_cache_key_goes_to_openai_and_what_cannot_be_honoured_is_refused() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/responses",
        &json!({"model": "gpt-4o", "input": "hello", "prompt_cache_key": "team-a", "include": []}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(chat_bodies(&upstream)[0]["prompt_cache_key"], "team-a");

    let before = upstream.count();
    for (body, param) in [
        (
            json!({"model": CLAUDE, "input": "x", "prompt_cache_key": "team-a"}),
            "prompt_cache_key",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "include": ["reasoning.encrypted_content"]}),
            "include",
        ),
        (
            json!({"model": "gpt-4o", "input": "x", "include": "reasoning.encrypted_content"}),
            "include",
        ),
    ] {
        let res = post(&gw, "/v1/responses", &body).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text());
        assert_eq!(res.json()["error"]["param"], param, "{body}");
    }
    assert_eq!(
        upstream.count(),
        before,
        "nothing refused reached an upstream"
    );
}
