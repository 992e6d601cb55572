//! The gateway's stages as layers of your own axum app: its API-key auth and rate limit on your
//! router, over your own handlers, and its format detection + translation in front of a provider
//! service — here the gateway's mock provider, so it runs without any upstream.
//!
//! ```text
//! cargo run --example axum_layers      # listening on 127.0.0.1:8000 (PORT=0: a free port)
//! curl -s localhost:8000/hello -H 'authorization: Bearer my-app-key'
//! curl -s localhost:8000/v1/chat/completions -H 'authorization: Bearer my-app-key' \
//!     -H 'content-type: application/json' \
//!     -d '{"model":"mock/echo","messages":[{"role":"user","content":"Hello"}]}'
//! ```
//!
//! The part between the `README` markers is the README's library example, word for word (a test
//! checks it).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use open_bedrock_server::auth::ApiKeyAuthLayer;
use open_bedrock_server::detect::DetectLayer;
use open_bedrock_server::provider::MockProvider;
use open_bedrock_server::rate_limit::{RateLimitConfig, RateLimitLayer, RateLimiter};
use open_bedrock_server::translate::TranslateLayer;
use tower::ServiceBuilder;

fn app() -> Router {
    // README: begin
    // Any Service<ChatCall> works here: your own provider, or one of the gateway's.
    let chat = ServiceBuilder::new()
        .layer(DetectLayer::chat(1 << 20)) // read ≤ 1 MiB once; OpenAI, Claude or Titan body in
        .layer(TranslateLayer::default()) // canonical request in, ?target_format= reply out
        .service(MockProvider::new());
    let limiter = RateLimiter::new(&RateLimitConfig::new(NonZeroU32::new(600).unwrap())).unwrap();
    Router::new()
        .route(
            "/hello",
            get(|| async { "hello from the app's own handler" }),
        )
        .route_service("/v1/chat/completions", chat)
        .layer(RateLimitLayer::new(limiter)) // 429 + x-ratelimit-* headers, per key
        .layer(ApiKeyAuthLayer::new(["my-app-key"])) // 401 without the key
                                                     // README: end
}

#[tokio::main]
async fn main() -> ExitCode {
    let host: IpAddr = std::env::var("HOST")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(Ipv4Addr::LOCALHOST.into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let addr = SocketAddr::new(host, port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum_layers: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", listener.local_addr().unwrap_or(addr));
    let _ = std::io::stdout().flush();
    if let Err(e) = axum::serve(listener, app()).await {
        eprintln!("axum_layers: server error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
