//! API-key auth: the first check on every `/v1` request, before its body is read.
//!
//! Accepts the key as `Authorization: Bearer <key>` or `x-api-key: <key>`, compares it in constant
//! time against every configured key (no early exit, so timing does not reveal which key nearly
//! matched), and answers a missing or wrong key with a 401 *response* in the configured error dialect.
//! An accepted request carries an [`ApiKeyId`] extension — a stable, non-secret name for the key
//! (`key-1`, `key-2`, …) that logs, metrics and rate limits use instead of the key itself.
//!
//! ```
//! use open_bedrock_server::auth::ApiKeyAuthLayer;
//! use open_bedrock_server::body::Body;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test_block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(ApiKeyAuthLayer::new(["secret"]))
//!     .service_fn(|_req: http::Request<Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     });
//! let req = http::Request::get("/v1/models").body(Body::empty()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 401);
//! let req = http::Request::get("/v1/models")
//!     .header("authorization", "Bearer secret")
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Request, Response};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::Body;
use crate::error::{ErrorDialect, GatewayError};

/// The non-secret name of the key a request authenticated with (`key-1`, …), or `anonymous` when
/// auth is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub Arc<str>);

/// Layer that applies [`ApiKeyAuth`].
#[derive(Debug, Clone)]
pub struct ApiKeyAuthLayer {
    keys: Arc<[Box<[u8]>]>,
    dialect: ErrorDialect,
    disabled: bool,
}

impl ApiKeyAuthLayer {
    /// Accepts any of `keys`.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        ApiKeyAuthLayer {
            keys: keys
                .into_iter()
                .map(|k| k.as_ref().as_bytes().to_vec().into_boxed_slice())
                .collect(),
            dialect: ErrorDialect::OpenAi,
            disabled: false,
        }
    }

    /// Lets every request through as `anonymous` (auth disabled explicitly).
    pub fn disabled() -> Self {
        ApiKeyAuthLayer {
            keys: Arc::from(Vec::new()),
            dialect: ErrorDialect::OpenAi,
            disabled: true,
        }
    }

    /// Whether auth is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Renders rejections in `dialect` (default OpenAI).
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }
}

impl<S> Layer<S> for ApiKeyAuthLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyAuth {
            inner,
            keys: self.keys.clone(),
            ids: (1..=self.keys.len())
                .map(|i| ApiKeyId(Arc::from(format!("key-{i}"))))
                .collect(),
            dialect: self.dialect,
            anonymous: self.disabled.then(|| ApiKeyId(Arc::from("anonymous"))),
        }
    }
}

/// Middleware that rejects requests without a valid gateway key.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth<S> {
    inner: S,
    keys: Arc<[Box<[u8]>]>,
    ids: Arc<[ApiKeyId]>,
    dialect: ErrorDialect,
    anonymous: Option<ApiKeyId>,
}

impl<S> ApiKeyAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn find(&self, presented: &[u8]) -> Option<usize> {
        find_key(&self.keys, presented)
    }
}

/// Which of `keys` (by position) `presented` is, compared in constant time against every key (no
/// early exit, so timing does not tell which key nearly matched).
pub(crate) fn find_key(keys: &[Box<[u8]>], presented: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        if bool::from(key.as_ref().ct_eq(presented)) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

/// The key a request presents, from `Authorization: Bearer` or `x-api-key`.
pub fn presented_key<B>(req: &Request<B>) -> Option<&[u8]> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(trim(&v[7..]));
        }
    }
    req.headers().get("x-api-key").map(|v| trim(v.as_bytes()))
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

impl<S, B> Service<Request<B>> for ApiKeyAuth<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(id) = req.extensions().get::<ApiKeyId>().cloned() {
            // An earlier layer (SigV4) authenticated the request already.
            return ResponseFuture::inner(self.inner.call(req), id);
        }
        if let Some(id) = &self.anonymous {
            req.extensions_mut().insert(id.clone());
            return ResponseFuture::inner(self.inner.call(req), id.clone());
        }
        let found = presented_key(&req).and_then(|k| self.find(k));
        match found {
            Some(i) => {
                let id = self.ids[i].clone();
                req.extensions_mut().insert(id.clone());
                ResponseFuture::inner(self.inner.call(req), id)
            }
            None => {
                let message = if presented_key(&req).is_some() {
                    "Incorrect API key provided."
                } else {
                    "Missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
                };
                let dialect = req
                    .extensions()
                    .get::<ErrorDialect>()
                    .copied()
                    .unwrap_or(self.dialect);
                ResponseFuture::rejected(
                    GatewayError::unauthenticated(message).into_response(dialect),
                )
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ApiKeyAuth`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Inner { #[pin] fut: F, id: Option<ApiKeyId> },
        Rejected { res: Option<Response<Body>> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(fut: F, id: ApiKeyId) -> Self {
        ResponseFuture {
            state: State::Inner { fut, id: Some(id) },
        }
    }

    fn rejected(res: Response<Body>) -> Self {
        ResponseFuture {
            state: State::Rejected { res: Some(res) },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, id } => {
                let mut out = std::task::ready!(fut.poll(cx));
                // The access log reads the key id from the response.
                if let (Ok(res), Some(id)) = (&mut out, id.take()) {
                    res.extensions_mut().insert(id);
                }
                Poll::Ready(out)
            }
            StateProj::Rejected { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn svc() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        ApiKeyAuthLayer::new(["k1", "k2"]).layer(tower::service_fn(
            |req: Request<Body>| async move {
                let id = req
                    .extensions()
                    .get::<ApiKeyId>()
                    .map(|i| i.0.to_string())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Body::from(id)))
            },
        ))
    }

    async fn call(req: Request<Body>) -> (u16, String) {
        use http_body_util::BodyExt;
        let res = svc().oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn accepts_bearer_and_x_api_key_and_names_the_key() {
        let r = Request::get("/")
            .header("authorization", "Bearer k2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(r).await, (200, "key-2".into()));
        let r = Request::get("/")
            .header("x-api-key", "k1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(r).await, (200, "key-1".into()));
        let r = Request::get("/")
            .header("authorization", "bearer  k1 ")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(r).await.0, 200);
    }

    #[tokio::test]
    async fn rejects_missing_and_wrong_keys_with_openai_body() {
        let (status, body) = call(Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(status, 401);
        assert!(
            body.contains("invalid_api_key") && body.contains("Missing API key"),
            "{body}"
        );
        let r = Request::get("/")
            .header("authorization", "Bearer k3")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(r).await;
        assert_eq!(status, 401);
        assert!(body.contains("Incorrect API key"), "{body}");
        let r = Request::get("/")
            .header("authorization", "Basic k1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(r).await.0, 401);
        let r = Request::get("/")
            .header("authorization", "Bearer k")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(r).await.0, 401, "prefix of a key must not match");
    }
}
