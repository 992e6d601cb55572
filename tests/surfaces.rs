//! The native client surfaces through the real stack: the AWS SDK's own `bedrock-runtime` client
//! (SigV4-signed, event streams decoded and CRC-checked by the SDK) and raw Anthropic Messages
//! requests, against Claude-on-Bedrock, Titan and `gpt-4o` upstreams (the fake).

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseOutput as Out,
    ConverseStreamOutput as Ev, Message, ResponseStream, Tool, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolSpecification, ToolUseBlock,
};
use base64::Engine;
use common::fake::{self, Fake};
use common::*;
use http::Method;
use open_bedrock_server::config::AwsClientCredential;
use open_bedrock_server::format::converse::json_to_document;
use serde_json::{json, Value};

const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const TITAN: &str = "amazon.titan-text-express-v1";
const CLIENT_AKID: &str = "AKIDGATEWAYCLIENT";
const CLIENT_SECRET: &str = "client/secret/for+tests";

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.auth.aws_credentials = vec![AwsClientCredential {
            access_key_id: CLIENT_AKID.into(),
            secret_access_key: CLIENT_SECRET.into(),
            api_key: KEY.into(),
        }];
    })
    .await;
    (upstream, gw)
}

/// The AWS SDK's Bedrock runtime client pointed at the gateway, signing with `secret`.
fn sdk(gw: &TestGateway, secret: &str) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .endpoint_url(gw.url(""))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(CLIENT_AKID, secret, None, None, "tests"))
        .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

fn claude_body(text: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
        "messages": [{"role": "user", "content": text}]}),
    )
    .unwrap()
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.into()))
        .build()
        .unwrap()
}

fn weather_tools() -> ToolConfiguration {
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let spec = ToolSpecification::builder()
        .name("get_weather")
        .description("Current weather")
        .input_schema(ToolInputSchema::Json(json_to_document(&schema)))
        .build()
        .unwrap();
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .build()
        .unwrap()
}

#[tokio::test]
async fn invoke_claude_native_body_passes_through_to_bedrock() {
    let (upstream, gw) = setup().await;
    let out = sdk(&gw, CLIENT_SECRET)
        .invoke_model()
        .model_id(CLAUDE)
        .content_type("application/json")
        .body(Blob::new(claude_body("hi")))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(out.body.as_ref()).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "You said: hi");
    assert_eq!(v["usage"]["output_tokens"], 9);
    let sent = upstream
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/model/"))
        .unwrap();
    assert_eq!(
        sent.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    );
    assert_eq!(
        sent.json(),
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}]})
    );
}

#[tokio::test]
async fn invoke_claude_body_reaches_gpt_and_answers_as_claude() {
    let (upstream, gw) = setup().await;
    let res = send_raw(
        Method::POST,
        &gw.url("/model/gpt-4o/invoke"),
        Some(KEY),
        Some(claude_body("hello").into()),
        &[],
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let v = res.json();
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "You said: hello"})
    );
    assert_eq!(v["usage"], json!({"input_tokens": 11, "output_tokens": 7}));
    assert_eq!(res.headers["x-amzn-bedrock-input-token-count"], "11");
    assert_eq!(res.headers["x-amzn-bedrock-output-token-count"], "7");
    assert!(upstream
        .requests()
        .iter()
        .any(|r| r.path == "/v1/chat/completions"));
}

