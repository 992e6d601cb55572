//! What a Bedrock model can take, by its id: the knowledge the codecs need but cannot see.
//!
//! The model's vendor decides how reasoning is asked for over Converse (Claude's `thinking`,
//! Nova 2's `reasoningConfig`, the `reasoning_effort` of gpt-oss, Qwen and DeepSeek) and whether
//! signed reasoning is sent back; prompt caching is per model: Claude from 3.5 Haiku and 3.7
//! Sonnet on caches the system prompt, the conversation and the tools, Amazon Nova the system
//! prompt and the conversation, everything else nothing (its breakpoints are dropped, never sent
//! to a model that would reject them).
//!
//! Ids are read after an inference-profile geography prefix (`us.`, `global.`, …) and, for an
//! ARN, after its last `/` (foundation-model and inference-profile ARNs end with the model id).
//! An id the table does not know (an application inference profile, say) is treated by its
//! family: Claude caches, other Converse models do not.

use crate::format::caching::CacheSupport;
use crate::format::converse::ReasoningStyle;

use crate::route::GEO_PREFIXES;

/// Claude models that predate prompt caching on Bedrock.
const CLAUDE_WITHOUT_CACHING: &[&str] = &[
    "anthropic.claude-v2",
    "anthropic.claude-instant",
    "anthropic.claude-3-haiku",
    "anthropic.claude-3-sonnet",
    "anthropic.claude-3-opus",
    "anthropic.claude-3-5-sonnet-20240620",
];

/// The vendor-qualified model id (`anthropic.claude-…`) of a model id, profile id or ARN.
pub(crate) fn vendor_model(model: &str) -> &str {
    let id = model.rsplit('/').next().unwrap_or(model);
    match id.split_once('.') {
        Some((geo, rest)) if GEO_PREFIXES.contains(&geo) => rest,
        _ => id,
    }
}

/// Where `model` caches prompt prefixes. `claude_family`: the route says the model is Claude
/// (an ARN the table cannot read).
pub(crate) fn cache_support(model: &str, claude_family: bool) -> CacheSupport {
    let id = vendor_model(model);
    if id.starts_with("anthropic.") {
        if CLAUDE_WITHOUT_CACHING.iter().any(|p| id.starts_with(p)) {
            CacheSupport::NONE
        } else {
            CacheSupport::ALL
        }
    } else if id.starts_with("amazon.nova") {
        CacheSupport::PROMPT
    } else if claude_family && !id.contains('.') {
        CacheSupport::ALL
    } else {
        CacheSupport::NONE
    }
}

/// How a Converse model takes a reasoning request.
pub(crate) fn reasoning_style(model: &str) -> ReasoningStyle {
    let id = vendor_model(model);
    if id.starts_with("anthropic.") {
        ReasoningStyle::ClaudeThinking
    } else if id.starts_with("amazon.nova-2") {
        ReasoningStyle::NovaReasoningConfig
    } else if ["openai.", "qwen.", "deepseek."]
        .iter()
        .any(|p| id.starts_with(p))
    {
        ReasoningStyle::ReasoningEffort
    } else {
        ReasoningStyle::Unsupported
    }
}

/// Whether a Converse model can be made to call one named tool (`toolChoice.tool` / `any`):
/// Claude 3+ and Nova.
pub(crate) fn forces_tools(model: &str) -> bool {
    let id = vendor_model(model);
    id.starts_with("anthropic.") || id.starts_with("amazon.nova")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caching_by_model() {
        for (id, expected) in [
            ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", CacheSupport::ALL),
            ("anthropic.claude-sonnet-4-20250514-v1:0", CacheSupport::ALL),
            ("anthropic.claude-3-haiku-20240307-v1:0", CacheSupport::NONE),
            ("us.amazon.nova-pro-v1:0", CacheSupport::PROMPT),
            ("meta.llama3-1-70b-instruct-v1:0", CacheSupport::NONE),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
                CacheSupport::ALL,
            ),
        ] {
            assert_eq!(cache_support(id, false), expected, "{id}");
        }
        let profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc";
        assert_eq!(cache_support(profile, true), CacheSupport::ALL);
        assert_eq!(cache_support(profile, false), CacheSupport::NONE);
    }

    #[test]
    fn reasoning_and_tool_forcing_by_vendor() {
        assert!(forces_tools("us.amazon.nova-pro-v1:0"));
        assert!(!forces_tools("meta.llama3-1-70b-instruct-v1:0"));
        assert_eq!(
            reasoning_style("us.anthropic.claude-sonnet-4-20250514-v1:0"),
            ReasoningStyle::ClaudeThinking
        );
        assert_eq!(
            reasoning_style("us.amazon.nova-2-lite-v1:0"),
            ReasoningStyle::NovaReasoningConfig
        );
        assert_eq!(
            reasoning_style("openai.gpt-oss-120b-1:0"),
            ReasoningStyle::ReasoningEffort
        );
        assert_eq!(
            reasoning_style("us.deepseek.r1-v1:0"),
            ReasoningStyle::ReasoningEffort
        );
        assert_eq!(
            reasoning_style("meta.llama3-1-70b-instruct-v1:0"),
            ReasoningStyle::Unsupported
        );
    }
}
