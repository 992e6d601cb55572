//! Prompt caching: the canonical request's cache breakpoints, and what each upstream makes of them.
//!
//! A breakpoint ([`CacheControl`]) sits on a content part, a whole message or a tool definition of
//! the canonical request: everything up to and including the marked content is cached. Clients
//! write it as `cache_control` (OpenAI-format bodies and Anthropic bodies) or as a Converse
//! `cachePoint` block after the content; the upstream encoders write it back as Claude
//! `cache_control` on the matching block (InvokeModel) or as a `cachePoint` after the marked
//! content (Converse), where the model caches that part of the prompt ([`CacheSupport`]), and
//! drop it where it does not — never an upstream 400. OpenAI upstreams cache by themselves, so
//! the breakpoints never reach them.
//!
//! [`add_automatic`] places breakpoints on the system prompt and the tool definitions of a request
//! that has none, for models the configuration asks it for.
//!
//! ```
//! use open_bedrock_server::format::caching::{add_automatic, has_cache_points};
//! use open_bedrock_server::model::{ChatRequest, Message, Role};
//!
//! let mut req = ChatRequest::default();
//! req.messages = vec![
//!     Message::text(Role::System, "A long, stable system prompt."),
//!     Message::text(Role::User, "Hi"),
//! ];
//! assert!(!has_cache_points(&req));
//! assert!(add_automatic(&mut req));
//! assert!(req.messages[0].cache_control.is_some());
//! assert!(req.messages[1].cache_control.is_none());
//! assert!(!add_automatic(&mut req), "a request with breakpoints is left as it is");
//! ```

use crate::error::GatewayError;
use crate::model::{CacheControl, ChatRequest, MessageContent, Role};

/// The most cache breakpoints one Claude request may carry (Bedrock rejects a fifth).
pub const MAX_CACHE_POINTS: usize = 4;

/// Where a model caches prompt prefixes: which breakpoints the upstream encoders keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheSupport {
    /// Breakpoints in the system prompt.
    pub system: bool,
    /// Breakpoints in the conversation.
    pub messages: bool,
    /// Breakpoints after tool definitions.
    pub tools: bool,
}

impl CacheSupport {
    /// No caching: every breakpoint is dropped.
    pub const NONE: CacheSupport = CacheSupport {
        system: false,
        messages: false,
        tools: false,
    };

    /// Caching of the system prompt, the conversation and the tool definitions (Claude).
    pub const ALL: CacheSupport = CacheSupport {
        system: true,
        messages: true,
        tools: true,
    };

    /// The system prompt and the conversation, not the tools (Amazon Nova).
    pub const PROMPT: CacheSupport = CacheSupport {
        system: true,
        messages: true,
        tools: false,
    };

    /// Whether any breakpoint is kept.
    pub fn any(self) -> bool {
        self.system || self.messages || self.tools
    }
}

/// Checks a breakpoint's shape: `ephemeral`, with a TTL of `5m` or `1h` when given. A bad one is
/// a 400 naming `param`, before any upstream sees it.
pub fn check(cache: &CacheControl, param: &'static str) -> Result<(), GatewayError> {
    if cache.kind != "ephemeral" {
        return Err(GatewayError::invalid_request(format!(
            "Unsupported cache_control type '{}': expected 'ephemeral'.",
            cache.kind
        ))
        .with_param(param)
        .with_code("invalid_value"));
    }
    match cache.ttl.as_deref() {
        None | Some("5m") | Some("1h") => Ok(()),
        Some(other) => Err(GatewayError::invalid_request(format!(
            "Unsupported cache_control ttl '{other}': expected '5m' or '1h'."
        ))
        .with_param(param)
        .with_code("invalid_value")),
    }
}

/// The error for a request with more breakpoints than Claude takes.
pub fn too_many(count: usize) -> GatewayError {
    GatewayError::invalid_request(format!(
        "A request may carry at most {MAX_CACHE_POINTS} cache breakpoints (cache_control / cachePoint); this one has {count}."
    ))
    .with_param("messages")
    .with_code("invalid_value")
}

/// Where a breakpoint sits in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheArea {
    /// The system prompt.
    System,
    /// The conversation.
    Messages,
    /// The tool definitions.
    Tools,
}

