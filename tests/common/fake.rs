//! In-process fake upstreams on `127.0.0.1:0` for the integration tests, the SDK end-to-end tests
//! (through `examples/fake_upstream.rs`) and the load benchmark.
//!
//! The fake records every request (method, path, headers, body) and answers through a handler, so a
//! test asserts both what the client got and what the upstream received, and counts attempts.
#![allow(dead_code, unreachable_pub, missing_docs)]

// The gateway's own SigV4 verifier, compiled into the fake (it is internal to the crate): the fake
// Bedrock checks the signatures the AWS SDK inside the gateway makes, as strictly as AWS does.
#[path = "../../src/sigv4.rs"]
mod sigv4;

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
    if req.path.ends_with("/embeddings") {
        return openai_embeddings_answer(req, attempt);
    }
    if req.path.ends_with("/responses") {
        return openai_responses_answer(req);
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
    if let Err(e) = validate_openai(&body, &model) {
        return Reply::json(
            400,
            json!({"error":{"message":e,"type":"invalid_request_error","param":null,"code":"unknown_parameter"}}),
        );
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
    let mut usage = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
    if model.contains("cached") {
        // OpenAI caches long prefixes by itself and reports the hits.
        usage["prompt_tokens_details"] = json!({"cached_tokens": 8, "audio_tokens": 0});
    }
    if body.get("reasoning_effort").is_some() {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": 5, "audio_tokens": 0});
    }
    // Structured outputs are native at OpenAI: a json_schema answer is the JSON itself.
    let text = match body["response_format"]["type"].as_str() {
        Some("json_schema") => schema_example(
            &body["response_format"]["json_schema"]["schema"],
            &last_user,
        )
        .to_string(),
        Some("json_object") => json!({"answer": text}).to_string(),
        _ => text,
    };
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
            let (a, b) = halves(&text);
            for piece in [a, b] {
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

/// What the real OpenAI API rejects that a gateway could forward by mistake: the gateway's own
/// extensions (cache breakpoints, signed reasoning, Anthropic-style thinking, guardrails), and
/// `reasoning_effort` on a model without reasoning.
pub fn validate_openai(body: &Value, model: &str) -> Result<(), String> {
    let unknown = |what: &str| Err(format!("Unrecognized request argument supplied: {what}"));
    for key in ["thinking", "guardrailConfig", "cache_control"] {
        if body.get(key).is_some() {
            return unknown(key);
        }
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        for key in ["cache_control", "thinking_blocks"] {
            if m.get(key).is_some() {
                return unknown(&format!("messages.{key}"));
            }
        }
        for part in m["content"].as_array().into_iter().flatten() {
            if part.get("cache_control").is_some() {
                return unknown("messages.content.cache_control");
            }
            if part["file"].get("citations").is_some() || part["file"].get("context").is_some() {
                return unknown("messages.content.file");
            }
        }
    }
    for t in body["tools"].as_array().into_iter().flatten() {
        if t.get("cache_control").is_some() {
            return unknown("tools.cache_control");
        }
    }
    let reasoning_model = model.starts_with('o') || model.starts_with("gpt-5");
    if body.get("reasoning_effort").is_some() && !reasoning_model {
        return Err(format!(
            "Unsupported parameter: 'reasoning_effort' is not supported with this model ({model})."
        ));
    }
    Ok(())
}

/// A value that fits a (simple) JSON schema: `city` properties are `"Paris"`, other strings
/// `"example"` (or the client's words for a property named `answer`), numbers 1, booleans true.
pub fn schema_example(schema: &Value, said: &str) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"]
        .as_str()
        .unwrap_or(if schema.get("properties").is_some() {
            "object"
        } else {
            "string"
        }) {
        "object" => {
            let mut out = serde_json::Map::new();
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                let v = match (name.as_str(), prop["type"].as_str()) {
                    ("city", _) => json!("Paris"),
                    ("answer", Some("string")) => json!(format!("You said: {said}")),
                    _ => schema_example(prop, said),
                };
                out.insert(name.clone(), v);
            }
            Value::Object(out)
        }
        "array" => json!([schema_example(&schema["items"], said)]),
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        _ => json!("example"),
    }
}

/// `s` cut in two near its middle (on a character boundary), for answers streamed in two pieces.
pub fn halves(s: &str) -> (&str, &str) {
    let mid = (0..=s.len() / 2)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    s.split_at(mid)
}

/// A tool call's input: fitted to the tool's schema, or `{"city":"Paris"}` for a tool without
/// properties (the weather tool most tests declare loosely).
fn tool_input(schema: &Value, said: &str) -> Value {
    if schema["properties"]
        .as_object()
        .is_none_or(|p| p.is_empty())
    {
        return json!({"city": "Paris"});
    }
    schema_example(schema, said)
}

/// The fake's signature of a thinking text: what it signs its own reasoning with and checks when
/// the reasoning comes back (a changed text or signature is a 400, as at the real service).
pub fn fake_signature(thinking: &str) -> String {
    use base64::Engine;
    let hash = thinking.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    base64::engine::general_purpose::STANDARD.encode(format!("sig:{hash:016x}"))
}

/// The redacted reasoning the fake writes when the prompt mentions a secret.
pub const FAKE_REDACTED: &str = "UkVEQUNURUQ6c2VjcmV0";

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
    let Some(parsed) = sigv4::parse_authorization(auth) else {
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
    let payload_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&req.body))
    };
    sigv4::verify_hash(&parts, &payload_hash, secret).map_err(|e| {
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

/// Whether a Bedrock model caches prompts (Claude from 3.5 Haiku / 3.7 Sonnet on, Nova).
pub fn caches_prompts(model: &str) -> bool {
    let id = model.rsplit('/').next().unwrap_or(model);
    let id = id.split_once('.').map_or(id, |(geo, rest)| {
        if ["us", "eu", "apac", "jp", "au", "us-gov", "global"].contains(&geo) {
            rest
        } else {
            id
        }
    });
    (id.starts_with("anthropic.")
        && ![
            "anthropic.claude-3-haiku",
            "anthropic.claude-3-sonnet",
            "anthropic.claude-3-opus",
            "anthropic.claude-v2",
        ]
        .iter()
        .any(|p| id.starts_with(p)))
        || id.starts_with("amazon.nova")
}

fn check_cache_control(block: &Value, count: &mut usize) -> Result<(), String> {
    let Some(cc) = block.get("cache_control") else {
        return Ok(());
    };
    *count += 1;
    if cc["type"] != "ephemeral" {
        return Err("cache_control.type: Input should be 'ephemeral'".into());
    }
    match cc.get("ttl") {
        None => Ok(()),
        Some(t) if t == "5m" || t == "1h" => Ok(()),
        Some(t) => Err(format!(
            "cache_control.ttl: Input should be '5m' or '1h', got {t}"
        )),
    }
}

/// Checks the thinking blocks of an assistant turn came from the fake itself, unchanged.
fn check_thinking_blocks(blocks: &[Value], i: usize) -> Result<(), String> {
    let mut seen_other = false;
    for b in blocks {
        match b["type"].as_str().unwrap_or("") {
            "thinking" => {
                if seen_other {
                    return Err(format!(
                        "messages.{i}: thinking blocks must come before any other content"
                    ));
                }
                let text = b["thinking"].as_str().unwrap_or("");
                if b["signature"].as_str() != Some(fake_signature(text).as_str()) {
                    return Err(format!(
                        "messages.{i}: Invalid `signature` in `thinking` block"
                    ));
                }
            }
            "redacted_thinking" => {
                if seen_other {
                    return Err(format!(
                        "messages.{i}: thinking blocks must come before any other content"
                    ));
                }
                if b["data"] != FAKE_REDACTED {
                    return Err(format!(
                        "messages.{i}: Invalid `data` in `redacted_thinking` block"
                    ));
                }
            }
            _ => seen_other = true,
        }
    }
    Ok(())
}

/// Claude's rules for a request with thinking on.
fn check_thinking(obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let Some(thinking) = obj.get("thinking") else {
        return Ok(());
    };
    match thinking["type"].as_str() {
        Some("disabled") => return Ok(()),
        Some("enabled") => {
            let budget = thinking["budget_tokens"]
                .as_u64()
                .ok_or("thinking.enabled.budget_tokens: Field required")?;
            if budget < 1024 {
                return Err(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                        .into(),
                );
            }
            if budget >= obj.get("max_tokens").and_then(Value::as_u64).unwrap_or(0) {
                return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
            }
        }
        Some("adaptive") => {}
        _ => {
            return Err("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'".into())
        }
    }
    if obj
        .get("temperature")
        .is_some_and(|t| t.as_f64() != Some(1.0))
    {
        return Err("`temperature` may only be set to 1 when thinking is enabled.".into());
    }
    if obj.contains_key("top_k") {
        return Err("`top_k` is not supported when thinking is enabled.".into());
    }
    if let Some(p) = obj.get("top_p").and_then(Value::as_f64) {
        if !(0.95..=1.0).contains(&p) {
            return Err("`top_p` must be between 0.95 and 1 when thinking is enabled.".into());
        }
    }
    if matches!(
        obj.get("tool_choice").and_then(|c| c["type"].as_str()),
        Some("any" | "tool")
    ) {
        return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    let msgs = obj
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if msgs.last().is_some_and(|m| m["role"] == "assistant") {
        return Err(
            "Prefilling the assistant response is not supported when thinking is enabled.".into(),
        );
    }
    if let Some(last) = msgs.iter().rev().find(|m| m["role"] == "assistant") {
        if let Some(blocks) = last["content"].as_array() {
            let uses_tools = blocks.iter().any(|b| b["type"] == "tool_use");
            let first = blocks
                .first()
                .and_then(|b| b["type"].as_str())
                .unwrap_or("");
            if uses_tools && first != "thinking" && first != "redacted_thinking" {
                return Err(format!("messages: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block."));
            }
        }
    }
    Ok(())
}

/// Validates a native Claude body as Bedrock's schema would, for `model`.
pub fn validate_claude(body: &Value, model: &str) -> Result<(), String> {
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
    let mut cache_points = 0;
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for b in blocks {
                if let Some(e) = extraneous(
                    b.as_object().ok_or("system blocks must be objects")?,
                    &["type", "text", "cache_control"],
                    "#/system: ",
                ) {
                    return Err(e);
                }
                check_cache_control(b, &mut cache_points)?;
            }
        }
        Some(_) => return Err("system: expected a string or an array of text blocks".into()),
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
                    if t == "document" {
                        if let Some(e) = extraneous(
                            b.as_object().unwrap(),
                            &[
                                "type",
                                "source",
                                "title",
                                "context",
                                "citations",
                                "cache_control",
                            ],
                            &format!("#/messages/{i}/document: "),
                        ) {
                            return Err(e);
                        }
                        let ok = matches!(
                            (
                                b["source"]["type"].as_str(),
                                b["source"]["media_type"].as_str()
                            ),
                            (Some("base64"), Some("application/pdf"))
                                | (Some("text"), Some("text/plain"))
                        );
                        if !ok {
                            return Err(format!("messages.{i}: a document source must be a base64 PDF or plain text"));
                        }
                    }
                    if t == "image" && b["source"]["type"] != "base64" {
                        return Err(format!(
                            "messages.{i}: image source type {} is not supported",
                            b["source"]["type"]
                        ));
                    }
                    if matches!(t, "thinking" | "redacted_thinking")
                        && b.get("cache_control").is_some()
                    {
                        return Err(
                            "messages: cache_control cannot be set on thinking blocks".into()
                        );
                    }
                    check_cache_control(b, &mut cache_points)?;
                }
                if mo["role"] == "assistant" {
                    check_thinking_blocks(blocks, i)?;
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
            check_cache_control(t, &mut cache_points)?;
        }
    }
    if cache_points > 0 && !caches_prompts(model) {
        return Err(format!("Malformed input request: #: extraneous key [cache_control] is not permitted: prompt caching is not supported by {model}"));
    }
    if cache_points > 4 {
        return Err(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {cache_points}."
        ));
    }
    check_thinking(obj)
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
    raw_chunk_frame(&serde_json::to_vec(inner).unwrap())
}

