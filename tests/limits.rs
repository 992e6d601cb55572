//! Limits and lifecycle through the real server: rate limits with their headers, the token budget,
//! load shedding, client disconnects, and graceful shutdown with an open stream.

mod common;

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

use common::fake::{self, Fake, Reply};
use common::*;
use http::Method;
use open_bedrock_server::rate_limit::RateLimitConfig;
use serde_json::json;

fn chat() -> serde_json::Value {
    json!({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]})
}

#[tokio::test]
async fn rate_limit_admits_rate_plus_burst_then_429_with_headers() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    let mut limits = RateLimitConfig::new(NonZeroU32::new(3).unwrap());
    limits.burst = 2;
    config.rate_limit = Some(limits);
    let gw = start_gateway_from_config(config).await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let res = post(&gw, "/v1/chat/completions", &chat()).await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.headers["x-ratelimit-limit-requests"], "5");
        remaining.push(
            res.headers["x-ratelimit-remaining-requests"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
        assert!(res.headers.contains_key("x-ratelimit-reset-requests"));
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let res = post(&gw, "/v1/chat/completions", &chat()).await;
    assert_eq!(res.status, 429);
    let e = res.json();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    let after: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&after), "retry-after {after}");
    assert_eq!(res.headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(
        upstream.count(),
        5,
        "the rejected request never reached the upstream"
    );
    // Health stays open and unlimited.
    assert_eq!(
        send(Method::GET, &gw.url("/health"), None, None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn token_budget_is_charged_from_actual_usage_including_streams() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    let mut limits = RateLimitConfig::new(NonZeroU32::new(1000).unwrap());
    // Every fake reply uses 18 tokens: two replies exhaust a 30-token budget.
    limits.tokens_per_minute = Some(NonZeroU64::new(30).unwrap());
    config.rate_limit = Some(limits);
    let gw = start_gateway_from_config(config).await;
    let res = post(&gw, "/v1/chat/completions", &chat()).await;
    assert_eq!(res.status, 200);
    // A stream whose client did not ask for usage is charged all the same (the gateway asks the
    // upstream for it and keeps the usage chunk from the client).
    let stream = json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]});
    let res = post(&gw, "/v1/chat/completions", &stream).await;
    assert_eq!(res.status, 200);
    assert!(
        !res.sse_data()
            .iter()
            .any(|d| d.contains("\"total_tokens\"")),
        "no usage chunk unless asked"
    );
    let res = post(&gw, "/v1/chat/completions", &chat()).await;
    assert_eq!(res.status, 429, "{}", res.text());
    assert!(res.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tokens"));
    assert_eq!(res.json()["error"]["type"], "tokens");
}

