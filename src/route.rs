//! Routing: model id → a named provider service, its kind (and, for Bedrock, the strategy by model
//! family).
//!
//! A [`Route`] names the provider service that [`Dispatch`](crate::provider::Dispatch) calls: the
//! built-in rules name the built-in providers `openai`, `bedrock` and `mock` (the names of their
//! [`ProviderKind`]s); an override may name any other registered provider service.
//!
//! A model that names a [model group](crate::provider::group) (directly or through an alias) is
//! not routed here: `Dispatch` looks groups up first and takes each attempt's route from the
//! chosen deployment, which carries its own [`Route`].
//!
//! Rules, in order:
//! 1. Aliases from configuration rewrite the id (`claude` → `us.anthropic.claude-…`), once.
//! 2. Overrides from configuration (`prefix` → provider, optional family) win over built-in rules.
//! 3. Built-in rules: `gpt-*`, `o1*`/`o3*`/`o4*`, `chatgpt-*`, `text-*`, `dall-e-*`, `ft:` fine-tunes
//!    → OpenAI; `anthropic.`, `amazon.`, `meta.`, `mistral.`, `cohere.`, `ai21.`, `deepseek.`, `writer.`,
//!    `qwen.`, `openai.gpt-oss` → Bedrock, also behind one regional/global inference-profile prefix
//!    (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `us-gov.`, `global.`, …); `arn:aws…:bedrock:` ARNs → Bedrock.
//!    `mock/…` → the in-process mock provider (answered only when it is enabled).
//! 4. Anything else is `404 model_not_found` — never a silent guess.
//!
//! Bedrock family: `anthropic.*` → Claude over InvokeModel, `amazon.titan-text*`/`amazon.titan-tg1*` →
//! Titan over InvokeModel, `amazon.titan-embed*` and `cohere.embed*` → the embedding models over
//! InvokeModel (`/v1/embeddings`; `text-embedding-*` goes to OpenAI by the `text-` rule), every
//! other family → Converse. ARNs take their family from configuration,
//! else from the model id embedded in a foundation-model or inference-profile ARN, else Converse
//! (which serves every family).
//!
//! ```
//! use open_bedrock_server::route::{BedrockFamily, ProviderKind, RouteOverride, Router};
//!
//! let router = Router::default();
//! let r = router.resolve("us.anthropic.claude-3-5-sonnet-20241022-v2:0").unwrap();
//! assert_eq!(r.kind, ProviderKind::Bedrock(BedrockFamily::Claude));
//! assert_eq!(&*r.provider, "bedrock");
//! assert_eq!(router.resolve("gpt-4o").unwrap().kind, ProviderKind::OpenAi);
//! assert_eq!(router.resolve("nonsense").unwrap_err().status(), 404);
//!
//! // An override may send a prefix to a provider service of another name.
//! let router = Router::new(
//!     Default::default(),
//!     vec![RouteOverride::new("llama-", ProviderKind::OpenAi).with_provider("vllm")],
//!     Default::default(),
//! );
//! assert_eq!(&*router.resolve("llama-3-8b").unwrap().provider, "vllm");
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::GatewayError;

/// What kind of upstream serves a model: the protocol its provider speaks (and, for Bedrock, the
/// strategy by model family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderKind {
    /// An OpenAI-compatible chat-completions API.
    OpenAi,
    /// AWS Bedrock, with the strategy for the model family.
    Bedrock(BedrockFamily),
    /// The in-process mock provider (`mock/…` ids; see [`crate::provider::mock`]).
    Mock,
}

impl ProviderKind {
    /// The kind's name, which is also the name of its built-in provider service (`openai`,
    /// `bedrock`, `mock`): the provider a route names unless an override names another.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Bedrock(_) => "bedrock",
            ProviderKind::Mock => "mock",
        }
    }
}