/// A `chunk` frame carrying `payload` exactly (bytes no serializer of ours writes, for
/// byte-for-byte pass-through checks).
pub fn raw_chunk_frame(payload: &[u8]) -> Bytes {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
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

pub fn event_stream(parts: Vec<Bytes>) -> Reply {
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

/// `…clock-ahead…`: this Bedrock's clock runs an hour ahead of the host's. A signature more than
/// five minutes from it is refused as Bedrock refuses one, with its `Date`.
fn clock_ahead(req: &Recorded) -> Option<Reply> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let now = std::time::SystemTime::now() + Duration::from_secs(3600);
    let signed = req
        .header("x-amz-date")
        .filter(|d| d.len() == 16)
        .and_then(|d| {
            let iso = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[9..11],
                &d[11..13],
                &d[13..15]
            );
            DateTime::from_str(&iso, Format::DateTime).ok()
        })
        .and_then(|d| std::time::SystemTime::try_from(d).ok())?;
    let off = match now.duration_since(signed) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    (off > Duration::from_secs(300)).then(|| {
        aws_error(
            403,
            "InvalidSignatureException",
            "Signature expired: the request's time is too far from the server's",
        )
        .with_header("date", &DateTime::from(now).fmt(Format::HttpDate).unwrap())
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
    if model.contains("clock-ahead") {
        if let Some(refusal) = clock_ahead(req) {
            return refusal;
        }
    }
    let body = req.json();
    let id_model = model.rsplit('/').next().unwrap_or(&model).to_owned();
    let family = open_bedrock_server::route::bedrock_family(&id_model);
    use open_bedrock_server::route::BedrockFamily;
    match (op, family) {
        ("invoke" | "invoke-with-response-stream", Some(BedrockFamily::Claude)) => {
            if let Err(e) = validate_claude(&body, &model) {
                return aws_error(400, "ValidationException", &e);
            }
            if let Some(reply) = invoke_guardrail(req, op == "invoke-with-response-stream") {
                return reply;
            }
            claude_answer(&body, &model, op == "invoke-with-response-stream")
        }
        ("invoke" | "invoke-with-response-stream", Some(BedrockFamily::Titan)) => {
            if let Err(e) = validate_titan(&body) {
                return aws_error(400, "ValidationException", &e);
            }
            titan_answer(&body, &model, op == "invoke-with-response-stream")
        }
        ("invoke", Some(BedrockFamily::TitanEmbedding)) => titan_embedding_answer(&body, &model),
        ("invoke", Some(BedrockFamily::CohereEmbedding)) => cohere_embedding_answer(&body, &model),
        ("converse" | "converse-stream", _) => {
            if let Err(e) = validate_converse_shape(&body) {
                return aws_error(400, "ValidationException", &e);
            }
            if let Some(reply) = converse_guardrail(&body, op == "converse-stream") {
                return reply;
            }
            converse_answer(&body, &model, op == "converse-stream")
        }
        _ => aws_error(
            400,
            "ValidationException",
            &format!("The model {model} does not support {op} in this fake"),
        ),
    }
}

/// `…-bench-<chunks>…` in a Bedrock model id (the load benchmark's per-chunk phases): a stream of
/// `chunks` one-word text deltas, each event in its own frame and the frames not split, as Bedrock
/// sends a fast model's stream.
fn bench_chunks(model: &str) -> Option<usize> {
    let rest = &model[model.find("-bench-")? + "-bench-".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn claude_bench_stream(n: usize) -> Reply {
    let mut events = vec![
        json!({"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
    ];
    for _ in 0..n {
        events.push(json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word "}}));
    }
    events.push(json!({"type":"content_block_stop","index":0}));
    events.push(json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":n}}));
    events.push(json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":n,"invocationLatency":100,"firstByteLatency":40}}));
    event_stream(events.iter().map(chunk_frame).collect())
}

fn titan_bench_stream(n: usize) -> Reply {
    let mut frames: Vec<Bytes> = (0..n)
        .map(|i| {
            chunk_frame(&json!({"outputText": "word ", "index": i, "totalOutputTextTokenCount": i + 1, "completionReason": null, "inputTextTokenCount": if i == 0 { json!(8) } else { Value::Null }}))
        })
        .collect();
    frames.push(chunk_frame(
        &json!({"outputText": "", "index": n, "totalOutputTextTokenCount": n, "completionReason": "FINISH", "inputTextTokenCount": null,
        "amazon-bedrock-invocationMetrics": {"inputTokenCount": 8, "outputTokenCount": n, "invocationLatency": 50, "firstByteLatency": 20}}),
    ));
    event_stream(frames)
}

fn converse_bench_stream(n: usize) -> Reply {
    let mut frames = vec![event_frame(
        "messageStart",
        &json!({"role":"assistant","p":"xyz"}),
    )];
    for _ in 0..n {
        frames.push(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex":0,"delta":{"text":"word "},"p":"abcdefgh"}),
        ));
    }
    frames.push(event_frame(
        "contentBlockStop",
        &json!({"contentBlockIndex":0}),
    ));
    frames.push(event_frame(
        "messageStop",
        &json!({"stopReason":"end_turn"}),
    ));
    frames.push(event_frame(
        "metadata",
        &json!({"usage":{"inputTokens":20,"outputTokens":n,"totalTokens":20 + n},"metrics":{"latencyMs":12}}),
    ));
    event_stream(frames)
}

/// The guardrail the fake runs: `gr-block` blocks everything, any other lets everything through.
pub const BLOCKING_GUARDRAIL: &str = "gr-block";
/// What a guardrail that blocked says instead of the model.
pub const BLOCKED_MESSAGE: &str = "Sorry, the model cannot answer this question.";

/// The trace of [`BLOCKING_GUARDRAIL`].
pub fn blocking_trace() -> Value {
    json!({"guardrail": {"inputAssessment": {BLOCKING_GUARDRAIL: {"topicPolicy": {"topics": [
        {"name": "Blocked topic", "type": "DENY", "action": "BLOCKED", "detected": true}]}}}}})
}

/// An InvokeModel guardrail (headers): checked as Bedrock would, and answered when it blocks.
fn invoke_guardrail(req: &Recorded, stream: bool) -> Option<Reply> {
    let id = req.header("x-amzn-bedrock-guardrailidentifier")?;
    let Some(version) = req.header("x-amzn-bedrock-guardrailversion") else {
        return Some(aws_error(
            400,
            "ValidationException",
            "guardrailVersion is required with guardrailIdentifier",
        ));
    };
    if !(version == "DRAFT" || version.bytes().all(|b| b.is_ascii_digit())) {
        return Some(aws_error(
            400,
            "ValidationException",
            "guardrailVersion is invalid",
        ));
    }
    if id != BLOCKING_GUARDRAIL {
        return None;
    }
    let traced = matches!(
        req.header("x-amzn-bedrock-trace"),
        Some("ENABLED" | "ENABLED_FULL")
    );
    let usage = json!({"input_tokens": 12, "output_tokens": 0});
    let mut tail = json!({"amazon-bedrock-guardrailAction": "INTERVENED"});
    if traced {
        tail["amazon-bedrock-trace"] = blocking_trace();
    }
    if !stream {
        let mut body = json!({"id":"msg_bdrk_gr","type":"message","role":"assistant","model":"claude-fake",
            "content":[{"type":"text","text":BLOCKED_MESSAGE}],"stop_reason":"end_turn","stop_sequence":null,"usage":usage});
        body.as_object_mut()
            .unwrap()
            .extend(tail.as_object().unwrap().clone());
        return Some(Reply::json(200, body));
    }
    let mut stop = json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":0,"invocationLatency":5,"firstByteLatency":5}});
    stop.as_object_mut()
        .unwrap()
        .extend(tail.as_object().unwrap().clone());
    let events = [
        json!({"type":"message_start","message":{"id":"msg_bdrk_gr","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,"usage":usage}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":BLOCKED_MESSAGE}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":0}}),
        stop,
    ];
    let frames: Vec<Bytes> = events.iter().map(chunk_frame).collect();
    Some(event_stream(split_frames(&frames, 13)))
}

/// A Converse `guardrailConfig`: checked, and answered when it blocks.
fn converse_guardrail(body: &Value, stream: bool) -> Option<Reply> {
    let g = body.get("guardrailConfig")?;
    let (Some(id), Some(_version)) = (
        g["guardrailIdentifier"].as_str(),
        g["guardrailVersion"].as_str(),
    ) else {
        return Some(aws_error(
            400,
            "ValidationException",
            "guardrailConfig needs guardrailIdentifier and guardrailVersion",
        ));
    };
    if g.get("streamProcessingMode").is_some() && !stream {
        return Some(aws_error(
            400,
            "ValidationException",
            "extraneous key [streamProcessingMode] is not permitted",
        ));
    }
    if id != BLOCKING_GUARDRAIL {
        return None;
    }
    let traced = matches!(g["trace"].as_str(), Some("enabled" | "enabled_full"));
    let usage = json!({"inputTokens": 20, "outputTokens": 0, "totalTokens": 20});
    if !stream {
        let mut out = json!({"output":{"message":{"role":"assistant","content":[{"text":BLOCKED_MESSAGE}]}},
            "stopReason":"guardrail_intervened","usage":usage,"metrics":{"latencyMs":3}});
        if traced {
            out["trace"] = blocking_trace();
        }
        return Some(Reply::json(200, out));
    }
    let mut metadata = json!({"usage":usage,"metrics":{"latencyMs":3}});
    if traced {
        metadata["trace"] = blocking_trace();
    }
    let frames = vec![
        event_frame("messageStart", &json!({"role":"assistant"})),
        event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex":0,"delta":{"text":BLOCKED_MESSAGE}}),
        ),
        event_frame("contentBlockStop", &json!({"contentBlockIndex":0})),
        event_frame("messageStop", &json!({"stopReason":"guardrail_intervened"})),
        event_frame("metadata", &metadata),
    ];
    Some(event_stream(split_frames(&frames, 17)))
}

/// The text of a final assistant turn (a prefill), if the conversation ends with one.
fn prefill(messages: &Value) -> Option<String> {
    let last = messages.as_array()?.last()?;
    if last["role"] != "assistant" {
        return None;
    }
    Some(match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    })
}

/// The answer text: the echo, or — after a `{` prefill — the rest of a JSON object.
fn answer_text(messages: &Value) -> String {
    let said = last_user_text(messages);
    match prefill(messages) {
        Some(p) if p.trim_start().starts_with('{') => {
            let full = json!({"answer": format!("You said: {said}")}).to_string();
            full[1..].to_owned()
        }
        _ => format!("You said: {said}"),
    }
}

/// Which tool a Claude-like model calls: the forced one; with `any`, the first tool (the last one
/// once tool results are in, where a structured-output tool sits); with `auto`, the first tool
/// before any tool result.
fn chosen_tool<'a>(
    tools: &'a [Value],
    choice: &str,
    forced: Option<&str>,
    had_results: bool,
) -> Option<&'a Value> {
    let name_of = |t: &Value| {
        t["name"]
            .as_str()
            .or_else(|| t["toolSpec"]["name"].as_str())
            .map(str::to_owned)
    };
    if let Some(name) = forced {
        return tools.iter().find(|t| name_of(t).as_deref() == Some(name));
    }
    match choice {
        "none" => None,
        "any" if had_results => tools.iter().rev().find(|t| name_of(t).is_some()),
        "any" => tools.iter().find(|t| name_of(t).is_some()),
        _ if had_results => None,
        _ => tools.iter().find(|t| name_of(t).is_some()),
    }
}

fn claude_answer(body: &Value, model: &str, stream: bool) -> Reply {
    let said = last_user_text(&body["messages"]);
    let text = answer_text(&body["messages"]);
    let tools = body["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let tool = chosen_tool(
        tools,
        body["tool_choice"]["type"].as_str().unwrap_or("auto"),
        body["tool_choice"]["name"]
            .as_str()
            .filter(|_| body["tool_choice"]["type"] == "tool"),
        has_tool_results(&body["messages"]),
    )
    .map(|t| {
        (
            t["name"].as_str().unwrap_or("f"),
            tool_input(&t["input_schema"], &said),
        )
    });
    let thinks = matches!(
        body["thinking"]["type"].as_str(),
        Some("enabled" | "adaptive")
    );
    let thought = format!("Thinking about: {said}");
    let cached = body.to_string().contains("\"cache_control\"");
    let (read, write) = if cached { (100, 20) } else { (3, 0) };
    let usage = json!({"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": read, "cache_creation_input_tokens": write});
    let mut thinking_blocks = Vec::new();
    if thinks {
        thinking_blocks.push(
            json!({"type":"thinking","thinking":thought,"signature":fake_signature(&thought)}),
        );
        if said.contains("secret") {
            thinking_blocks.push(json!({"type":"redacted_thinking","data":FAKE_REDACTED}));
        }
    }
    if !stream {
        let mut content = thinking_blocks;
        match &tool {
            Some((name, input)) => {
                content.push(json!({"type":"text","text":"Let me check."}));
                content.push(
                    json!({"type":"tool_use","id":"toolu_bdrk_01","name":name,"input":input}),
                );
            }
            None => content.push(json!({"type":"text","text":text})),
        }
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
    if let Some(n) = bench_chunks(model) {
        return claude_bench_stream(n);
    }
    // Bedrock reports the input and cache counts in `message_start`, the output in `message_delta`.
    let mut events = vec![
        json!({"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":read,"cache_creation_input_tokens":write}}}),
    ];
    let mut index = 0;
    for block in &thinking_blocks {
        if block["type"] == "thinking" {
            events.push(json!({"type":"content_block_start","index":index,"content_block":{"type":"thinking","thinking":"","signature":""}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"thinking_delta","thinking":&thought[..9]}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"thinking_delta","thinking":&thought[9..]}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"signature_delta","signature":block["signature"]}}));
        } else {
            events.push(json!({"type":"content_block_start","index":index,"content_block":block}));
        }
        events.push(json!({"type":"content_block_stop","index":index}));
        index += 1;
    }
    events.push(json!({"type":"content_block_start","index":index,"content_block":{"type":"text","text":""}}));
    match &tool {
        Some((name, input)) => {
            let args = input.to_string();
            let (first, second) = halves(&args);
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":"Let me check."}}));
            events.push(json!({"type":"content_block_stop","index":index}));
            index += 1;
            events.push(json!({"type":"content_block_start","index":index,"content_block":{"type":"tool_use","id":"toolu_bdrk_01","name":name,"input":{}}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":first}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"input_json_delta","partial_json":second}}));
            events.push(json!({"type":"content_block_stop","index":index}));
        }
        None => {
            let (first, second) = halves(&text);
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":first}}));
            events.push(json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":second}}));
            events.push(json!({"type":"content_block_stop","index":index}));
        }
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    events.push(json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":9}}));
    events.push(json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":9,"invocationLatency":100,"firstByteLatency":40,"cacheReadInputTokenCount":read,"cacheWriteInputTokenCount":write}}));
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
    if let Some(n) = bench_chunks(model) {
        return titan_bench_stream(n);
    }
    let (first, second) = halves(&text);
    let mut frames = vec![
        chunk_frame(
            &json!({"outputText": first, "index": 0, "totalOutputTextTokenCount": 3, "completionReason": null, "inputTextTokenCount": 8}),
        ),
        chunk_frame(
            &json!({"outputText": second, "index": 1, "totalOutputTextTokenCount": 6, "completionReason": "FINISH", "inputTextTokenCount": null,
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 8, "outputTokenCount": 6, "invocationLatency": 50, "firstByteLatency": 20}}),
        ),
    ];
    if model.contains("truncated") {
        frames.truncate(1);
    }
    event_stream(split_frames(&frames, 5))
}

/// The Converse input's shape, as the service's model defines it: every member known, every union
/// exactly one of its variants, required members present. (The gateway writes this JSON itself;
/// a misspelt or misplaced member is the service's 400.)
pub fn validate_converse_shape(body: &Value) -> Result<(), String> {
    fn members(v: &Value, at: &str, known: &[&str], required: &[&str]) -> Result<(), String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object, got {v}"))?;
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!(
                "Malformed input request: extraneous key [{at}.{k}] is not permitted"
            ));
        }
        if let Some(k) = required.iter().find(|k| !obj.contains_key(**k)) {
            return Err(format!("{at}.{k} is required"));
        }
        Ok(())
    }
    fn union<'a>(
        v: &'a Value,
        at: &str,
        variants: &[&str],
    ) -> Result<(&'a str, &'a Value), String> {
        members(v, at, variants, &[])?;
        let obj = v.as_object().unwrap();
        match obj.iter().next() {
            Some((k, inner)) if obj.len() == 1 => Ok((k.as_str(), inner)),
            _ => Err(format!("{at}: a union needs exactly one member, got {v}")),
        }
    }
    fn string(v: &Value, at: &str) -> Result<(), String> {
        v.as_str()
            .map(|_| ())
            .ok_or_else(|| format!("{at}: expected a string, got {v}"))
    }
    fn source(v: &Value, at: &str, variants: &[&str]) -> Result<(), String> {
        use base64::Engine as _;
        match union(v, at, variants)? {
            ("bytes", b) => {
                let text = b
                    .as_str()
                    .ok_or_else(|| format!("{at}.bytes: not a string"))?;
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(|_| ())
                    .map_err(|e| format!("{at}.bytes: not base64: {e}"))
            }
            ("s3Location", loc) => members(
                loc,
                &format!("{at}.s3Location"),
                &["uri", "bucketOwner"],
                &["uri"],
            ),
            (_, text) => string(text, at),
        }
    }
    fn cache_point(v: &Value, at: &str) -> Result<(), String> {
        members(v, at, &["type", "ttl"], &["type"])
    }
    fn block(b: &Value, at: &str) -> Result<(), String> {
        let kinds = [
            "text",
            "image",
            "document",
            "audio",
            "video",
            "toolUse",
            "toolResult",
            "guardContent",
            "cachePoint",
            "reasoningContent",
            "citationsContent",
            "searchResult",
        ];
        let (kind, inner) = union(b, at, &kinds)?;
        let at = format!("{at}.{kind}");
        match kind {
            "text" => string(inner, &at),
            "image" | "audio" => {
                members(inner, &at, &["format", "source"], &["format", "source"])?;
                source(
                    &inner["source"],
                    &format!("{at}.source"),
                    &["bytes", "s3Location"],
                )
            }
            "document" => {
                members(
                    inner,
                    &at,
                    &["format", "name", "source", "context", "citations"],
                    &["name", "source"],
                )?;
                if let Some(c) = inner.get("citations") {
                    members(c, &format!("{at}.citations"), &["enabled"], &["enabled"])?;
                }
                source(
                    &inner["source"],
                    &format!("{at}.source"),
                    &["bytes", "s3Location", "text", "content"],
                )
            }
            "toolUse" => members(
                inner,
                &at,
                &["toolUseId", "name", "input", "type"],
                &["toolUseId", "name", "input"],
            ),
            "toolResult" => {
                members(
                    inner,
                    &at,
                    &["toolUseId", "content", "status", "type"],
                    &["toolUseId", "content"],
                )?;
                for (i, c) in inner["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    union(
                        c,
                        &format!("{at}.content.{i}"),
                        &["json", "text", "image", "document", "video", "searchResult"],
                    )?;
                }
                Ok(())
            }
            "reasoningContent" => match union(inner, &at, &["reasoningText", "redactedContent"])? {
                ("reasoningText", t) => members(
                    t,
                    &format!("{at}.reasoningText"),
                    &["text", "signature"],
                    &["text"],
                ),
                (_, data) => string(data, &at),
            },
            "cachePoint" => cache_point(inner, &at),
            _ => Ok(()),
        }
    }
    members(
        body,
        "input",
        &[
            "messages",
            "system",
            "inferenceConfig",
            "toolConfig",
            "guardrailConfig",
            "additionalModelRequestFields",
            "promptVariables",
            "additionalModelResponseFieldPaths",
            "requestMetadata",
            "performanceConfig",
            "serviceTier",
            "outputConfig",
        ],
        &[],
    )?;
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("messages.{i}");
        members(m, &at, &["role", "content"], &["role", "content"])?;
        if !matches!(m["role"].as_str(), Some("user" | "assistant")) {
            return Err(format!("{at}.role: {}", m["role"]));
        }
        for (j, b) in m["content"].as_array().into_iter().flatten().enumerate() {
            block(b, &format!("{at}.content.{j}"))?;
        }
    }
    for (i, b) in body["system"].as_array().into_iter().flatten().enumerate() {
        let at = format!("system.{i}");
        match union(b, &at, &["text", "guardContent", "cachePoint"])? {
            ("cachePoint", c) => cache_point(c, &at)?,
            (_, t) => string(t, &at)?,
        }
    }
    if let Some(c) = body.get("inferenceConfig") {
        members(
            c,
            "inferenceConfig",
            &["maxTokens", "temperature", "topP", "stopSequences"],
            &[],
        )?;
        let typed = c.get("maxTokens").is_none_or(|n| n.is_u64())
            && ["temperature", "topP"]
                .iter()
                .all(|k| c.get(*k).is_none_or(Value::is_number))
            && c.get("stopSequences")
                .is_none_or(|s| s.as_array().is_some_and(|a| a.iter().all(Value::is_string)));
        if !typed {
            return Err(format!("inferenceConfig: a member of the wrong type: {c}"));
        }
    }
    if let Some(t) = body.get("toolConfig") {
        members(t, "toolConfig", &["tools", "toolChoice"], &["tools"])?;
        for (i, tool) in t["tools"].as_array().into_iter().flatten().enumerate() {
            let at = format!("toolConfig.tools.{i}");
            match union(tool, &at, &["toolSpec", "cachePoint", "systemTool"])? {
                ("toolSpec", spec) => {
                    let at = format!("{at}.toolSpec");
                    members(
                        spec,
                        &at,
                        &["name", "description", "inputSchema", "strict"],
                        &["name", "inputSchema"],
                    )?;
                    union(
                        &spec["inputSchema"],
                        &format!("{at}.inputSchema"),
                        &["json"],
                    )?;
                }
                ("cachePoint", c) => cache_point(c, &at)?,
                _ => {}
            }
        }
        if let Some(choice) = t.get("toolChoice") {
            match union(choice, "toolConfig.toolChoice", &["auto", "any", "tool"])? {
                ("tool", name) => {
                    members(name, "toolConfig.toolChoice.tool", &["name"], &["name"])?
                }
                (_, empty) => members(empty, "toolConfig.toolChoice", &[], &[])?,
            }
        }
    }
    if let Some(g) = body.get("guardrailConfig") {
        members(
            g,
            "guardrailConfig",
            &[
                "guardrailIdentifier",
                "guardrailVersion",
                "trace",
                "streamProcessingMode",
            ],
            &[],
        )?;
    }
    Ok(())
}

/// What Converse rejects for `model` that a gateway could send by mistake: cache points on a model
/// without caching (or, on Nova, on tools and in turns with tool content), more than four,
/// reasoning settings in another family's spelling, a forced tool choice on a family without it,
/// and reasoning content that is not the model's own.
pub fn validate_converse(body: &Value, model: &str) -> Result<(), String> {
    let id = model.rsplit('/').next().unwrap_or(model);
    let vendor = id
        .split('.')
        .find(|p| !["us", "eu", "apac", "jp", "au", "us-gov", "global"].contains(p))
        .unwrap_or("");
    let claude = vendor == "anthropic";
    let nova = id.contains("amazon.nova");
    let nova2 = id.contains("amazon.nova-2");
    let mut cache_points = 0;
    let extraneous = |what: &str| {
        Err(format!("Malformed input request: extraneous key [{what}] is not permitted, please reformat your input and try again."))
    };
    for b in body["system"].as_array().into_iter().flatten() {
        if b.get("cachePoint").is_some() {
            cache_points += 1;
        }
    }
    for (i, m) in body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let blocks = m["content"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let points = blocks
            .iter()
            .filter(|b| b.get("cachePoint").is_some())
            .count();
        cache_points += points;
        let has_tools = blocks
            .iter()
            .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
        if nova && points > 0 && has_tools {
            return extraneous(&format!("messages.{i}.cachePoint"));
        }
        let mut has_document = false;
        for b in blocks {
            for media in ["image", "document"] {
                if let Some(loc) = b[media]["source"].get("s3Location") {
                    if loc.get("bucketOwner").is_none() {
                        return Err(format!(
                            "messages.{i}: the gateway must name the bucketOwner of {}",
                            loc["uri"]
                        ));
                    }
                }
            }
            let Some(doc) = b.get("document") else {
                continue;
            };
            has_document = true;
            let name = doc["name"].as_str().unwrap_or("");
            let valid = !name.is_empty()
                && name.len() <= 200
                && !name.contains("  ")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " -()[]".contains(c));
            if !valid {
                return Err(format!(
                    "messages.{i}.document.name: [{name}] does not match the allowed characters"
                ));
            }
            if doc.get("citations").is_some() && !claude {
                return extraneous("document.citations");
            }
        }
        if has_document && !blocks.iter().any(|b| b.get("text").is_some()) {
            return Err(format!(
                "messages.{i}: a message with a document must also contain a text block"
            ));
        }
        for b in blocks {
            if let Some(r) = b.get("reasoningContent") {
                if !claude {
                    return Err(format!(
                        "messages.{i}: reasoningContent is not supported by {model}"
                    ));
                }
                if let Some(t) = r.get("reasoningText") {
                    let text = t["text"].as_str().unwrap_or("");
                    if t["signature"].as_str() != Some(fake_signature(text).as_str()) {
                        return Err(format!(
                            "messages.{i}: the signature of a reasoningText block is invalid"
                        ));
                    }
                }
            }
        }
    }
    for t in body["toolConfig"]["tools"].as_array().into_iter().flatten() {
        if t.get("cachePoint").is_some() {
            if nova {
                return extraneous("toolConfig.tools.cachePoint");
            }
            cache_points += 1;
        }
    }
    if cache_points > 0 && !caches_prompts(model) {
        return extraneous("cachePoint");
    }
    if cache_points > 4 {
        return Err(format!(
            "The number of cache points ({cache_points}) exceeds the maximum of 4."
        ));
    }
    let choice = &body["toolConfig"]["toolChoice"];
    if (choice.get("any").is_some() || choice.get("tool").is_some()) && !(claude || nova) {
        return Err(format!("This model doesn't support the toolConfig.toolChoice.{} field. Remove toolConfig.toolChoice and try again.",
            if choice.get("any").is_some() { "any" } else { "tool" }));
    }
    let fields = &body["additionalModelRequestFields"];
    if fields.get("thinking").is_some() && !claude {
        return extraneous("thinking");
    }
    if fields.get("reasoningConfig").is_some() && !nova2 {
        return extraneous("reasoningConfig");
    }
    if fields.get("reasoning_effort").is_some() && (claude || nova) {
        return extraneous("reasoning_effort");
    }
    if claude && fields.get("thinking").is_some() {
        let mut obj = serde_json::Map::new();
        obj.insert("thinking".into(), fields["thinking"].clone());
        let config = &body["inferenceConfig"];
        obj.insert(
            "max_tokens".into(),
            config.get("maxTokens").cloned().unwrap_or(json!(64000)),
        );
        for (from, to) in [("temperature", "temperature"), ("topP", "top_p")] {
            if let Some(v) = config.get(from) {
                obj.insert(to.into(), v.clone());
            }
        }
        if let Some(k) = fields.get("top_k") {
            obj.insert("top_k".into(), k.clone());
        }
        let messages: Vec<Value> = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let content: Vec<Value> = m["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        if b.get("toolUse").is_some() {
                            json!({"type":"tool_use"})
                        } else if b.get("reasoningContent").is_some() {
                            json!({"type":"thinking"})
                        } else {
                            json!({"type":"text"})
                        }
                    })
                    .collect();
                json!({"role": m["role"], "content": content})
            })
            .collect();
        obj.insert("messages".into(), json!(messages));
        if choice.get("any").is_some() || choice.get("tool").is_some() {
            obj.insert("tool_choice".into(), json!({"type":"any"}));
        }
        check_thinking(&obj)?;
    }
    Ok(())
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
    if let Err(e) = validate_converse(body, model) {
        return aws_error(400, "ValidationException", &e);
    }
    let said = last_user_text(&body["messages"]);
    let text = answer_text(&body["messages"]);
    let specs: Vec<Value> = body["toolConfig"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t.get("toolSpec").is_some())
        .cloned()
        .collect();
    let choice = &body["toolConfig"]["toolChoice"];
    let choice_kind = if choice.get("any").is_some() {
        "any"
    } else {
        "auto"
    };
    let tool = chosen_tool(
        &specs,
        choice_kind,
        choice["tool"]["name"].as_str(),
        has_tool_results(&body["messages"]),
    )
    .map(|t| {
        (
            t["toolSpec"]["name"].as_str().unwrap_or("f"),
            tool_input(&t["toolSpec"]["inputSchema"]["json"], &said),
        )
    });
    let fields = &body["additionalModelRequestFields"];
    let thought = format!("Thinking about: {said}");
    // Claude signs its reasoning; DeepSeek-R1 always reasons, unsigned; Nova 2 and gpt-oss when asked.
    let reasoning =
        if fields["thinking"]["type"] == "enabled" || fields["thinking"]["type"] == "adaptive" {
            Some(json!({"reasoningText": {"text": thought, "signature": fake_signature(&thought)}}))
        } else if model.contains("deepseek.r1")
            || fields.get("reasoningConfig").is_some()
            || fields.get("reasoning_effort").is_some()
        {
            Some(json!({"reasoningText": {"text": thought}}))
        } else {
            None
        };
    let cached = body.to_string().contains("\"cachePoint\"");
    let mut usage =
        json!({"inputTokens": 20, "outputTokens": 5, "totalTokens": 27, "cacheReadInputTokens": 2});
    if cached {
        usage = json!({"inputTokens": 20, "outputTokens": 5, "totalTokens": 145, "cacheReadInputTokens": 100, "cacheWriteInputTokens": 20});
    }
    if !stream {
        let mut content: Vec<Value> = reasoning
            .iter()
            .map(|r| json!({"reasoningContent": r}))
            .collect();
        match &tool {
            Some((name, input)) => content
                .push(json!({"toolUse":{"toolUseId":"tooluse_Ab12","name":name,"input":input}})),
            None => content.push(json!({"text": text})),
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
    if let Some(n) = bench_chunks(model) {
        return converse_bench_stream(n);
    }
    let mut frames = vec![event_frame(
        "messageStart",
        &json!({"role":"assistant","p":"xyz"}),
    )];
    let mut index = 0;
    if let Some(r) = &reasoning {
        let t = r["reasoningText"]["text"].as_str().unwrap_or("");
        frames.push(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex":index,"delta":{"reasoningContent":{"text":&t[..9]}}}),
        ));
        frames.push(event_frame(
            "contentBlockDelta",
            &json!({"contentBlockIndex":index,"delta":{"reasoningContent":{"text":&t[9..]}}}),
        ));
        if let Some(sig) = r["reasoningText"].get("signature") {
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":index,"delta":{"reasoningContent":{"signature":sig}}}),
            ));
        }
        frames.push(event_frame(
            "contentBlockStop",
            &json!({"contentBlockIndex":index}),
        ));
        index += 1;
    }
    match &tool {
        Some((name, input)) => {
            let args = input.to_string();
            let (first, second) = halves(&args);
            frames.push(event_frame("contentBlockStart", &json!({"contentBlockIndex":index,"start":{"toolUse":{"toolUseId":"tooluse_Ab12","name":name}}})));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":index,"delta":{"toolUse":{"input":first}}}),
            ));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":index,"delta":{"toolUse":{"input":second}}}),
            ));
            frames.push(event_frame(
                "contentBlockStop",
                &json!({"contentBlockIndex":index}),
            ));
            frames.push(event_frame(
                "messageStop",
                &json!({"stopReason":"tool_use"}),
            ));
        }
        None => {
            let (first, second) = halves(&text);
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":index,"delta":{"text":first}}),
            ));
            frames.push(event_frame(
                "contentBlockDelta",
                &json!({"contentBlockIndex":index,"delta":{"text":second}}),
            ));
            frames.push(event_frame(
                "contentBlockStop",
                &json!({"contentBlockIndex":index}),
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

// ---------------------------------------------------------------------------------------------
// Embeddings: OpenAI's `/v1/embeddings`, Titan and Cohere over InvokeModel, each body validated as
// strictly as the real service does.

/// The fake's vector for `text`: `dims` floats, the first the text's length in bytes, the rest
/// `i / 1000` — so a test can tell which input a vector belongs to and how long it is.
pub fn fake_vector(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|i| {
            if i == 0 {
                text.len() as f32
            } else {
                i as f32 / 1000.0
            }
        })
        .collect()
}

/// The fake's token count for a text (one per whitespace-separated word, at least one).
pub fn fake_tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

fn unknown_keys(body: &Value, allowed: &[&str]) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("the body is not a JSON object".into());
    };
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("extraneous key [{k}] is not permitted")),
        None => Ok(()),
    }
}

