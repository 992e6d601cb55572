//! In-process fake upstreams on `127.0.0.1:0` for the integration tests, the SDK end-to-end tests
//! (through `examples/fake_upstream.rs`) and the load benchmark.
//!
//! The fake records every request (method, path, headers, body) and answers through a handler, so a
//! test asserts both what the client got and what the upstream received, and counts attempts.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the fake answers.
pub enum Reply {
    /// A complete response.
    Body {
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    },
    /// A streamed response: the parts are written one by one with `gap` between them; with `stall`
    /// the connection stays open and silent after the last part.
    Stream {
        content_type: &'static str,
        parts: Vec<Bytes>,
        gap: Duration,
        stall: bool,
    },
    /// Close the connection without answering.
    Reset,
    /// Wait before answering.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Body {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        }
    }
    pub fn with_header(self, name: &'static str, value: &str) -> Reply {
        match self {
            Reply::Body {
                status,
                content_type,
                mut headers,
                body,
            } => {
                headers.push((name, value.to_owned()));
                Reply::Body {
                    status,
                    content_type,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }
    pub fn sse(events: &[Value]) -> Reply {
        let mut parts: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(format!("data: {}\n\n", serde_json::to_string(e).unwrap())))
            .collect();
        parts.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Reply::Stream {
            content_type: "text/event-stream",
            parts,
            gap: Duration::ZERO,
            stall: false,
        }
    }
}

pub type Handler = Arc<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

/// A running fake upstream.
pub struct Fake {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Recorded>>>,
    /// Connections the fake saw closed by the peer while it was still streaming.
    pub dropped_streams: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    pub async fn start(handler: Handler) -> Fake {
        Self::start_on("127.0.0.1:0", handler).await
    }

    pub async fn start_on(addr: &str, handler: Handler) -> Fake {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(Mutex::new(0usize));
        let (log2, dropped2) = (log.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (handler, log, dropped) = (handler.clone(), log2.clone(), dropped2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, log, dropped) =
                            (handler.clone(), log.clone(), dropped.clone());
                        async move { serve_one(req, handler, log, dropped).await }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake {
            addr,
            log,
            dropped_streams: dropped,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// `FAKE_NO_LOG=1` (the load benchmark): requests are counted, not recorded.
fn no_log() -> bool {
    static NO_LOG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NO_LOG.get_or_init(|| std::env::var("FAKE_NO_LOG").is_ok_and(|v| v == "1"))
}

async fn serve_one(
    req: Request<Incoming>,
    handler: Handler,
    log: Arc<Mutex<Vec<Recorded>>>,
    dropped: Arc<Mutex<usize>>,
) -> Result<Response<FakeBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let attempt = if no_log() {
        // The load benchmark: count, but keep nothing, so memory stays flat.
        static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    } else {
        let mut log = log.lock().unwrap();
        log.push(rec.clone());
        log.len()
    };
    let mut reply = handler(&rec, attempt);
    loop {
        match reply {
            Reply::Delayed(d, next) => {
                tokio::time::sleep(d).await;
                reply = *next;
            }
            Reply::Reset => return Err(std::io::Error::other("reset by the fake")),
            Reply::Body {
                status,
                content_type,
                headers,
                body,
            } => {
                let mut res = Response::new(Full::new(body).boxed());
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                res.headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                for (k, v) in headers {
                    res.headers_mut().insert(k, v.parse().unwrap());
                }
                return Ok(res);
            }
            Reply::Stream {
                content_type,
                parts,
                gap,
                stall,
            } => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                tokio::spawn(async move {
                    for p in parts {
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                        if tx.send(Ok(Frame::data(p))).await.is_err() {
                            *dropped.lock().unwrap() += 1;
                            return;
                        }
                    }
                    if stall {
                        // Stay silent until the peer goes away.
                        tx.closed().await;
                        *dropped.lock().unwrap() += 1;
                    }
                });
                let stream = tokio_stream_from(rx);
                let mut res = Response::new(StreamBody::new(stream).boxed());
                res.headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                return Ok(res);
            }
        }
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---------------------------------------------------------------------------------------------
// A "smart" fake OpenAI: answers like the real API from the request itself, so SDK tests need no
// per-test script. Model ids steer faults: `gpt-fail-500`, `gpt-fail-429-once`, `gpt-slow`; the
// load benchmark streams with `gpt-slow-stream-<chunks>-<gap_ms>`.

/// The fake for the SDK tests and the load benchmark: OpenAI paths (and, once Bedrock is served,
/// Bedrock runtime paths) answered from the request itself.
pub fn smart() -> Handler {
    Arc::new(|req: &Recorded, attempt: usize| {
        if req.path.starts_with("/v1/") {
            openai_answer(req, attempt)
        } else {
            bedrock_answer(req, attempt)
        }
    })
}

/// Every chat request throttled, the way each upstream says it: OpenAI's 429 with `retry-after`,
/// Bedrock's `ThrottlingException`.
pub fn throttled(req: &Recorded) -> Reply {
    if req.path.starts_with("/v1/") || req.path.contains("/chat/completions") {
        Reply::json(
            429,
            json!({"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}),
        )
        .with_header("retry-after", "1")
    } else {
        aws_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        )
    }
}

pub fn bedrock_smart() -> Handler {
    Arc::new(|req: &Recorded, attempt: usize| bedrock_answer(req, attempt))
}

pub fn openai_smart() -> Handler {
    Arc::new(|req: &Recorded, attempt: usize| openai_answer(req, attempt))
}

pub fn openai_answer(req: &Recorded, attempt: usize) -> Reply {
    if req.method == http::Method::GET && req.path.ends_with("/models") {
        return Reply::json(
            200,
            json!({"object":"list","data":[
            {"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},
            {"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}),
        );
    }
    let body = req.json();
    let model = body["model"].as_str().unwrap_or("gpt-4o").to_owned();
    if model == "gpt-fail-500" {
        return Reply::json(
            500,
            json!({"error":{"message":"upstream exploded","type":"server_error","param":null,"code":null}}),
        );
    }
    if model == "gpt-fail-429-once" && attempt % 2 == 1 {
        return Reply::json(429, json!({"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}))
            .with_header("retry-after-ms", "10");
    }
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .unwrap_or_default();
    let wants_tool = body["tools"].as_array().is_some_and(|t| !t.is_empty())
        && body["tool_choice"] != "none"
        && !body["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let tool_name = body["tools"][0]["function"]["name"]
        .as_str()
        .unwrap_or("f")
        .to_owned();
    let text = format!("You said: {last_user}");
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
    if body["stream"] == true {
        if let Some(reply) = slow_stream(&model) {
            return reply;
        }
        let base = |choices: Value| json!({"id":"chatcmpl-fake1","object":"chat.completion.chunk","created":1732000000,"model":model,"choices":choices});
        let mut events = vec![base(
            json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]),
        )];
        if wants_tool {
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_fake1","type":"function","function":{"name":tool_name,"arguments":""}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(
                json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]),
            ));
        } else {
            let mid = text.len() / 2;
            let mid = (0..=mid)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            for piece in [&text[..mid], &text[mid..]] {
                events.push(base(json!([{"index":0,"delta":{"content":piece},"logprobs":null,"finish_reason":null}])));
            }
            events.push(base(
                json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]),
            ));
        }
        if body["stream_options"]["include_usage"] == true {
            let mut u = base(json!([]));
            u["usage"] = usage;
            events.push(u);
        }
        return Reply::sse(&events);
    }
    let message = if wants_tool {
        json!({"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_fake1","type":"function","function":{"name":tool_name,"arguments":"{\"city\":\"Paris\"}"}}]})
    } else {
        json!({"role":"assistant","content":text,"refusal":null})
    };
    let finish = if wants_tool { "tool_calls" } else { "stop" };
    Reply::json(
        200,
        json!({"id":"chatcmpl-fake1","object":"chat.completion","created":1732000000,"model":model,
        "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],
        "usage":usage,"system_fingerprint":"fp_fake"}),
    )
}

/// `gpt-slow-stream-<chunks>-<gap_ms>` (streaming only, for the load benchmark): a role chunk, then
/// `chunks` one-word content chunks, a stop chunk and `[DONE]`, with `gap_ms` before each part.
fn slow_stream(model: &str) -> Option<Reply> {
    let rest = model.strip_prefix("gpt-slow-stream-")?;
    let (chunks, gap) = rest.split_once('-')?;
    let (chunks, gap): (usize, u64) = (chunks.parse().ok()?, gap.parse().ok()?);
    let base = |choices: Value| json!({"id":"chatcmpl-fake1","object":"chat.completion.chunk","created":1732000000,"model":model,"choices":choices});
    let mut events = vec![base(
        json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]),
    )];
    for _ in 0..chunks {
        events.push(base(
            json!([{"index":0,"delta":{"content":"word "},"logprobs":null,"finish_reason":null}]),
        ));
    }
    events.push(base(
        json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]),
    ));
    let Reply::Stream {
        content_type,
        parts,
        stall,
        ..
    } = Reply::sse(&events)
    else {
        unreachable!()
    };
    Some(Reply::Stream {
        content_type,
        parts,
        gap: Duration::from_millis(gap),
        stall,
    })
}

// ---------------------------------------------------------------------------------------------
// A fake Bedrock runtime (and control plane), as strict as the real service where the gateway
// could go wrong: it verifies the SigV4 signature (or a bearer API key), rejects unknown or null
// keys in native Claude/Titan bodies ("extraneous key [x] is not permitted"), checks Claude's
// required keys and role order, and writes real AWS event-stream frames.

pub const AWS_ACCESS_KEY: &str = "AKIDFAKEGATEWAY";
pub const AWS_SECRET_KEY: &str = "fake/secret/key/for/tests";
pub const AWS_BEARER: &str = "ABSKfakebedrockapikey";

fn aws_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message })).with_header(
        "x-amzn-errortype",
        &format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    )
}

