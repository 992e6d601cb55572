//! Per-chunk stream translation (time per chunk) and SSE decoding throughput.
//!
//! Every per-chunk bench runs its state machine into steady state first (role chunk, block start
//! and `message_start` already sent), then measures one text delta per iteration into a reused
//! output buffer, so the numbers are translation cost, not buffer growth.
//!
//! `cargo bench --bench streams`

use std::hint::black_box;

use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockDeltaEvent, ConversationRole, ConverseStreamOutput,
    MessageStartEvent,
};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use open_bedrock_server::error::ErrorDialect;
use open_bedrock_server::eventstream::EventStreamFramer;
use open_bedrock_server::format::bedrock_claude::{ClaudeStreamDecoder, ClaudeStreamEncoder};
use open_bedrock_server::format::bedrock_titan::{TitanStreamDecoder, TitanStreamEncoder};
use open_bedrock_server::format::converse::{ConverseStreamDecoder, ConverseStreamEncoder};
use open_bedrock_server::format::openai::OpenAiStreamEncoder;
use open_bedrock_server::model::ChatChunk;
use open_bedrock_server::sse::{SseDecoder, SseFramer};
use open_bedrock_server::stream::{EventEncoder, Framer};

mod common;
use common::*;

const CLAUDE_MESSAGE_START: &[u8] = br#"{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":48,"output_tokens":1}}}"#;
const CLAUDE_BLOCK_START: &[u8] =
    br#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
const CLAUDE_TEXT_DELTA: &[u8] = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" population of about"}}"#;
const TITAN_TEXT_CHUNK: &[u8] = br#"{"outputText":" population of about","index":0,"totalOutputTextTokenCount":7,"completionReason":null,"inputTextTokenCount":null}"#;

fn converse_text_delta() -> ConverseStreamOutput {
    ConverseStreamOutput::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(0)
            .delta(ContentBlockDelta::Text(PIECE.into()))
            .build()
            .unwrap(),
    )
}

fn converse_message_start() -> ConverseStreamOutput {
    ConverseStreamOutput::MessageStart(
        MessageStartEvent::builder()
            .role(ConversationRole::Assistant)
            .build()
            .unwrap(),
    )
}

/// Upstream events → canonical chunks.
fn decoders(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_decode");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut out: Vec<ChatChunk> = Vec::with_capacity(8);

    g.bench_function("claude_event_to_canonical", |b| {
        let mut dec = ClaudeStreamDecoder::new(meta());
        dec.push(CLAUDE_MESSAGE_START, &mut out).unwrap();
        dec.push(CLAUDE_BLOCK_START, &mut out).unwrap();
        b.iter(|| {
            out.clear();
            dec.push(black_box(CLAUDE_TEXT_DELTA), &mut out).unwrap();
            assert_eq!(out.len(), 1);
        })
    });

    let start = converse_message_start();
    let delta = converse_text_delta();
    g.bench_function("converse_event_to_canonical", |b| {
        let mut dec = ConverseStreamDecoder::new(meta());
        dec.push(&start, &mut out).unwrap();
        b.iter(|| {
            out.clear();
            dec.push(black_box(&delta), &mut out).unwrap();
            assert_eq!(out.len(), 1);
        })
    });

    g.bench_function("titan_chunk_to_canonical", |b| {
        let mut dec = TitanStreamDecoder::new(meta());
        dec.push(TITAN_TEXT_CHUNK, &mut out).unwrap();
        b.iter(|| {
            out.clear();
            dec.push(black_box(TITAN_TEXT_CHUNK), &mut out).unwrap();
            assert_eq!(out.len(), 1);
        })
    });
    g.finish();
}

/// Runs `enc` into steady state (past its opening events) and measures one text chunk, typed
/// events and framing included.
fn bench_encoder<E: EventEncoder, F: Framer>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut enc: E,
    mut out: F,
) {
    let meta = meta();
    let chunks = stream_chunks(&meta, 1);
    let chunk = text_chunk(&meta);
    enc.encode(&chunks[0], &mut out); // role
    enc.encode(&chunk, &mut out); // opens the text block where the format has blocks
    out.take();
    g.bench_function(name, |b| {
        b.iter(|| {
            enc.encode(black_box(&chunk), &mut out);
            assert!(!out.take().is_empty());
        })
    });
}

