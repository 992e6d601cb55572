//! `GET /health` and `GET /v1/chat/completions/health`.
//!
//! Both answer without a key, so they say which providers are configured but not where they
//! point: no upstream base URL (the Bedrock region, public knowledge, stays).

use bytes::Bytes;
use serde_json::json;

use crate::endpoint::ENDPOINTS;
use crate::format::{InboundFormat, TargetFormat};
use crate::provider::Dispatch;

/// What `/v1/chat/completions/health` reports: the providers, the version, the accepted formats
/// and every endpoint of the [table](super::endpoint).
#[derive(Debug, Clone)]
pub(crate) struct HealthInfo {
    body: Bytes,
}

impl HealthInfo {
    /// Health facts of a gateway with the built-in providers of `dispatch`.
    pub(crate) fn new(dispatch: &Dispatch, auth_enabled: bool) -> Self {
        // A built-in provider compiled out is reported like one not configured.
        #[cfg(feature = "openai")]
        let openai_url = dispatch
            .openai()
            .map(crate::provider::OpenAiProvider::base_url);
        #[cfg(not(feature = "openai"))]
        let openai_url: Option<&str> = None;
        #[cfg(feature = "bedrock")]
        let bedrock = dispatch.bedrock().map(|b| b.region());
        #[cfg(not(feature = "bedrock"))]
        let bedrock: Option<Option<&str>> = None;
        let inbound = [
            InboundFormat::OpenAi,
            InboundFormat::BedrockClaude,
            InboundFormat::BedrockTitan,
        ]
        .map(InboundFormat::as_str);
        let target = [
            TargetFormat::OpenAi,
            TargetFormat::BedrockClaude,
            TargetFormat::BedrockTitan,
        ]
        .map(TargetFormat::as_str);
        let endpoints: Vec<&str> = ENDPOINTS
            .iter()
            .flat_map(|(_, paths)| paths.iter().copied())
            .collect();
        let body = json!({
            "status": "ok",
            "service": "open-bedrock-server",
            "version": env!("CARGO_PKG_VERSION"),
            "auth": if auth_enabled { "api_key" } else { "disabled" },
            "providers": {
                "openai": {"configured": openai_url.is_some()},
                "bedrock": {"configured": bedrock.is_some(), "region": bedrock.flatten()},
                "mock": {"configured": dispatch.mock().is_some()},
            },
            "formats": {"inbound": inbound, "target": target},
            "endpoints": endpoints,
        });
        HealthInfo {
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Bytes {
        self.body.clone()
    }
}
