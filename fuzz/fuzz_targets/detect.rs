//! Detection: any bytes → `BodyHead` (one typed pass, value budget) → the chat rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use open_bedrock_server::detect::{detect_format, BodyHead};

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = BodyHead::parse(data) {
        let _ = detect_format(&head);
    }
});
