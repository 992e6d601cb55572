//! The OpenAI → OpenAI pass-through end to end: when nothing in the request must change, the
//! upstream receives the client's bytes and the client receives the upstream's bytes (complete
//! replies and SSE streams alike), while the usage still reaches the metrics; whatever must change
//! (an alias, an injected `stream_options`, a `target_format`) still takes the canonical path.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::fake::{Fake, Recorded, Reply};
use common::*;
use http::Method;
use serde_json::{json, Value};

/// A complete reply with spacing, member order and an unknown member no serializer of ours writes.
const COMPLETION: &[u8] = br#"{"id":"chatcmpl-raw1",  "object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06",
  "choices":[{"index":0,"message":{"role":"assistant","content":"Hi \u00e9","refusal":null},"logprobs":null,"finish_reason":"stop"}],
  "usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10},"x_vendor":{"kept":[1, 2.50]}}"#;

/// A stream, cut into parts at awkward places (inside an event, inside `data:`).
const STREAM_PARTS: [&[u8]; 4] = [
    b"data: {\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\nda",
    b"ta: {\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\\\"lo\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    b"data: {\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    b"data: {\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":5,\"total_tokens\":26}}\n\ndata: [DONE]\n\n",
];

fn raw_answer(req: &Recorded, _attempt: usize) -> Reply {
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    if body["stream"] == true {
        let parts = if body["model"] == "gpt-cut" {
            vec![Bytes::from_static(STREAM_PARTS[0])]
        } else {
            STREAM_PARTS.iter().map(|p| Bytes::from_static(p)).collect()
        };
        return Reply::Stream {
            content_type: "text/event-stream",
            parts,
            gap: Duration::from_millis(2),
            stall: false,
        };
    }
    Reply::Body {
        status: 200,
        content_type: "application/json",
        headers: Vec::new(),
        body: Bytes::from_static(COMPLETION),
    }
}

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(std::sync::Arc::new(raw_answer)).await;
    let gw = start_full(&upstream, |c| {
        c.models.aliases.insert("fast".into(), "gpt-4o-mini".into());
    })
    .await;
    (upstream, gw)
}

async fn post_raw(gw: &TestGateway, path: &str, body: &'static [u8]) -> TestResponse {
    send_raw(
        Method::POST,
        &gw.url(path),
        Some(KEY),
        Some(Bytes::from_static(body)),
        &[],
    )
    .await
}

