//! Hardening (issue 16), through the real server: bodies that would blow up memory, invalid values,
//! silent connections, clients that stop reading. Every test is bounded in count and time and
//! asserts only "eventually, within a generous bound".

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::fake::{self, Fake, Reply};
use common::{
    closed_by_peer, config_for, gateway_for, post, raw_post, raw_post_as, read_response, send_raw,
    start_full, start_gateway, start_service, KEY,
};
use http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// POSTs raw bytes to the chat route with the gateway key.
async fn post_bytes(gw: &common::TestGateway, body: impl Into<Bytes>) -> common::TestResponse {
    send_raw(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        Some(body.into()),
        &[],
    )
    .await
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn a_json_bomb_is_refused_before_it_is_decoded_or_forwarded() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    // One million tiny values (2 MiB): far past the value budget, though well under the byte limit.
    let mut bomb =
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"x":["#.to_vec();
    bomb.extend(std::iter::repeat_n(&b"0,"[..], 1_000_000).flatten());
    bomb.extend_from_slice(b"0]}");
    let res = post_bytes(&gw, bomb).await;
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.json()["error"]["code"], "request_too_complex");
    // Deep nesting is a 400, never a stack overflow.
    let deep = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"x"}}],"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let res = post_bytes(&gw, deep).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(upstream.count(), 0, "nothing reached an upstream");
}

#[tokio::test]
async fn invalid_values_are_400s_naming_the_param_for_every_upstream_with_no_upstream_call() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let cases = [
        (json!({"seed":"42"}), "seed"),
        (json!({"response_format":["json"]}), "response_format"),
        (json!({"n":0}), "n"),
        (json!({"logit_bias":[1,2]}), "logit_bias"),
        (json!({"tools":[{"type":"function"}]}), "tools[0].function"),
        (
            json!({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"ultra"}}]}]}),
            "messages[0].content[0].image_url.detail",
        ),
        (
            json!({"messages":[{"role":"user","content":"x"},{"role":"tool","content":"42"}]}),
            "messages[1].tool_call_id",
        ),
        (json!({"max_tokens":0}), "max_tokens"),
        (json!({"max_completion_tokens":0}), "max_completion_tokens"),
        (
            json!({"stream_options":{"include_usage":true}}),
            "stream_options",
        ),
        (json!({"top_logprobs":2}), "top_logprobs"),
        (json!({"logprobs":"yes"}), "logprobs"),
        (json!({"temperature":"hot"}), "temperature"),
        (json!({"tool_choice":"sometimes"}), "tool_choice"),
        (
            json!({"messages":[{"role":"user","content":5}]}),
            "messages[0].content",
        ),
    ];
    for model in [
        "gpt-4o",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "amazon.titan-text-express-v1",
        "amazon.nova-lite-v1:0",
    ] {
        for (extra, param) in &cases {
            let mut body = chat(extra.clone());
            body["model"] = json!(model);
            let res = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(res.status, 400, "{model} {extra}: {}", res.text());
            assert_eq!(res.json()["error"]["param"], *param, "{model} {extra}");
        }
    }
    // Unknown fields still reach an OpenAI-compatible upstream.
    let res = post(
        &gw,
        "/v1/chat/completions",
        &chat(json!({"vendor_knob":{"a":[1]}})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let sent = upstream.requests();
    assert_eq!(sent.len(), 1, "only the valid request reached an upstream");
    assert_eq!(sent[0].json()["vendor_knob"], json!({"a":[1]}));
}

#[tokio::test]
async fn native_bodies_are_checked_before_they_are_forwarded() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let claude = "anthropic.claude-3-haiku-20240307-v1:0";
    for (body, param) in [
        (
            json!({"anthropic_version":5,"model":claude,"max_tokens":5,"messages":[{"role":"user","content":"x"}]}),
            "anthropic_version",
        ),
        (
            json!({"anthropic_version":"bedrock-2023-05-31","model":claude,"max_tokens":5,"messages":[]}),
            "messages",
        ),
        (
            json!({"anthropic_version":"bedrock-2023-05-31","model":claude,"max_tokens":5,"messages":[{"role":"user","content":""}]}),
            "messages[0].content",
        ),
        (
            json!({"anthropic_version":"bedrock-2023-05-31","model":claude,"max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":"not an object"}]}]}),
            "messages[1].content[0].input",
        ),
        (
            json!({"model":"amazon.titan-text-express-v1","inputText":""}),
            "inputText",
        ),
    ] {
        let res = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text());
        assert_eq!(res.json()["error"]["param"], param, "{body}");
    }
    // Converse on the Bedrock runtime surface: an empty content list.
    let res = post(
        &gw,
        "/model/amazon.nova-lite-v1:0/converse",
        &json!({"messages":[{"role":"user","content":[]}]}),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.headers["x-amzn-errortype"], "ValidationException");
    assert_eq!(upstream.count(), 0, "nothing reached an upstream");
}