#[tokio::test]
async fn in_flight_limit_sheds_load_with_503_and_streams_hold_their_slot() {
    let chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]});
    let upstream = Fake::start(Arc::new(move |req: &fake::Recorded, attempt| {
        if req.json()["stream"] == true {
            Reply::Stream {
                content_type: "text/event-stream",
                parts: vec![format!("data: {chunk}\n\n").into()],
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
    let gw = start_gateway(config, None).await;
    // Open one stream and keep it open.
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::to_vec(
                &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}),
            )
            .unwrap(),
        )))
        .unwrap();
    let open = client().request(req).await.unwrap();
    assert_eq!(open.status(), 200);
    let res = post(&gw, "/v1/chat/completions", &chat()).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.headers["retry-after"], "1");
    assert_eq!(res.json()["error"]["code"], "overloaded");
    drop(open);
    // Once the stream is gone its slot is free again.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res = post(&gw, "/v1/chat/completions", &chat()).await;
        if res.status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "the slot was released after the client went away");
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_request() {
    let chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]});
    let upstream = Fake::start(Arc::new(move |_, _| Reply::Stream {
        content_type: "text/event-stream",
        parts: (0..1000)
            .map(|_| bytes::Bytes::from(format!("data: {chunk}\n\n")))
            .collect(),
        gap: Duration::from_millis(20),
        stall: false,
    }))
    .await;
    let gw = start_gateway(config_for(&upstream.url()), None).await;
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::to_vec(
                &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}),
            )
            .unwrap(),
        )))
        .unwrap();
    let mut res = client().request(req).await.unwrap();
    use http_body_util::BodyExt;
    let first = res.body_mut().frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());
    drop(res);
    let mut seen = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if *upstream.dropped_streams.lock().unwrap() > 0 {
            seen = true;
            break;
        }
    }
    assert!(
        seen,
        "the upstream saw its stream dropped after the client disconnected"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_and_ends_open_streams_cleanly() {
    // A slow complete reply and a stream that never ends.
    let chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":"x"},"finish_reason":null}]});
    let upstream = Fake::start(Arc::new(move |req: &fake::Recorded, attempt| {
        if req.json()["stream"] == true {
            Reply::Stream {
                content_type: "text/event-stream",
                parts: vec![format!("data: {chunk}\n\n").into()],
                gap: Duration::ZERO,
                stall: true,
            }
        } else {
            Reply::Delayed(
                Duration::from_millis(300),
                Box::new(fake::openai_answer(req, attempt)),
            )
        }
    }))
    .await;
    let mut config = config_for(&upstream.url());
    config.server.shutdown_drain = Duration::from_millis(800);
    let gw = start_gateway(config, None).await;
    let url = gw.url("/v1/chat/completions");
    let slow = tokio::spawn({
        let url = url.clone();
        async move { send(Method::POST, &url, Some(KEY), Some(&chat())).await }
    });
    let streaming = tokio::spawn({
        let url = url.clone();
        async move {
            send(Method::POST, &url, Some(KEY), Some(&json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}))).await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let server = gw.shutdown();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shutdown is bounded")
        .unwrap();
    let elapsed = started.elapsed();
    let slow = slow.await.unwrap();
    assert_eq!(
        slow.status,
        200,
        "an in-flight complete request finished: {}",
        slow.text()
    );
    let streamed = streaming.await.unwrap();
    assert_eq!(streamed.status, 200);
    let data = streamed.sse_data();
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["code"], "overloaded",
        "the open stream ended with an in-band event: {data:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "drain bounded: {elapsed:?}"
    );
}

/// A gateway whose shutdown would wait 30 s for its connections (the drain), and whose bounds
/// on a connection without a request (first request, idle) are 30 s too: a shutdown that ends
/// sooner closed them itself.
async fn stopping_slowly() -> (Fake, TestGateway) {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.shutdown_drain = Duration::from_secs(30);
    config.server.first_request_timeout = Duration::from_secs(30);
    config.server.idle_timeout = Duration::from_secs(30);
    let gw = start_gateway(config, None).await;
    (upstream, gw)
}

#[tokio::test]
async fn a_connection_that_never_sent_a_byte_does_not_hold_up_shutdown() {
    use tokio::io::AsyncReadExt;
    let (_upstream, gw) = stopping_slowly().await;
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // A request on another connection, so the silent one has surely been accepted.
    let res = send(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        Some(&chat()),
    )
    .await;
    assert_eq!(res.status, 200);
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
        .await
        .expect("shutdown does not wait out the silent connection's 30 s deadline or the drain")
        .unwrap();
    // The silent connection was closed, not left open.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was closed: {read:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_once_by_a_shutdown() {
    use tokio::io::AsyncWriteExt;
    let (_upstream, gw) = stopping_slowly().await;
    // One request on a kept-alive connection, its reply read whole; then the connection is idle.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&raw_post("/v1/chat/completions", &chat()))
        .await
        .unwrap();
    let reply = read_response(&mut tcp).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
        .await
        .expect("shutdown does not wait out the 30 s drain for an idle connection")
        .unwrap();
    let soon = tokio::time::Instant::now() + Duration::from_secs(1);
    assert!(
        closed_by_peer(tcp, soon).await,
        "the idle connection was closed"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_once_by_a_shutdown() {
    use http_body_util::BodyExt;
    let (_upstream, gw) = stopping_slowly().await;
    // HTTP/2 with prior knowledge (the server's other protocol path), one request answered whole.
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat().to_string(),
        )))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
        .await
        .expect("shutdown does not wait out the 30 s drain for an idle HTTP/2 connection")
        .unwrap();
    // The server ended the connection (GOAWAY, then close): the client's driver finished.
    let ended = tokio::time::timeout(Duration::from_secs(1), driver).await;
    assert!(ended.is_ok(), "the HTTP/2 connection was closed");
}

/// Sends the head of a request with a large declared body and only a few bytes of it; returns the
/// status line the gateway answers with, if it answers within `wait`.
async fn answer_to_partial_body(
    addr: std::net::SocketAddr,
    head: &str,
    wait: Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(b"{\"model\":").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(wait, tcp.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_trickling_body_gets_408_instead_of_holding_a_slot() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let mut config = config_for(&upstream.url());
    config.timeouts.body_read = Duration::from_millis(200);
    let gw = start_gateway(config, None).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    );
    let status = answer_to_partial_body(gw.addr, &head, Duration::from_secs(5)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    for (path, auth) in [
        ("/v1/chat/completions", "authorization: Bearer wrong"),
        ("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke", "authorization: Bearer wrong"),
        (
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
            "authorization: AWS4-HMAC-SHA256 Credential=NOPE/20240101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("/v1/messages", "x-api-key: wrong"),
    ] {
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\n{auth}\r\ncontent-type: application/json\r\ncontent-length: 30000000\r\n\r\n");
        // The gateway answers at once although 30 MB of body are still "to come".
        let status = answer_to_partial_body(gw.addr, &head, Duration::from_secs(2)).await;
        let status = status.unwrap_or_else(|| panic!("{path}: no answer before the body"));
        assert!(status.contains(" 401 ") || status.contains(" 403 "), "{path}: {status}");
    }
}