#[tokio::test]
async fn a_request_nothing_changes_is_relayed_as_bytes_both_ways_and_its_usage_still_counts() {
    let (upstream, gw) = setup().await;
    const SENT: &[u8] = br#"{ "messages": [{"role":"user","content":"h\u00e9llo"}],"model":"gpt-4o",  "temperature":0.50, "x_future":{"a":[1, 2]} }"#;
    let res = post_raw(&gw, "/v1/chat/completions", SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        &res.body[..],
        COMPLETION,
        "the upstream's bytes, as they came"
    );
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(
        &upstream.requests()[0].body[..],
        SENT,
        "the client's bytes, as sent"
    );

    let text = metrics_with(&gw, "obs_tokens_total").await;
    for needle in [
        r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 7"#,
        r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 3"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn a_stream_that_asked_for_usage_is_relayed_byte_for_byte_and_metered() {
    let (upstream, gw) = setup().await;
    const SENT: &[u8] = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let res = post_raw(&gw, "/v1/chat/completions", SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.body,
        STREAM_PARTS.concat(),
        "every data payload as the upstream wrote it, [DONE] exact"
    );
    assert_eq!(&upstream.requests()[0].body[..], SENT);
    let text = metrics_with(&gw, r#"direction="output",model="gpt-4o""#).await;
    for needle in [
        r#"obs_tokens_total{direction="input",model="gpt-4o",provider="openai"} 21"#,
        r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 5"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn a_stream_without_usage_gets_stream_options_spliced_in_and_no_usage_chunk() {
    let (upstream, gw) = setup().await;
    const SENT: &[u8] =
        br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let res = post_raw(&gw, "/v1/chat/completions", SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    // The usage chunk (the last payload before [DONE]) is not for this client.
    let all = STREAM_PARTS.concat();
    let usage_at = all
        .windows(6)
        .rposition(|w| w == b"data: ")
        .and_then(|done| all[..done].windows(6).rposition(|w| w == b"data: "))
        .unwrap();
    let mut expected = all[..usage_at].to_vec();
    expected.extend_from_slice(b"data: [DONE]\n\n");
    assert_eq!(res.body, expected);

    let sent = upstream.requests()[0].json();
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let mut without = sent.clone();
    without.as_object_mut().unwrap().remove("stream_options");
    assert_eq!(without, serde_json::from_slice::<Value>(SENT).unwrap());
    let text = metrics_with(&gw, r#"direction="output",model="gpt-4o""#).await;
    assert!(
        text.contains(r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 5"#),
        "the usage the client did not ask for is still metered:\n{text}"
    );
}

/// A client's `stream_options` is found however its key is written: with an escape in its name
/// it must not get a second member spliced in front of it (an upstream reads the last one, the
/// client's `include_usage: false`, and the stream's usage would go uncounted).
#[tokio::test]
async fn stream_options_with_an_escaped_key_still_asks_for_usage() {
    let (upstream, gw) = setup().await;
    const SENT: &[u8] = br#"{"model":"gpt-4o","stream":true,"stream_\u006fptions":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}"#;
    let res = post_raw(&gw, "/v1/chat/completions", SENT).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests()[0].json();
    assert_eq!(
        sent["stream_options"],
        json!({"include_usage": true}),
        "{}",
        String::from_utf8_lossy(&upstream.requests()[0].body)
    );
    let text = metrics_with(&gw, r#"direction="output",model="gpt-4o""#).await;
    assert!(
        text.contains(r#"obs_tokens_total{direction="output",model="gpt-4o",provider="openai"} 5"#),
        "the stream's usage is metered:\n{text}"
    );
}

#[tokio::test]
async fn a_relayed_stream_that_ends_without_a_finish_is_an_in_band_error() {
    let (_upstream, gw) = setup().await;
    let res = post_raw(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"gpt-cut","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200);
    let data = res.sse_data();
    assert_eq!(data.len(), 2, "{data:?}");
    assert_eq!(
        data[0].as_bytes(),
        &STREAM_PARTS[0][6..STREAM_PARTS[0].len() - 4]
    );
    let err: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_protocol_error", "{err}");
    assert!(
        !res.text().contains("[DONE]"),
        "a cut stream never looks complete"
    );
}

#[tokio::test]
async fn an_alias_and_a_target_format_take_the_canonical_path() {
    let (upstream, gw) = setup().await;
    const ALIASED: &[u8] = br#"{ "model": "fast", "messages": [{"role":"user","content":"hi"}] }"#;
    let res = post_raw(&gw, "/v1/chat/completions", ALIASED).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = &upstream.requests()[0];
    assert_eq!(
        sent.json()["model"],
        "gpt-4o-mini",
        "the alias is rewritten"
    );
    assert_ne!(&sent.body[..], ALIASED);
    assert_eq!(res.json()["usage"]["total_tokens"], 10);

    let res = post_raw(
        &gw,
        "/v1/chat/completions?target_format=bedrock_claude",
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let got = res.json();
    assert_eq!(got["type"], "message", "an Anthropic reply: {got}");
    assert_eq!(got["content"][0]["text"], "Hi é");
    assert_eq!(got["usage"]["output_tokens"], 3);
}

// ------------------------------------------------------------------------------------------------
// Claude → Claude and Titan → Titan on Bedrock: InvokeModel replies relayed as Bedrock's bytes.

const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
/// Its path segment.
const CLAUDE_PATH: &str = "anthropic.claude-3-haiku-20240307-v1%3A0";
const TITAN: &str = "amazon.titan-text-express-v1";

/// A complete Claude message as Bedrock writes it: its own id and model, spacing and an unknown
/// member no encoder of ours writes.
const CLAUDE_MESSAGE: &[u8] = br#"{"id":"msg_bdrk_01RAW","type":"message","role":"assistant","model":"claude-3-haiku-20240307",
  "content":[{"type":"text","text":"Hi \u00e9"}],"stop_reason":"end_turn","stop_sequence":null,
  "usage":{"input_tokens":13,"output_tokens":4},"x_vendor":[1, 2.50]}"#;

/// Claude stream events as Bedrock writes them (`ping` and all), the last with its invocation
/// metrics, whose counts win over `message_start`'s placeholder input count.
const CLAUDE_EVENTS: [&[u8]; 8] = [
    br#"{"type":"message_start","message":{"id":"msg_bdrk_01RAW","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2,"output_tokens":1}}}"#,
    br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    br#"{"type": "ping"}"#,
    br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel\"lo"}}"#,
    br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" \u00e9"}}"#,
    br#"{"type":"content_block_stop","index":0}"#,
    br#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#,
    br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":21,"outputTokenCount":5,"invocationLatency":100,"firstByteLatency":40}}"#,
];

const TITAN_RESULT: &[u8] = br#"{"inputTextTokenCount":8, "results":[{"tokenCount":6,"outputText":"Hi \u00e9","completionReason":"FINISH"}]}"#;

const TITAN_CHUNKS: [&[u8]; 2] = [
    br#"{"outputText":"Hel","index":0,"totalOutputTextTokenCount":3,"completionReason":null,"inputTextTokenCount":9}"#,
    br#"{"outputText":"lo \u00e9", "index":1,"totalOutputTextTokenCount":7,"completionReason":"FINISH","inputTextTokenCount":null,"amazon-bedrock-invocationMetrics":{"inputTokenCount":9,"outputTokenCount":7,"invocationLatency":50,"firstByteLatency":20}}"#,
];

/// The strict fake Bedrock checks the request (SigV4, the native body); the answer is then
/// [`CLAUDE_MESSAGE`] / [`CLAUDE_EVENTS`] / [`TITAN_RESULT`] / [`TITAN_CHUNKS`], verbatim, the
/// stream cut before its final event for a model id with `-cut`.
fn raw_bedrock_answer(req: &Recorded, attempt: usize) -> Reply {
    let checked = fake::bedrock_answer(req, attempt);
    if !req.path.starts_with("/model/")
        || matches!(checked, Reply::Body { status, .. } if status != 200)
    {
        return checked;
    }
    let titan = req.path.contains("titan");
    if !req.path.ends_with("/invoke-with-response-stream") {
        return Reply::Body {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from_static(if titan { TITAN_RESULT } else { CLAUDE_MESSAGE }),
        };
    }
    let events: &[&[u8]] = if titan { &TITAN_CHUNKS } else { &CLAUDE_EVENTS };
    let keep = if req.path.contains("-cut") {
        events.len() - 1
    } else {
        events.len()
    };
    let frames: Vec<Bytes> = events[..keep]
        .iter()
        .map(|p| fake::raw_chunk_frame(p))
        .collect();
    fake::event_stream(fake::split_frames(&frames, 11))
}

async fn bedrock_setup(
    tweak: impl FnOnce(&mut open_bedrock_server::config::Config),
) -> (Fake, TestGateway) {
    let upstream = Fake::start(std::sync::Arc::new(raw_bedrock_answer)).await;
    let gw = start_full(&upstream, tweak).await;
    (upstream, gw)
}

/// The payload of each `chunk` frame of an event-stream body, as bytes; an exception frame as
/// `(type, message)`.
fn chunk_payloads(body: &[u8]) -> (Vec<Vec<u8>>, Option<(String, Value)>) {
    use base64::Engine;
    let mut payloads = Vec::new();
    let mut exception = None;
    for (kind, name, payload) in read_frames(body) {
        match (kind.as_str(), name.as_str()) {
            ("event", "chunk") => payloads.push(
                base64::engine::general_purpose::STANDARD
                    .decode(payload["bytes"].as_str().unwrap())
                    .unwrap(),
            ),
            ("exception", _) => exception = Some((name, payload)),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    (payloads, exception)
}

/// `obs_tokens_total` shows `input` and `output` tokens of `model` on Bedrock.
async fn assert_metered(gw: &TestGateway, model: &str, input: u64, output: u64) {
    let output = format!(
        r#"obs_tokens_total{{direction="output",model="{model}",provider="bedrock"}} {output}"#
    );
    // A stream's observation lands when its body ends: wait for the total it makes.
    let text = metrics_with(gw, &output).await;
    for needle in [
        format!(
            r#"obs_tokens_total{{direction="input",model="{model}",provider="bedrock"}} {input}"#
        ),
        output,
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
}

const CLAUDE_BODY: &[u8] = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
const TITAN_BODY: &[u8] =
    br#"{"inputText":"User: hi\nBot:","textGenerationConfig":{"maxTokenCount":50}}"#;

#[tokio::test]
async fn claude_on_invoke_is_relayed_as_bedrocks_bytes_with_its_token_headers_and_usage() {
    let (upstream, gw) = bedrock_setup(|_| {}).await;
    let res = post_raw(&gw, &format!("/model/{CLAUDE_PATH}/invoke"), CLAUDE_BODY).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        &res.body[..],
        CLAUDE_MESSAGE,
        "Bedrock's body, as it came (its id and model included)"
    );
    assert_eq!(res.headers["x-amzn-bedrock-input-token-count"], "13");
    assert_eq!(res.headers["x-amzn-bedrock-output-token-count"], "4");
    assert_eq!(
        upstream.requests()[0].json(),
        serde_json::from_slice::<Value>(CLAUDE_BODY).unwrap()
    );
    assert_metered(&gw, CLAUDE, 13, 4).await;
}

#[tokio::test]
async fn claude_on_invoke_with_response_stream_relays_every_chunk_payload_byte_for_byte() {
    let (_upstream, gw) = bedrock_setup(|_| {}).await;
    let res = post_raw(
        &gw,
        &format!("/model/{CLAUDE_PATH}/invoke-with-response-stream"),
        CLAUDE_BODY,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.headers["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let (payloads, exception) = chunk_payloads(&res.body);
    assert_eq!(exception, None);
    assert_eq!(
        payloads,
        CLAUDE_EVENTS.map(<[u8]>::to_vec),
        "every payload as Bedrock wrote it, its invocation metrics included"
    );
    assert_metered(&gw, CLAUDE, 21, 5).await;
}

#[tokio::test]
async fn claude_on_v1_messages_streams_bedrocks_events_as_sse() {
    let (_upstream, gw) = bedrock_setup(|_| {}).await;
    let res = post_raw(
        &gw,
        "/v1/messages",
        br#"{"model":"anthropic.claude-3-haiku-20240307-v1:0","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let mut expected = Vec::new();
    for payload in CLAUDE_EVENTS {
        let name = serde_json::from_slice::<Value>(payload).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned();
        expected.extend_from_slice(format!("event: {name}\ndata: ").as_bytes());
        expected.extend_from_slice(payload);
        expected.extend_from_slice(b"\n\n");
    }
    assert_eq!(res.text(), String::from_utf8(expected).unwrap());

    let res = post_raw(
        &gw,
        "/v1/messages",
        br#"{"model":"anthropic.claude-3-haiku-20240307-v1:0","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(&res.body[..], CLAUDE_MESSAGE);
}

#[tokio::test]
async fn titan_on_invoke_and_its_stream_is_relayed_as_bedrocks_bytes() {
    let (upstream, gw) = bedrock_setup(|_| {}).await;
    let res = post_raw(&gw, &format!("/model/{TITAN}/invoke"), TITAN_BODY).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(&res.body[..], TITAN_RESULT);
    assert_eq!(res.headers["x-amzn-bedrock-input-token-count"], "8");
    assert_eq!(res.headers["x-amzn-bedrock-output-token-count"], "6");
    assert_eq!(
        upstream.requests()[0].json(),
        serde_json::from_slice::<Value>(TITAN_BODY).unwrap()
    );

    let res = post_raw(
        &gw,
        &format!("/model/{TITAN}/invoke-with-response-stream"),
        TITAN_BODY,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let (payloads, exception) = chunk_payloads(&res.body);
    assert_eq!(exception, None);
    assert_eq!(payloads, TITAN_CHUNKS.map(<[u8]>::to_vec));
    assert_metered(&gw, TITAN, 17, 13).await;
}

#[tokio::test]
async fn a_relayed_bedrock_stream_cut_before_its_final_event_ends_in_an_exception_frame() {
    let (_upstream, gw) = bedrock_setup(|_| {}).await;
    for (model, body, events) in [
        (
            "anthropic.claude-3-haiku-cut-v1%3A0",
            CLAUDE_BODY,
            &CLAUDE_EVENTS[..],
        ),
        ("amazon.titan-text-cut-v1", TITAN_BODY, &TITAN_CHUNKS[..]),
    ] {
        let res = post_raw(
            &gw,
            &format!("/model/{model}/invoke-with-response-stream"),
            body,
        )
        .await;
        assert_eq!(res.status, 200, "{model}: {}", res.text());
        let (payloads, exception) = chunk_payloads(&res.body);
        let expected: Vec<Vec<u8>> = events[..events.len() - 1]
            .iter()
            .map(|p| p.to_vec())
            .collect();
        assert_eq!(payloads, expected, "{model}");
        let (name, payload) = exception.unwrap_or_else(|| panic!("{model}: no exception frame"));
        assert!(name.ends_with("Exception"), "{model}: {name}");
        assert!(
            payload["message"].as_str().unwrap().contains("ended"),
            "{model}: {payload}"
        );
    }
    // And on the Anthropic API: its in-band `error` event.
    let res = post_raw(
        &gw,
        "/v1/messages",
        br#"{"model":"anthropic.claude-3-haiku-cut-v1:0","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    let events = res.sse_events();
    let (name, last) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{events:?}");
    assert_eq!(last["type"], "error", "{last}");
    assert!(!events
        .iter()
        .any(|(n, _)| n.as_deref() == Some("message_stop")));
}

#[tokio::test]
async fn whatever_must_change_still_takes_the_canonical_path_on_bedrock() {
    // The smart fake names its Claude replies `claude-fake`: a relayed reply says so, a translated
    // one names the client's model.
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |c| {
        c.guardrails.models = vec![open_bedrock_server::config::GuardrailRule {
            prefix: "anthropic.claude-3-haiku-guarded".into(),
            identifier: "gr-allow".into(),
            version: "1".into(),
            trace: None,
        }];
    })
    .await;
    let res = post_raw(&gw, &format!("/model/{CLAUDE_PATH}/invoke"), CLAUDE_BODY).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json()["model"],
        "claude-fake",
        "nothing changes: relayed"
    );

    // An OpenAI client of Claude: translated.
    let res = post_raw(
        &gw,
        "/v1/chat/completions",
        br#"{"model":"anthropic.claude-3-haiku-20240307-v1:0","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let got = res.json();
    assert_eq!(got["object"], "chat.completion", "{got}");
    assert_eq!(got["model"], CLAUDE);

    // A Claude client whose request is rewritten (structured output lowered to a forced tool),
    // or whose model gets a configured guardrail: the gateway's encoding of the reply.
    for (path, model, body, stream) in [
        (
            format!("/model/{CLAUDE_PATH}/invoke"),
            CLAUDE,
            &br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"messages":[{"role":"user","content":"Weather in Paris?"}],"output_format":{"type":"json_schema","schema":{"type":"object","properties":{"answer":{"type":"string"},"city":{"type":"string"}},"required":["answer","city"]}}}"#[..],
            false,
        ),
        (
            "/model/anthropic.claude-3-haiku-guarded-v1%3A0/invoke".to_owned(),
            "anthropic.claude-3-haiku-guarded-v1:0",
            CLAUDE_BODY,
            false,
        ),
        (
            "/model/anthropic.claude-3-haiku-guarded-v1%3A0/invoke-with-response-stream".to_owned(),
            "anthropic.claude-3-haiku-guarded-v1:0",
            CLAUDE_BODY,
            true,
        ),
    ] {
        let res = post_raw(&gw, &path, body).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        let got = if stream {
            let (payloads, exception) = chunk_payloads(&res.body);
            assert_eq!(exception, None, "{path}");
            serde_json::from_slice::<Value>(&payloads[0]).unwrap()["message"].clone()
        } else {
            res.json()
        };
        assert_eq!(got["type"], "message", "{path}: {got}");
        assert_eq!(got["model"], model, "{path}: translated, not relayed: {got}");
    }
    let sent = upstream.requests();
    assert!(
        sent[sent.len() - 2].header("x-amzn-bedrock-guardrailidentifier") == Some("gr-allow"),
        "the guardrail went upstream"
    );

    // A Titan client whose stop sequence the gateway enforces itself (Titan takes only `User:` or
    // pipes): the text is cut by the gateway, so the reply is decoded, not relayed. (A native
    // Titan body is forwarded as written, so only a translated request carries such a stop.)
    let res = post_raw(
        &gw,
        "/v1/chat/completions?target_format=bedrock_titan",
        br#"{"model":"amazon.titan-text-express-v1","stop":["said"],"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let got = res.json();
    assert_eq!(got["results"][0]["outputText"], "You ", "{got}");
}
