//! Canonical request → the body an OpenAI-compatible upstream gets.
//!
//! The canonical request *is* an OpenAI body, so it goes as the client wrote it, every field in
//! place — except the gateway's own extensions, which an OpenAI upstream does not know:
//!
//! - cache breakpoints (`cache_control` on parts, messages and tools) are dropped: OpenAI caches
//!   prompt prefixes by itself;
//! - an assistant turn's `thinking_blocks` are dropped: signed reasoning only means something to
//!   Claude;
//! - an Anthropic-style `thinking` object becomes OpenAI's `reasoning_effort` (its budget mapped
//!   to the nearest effort through the configured table; `disabled` drops it, `adaptive` leaves
//!   the model's default); an explicit `reasoning_effort` wins;
//! - a file part's document settings (`title`, `context`, `citations`) are dropped, and a
//!   plain-text file (from an Anthropic or Converse text document) becomes a text part: OpenAI
//!   reads PDFs from file parts, not text;
//! - the model becomes the route's upstream model (after alias resolution).
//!
//! A request with none of these is borrowed, not copied.
//!
//! ```
//! use open_bedrock_server::format::openai::encode_request;
//! use open_bedrock_server::format::reasoning::ReasoningBudgets;
//! use open_bedrock_server::model::ChatRequest;
//!
//! let req: ChatRequest = serde_json::from_value(serde_json::json!({
//!     "model": "o3-mini", "thinking": {"type": "enabled", "budget_tokens": 8192},
//!     "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi",
//!         "cache_control": {"type": "ephemeral"}}]}]
//! })).unwrap();
//! let out = encode_request(&req, "o3-mini", &ReasoningBudgets::default());
//! let body = serde_json::to_value(&*out).unwrap();
//! assert_eq!(body["reasoning_effort"], "medium");
//! assert!(body.get("thinking").is_none());
//! assert!(body["messages"][0]["content"][0].get("cache_control").is_none());
//! ```

use std::borrow::Cow;

use crate::format::data_url::DataUrl;
use crate::format::reasoning::ReasoningBudgets;
use crate::model::{ChatRequest, ContentPart, MessageContent};

/// Whether a file part carries a document extension, or a text document.
fn file_extension(part: &ContentPart) -> bool {
    part.file.as_ref().is_some_and(|f| {
        f.title.is_some() || f.context.is_some() || f.citations.is_some() || text_file(f).is_some()
    })
}

/// The text of a `text/*` data-URL file.
fn text_file(file: &crate::model::FilePart) -> Option<String> {
    let url = DataUrl::parse(file.file_data.as_deref()?)?.ok()?;
    if !url.mime.as_deref()?.starts_with("text/") {
        return None;
    }
    String::from_utf8(url.decode().ok()?).ok()
}

/// Whether `req` carries anything an OpenAI upstream must not see.
fn has_extensions(req: &ChatRequest) -> bool {
    req.thinking.is_some()
        || req
            .tools
            .iter()
            .flatten()
            .any(|t| t.cache_control.is_some())
        || req.messages.iter().any(|m| {
            m.cache_control.is_some()
                || m.thinking_blocks.is_some()
                || matches!(&m.content, Some(MessageContent::Parts(parts))
                    if parts.iter().any(|p| p.cache_control.is_some() || file_extension(p)))
        })
}

/// The request as the upstream gets it: `req` itself when nothing changes.
pub fn encode_request<'a>(
    req: &'a ChatRequest,
    upstream_model: &str,
    budgets: &ReasoningBudgets,
) -> Cow<'a, ChatRequest> {
    if upstream_model == req.model && !has_extensions(req) {
        return Cow::Borrowed(req);
    }
    let mut out = req.clone();
    out.model = upstream_model.to_owned();
    if let Some(thinking) = out.thinking.take() {
        if out.reasoning_effort.is_none() && thinking.kind == "enabled" {
            out.reasoning_effort = thinking
                .budget_tokens
                .map(|b| budgets.effort_for(b).to_owned());
        }
    }
    for tool in out.tools.iter_mut().flatten() {
        tool.cache_control = None;
    }
    for message in &mut out.messages {
        message.cache_control = None;
        message.thinking_blocks = None;
        if let Some(MessageContent::Parts(parts)) = &mut message.content {
            for part in parts {
                part.cache_control = None;
                if let Some(text) = part.file.as_ref().and_then(text_file) {
                    *part = ContentPart::text(text);
                } else if let Some(file) = part.file.as_mut() {
                    file.title = None;
                    file.context = None;
                    file.citations = None;
                }
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_requests_are_borrowed_and_extensions_removed() {
        let b = ReasoningBudgets::default();
        let plain: ChatRequest = serde_json::from_value(json!({"model":"gpt-4o","messages":[
            {"role":"user","content":"hi"}],"seed":7}))
        .unwrap();
        assert!(matches!(
            encode_request(&plain, "gpt-4o", &b),
            Cow::Borrowed(_)
        ));
        let aliased = encode_request(&plain, "gpt-4o-2024-08-06", &b);
        assert_eq!(aliased.model, "gpt-4o-2024-08-06");
        assert_eq!(aliased.extra["seed"], 7);

        let ext: ChatRequest = serde_json::from_value(json!({"model":"gpt-4o",
            "messages":[{"role":"system","content":"s","cache_control":{"type":"ephemeral"}},
                {"role":"assistant","content":"x","thinking_blocks":[{"type":"thinking","thinking":"t","signature":"s"}]}],
            "tools":[{"type":"function","function":{"name":"f"},"cache_control":{"type":"ephemeral","ttl":"1h"}}],
            "thinking":{"type":"disabled"}})).unwrap();
        let out = serde_json::to_value(&*encode_request(&ext, "gpt-4o", &b)).unwrap();
        assert_eq!(
            out,
            json!({"model":"gpt-4o","messages":[{"role":"system","content":"s"},{"role":"assistant","content":"x"}],
                "tools":[{"type":"function","function":{"name":"f"}}]})
        );
    }

    #[test]
    fn an_explicit_effort_wins_over_a_thinking_budget() {
        let req: ChatRequest =
            serde_json::from_value(json!({"model":"o3","reasoning_effort":"low",
            "thinking":{"type":"enabled","budget_tokens":20000},"messages":[]}))
            .unwrap();
        let out = encode_request(&req, "o3", &ReasoningBudgets::default());
        assert_eq!(out.reasoning_effort.as_deref(), Some("low"));
        assert!(out.thinking.is_none());
    }
}