#[tokio::test]
async fn invoke_titan_complete_and_streamed() {
    let (_upstream, gw) = setup().await;
    let client = sdk(&gw, CLIENT_SECRET);
    let body = serde_json::to_vec(&json!({"inputText": "User: hi there\nBot:", "textGenerationConfig": {"maxTokenCount": 50}})).unwrap();
    let out = client
        .invoke_model()
        .model_id(TITAN)
        .body(Blob::new(body.clone()))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(out.body.as_ref()).unwrap();
    assert_eq!(v["results"][0]["outputText"], "You said: hi there");
    assert_eq!(v["inputTextTokenCount"], 8);

    let mut out = client
        .invoke_model_with_response_stream()
        .model_id(TITAN)
        .body(Blob::new(body))
        .send()
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(ev) = out.body.recv().await.unwrap() {
        if let ResponseStream::Chunk(part) = ev {
            events.push(serde_json::from_slice::<Value>(part.bytes().unwrap().as_ref()).unwrap());
        }
    }
    let text: String = events
        .iter()
        .filter_map(|e| e["outputText"].as_str())
        .collect();
    assert_eq!(text, "You said: hi there");
    let last = events.last().unwrap();
    assert_eq!(last["completionReason"], "FINISH");
    assert_eq!(
        last["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        6
    );
}

/// Claude stream events from InvokeModelWithResponseStream, decoded by the SDK.
async fn claude_stream(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
    body: Vec<u8>,
) -> Vec<Value> {
    let mut out = client
        .invoke_model_with_response_stream()
        .model_id(model)
        .body(Blob::new(body))
        .send()
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(ev) = out.body.recv().await.unwrap() {
        if let ResponseStream::Chunk(part) = ev {
            events.push(serde_json::from_slice::<Value>(part.bytes().unwrap().as_ref()).unwrap());
        }
    }
    events
}

#[tokio::test]
async fn invoke_stream_claude_from_bedrock_and_from_gpt() {
    let (_upstream, gw) = setup().await;
    let client = sdk(&gw, CLIENT_SECRET);
    for model in [CLAUDE, "gpt-4o"] {
        let events = claude_stream(&client, model, claude_body("stream me")).await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types.first(), Some(&"message_start"), "{model}");
        assert_eq!(types.last(), Some(&"message_stop"), "{model}");
        let text: String = events
            .iter()
            .filter_map(|e| e["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "You said: stream me", "{model}");
        let delta = events
            .iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert!(
            delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {delta}"
        );
        assert!(
            events.last().unwrap()["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
}

#[tokio::test]
async fn converse_with_a_tool_round_trip_on_every_provider() {
    let (_upstream, gw) = setup().await;
    let client = sdk(&gw, CLIENT_SECRET);
    for model in [CLAUDE, "gpt-4o", "amazon.nova-lite-v1:0"] {
        let out = client
            .converse()
            .model_id(model)
            .messages(user("Weather in Paris?"))
            .tool_config(weather_tools())
            .send()
            .await
            .unwrap();
        assert_eq!(out.stop_reason().as_str(), "tool_use", "{model}");
        let Some(Out::Message(msg)) = out.output() else {
            panic!("no message")
        };
        let tool = msg
            .content()
            .iter()
            .find_map(|b| b.as_tool_use().ok())
            .unwrap()
            .clone();
        assert_eq!(tool.name(), "get_weather");
        assert_eq!(
            open_bedrock_server::format::converse::document_to_json(tool.input()),
            json!({"city": "Paris"})
        );
        assert!(out.usage().unwrap().output_tokens() > 0);

        let result = ToolResultBlock::builder()
            .tool_use_id(tool.tool_use_id())
            .content(ToolResultContentBlock::Text("21C and sunny".into()))
            .build()
            .unwrap();
        let assistant = Message::builder()
            .role(ConversationRole::Assistant)
            .content(ContentBlock::ToolUse(
                ToolUseBlock::builder()
                    .tool_use_id(tool.tool_use_id())
                    .name("get_weather")
                    .input(tool.input().clone())
                    .build()
                    .unwrap(),
            ))
            .build()
            .unwrap();
        let tool_turn = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::ToolResult(result))
            .content(ContentBlock::Text("thanks".into()))
            .build()
            .unwrap();
        let out = client
            .converse()
            .model_id(model)
            .messages(user("Weather in Paris?"))
            .messages(assistant)
            .messages(tool_turn)
            .tool_config(weather_tools())
            .send()
            .await
            .unwrap();
        assert_eq!(out.stop_reason().as_str(), "end_turn", "{model}");
        let Some(Out::Message(msg)) = out.output() else {
            panic!("no message")
        };
        assert_eq!(
            msg.content()[0].as_text().unwrap(),
            "You said: thanks",
            "{model}"
        );
        let usage = out.usage().unwrap();
        assert_eq!(
            usage.total_tokens(),
            usage.input_tokens()
                + usage.output_tokens()
                + usage.cache_read_input_tokens().unwrap_or(0)
        );
    }
}

#[tokio::test]
async fn converse_stream_text_and_tool_use() {
    let (_upstream, gw) = setup().await;
    let client = sdk(&gw, CLIENT_SECRET);
    for model in [CLAUDE, "gpt-4o"] {
        let mut out = client
            .converse_stream()
            .model_id(model)
            .messages(user("hi"))
            .send()
            .await
            .unwrap();
        let (mut text, mut stop, mut usage) = (String::new(), None, None);
        while let Some(ev) = out.stream.recv().await.unwrap() {
            match ev {
                Ev::ContentBlockDelta(d) => {
                    if let Some(ContentBlockDelta::Text(t)) = d.delta() {
                        text.push_str(t);
                    }
                }
                Ev::MessageStop(s) => stop = Some(s.stop_reason().as_str().to_owned()),
                Ev::Metadata(m) => usage = m.usage().map(|u| u.output_tokens()),
                _ => {}
            }
        }
        assert_eq!(text, "You said: hi", "{model}");
        assert_eq!(stop.as_deref(), Some("end_turn"));
        assert!(usage.unwrap() > 0);

        let mut out = client
            .converse_stream()
            .model_id(model)
            .messages(user("Weather?"))
            .tool_config(weather_tools())
            .send()
            .await
            .unwrap();
        let (mut name, mut input, mut stop) = (None, String::new(), None);
        while let Some(ev) = out.stream.recv().await.unwrap() {
            match ev {
                Ev::ContentBlockStart(s) => {
                    if let Some(ContentBlockStart::ToolUse(t)) = s.start() {
                        name = Some(t.name().to_owned());
                    }
                }
                Ev::ContentBlockDelta(d) => {
                    if let Some(ContentBlockDelta::ToolUse(t)) = d.delta() {
                        input.push_str(t.input());
                    }
                }
                Ev::MessageStop(s) => stop = Some(s.stop_reason().as_str().to_owned()),
                _ => {}
            }
        }
        assert_eq!(name.as_deref(), Some("get_weather"), "{model}");
        assert_eq!(
            serde_json::from_str::<Value>(&input).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(stop.as_deref(), Some("tool_use"));
    }
}

#[tokio::test]
async fn sigv4_with_a_wrong_secret_and_missing_credentials_are_403_in_aws_shape() {
    let (upstream, gw) = setup().await;
    let err = sdk(&gw, "not-the-secret")
        .converse()
        .model_id(CLAUDE)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    let svc = err.into_service_error();
    assert_eq!(
        svc.meta().code(),
        Some("InvalidSignatureException"),
        "{svc:?}"
    );

    let url = gw.url("/model/gpt-4o/invoke");
    let res = send_raw(
        Method::POST,
        &url,
        None,
        Some(claude_body("hi").into()),
        &[],
    )
    .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.headers["x-amzn-errortype"],
        "UnrecognizedClientException"
    );
    assert!(res.json()["message"].is_string());
    let res = send_raw(
        Method::POST,
        &url,
        Some("wrong"),
        Some(claude_body("hi").into()),
        &[],
    )
    .await;
    assert_eq!(
        (res.status, &res.headers["x-amzn-errortype"]),
        (
            403,
            &"UnrecognizedClientException"
                .parse::<http::HeaderValue>()
                .unwrap()
        )
    );
    // x-api-key is accepted too.
    let res = send_raw(
        Method::POST,
        &url,
        None,
        Some(claude_body("hi").into()),
        &[("x-api-key", KEY)],
    )
    .await;
    assert_eq!(res.status, 200);
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.path == "/v1/chat/completions"),
        "refused requests never went upstream"
    );
}

#[tokio::test]
async fn request_errors_are_bedrock_errors() {
    let (_upstream, gw) = setup().await;
    let post_raw = |path: &str, body: &'static str| {
        let url = gw.url(path);
        async move { send_raw(Method::POST, &url, Some(KEY), Some(body.into()), &[]).await }
    };
    let res = post_raw("/model/gpt-4o/invoke", "not json").await;
    assert_eq!(
        (
            res.status,
            res.headers["x-amzn-errortype"].to_str().unwrap()
        ),
        (400, "ValidationException")
    );
    let res = post_raw("/model/gpt-4o/invoke", r#"{"prompt":"hi"}"#).await;
    assert_eq!(res.status, 400);
    assert!(res.json()["message"]
        .as_str()
        .unwrap()
        .contains("Malformed input request"));
    let res = post_raw("/model/gpt-4o/converse", r#"{"messages":"x"}"#).await;
    assert_eq!(
        (
            res.status,
            res.headers["x-amzn-errortype"].to_str().unwrap()
        ),
        (400, "ValidationException")
    );
    let res = post_raw("/model/gpt-4o/count-tokens", "{}").await;
    assert_eq!(
        (
            res.status,
            res.headers["x-amzn-errortype"].to_str().unwrap()
        ),
        (404, "UnknownOperationException")
    );
    let res = send_raw(
        Method::GET,
        &gw.url("/model/gpt-4o/invoke"),
        Some(KEY),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (res.status, res.headers["allow"].to_str().unwrap()),
        (405, "POST")
    );
    // An upstream Bedrock error keeps its name and status.
    let res = post_raw(
        "/model/anthropic.claude-denied-v1/converse",
        r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
    )
    .await;
    assert_eq!(
        (
            res.status,
            res.headers["x-amzn-errortype"].to_str().unwrap()
        ),
        (403, "AccessDeniedException")
    );
}

#[tokio::test]
async fn mid_stream_errors_become_exception_frames() {
    let (_upstream, gw) = setup().await;
    let model = "anthropic.claude-3-haiku-midstream-error-v1:0".replace(':', "%3A");
    let res = send_raw(
        Method::POST,
        &gw.url(&format!("/model/{model}/invoke-with-response-stream")),
        Some(KEY),
        Some(claude_body("hi").into()),
        &[],
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.headers["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let frames = read_frames(&res.body);
    let (kind, name, payload) = frames.last().unwrap();
    assert_eq!(
        (kind.as_str(), name.as_str()),
        ("exception", "modelStreamErrorException"),
        "{frames:?}"
    );
    assert!(payload["message"].is_string());
    let first = base64::engine::general_purpose::STANDARD
        .decode(frames[0].2["bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&first).unwrap()["type"],
        "message_start"
    );

    let res = send_raw(
        Method::POST,
        &gw.url("/model/amazon.nova-midstream-error-v1%3A0/converse-stream"),
        Some(KEY),
        Some(r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#.into()),
        &[],
    )
    .await;
    let frames = read_frames(&res.body);
    assert_eq!(frames[0].1, "messageStart");
    let (kind, exception, payload) = frames.last().unwrap();
    assert_eq!(kind, "exception", "{frames:?}");
    assert_eq!(
        exception, "throttlingException",
        "the upstream's exception keeps its name"
    );
    assert_eq!(
        payload["message"],
        "Too many tokens, please wait before trying again."
    );
}

#[tokio::test]
async fn anthropic_messages_complete_and_streamed_on_every_provider() {
    let (_upstream, gw) = setup().await;
    for path in ["/v1/messages", "/anthropic/v1/messages"] {
        for model in [CLAUDE, "gpt-4o"] {
            let body = json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
            let headers = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
            let res = send_raw(Method::POST, &gw.url(path), None, Some(bytes), &headers).await;
            assert_eq!(res.status, 200, "{path} {model}: {}", res.text());
            let v = res.json();
            assert_eq!(
                (v["type"].as_str(), v["role"].as_str()),
                (Some("message"), Some("assistant"))
            );
            assert_eq!(v["content"][0]["text"], "You said: hi");
            assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);

            let mut body = body.clone();
            body["stream"] = json!(true);
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
            let res = send_raw(Method::POST, &gw.url(path), None, Some(bytes), &headers).await;
            assert!(res.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream"));
            let events = res.sse_events();
            assert_eq!(events.first().unwrap().0.as_deref(), Some("message_start"));
            assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
            let text: String = events
                .iter()
                .filter_map(|(_, d)| d["delta"]["text"].as_str())
                .collect();
            assert_eq!(text, "You said: hi", "{path} {model}");
        }
    }
}

#[tokio::test]
async fn anthropic_messages_tool_use_and_errors() {
    let (_upstream, gw) = setup().await;
    let body = json!({"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
    let res = send(
        Method::POST,
        &gw.url("/v1/messages"),
        Some(KEY),
        Some(&body),
    )
    .await;
    let v = res.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let tool = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(
        (tool["name"].as_str(), &tool["input"]),
        (Some("get_weather"), &json!({"city": "Paris"}))
    );

    let res = send(Method::POST, &gw.url("/v1/messages"), None, Some(&body)).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.json()["error"]["type"], "authentication_error");
    let res = send(
        Method::POST,
        &gw.url("/v1/messages"),
        Some(KEY),
        Some(&json!({"max_tokens": 5, "messages": []})),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["type"], "error");
    let res = send(Method::GET, &gw.url("/v1/messages"), Some(KEY), None).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.json()["type"], "error");
}
