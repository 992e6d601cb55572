//! Serving on threads of their own (`server.threads`, `ServerLimits::threads`): connections stay
//! on one serving thread, the connection limit holds across the threads, a shutdown drains every
//! thread, and dropping the server ends them. Through the real server, bounded in time.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::fake::{self, Fake};
use common::{config_for, post, read_response, start_gateway};
use http::{Request, Response};
use hyper::body::Incoming;
use open_bedrock_server::body::Body;
use open_bedrock_server::server::{self, ServerLimits};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Answers with the name of the thread that ran it, counting arrivals in `arrived`: `/slow` after
/// 300 ms, `/block` after blocking its thread until a second request has arrived.
fn thread_namer(
    arrived: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(move |req: Request<Incoming>| {
        arrived.fetch_add(1, Ordering::SeqCst);
        let arrived = arrived.clone();
        async move {
            match req.uri().path() {
                "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                "/block" => block_until(&arrived, 2),
                _ => {}
            }
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            Ok::<_, Infallible>(Response::new(Body::from(name)))
        }
    })
}

/// A server of `threads` threads around [`thread_namer`], the count of requests that reached it,
/// and the token that stops it.
async fn start(
    limits: ServerLimits,
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let (addr, stop, task) = start_with(thread_namer(arrived.clone()), limits).await;
    (addr, arrived, stop, task)
}

/// A server around `service`, and the token that stops it.
async fn start_with<S>(
    service: S,
    limits: ServerLimits,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>)
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = server::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server::serve_with(
        listener,
        service,
        stop.clone().cancelled_owned(),
        Duration::from_secs(5),
        CancellationToken::new(),
        limits,
    ));
    (addr, stop, task)
}

/// Blocks the thread until `n` requests have arrived (at most 10 s): while it blocks, this thread
/// accepts nothing.
fn block_until(arrived: &AtomicUsize, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `n` requests have reached the service.
async fn arrivals(arrived: &AtomicUsize, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while arrived.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} requests did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops the server and waits for it to end.
async fn stopped(stop: CancellationToken, task: tokio::task::JoinHandle<()>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server ended")
        .unwrap();
}

/// Sends `GET path` on `conn` (kept alive).
async fn send(conn: &mut TcpStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
}

/// A new connection to `addr` that has sent `GET path`.
async fn sent(addr: SocketAddr, path: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    send(&mut conn, path).await;
    conn
}

/// Sends `GET path` on `conn` (kept alive) and reads the reply's body.
async fn get(conn: &mut TcpStream, path: &str) -> String {
    send(conn, path).await;
    get_reply(conn).await
}

/// Reads a 200 reply's body from `conn`.
async fn get_reply(conn: &mut TcpStream) -> String {
    let reply = read_response(conn).await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[tokio::test]
async fn the_threads_serve_side_by_side_off_the_callers_runtime() {
    let (addr, arrived, stop, task) = start(ServerLimits::default().with_threads(2)).await;
    // The first request blocks its thread until the second arrives: the second connection can only
    // be taken by the other thread.
    let mut blocked = sent(addr, "/block").await;
    arrivals(&arrived, 1).await;
    let mut other = TcpStream::connect(addr).await.unwrap();
    let free = get(&mut other, "/").await;
    let busy = get_reply(&mut blocked).await;
    assert!(
        free.starts_with("serve-") && busy.starts_with("serve-"),
        "{free}, {busy}"
    );
    assert_ne!(free, busy, "both threads served");
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
    let (addr, _arrived, stop, task) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut first, "/").await.starts_with("serve-"));
    // The one slot is taken: a second connection waits in the backlog, unanswered, even though the
    // other thread is idle.
    let mut second = sent(addr, "/").await;
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(400), second.read(&mut buf))
            .await
            .is_err(),
        "a second connection was served past the limit of one"
    );
    // The first goes away: its slot is the second's, and the request it sent is answered.
    drop(first);
    let served = get_reply(&mut second).await;
    assert!(served.starts_with("serve-"), "{served}");
    stopped(stop, task).await;
}

#[tokio::test]
async fn a_shutdown_lets_every_thread_finish_its_requests_then_closes_the_port() {
    let (addr, arrived, stop, task) = start(ServerLimits::default().with_threads(2)).await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(sent(addr, "/slow").await);
    }
    arrivals(&arrived, 4).await;
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
    let (addr, _arrived, _stop, task) = start(ServerLimits::default().with_threads(2)).await;
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

#[tokio::test]
async fn a_thread_that_drained_first_keeps_running_what_the_others_still_use() {
    // A shared client's background task (an SDK connection, Redis's driver) runs on the thread
    // that first used it; here a driver answering the others' requests.
    type Ask = tokio::sync::oneshot::Sender<String>;
    let driver: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Ask>>> = Arc::default();
    let arrived = Arc::new(AtomicUsize::new(0));
    let service = tower::service_fn({
        let arrived = arrived.clone();
        move |req: Request<Incoming>| {
            let (driver, arrived) = (driver.clone(), arrived.clone());
            async move {
                let answer = if req.uri().path() == "/spawn" {
                    let (asks, mut asked) = tokio::sync::mpsc::unbounded_channel::<Ask>();
                    tokio::spawn(async move {
                        while let Some(reply) = asked.recv().await {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            let _ = reply.send("answered".to_owned());
                        }
                    });
                    let _ = driver.set(asks);
                    arrived.fetch_add(1, Ordering::SeqCst);
                    // This thread accepts nothing until the next request has arrived.
                    block_until(&arrived, 2);
                    "spawned".to_owned()
                } else {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    driver.get().expect("spawned first").send(reply).unwrap();
                    answer
                        .await
                        .unwrap_or_else(|_| "the driver is gone".to_owned())
                };
                Ok::<_, Infallible>(Response::new(Body::from(answer)))
            }
        }
    });
    let (addr, stop, task) = start_with(service, ServerLimits::default().with_threads(2)).await;
    let mut first = sent(addr, "/spawn").await;
    arrivals(&arrived, 1).await;
    // Taken by the other thread, its request waits on the driver.
    let mut second = sent(addr, "/ask").await;
    arrivals(&arrived, 2).await;
    assert_eq!(get_reply(&mut first).await, "spawned");
    drop(first);
    // The driver's thread has nothing left to drain; the other still waits on the driver.
    stop.cancel();
    assert_eq!(get_reply(&mut second).await, "answered");
    stopped(stop, task).await;
}
