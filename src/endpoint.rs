//! The endpoint table: every route the gateway serves, in one place. Routing
//! ([`crate::gateway`]), the health listing, the access log and the metric `route` label
//! ([`crate::observe`]) all read it.

use http::Method;

use crate::error::ErrorDialect;

/// A route of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /health`: liveness, no key.
    Health,
    /// `GET /v1/chat/completions/health`: providers, version, formats; no key.
    ProvidersHealth,
    /// `GET /metrics`: Prometheus text, with a key.
    Metrics,
    /// `GET /v1/models`, `GET /v1/models/{id}`.
    Models,
    /// `GET /v1/key/info`: the calling key's limits, models and spend (an admin key: any key's).
    KeyInfo,
    /// `POST /v1/chat/completions`: any accepted format in, `?target_format=` out.
    ChatCompletions,
    /// `POST /v1/messages`, `POST /anthropic/v1/messages`: the Anthropic Messages API.
    Messages,
    /// `POST /model/{modelId}/{invoke,invoke-with-response-stream,converse,converse-stream}`: the
    /// Bedrock runtime API.
    BedrockRuntime,
    /// `POST /v1/embeddings`: OpenAI embeddings.
    Embeddings,
    /// `POST /v1/responses`: the OpenAI Responses API.
    Responses,
    /// `GET`, `DELETE /v1/responses/{id}`: a stored response.
    StoredResponse,
}

/// Every endpoint with the paths it answers, as the health route lists them.
pub const ENDPOINTS: &[(Endpoint, &[&str])] = &[
    (Endpoint::ChatCompletions, &["/v1/chat/completions"]),
    (Endpoint::Models, &["/v1/models", "/v1/models/{id}"]),
    (Endpoint::KeyInfo, &["/v1/key/info"]),
    (Endpoint::Health, &["/health"]),
    (Endpoint::ProvidersHealth, &["/v1/chat/completions/health"]),
    (Endpoint::Metrics, &["/metrics"]),
    (
        Endpoint::BedrockRuntime,
        &[
            "/model/{modelId}/invoke",
            "/model/{modelId}/invoke-with-response-stream",
            "/model/{modelId}/converse",
            "/model/{modelId}/converse-stream",
        ],
    ),
    (
        Endpoint::Messages,
        &["/v1/messages", "/anthropic/v1/messages"],
    ),
    (Endpoint::Embeddings, &["/v1/embeddings"]),
    (Endpoint::Responses, &["/v1/responses"]),
    (Endpoint::StoredResponse, &["/v1/responses/{id}"]),
];

