//! `POST /v1/embeddings` through the real stack, against the strict fakes: OpenAI forwarded,
//! Titan fanned out one text per call and reassembled in order, Cohere in batches of 96, vectors
//! as floats or base64, usage summed, the shared auth, retries, metrics and error dialect.

mod common;

use base64::Engine as _;
use common::fake::{self, fake_tokens, fake_vector, Fake};
use common::*;
use http::Method;
use serde_json::{json, Value};

const TITAN_V2: &str = "amazon.titan-embed-text-v2:0";
const TITAN_V1: &str = "amazon.titan-embed-text-v1";
const COHERE_V3: &str = "cohere.embed-english-v3";
const COHERE_V4: &str = "cohere.embed-v4:0";

async fn setup() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    (upstream, gw)
}

fn vectors(reply: &Value) -> Vec<Vec<f32>> {
    reply["data"]
        .as_array()
        .expect("data")
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i, "in input order");
            match &d["embedding"] {
                Value::String(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                v => serde_json::from_value(v.clone()).unwrap(),
            }
        })
        .collect()
}

/// The upstream bodies of the embedding calls the fake received, in arrival order.
fn invoked(upstream: &Fake, model: &str) -> Vec<Value> {
    upstream
        .requests()
        .iter()
        .filter(|r| {
            percent_encoding::percent_decode_str(&r.path)
                .decode_utf8_lossy()
                .contains(&format!("/model/{model}/invoke"))
        })
        .map(|r| r.json())
        .collect()
}