/// Temporary credentials the fake STS hands out for an assumed role, which the fake Bedrock then
/// accepts (with their session token).
pub const ASSUMED_ACCESS_KEY: &str = "ASIAFAKEASSUMEDROLE";
pub const ASSUMED_SECRET_KEY: &str = "assumed/role/secret/for/tests";
pub const ASSUMED_SESSION_TOKEN: &str = "FwoGZXIvYXdzEFakeSessionToken";

fn check_auth(req: &Recorded) -> Result<(), Reply> {
    check_auth_for(req, "bedrock")
}

fn check_auth_for(req: &Recorded, service: &str) -> Result<(), Reply> {
    let auth = req.header("authorization").unwrap_or("");
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return if token == AWS_BEARER {
            Ok(())
        } else {
            Err(aws_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ))
        };
    }
    let Some(parsed) = open_bedrock_server::sigv4::parse_authorization(auth) else {
        return Err(aws_error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if parsed.service != service {
        return Err(aws_error(
            403,
            "InvalidSignatureException",
            &format!("Credential should be scoped to correct service: '{service}'."),
        ));
    }
    let secret = match parsed.access_key {
        AWS_ACCESS_KEY => AWS_SECRET_KEY,
        ASSUMED_ACCESS_KEY if req.header("x-amz-security-token") == Some(ASSUMED_SESSION_TOKEN) => {
            ASSUMED_SECRET_KEY
        }
        _ => {
            return Err(aws_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ))
        }
    };
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(req.path.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    open_bedrock_server::sigv4::verify(&parts, &req.body, secret).map_err(|e| {
        aws_error(403, "InvalidSignatureException", &format!("The request signature we calculated does not match the signature you provided ({e:?})."))
    })
}

/// A form-encoded field of a query-protocol body (`Action=AssumeRole&RoleArn=…`).
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body).ok()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// STS `AssumeRole` (query protocol, SigV4 for `sts` with the base credentials): temporary
/// credentials for any role whose name ends in `-external` only with `ExternalId=fake-external-id`.
fn sts_answer(req: &Recorded) -> Reply {
    if let Err(reply) = check_auth_for(req, "sts") {
        return reply;
    }
    let role = form_field(&req.body, "RoleArn").unwrap_or_default();
    if form_field(&req.body, "Action").as_deref() != Some("AssumeRole") || role.is_empty() {
        return Reply::Body {
            status: 400,
            content_type: "text/xml",
            headers: Vec::new(),
            body: Bytes::from_static(b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>unsupported</Message></Error></ErrorResponse>"),
        };
    }
    if role.ends_with("-external")
        && form_field(&req.body, "ExternalId").as_deref() != Some("fake-external-id")
    {
        return Reply::Body {
            status: 403,
            content_type: "text/xml",
            headers: Vec::new(),
            body: Bytes::from_static(b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>"),
        };
    }
    let session = form_field(&req.body, "RoleSessionName").unwrap_or_default();
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/fake/{session}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{ASSUMED_ACCESS_KEY}</AccessKeyId>
      <SecretAccessKey>{ASSUMED_SECRET_KEY}</SecretAccessKey>
      <SessionToken>{ASSUMED_SESSION_TOKEN}</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#
    );
    Reply::Body {
        status: 200,
        content_type: "text/xml",
        headers: Vec::new(),
        body: Bytes::from(xml),
    }
}

fn extraneous(
    keys: &serde_json::Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Option<String> {
    for (k, v) in keys {
        if !allowed.contains(&k.as_str()) {
            return Some(format!("Malformed input request: {prefix}extraneous key [{k}] is not permitted, please reformat your input and try again."));
        }
        if v.is_null() {
            return Some(format!("Malformed input request: {prefix}{k}: expected type: JSONObject, found: Null, please reformat your input and try again."));
        }
    }
    None
}

/// Validates a native Claude body as Bedrock's schema would.
pub fn validate_claude(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("Malformed input request: body must be an object")?;
    if let Some(e) = extraneous(
        obj,
        &[
            "anthropic_version",
            "anthropic_beta",
            "max_tokens",
            "messages",
            "system",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "tools",
            "tool_choice",
            "thinking",
        ],
        "#: ",
    ) {
        return Err(e);
    }
    if obj.get("anthropic_version") != Some(&json!("bedrock-2023-05-31")) {
        return Err(
            "Malformed input request: #: required key [anthropic_version] not found or invalid"
                .into(),
        );
    }
    if !obj.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.".into());
    }
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("Malformed input request: #: required key [messages] not found")?;
    let mut expect = "user";
    for (i, m) in msgs.iter().enumerate() {
        let mo = m.as_object().ok_or("messages must be objects")?;
        if let Some(e) = extraneous(mo, &["role", "content"], &format!("#/messages/{i}: ")) {
            return Err(e);
        }
        if mo.get("role").and_then(Value::as_str) != Some(expect) {
            return Err(format!("messages: roles must alternate between \"user\" and \"assistant\", starting with user (message {i})"));
        }
        expect = if expect == "user" {
            "assistant"
        } else {
            "user"
        };
        match mo.get("content") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::Array(blocks)) if !blocks.is_empty() => {
                for b in blocks {
                    let t = b["type"].as_str().unwrap_or("");
                    if t == "text" && b["text"].as_str().is_none_or(|s| s.trim().is_empty()) {
                        return Err(
                            "messages: text content blocks must contain non-whitespace text".into(),
                        );
                    }
                    if ![
                        "text",
                        "image",
                        "document",
                        "tool_use",
                        "tool_result",
                        "thinking",
                        "redacted_thinking",
                    ]
                    .contains(&t)
                    {
                        return Err(format!("messages: unknown content block type {t}"));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "messages.{i}: content must be a non-empty string or array"
                ))
            }
        }
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        for t in tools {
            if let Some(e) = extraneous(
                t.as_object().ok_or("tool must be an object")?,
                &[
                    "name",
                    "description",
                    "input_schema",
                    "cache_control",
                    "type",
                ],
                "#/tools: ",
            ) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Validates a native Titan body as Bedrock's schema would.
pub fn validate_titan(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("body must be an object")?;
    if let Some(e) = extraneous(obj, &["inputText", "textGenerationConfig"], "#: ") {
        return Err(e);
    }
    if !obj.get("inputText").is_some_and(Value::is_string) {
        return Err("Malformed input request: #: required key [inputText] not found".into());
    }
    if let Some(cfg) = obj.get("textGenerationConfig") {
        let cfg = cfg
            .as_object()
            .ok_or("textGenerationConfig must be an object")?;
        if let Some(e) = extraneous(
            cfg,
            &["maxTokenCount", "temperature", "topP", "stopSequences"],
            "#/textGenerationConfig: ",
        ) {
            return Err(e);
        }
        if let Some(stops) = cfg.get("stopSequences").and_then(Value::as_array) {
            if stops.len() > 1 {
                return Err("Malformed input request: #/textGenerationConfig/stopSequences: expected maximum item count: 1".into());
            }
            for s in stops {
                let s = s.as_str().unwrap_or("");
                if !(s == "User:" || (!s.is_empty() && s.chars().all(|c| c == '|'))) {
                    return Err(format!("Malformed input request: #/textGenerationConfig/stopSequences/0: string [{s}] does not match pattern ^(\\|+|User:)$"));
                }
            }
        }
    }
    Ok(())
}

/// One AWS event-stream frame.
pub fn event_frame(event_type: &str, payload: &Value) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let msg = Message::new(Bytes::from(serde_json::to_vec(payload).unwrap()))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut buf).unwrap();
    Bytes::from(buf)
}

