//! Every client format's decoder (and the strict checks behind it): the first byte picks the
//! format, the rest is the body. A failure must be a client error, never a panic or a 5xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_bedrock_server::detect::{Classified, DetectedRequest};
use open_bedrock_server::format::{InboundFormat, ReplyFormat};
use open_bedrock_server::translate::decode_request;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let format = match pick % 4 {
        0 => InboundFormat::OpenAi,
        1 => InboundFormat::BedrockClaude,
        2 => InboundFormat::BedrockTitan,
        _ => InboundFormat::Converse,
    };
    let classified = Classified::new(format, ReplyFormat::OpenAi).with_model("fuzz-model");
    if let Err(e) = decode_request(DetectedRequest::new(classified, body.to_vec())) {
        assert!(
            e.status().is_client_error(),
            "{}: {}",
            e.status(),
            e.message()
        );
    }
});