fn openai_embeddings_answer(req: &Recorded, attempt: usize) -> Reply {
    let body = req.json();
    let bad = |e: String| {
        Reply::json(
            400,
            json!({"error":{"message":e,"type":"invalid_request_error","param":null,"code":null}}),
        )
    };
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if model == "text-embedding-fail-500" {
        return Reply::json(
            500,
            json!({"error":{"message":"upstream exploded","type":"server_error","param":null,"code":null}}),
        );
    }
    if model == "text-embedding-429-once" && attempt % 2 == 1 {
        return Reply::json(429, json!({"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}))
            .with_header("retry-after-ms", "10");
    }
    if let Err(e) = unknown_keys(
        &body,
        &["model", "input", "dimensions", "encoding_format", "user"],
    ) {
        return bad(format!("Unrecognized request argument supplied: {e}"));
    }
    if model.is_empty() {
        return bad("you must provide a model parameter".into());
    }
    let texts: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => items
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return bad("'input' must be a string or a list of strings".into()),
    };
    let dims = match &body["dimensions"] {
        Value::Null => 8,
        v => match v.as_u64() {
            Some(d) if (1..=3072).contains(&d) && model.starts_with("text-embedding-3") => {
                d as usize
            }
            _ => return bad("This model does not support specifying dimensions.".into()),
        },
    };
    let base64 = match &body["encoding_format"] {
        Value::Null => false,
        Value::String(f) if f == "float" => false,
        Value::String(f) if f == "base64" => true,
        _ => return bad("'encoding_format' must be float or base64".into()),
    };
    use base64::Engine as _;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = fake_vector(t, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object":"embedding","index":i,"embedding":embedding})
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| fake_tokens(t)).sum();
    Reply::json(
        200,
        json!({"object":"list","data":data,"model":model,
            "usage":{"prompt_tokens":tokens,"total_tokens":tokens}}),
    )
}

/// Titan embeddings: v2 takes `inputText`, `dimensions` (256/512/1024, default 1024),
/// `normalize`, `embeddingTypes`; v1 `inputText` only (1536 floats).
fn titan_embedding_answer(body: &Value, model: &str) -> Reply {
    let v2 = model.contains("titan-embed-text-v2");
    let allowed: &[&str] = if v2 {
        &["inputText", "dimensions", "normalize", "embeddingTypes"]
    } else {
        &["inputText"]
    };
    if let Err(e) = unknown_keys(body, allowed) {
        return aws_error(
            400,
            "ValidationException",
            &format!("Malformed input request: {e}, please reformat your input and try again."),
        );
    }
    let Some(text) = body["inputText"].as_str().filter(|t| !t.is_empty()) else {
        return aws_error(
            400,
            "ValidationException",
            "Malformed input request: #/inputText: expected minLength: 1",
        );
    };
    let dims = match &body["dimensions"] {
        Value::Null => {
            if v2 {
                1024
            } else {
                1536
            }
        }
        v => match v.as_u64() {
            Some(d @ (256 | 512 | 1024)) => d as usize,
            _ => {
                return aws_error(
                    400,
                    "ValidationException",
                    "Malformed input request: #/dimensions: 300 is not a valid enum value",
                )
            }
        },
    };
    if !matches!(body["normalize"], Value::Null | Value::Bool(_)) {
        return aws_error(
            400,
            "ValidationException",
            "Malformed input request: #/normalize: expected type: Boolean",
        );
    }
    Reply::json(
        200,
        json!({"embedding": fake_vector(text, dims), "inputTextTokenCount": fake_tokens(text)}),
    )
}

/// Cohere embeddings: `texts` (1–96), `input_type` (required), `truncate`, `embedding_types`;
/// v4 also `output_dimension` (256/512/1024/1536, default 1536) and answers by type.
fn cohere_embedding_answer(body: &Value, model: &str) -> Reply {
    let v4 = model.contains("embed-v4");
    let allowed: &[&str] = if v4 {
        &[
            "texts",
            "input_type",
            "truncate",
            "embedding_types",
            "output_dimension",
            "images",
            "max_tokens",
        ]
    } else {
        &[
            "texts",
            "input_type",
            "truncate",
            "embedding_types",
            "images",
        ]
    };
    let invalid = |m: &str| {
        aws_error(
            400,
            "ValidationException",
            &format!("Malformed input request: {m}, please reformat your input and try again."),
        )
    };
    if let Err(e) = unknown_keys(body, allowed) {
        return invalid(&e);
    }
    let Some(texts) = body["texts"].as_array() else {
        return invalid("#: required key [texts] not found");
    };
    if texts.is_empty() || texts.len() > 96 {
        return invalid(&format!(
            "#/texts: expected between 1 and 96 items, found {}",
            texts.len()
        ));
    }
    let texts: Vec<&str> = texts.iter().filter_map(Value::as_str).collect();
    if !matches!(
        body["input_type"].as_str(),
        Some("search_document" | "search_query" | "classification" | "clustering")
    ) {
        return invalid("#/input_type: required and one of search_document, search_query, classification, clustering");
    }
    let truncate_ok = match body["truncate"].as_str() {
        None => body["truncate"].is_null(),
        Some(t) if v4 => ["NONE", "LEFT", "RIGHT"].contains(&t),
        Some(t) => ["NONE", "START", "END"].contains(&t),
    };
    if !truncate_ok {
        return invalid("#/truncate: not a valid enum value");
    }
    let dims = match &body["output_dimension"] {
        Value::Null => {
            if v4 {
                1536
            } else {
                1024
            }
        }
        v => match v.as_u64() {
            Some(d @ (256 | 512 | 1024 | 1536)) => d as usize,
            _ => return invalid("#/output_dimension: not a valid enum value"),
        },
    };
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t, dims)).collect();
    let tokens: u64 = texts.iter().map(|t| fake_tokens(t)).sum();
    let by_type = v4 || !body["embedding_types"].is_null();
    let embeddings = if by_type {
        json!({"float": vectors})
    } else {
        json!(vectors)
    };
    Reply::json(
        200,
        json!({"id":"emb-fake","texts":texts,"embeddings":embeddings,
            "response_type": if by_type {"embeddings_by_type"} else {"embeddings_floats"}}),
    )
    .with_header("x-amzn-bedrock-input-token-count", &tokens.to_string())
}