/// An exception frame (mid-stream error).
pub fn exception_frame(exception_type: &str, message: &str) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let msg = Message::new(Bytes::from(
        serde_json::to_vec(&json!({"message": message})).unwrap(),
    ))
    .add_header(Header::new(
        ":exception-type",
        HeaderValue::String(exception_type.to_owned().into()),
    ))
    .add_header(Header::new(
        ":content-type",
        HeaderValue::String("application/json".into()),
    ))
    .add_header(Header::new(
        ":message-type",
        HeaderValue::String("exception".into()),
    ));
    let mut buf = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut buf).unwrap();
    Bytes::from(buf)
}

/// A `chunk` frame carrying one model-native JSON event (InvokeModelWithResponseStream).
pub fn chunk_frame(inner: &Value) -> Bytes {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(inner).unwrap());
    // Bedrock pads events with a random-length "p" field; the gateway must ignore it.
    event_frame("chunk", &json!({"bytes": b64, "p": "abcdefghij"}))
}

/// Frames split into pieces of `size` bytes, so decoders see frames cut at arbitrary offsets.
pub fn split_frames(frames: &[Bytes], size: usize) -> Vec<Bytes> {
    let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    all.chunks(size.max(1))
        .map(Bytes::copy_from_slice)
        .collect()
}

