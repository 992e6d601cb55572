//! [`KeyRecord`]: what the gateway knows about one key — who it is, what it may use, its limits,
//! budgets and expiry.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use super::ModelPattern;
use crate::auth::ApiKeyId;
use crate::cost::Usd;

/// One key's record, attached to each request it authenticates (an `Arc<KeyRecord>` request
/// extension) for the rate limiter, the allowlist, the budgets and `/v1/key/info` to read.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyRecord {
    /// The stable, non-secret id (logs, metrics, Redis keys).
    pub id: ApiKeyId,
    /// A human name.
    pub name: String,
    /// The team it belongs to.
    pub team: Option<String>,
    /// Free-form metadata, as written in the keys file.
    pub metadata: Map<String, Value>,
    /// The models it may use (names, globs or model-group names); `None` = every model.
    pub models: Option<Vec<ModelPattern>>,
    /// Its own request rate (over the `[rate_limit]` default).
    pub requests_per_minute: Option<NonZeroU32>,
    /// Its own tokens-per-minute budget (over the `[rate_limit]` default).
    pub tokens_per_minute: Option<NonZeroU64>,
    /// Requests (streams included, until their last byte) it may have in flight at once.
    pub max_concurrent: Option<usize>,
    /// Its spend budgets.
    pub budgets: Budgets,
    /// When it stops being accepted.
    pub expires_at: Option<SystemTime>,
    /// Whether it may read any key's `/v1/key/info`.
    pub admin: bool,
}

/// A key's spend budgets per UTC day and month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Budgets {
    /// USD per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<Usd>,
    /// USD per UTC month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<Usd>,
    /// Tokens (prompt + completion) per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
}

impl Budgets {
    /// Whether any budget is set.
    pub fn any(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some() || self.tokens_per_day.is_some()
    }

    /// Whether a budget is in dollars (so the model's price must be known).
    pub fn in_dollars(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }
}

impl KeyRecord {
    /// A record for the key `id` with no limits, every model allowed, no expiry.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        let id: Arc<str> = id.into();
        KeyRecord {
            name: id.to_string(),
            id: ApiKeyId(id),
            team: None,
            metadata: Map::new(),
            models: None,
            requests_per_minute: None,
            tokens_per_minute: None,
            max_concurrent: None,
            budgets: Budgets::default(),
            expires_at: None,
            admin: false,
        }
    }

    /// Whether it may use `model` (as the client names it).
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|models| models.iter().any(|p| p.matches(model)))
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the key has expired by now; the clock is read only for a key that expires.
    pub(crate) fn expired_now(&self) -> bool {
        self.expires_at.is_some() && self.expired(SystemTime::now())
    }

    /// The expiry in seconds since the epoch.
    pub(crate) fn expires_at_secs(&self) -> Option<i64> {
        self.expires_at.map(|at| {
            at.duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs() as i64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_and_expiry() {
        let mut r = KeyRecord::new("team-a");
        assert!(r.allows("anything"), "no list: every model");
        r.models = Some(vec![
            ModelPattern::new("gpt-4o*"),
            ModelPattern::new("fast-chat"),
        ]);
        assert!(r.allows("gpt-4o-mini") && r.allows("fast-chat"));
        assert!(!r.allows("o3") && !r.allows("fast-chat-2"));
        r.models = Some(Vec::new());
        assert!(!r.allows("gpt-4o"), "an empty list allows nothing");
        let now = SystemTime::now();
        assert!(!r.expired(now));
        r.expires_at = Some(now);
        assert!(r.expired(now));
        assert!(!r.expired(now - Duration::from_secs(1)));
    }
}