/// Tool types OpenAI's Responses API runs itself, besides `function`.
const RESPONSES_TOOL_TYPES: &[&str] = &[
    "function",
    "web_search",
    "web_search_preview",
    "file_search",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
];

/// Checks a `/v1/responses` body as OpenAI does: an object with a string `model`, `input` (a
/// string or a list; optional after `previous_response_id`), known tool types, no chat-only
/// member, `stream_options` only with `stream`.
pub fn validate_responses(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    if !obj.get("model").is_some_and(Value::is_string) {
        return Err("Missing required parameter: 'model'.".into());
    }
    match obj.get("input") {
        Some(Value::String(_) | Value::Array(_)) => {}
        None if obj.contains_key("previous_response_id") => {}
        _ => return Err("Invalid 'input': expected a string or a list of items.".into()),
    }
    for key in [
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "response_format",
        "n",
    ] {
        if obj.contains_key(key) {
            return Err(format!("Unsupported parameter: '{key}'."));
        }
    }
    if obj.contains_key("stream_options") && body["stream"] != true {
        return Err("'stream_options' is only allowed when 'stream' is true.".into());
    }
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        let kind = t["type"].as_str().unwrap_or("");
        if !RESPONSES_TOOL_TYPES.contains(&kind) {
            return Err(format!("Invalid value for 'tools[{i}].type': '{kind}'."));
        }
    }
    Ok(())
}