fn event_stream(parts: Vec<Bytes>) -> Reply {
    Reply::Stream {
        content_type: "application/vnd.amazon.eventstream",
        parts,
        gap: Duration::ZERO,
        stall: false,
    }
}

/// The text of the last user turn of a Claude or Converse body.
fn last_user_text(messages: &Value) -> String {
    let Some(last) = messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn has_tool_results(messages: &Value) -> bool {
    messages.as_array().is_some_and(|m| {
        m.iter().any(|m| {
            m["content"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|b| b["type"] == "tool_result" || b.get("toolResult").is_some())
            })
        })
    })
}

/// Steering by model id: `…fail-500…`, `…throttle-once…`, `…denied…`, `…midstream-error…`, `…truncated…`.
fn fault_for(model: &str, attempt: usize) -> Option<Reply> {
    if model.contains("fail-500") {
        return Some(aws_error(
            500,
            "InternalServerException",
            "Internal server error",
        ));
    }
    if model.contains("throttle-once") && attempt % 2 == 1 {
        return Some(aws_error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ));
    }
    if model.contains("denied") {
        return Some(aws_error(403, "AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/gw is not authorized to perform: bedrock:InvokeModel"));
    }
    if model.contains("not-found") {
        return Some(aws_error(
            404,
            "ResourceNotFoundException",
            "Model not found",
        ));
    }
    None
}

