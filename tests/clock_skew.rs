//! A host clock off from Bedrock's, through the real stack: in a test binary of its own, since
//! the clock difference the gateway learns is the process's (every other test here would sign
//! with it).

mod common;

use common::fake::{self, Fake};
use common::*;
use serde_json::json;

/// A host clock an hour behind Bedrock's: the first call's refusal sets the difference, the
/// retry layer sends it again, signed with Bedrock's time, and the client gets its answer; the
/// next call is signed right at once.
#[tokio::test]
async fn a_host_clock_off_from_bedrocks_is_corrected_and_the_call_answered() {
    let upstream = Fake::start(fake::smart()).await;
    let gw = start_full(&upstream, |_| {}).await;
    let model = "amazon.titan-text-express-clock-ahead-v1";
    let hello =
        json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]});
    let res = post(&gw, "/v1/chat/completions", &hello).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let dates: Vec<String> = upstream
        .requests()
        .iter()
        .filter_map(|r| r.header("x-amz-date").map(str::to_owned))
        .collect();
    assert_eq!(dates.len(), 2, "refused, then signed again: {dates:?}");
    assert!(dates[1] > dates[0], "an hour later: {dates:?}");
    let res = post(&gw, "/v1/chat/completions", &hello).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(upstream.requests().len(), 3, "signed right at once");
}
