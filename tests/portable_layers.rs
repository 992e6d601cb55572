//! The gateway's auth, rate-limit and in-flight layers on a plain axum `Router` over the app's own
//! handlers: no body-mapping layer, no gateway stack, no sockets (`oneshot` on the router).

use std::collections::HashMap;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use open_bedrock_server::auth::{ApiKeyAuthLayer, ApiKeyId};
use open_bedrock_server::error::ErrorDialect;
use open_bedrock_server::load_shed::InFlightLimitLayer;
use open_bedrock_server::rate_limit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use serde_json::Value;
use tower::ServiceExt;

fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
    let mut config = RateLimitConfig::new(NonZeroU32::new(per_minute).unwrap());
    config.burst = burst;
    RateLimiter::new(&config).unwrap()
}

async fn whoami(Extension(id): Extension<ApiKeyId>) -> String {
    format!("hello, {}", id.0)
}

fn get_with_key(path: &str, key: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    req.body(Body::empty()).unwrap()
}

async fn text(res: Response<Body>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn json(res: Response<Body>) -> Value {
    serde_json::from_str(&text(res).await).unwrap()
}

#[tokio::test]
async fn auth_and_rate_limit_layer_onto_an_axum_router_over_its_own_handlers() {
    let app = Router::new()
        .route(
            "/hello",
            get(|| async { "hello from the app's own handler" }),
        )
        .route("/whoami", get(whoami))
        .layer(RateLimitLayer::new(limiter(1, 1)))
        .layer(ApiKeyAuthLayer::new(["app-key-1", "app-key-2"]));

    let res = app
        .clone()
        .oneshot(get_with_key("/hello", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    assert_eq!(res.headers()["content-type"], "application/json");
    let e = json(res).await;
    assert_eq!(e["error"]["code"], "invalid_api_key");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Missing API key"),
        "{e}"
    );
    let res = app
        .clone()
        .oneshot(get_with_key("/hello", Some("not-a-key")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Rate 1/min with a burst of 1: two back to back per key.
    let res = app
        .clone()
        .oneshot(get_with_key("/hello", Some("app-key-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "1");
    assert_eq!(text(res).await, "hello from the app's own handler");
    let res = app
        .clone()
        .oneshot(get_with_key("/whoami", Some("app-key-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        text(res).await,
        "hello, key-1",
        "the key id reaches the handler"
    );

    let res = app
        .clone()
        .oneshot(get_with_key("/hello", Some("app-key-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "60");
    assert_eq!(res.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(res.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(res.headers().contains_key("x-ratelimit-reset-requests"));
    assert_eq!(json(res).await["error"]["code"], "rate_limit_exceeded");

    let res = app
        .oneshot(get_with_key("/whoami", Some("app-key-2")))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the other key has its own bucket"
    );
    assert_eq!(text(res).await, "hello, key-2");
}

#[tokio::test]
async fn a_validator_closure_decides_which_keys_exist_and_names_them() {
    let keys: Arc<HashMap<Vec<u8>, ApiKeyId>> = Arc::new(HashMap::from([(
        b"tenant-secret".to_vec(),
        ApiKeyId(Arc::from("tenant-42")),
    )]));
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(ApiKeyAuthLayer::with_validator(move |key: &[u8]| {
            keys.get(key).cloned()
        }));

    let res = app
        .clone()
        .oneshot(get_with_key("/whoami", Some("tenant-secret")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.extensions().get::<ApiKeyId>(),
        Some(&ApiKeyId(Arc::from("tenant-42"))),
        "the response names the key for access logs"
    );
    assert_eq!(text(res).await, "hello, tenant-42");

    let res = app
        .oneshot(get_with_key("/whoami", Some("key-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(json(res).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Incorrect API key"));
}

#[tokio::test]
async fn an_open_stream_from_an_axum_handler_holds_its_in_flight_permit_until_dropped() {
    let layer = InFlightLimitLayer::new(1);
    let in_flight = layer.in_flight();
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                // One chunk, then a stream that stays open until the client drops it.
                let chunks =
                    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("first chunk"))])
                        .chain(futures_util::stream::pending());
                Body::from_stream(chunks)
            }),
        )
        .route("/quick", get(|| async { "quick" }))
        .layer(layer);

    let res = app
        .clone()
        .oneshot(get_with_key("/stream", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.into_body();
    let frame = stream.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "first chunk");
    assert_eq!(in_flight.current(), 1, "the open stream is in flight");

    let res = app
        .clone()
        .oneshot(get_with_key("/quick", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(json(res).await["error"]["code"], "overloaded");

    drop(stream);
    assert_eq!(
        in_flight.current(),
        0,
        "dropping the stream frees its permit"
    );
    let res = app.oneshot(get_with_key("/quick", None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "quick");
    assert_eq!(in_flight.current(), 0, "a finished body frees its permit");
}

#[tokio::test]
async fn an_error_dialect_extension_switches_rejections_per_route() {
    let app = Router::new()
        .route("/v1/chat/completions", post(|| async { "openai" }))
        .route("/v1/messages", post(|| async { "anthropic" }))
        .layer(RateLimitLayer::new(limiter(1, 0)))
        .layer(ApiKeyAuthLayer::new(["k"]))
        // What a router does for a route whose clients speak Anthropic.
        .layer(tower::util::MapRequestLayer::new(
            |mut req: Request<Body>| {
                if req.uri().path() == "/v1/messages" {
                    req.extensions_mut().insert(ErrorDialect::Anthropic);
                }
                req
            },
        ));
    let post = |path: &str, key: Option<&str>| {
        let mut req = Request::post(path);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        req.body(Body::empty()).unwrap()
    };

    let res = app
        .clone()
        .oneshot(post("/v1/messages", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers().get("www-authenticate").is_none(),
        "OpenAI only"
    );
    let e = json(res).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "authentication_error");

    let res = app
        .clone()
        .oneshot(post("/v1/chat/completions", None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["error"]["code"], "invalid_api_key");

    let res = app
        .clone()
        .oneshot(post("/v1/messages", Some("k")))
        .await
        .unwrap();
    assert_eq!(text(res).await, "anthropic");
    let res = app.oneshot(post("/v1/messages", Some("k"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after-ms").is_none(), "OpenAI only");
    let e = json(res).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn each_layer_calls_its_inner_service_only_once_it_is_ready() {
    use tower::Layer;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;
    async fn check<S>(svc: S, mut handle: Handle)
    where
        S: tower::Service<Request<Body>>,
        S::Error: std::fmt::Debug,
    {
        let mut svc = mock::Spawn::new(svc);
        handle.allow(0);
        assert!(svc.poll_ready().is_pending(), "readiness is the inner's");
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(get_with_key("/", Some("k")));
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(Body::from("inner")));
        assert!(fut.await.is_ok());
    }

    let (inner, handle) = mock::pair();
    check(InFlightLimitLayer::new(1).layer(inner), handle).await;
    let (inner, handle) = mock::pair();
    check(RateLimitLayer::new(limiter(10, 0)).layer(inner), handle).await;
    let (inner, handle) = mock::pair();
    check(ApiKeyAuthLayer::new(["k"]).layer(inner), handle).await;
}

/// The app's own provider: answers every call with the model it was asked for.
fn own_provider() -> impl tower::Service<
    open_bedrock_server::model::ChatCall,
    Response = open_bedrock_server::model::ChatReply,
    Error = open_bedrock_server::error::GatewayError,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    use open_bedrock_server::model::{
        ChatCall, ChatChunk, ChatReply, ChatResponse, ChunkMeta, ChunkStream, Delta,
        ResponseMessage, Usage,
    };
    tower::service_fn(|call: ChatCall| async move {
        let meta = ChunkMeta::new(call.request.model.clone());
        let text = format!("answered by the app for {}", call.request.model);
        Ok(if call.request.is_stream() {
            ChatReply::Stream(ChunkStream::from_chunks(vec![
                Ok(ChatChunk::delta(&meta, Delta::text(text), None)),
                Ok(ChatChunk::delta(&meta, Delta::default(), Some("stop"))),
                Ok(ChatChunk::usage(&meta, Usage::from_parts(3, 4, 0, 0))),
            ]))
        } else {
            ChatReply::Complete(ChatResponse::new(
                &meta,
                ResponseMessage::assistant(Some(text), None),
                "stop",
                Some(Usage::from_parts(3, 4, 0, 0)),
            ))
        })
    })
}

#[tokio::test]
async fn detect_and_translate_alone_in_front_of_the_apps_own_provider() {
    use open_bedrock_server::detect::DetectLayer;
    use open_bedrock_server::translate::TranslateLayer;
    let chat = tower::ServiceBuilder::new()
        .layer(DetectLayer::chat(1 << 20))
        .layer(TranslateLayer::default())
        .service(own_provider());
    let app = Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route_service("/v1/chat/completions", chat);
    let post_json = |uri: &str, body: Value| {
        Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };

    // OpenAI in, OpenAI out.
    let res = app
        .clone()
        .oneshot(post_json(
            "/v1/chat/completions",
            serde_json::json!({"model": "m1", "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v = json(res).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "answered by the app for m1"
    );

    // A Claude body, answered as an Anthropic message.
    let res = app
        .clone()
        .oneshot(post_json(
            "/v1/chat/completions?target_format=bedrock_claude",
            serde_json::json!({"anthropic_version": "bedrock-2023-05-31", "model": "m2",
                "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap();
    let v = json(res).await;
    assert_eq!(
        (v["type"].as_str(), v["content"][0]["text"].as_str()),
        (Some("message"), Some("answered by the app for m2"))
    );

    // Streamed, as OpenAI SSE.
    let res = app
        .clone()
        .oneshot(post_json(
            "/v1/chat/completions",
            serde_json::json!({"model": "m3", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let body = text(res).await;
    assert!(body.contains("answered by the app for m3"), "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");

    // Bad input is the translation stage's clear 400; the app's other routes are untouched.
    let res = app
        .clone()
        .oneshot(post_json(
            "/v1/chat/completions",
            serde_json::json!({"prompt": 1}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app.oneshot(get_with_key("/ping", None)).await.unwrap();
    assert_eq!(text(res).await, "pong");
}

#[tokio::test]
async fn the_gateways_providers_under_the_apps_own_layers() {
    use open_bedrock_server::provider::MockProvider;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The gateway's mock provider, wrapped in the app's own concurrency limit and call counter.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let provider = tower::ServiceBuilder::new()
        .concurrency_limit(1)
        .map_request(move |call: open_bedrock_server::model::ChatCall| {
            seen.fetch_add(1, Ordering::SeqCst);
            call
        })
        .service(MockProvider::new());
    // Used directly …
    let reply = provider
        .clone()
        .oneshot(open_bedrock_server::model::ChatCall::new(
            serde_json::from_value(serde_json::json!({"model": "mock/echo",
                "messages": [{"role": "user", "content": "direct"}]}))
            .unwrap(),
        ))
        .await
        .unwrap();
    match reply {
        open_bedrock_server::model::ChatReply::Complete(r) => assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("You said: direct")
        ),
        other => panic!("{other:?}"),
    }
    // … and under the gateway's own stack, in place of its mock.
    let gateway = open_bedrock_server::Gateway::builder()
        .api_keys(["k"])
        .provider("mock", provider)
        .build();
    let app = Router::new().nest_service("/llm", gateway.service::<Body>());
    let res = app
        .oneshot(
            Request::post("/llm/v1/chat/completions")
                .header("authorization", "Bearer k")
                .body(Body::from(
                    serde_json::json!({"model": "mock/echo",
                        "messages": [{"role": "user", "content": "via the gateway"}]})
                    .to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v = json(res).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "You said: via the gateway"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(gateway
        .providers()
        .iter()
        .any(|p| p.name == "mock" && p.live));
}

#[tokio::test]
async fn the_builder_takes_extra_layers_around_the_core_and_the_ingress() {
    use open_bedrock_server::provider::MockProvider;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let gateway = open_bedrock_server::Gateway::builder()
        .api_keys(["k"])
        .mock(MockProvider::new())
        // Around the typed core: sees every call (after detection and translation).
        .core_layer(tower::util::MapRequestLayer::new(
            move |call: open_bedrock_server::model::ChatCall| {
                seen.fetch_add(1, Ordering::SeqCst);
                call
            },
        ))
        // Around the HTTP side of the pipeline: can answer or decorate every chat request.
        .ingress_layer(tower::util::MapResponseLayer::new(
            |mut res: http::Response<open_bedrock_server::body::Body>| {
                res.headers_mut()
                    .insert("x-embedder", http::HeaderValue::from_static("yes"));
                res
            },
        ))
        .build();
    let app = gateway.service::<Body>();
    let chat = |body: Value| {
        Request::post("/v1/chat/completions")
            .header("authorization", "Bearer k")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let res = app
        .clone()
        .oneshot(chat(serde_json::json!({"model": "mock/echo",
            "messages": [{"role": "user", "content": "hi"}]})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-embedder"], "yes");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A request refused by detection never reaches the core, but the ingress layer still sees it.
    let res = app
        .clone()
        .oneshot(chat(serde_json::json!({"prompt": "x"})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["x-embedder"], "yes");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Routes outside the pipeline are not touched.
    let res = app.oneshot(get_with_key("/health", None)).await.unwrap();
    assert!(res.headers().get("x-embedder").is_none());
}

#[tokio::test]
async fn a_panic_below_is_a_500_and_the_gateway_serves_on() {
    use open_bedrock_server::provider::MockProvider;
    let gateway = open_bedrock_server::Gateway::builder()
        .api_keys(["k"])
        .mock(MockProvider::new())
        // A core layer that panics for one model: inside the call's future, below every stage.
        .core_layer(tower::util::MapRequestLayer::new(
            |call: open_bedrock_server::model::ChatCall| {
                assert!(call.request.model != "mock/boom", "a bug in a core layer");
                call
            },
        ))
        .build();
    let app = gateway.service::<Body>();
    let chat = |model: &str| {
        Request::post("/v1/chat/completions")
            .header("authorization", "Bearer k")
            .body(Body::from(
                serde_json::json!({"model": model,
                    "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
            ))
            .unwrap()
    };
    let res = app.clone().oneshot(chat("mock/boom")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["type"], "server_error", "{v}");
    // The next request is served as usual.
    let res = app.oneshot(chat("mock/echo")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_ingress_that_is_not_ready_is_waited_on_and_the_same_service_serves_on() {
    use tower::Service;
    // The embedder's ingress layer lets one request in at a time.
    let (gateway, gate) = gated(tower::limit::ConcurrencyLimitLayer::new(1));
    // One service called again and again, as the server calls its connection's clone.
    let mut app = gateway.service::<Body>();
    let first = tokio::spawn(app.ready().await.unwrap().call(echo()));
    // The ingress is busy with the first: the second waits for it instead of failing or
    // passing the limit.
    let second = tokio::spawn(app.ready().await.unwrap().call(echo()));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!first.is_finished() && !second.is_finished());
    gate.add_permits(1);
    // Bounded: a second request left waiting for capacity no one hands over fails, not hangs.
    let wait = std::time::Duration::from_secs(10);
    let first = tokio::time::timeout(wait, first)
        .await
        .expect("the first is served");
    assert_eq!(first.unwrap().unwrap().status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !second.is_finished(),
        "the second reached the core only now"
    );
    gate.add_permits(2);
    let second = tokio::time::timeout(wait, second)
        .await
        .expect("the second is served");
    assert_eq!(second.unwrap().unwrap().status(), StatusCode::OK);
    // The same service serves on, its ingress ready again.
    let third = tokio::time::timeout(wait, app.ready().await.unwrap().call(echo()))
        .await
        .expect("the third is served")
        .unwrap();
    assert_eq!(third.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_shed_request_leaves_no_claim_on_the_capacity_it_queued_for() {
    use tower::Service;
    // The usual pairing: one request at a time, the rest shed at once (503), not queued.
    let (gateway, gate) = gated(
        tower::ServiceBuilder::new()
            .layer_fn(Or503)
            .load_shed()
            .concurrency_limit(1)
            .into_inner(),
    );
    let wait = std::time::Duration::from_secs(10);
    // Two clones of one service, as two connections hold them (one limit between them).
    let mut one = gateway.service::<Body>();
    let mut two = one.clone();
    let first = tokio::spawn(one.ready().await.unwrap().call(echo()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The limit is taken: shed on the same service.
    let shed = one.ready().await.unwrap().call(echo()).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    gate.add_permits(1);
    let first = tokio::time::timeout(wait, first)
        .await
        .expect("served")
        .unwrap();
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    // The freed capacity is there for the next request on either service: the shed request did
    // not leave a waiter behind that took it.
    gate.add_permits(2);
    for app in [&mut two, &mut one] {
        let res = tokio::time::timeout(wait, app.ready().await.unwrap().call(echo()))
            .await
            .expect("served")
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

/// A shed request (tower's `Overloaded`) as a 503.
#[derive(Clone)]
struct Or503<S>(S);

impl<S> tower::Service<Request<open_bedrock_server::body::Body>> for Or503<S>
where
    S: tower::Service<
        Request<open_bedrock_server::body::Body>,
        Response = Response<open_bedrock_server::body::Body>,
        Error = tower::BoxError,
    >,
    S::Future: Send + 'static,
{
    type Response = Response<open_bedrock_server::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        // `LoadShed` is always ready (it sheds in the call instead).
        self.0.poll_ready(cx).map(|_| Ok(()))
    }

    fn call(&mut self, req: Request<open_bedrock_server::body::Body>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            Ok(fut.await.unwrap_or_else(|_| {
                let mut res = Response::new(open_bedrock_server::body::Body::empty());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                res
            }))
        })
    }
}

/// A gateway whose core waits at a gate (each pass used up) under the ingress layer `layer`, and
/// the gate.
fn gated<L>(layer: L) -> (open_bedrock_server::Gateway, Arc<tokio::sync::Semaphore>)
where
    L: tower::Layer<open_bedrock_server::gateway::HttpService> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<
            Request<open_bedrock_server::body::Body>,
            Response = Response<open_bedrock_server::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<Request<open_bedrock_server::body::Body>>>::Future:
        Send + 'static,
{
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = gate.clone();
    let gateway = open_bedrock_server::Gateway::builder()
        .api_keys(["k"])
        .mock(open_bedrock_server::provider::MockProvider::new())
        .core_layer(tower::util::MapFutureLayer::new(move |fut| {
            let held = held.clone();
            async move {
                if let Ok(pass) = held.acquire().await {
                    pass.forget();
                }
                fut.await
            }
        }))
        .ingress_layer(layer)
        .build();
    (gateway, gate)
}

/// A chat request for the mock's echo model, under key `k`.
fn echo() -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("authorization", "Bearer k")
        .body(Body::from(
            r#"{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap()
}
