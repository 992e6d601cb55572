//! Request and response codecs, per format, for a short chat and a ~100 KB prompt.
//!
//! `cargo bench --bench codecs`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use open_bedrock_server::format::bedrock_claude::{self, ClaudeRequestOptions};
use open_bedrock_server::format::bedrock_titan::{self, TitanRequestOptions};
use open_bedrock_server::format::converse::{self, ConverseOptions};
use open_bedrock_server::format::ReplyFormat;
use open_bedrock_server::model::ChatRequest;
use open_bedrock_server::translate::encode_complete;
use serde_json::{Map, Value};

mod common;
use common::*;

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    quick(&mut g);
    let big = big_text(100 * 1024);
    for (size, last_user) in [("short", SHORT_QUESTION), ("100KB", big.as_str())] {
        let openai = openai_body(OPENAI_MODEL, last_user, false);
        let claude = claude_client_body(last_user, false);
        let titan = titan_client_body(last_user);
        let req: ChatRequest = serde_json::from_slice(&openai).unwrap();

        g.throughput(Throughput::Bytes(openai.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("openai_json_to_canonical", size),
            &openai,
            |b, body| b.iter(|| serde_json::from_slice::<ChatRequest>(black_box(body)).unwrap()),
        );
        // What the stack does: detect parses into a map once, translate converts the map.
        g.bench_with_input(
            BenchmarkId::new("openai_json_via_map_to_canonical", size),
            &openai,
            |b, body| {
                b.iter(|| {
                    let map: Map<String, Value> = serde_json::from_slice(black_box(body)).unwrap();
                    serde_json::from_value::<ChatRequest>(Value::Object(map)).unwrap()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("canonical_to_claude_body", size),
            &req,
            |b, req| {
                let opts = ClaudeRequestOptions::default();
                b.iter(|| bedrock_claude::encode_request_bytes(black_box(req), &opts).unwrap())
            },
        );
        g.bench_with_input(
            BenchmarkId::new("canonical_to_titan_body", size),
            &req,
            |b, req| {
                let opts = TitanRequestOptions::default();
                b.iter(|| bedrock_titan::encode_request_bytes(black_box(req), &opts).unwrap())
            },
        );
        g.bench_with_input(
            BenchmarkId::new("canonical_to_converse", size),
            &req,
            |b, req| {
                let opts = ConverseOptions::default();
                b.iter(|| converse::encode_request(black_box(req), &opts).unwrap())
            },
        );

        g.throughput(Throughput::Bytes(claude.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("claude_client_to_canonical", size),
            &claude,
            |b, body| {
                b.iter(|| {
                    let map: Map<String, Value> = serde_json::from_slice(black_box(body)).unwrap();
                    bedrock_claude::decode_client_request(&map).unwrap()
                })
            },
        );

        g.throughput(Throughput::Bytes(titan.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("titan_client_to_canonical", size),
            &titan,
            |b, body| {
                b.iter(|| {
                    let map: Map<String, Value> = serde_json::from_slice(black_box(body)).unwrap();
                    bedrock_titan::decode_client_request(&map).unwrap()
                })
            },
        );
    }
    g.finish();
}

fn responses(c: &mut Criterion) {
    let mut g = c.benchmark_group("response");
    quick(&mut g);
    let meta = meta();
    let claude = claude_response_json();
    let titan = titan_response_json();
    let resp = chat_response();

    g.bench_function("claude_json_to_canonical", |b| {
        b.iter(|| bedrock_claude::decode_response(black_box(&claude), &meta).unwrap())
    });
    g.bench_function("titan_json_to_canonical", |b| {
        b.iter(|| bedrock_titan::decode_response(black_box(&titan), &meta).unwrap())
    });
    for (name, target) in [
        ("canonical_to_openai_json", ReplyFormat::OpenAi),
        ("canonical_to_claude_json", ReplyFormat::Claude),
        ("canonical_to_titan_json", ReplyFormat::Titan),
        ("canonical_to_converse_json", ReplyFormat::BedrockConverse),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| encode_complete(black_box(&resp), target))
        });
    }
    g.finish();
}

criterion_group!(benches, requests, responses);
criterion_main!(benches);
