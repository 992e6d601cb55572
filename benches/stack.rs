//! The chat HTTP stack in-process (auth → detect → translate → core), no sockets, against an
//! in-memory typed core that answers at once. One request end to end per iteration, body collected.
//! The `core_*` cases put the gateway's own core (retry → dispatch → per-provider timeouts) in
//! front of the same in-memory answer: one plain route, and a model group of three deployments
//! (least outstanding requests), so the cost of dispatch and of choosing a deployment shows.
//!
//! `cargo bench --bench stack`

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use open_bedrock_server::body::Body;
use open_bedrock_server::config::Config;
use open_bedrock_server::error::GatewayError;
use open_bedrock_server::model::{ChatCall, ChatChunk, ChatReply, ChunkStream};
use open_bedrock_server::Gateway;
use tower::{Service, ServiceExt};

mod common;
use common::*;

const API_KEY: &str = "bench-key-0123456789";
/// Text chunks in the streamed reply (plus role, finish and usage chunks).
const STREAM_TEXT_CHUNKS: usize = 17;

fn gateway() -> Gateway {
    let mut config = Config::default();
    config.auth.api_keys = vec![API_KEY.into()];
    open_bedrock_server::GatewayBuilder::from_config(&config).build()
}

fn request(uri: &str, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-bench")
        .body(Full::new(body.clone()))
        .unwrap()
}

async fn call<S>(mut svc: S, req: Request<Full<Bytes>>) -> (StatusCode, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Body>, Error = Infallible>,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// One stack (its core type erased only here, so the measured service is not boxed).
trait CloneStack {
    fn bench(
        &self,
        rt: &tokio::runtime::Runtime,
        g: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        uri: &str,
        body: &Bytes,
        expect: &str,
    );
}

impl<S> CloneStack for S
where
    S: Service<Request<Full<Bytes>>, Response = Response<Body>, Error = Infallible> + Clone,
{
    fn bench(
        &self,
        rt: &tokio::runtime::Runtime,
        g: &mut BenchmarkGroup<'_, WallTime>,
        name: &str,
        uri: &str,
        body: &Bytes,
        expect: &str,
    ) {
        // Never benchmark an error path: the case must answer 200 with the expected body.
        let (status, out) = rt.block_on(call(self.clone(), request(uri, body)));
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status, StatusCode::OK, "{name}: {text}");
        assert!(text.contains(expect), "{name}: {text}");
        g.bench_function(name, |b| {
            b.to_async(rt)
                .iter(|| call(self.clone(), request(uri, body)))
        });
    }
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gateway = gateway();

    let response = Arc::new(chat_response());
    let complete_core = tower::service_fn(move |_call: ChatCall| {
        let response = Arc::clone(&response);
        async move { Ok::<_, GatewayError>(ChatReply::Complete((*response).clone())) }
    });
    let chunks: Arc<Vec<ChatChunk>> = Arc::new(stream_chunks(&meta(), STREAM_TEXT_CHUNKS));
    let stream_chunks_core = Arc::clone(&chunks);
    let stream_core = tower::service_fn(move |_call: ChatCall| {
        let items = stream_chunks_core.iter().cloned().map(Ok).collect();
        async move { Ok::<_, GatewayError>(ChatReply::Stream(ChunkStream::from_chunks(items))) }
    });

    // The gateway's own core over the same answer, as provider `fast` (and two more for a group).
    let routed = {
        use open_bedrock_server::config::BalanceStrategy;
        use open_bedrock_server::provider::group::{Deployment, ModelGroup};
        use open_bedrock_server::route::{ProviderKind, Route, RouteOverride, Router};
        let mut config = Config::default();
        config.auth.api_keys = vec![API_KEY.into()];
        let router = Router::new(
            Default::default(),
            vec![RouteOverride::new("gpt-", ProviderKind::OpenAi).with_provider("fast")],
            Default::default(),
        );
        let mut group =
            ModelGroup::builder("bench-group").strategy(BalanceStrategy::LeastOutstanding);
        for name in ["fast", "fast-2", "fast-3"] {
            group = group.deployment(Deployment::new(
                name,
                Route::new(name, ProviderKind::OpenAi, OPENAI_MODEL),
            ));
        }
        let g = open_bedrock_server::GatewayBuilder::from_config(&config)
            .router(router)
            .provider("fast", complete_core.clone())
            .provider("fast-2", complete_core.clone())
            .provider("fast-3", complete_core.clone())
            .model_group(group.build())
            .build();
        g.ingress::<Full<Bytes>, _>(g.core())
    };
    let complete = gateway.ingress::<Full<Bytes>, _>(complete_core);
    let streamed = gateway.ingress::<Full<Bytes>, _>(stream_core);

    let openai = Bytes::from(openai_body(OPENAI_MODEL, SHORT_QUESTION, false));
    let openai_stream = Bytes::from(openai_body(OPENAI_MODEL, SHORT_QUESTION, true));
    let claude = Bytes::from(claude_client_body(SHORT_QUESTION, false));
    let claude_stream = Bytes::from(claude_client_body(SHORT_QUESTION, true));
    const OPENAI_URI: &str = "/v1/chat/completions";
    const CLAUDE_URI: &str = "/v1/chat/completions?target_format=bedrock_claude";

    let mut g = c.benchmark_group("stack");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut case = |name: &str, svc: &dyn CloneStack, uri: &str, body: &Bytes, expect: &str| {
        svc.bench(&rt, &mut g, name, uri, body, expect)
    };
    case(
        "openai_in_openai_out",
        &complete,
        OPENAI_URI,
        &openai,
        "\"chat.completion\"",
    );
    case(
        "claude_in_claude_out",
        &complete,
        CLAUDE_URI,
        &claude,
        "\"type\":\"message\"",
    );
    case(
        "core_route_openai_in_openai_out",
        &routed,
        OPENAI_URI,
        &openai,
        "\"chat.completion\"",
    );
    let group_body = Bytes::from(openai_body("bench-group", SHORT_QUESTION, false));
    case(
        "core_group_3_deployments_openai_in_openai_out",
        &routed,
        OPENAI_URI,
        &group_body,
        "\"chat.completion\"",
    );
    case(
        "openai_stream_20_chunks",
        &streamed,
        OPENAI_URI,
        &openai_stream,
        "data: [DONE]",
    );
    case(
        "claude_stream_20_chunks",
        &streamed,
        CLAUDE_URI,
        &claude_stream,
        "message_stop",
    );
    g.finish();

    // What the fake core itself costs per streamed request (subtract from the stream cases).
    let mut g = c.benchmark_group("stack_baseline");
    quick(&mut g);
    g.bench_function("fake_core_clone_20_chunks", |b| {
        b.iter(|| chunks.iter().cloned().collect::<Vec<_>>())
    });
    g.finish();
}

criterion_group!(benches, stack);
criterion_main!(benches);
