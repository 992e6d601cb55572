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
