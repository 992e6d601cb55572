//! OpenTelemetry export end to end (feature `otel`): the real binary, a fake OpenAI upstream and an
//! in-process fake OTLP/HTTP collector; the collector decodes the protobuf it receives and the test
//! checks the request's span and its attributes.
#![cfg(feature = "otel")]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fake::{self, Fake};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_open-bedrock-server");
const WAIT: Duration = Duration::from_secs(20);

// ---- a fake OTLP/HTTP collector ----

/// One export the collector received.
#[derive(Debug, Clone)]
struct Export {
    path: String,
    content_type: String,
    body: Bytes,
}

struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<Export>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let log = exports.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get(http::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let ok = req.method() == Method::POST && path == "/v1/traces";
                            let body = req.into_body().collect().await?.to_bytes();
                            log.lock().unwrap().push(Export {
                                path,
                                content_type,
                                body,
                            });
                            // An empty ExportTraceServiceResponse is zero bytes of protobuf.
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(if ok { 200 } else { 404 })
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Collector {
            addr,
            exports,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn exports(&self) -> Vec<Export> {
        self.exports.lock().unwrap().clone()
    }

    /// Every span of every export so far.
    fn spans(&self) -> Vec<Span> {
        self.exports()
            .iter()
            .flat_map(|e| {
                assert_eq!(e.path, "/v1/traces");
                assert_eq!(e.content_type, "application/x-protobuf");
                decode_export(&e.body)
            })
            .collect()
    }
}

// ---- just enough protobuf to read an ExportTraceServiceRequest ----

#[derive(Debug, Clone, PartialEq)]
enum AnyValue {
    Str(String),
    Int(i64),
    Other,
}

#[derive(Debug, Clone)]
struct Span {
    name: String,
    kind: u64,
    start: u64,
    end: u64,
    attributes: HashMap<String, AnyValue>,
    status_code: u64,
    /// Attributes of the span's resource.
    resource: HashMap<String, AnyValue>,
}

impl Span {
    fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AnyValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AnyValue::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> u64 {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let (b, rest) = buf.split_first().expect("truncated varint");
        *buf = rest;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return out;
        }
    }
    panic!("varint too long")
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf);
        let value = match tag & 7 {
            0 => Field::Varint(varint(&mut buf)),
            1 => {
                let (v, rest) = buf.split_at(8);
                buf = rest;
                Field::Fixed(u64::from_le_bytes(v.try_into().unwrap()))
            }
            2 => {
                let len = varint(&mut buf) as usize;
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Field::Bytes(v)
            }
            5 => {
                let (v, rest) = buf.split_at(4);
                buf = rest;
                Field::Fixed(u64::from(u32::from_le_bytes(v.try_into().unwrap())))
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((tag >> 3, value));
    }
    out
}

