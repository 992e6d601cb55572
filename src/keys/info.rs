//! `GET /v1/key/info`: a key reads its own name, team, limits, allowed models, expiry and spend in
//! the current UTC day and month; an admin key (`admin = true` in the keys file) reads any key's
//! with `?key_id=<id>`.
//!
//! ```json
//! {"id": "team-a", "name": "Team A", "team": "a", "metadata": {},
//!  "models": ["gpt-4o*"], "limits": {"requests_per_minute": 60, "max_concurrent": 4},
//!  "budgets": {"usd_per_day": 5.0}, "expires_at": null,
//!  "spend": {"day": "2026-12-02", "month": "2026-12", "usd_today": 0.0123,
//!            "usd_this_month": 0.5, "tokens_today": 1234,
//!            "day_resets_at": "2026-12-03T00:00:00Z", "month_resets_at": "2027-01-01T00:00:00Z",
//!            "shared": false},
//!  "in_flight": 0}
//! ```
//!
//! Spend is counted for keys with budgets (the counters exist for them only); `spend` is `null`
//! for others and when the counters could not be read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower_service::Service;

use super::period::rfc3339;
use super::{KeyPolicy, KeyRecord, KeyStore, Periods};
use crate::auth::ApiKeyId;
use crate::body::Body;
use crate::cost::Usd;
use crate::error::{ErrorDialect, GatewayError};

/// The `GET /v1/key/info` service (behind auth).
#[derive(Debug, Clone)]
pub struct KeyInfoService {
    store: KeyStore,
    policy: KeyPolicy,
}

impl KeyInfoService {
    /// Answers from `store`'s records and `policy`'s spend counters.
    pub fn new(store: KeyStore, policy: KeyPolicy) -> Self {
        KeyInfoService { store, policy }
    }
}

fn query_key_id(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "key_id").then(|| v.to_owned())
    })
}

impl<B: Send + 'static> Service<Request<B>> for KeyInfoService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        let own = req.extensions().get::<Arc<KeyRecord>>().cloned();
        let own_id = req.extensions().get::<ApiKeyId>().cloned();
        let asked = query_key_id(req.uri().query());
        Box::pin(async move {
            let error = |e: GatewayError| Ok(e.into_response(ErrorDialect::OpenAi));
            let record = match (asked, &own) {
                (Some(id), Some(me)) if *id != *me.id.0 => {
                    if !me.admin {
                        return error(GatewayError::permission_denied(
                            "Only an admin key may read another key's information.",
                        ));
                    }
                    match this.store.record(&id) {
                        Some(r) => r,
                        None => {
                            return error(
                                GatewayError::invalid_request(format!("No key has the id `{id}`."))
                                    .with_status(StatusCode::NOT_FOUND)
                                    .with_param("key_id"),
                            )
                        }
                    }
                }
                (_, Some(me)) => me.clone(),
                (_, None) => {
                    let id = own_id.map_or_else(|| "anonymous".to_owned(), |k| k.0.to_string());
                    Arc::new(KeyRecord::new(id))
                }
            };
            let body = this.describe(&record).await;
            let mut res = Response::new(Body::from(Bytes::from(body.to_string())));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(res)
        })
    }
}

impl KeyInfoService {
    async fn describe(&self, r: &KeyRecord) -> serde_json::Value {
        let spend = if r.budgets.any() {
            let p = Periods::now();
            self.policy.spend(&r.id.0).await.map(|t| {
                json!({
                    "day": p.day_label(),
                    "month": p.month_label(),
                    "usd_today": Usd(t.usd_day).dollars(),
                    "usd_this_month": Usd(t.usd_month).dollars(),
                    "tokens_today": t.tokens_day,
                    "day_resets_at": rfc3339(p.day_end()),
                    "month_resets_at": rfc3339(p.month_end()),
                    "shared": self.policy.is_shared(),
                })
            })
        } else {
            None
        };
        json!({
            "id": &*r.id.0,
            "name": r.name,
            "team": r.team,
            "metadata": r.metadata,
            "models": r.models,
            "limits": {
                "requests_per_minute": r.requests_per_minute,
                "tokens_per_minute": r.tokens_per_minute,
                "max_concurrent": r.max_concurrent,
            },
            "budgets": r.budgets,
            "expires_at": r.expires_at_secs().map(rfc3339),
            "admin": r.admin,
            "spend": spend,
            "in_flight": r.max_concurrent.map(|l| self.policy.in_flight(&r.id.0, l)),
        })
    }
}
