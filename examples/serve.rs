//! The smallest standalone server built on the library: configuration from the environment (and a
//! `.env` file, if present), the full gateway stack, graceful shutdown on Ctrl-C / SIGTERM.
//!
//! This is what the `open-bedrock-server` binary does, minus the command line: load a
//! [`Config`], build a [`Gateway`] from it, bind a listener and hand both to [`Gateway::serve`].
//!
//! ```text
//! API_KEY=my-gateway-key OPENAI_API_KEY=sk-... BEDROCK_ENABLED=false \
//!     cargo run --example serve
//! # listening on 127.0.0.1:8000
//! curl -s localhost:8000/v1/chat/completions -H 'authorization: Bearer my-gateway-key' \
//!     -H 'content-type: application/json' \
//!     -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
//! ```
//!
//! `HOST` and `PORT` choose the listen address (default `127.0.0.1:8000` here, unlike the binary's
//! `0.0.0.0`); `PORT=0` picks a free port. Once bound, the example prints `listening on <addr>` on
//! stdout, so a script (or `tests/examples.rs`) can find a port-0 server. Every other setting is the
//! binary's: `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `BEDROCK_ENABLED`, `AWS_REGION`, … (see
//! `open_bedrock_server::config`).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use open_bedrock_server::config::Config;
use open_bedrock_server::server::{self, shutdown_signal};
use open_bedrock_server::Gateway;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::from(2);
        }
    };
    // A library example listens on loopback unless told otherwise.
    if std::env::var_os("HOST").is_none_or(|h| h.is_empty()) {
        config.server.host = Ipv4Addr::LOCALHOST.into();
    }
    // Refuse to start with auth on and no key, like the binary does.
    if let Err(e) = config.check_startable() {
        eprintln!("serve: {e}");
        return ExitCode::from(2);
    }

    let gateway = match Gateway::from_config(&config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = match server::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("serve: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    println!("listening on {local}");
    // stdout is a pipe under tests: make sure the line leaves now, not at exit.
    let _ = std::io::stdout().flush();

    gateway.serve(listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}
