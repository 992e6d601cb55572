//! Serving on threads of their own (`server.threads`, `ServerLimits::threads`): connections stay
//! on one serving thread, the connection limit holds across the threads, a shutdown drains every
//! thread, and dropping the server ends them. Through the real server, bounded in time.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::fake::{self, Fake};
use common::{config_for, post, start_gateway};
use http::{Request, Response};
use hyper::body::Incoming;
use open_bedrock_server::body::Body;
use open_bedrock_server::server::{self, ServerLimits};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Answers with the name of the thread that ran it; `/slow` after 300 ms.
fn thread_namer() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|req: Request<Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        Ok::<_, Infallible>(Response::new(Body::from(name)))
    })
}

/// A server of `threads` threads around [`thread_namer`], and the token that stops it.
async fn start(
    limits: ServerLimits,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = server::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::serve_with(
        listener,
        thread_namer(),
        stop.clone().cancelled_owned(),
        Duration::from_secs(5),
        CancellationToken::new(),
        limits,
    ));
    (addr, stop, task)
}

/// Stops the server and waits for it to end.
async fn stopped(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server ended")
        .unwrap();
}

/// Sends `GET path` on `conn` (kept alive) and reads the reply's body.
async fn get(conn: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("a reply in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content length")
                .parse()
                .unwrap();
            if body.len() >= len {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                return body[..len].to_owned();
            }
        }
    }
}

#[tokio::test]
async fn every_request_of_a_connection_runs_on_one_serving_thread() {
    let (addr, stop, task) = start(ServerLimits::default().with_threads(2)).await;
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    for conn in &mut conns {
        let first = get(conn, "/").await;
        assert!(
            first.starts_with("serve-"),
            "served on a serving thread, not the caller's runtime: {first}"
        );
        for _ in 0..4 {
            assert_eq!(
                get(conn, "/").await,
                first,
                "the connection stayed on its thread"
            );
        }
    }
    stopped(stop, task).await;
}

#[tokio::test]
async fn the_connection_limit_holds_across_the_threads() {
    let limits = ServerLimits::new(
        1,
        Duration::from_secs(30),
        Duration::from_secs(30),
        Duration::from_secs(20),
    )
    .with_threads(2);
    let (addr, stop, task) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut first, "/").await.starts_with("serve-"));
    // The one slot is taken: a second connection waits in the backlog, unanswered, even though the
    // other thread is idle.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), second.read(&mut buf))
            .await
            .is_err(),
        "a second connection was served past the limit of one"
    );
    // The first goes away: its slot is the second's, and the request it sent is answered.
    drop(first);
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("serve-") {
        let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf))
            .await
            .expect("served once the slot was free")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    stopped(stop, task).await;
}

#[tokio::test]
async fn a_shutdown_lets_every_thread_finish_its_requests_then_closes_the_port() {
    let (addr, stop, task) = start(ServerLimits::default().with_threads(2)).await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        slow.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    for mut conn in slow {
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("serve-"), "{text}");
    }
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server ended after its drain")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed once every thread has ended"
    );
}

#[tokio::test]
async fn dropping_the_server_ends_its_threads() {
    let (addr, _stop, task) = start(ServerLimits::default().with_threads(2)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut conn, "/").await.starts_with("serve-"));
    task.abort();
    let _ = task.await;
    // The threads drop their connections and their copies of the listener.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the open connection was closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port stayed open after the server was dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_gateway_serves_chat_and_streams_on_threads_of_its_own() {
    let upstream = Fake::start(fake::smart()).await;
    let mut config = config_for(&upstream.url());
    config.server.threads = 2;
    let gw = start_gateway(config, None).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let body = json!({"model":"gpt-4o","messages":[{"role":"user","content":format!("hi {i} {j}")}]});
                let res = common::send_raw(
                    http::Method::POST,
                    &url,
                    Some(common::KEY),
                    Some(Bytes::from(body.to_string())),
                    &[],
                )
                .await;
                assert_eq!(res.status, 200, "{}", res.text());
                assert_eq!(res.json()["object"], "chat.completion");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        upstream.count(),
        20,
        "every request reached the upstream once"
    );
    let res = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.sse_data().last().map(String::as_str), Some("[DONE]"));
    let done = gw.shutdown();
    tokio::time::timeout(Duration::from_secs(15), done)
        .await
        .expect("the gateway's threads drained and ended")
        .unwrap();
}