impl Endpoint {
    /// The endpoint serving `path`, if any.
    ///
    /// ```
    /// use open_bedrock_server::endpoint::Endpoint;
    ///
    /// assert_eq!(Endpoint::of("/model/gpt-4o/converse"), Some(Endpoint::BedrockRuntime));
    /// assert_eq!(Endpoint::of("/anthropic/v1/messages"), Some(Endpoint::Messages));
    /// assert_eq!(Endpoint::of("/v1/models/gpt-4o"), Some(Endpoint::Models));
    /// assert_eq!(Endpoint::of("/v2/nothing"), None);
    /// ```
    pub fn of(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/health" => Endpoint::Health,
            "/v1/chat/completions/health" => Endpoint::ProvidersHealth,
            "/metrics" => Endpoint::Metrics,
            "/v1/models" => Endpoint::Models,
            "/v1/key/info" => Endpoint::KeyInfo,
            "/v1/chat/completions" => Endpoint::ChatCompletions,
            "/v1/messages" | "/anthropic/v1/messages" => Endpoint::Messages,
            "/v1/embeddings" => Endpoint::Embeddings,
            "/v1/responses" => Endpoint::Responses,
            p if p.starts_with("/v1/responses/")
                && p.len() > "/v1/responses/".len()
                && !p["/v1/responses/".len()..].contains('/') =>
            {
                Endpoint::StoredResponse
            }
            p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => Endpoint::Models,
            p if p.starts_with("/model/") => Endpoint::BedrockRuntime,
            _ => return None,
        })
    }

    /// `path` as the [table](ENDPOINTS) spells it, when it is one of this endpoint's fixed paths
    /// (not a template such as `/v1/models/{id}`): what a log line can borrow instead of copying
    /// the request's path.
    pub(crate) fn fixed_path(self, path: &str) -> Option<&'static str> {
        ENDPOINTS
            .iter()
            .filter(|(e, _)| *e == self)
            .flat_map(|(_, paths)| paths.iter().copied())
            .find(|p| *p == path && !p.contains('{'))
    }

    /// The `route` label of metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Health | Endpoint::ProvidersHealth => "health",
            Endpoint::Metrics => "metrics",
            Endpoint::Models => "models",
            Endpoint::KeyInfo => "key_info",
            Endpoint::ChatCompletions => "chat",
            Endpoint::Messages => "messages",
            Endpoint::BedrockRuntime => "bedrock_runtime",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses | Endpoint::StoredResponse => "responses",
        }
    }

    /// The methods it takes, as an `Allow` header says them.
    pub fn allow(self) -> &'static str {
        match self {
            Endpoint::Health | Endpoint::ProvidersHealth | Endpoint::Metrics => "GET, HEAD",
            Endpoint::Models | Endpoint::KeyInfo => "GET",
            Endpoint::ChatCompletions
            | Endpoint::Messages
            | Endpoint::BedrockRuntime
            | Endpoint::Embeddings
            | Endpoint::Responses => "POST",
            Endpoint::StoredResponse => "GET, DELETE",
        }
    }

    /// Whether it takes `method`.
    pub fn allows(self, method: &Method) -> bool {
        match self.allow() {
            "POST" => method == Method::POST,
            "GET" => method == Method::GET,
            "GET, DELETE" => method == Method::GET || method == Method::DELETE,
            _ => method == Method::GET || method == Method::HEAD,
        }
    }

    /// The error shape its clients read.
    pub fn dialect(self) -> ErrorDialect {
        match self {
            Endpoint::Messages => ErrorDialect::Anthropic,
            Endpoint::BedrockRuntime => ErrorDialect::Bedrock,
            _ => ErrorDialect::OpenAi,
        }
    }

    /// Whether it runs the ingress pipeline (auth → limits → detect → translate → core).
    pub fn is_ingress(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Messages
                | Endpoint::BedrockRuntime
                | Endpoint::Embeddings
                | Endpoint::Responses
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_path_routes_to_its_endpoint() {
        for (endpoint, paths) in ENDPOINTS {
            for path in *paths {
                let concrete = path
                    .replace("{id}", "gpt-4o")
                    .replace("{modelId}", "anthropic.claude-v2");
                assert_eq!(Endpoint::of(&concrete), Some(*endpoint), "{path}");
            }
        }
        assert_eq!(Endpoint::of("/v1/models/"), None);
        assert!(Endpoint::BedrockRuntime.allows(&Method::POST));
        assert!(!Endpoint::Models.allows(&Method::HEAD));
        assert!(Endpoint::Health.allows(&Method::HEAD));
        assert!(Endpoint::StoredResponse.allows(&Method::DELETE));
        assert!(!Endpoint::StoredResponse.allows(&Method::POST));
        assert_eq!(Endpoint::of("/v1/responses/resp_1/input_items"), None);
    }

    #[test]
    fn a_fixed_path_is_borrowed_from_the_table_and_a_templated_one_is_not() {
        let chat = Endpoint::ChatCompletions;
        assert_eq!(
            chat.fixed_path("/v1/chat/completions"),
            Some("/v1/chat/completions")
        );
        let messages = Endpoint::Messages;
        assert_eq!(
            messages.fixed_path("/anthropic/v1/messages"),
            Some("/anthropic/v1/messages")
        );
        assert_eq!(Endpoint::Models.fixed_path("/v1/models/gpt-4o"), None);
        assert_eq!(
            chat.fixed_path("/v1/messages"),
            None,
            "another endpoint's path"
        );
    }
}