/// How a Bedrock model is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BedrockFamily {
    /// Anthropic Claude over InvokeModel with a Messages body.
    Claude,
    /// Amazon Titan text over InvokeModel with `inputText`.
    Titan,
    /// Every other family over Converse.
    Converse,
    /// Amazon Titan embedding models over InvokeModel (`/v1/embeddings` only).
    TitanEmbedding,
    /// Cohere embedding models over InvokeModel (`/v1/embeddings` only).
    CohereEmbedding,
}

impl BedrockFamily {
    /// Parses a configured family name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "claude" | "anthropic" => Some(BedrockFamily::Claude),
            "titan" => Some(BedrockFamily::Titan),
            "converse" => Some(BedrockFamily::Converse),
            "titan-embedding" | "titan_embedding" => Some(BedrockFamily::TitanEmbedding),
            "cohere-embedding" | "cohere_embedding" => Some(BedrockFamily::CohereEmbedding),
            _ => None,
        }
    }

    /// Name for logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            BedrockFamily::Claude => "claude",
            BedrockFamily::Titan => "titan",
            BedrockFamily::Converse => "converse",
            BedrockFamily::TitanEmbedding => "titan-embedding",
            BedrockFamily::CohereEmbedding => "cohere-embedding",
        }
    }

    /// Whether the family embeds text (served by `/v1/embeddings`, not by chat).
    pub fn is_embedding(self) -> bool {
        matches!(
            self,
            BedrockFamily::TitanEmbedding | BedrockFamily::CohereEmbedding
        )
    }
}

/// The outcome of routing one request. Cheap to clone (two `Arc`s), so it travels in the
/// [`ChatCall`](crate::model::ChatCall) to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// The name of the provider service that serves the model.
    pub provider: Arc<str>,
    /// What kind of upstream it is (and the Bedrock strategy).
    pub kind: ProviderKind,
    /// The model id to send upstream (after alias resolution).
    pub upstream_model: Arc<str>,
}

impl Route {
    /// A route to the provider service named `provider`, of `kind`, sending `upstream_model`.
    pub fn new(
        provider: impl Into<Arc<str>>,
        kind: ProviderKind,
        upstream_model: impl Into<Arc<str>>,
    ) -> Self {
        Route {
            provider: provider.into(),
            kind,
            upstream_model: upstream_model.into(),
        }
    }
}

/// A configured override: ids starting with `prefix` go to the provider service named `provider`,
/// of `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteOverride {
    /// Model id prefix.
    pub prefix: String,
    /// The name of the target provider service.
    pub provider: Arc<str>,
    /// What kind of upstream the target is (and the Bedrock strategy).
    pub kind: ProviderKind,
}

impl RouteOverride {
    /// Ids starting with `prefix` go to the built-in provider of `kind`.
    pub fn new(prefix: impl Into<String>, kind: ProviderKind) -> Self {
        RouteOverride {
            prefix: prefix.into(),
            provider: Arc::from(kind.as_str()),
            kind,
        }
    }

    /// Sends the ids to the provider service named `provider` instead (one registered with
    /// [`Dispatch::with_provider`](crate::provider::Dispatch::with_provider)).
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = provider.into();
        self
    }
}

/// Inference-profile geography prefixes (`us.anthropic…`).
pub(crate) const GEO_PREFIXES: &[&str] =
    &["us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"];

/// Bedrock model vendors the gateway knows.
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic",
    "amazon",
    "meta",
    "mistral",
    "cohere",
    "ai21",
    "deepseek",
    "writer",
    "qwen",
    "openai",
    "twelvelabs",
    "stability",
    "luma",
    "minimax",
    "moonshot",
    "google",
    "nvidia",
];

const OPENAI_PREFIXES: &[&str] = &[
    "gpt-",
    "o1",
    "o3",
    "o4",
    "chatgpt-",
    "text-",
    "dall-e-",
    "ft:",
    "davinci",
    "babbage",
    "omni-moderation",
];

/// Resolves model ids to routes. Built once at start-up; `resolve` does no allocation beyond the
/// `Arc<str>` of the upstream model (provider names are shared).
#[derive(Debug, Clone)]
pub struct Router {
    aliases: HashMap<String, String>,
    overrides: Vec<RouteOverride>,
    arn_families: HashMap<String, BedrockFamily>,
    builtin: BuiltinNames,
}

