//! Bedrock event-stream frames split at every byte offset: decoding the frames as they arrive
//! (the AWS event-stream decoder over a growing buffer, as the SDK does) and translating each
//! payload gives exactly the chunks of the unsplit stream, for Claude and Titan streams.

mod common;

use base64::Engine;
use bytes::{Buf, BytesMut};
use common::fake;
use open_bedrock_server::format::bedrock_claude::ClaudeStreamDecoder;
use open_bedrock_server::format::bedrock_titan::TitanStreamDecoder;
use open_bedrock_server::model::{ChatChunk, ChunkMeta};
use serde_json::{json, Value};

fn meta() -> ChunkMeta {
    ChunkMeta::from_parts("chatcmpl-split", 1, "m")
}

/// Decodes `pieces` as they arrive; returns the inner payload of every `chunk` event.
fn payloads(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let DecodedFrame::Complete(msg) =
            decoder.decode_frame(&mut buf).expect("valid frames")
        {
            let v: Value = serde_json::from_slice(msg.payload()).unwrap();
            let inner = base64::engine::general_purpose::STANDARD
                .decode(v["bytes"].as_str().unwrap())
                .unwrap();
            out.push(inner);
        }
    }
    assert_eq!(buf.remaining(), 0, "nothing left over");
    out
}

fn translate<D>(
    payloads: &[Vec<u8>],
    mut decoder: D,
    push: impl Fn(&mut D, &[u8], &mut Vec<ChatChunk>),
    finish: impl Fn(&mut D, &mut Vec<ChatChunk>),
) -> Vec<ChatChunk> {
    let mut out = Vec::new();
    for p in payloads {
        push(&mut decoder, p, &mut out);
    }
    finish(&mut decoder, &mut out);
    out
}

fn check_every_offset(frames: Vec<bytes::Bytes>, run: impl Fn(&[Vec<u8>]) -> Vec<ChatChunk>) {
    let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let expected = run(&payloads(&[&all]));
    assert!(expected.len() >= 4, "{expected:?}");
    for i in 0..=all.len() {
        let (a, b) = all.split_at(i);
        assert_eq!(run(&payloads(&[a, b])), expected, "split at {i}");
    }
    // And one byte at a time.
    let bytes: Vec<&[u8]> = all.chunks(1).collect();
    assert_eq!(run(&payloads(&bytes)), expected);
}

#[test]
fn claude_stream_split_at_every_offset() {
    let events = [
        json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Héllo "}}),
        json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"wörld"}}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
        json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}),
        json!({"type":"content_block_stop","index":1}),
        json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}),
        json!({"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":5,"outputTokenCount":9,"invocationLatency":1,"firstByteLatency":1}}),
    ];
    let frames = events.iter().map(fake::chunk_frame).collect();
    check_every_offset(frames, |p| {
        translate(
            p,
            ClaudeStreamDecoder::new(meta()),
            |d, b, o| d.push(b, o).unwrap(),
            |d, o| d.finish(o).unwrap(),
        )
    });
}

#[test]
fn titan_stream_split_at_every_offset() {
    let chunks = [
        json!({"outputText":"Soft ","index":0,"totalOutputTextTokenCount":2,"completionReason":null,"inputTextTokenCount":4}),
        json!({"outputText":"rain ","index":1,"totalOutputTextTokenCount":4,"completionReason":null,"inputTextTokenCount":null}),
        json!({"outputText":"falls","index":2,"totalOutputTextTokenCount":6,"completionReason":"FINISH","inputTextTokenCount":null,
            "amazon-bedrock-invocationMetrics":{"inputTokenCount":4,"outputTokenCount":6,"invocationLatency":1,"firstByteLatency":1}}),
    ];
    let frames = chunks.iter().map(fake::chunk_frame).collect();
    check_every_offset(frames, |p| {
        translate(
            p,
            TitanStreamDecoder::new(meta()),
            |d, b, o| d.push(b, o).unwrap(),
            |d, o| d.finish(o).unwrap(),
        )
    });
}