pub fn bedrock_answer(req: &Recorded, attempt: usize) -> Reply {
    if req.method == http::Method::POST && req.path == "/" {
        return sts_answer(req);
    }
    if let Err(reply) = check_auth(req) {
        return reply;
    }
    let path = req.path.split('?').next().unwrap_or("");
    if path == "/foundation-models" {
        return Reply::json(
            200,
            json!({"modelSummaries":[
            {"modelArn":"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0","modelId":"anthropic.claude-3-haiku-20240307-v1:0","modelName":"Claude 3 Haiku","providerName":"Anthropic","inputModalities":["TEXT","IMAGE"],"outputModalities":["TEXT"],"responseStreamingSupported":true,"customizationsSupported":[],"inferenceTypesSupported":["ON_DEMAND"],"modelLifecycle":{"status":"ACTIVE"}},
            {"modelArn":"arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1","modelId":"amazon.titan-text-express-v1","modelName":"Titan Text G1 - Express","providerName":"Amazon","inputModalities":["TEXT"],"outputModalities":["TEXT"],"responseStreamingSupported":true,"customizationsSupported":[],"inferenceTypesSupported":["ON_DEMAND"],"modelLifecycle":{"status":"ACTIVE"}},
            {"modelArn":"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20241022-v2:0","modelId":"anthropic.claude-3-5-sonnet-20241022-v2:0","modelName":"Claude 3.5 Sonnet v2","providerName":"Anthropic","inputModalities":["TEXT"],"outputModalities":["TEXT"],"responseStreamingSupported":true,"customizationsSupported":[],"inferenceTypesSupported":["INFERENCE_PROFILE"],"modelLifecycle":{"status":"ACTIVE"}}]}),
        );
    }
    if path == "/inference-profiles" {
        return Reply::json(
            200,
            json!({"inferenceProfileSummaries":[
            {"inferenceProfileName":"US Claude 3.5 Sonnet v2","inferenceProfileId":"us.anthropic.claude-3-5-sonnet-20241022-v2:0","inferenceProfileArn":"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0","models":[{"modelArn":"arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20241022-v2:0"}],"status":"ACTIVE","type":"SYSTEM_DEFINED"}]}),
        );
    }
    let Some(rest) = path.strip_prefix("/model/") else {
        return aws_error(404, "UnknownOperationException", "unknown operation");
    };
    let Some((raw_model, op)) = rest.rsplit_once('/') else {
        return aws_error(404, "UnknownOperationException", "unknown operation");
    };
    let model = percent_encoding::percent_decode_str(raw_model)
        .decode_utf8_lossy()
        .into_owned();
    if let Some(fault) = fault_for(&model, attempt) {
        return fault;
    }
    let body = req.json();
    let id_model = model.rsplit('/').next().unwrap_or(&model).to_owned();
    let family = open_bedrock_server::route::bedrock_family(&id_model);
    use open_bedrock_server::route::BedrockFamily;
    match (op, family) {
        ("invoke" | "invoke-with-response-stream", Some(BedrockFamily::Claude)) => {
            if let Err(e) = validate_claude(&body) {
                return aws_error(400, "ValidationException", &e);
            }
            claude_answer(&body, &model, op == "invoke-with-response-stream")
        }
        ("invoke" | "invoke-with-response-stream", Some(BedrockFamily::Titan)) => {
            if let Err(e) = validate_titan(&body) {
                return aws_error(400, "ValidationException", &e);
            }
            titan_answer(&body, &model, op == "invoke-with-response-stream")
        }
        ("converse" | "converse-stream", _) => {
            converse_answer(&body, &model, op == "converse-stream")
        }
        _ => aws_error(
            400,
            "ValidationException",
            &format!("The model {model} does not support {op} in this fake"),
        ),
    }
}