#[tokio::test]
async fn openai_embeddings_are_forwarded_and_base64_decodes_to_the_same_vectors() {
    let (upstream, gw) = setup().await;
    let body = json!({"model": "text-embedding-3-small", "input": ["hello world", "bye"],
        "dimensions": 4, "user": "u-1"});
    let res = post(&gw, "/v1/embeddings", &body).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let reply = res.json();
    assert_eq!(reply["object"], "list");
    assert_eq!(reply["model"], "text-embedding-3-small");
    assert_eq!(
        vectors(&reply),
        [fake_vector("hello world", 4), fake_vector("bye", 4)]
    );
    assert_eq!(
        reply["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    assert_eq!(res.headers["x-gateway-provider"], "openai");
    let sent = upstream.requests();
    let sent = sent
        .iter()
        .find(|r| r.path == "/v1/embeddings")
        .expect("forwarded");
    assert_eq!(sent.json(), body, "forwarded as written");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    // The chat posts' headers: JSON both ways, the request id the client was answered with.
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("accept"), Some("application/json"));
    assert_eq!(
        sent.header("x-request-id"),
        res.headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
    );
    assert!(sent.header("x-request-id").is_some());

    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let res = post(&gw, "/v1/embeddings", &b64).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let reply = res.json();
    assert!(reply["data"][0]["embedding"].is_string(), "base64 as asked");
    assert_eq!(
        vectors(&reply),
        [fake_vector("hello world", 4), fake_vector("bye", 4)]
    );
}

#[tokio::test]
async fn titan_v2_fans_a_list_out_one_text_per_call_and_keeps_the_order() {
    let (upstream, gw) = setup().await;
    let texts: Vec<String> = (0..20).map(|i| "word ".repeat(i + 1)).collect();
    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": TITAN_V2, "input": texts, "dimensions": 256, "normalize": false,
            "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let reply = res.json();
    let expected: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t, 256)).collect();
    assert_eq!(vectors(&reply), expected);
    let tokens: u64 = texts.iter().map(|t| fake_tokens(t)).sum();
    assert_eq!(
        reply["usage"]["prompt_tokens"], tokens,
        "summed over the calls"
    );
    assert_eq!(reply["usage"]["total_tokens"], tokens);
    let calls = invoked(&upstream, TITAN_V2);
    assert_eq!(calls.len(), 20, "one call per text");
    let mut seen: Vec<String> = calls
        .iter()
        .map(|c| {
            assert_eq!(c["dimensions"], 256);
            assert_eq!(c["normalize"], false);
            c["inputText"].as_str().unwrap().to_owned()
        })
        .collect();
    seen.sort();
    let mut want = texts.clone();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn unsupported_dimensions_are_a_400_before_any_upstream_call() {
    let (upstream, gw) = setup().await;
    for (model, dims) in [
        (TITAN_V2, 300),
        (TITAN_V1, 256),
        (COHERE_V3, 512),
        (COHERE_V4, 100),
    ] {
        let res = post(
            &gw,
            "/v1/embeddings",
            &json!({"model": model, "input": "hi", "dimensions": dims}),
        )
        .await;
        assert_eq!(res.status, 400, "{model}: {}", res.text());
        let err = res.json();
        assert_eq!(err["error"]["param"], "dimensions", "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(model),
            "{err}"
        );
    }
    assert_eq!(upstream.count(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn cohere_takes_batches_of_96_with_the_input_type_defaulted_or_chosen() {
    let (upstream, gw) = setup().await;
    let texts: Vec<String> = (0..100).map(|i| format!("doc {i}")).collect();
    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": COHERE_V3, "input": texts}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let reply = res.json();
    let expected: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t, 1024)).collect();
    assert_eq!(vectors(&reply), expected);
    assert_eq!(
        reply["usage"]["prompt_tokens"], 200,
        "from the token-count headers, summed"
    );
    let calls = invoked(&upstream, COHERE_V3);
    let mut sizes: Vec<usize> = calls
        .iter()
        .map(|c| c["texts"].as_array().unwrap().len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [4, 96]);
    assert!(calls.iter().all(|c| c["input_type"] == "search_document"));

    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": COHERE_V4, "input": "what is rust?", "dimensions": 512,
            "input_type": "search_query", "truncate": "RIGHT"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(vectors(&res.json()), [fake_vector("what is rust?", 512)]);
    let calls = invoked(&upstream, COHERE_V4);
    assert_eq!(
        calls,
        [
            json!({"texts": ["what is rust?"], "input_type": "search_query", "truncate": "RIGHT",
            "output_dimension": 512})
        ]
    );

    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": COHERE_V3, "input": "x", "input_type": "poetry"}),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["error"]["param"], "input_type");
}

#[tokio::test]
async fn bad_input_wrong_models_and_missing_keys_answer_in_the_openai_dialect() {
    let (upstream, gw) = setup().await;
    let cases = [
        (json!({"model": TITAN_V2}), "input"),
        (json!({"input": "x"}), "model"),
        (json!({"model": TITAN_V2, "input": []}), "input"),
        (json!({"model": TITAN_V2, "input": ["a", ""]}), "input[1]"),
        (json!({"model": TITAN_V2, "input": [[1, 2, 3]]}), "input"),
        (
            json!({"model": TITAN_V2, "input": "a", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            json!({"model": "anthropic.claude-3-haiku-20240307-v1:0", "input": "a"}),
            "model",
        ),
    ];
    for (body, param) in cases {
        let res = post(&gw, "/v1/embeddings", &body).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text());
        assert_eq!(res.json()["error"]["param"], param, "{body}");
        assert_eq!(res.json()["error"]["type"], "invalid_request_error");
    }
    // An embedding model on the chat route.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": TITAN_V2, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("/v1/embeddings"), "{}", res.text());
    let res = send(
        Method::POST,
        &gw.url("/v1/embeddings"),
        None,
        Some(&json!({"model": TITAN_V2, "input": "a"})),
    )
    .await;
    assert_eq!(res.status, 401);
    assert!(res.json()["error"]["message"].is_string());
    let res = send(Method::GET, &gw.url("/v1/embeddings"), Some(KEY), None).await;
    assert_eq!(res.status, 405);
    assert_eq!(res.headers["allow"], "POST");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn upstream_failures_are_retried_and_show_in_the_metrics() {
    let (upstream, gw) = setup().await;
    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-429-once", "input": "again"}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.count(), 2, "the throttled call was retried");
    let res = post(
        &gw,
        "/v1/embeddings",
        &json!({"model": "amazon.titan-embed-text-v2:0-fail-500", "input": "x"}),
    )
    .await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert!(res.json()["error"]["message"].is_string());
    let metrics = send(Method::GET, &gw.url("/metrics"), Some(KEY), None)
        .await
        .text();
    assert!(
        metrics.lines().any(|l| l.contains("route=\"embeddings\"")
            && l.contains("model=\"text-embedding-429-once\"")
            && l.contains("status=\"200\"")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("obs_tokens_total")
            && l.contains("direction=\"input\"")
            && l.contains("text-embedding-429-once")),
        "{metrics}"
    );
}
