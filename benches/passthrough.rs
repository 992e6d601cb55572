//! The OpenAI → OpenAI pass-through against the canonical round trip it replaces: per relayed SSE
//! chunk (byte scan and relay vs typed decode and encode), per complete reply (scan vs parse and
//! serialize), the same per event for Claude → Claude on Bedrock's `invoke-with-response-stream`
//! (a `chunk` payload relayed into the client's event-stream frame vs decoded and encoded again),
//! one request end to end through the in-process chat stack (auth → detect → translate) over an
//! in-memory core answering relayed bytes or canonical values, and the typed decode of three
//! requests, a 21-message conversation, the one-line request the stack bench sends and an agent's
//! turn with tools, tool calls and content parts (the byte scan of
//! `format::openai::client_request` vs serde's derive over the whole body).
//!
//! Before criterion runs, it counts heap allocations (a counting global allocator,
//! `stats_alloc`) per chunk and per request on both paths, prints them, and checks that the
//! pass-through allocates fewer times than the round trip: a count, not a time, so it holds on a
//! loaded machine and runs under `cargo test --benches` too.
//!
//! `cargo bench --bench passthrough`

use std::alloc::System;
use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use open_bedrock_server::body::Body;
use open_bedrock_server::config::Config;
use open_bedrock_server::error::{ErrorDialect, GatewayError};
use open_bedrock_server::eventstream::EventStreamFramer;
use open_bedrock_server::format::bedrock_claude::{ClaudeStreamDecoder, ClaudeStreamEncoder};
use open_bedrock_server::format::openai::{
    client_request, OpenAiStreamDecoder, OpenAiStreamEncoder,
};
use open_bedrock_server::format::{scan, InboundFormat};
use open_bedrock_server::model::{
    ChatCall, ChatChunk, ChatReply, ChatRequest, ChatResponse, ChunkStream, RelayedBody,
    RelayedEvent, RelayedReply, RelayedStream,
};
use open_bedrock_server::sse::SseFramer;
use open_bedrock_server::stream::relay::{ClaudeStreamRelay, OpenAiStreamRelay, RelayEncoder};
use open_bedrock_server::stream::{EventEncoder, Framer, StreamDecoder};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;

mod common;
use common::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const API_KEY: &str = "bench-key-0123456789";
const URI: &str = "/v1/chat/completions";
/// Text chunks in the streamed reply (plus role, finish and usage chunks).
const STREAM_TEXT_CHUNKS: usize = 17;

