//! The OpenAI body's byte scan against serde: whatever `client_request::decode` reads, serde
//! reads into an equal request (the scan may leave any body to serde; it may never differ).
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_bedrock_server::format::openai::client_request::decode;
use open_bedrock_server::model::ChatRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(scanned) = decode(text) {
        let serde: ChatRequest =
            serde_json::from_str(text).expect("serde reads what the scan reads");
        assert_eq!(scanned, serde);
    }
});
