//! A fake OpenAI (and Bedrock) upstream on loopback, for the SDK end-to-end tests and the load
//! benchmark. Prints `listening on <addr>` and serves until killed.
//!
//! ```text
//! cargo run --example fake_upstream -- 127.0.0.1:0
//! ```

#[path = "../tests/common/fake.rs"]
mod fake;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let upstream = fake::Fake::start_on(&addr, fake::smart()).await;
    println!("listening on {}", upstream.addr);
    tokio::signal::ctrl_c().await.ok();
}
