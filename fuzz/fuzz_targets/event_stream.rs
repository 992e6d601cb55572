//! The event-stream path: frames read by the AWS SDK's decoder, payloads fed to the Claude and
//! Titan stream decoders (what InvokeModelWithResponseStream `chunk` events carry).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use open_bedrock_server::format::bedrock_claude::ClaudeStreamDecoder;
use open_bedrock_server::format::bedrock_titan::TitanStreamDecoder;
use open_bedrock_server::model::ChunkMeta;
use open_bedrock_server::stream::StreamDecoder;

fuzz_target!(|data: &[u8]| {
    let mut wire = data;
    let mut payloads = Vec::new();
    while !wire.is_empty() {
        match aws_smithy_eventstream::frame::read_message_from(&mut wire) {
            Ok(msg) => payloads.push(msg.payload().clone()),
            Err(_) => break,
        }
    }
    payloads.push(Bytes::copy_from_slice(data));
    let meta = ChunkMeta::new("m");
    let mut claude = ClaudeStreamDecoder::new(meta.clone());
    let mut titan = TitanStreamDecoder::new(meta);
    let mut out = Vec::new();
    for p in payloads {
        let _ = StreamDecoder::push(&mut claude, p.clone(), &mut out);
        let _ = StreamDecoder::push(&mut titan, p, &mut out);
    }
    let _ = StreamDecoder::finish(&mut claude, &mut out);
    let _ = StreamDecoder::finish(&mut titan, &mut out);
});