/// The built-in providers' names, allocated once so that routing only bumps reference counts.
#[derive(Debug, Clone)]
struct BuiltinNames {
    openai: Arc<str>,
    bedrock: Arc<str>,
    mock: Arc<str>,
}

impl BuiltinNames {
    fn new() -> Self {
        BuiltinNames {
            openai: Arc::from(ProviderKind::OpenAi.as_str()),
            bedrock: Arc::from(ProviderKind::Bedrock(BedrockFamily::Converse).as_str()),
            mock: Arc::from(ProviderKind::Mock.as_str()),
        }
    }

    fn of(&self, kind: ProviderKind) -> &Arc<str> {
        match kind {
            ProviderKind::OpenAi => &self.openai,
            ProviderKind::Bedrock(_) => &self.bedrock,
            ProviderKind::Mock => &self.mock,
        }
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new(HashMap::new(), Vec::new(), HashMap::new())
    }
}

impl Router {
    /// A router with aliases, overrides and ARN families from configuration.
    pub fn new(
        aliases: HashMap<String, String>,
        overrides: Vec<RouteOverride>,
        arn_families: HashMap<String, BedrockFamily>,
    ) -> Self {
        Router {
            aliases,
            overrides,
            arn_families,
            builtin: BuiltinNames::new(),
        }
    }

    /// The configured aliases.
    pub fn aliases(&self) -> &HashMap<String, String> {
        &self.aliases
    }

    /// Routes `model`, or `404 model_not_found`.
    pub fn resolve(&self, model: &str) -> Result<Route, GatewayError> {
        let target = self.aliases.get(model).map(String::as_str).unwrap_or(model);
        let (provider, kind) = if let Some(o) = self
            .overrides
            .iter()
            .find(|o| target.starts_with(o.prefix.as_str()))
        {
            (o.provider.clone(), o.kind)
        } else {
            let kind = self
                .builtin_kind(target)
                .ok_or_else(|| GatewayError::model_not_found(model))?;
            (self.builtin.of(kind).clone(), kind)
        };
        Ok(Route {
            provider,
            kind,
            upstream_model: upstream_model(target),
        })
    }

    /// The kind the built-in rules give `id`, if any.
    fn builtin_kind(&self, id: &str) -> Option<ProviderKind> {
        if id.is_empty() {
            return None;
        }
        if id.starts_with(crate::provider::mock::MOCK_PREFIX) {
            return Some(ProviderKind::Mock);
        }
        if is_bedrock_arn(id) {
            if let Some(f) = self.arn_families.get(id) {
                return Some(ProviderKind::Bedrock(*f));
            }
            let family = id
                .rsplit_once('/')
                .and_then(|(_, tail)| bedrock_family(tail))
                .unwrap_or(BedrockFamily::Converse);
            return Some(ProviderKind::Bedrock(family));
        }
        if let Some(f) = bedrock_family(id) {
            return Some(ProviderKind::Bedrock(f));
        }
        if OPENAI_PREFIXES.iter().any(|p| id.starts_with(p)) {
            return Some(ProviderKind::OpenAi);
        }
        None
    }
}

fn is_bedrock_arn(id: &str) -> bool {
    // arn:<partition>:bedrock:<region>:<account>:<resource>
    let mut parts = id.splitn(4, ':');
    parts.next() == Some("arn")
        && parts
            .next()
            .is_some_and(|p| p == "aws" || p.starts_with("aws-"))
        && parts.next() == Some("bedrock")
}

