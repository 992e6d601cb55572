//! [`ExtractKey`]: which bucket a request is counted in.

use std::sync::Arc;

use http::{Extensions, HeaderMap};

use crate::auth::ApiKeyId;

/// Names the key a request is counted under, from its headers and extensions; `None` counts it
/// under [`ANONYMOUS`](super::ANONYMOUS).
///
/// Implemented by [`ByApiKeyId`] (the default) and by every
/// `Fn(&HeaderMap, &Extensions) -> Option<Arc<str>> + Clone + Send + Sync` closure. Per-key limits
/// ([`KeyRateLimit`](super::KeyRateLimit)) and token budgets apply to the names it returns.
pub trait ExtractKey {
    /// The key of a request with these `headers` and `extensions`.
    fn key(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Arc<str>>;
}

impl<F> ExtractKey for F
where
    F: Fn(&HeaderMap, &Extensions) -> Option<Arc<str>> + Clone + Send + Sync + 'static,
{
    fn key(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Arc<str>> {
        self(headers, extensions)
    }
}

/// Counts a request under the [`ApiKeyId`] that [`auth`](crate::auth) gave it (`key-1`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct ByApiKeyId;

impl ExtractKey for ByApiKeyId {
    fn key(&self, _headers: &HeaderMap, extensions: &Extensions) -> Option<Arc<str>> {
        extensions.get::<ApiKeyId>().map(|id| id.0.clone())
    }
}