#[tokio::test]
async fn a_huge_or_control_character_model_id_is_a_400_before_routing() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let long = format!("anthropic.claude-{}", "x".repeat(100_000));
    for model in [long.as_str(), "anthropic.claude\u{7}-v1:0", "gpt-4o\r\nx"] {
        let res = post(&gw, "/v1/chat/completions", &chat(json!({"model": model}))).await;
        assert_eq!(res.status, 400, "{}", res.text());
        assert_eq!(res.json()["error"]["param"], "model");
    }
    // The same on the Bedrock runtime surface, where the model comes from the path.
    let path = format!("/model/amazon.nova-{}/converse", "x".repeat(4000));
    let res = post(
        &gw,
        &path,
        &json!({"messages":[{"role":"user","content":[{"text":"x"}]}]}),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(upstream.count(), 0, "nothing reached an upstream");
}

#[tokio::test]
async fn the_body_byte_budget_sheds_with_503_instead_of_growing() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.max_request_bytes = 4096;
    config.server.max_body_bytes_in_flight = 4096;
    let gateway = gateway_for(&config, None);
    let budget = gateway.body_budget().clone();
    let gw = start_service(gateway).await;
    // One client sends most of a body and pauses: its bytes stay taken from the budget.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 3000]).await.unwrap();
    // Wait until its bytes are taken: on serving threads another connection's body may otherwise
    // be read first, and then the slow one is the body shed.
    for _ in 0..500 {
        if budget.in_flight() >= 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(budget.in_flight() >= 3000, "the slow body holds the budget");
    // Another body that does not fit in what is left is refused at once.
    let mut refused = false;
    for _ in 0..100 {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(2000)
        );
        let res = post_bytes(&gw, body).await;
        if res.status == 503 {
            assert_eq!(res.headers["retry-after"], "1");
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the second body was shed while the first held the budget"
    );
    drop(slow);
    // The budget comes back with the first request.
    let mut served = false;
    for _ in 0..100 {
        let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
        if res.status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
}

/// The soft limit on open files of this process (`/proc/self/limits`), when it can be read.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test]
async fn two_thousand_silent_connections_are_closed_while_a_real_request_is_served() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.first_request_timeout = Duration::from_millis(1500);
    let gw = start_gateway(config, None).await;
    // Each connection is two descriptors in this process (client and server side): fewer than
    // 2,000 only where the descriptor limit would not allow them.
    let count = open_files_limit().map_or(2000, |limit| 2000.min(limit.saturating_sub(300) / 2));
    let mut silent = Vec::new();
    for i in 0..count {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        if i % 10 == 0 {
            // Half an HTTP/2 preface, then nothing.
            s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        } else if i % 10 == 1 {
            // A full preface but no SETTINGS and no request.
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
        } else if i % 10 == 2 {
            // Half a request line.
            s.write_all(b"POST /v1/chat/compl").await.unwrap();
        }
        silent.push(s);
    }
    let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(res.status, 200, "a real request is served meanwhile");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let waits: Vec<_> = silent
        .into_iter()
        .map(|s| tokio::spawn(closed_by_peer(s, deadline)))
        .collect();
    let mut open = 0;
    for w in waits {
        if !w.await.unwrap() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "every silent connection was closed within 20 s");
    let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn a_request_that_begins_like_the_http2_preface_and_arrives_in_pieces_is_served() {
    // "P" could start either protocol's first line: the server must wait for more bytes, then
    // serve HTTP/1 (when its peek runs within the pause, which it does unless the box is badly
    // loaded: then the plain HTTP/1 path serves it). The second round checks keep-alive on the
    // connection the fallback serves.
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let body = serde_json::to_vec(&chat(json!({}))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    for _ in 0..2 {
        s.write_all(b"P").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(&head.as_bytes()[1..]).await.unwrap();
        s.write_all(&body).await.unwrap();
        let reply = read_response(&mut s).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("chat.completion"), "{reply}");
    }
}

#[tokio::test]
async fn a_zero_head_timeout_bounds_no_head_on_either_http1_path() {
    // Zero sets no head bound of its own (`ServerLimits::header_read_timeout`): not on the plain
    // HTTP/1 path, and not on the one a request that begins like the HTTP/2 preface takes.
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.header_read_timeout = Duration::ZERO;
    let gw = start_gateway(config, None).await;
    let request = raw_chat_request();
    // "P" alone goes to hyper-util's auto builder, which reads the preface's 24 bytes before it
    // picks HTTP/1: the head is still unfinished after the first 40.
    for first in [1, 8] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        for piece in [&request[..first], &request[first..40], &request[40..]] {
            s.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let reply = read_response(&mut s).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn past_max_connections_new_clients_wait_instead_of_failing() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.max_connections = 2;
    config.server.first_request_timeout = Duration::from_millis(500);
    let gw = start_gateway(config, None).await;
    let a = TcpStream::connect(gw.addr).await.unwrap();
    let b = TcpStream::connect(gw.addr).await.unwrap();
    // Both slots are taken by silent connections: this request waits in the backlog until their
    // deadline frees a slot, then it is served — no error.
    let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    drop((a, b));
}

/// A chat request's head and body, as raw HTTP/1.1 on a kept-alive connection.
fn raw_chat_request() -> Vec<u8> {
    raw_post("/v1/chat/completions", &chat(json!({})))
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.idle_timeout = Duration::from_millis(500);
    let gw = start_gateway(config, None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_chat_request()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The response arrives, then (the connection kept alive but idle) the server closes it.
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("the idle connection was not closed"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_head_timeout() {
    // The head timeout runs from a head's first byte, not from the previous response: a
    // connection idle for longer than it (and shorter than the idle timeout) still serves.
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.header_read_timeout = Duration::from_millis(300);
    config.server.idle_timeout = Duration::from_secs(30);
    let gw = start_gateway(config, None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(&raw_chat_request()).await.unwrap();
        let reply = read_response(&mut s).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // Idle for four head timeouts before the next request.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn a_request_head_trickled_byte_by_byte_is_closed_at_the_head_timeout() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.header_read_timeout = Duration::from_millis(500);
    config.server.idle_timeout = Duration::from_secs(60);
    config.server.first_request_timeout = Duration::from_secs(60);
    let gw = start_gateway(config, None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&raw_chat_request()).await.unwrap();
    let reply = read_response(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The next request, a byte every 100 ms: its head alone would take over ten seconds. Only
    // the head timeout can close the connection within the 10 s the test waits (the other
    // bounds are 60 s).
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        for byte in raw_chat_request() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    trickle.abort();
    assert!(closed.is_ok(), "the trickled head's connection stayed open");
    assert_eq!(
        upstream.count(),
        1,
        "the trickled request reached the upstream"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_stream_slot_and_upstream() {
    // An endless stream of fat chunks: far more than the socket buffers hold.
    let text = "x".repeat(2000);
    let chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]});
    let part = Bytes::from(format!("data: {chunk}\n\n"));
    let upstream = Fake::start(Arc::new(move |req: &fake::Recorded, attempt| {
        if req.json()["stream"] == true {
            Reply::Stream {
                content_type: "text/event-stream",
                parts: vec![part.clone(); 50_000],
                gap: Duration::ZERO,
                stall: true,
            }
        } else {
            fake::openai_answer(req, attempt)
        }
    }))
    .await;
    let mut config = config_for(&upstream.url());
    config.server.max_in_flight = 1;
    config.timeouts.stream_idle = Duration::from_millis(1000);
    // No other deadline of the connection's watchdog comes before the test's own: only the
    // stream's reader deadline can end the stream in time.
    config.server.first_request_timeout = Duration::from_secs(60);
    let gw = start_gateway(config, None).await;

    // A client with a small receive buffer that reads the head and then stops reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    let body = serde_json::to_vec(&chat(json!({"stream": true}))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // The stream holds the only in-flight slot…
    let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(
        res.status, 503,
        "the stalled stream holds its slot at first"
    );
    // …until the connection's watchdog finds its reader stalled and closes it: the upstream sees
    // the cancel and the slot comes back, though nothing reads (or polls) the stalled stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while *upstream.dropped_streams.lock().unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream never saw its stream cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut served = false;
    while tokio::time::Instant::now() < deadline {
        let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
        if res.status == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "the in-flight slot came back");
    let metrics = send_raw(Method::GET, &gw.url("/metrics"), Some(KEY), None, &[]).await;
    assert!(
        metrics.text().contains("obs_open_streams 0"),
        "{}",
        metrics.text()
    );
    drop(s);
}

#[tokio::test]
async fn request_ids_from_clients_are_capped_in_length_and_charset() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let body = Bytes::from(serde_json::to_vec(&chat(json!({}))).unwrap());
    let ok = send_raw(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        Some(body.clone()),
        &[("x-request-id", "trace-abc.123:4")],
    )
    .await;
    assert_eq!(ok.headers["x-request-id"], "trace-abc.123:4");
    let long = "a".repeat(300);
    for bad in [long.as_str(), "has space", "quote\"d", "<script>"] {
        let res = send_raw(
            Method::POST,
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            Some(body.clone()),
            &[("x-request-id", bad)],
        )
        .await;
        assert_eq!(res.status, 200);
        let id = res.headers["x-request-id"].to_str().unwrap();
        assert!(id.starts_with("req-") && id != bad, "{id}");
    }
    let sent = upstream.requests();
    assert!(sent[1..].iter().all(|r| r
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("req-"))));
}

#[tokio::test]
async fn health_and_errors_do_not_reveal_the_upstream() {
    // An upstream that is not there: the connection error chain stays in the log.
    let mut config = config_for("http://127.0.0.1:9");
    config.retry.max_attempts = 1;
    let gw = start_gateway(config, None).await;
    let health = send_raw(
        Method::GET,
        &gw.url("/v1/chat/completions/health"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(health.status, 200);
    assert!(!health.text().contains("127.0.0.1:9"), "{}", health.text());
    assert_eq!(health.json()["providers"]["openai"]["configured"], true);
    let res = post(&gw, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(res.status, 502);
    let message = res.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        !message.contains("127.0.0.1") && !message.contains("refused"),
        "{message}"
    );
}

/// hyper parses each request on a kept-alive connection into the header map the connection's last
/// reply was written from, and the gateway writes each reply into its own request's map: no
/// request header may reach a reply, whatever the number of headers before it on the connection.
#[tokio::test]
async fn request_headers_never_reach_a_reply_on_a_kept_alive_connection() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // A few headers; more than a kept map holds; a few again; a stream; as many as a kept map
    // holds; a reply translated to Claude's format; a relayed complete reply again.
    let (relayed, claude) = (
        "/v1/chat/completions",
        "/v1/chat/completions?target_format=bedrock_claude",
    );
    for (n, stream, path) in [
        (3, false, relayed),
        (40, false, relayed),
        (6, false, relayed),
        (6, true, relayed),
        (15, false, relayed),
        (8, false, claude),
        (2, false, relayed),
    ] {
        let probes: Vec<String> = (0..n).map(|i| format!("x-probe-{i}: secret-{i}")).collect();
        let request = raw_post_as(Some(KEY), path, &chat(json!({"stream": stream})), &probes);
        s.write_all(&request).await.unwrap();
        let reply = read_response(&mut s).await;
        let head = reply[..reply.find("\r\n\r\n").unwrap()].to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{reply}");
        for leaked in ["x-probe", "secret-", "authorization", "bearer", "host:"] {
            assert!(!head.contains(leaked), "{leaked} in the reply: {head}");
        }
        let content_type = if stream {
            "content-type: text/event-stream"
        } else {
            "content-type: application/json"
        };
        assert!(head.contains(content_type), "{head}");
        assert_eq!(head.matches("x-request-id: ").count(), 1, "{head}");
        assert_eq!(head.matches("content-type: ").count(), 1, "{head}");
        assert!(stream == reply.contains("data: [DONE]"), "{reply}");
        if path == claude {
            assert!(reply.contains(r#""type":"message""#), "{reply}");
        }
    }
    assert_eq!(upstream.count(), 7);
}