/// Canonical chunks → client stream bytes.
fn encoders(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_encode");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let sse = || SseFramer::new(ErrorDialect::OpenAi);
    bench_encoder(
        &mut g,
        "canonical_to_openai_sse",
        OpenAiStreamEncoder::new(true),
        sse(),
    );
    bench_encoder(
        &mut g,
        "canonical_to_claude_sse",
        ClaudeStreamEncoder::new(),
        SseFramer::new(ErrorDialect::Anthropic),
    );
    bench_encoder(
        &mut g,
        "canonical_to_titan_chunk",
        TitanStreamEncoder::new(),
        sse(),
    );
    bench_encoder(
        &mut g,
        "canonical_to_claude_invoke_frame",
        ClaudeStreamEncoder::bedrock(),
        EventStreamFramer::invoke_chunks(),
    );
    bench_encoder(
        &mut g,
        "canonical_to_converse_frame",
        ConverseStreamEncoder::new(),
        EventStreamFramer::new(),
    );
    g.finish();
}

/// A whole translated chunk: upstream event → canonical → client bytes (the 2 µs target).
fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_translate");
    quick(&mut g);
    g.throughput(Throughput::Elements(1));
    let mut chunks: Vec<ChatChunk> = Vec::with_capacity(8);
    let mut out = SseFramer::new(ErrorDialect::OpenAi);

    g.bench_function("claude_event_to_openai_sse", |b| {
        let mut dec = ClaudeStreamDecoder::new(meta());
        let mut enc = OpenAiStreamEncoder::new(true);
        dec.push(CLAUDE_MESSAGE_START, &mut chunks).unwrap();
        dec.push(CLAUDE_BLOCK_START, &mut chunks).unwrap();
        b.iter(|| {
            chunks.clear();
            dec.push(black_box(CLAUDE_TEXT_DELTA), &mut chunks).unwrap();
            for chunk in chunks.drain(..) {
                enc.encode(&chunk, &mut out);
            }
            assert!(!out.take().is_empty());
        })
    });

    let start = converse_message_start();
    let delta = converse_text_delta();
    g.bench_function("converse_event_to_openai_sse", |b| {
        let mut dec = ConverseStreamDecoder::new(meta());
        let mut enc = OpenAiStreamEncoder::new(true);
        dec.push(&start, &mut chunks).unwrap();
        b.iter(|| {
            chunks.clear();
            dec.push(black_box(&delta), &mut chunks).unwrap();
            for chunk in chunks.drain(..) {
                enc.encode(&chunk, &mut out);
            }
            assert!(!out.take().is_empty());
        })
    });

    g.bench_function("converse_event_to_claude_sse", |b| {
        let mut dec = ConverseStreamDecoder::new(meta());
        let mut enc = ClaudeStreamEncoder::new();
        let mut out = SseFramer::new(ErrorDialect::Anthropic);
        dec.push(&start, &mut chunks).unwrap();
        dec.push(&delta, &mut chunks).unwrap();
        for chunk in chunks.drain(..) {
            enc.encode(&chunk, &mut out);
        }
        out.take();
        b.iter(|| {
            dec.push(black_box(&delta), &mut chunks).unwrap();
            for chunk in chunks.drain(..) {
                enc.encode(&chunk, &mut out);
            }
            assert!(!out.take().is_empty());
        })
    });
    g.finish();
}

/// 1 MB of typical OpenAI SSE chunks, pushed in 16 KB reads as they would come off a socket.
fn sse_decoding(c: &mut Criterion) {
    let meta = meta();
    let chunk = text_chunk(&meta);
    let mut enc = OpenAiStreamEncoder::new(true);
    let mut out = SseFramer::new(ErrorDialect::OpenAi);
    let mut wire = BytesMut::new();
    let mut events = 0usize;
    while wire.len() < 1024 * 1024 {
        enc.encode(&chunk, &mut out);
        wire.extend_from_slice(&out.take());
        events += 1;
    }
    let wire = wire.freeze();

    let mut g = c.benchmark_group("sse");
    quick(&mut g);
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("decode_1MB_openai_chunks", |b| {
        b.iter(|| {
            let mut dec = SseDecoder::new();
            let mut n = 0usize;
            for read in wire.chunks(16 * 1024) {
                dec.push(black_box(read));
                while let Some(ev) = dec.next_event() {
                    black_box(&ev);
                    n += 1;
                }
            }
            assert_eq!(n, events);
        })
    });
    g.finish();
}

criterion_group!(benches, decoders, encoders, end_to_end, sse_decoding);
criterion_main!(benches);
