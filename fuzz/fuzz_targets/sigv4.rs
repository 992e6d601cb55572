//! The SigV4 `Authorization` header parser and the `x-amz-date` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_bedrock_server::sigv4;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sigv4::parse_authorization(text);
        let _ = sigv4::parse_amz_date(text);
    }
});
