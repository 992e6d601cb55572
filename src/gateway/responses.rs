//! `GET` and `DELETE /v1/responses/{id}`: a stored response, for the key that created it only (to
//! any other key it does not exist: 404).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use serde_json::json;
use tower_service::Service;

use super::json_response;
use crate::auth::ApiKeyId;
use crate::body::Body;
use crate::error::{ErrorDialect, GatewayError};
use crate::responses_store::ResponseStore;

/// The stored-response routes over a [`ResponseStore`].
#[derive(Debug, Clone)]
pub(crate) struct StoredResponses {
    pub(crate) store: ResponseStore,
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Response with id '{id}' not found."))
        .with_status(StatusCode::NOT_FOUND)
}

impl Service<Request<Body>> for StoredResponses {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let store = self.store.clone();
        let id = req
            .uri()
            .path()
            .trim_start_matches("/v1/responses/")
            .to_owned();
        let owner = req
            .extensions()
            .get::<ApiKeyId>()
            .map_or_else(|| "anonymous".to_owned(), |k| k.0.to_string());
        let method = req.method().clone();
        Box::pin(async move {
            let result = if method == Method::DELETE {
                store.delete(&owner, &id).await.and_then(|found| {
                    if found {
                        Ok(json!({"id": id, "object": "response", "deleted": true}))
                    } else {
                        Err(not_found(&id))
                    }
                })
            } else {
                store
                    .get(&owner, &id)
                    .await
                    .and_then(|s| s.map(|s| s.response).ok_or_else(|| not_found(&id)))
            };
            Ok(match result {
                Ok(body) => json_response(
                    StatusCode::OK,
                    Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                ),
                Err(e) => e.into_response(ErrorDialect::OpenAi),
            })
        })
    }
}