/// The upstream's SSE events for a stream of `STREAM_TEXT_CHUNKS` text deltas, one per event.
fn upstream_events() -> Vec<Bytes> {
    let mut enc = OpenAiStreamEncoder::new(true);
    let mut framer = SseFramer::new(ErrorDialect::OpenAi);
    let mut events: Vec<Bytes> = stream_chunks(&meta(), STREAM_TEXT_CHUNKS)
        .iter()
        .map(|chunk| {
            enc.encode(chunk, &mut framer);
            framer.take()
        })
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// One text delta as the upstream writes it.
fn upstream_text_event() -> Bytes {
    let mut enc = OpenAiStreamEncoder::new(true);
    let mut framer = SseFramer::new(ErrorDialect::OpenAi);
    enc.encode(&text_chunk(&meta()), &mut framer);
    framer.take()
}

/// Per chunk, relayed: scan, then written as it came.
fn relay_chunk(relay: &mut OpenAiStreamRelay, enc: &mut RelayEncoder, event: &Bytes) -> usize {
    let mut out: Vec<RelayedEvent> = Vec::with_capacity(1);
    let mut framer = SseFramer::new(ErrorDialect::OpenAi);
    relay.push(event.clone(), &mut out).unwrap();
    for e in &out {
        enc.encode(e, &mut framer);
    }
    framer.take().len()
}

/// Per chunk, the canonical round trip: typed decode, then typed encode.
fn canonical_chunk(
    dec: &mut OpenAiStreamDecoder,
    enc: &mut OpenAiStreamEncoder,
    event: &Bytes,
) -> usize {
    let mut out: Vec<ChatChunk> = Vec::with_capacity(1);
    let mut framer = SseFramer::new(ErrorDialect::OpenAi);
    dec.push(event.clone(), &mut out).unwrap();
    for c in &out {
        enc.encode(c, &mut framer);
    }
    framer.take().len()
}

/// The events a Claude stream opens with, then the text delta measured per event.
const CLAUDE_START: [&[u8]; 2] = [
    br#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-haiku-20240307","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#,
    br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
];
const CLAUDE_DELTA: &[u8] =
    br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Hello there"}}"#;

/// A Claude relay and its encoder, past the stream's opening events.
fn claude_relay() -> (ClaudeStreamRelay, RelayEncoder) {
    let (mut relay, mut enc) = (
        ClaudeStreamRelay::new(),
        RelayEncoder::new(InboundFormat::BedrockClaude, false),
    );
    for payload in CLAUDE_START {
        claude_relay_event(&mut relay, &mut enc, &Bytes::from_static(payload));
    }
    (relay, enc)
}

/// The canonical Claude decoder and Bedrock-surface encoder, past the stream's opening events.
fn claude_round_trip() -> (ClaudeStreamDecoder, ClaudeStreamEncoder) {
    let (mut dec, mut enc) = (
        ClaudeStreamDecoder::new(meta()),
        ClaudeStreamEncoder::bedrock(),
    );
    for payload in CLAUDE_START {
        claude_canonical_event(&mut dec, &mut enc, &Bytes::from_static(payload));
    }
    (dec, enc)
}

/// Per Claude event, relayed: scan, then the payload into the client's `chunk` frame.
fn claude_relay_event(
    relay: &mut ClaudeStreamRelay,
    enc: &mut RelayEncoder,
    payload: &Bytes,
) -> usize {
    let mut out: Vec<RelayedEvent> = Vec::with_capacity(1);
    let mut framer = EventStreamFramer::invoke_chunks();
    relay.push(payload.clone(), &mut out).unwrap();
    for e in &out {
        enc.encode(e, &mut framer);
    }
    framer.take().len()
}

/// Per Claude event, the canonical round trip: typed decode, typed encode, the same frame.
fn claude_canonical_event(
    dec: &mut ClaudeStreamDecoder,
    enc: &mut ClaudeStreamEncoder,
    payload: &Bytes,
) -> usize {
    let mut out: Vec<ChatChunk> = Vec::with_capacity(1);
    let mut framer = EventStreamFramer::invoke_chunks();
    StreamDecoder::push(dec, payload.clone(), &mut out).unwrap();
    for c in &out {
        enc.encode(c, &mut framer);
    }
    framer.take().len()
}

fn relay_complete(body: &Bytes) -> Bytes {
    let facts = scan::openai_completion(body).unwrap();
    assert!(facts.usage.is_some());
    body.clone()
}

fn canonical_complete(body: &Bytes) -> Bytes {
    let r: ChatResponse = serde_json::from_slice(body).unwrap();
    Bytes::from(serde_json::to_vec(&r).unwrap())
}

type Stack = tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Body>, Infallible>;

/// The chat stack over an in-memory core that answers every call with `reply()`.
fn stack<F>(reply: F) -> Stack
where
    F: Fn() -> ChatReply + Send + Sync + Clone + 'static,
{
    let mut config = Config::default();
    config.auth.api_keys = vec![API_KEY.into()];
    let gateway = open_bedrock_server::GatewayBuilder::from_config(&config).build();
    let core = tower::service_fn(move |_call: ChatCall| {
        let reply = reply.clone();
        async move { Ok::<_, GatewayError>(reply()) }
    });
    tower::util::BoxCloneService::new(gateway.ingress::<Full<Bytes>, _>(core))
}

fn relayed_stream(events: &[Bytes]) -> ChatReply {
    let mut relay = OpenAiStreamRelay::new();
    let mut out = Vec::new();
    for e in events {
        relay.push(e.clone(), &mut out).unwrap();
    }
    ChatReply::Relayed(RelayedReply::new(
        InboundFormat::OpenAi,
        OPENAI_MODEL,
        RelayedBody::Stream(RelayedStream::new(futures_util::stream::iter(
            out.into_iter().map(Ok),
        ))),
    ))
}

async fn call(svc: &Stack, body: &Bytes) -> Bytes {
    let req = Request::post(URI)
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-bench")
        .body(Full::new(body.clone()))
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap().to_bytes()
}

/// Heap allocations `f` makes (the median of a few runs, after one warm-up).
fn allocations(mut f: impl FnMut()) -> usize {
    f();
    let mut counts: Vec<usize> = (0..5)
        .map(|_| {
            let region = Region::new(GLOBAL);
            f();
            region.change().allocations
        })
        .collect();
    counts.sort_unstable();
    counts[2]
}

struct Fixtures {
    rt: tokio::runtime::Runtime,
    event: Bytes,
    completion: Bytes,
    request: Bytes,
    stream_request: Bytes,
    relayed: Stack,
    canonical: Stack,
    relayed_streamed: Stack,
    canonical_streamed: Stack,
    /// A 21-message conversation of prose (about 12 KB), as a client sends it.
    conversation: String,
    /// An agent's turn: three tools with JSON schemas, content parts, tool calls and results.
    agent: String,
}

fn fixtures() -> Fixtures {
    let completion = Bytes::from(serde_json::to_vec(&chat_response()).unwrap());
    let events = upstream_events();
    let relayed_body = completion.clone();
    let relayed = stack(move || {
        let facts = scan::openai_completion(&relayed_body).unwrap();
        ChatReply::Relayed(RelayedReply::new(
            InboundFormat::OpenAi,
            OPENAI_MODEL,
            RelayedBody::Complete {
                body: relayed_body.clone(),
                usage: facts.usage,
            },
        ))
    });
    let response = chat_response();
    let canonical = stack(move || ChatReply::Complete(response.clone()));
    let stream_events = events.clone();
    let relayed_streamed = stack(move || relayed_stream(&stream_events));
    // The same upstream events, decoded into canonical chunks (what the provider did before).
    let stream_events = events.clone();
    let canonical_streamed = stack(move || {
        let mut dec = OpenAiStreamDecoder::new();
        let mut chunks = Vec::new();
        for e in &stream_events {
            dec.push(e.clone(), &mut chunks).unwrap();
        }
        ChatReply::Stream(ChunkStream::from_chunks(
            chunks.into_iter().map(Ok).collect(),
        ))
    });
    Fixtures {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        event: upstream_text_event(),
        completion,
        request: Bytes::from(openai_body(OPENAI_MODEL, SHORT_QUESTION, false)),
        stream_request: Bytes::from(openai_body(OPENAI_MODEL, SHORT_QUESTION, true)),
        relayed,
        canonical,
        relayed_streamed,
        canonical_streamed,
        conversation: conversation(),
        agent: agent(),
    }
}

/// A system prompt and 20 turns of two paragraphs each, deterministic (the request
/// `scripts/bench-callgrind --body conversation` sends has the same shape).
fn conversation() -> String {
    const WORDS: [&str; 24] = [
        "the", "of", "and", "to", "in", "is", "you", "that", "it", "was", "for", "on", "are", "as",
        "with", "they", "at", "be", "this", "have", "from", "or", "one", "had",
    ];
    let mut state = 1u64;
    let mut paragraph = |n: usize| {
        let words: Vec<&str> = (0..n)
            .map(|_| {
                state = (state * 1_103_515_245 + 12_345) % (1 << 31);
                WORDS[state as usize % WORDS.len()]
            })
            .collect();
        words.join(" ") + "."
    };
    let mut messages = vec![serde_json::json!({"role": "system", "content": paragraph(60)})];
    for i in 0..20 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let content = paragraph(70) + "\n" + &paragraph(70);
        messages.push(serde_json::json!({"role": role, "content": content}));
    }
    serde_json::json!({"model": OPENAI_MODEL, "messages": messages}).to_string()
}

