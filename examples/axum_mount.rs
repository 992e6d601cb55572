//! Mounting the gateway inside an existing axum application.
//!
//! The app keeps its own routes (`GET /` and `GET /users`) and the whole gateway — auth, rate
//! limits, format detection and translation, `/v1/models`, `/health` — lives under `/llm`:
//!
//! ```text
//! GET  /                          → "my app"
//! GET  /users                     → JSON list of users
//! POST /llm/v1/chat/completions   → the gateway (OpenAI, Bedrock Claude or Titan bodies)
//! GET  /llm/v1/models             → the gateway's model list
//! ```
//!
//! [`Gateway::service`] is generic over the request body, so `service::<axum::body::Body>()` gives a
//! `Clone + Send + Sync` service with `Error = Infallible` that `Router::nest_service` accepts as is.
//! `nest_service` strips the prefix: `/llm/v1/chat/completions` reaches the gateway as
//! `/v1/chat/completions`.
//!
//! Configuration comes from the environment like the binary's (`API_KEY`, `OPENAI_BASE_URL`,
//! `OPENAI_API_KEY`, `BEDROCK_ENABLED`, …); `HOST`/`PORT` choose the listen address (default
//! `127.0.0.1:8000`, `PORT=0` for a free port). Prints `listening on <addr>` once bound.
//!
//! ```text
//! API_KEY=my-gateway-key OPENAI_API_KEY=sk-... BEDROCK_ENABLED=false \
//!     cargo run --example axum_mount
//! curl -s localhost:8000/users
//! curl -s localhost:8000/llm/v1/chat/completions -H 'authorization: Bearer my-gateway-key' \
//!     -H 'content-type: application/json' \
//!     -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
//! ```

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use open_bedrock_server::config::Config;
use open_bedrock_server::server::shutdown_signal;
use open_bedrock_server::Gateway;
use serde_json::{json, Value};

async fn home() -> &'static str {
    "my app"
}

async fn users() -> Json<Value> {
    Json(json!([
        {"id": 1, "name": "Ada"},
        {"id": 2, "name": "Grace"}
    ]))
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("axum_mount: {e}");
            return ExitCode::from(2);
        }
    };
    if std::env::var_os("HOST").is_none_or(|h| h.is_empty()) {
        config.server.host = Ipv4Addr::LOCALHOST.into();
    }
    if let Err(e) = config.check_startable() {
        eprintln!("axum_mount: {e}");
        return ExitCode::from(2);
    }
    let gateway = match Gateway::from_config(&config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("axum_mount: {e}");
            return ExitCode::FAILURE;
        }
    };

    let app = Router::new()
        .route("/", get(home))
        .route("/users", get(users))
        .nest_service("/llm", gateway.service::<axum::body::Body>());

    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("axum_mount: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("listening on {local}");
    let _ = std::io::stdout().flush();

    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("axum_mount: server error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
