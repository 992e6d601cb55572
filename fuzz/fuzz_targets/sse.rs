//! The SSE decoder and the OpenAI stream decoder over it, with the input cut at one point.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use open_bedrock_server::format::openai::OpenAiStreamDecoder;
use open_bedrock_server::sse::SseDecoder;
use open_bedrock_server::stream::StreamDecoder;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut dec = SseDecoder::new();
    dec.push(&data[..cut]);
    while dec.next_event().is_some() {}
    dec.push(&data[cut..]);
    while dec.next_event().is_some() {}
    let mut openai = OpenAiStreamDecoder::new();
    let mut out = Vec::new();
    let _ = openai.push(Bytes::copy_from_slice(&data[..cut]), &mut out);
    let _ = openai.push(Bytes::copy_from_slice(&data[cut..]), &mut out);
    let _ = openai.finish(&mut out);
});
