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
    Body { status: u16, content_type: &'static str, headers: Vec<(&'static str, String)>, body: Bytes },
    /// A streamed response: the parts are written one by one with `gap` between them; with `stall`
    /// the connection stays open and silent after the last part.
    Stream { content_type: &'static str, parts: Vec<Bytes>, gap: Duration, stall: bool },
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
            Reply::Body { status, content_type, mut headers, body } => {
                headers.push((name, value.to_owned()));
                Reply::Body { status, content_type, headers, body }
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
        Reply::Stream { content_type: "text/event-stream", parts, gap: Duration::ZERO, stall: false }
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
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let (handler, log, dropped) = (handler.clone(), log2.clone(), dropped2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, log, dropped) = (handler.clone(), log.clone(), dropped.clone());
                        async move { serve_one(req, handler, log, dropped).await }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fake { addr, log, dropped_streams: dropped, task }
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

async fn serve_one(
    req: Request<Incoming>,
    handler: Handler,
    log: Arc<Mutex<Vec<Recorded>>>,
    dropped: Arc<Mutex<usize>>,
) -> Result<Response<FakeBody>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let rec = Recorded {
        method: parts.method,
        path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    let attempt = {
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
            Reply::Body { status, content_type, headers, body } => {
                let mut res = Response::new(Full::new(body).boxed());
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                res.headers_mut().insert("content-type", content_type.parse().unwrap());
                for (k, v) in headers {
                    res.headers_mut().insert(k, v.parse().unwrap());
                }
                return Ok(res);
            }
            Reply::Stream { content_type, parts, gap, stall } => {
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
                res.headers_mut().insert("content-type", content_type.parse().unwrap());
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
// per-test script. Model ids steer faults: `gpt-fail-500`, `gpt-fail-429-once`, `gpt-slow`.

/// The fake for the SDK tests and the load benchmark: OpenAI paths (and, once Bedrock is served,
/// Bedrock runtime paths) answered from the request itself.
pub fn smart() -> Handler {
    Arc::new(|req: &Recorded, attempt: usize| openai_answer(req, attempt))
}

pub fn openai_smart() -> Handler {
    Arc::new(|req: &Recorded, attempt: usize| openai_answer(req, attempt))
}

pub fn openai_answer(req: &Recorded, attempt: usize) -> Reply {
    if req.method == http::Method::GET && req.path.ends_with("/models") {
        return Reply::json(200, json!({"object":"list","data":[
            {"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"system"},
            {"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"system"}]}));
    }
    let body = req.json();
    let model = body["model"].as_str().unwrap_or("gpt-4o").to_owned();
    if model == "gpt-fail-500" {
        return Reply::json(500, json!({"error":{"message":"upstream exploded","type":"server_error","param":null,"code":null}}));
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
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(" "),
            _ => String::new(),
        })
        .unwrap_or_default();
    let wants_tool = body["tools"].as_array().is_some_and(|t| !t.is_empty())
        && body["tool_choice"] != "none"
        && !body["messages"].as_array().is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
    let tool_name = body["tools"][0]["function"]["name"].as_str().unwrap_or("f").to_owned();
    let text = format!("You said: {last_user}");
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18});
    if body["stream"] == true {
        let base = |choices: Value| json!({"id":"chatcmpl-fake1","object":"chat.completion.chunk","created":1732000000,"model":model,"choices":choices});
        let mut events = vec![base(json!([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]))];
        if wants_tool {
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_fake1","type":"function","function":{"name":tool_name,"arguments":""}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(json!([{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"logprobs":null,"finish_reason":null}])));
            events.push(base(json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}])));
        } else {
            let mid = text.len() / 2;
            let mid = (0..=mid).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            for piece in [&text[..mid], &text[mid..]] {
                events.push(base(json!([{"index":0,"delta":{"content":piece},"logprobs":null,"finish_reason":null}])));
            }
            events.push(base(json!([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}])));
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
    Reply::json(200, json!({"id":"chatcmpl-fake1","object":"chat.completion","created":1732000000,"model":model,
        "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],
        "usage":usage,"system_fingerprint":"fp_fake"}))
}
