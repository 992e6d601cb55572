//! The Bedrock provider (placeholder until the Bedrock issue lands).

use crate::error::GatewayError;
use crate::model::{ChatCall, ChatReply};
use crate::route::Route;

/// The Bedrock upstream.
#[derive(Debug, Clone)]
pub struct BedrockProvider {}

impl BedrockProvider {
    /// Sends one chat call.
    pub async fn chat(self, _call: ChatCall, _route: Route) -> Result<ChatReply, GatewayError> {
        Err(GatewayError::upstream_status(503, "Bedrock is not available yet"))
    }
}

impl BedrockProvider {
    /// The region.
    pub fn region(&self) -> Option<&str> {
        None
    }

    /// Lists models.
    pub async fn list_models(&self) -> Result<Vec<crate::provider::openai::ModelObject>, GatewayError> {
        Ok(Vec::new())
    }
}

impl BedrockProvider {
    /// Builds the provider from configuration.
    pub async fn from_config(_config: &crate::config::Config) -> Result<Option<Self>, GatewayError> {
        Ok(None)
    }
}
