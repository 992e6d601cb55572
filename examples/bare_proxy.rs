//! The floor of the load benchmark: the least a Rust reverse proxy must do to relay a chat call.
//!
//! A hyper server (HTTP/1.1 and HTTP/2, `TCP_NODELAY`, a multi-thread Tokio runtime like the
//! gateway's) in front of a pooled hyper client: the `Authorization` header is compared as bytes
//! with `Bearer <key>` (401 otherwise), the request body is relayed to the upstream as it streams
//! in, and the upstream's status, `Content-Type` and body are relayed back as they stream out.
//! Nothing is parsed, validated, logged or measured. `scripts/bench-load` runs it as its fourth
//! target, beside the fake upstream reached directly, the gateway and LiteLLM, so every run shows
//! how far the gateway is from this floor on the same machine at the same moment.
//!
//! ```text
//! cargo run --profile bench-tools --example bare_proxy -- 127.0.0.1:0 http://127.0.0.1:9000 KEY
//! ```
//!
//! Prints `listening on <addr>` and serves until killed or interrupted (SIGINT: a normal exit).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Upstream = Client<HttpConnector, Incoming>;
type Out = BoxBody<Bytes, hyper::Error>;

struct Proxy {
    client: Upstream,
    /// `scheme://authority` of the upstream.
    base: String,
    /// `Bearer <key>`, compared as bytes.
    expected: Vec<u8>,
}

fn status(code: StatusCode) -> Response<Out> {
    let mut res = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *res.status_mut() = code;
    res
}

async fn relay(proxy: Arc<Proxy>, req: Request<Incoming>) -> Result<Response<Out>, Infallible> {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == proxy.expected.as_slice());
    if !authorized {
        return Ok(status(StatusCode::UNAUTHORIZED));
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{}{path}", proxy.base).parse::<Uri>() else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let mut out = Request::builder().method(parts.method).uri(uri);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        out = out.header(header::CONTENT_TYPE, ct);
    }
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        out = out.header(header::CONTENT_LENGTH, len);
    }
    let Ok(out) = out.body(body) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    match proxy.client.request(out).await {
        Ok(res) => {
            let (parts, body) = res.into_parts();
            let mut res = Response::new(body.boxed());
            *res.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, len.clone());
            }
            Ok(res)
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), Some(key)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: bare_proxy LISTEN_ADDR UPSTREAM_BASE_URL KEY");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(conn);
        let expected = HeaderValue::from_str(&format!("Bearer {key}"))
            .expect("key")
            .as_bytes()
            .to_vec();
        let proxy = Arc::new(Proxy {
            client,
            base: upstream.trim_end_matches('/').to_owned(),
            expected,
        });
        let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
        println!("listening on {}", listener.local_addr().expect("addr"));
        let serve = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| relay(proxy.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        };
        // SIGINT ends the process normally (as the gateway's graceful shutdown does), so a
        // profiler around it (`scripts/bench-callgrind`) writes its whole output at exit.
        tokio::select! {
            () = serve => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
}