/// The usage the fake Responses API reports: 20 input tokens (5 cached), 9 output (2 reasoning).
pub fn fake_responses_usage() -> Value {
    json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 5},
        "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 29})
}

/// OpenAI's Responses API, answered from the request: the text `Upstream said: <input>` (a
/// `web_search_call` item first when a web search tool was given), as a Response object or as
/// the typed event stream (`event:` lines, `sequence_number`s, `response.completed` last).
pub fn openai_responses_answer(req: &Recorded) -> Reply {
    let body = req.json();
    if let Err(message) = validate_responses(&body) {
        return Reply::json(
            400,
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
        );
    }
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let said = match &body["input"] {
        Value::String(s) => s.clone(),
        _ => "items".into(),
    };
    let text = format!("Upstream said: {said}");
    let mut output = Vec::new();
    let searched = body["tools"].as_array().into_iter().flatten().any(|t| {
        t["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("web_search"))
    });
    if searched {
        output.push(json!({"type": "web_search_call", "id": "ws_1", "status": "completed"}));
    }
    let message = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    output.push(message.clone());
    let response = |status: &str, output: Vec<Value>, usage: Value| {
        json!({"id": "resp_upstream_1", "object": "response", "created_at": 1741476542,
            "status": status, "model": model, "output": output, "usage": usage,
            "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "tools": body.get("tools").cloned().unwrap_or(json!([])), "error": null,
            "incomplete_details": null, "instructions": null, "metadata": {}, "parallel_tool_calls": true,
            "temperature": 1.0, "tool_choice": "auto", "top_p": 1.0, "text": {"format": {"type": "text"}}})
    };
    if body["stream"] != true {
        return Reply::Body {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: Bytes::from(
                serde_json::to_vec(&response("completed", output, fake_responses_usage())).unwrap(),
            ),
        };
    }
    let (first, second) = halves(&text);
    let events = [
        json!({"type": "response.created", "response": response("in_progress", vec![], Value::Null)}),
        json!({"type": "response.in_progress", "response": response("in_progress", vec![], Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item":
            {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
        json!({"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": first}),
        json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": second}),
        json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text}),
        json!({"type": "response.content_part.done", "item_id": "msg_1", "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": message}),
        json!({"type": "response.completed", "response": response("completed", output, fake_responses_usage())}),
    ];
    let parts = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e["sequence_number"] = json!(i);
            Bytes::from(format!(
                "event: {}\ndata: {}\n\n",
                e["type"].as_str().unwrap(),
                serde_json::to_string(&e).unwrap()
            ))
        })
        .collect();
    Reply::Stream {
        content_type: "text/event-stream",
        parts,
        gap: Duration::ZERO,
        stall: false,
    }
}