fn claude_answer(body: &Value, model: &str, stream: bool) -> Reply {
    let text = format!("You said: {}", last_user_text(&body["messages"]));
    let tool = body["tools"][0]["name"]
        .as_str()
        .filter(|_| !has_tool_results(&body["messages"]) && body["tool_choice"]["type"] != "none");
    let usage = json!({"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0});
    if !stream {
        let content = match tool {
            Some(name) => {
                json!([{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_bdrk_01","name":name,"input":{"city":"Paris"}}])
            }
            None => json!([{"type":"text","text":text}]),
        };
        let stop = if tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        };
        return Reply::json(
            200,
            json!({"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-fake",
            "content":content,"stop_reason":stop,"stop_sequence":null,"usage":usage}),
        );
    }
    let mut events = vec![
        json!({"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ];
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    match tool {
        Some(name) => {
            events.push(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}));
            events.push(json!({"type":"content_block_stop","index":0}));
            events.push(json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_bdrk_01","name":name,"input":{}}}));
            events.push(json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}));
            events.push(json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}));
            events.push(json!({"type":"content_block_stop","index":1}));
        }
        None => {
            events.push(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":&text[..mid]}}));
            events.push(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":&text[mid..]}}));
            events.push(json!({"type":"content_block_stop","index":0}));
        }
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    events.push(json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":9}}));
    events.push(json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":9,"invocationLatency":100,"firstByteLatency":40,"cacheReadInputTokenCount":3,"cacheWriteInputTokenCount":0}}));
    let mut frames: Vec<Bytes> = events.iter().map(chunk_frame).collect();
    if model.contains("midstream-error") {
        frames.truncate(3);
        frames.push(exception_frame(
            "modelStreamErrorException",
            "The model stream broke.",
        ));
    } else if model.contains("truncated") {
        frames.truncate(3);
    }
    event_stream(split_frames(&frames, 7))
}

fn titan_answer(body: &Value, model: &str, stream: bool) -> Reply {
    let input = body["inputText"].as_str().unwrap_or("");
    let last = input
        .rsplit("User:")
        .next()
        .unwrap_or(input)
        .split("\nBot:")
        .next()
        .unwrap_or("")
        .trim();
    let text = format!("You said: {last}");
    if !stream {
        return Reply::json(
            200,
            json!({"inputTextTokenCount": 8, "results": [{"tokenCount": 6, "outputText": text, "completionReason": "FINISH"}]}),
        );
    }
    let mid = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let mut frames = vec![
        chunk_frame(
            &json!({"outputText": &text[..mid], "index": 0, "totalOutputTextTokenCount": 3, "completionReason": null, "inputTextTokenCount": 8}),
        ),
        chunk_frame(
            &json!({"outputText": &text[mid..], "index": 1, "totalOutputTextTokenCount": 6, "completionReason": "FINISH", "inputTextTokenCount": null,
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 8, "outputTokenCount": 6, "invocationLatency": 50, "firstByteLatency": 20}}),
        ),
    ];
    if model.contains("truncated") {
        frames.truncate(1);
    }
    event_stream(split_frames(&frames, 5))
}

fn converse_answer(body: &Value, model: &str, stream: bool) -> Reply {
    if !body["messages"].is_array() {
        return aws_error(400, "ValidationException", "messages is required");
    }
    let uses_tools = body["messages"].as_array().is_some_and(|m| {
        m.iter().any(|m| {
            m["content"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
            })
        })
    });
    if uses_tools && body.get("toolConfig").is_none() {
        return aws_error(400, "ValidationException", "The toolConfig field must be defined when using toolUse and toolResult content blocks.");
    }
    let text = format!("You said: {}", last_user_text(&body["messages"]));
    let tool = body["toolConfig"]["tools"][0]["toolSpec"]["name"]
        .as_str()
        .filter(|_| !has_tool_results(&body["messages"]));
    let usage =
        json!({"inputTokens": 20, "outputTokens": 5, "totalTokens": 27, "cacheReadInputTokens": 2});
    if !stream {
        let content = match tool {
            Some(name) => {
                json!([{"toolUse":{"toolUseId":"tooluse_Ab12","name":name,"input":{"city":"Paris"}}}])
            }
            None => json!([{"text": text}]),
        };
        let stop = if tool.is_some() {
            "tool_use"
        } else {
            "end_turn"
        };
        return Reply::json(
            200,
            json!({"output":{"message":{"role":"assistant","content":content}},"stopReason":stop,"usage":usage,"metrics":{"latencyMs":12}}),
        );
    }
    let mut frames = vec![event_frame(
        "messageStart",
        &json!({"role":"assistant","p":"xyz"}),
    )];
    match tool {
        Some(name) => {
            frames.push(event_frame("contentBlockStart", &json!({"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"tooluse_Ab12","name":name}}})));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"city\":"}}}),
            ));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":0,"delta":{"toolUse":{"input":"\"Paris\"}"}}}),
            ));
            frames.push(event_frame(
                "contentBlockStop",
                &json!({"contentBlockIndex":0}),
            ));
            frames.push(event_frame(
                "messageStop",
                &json!({"stopReason":"tool_use"}),
            ));
        }
        None => {
            let mid = (0..=text.len() / 2)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":0,"delta":{"text":&text[..mid]}}),
            ));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":0,"delta":{"text":&text[mid..]}}),
            ));
            frames.push(event_frame(
                "contentBlockStop",
                &json!({"contentBlockIndex":0}),
            ));
            frames.push(event_frame(
                "messageStop",
                &json!({"stopReason":"end_turn"}),
            ));
        }
    }
    frames.push(event_frame(
        "metadata",
        &json!({"usage":usage,"metrics":{"latencyMs":12}}),
    ));
    if model.contains("midstream-error") {
        frames.truncate(2);
        frames.push(exception_frame(
            "throttlingException",
            "Too many tokens, please wait before trying again.",
        ));
    } else if model.contains("truncated") {
        frames.truncate(2);
    }
    event_stream(split_frames(&frames, 11))
}
