//! Shared test harness: start the real gateway on `127.0.0.1:0` in front of fake upstreams, and a
//! small HTTP client.
#![allow(dead_code)]

pub mod fake;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use open_bedrock_server::config::Config;
use open_bedrock_server::provider::{BedrockProvider, OpenAiProvider};
use open_bedrock_server::{server, Gateway, GatewayBuilder};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub const KEY: &str = "test-gateway-key";
pub const UPSTREAM_KEY: &str = "sk-upstream-secret";

/// A configuration pointing at `openai` with fast retries.
#[allow(clippy::field_reassign_with_default)]
pub fn config_for(openai_url: &str) -> Config {
    let mut c = Config::default();
    // Two serving threads, as the default on a 2-core machine: whatever cores the machine running
    // the tests has, its gateways serve alike.
    c.server.threads = 2;
    c.auth.api_keys = vec![KEY.into()];
    c.openai.base_url = format!("{openai_url}/v1");
    c.openai.api_key = Some(UPSTREAM_KEY.into());
    c.retry.base_delay = Duration::from_millis(1);
    c.retry.max_delay = Duration::from_millis(20);
    c.bedrock.enabled = false;
    c
}

pub struct TestGateway {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts graceful shutdown and returns the serve task to await.
    pub fn shutdown(mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        std::mem::replace(&mut self.task, tokio::spawn(async {}))
    }
}

pub async fn start_gateway(config: Config, bedrock: Option<BedrockProvider>) -> TestGateway {
    start_service(gateway_for(&config, bedrock)).await
}

/// The gateway [`start_gateway`] serves, built but not yet serving (to keep a handle on its
/// parts first).
pub fn gateway_for(config: &Config, bedrock: Option<BedrockProvider>) -> Gateway {
    let openai = OpenAiProvider::new(&config.openai, &config.timeouts).unwrap();
    let mut builder = GatewayBuilder::from_config(config).openai(openai);
    if let Some(bedrock) = bedrock {
        builder = builder.bedrock(bedrock);
    }
    if config.mock.enabled {
        builder = builder.mock(open_bedrock_server::provider::MockProvider::new());
    }
    builder.build()
}

pub async fn start_service(gateway: Gateway) -> TestGateway {
    let listener = server::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gateway
            .serve(listener, async {
                let _ = rx.await;
            })
            .await;
    });
    TestGateway {
        addr,
        task,
        shutdown: Some(tx),
    }
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `data:` payloads of an SSE body, `[DONE]` included.
    pub fn sse_data(&self) -> Vec<String> {
        let mut dec = open_bedrock_server::sse::SseDecoder::new();
        dec.push(&self.body);
        let mut out = Vec::new();
        while let Some(ev) = dec.next_event() {
            out.push(String::from_utf8(ev.data.to_vec()).unwrap());
        }
        out
    }
    /// `(event, data)` pairs of an SSE body.
    pub fn sse_events(&self) -> Vec<(Option<String>, Value)> {
        let mut dec = open_bedrock_server::sse::SseDecoder::new();
        dec.push(&self.body);
        let mut out = Vec::new();
        while let Some(ev) = dec.next_event() {
            out.push((
                ev.event,
                serde_json::from_slice(&ev.data).unwrap_or(Value::Null),
            ));
        }
        out
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> TestResponse {
    send_raw(
        method,
        url,
        key,
        body.map(|b| Bytes::from(serde_json::to_vec(b).unwrap())),
        &[],
    )
    .await
}

pub async fn send_raw(
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<Bytes>,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .header("content-type", "application/json")
        .body(Full::new(body.unwrap_or_default()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("gateway answered in time")
        .expect("gateway reachable");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = tokio::time::timeout(Duration::from_secs(20), res.into_body().collect())
        .await
        .expect("body finished in time")
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    TestResponse {
        status,
        headers,
        body,
    }
}

pub async fn post(gw: &TestGateway, path: &str, body: &Value) -> TestResponse {
    send(Method::POST, &gw.url(path), Some(KEY), Some(body)).await
}

/// A Bedrock provider pointed at `fake_url` with the fake's credentials (`secret` overrides the
/// secret key, to test refused credentials).
pub fn bedrock_for(fake_url: &str, config: &Config, secret: Option<&str>) -> BedrockProvider {
    use aws_sdk_bedrockruntime::config::{Credentials, SharedCredentialsProvider};
    let creds = Credentials::new(
        fake::AWS_ACCESS_KEY,
        secret.unwrap_or(fake::AWS_SECRET_KEY),
        None,
        None,
        "tests",
    );
    let sdk = aws_config::SdkConfig::builder()
        .endpoint_url(fake_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    BedrockProvider::from_sdk_config(&sdk, config)
}

/// A gateway in front of one fake that serves both OpenAI (`/v1/...`) and Bedrock paths.
pub async fn start_full(upstream: &fake::Fake, tweak: impl FnOnce(&mut Config)) -> TestGateway {
    let mut config = config_for(&upstream.url());
    config.bedrock.enabled = true;
    tweak(&mut config);
    let bedrock = bedrock_for(&upstream.url(), &config, None);
    start_gateway(config, Some(bedrock)).await
}

/// A gateway built like the binary builds it (`Gateway::from_config`: rate limiter included),
/// with Bedrock off.
pub async fn start_gateway_from_config(config: Config) -> TestGateway {
    let gateway = Gateway::from_config(&config).await.unwrap();
    start_service(gateway).await
}

/// (message type, event/exception type, payload) of each frame of an event-stream body.
pub fn read_frames(mut body: &[u8]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let msg = aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap();
        let h = |n: &str| {
            msg.headers()
                .iter()
                .find(|h| h.name().as_str() == n)
                .map(|h| h.value().as_string().unwrap().as_str().to_owned())
        };
        out.push((
            h(":message-type").unwrap(),
            h(":event-type").or_else(|| h(":exception-type")).unwrap(),
            serde_json::from_slice(msg.payload()).unwrap(),
        ));
    }
    out
}

/// The metrics text once it shows `needle` (a stream's observation lands when its body ends).
pub async fn metrics_with(gw: &TestGateway, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = send(Method::GET, &gw.url("/metrics"), Some(KEY), None)
            .await
            .text();
        if text.contains(needle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    text
}

/// `body` POSTed to `path` with the gateway key, as raw HTTP/1.1 on a kept-alive connection.
pub fn raw_post(path: &str, body: &Value) -> Vec<u8> {
    raw_post_as(Some(KEY), path, body, &[])
}

/// `body` POSTed to `path` as raw HTTP/1.1, with `key` as its bearer key (none: no
/// `authorization`) and `headers` (`name: value` lines) after the request line.
pub fn raw_post_as(key: Option<&str>, path: &str, body: &Value, headers: &[String]) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut raw = format!("POST {path} HTTP/1.1\r\n");
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("host: gw\r\n");
    if let Some(key) = key {
        raw.push_str(&format!("authorization: Bearer {key}\r\n"));
    }
    raw.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&body);
    raw
}

/// Reads one HTTP/1.1 response off `stream` (within 20 s): its body by its `content-length`, or
/// chunked to its last chunk.
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let whole = if head.contains("transfer-encoding: chunked") {
                text[end..].ends_with("\r\n0\r\n\r\n")
            } else {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .expect("a content-length");
                got.len() >= end + 4 + length
            };
            if whole {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("the response did not arrive: {other:?}, got {text}"),
        }
    }
}

/// Waits until the peer closes `stream` (EOF or reset), or `deadline` passes.
pub async fn closed_by_peer(mut stream: TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. the server's HTTP/2 SETTINGS or a 408
        }
    }
}