fn string(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8 string field")
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string = 1; int = 3; … }`.
fn key_value(buf: &[u8]) -> (String, AnyValue) {
    let (mut key, mut value) = (String::new(), AnyValue::Other);
    for (n, f) in fields(buf) {
        match (n, f) {
            (1, Field::Bytes(b)) => key = string(b),
            (2, Field::Bytes(b)) => {
                for (n, f) in fields(b) {
                    value = match (n, f) {
                        (1, Field::Bytes(s)) => AnyValue::Str(string(s)),
                        (3, Field::Varint(i)) => AnyValue::Int(i as i64),
                        _ => AnyValue::Other,
                    };
                }
            }
            _ => {}
        }
    }
    (key, value)
}

/// `ExportTraceServiceRequest { ResourceSpans resource_spans = 1 }`,
/// `ResourceSpans { Resource resource = 1; ScopeSpans scope_spans = 2 }`,
/// `ScopeSpans { Span spans = 2 }`,
/// `Span { name = 5; kind = 6; start = 7; end = 8; attributes = 9; Status status = 15 }`.
fn decode_export(body: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    for (n, f) in fields(body) {
        let (1, Field::Bytes(rs)) = (n, f) else {
            continue;
        };
        let mut resource = HashMap::new();
        let mut scope_spans = Vec::new();
        for (n, f) in fields(rs) {
            match (n, f) {
                (1, Field::Bytes(r)) => {
                    for (n, f) in fields(r) {
                        if let (1, Field::Bytes(kv)) = (n, f) {
                            let (k, v) = key_value(kv);
                            resource.insert(k, v);
                        }
                    }
                }
                (2, Field::Bytes(ss)) => scope_spans.push(ss),
                _ => {}
            }
        }
        for ss in scope_spans {
            for (n, f) in fields(ss) {
                let (2, Field::Bytes(s)) = (n, f) else {
                    continue;
                };
                let mut span = Span {
                    name: String::new(),
                    kind: 0,
                    start: 0,
                    end: 0,
                    attributes: HashMap::new(),
                    status_code: 0,
                    resource: resource.clone(),
                };
                for (n, f) in fields(s) {
                    match (n, f) {
                        (5, Field::Bytes(b)) => span.name = string(b),
                        (6, Field::Varint(k)) => span.kind = k,
                        (7, Field::Fixed(t)) => span.start = t,
                        (8, Field::Fixed(t)) => span.end = t,
                        (9, Field::Bytes(kv)) => {
                            let (k, v) = key_value(kv);
                            span.attributes.insert(k, v);
                        }
                        (15, Field::Bytes(st)) => {
                            for (n, f) in fields(st) {
                                if let (3, Field::Varint(c)) = (n, f) {
                                    span.status_code = c;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                spans.push(span);
            }
        }
    }
    spans
}

// ---- the gateway binary ----

/// The running binary; killed on drop. Its output is drained into `output`.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<Vec<String>>>,
    _dir: Scratch,
}

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Gateway {
    async fn start(upstream: &Fake, env: &[(&str, &str)]) -> Gateway {
        // An empty working directory: no stray `.env` is read.
        let dir = std::env::temp_dir().join(format!(
            "obs-otel-{}-{}",
            std::process::id(),
            upstream.addr.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(BIN)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("API_KEY", common::KEY)
            .env("BEDROCK_ENABLED", "false")
            .env("OPENAI_BASE_URL", format!("{}/v1", upstream.url()))
            .env("OPENAI_API_KEY", common::UPSTREAM_KEY)
            .envs(env.iter().copied())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start open-bedrock-server");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (out, tx) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                tx.clone(),
            ),
            (Box::new(stderr), tx),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = rx.recv().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["message"] == "open-bedrock-server listening" {
                    return v["address"]
                        .as_str()
                        .unwrap()
                        .parse::<SocketAddr>()
                        .unwrap();
                }
            }
            panic!("the gateway exited before listening")
        })
        .await
        .unwrap_or_else(|_| panic!("the gateway did not listen within {WAIT:?}"));
        Gateway {
            child,
            addr,
            output,
            _dir: Scratch(dir),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    async fn terminate(&mut self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within {WAIT:?} of SIGTERM:\n{}", self.output()))
            .unwrap();
        assert!(exit.success(), "exit {exit:?}:\n{}", self.output());
    }
}

async fn chat(gw: &Gateway, body: &Value, request_id: &str) -> common::TestResponse {
    common::send_raw(
        Method::POST,
        &gw.url("/v1/chat/completions"),
        Some(common::KEY),
        Some(Bytes::from(serde_json::to_vec(body).unwrap())),
        &[("x-request-id", request_id)],
    )
    .await
}

fn request_span<'a>(spans: &'a [Span], request_id: &str) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| s.str("request_id") == Some(request_id))
}

/// With a long batch delay nothing is exported while the gateway runs; the guard's flush at
/// SIGTERM delivers the request's span with its HTTP and gen_ai attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_flushed_at_shutdown() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let collector = Collector::start().await;
    let mut gw = Gateway::start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;
    let res = chat(
        &gw,
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        "otel-req-flush",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        collector.exports().is_empty(),
        "exported before shutdown despite the 600 s batch delay"
    );
    gw.terminate().await;

    let spans = collector.spans();
    let span = request_span(&spans, "otel-req-flush").unwrap_or_else(|| {
        panic!(
            "no span for the request in {spans:#?}\ngateway output:\n{}",
            gw.output()
        )
    });
    assert_eq!(span.name, "POST chat");
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert!(span.start > 0 && span.end >= span.start, "{span:?}");
    assert_eq!(span.str("http.request.method"), Some("POST"));
    assert_eq!(span.str("url.path"), Some("/v1/chat/completions"));
    assert_eq!(span.int("http.response.status_code"), Some(200));
    assert_eq!(span.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(span.str("gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(span.str("gen_ai.system"), Some("openai"));
    assert_eq!(span.int("gen_ai.usage.input_tokens"), Some(11));
    assert_eq!(span.int("gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(span.status_code, 0, "unset status for a 200");
    assert_eq!(
        span.resource.get("service.name"),
        Some(&AnyValue::Str("open-bedrock-server".into()))
    );
}

/// With a short batch delay spans arrive while the gateway runs — a stream's span when its last
/// byte is sent, a 404's with its status — at `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, under
/// `OTEL_SERVICE_NAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_in_batches() {
    let upstream = Fake::start(fake::openai_smart()).await;
    let collector = Collector::start().await;
    let traces = format!("{}/v1/traces", collector.url());
    let gw = Gateway::start(
        &upstream,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "gateway-under-test"),
        ],
    )
    .await;
    let res = chat(
        &gw,
        &json!({"model": "gpt-4o", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        "otel-req-stream",
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(res.text().contains("[DONE]"), "{}", res.text());
    let res = chat(
        &gw,
        &json!({"model": "no-such-model-xyz", "messages": [{"role": "user", "content": "hi"}]}),
        "otel-req-404",
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text());

    let started = Instant::now();
    let spans = loop {
        let spans = collector.spans();
        if request_span(&spans, "otel-req-stream").is_some()
            && request_span(&spans, "otel-req-404").is_some()
        {
            break spans;
        }
        assert!(
            started.elapsed() < WAIT,
            "spans not exported within {WAIT:?}: {spans:#?}\ngateway output:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stream = request_span(&spans, "otel-req-stream").unwrap();
    assert_eq!(stream.name, "POST chat");
    assert_eq!(stream.str("gen_ai.request.model"), Some("gpt-4o"));
    assert_eq!(stream.str("gen_ai.system"), Some("openai"));
    assert_eq!(stream.int("http.response.status_code"), Some(200));
    assert_eq!(
        stream.resource.get("service.name"),
        Some(&AnyValue::Str("gateway-under-test".into()))
    );
    let missing = request_span(&spans, "otel-req-404").unwrap();
    assert_eq!(missing.int("http.response.status_code"), Some(404));
    assert_eq!(missing.str("error.type"), Some("ModelNotFound"));
    assert_eq!(missing.status_code, 0, "a 4xx is not a server span error");
}