/// What an upstream encoder does with the breakpoints it meets: checks each one's shape, keeps
/// those where the model caches, and counts them (at most [`MAX_CACHE_POINTS`]).
#[derive(Debug)]
pub(crate) struct CachePlacer {
    support: CacheSupport,
    kept: usize,
}

impl CachePlacer {
    /// A placer for a model that caches where `support` says.
    pub(crate) fn new(support: CacheSupport) -> Self {
        CachePlacer { support, kept: 0 }
    }

    /// The breakpoint to write for `cache` in `area`: `None` when there is none or the model does
    /// not cache there; a 400 when its shape is wrong.
    pub(crate) fn keep<'a>(
        &mut self,
        area: CacheArea,
        cache: Option<&'a CacheControl>,
    ) -> Result<Option<&'a CacheControl>, GatewayError> {
        let Some(cache) = cache else { return Ok(None) };
        let (supported, param) = match area {
            CacheArea::System => (self.support.system, "messages"),
            CacheArea::Messages => (self.support.messages, "messages"),
            CacheArea::Tools => (self.support.tools, "tools"),
        };
        check(cache, param)?;
        if !supported {
            return Ok(None);
        }
        self.kept += 1;
        Ok(Some(cache))
    }

    /// Forgets `n` kept breakpoints the encoder removed again.
    #[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
    pub(crate) fn unkeep(&mut self, n: usize) {
        self.kept = self.kept.saturating_sub(n);
    }

    /// Where the model caches.
    #[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
    pub(crate) fn support(&self) -> CacheSupport {
        self.support
    }

    /// A 400 when more breakpoints were kept than a request may carry.
    pub(crate) fn finish(&self) -> Result<(), GatewayError> {
        if self.kept > MAX_CACHE_POINTS {
            return Err(too_many(self.kept));
        }
        Ok(())
    }
}

/// Whether the request carries any cache breakpoint.
pub fn has_cache_points(req: &ChatRequest) -> bool {
    let in_messages = req.messages.iter().any(|m| {
        m.cache_control.is_some()
            || matches!(&m.content, Some(MessageContent::Parts(parts))
                if parts.iter().any(|p| p.cache_control.is_some()))
    });
    in_messages
        || req
            .tools
            .iter()
            .flatten()
            .any(|t| t.cache_control.is_some())
}

/// Automatic caching: when the request has no breakpoint of its own, marks the end of the system
/// prompt (its last system or developer message) and the last tool definition, so repeated
/// requests with the same prefix are served from the cache. Returns whether anything was marked.
pub fn add_automatic(req: &mut ChatRequest) -> bool {
    if has_cache_points(req) {
        return false;
    }
    let mut marked = false;
    if let Some(system) = req
        .messages
        .iter_mut()
        .rev()
        .find(|m| matches!(m.role, Role::System | Role::Developer))
    {
        system.cache_control = Some(CacheControl::ephemeral(None));
        marked = true;
    }
    if let Some(tool) = req.tools.as_mut().and_then(|t| t.last_mut()) {
        tool.cache_control = Some(CacheControl::ephemeral(None));
        marked = true;
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tool;

    #[test]
    fn checks_kind_and_ttl() {
        assert!(check(&CacheControl::ephemeral(None), "messages").is_ok());
        assert!(check(&CacheControl::ephemeral(Some("1h".into())), "messages").is_ok());
        let e = check(&CacheControl::ephemeral(Some("2d".into())), "tools").unwrap_err();
        assert_eq!((e.status().as_u16(), e.param()), (400, Some("tools")));
        let mut odd = CacheControl::ephemeral(None);
        odd.kind = "persistent".into();
        assert_eq!(check(&odd, "messages").unwrap_err().status(), 400);
    }

    #[test]
    fn automatic_caching_marks_the_system_prompt_and_the_last_tool() {
        let mut req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [{"role": "system", "content": "a"}, {"role": "developer", "content": "b"},
                         {"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}},
                      {"type": "function", "function": {"name": "g"}}]
        }))
        .unwrap();
        assert!(add_automatic(&mut req));
        assert!(req.messages[0].cache_control.is_none());
        assert!(req.messages[1].cache_control.is_some());
        let tools: Vec<&Tool> = req.tools.iter().flatten().collect();
        assert!(tools[0].cache_control.is_none() && tools[1].cache_control.is_some());
        // Nothing to mark: nothing marked.
        let mut bare = ChatRequest::default();
        assert!(!add_automatic(&mut bare));
    }
}
