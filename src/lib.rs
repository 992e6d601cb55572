//! # Open Bedrock Server
//!
//! A provider-agnostic chat-completions gateway for OpenAI and AWS Bedrock, built as a stack of
//! composable tower layers and served by a raw hyper server.
//!
//! One endpoint, `POST /v1/chat/completions`, accepts OpenAI requests and Bedrock Claude or Titan
//! bodies, routes each request by model id to OpenAI or Bedrock, and answers in the format the client
//! asks for (`?target_format=openai|bedrock_claude|bedrock_titan`), streamed or not.
//!
//! ## The stack
//!
//! An HTTP shell around a typed core, assembled in one place, [`gateway`]:
//!
//! ```text
//! request id → sensitive headers → catch panic → access log → routes (one endpoint table)
//!   POST /v1/chat/completions, POST /v1/messages, POST /model/{id}/{op}: the one ingress pipeline
//!     in-flight limit → SigV4 → auth → rate limit → detect (route classifier) → translate → [core]
//!   [typed core]: retry (one attempt budget for retries and fallbacks)
//!                 → dispatch (route by model to a named provider service, or a model group's
//!                   deployment: balancing, fallbacks, outlier ejection)
//!                 → upstream timeouts per provider (first byte, stream idle, one deadline per
//!                   request) → provider
//! ```
//!
//! Every stage is its own `Layer`/`Service`: [`auth`], [`rate_limit`], [`load_shed`], [`detect`],
//! [`translate`], [`retry`], [`provider::Dispatch`], [`provider::group`], [`provider::timeout`],
//! and the providers `provider::openai`, `provider::bedrock` (each behind its cargo feature) and
//! [`provider::mock`];
//! a route differs only in its classifier and its reply format. The whole stack is one
//! `Clone + Send + Sync + 'static` service with `Error = Infallible`, so it mounts in axum:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use open_bedrock_server::{config::Config, Gateway};
//!
//! let mut config = Config::default();
//! config.auth.disabled = true;
//! let gateway = Gateway::from_config(&config).await?;
//! let app = axum::Router::new().nest_service("/llm", gateway.service::<axum::body::Body>());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Or run it standalone, configured like the binary (`Config::load`, the `server` feature):
//!
//! ```no_run
//! # #[cfg(feature = "server")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use open_bedrock_server::{config::Config, server, Gateway};
//!
//! let config = Config::load(None)?;
//! let gateway = Gateway::from_config(&config).await?;
//! let listener = server::bind(([127, 0, 0, 1], 8000).into()).await?;
//! gateway.serve(listener, server::shutdown_signal()).await;
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | Feature | Default | Brings |
//! |---|---|---|
//! | `server` | yes | the `open-bedrock-server` binary, `Config::load` (TOML file, `.env`, environment), the `telemetry` module (clap, figment, toml, dotenvy, tracing-subscriber) |
//! | `bedrock` | yes | `provider::bedrock` and the SDK half of [`format::converse`] (aws-config, aws-sdk-bedrockruntime, aws-sdk-bedrock) |
//! | `openai` | yes | `provider::openai`, the OpenAI-compatible upstream over hyper's client with rustls |
//! | `redis` | no | rate limits shared between gateway processes through Redis |
//! | `otel` | no | OTLP/HTTP trace export (implies `server`) |
//!
//! With `default-features = false` the rest stays: the canonical [`model`], the codecs
//! ([`format`](mod@format), client halves included), the stream framers and decoders ([`sse`],
//! [`eventstream`], [`stream`]), [`detect`], [`translate`], the [`auth`], [`rate_limit`] and
//! [`load_shed`] layers, and the whole [`Gateway`] with the mock provider and providers of your own
//! ([`GatewayBuilder::provider`]), served by [`server`]. A built-in provider left out is reported
//! as off by [`Gateway::providers`].
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod macros;

pub mod auth;
pub mod body;
pub mod config;
pub mod cost;
pub mod detect;
mod digits;
pub mod endpoint;
pub mod error;
pub mod eventstream;
pub mod format;
pub mod gateway;
mod header_name;
mod header_value;
pub mod keys;
pub mod load_shed;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod provider;
pub mod rate_limit;
mod ready;
pub mod responses_store;
pub mod retry;
pub mod route;
pub mod server;
mod sigv4;
pub mod sse;
pub mod stream;
pub mod surface;
#[cfg(feature = "server")]
pub mod telemetry;
pub mod translate;
pub mod usage;
pub mod validate;
mod woken;

/// A map keyed by names from the configuration or the shipped data (providers, models, regions)
/// and looked up on every call: hashbrown's default hasher (foldhash) instead of std's SipHash,
/// whose resistance to chosen keys buys nothing for keys no client chooses.
pub(crate) type NameMap<K, V> = hashbrown::HashMap<K, V>;

pub use gateway::{Core, Gateway, GatewayBuilder, GatewayService, ProviderStatus};
