//! A fake OpenAI (and Bedrock) upstream on loopback, for the SDK end-to-end tests and the load
//! benchmark. Prints `listening on <addr>` and serves until killed. With `--throttle`, every chat
//! request is throttled (OpenAI's 429, Bedrock's `ThrottlingException`): a region having a bad
//! day, for the routing tests.
//!
//! ```text
//! cargo run --example fake_upstream -- 127.0.0.1:0 [--throttle]
//! ```

#[path = "../tests/common/fake.rs"]
mod fake;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let handler = if std::env::args().any(|a| a == "--throttle") {
        std::sync::Arc::new(|req: &fake::Recorded, _attempt: usize| fake::throttled(req))
    } else {
        fake::smart()
    };
    let upstream = fake::Fake::start_on(&addr, handler).await;
    println!("listening on {}", upstream.addr);
    tokio::signal::ctrl_c().await.ok();
}