/// An agent's request (about 4 KB): a system prompt, three function tools with JSON-schema
/// parameters, a user turn of text and image parts, and three rounds of an assistant tool call
/// answered by a tool result, with the sampling members an SDK sends.
fn agent() -> String {
    let schema = |field: &str| {
        serde_json::json!({"type": "object", "properties": {
            field: {"type": "string", "description": format!("The {field} to look up, as the user wrote it.")},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            "exact": {"type": "boolean"}},
            "required": [field], "additionalProperties": false})
    };
    let tools: Vec<_> = ["city", "ticker", "query"]
        .iter()
        .map(|field| {
            serde_json::json!({"type": "function", "function": {"name": format!("lookup_{field}"),
                "description": format!("Looks up a {field} and answers its current facts as JSON."),
                "parameters": schema(field), "strict": true}})
        })
        .collect();
    let mut messages = vec![
        serde_json::json!({"role": "system", "content": "You are a careful assistant. Use the tools for facts; answer in two sentences."}),
        serde_json::json!({"role": "user", "content": [
            {"type": "text", "text": "What is the weather in Lisbon, how is ACME trading, and what does this chart show?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/chart.png", "detail": "low"}}]}),
    ];
    for (i, field) in ["city", "ticker", "query"].iter().enumerate() {
        let id = format!("call_{i}abcdefghijklmnop");
        messages.push(
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": format!("lookup_{field}"),
                "arguments": format!("{{\"{field}\":\"value {i}\",\"limit\":5}}")}}]}),
        );
        messages.push(serde_json::json!({"role": "tool", "tool_call_id": id,
            "content": format!("{{\"{field}\":\"value {i}\",\"facts\":[\"one\",\"two\",\"three\"],\"updated\":\"2026-12-05T03:00:00Z\"}}")}));
    }
    serde_json::json!({"model": OPENAI_MODEL, "messages": messages, "tools": tools,
        "tool_choice": "auto", "parallel_tool_calls": true, "temperature": 0.2, "max_completion_tokens": 512,
        "stream": false, "user": "user-1234"})
    .to_string()
}

