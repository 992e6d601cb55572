//! Fixtures shared by the criterion benches (each bench uses a subset).
#![allow(dead_code)]

use std::time::Duration;

use criterion::{measurement::WallTime, BenchmarkGroup};
use open_bedrock_server::model::{
    ChatChunk, ChatResponse, ChunkMeta, Delta, ResponseMessage, Usage,
};
use serde_json::{json, Map, Value};

pub const OPENAI_MODEL: &str = "gpt-4o-mini";
pub const CLAUDE_MODEL: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";
pub const TITAN_MODEL: &str = "amazon.titan-text-express-v1";

pub const SHORT_QUESTION: &str = "And what is its population? Answer in one sentence.";

/// Short timings so `cargo bench` of all three benches stays within a few minutes on 2 cores.
pub fn quick(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
}

/// About `bytes` of prose with the characters JSON must escape (quotes, newlines) and some
/// non-ASCII text, like a pasted document.
pub fn big_text(bytes: usize) -> String {
    const PARAGRAPH: &str = "The gateway reads the body once, parses the JSON once and records \
        both formats. A \"quoted\" phrase, a tab\tand a back\\slash appear now and then; so do \
        accented words like café, naïve and résumé, and a line break.\n";
    let mut out = String::with_capacity(bytes + PARAGRAPH.len());
    let mut n = 0u32;
    while out.len() < bytes {
        out.push_str(&format!("[{n}] "));
        out.push_str(PARAGRAPH);
        n += 1;
    }
    out
}

/// An OpenAI request: system, user, assistant, then `last_user` (a short follow-up or a big
/// document).
pub fn openai_body(model: &str, last_user: &str, stream: bool) -> Vec<u8> {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise, helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": last_user},
        ],
        "max_tokens": 256,
        "temperature": 0.7,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    serde_json::to_vec(&body).unwrap()
}

/// The same conversation as a client's Bedrock Claude body.
pub fn claude_client_body(last_user: &str, stream: bool) -> Vec<u8> {
    let mut body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "model": CLAUDE_MODEL,
        "max_tokens": 256,
        "temperature": 0.7,
        "system": "You are a concise, helpful assistant.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "The capital of France is Paris."}]},
            {"role": "user", "content": [{"type": "text", "text": last_user}]},
        ],
    });
    if stream {
        body["stream"] = json!(true);
    }
    serde_json::to_vec(&body).unwrap()
}

/// The same conversation as a client's Titan body.
pub fn titan_client_body(last_user: &str) -> Vec<u8> {
    let input = format!(
        "You are a concise, helpful assistant.\n\nUser: What is the capital of France?\n\
         Bot: The capital of France is Paris.\nUser: {last_user}\nBot:"
    );
    serde_json::to_vec(&json!({
        "model": TITAN_MODEL,
        "inputText": input,
        "textGenerationConfig": {"maxTokenCount": 256, "temperature": 0.7, "topP": 0.9},
    }))
    .unwrap()
}

pub fn parse_map(body: &[u8]) -> Map<String, Value> {
    serde_json::from_slice(body).unwrap()
}

pub const ANSWER: &str = "Paris has a population of about 2.1 million people within the city \
    limits, and roughly 12 million in the wider Île-de-France metropolitan region, which makes it \
    one of the largest urban areas in Europe.";

pub fn meta() -> ChunkMeta {
    ChunkMeta::from_parts(
        "chatcmpl-bench0000000000000001",
        1_732_000_000,
        CLAUDE_MODEL,
    )
}

/// A typical complete reply with usage.
pub fn chat_response() -> ChatResponse {
    ChatResponse::new(
        &ChunkMeta::from_parts(
            "chatcmpl-bench0000000000000001",
            1_732_000_000,
            OPENAI_MODEL,
        ),
        ResponseMessage::assistant(Some(ANSWER.into()), None),
        "stop",
        Some(Usage::from_parts(48, 41, 0, 0)),
    )
}

/// A Bedrock Claude InvokeModel response body.
pub fn claude_response_json() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "msg_bdrk_01XyZabcdefghijk",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 48, "output_tokens": 41,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }))
    .unwrap()
}

/// A Titan InvokeModel response body.
pub fn titan_response_json() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "inputTextTokenCount": 48,
        "results": [{"tokenCount": 41, "outputText": ANSWER, "completionReason": "FINISH"}],
    }))
    .unwrap()
}

/// A typical streamed text piece (a few tokens).
pub const PIECE: &str = " population of about";

/// A text-delta chunk as providers produce it.
pub fn text_chunk(meta: &ChunkMeta) -> ChatChunk {
    ChatChunk::delta(meta, Delta::text(PIECE), None)
}

/// A whole short stream: role, `n` text pieces, finish, usage.
pub fn stream_chunks(meta: &ChunkMeta, n: usize) -> Vec<ChatChunk> {
    let mut chunks = Vec::with_capacity(n + 3);
    chunks.push(ChatChunk::delta(meta, Delta::role(), None));
    for _ in 0..n {
        chunks.push(text_chunk(meta));
    }
    chunks.push(ChatChunk::delta(meta, Delta::default(), Some("stop")));
    chunks.push(ChatChunk::usage(
        meta,
        Usage::from_parts(48, n as u64 * 4, 0, 0),
    ));
    chunks
}