/// The Bedrock family of a foundation-model or inference-profile id, or `None` if it is not one.
pub fn bedrock_family(id: &str) -> Option<BedrockFamily> {
    let (first, rest) = id.split_once('.')?;
    let (vendor, name) = if GEO_PREFIXES.contains(&first) {
        rest.split_once('.')?
    } else {
        (first, rest)
    };
    if !BEDROCK_VENDORS.contains(&vendor) || name.is_empty() {
        return None;
    }
    Some(match vendor {
        "anthropic" => BedrockFamily::Claude,
        "amazon" if name.starts_with("titan-text") || name.starts_with("titan-tg1") => {
            BedrockFamily::Titan
        }
        "amazon" if name.starts_with("titan-embed") => BedrockFamily::TitanEmbedding,
        "cohere" if name.starts_with("embed") => BedrockFamily::CohereEmbedding,
        "openai" if !name.starts_with("gpt-oss") => return None,
        _ => BedrockFamily::Converse,
    })
}

/// `target` as a route's upstream model: the one made last on this thread when it is the same
/// model, a reference count instead of a heap block (the model a client names is the same
/// request after request more often than not); a different model replaces it, at the cost it
/// always had. One model name held per thread.
fn upstream_model(target: &str) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(model) if **model == *target => model.clone(),
            _ => {
                let model: Arc<str> = Arc::from(target);
                *last = Some(model.clone());
                model
            }
        }
    })
    // While the thread's locals are torn down.
    .unwrap_or_else(|_| Arc::from(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use BedrockFamily::*;

    /// A model routed again on the same thread shares the route's upstream model made before (a
    /// reference count, not a heap block); another model gets its own, and the first one again
    /// a new one, each the right name.
    #[test]
    fn a_repeated_model_shares_its_upstream_name() {
        let router = Router::default();
        let model = |m: &str| router.resolve(m).unwrap().upstream_model;
        let first = model("gpt-4o");
        let again = model("gpt-4o");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(&*model("gpt-4o-mini"), "gpt-4o-mini");
        let back = model("gpt-4o");
        assert_eq!(&*back, "gpt-4o");
        assert!(!Arc::ptr_eq(&first, &back));
    }

    #[test]
    fn built_in_rules() {
        let router = Router::default();
        let table: &[(&str, Option<ProviderKind>)] = &[
            ("gpt-4o", Some(ProviderKind::OpenAi)),
            ("gpt-4o-mini-2024-07-18", Some(ProviderKind::OpenAi)),
            ("o1-preview", Some(ProviderKind::OpenAi)),
            ("o3-mini", Some(ProviderKind::OpenAi)),
            ("o4-mini", Some(ProviderKind::OpenAi)),
            ("chatgpt-4o-latest", Some(ProviderKind::OpenAi)),
            ("text-embedding-3-small", Some(ProviderKind::OpenAi)),
            ("dall-e-3", Some(ProviderKind::OpenAi)),
            ("ft:gpt-4o-mini:org::abc", Some(ProviderKind::OpenAi)),
            ("anthropic.claude-3-haiku-20240307-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", Some(ProviderKind::Bedrock(Claude))),
            ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("apac.anthropic.claude-3-haiku-20240307-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("jp.anthropic.claude-sonnet-4-5-20250929-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("au.anthropic.claude-sonnet-4-5-20250929-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("us-gov.anthropic.claude-3-haiku-20240307-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", Some(ProviderKind::Bedrock(Claude))),
            ("amazon.titan-text-express-v1", Some(ProviderKind::Bedrock(Titan))),
            ("amazon.titan-text-premier-v1:0", Some(ProviderKind::Bedrock(Titan))),
            ("amazon.titan-tg1-large", Some(ProviderKind::Bedrock(Titan))),
            ("amazon.nova-pro-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("us.amazon.nova-2-lite-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("meta.llama3-1-70b-instruct-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("us.meta.llama3-2-11b-instruct-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("mistral.mistral-large-2407-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("cohere.command-r-plus-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("amazon.titan-embed-text-v2:0", Some(ProviderKind::Bedrock(TitanEmbedding))),
            ("amazon.titan-embed-text-v1", Some(ProviderKind::Bedrock(TitanEmbedding))),
            ("us.amazon.titan-embed-text-v2:0", Some(ProviderKind::Bedrock(TitanEmbedding))),
            ("cohere.embed-english-v3", Some(ProviderKind::Bedrock(CohereEmbedding))),
            ("cohere.embed-multilingual-v3", Some(ProviderKind::Bedrock(CohereEmbedding))),
            ("cohere.embed-v4:0", Some(ProviderKind::Bedrock(CohereEmbedding))),
            ("us.cohere.embed-v4:0", Some(ProviderKind::Bedrock(CohereEmbedding))),
            ("text-embedding-3-large", Some(ProviderKind::OpenAi)),
            ("ai21.jamba-1-5-large-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("deepseek.r1-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("us.deepseek.r1-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("writer.palmyra-x5-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("qwen.qwen3-32b-v1:0", Some(ProviderKind::Bedrock(Converse))),
            ("openai.gpt-oss-120b-1:0", Some(ProviderKind::Bedrock(Converse))),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                Some(ProviderKind::Bedrock(Claude)),
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.titan-text-express-v1",
                Some(ProviderKind::Bedrock(Titan)),
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
                Some(ProviderKind::Bedrock(Converse)),
            ),
            (
                "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:provisioned-model/abcdefgh1234",
                Some(ProviderKind::Bedrock(Converse)),
            ),
            ("mock/echo", Some(ProviderKind::Mock)),
            ("openai.whisper", None),
            ("us.", None),
            ("claude-3-opus", None),
            ("llama3", None),
            ("", None),
            ("arn:aws:s3:::bucket", None),
            ("unknown.vendor-model", None),
        ];
        for (id, want) in table {
            let got = router.resolve(id).ok().map(|r| r.kind);
            assert_eq!(&got, want, "{id}");
        }
    }

    #[test]
    fn routes_name_their_provider_service() {
        let router = Router::new(
            HashMap::new(),
            vec![
                RouteOverride::new("llama-", ProviderKind::OpenAi).with_provider("vllm"),
                RouteOverride::new("gpt-4o-eu", ProviderKind::OpenAi),
            ],
            HashMap::new(),
        );
        for (id, provider, kind) in [
            ("gpt-4o", "openai", ProviderKind::OpenAi),
            (
                "amazon.titan-text-express-v1",
                "bedrock",
                ProviderKind::Bedrock(Titan),
            ),
            ("mock/echo", "mock", ProviderKind::Mock),
            ("llama-3-8b", "vllm", ProviderKind::OpenAi),
            ("gpt-4o-eu-1", "openai", ProviderKind::OpenAi),
        ] {
            let r = router.resolve(id).unwrap();
            assert_eq!((&*r.provider, r.kind), (provider, kind), "{id}");
        }
    }

    #[test]
    fn unknown_model_is_404_model_not_found() {
        let e = Router::default().resolve("nope").unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(e.code(), Some("model_not_found"));
        assert_eq!(e.param(), Some("model"));
    }

    #[test]
    fn aliases_overrides_and_arn_families() {
        let arn =
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc".to_owned();
        let router = Router::new(
            HashMap::from([
                (
                    "claude".to_owned(),
                    "us.anthropic.claude-3-5-haiku-20241022-v1:0".to_owned(),
                ),
                ("fast".to_owned(), "gpt-4o-mini".to_owned()),
            ]),
            vec![RouteOverride::new("llama-local", ProviderKind::OpenAi)],
            HashMap::from([(arn.clone(), Claude)]),
        );
        let r = router.resolve("claude").unwrap();
        assert_eq!(r.kind, ProviderKind::Bedrock(Claude));
        assert_eq!(
            &*r.upstream_model,
            "us.anthropic.claude-3-5-haiku-20241022-v1:0"
        );
        assert_eq!(router.resolve("fast").unwrap().kind, ProviderKind::OpenAi);
        assert_eq!(
            router.resolve("llama-local-8b").unwrap().kind,
            ProviderKind::OpenAi
        );
        assert_eq!(
            router.resolve(&arn).unwrap().kind,
            ProviderKind::Bedrock(Claude)
        );
    }
}