fn decode_scanned(body: &str) -> ChatRequest {
    client_request::decode(body).expect("a body the scan reads")
}

fn decode_serde(body: &str) -> ChatRequest {
    serde_json::from_str(body).unwrap()
}

/// Allocation counts, printed and compared (the relay must allocate less than the round trip).
fn count_allocations(f: &Fixtures) {
    let (mut relay, mut renc) = (
        OpenAiStreamRelay::new(),
        RelayEncoder::new(InboundFormat::OpenAi, true),
    );
    let (mut dec, mut enc) = (OpenAiStreamDecoder::new(), OpenAiStreamEncoder::new(true));
    let rows = [
        (
            "per SSE chunk",
            allocations(|| {
                relay_chunk(&mut relay, &mut renc, &f.event);
            }),
            allocations(|| {
                canonical_chunk(&mut dec, &mut enc, &f.event);
            }),
        ),
        (
            "per Claude event on invoke-with-response-stream",
            {
                let (mut relay, mut enc) = claude_relay();
                let payload = Bytes::from_static(CLAUDE_DELTA);
                allocations(|| {
                    claude_relay_event(&mut relay, &mut enc, &payload);
                })
            },
            {
                let (mut dec, mut enc) = claude_round_trip();
                let payload = Bytes::from_static(CLAUDE_DELTA);
                allocations(|| {
                    claude_canonical_event(&mut dec, &mut enc, &payload);
                })
            },
        ),
        (
            "per complete reply body",
            allocations(|| {
                relay_complete(&f.completion);
            }),
            allocations(|| {
                canonical_complete(&f.completion);
            }),
        ),
        (
            "per request through the stack, complete",
            allocations(|| {
                f.rt.block_on(call(&f.relayed, &f.request));
            }),
            allocations(|| {
                f.rt.block_on(call(&f.canonical, &f.request));
            }),
        ),
        (
            "per request through the stack, 20-chunk stream",
            allocations(|| {
                f.rt.block_on(call(&f.relayed_streamed, &f.stream_request));
            }),
            allocations(|| {
                f.rt.block_on(call(&f.canonical_streamed, &f.stream_request));
            }),
        ),
    ];
    println!("heap allocations: pass-through vs canonical round trip");
    for (what, relayed, canonical) in rows {
        println!("  {what}: {relayed} vs {canonical}");
        assert!(
            relayed < canonical,
            "{what}: the relay allocates {relayed} times, the round trip {canonical}"
        );
    }
    // Both decodes build the same request (a `String` per text); the scan must not add any.
    for (what, body) in [("21-message", &f.conversation), ("agent", &f.agent)] {
        let scanned = allocations(|| {
            black_box(decode_scanned(body));
        });
        let serde = allocations(|| {
            black_box(decode_serde(body));
        });
        println!("heap allocations: {what} request decode, scanned vs serde: {scanned} vs {serde}");
        assert!(
            scanned <= serde,
            "{what}: the scan allocates {scanned} times, serde {serde}"
        );
    }
}

fn benches(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("passthrough_chunk");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let (mut relay, mut renc) = (
        OpenAiStreamRelay::new(),
        RelayEncoder::new(InboundFormat::OpenAi, true),
    );
    g.bench_function("openai_sse_relayed", |b| {
        b.iter(|| relay_chunk(&mut relay, &mut renc, black_box(&f.event)))
    });
    let (mut dec, mut enc) = (OpenAiStreamDecoder::new(), OpenAiStreamEncoder::new(true));
    g.bench_function("openai_sse_decoded_and_encoded", |b| {
        b.iter(|| canonical_chunk(&mut dec, &mut enc, black_box(&f.event)))
    });
    let (mut relay, mut renc) = claude_relay();
    let claude = Bytes::from_static(CLAUDE_DELTA);
    g.bench_function("claude_invoke_chunk_relayed", |b| {
        b.iter(|| claude_relay_event(&mut relay, &mut renc, black_box(&claude)))
    });
    let (mut dec, mut enc) = claude_round_trip();
    g.bench_function("claude_invoke_chunk_decoded_and_encoded", |b| {
        b.iter(|| claude_canonical_event(&mut dec, &mut enc, black_box(&claude)))
    });
    g.finish();

    let mut g = c.benchmark_group("passthrough_complete");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function("openai_body_scanned", |b| {
        b.iter(|| relay_complete(black_box(&f.completion)))
    });
    g.bench_function("openai_body_parsed_and_serialized", |b| {
        b.iter(|| canonical_complete(black_box(&f.completion)))
    });
    g.finish();

    let mut g = c.benchmark_group("passthrough_request");
    quick(&mut g);
    g.throughput(Throughput::Bytes(f.conversation.len() as u64));
    assert_eq!(
        decode_scanned(&f.conversation),
        decode_serde(&f.conversation)
    );
    g.bench_function("conversation_scanned", |b| {
        b.iter(|| decode_scanned(black_box(&f.conversation)))
    });
    g.bench_function("conversation_serde", |b| {
        b.iter(|| decode_serde(black_box(&f.conversation)))
    });
    g.finish();

    let mut g = c.benchmark_group("passthrough_request_one_line");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let line = std::str::from_utf8(&f.request).expect("UTF-8");
    assert_eq!(decode_scanned(line), decode_serde(line));
    g.bench_function("one_line_scanned", |b| {
        b.iter(|| decode_scanned(black_box(line)))
    });
    g.bench_function("one_line_serde", |b| {
        b.iter(|| decode_serde(black_box(line)))
    });
    g.finish();

    let mut g = c.benchmark_group("passthrough_request_agent");
    quick(&mut g);
    g.throughput(Throughput::Bytes(f.agent.len() as u64));
    assert_eq!(decode_scanned(&f.agent), decode_serde(&f.agent));
    g.bench_function("agent_scanned", |b| {
        b.iter(|| decode_scanned(black_box(&f.agent)))
    });
    g.bench_function("agent_serde", |b| {
        b.iter(|| decode_serde(black_box(&f.agent)))
    });
    g.finish();

    let mut g = c.benchmark_group("passthrough_stack");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    for (name, svc, body) in [
        ("complete_relayed", &f.relayed, &f.request),
        ("complete_canonical", &f.canonical, &f.request),
        (
            "stream_20_chunks_relayed",
            &f.relayed_streamed,
            &f.stream_request,
        ),
        (
            "stream_20_chunks_canonical",
            &f.canonical_streamed,
            &f.stream_request,
        ),
    ] {
        g.bench_function(name, |b| b.to_async(&f.rt).iter(|| call(svc, body)));
    }
    g.finish();
}

fn main() {
    let f = fixtures();
    count_allocations(&f);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &f);
    c.final_summary();
}
