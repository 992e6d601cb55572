//! API-key auth: the first check on every `/v1` request, before its body is read.
//!
//! Accepts the key as `Authorization: Bearer <key>` or `x-api-key: <key>` and asks a [`ValidateKey`]
//! policy which key it is — in the gateway a [`KeyStore`](crate::keys::KeyStore) (the `API_KEY`
//! keys and the keys file's hashed keys), which also attaches the key's
//! [`KeyRecord`] as a request extension (an expired key gets a 401); on
//! its own, by default [`StaticKeys`], which compares it in constant time against
//! every configured key (no early exit, so timing does not reveal which key nearly matched); any
//! `Fn(&[u8]) -> Option<ApiKeyId>` closure works too. A missing or unknown key gets a 401 *response*
//! in the request's [`ErrorDialect`] extension, else the layer's. An accepted request carries an
//! [`ApiKeyId`] extension — a stable, non-secret name for the key (`key-1`, `key-2`, …) that logs,
//! metrics and rate limits use instead of the key itself. A request that already carries an
//! [`ApiKeyId`] (set by an earlier authenticating layer, e.g. SigV4) passes through unchanged.
//!
//! The layer is generic over request and response bodies (rejections need `ResB: From<Bytes>`), so
//! it goes straight onto an axum `Router` with `.layer(..)`.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use open_bedrock_server::auth::ApiKeyAuthLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test_block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(ApiKeyAuthLayer::new(["secret"]))
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hi"))))
//!     });
//! let req = http::Request::get("/v1/models").body(String::new()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 401);
//! let req = http::Request::get("/v1/models")
//!     .header("authorization", "Bearer secret")
//!     .body(String::new())
//!     .unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ErrorDialect, GatewayError};
use crate::keys::KeyRecord;

/// The non-secret name of the key a request authenticated with (`key-1`, …), or `anonymous` when
/// auth is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub Arc<str>);

/// Decides which key, if any, a presented credential is: the policy of [`ApiKeyAuth`].
///
/// Implemented by [`StaticKeys`] and by every `Fn(&[u8]) -> Option<ApiKeyId> + Clone + Send + Sync`
/// closure (annotate the argument, `|key: &[u8]| …`, so the closure takes any lifetime).
pub trait ValidateKey {
    /// The id of the key `presented` (the raw bytes after `Bearer ` or of `x-api-key`, trimmed),
    /// or `None` to answer the request with a 401.
    fn validate(&self, presented: &[u8]) -> Option<ApiKeyId>;

    /// The id of the key `presented` and its [`KeyRecord`] when the policy keeps records (a
    /// [`KeyStore`](crate::keys::KeyStore) does): the record goes into the request's extensions
    /// for the rate limiter, the allowlist, the budgets and `/v1/key/info`. By default,
    /// [`validate`](Self::validate) without a record.
    fn authenticate(&self, presented: &[u8]) -> Option<(ApiKeyId, Option<Arc<KeyRecord>>)> {
        self.validate(presented).map(|id| (id, None))
    }

    /// The record of the key `id` (for a request an earlier layer, e.g. SigV4, authenticated).
    fn record_of(&self, _id: &ApiKeyId) -> Option<Arc<KeyRecord>> {
        None
    }
}

impl<F> ValidateKey for F
where
    F: Fn(&[u8]) -> Option<ApiKeyId> + Clone + Send + Sync + 'static,
{
    fn validate(&self, presented: &[u8]) -> Option<ApiKeyId> {
        self(presented)
    }
}

/// A fixed list of keys, named `key-1`, `key-2`, … in order, each compared in constant time. The
/// default list is empty and refuses every key.
#[derive(Clone, Default)]
pub struct StaticKeys {
    keys: Arc<[Box<[u8]>]>,
    ids: Arc<[ApiKeyId]>,
}

impl StaticKeys {
    /// The keys `keys`, named by their position (the first is `key-1`).
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let keys: Arc<[Box<[u8]>]> = keys
            .into_iter()
            .map(|k| k.as_ref().as_bytes().to_vec().into_boxed_slice())
            .collect();
        let ids = (1..=keys.len())
            .map(|i| ApiKeyId(Arc::from(format!("key-{i}"))))
            .collect();
        StaticKeys { keys, ids }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (every key is then refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl ValidateKey for StaticKeys {
    /// Compares `presented` against every key (no early exit, so timing does not tell which key
    /// nearly matched); the first equal one wins.
    fn validate(&self, presented: &[u8]) -> Option<ApiKeyId> {
        let mut found = None;
        for (i, key) in self.keys.iter().enumerate() {
            if bool::from(key.as_ref().ct_eq(presented)) && found.is_none() {
                found = Some(i);
            }
        }
        found.map(|i| self.ids[i].clone())
    }
}

// By hand: the keys are secrets and never reach a log.
impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Layer that applies [`ApiKeyAuth`] with the key policy `V`.
#[derive(Debug, Clone)]
pub struct ApiKeyAuthLayer<V = StaticKeys> {
    validator: V,
    dialect: ErrorDialect,
    disabled: bool,
}

impl ApiKeyAuthLayer<StaticKeys> {
    /// Accepts any of `keys` ([`StaticKeys`]).
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        ApiKeyAuthLayer::with_validator(StaticKeys::new(keys))
    }

    /// Lets every request through as `anonymous` (auth disabled explicitly).
    pub fn disabled() -> Self {
        ApiKeyAuthLayer {
            disabled: true,
            ..ApiKeyAuthLayer::with_validator(StaticKeys::default())
        }
    }
}

impl<V> ApiKeyAuthLayer<V> {
    /// Accepts the keys `validator` names (a [`ValidateKey`], e.g. a closure).
    pub fn with_validator(validator: V) -> Self
    where
        V: ValidateKey,
    {
        ApiKeyAuthLayer {
            validator,
            dialect: ErrorDialect::OpenAi,
            disabled: false,
        }
    }

    /// Lets every request through as `anonymous`, keeping the policy for
    /// [`ValidateKey::record_of`] lookups.
    pub fn disable(mut self) -> Self {
        self.disabled = true;
        self
    }

    /// Whether auth is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Renders rejections in `dialect` (default OpenAI) when the request carries no
    /// [`ErrorDialect`] extension.
    pub fn dialect(mut self, dialect: ErrorDialect) -> Self {
        self.dialect = dialect;
        self
    }
}

impl<S, V: Clone> Layer<S> for ApiKeyAuthLayer<V> {
    type Service = ApiKeyAuth<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyAuth {
            inner,
            validator: self.validator.clone(),
            dialect: self.dialect,
            anonymous: self.disabled.then(|| ApiKeyId(Arc::from("anonymous"))),
        }
    }
}

/// Middleware that rejects requests without a valid gateway key.
#[derive(Debug, Clone)]
pub struct ApiKeyAuth<S, V = StaticKeys> {
    inner: S,
    validator: V,
    dialect: ErrorDialect,
    anonymous: Option<ApiKeyId>,
}

impl<S, V> ApiKeyAuth<S, V> {
    crate::macros::define_inner_service_accessors!();
}

/// The key a request presents, from `Authorization: Bearer` or `x-api-key`.
pub(crate) fn presented_key<B>(req: &Request<B>) -> Option<&[u8]> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(trim(&v[7..]));
        }
    }
    req.headers()
        .get(&crate::header_name::X_API_KEY)
        .map(|v| trim(v.as_bytes()))
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

impl<S, V, ReqB, ResB> Service<Request<ReqB>> for ApiKeyAuth<S, V>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    V: ValidateKey,
    ResB: From<Bytes>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if let Some(id) = req.extensions().get::<ApiKeyId>().cloned() {
            // An earlier layer authenticated it (and answers for the response's key id).
            if req.extensions().get::<Arc<KeyRecord>>().is_none() {
                if let Some(record) = self.validator.record_of(&id) {
                    req.extensions_mut().insert(record);
                }
            }
            return ResponseFuture::inner(self.inner.call(req), None);
        }
        let presented = presented_key(&req);
        let found = match &self.anonymous {
            Some(id) => Some((id.clone(), None)),
            None => presented.and_then(|k| self.validator.authenticate(k)),
        };
        let dialect = req
            .extensions()
            .get::<ErrorDialect>()
            .copied()
            .unwrap_or(self.dialect);
        match found {
            Some((_, Some(record))) if record.expired_now() => ResponseFuture::rejected(
                GatewayError::unauthenticated(format!(
                    "The API key `{}` has expired.",
                    record.id.0
                )),
                dialect,
            ),
            Some((id, record)) => {
                req.extensions_mut().insert(id.clone());
                if let Some(record) = record {
                    req.extensions_mut().insert(record);
                }
                ResponseFuture::inner(self.inner.call(req), Some(id))
            }
            None => {
                let message = if presented.is_some() {
                    "Incorrect API key provided."
                } else {
                    "Missing API key. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
                };
                ResponseFuture::rejected(GatewayError::unauthenticated(message), dialect)
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
        Rejected { error: Option<(GatewayError, ErrorDialect)> },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(fut: F, id: Option<ApiKeyId>) -> Self {
        ResponseFuture {
            state: State::Inner { fut, id },
        }
    }

    fn rejected(error: GatewayError, dialect: ErrorDialect) -> Self {
        ResponseFuture {
            state: State::Rejected {
                error: Some((error, dialect)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

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
            StateProj::Rejected { error } => match error.take() {
                Some((error, dialect)) => Poll::Ready(Ok(error.to_response(dialect))),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
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

    #[tokio::test]
    async fn a_key_id_set_by_an_earlier_layer_passes_through_unchanged() {
        let mut r = Request::get("/").body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ApiKeyId(Arc::from("sigv4-client")));
        assert_eq!(call(r).await, (200, "sigv4-client".into()));
    }

    #[tokio::test]
    async fn a_closure_decides_and_the_request_dialect_wins_over_the_layer() {
        let svc = ApiKeyAuthLayer::with_validator(|key: &[u8]| {
            (key == b"only").then(|| ApiKeyId(Arc::from("the-one")))
        })
        .dialect(ErrorDialect::Bedrock)
        .layer(tower::service_fn(|req: Request<Body>| async move {
            let id = req.extensions().get::<ApiKeyId>().cloned();
            Ok::<_, Infallible>(Response::new(Body::from(
                id.map_or(String::new(), |i| i.0.to_string()),
            )))
        }));
        let r = Request::get("/")
            .header("x-api-key", "only")
            .body(Body::empty())
            .unwrap();
        let res = svc.clone().oneshot(r).await.unwrap();
        assert_eq!(
            res.extensions().get::<ApiKeyId>().unwrap().0.as_ref(),
            "the-one"
        );
        let r = Request::get("/")
            .header("x-api-key", "other")
            .body(Body::empty())
            .unwrap();
        let res = svc.clone().oneshot(r).await.unwrap();
        // AWS answers a refused credential with 403.
        assert_eq!(res.status(), 403);
        assert_eq!(
            res.headers()["x-amzn-errortype"],
            "UnrecognizedClientException"
        );
        let mut r = Request::get("/").body(Body::empty()).unwrap();
        r.extensions_mut().insert(ErrorDialect::Anthropic);
        let res = svc.oneshot(r).await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers().get("x-amzn-errortype").is_none());
    }

    #[tokio::test]
    async fn the_inner_service_is_called_only_once_ready() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mut svc = tower_test::mock::Spawn::new(ApiKeyAuthLayer::disabled().layer(mock));
        handle.allow(0);
        assert!(svc.poll_ready().is_pending(), "readiness is the inner's");
        handle.allow(1);
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(Request::new(Body::empty()));
        let (req, send) = handle.next_request().await.unwrap();
        assert_eq!(
            req.extensions().get::<ApiKeyId>().unwrap().0.as_ref(),
            "anonymous"
        );
        send.send_response(Response::new(Body::empty()));
        assert_eq!(fut.await.unwrap().status(), 200);
    }

    #[test]
    fn static_keys_never_print_their_keys() {
        let debug = format!("{:?}", ApiKeyAuthLayer::new(["hunter2"]));
        assert!(
            !debug.contains("hunter2") && !debug.contains("104"),
            "{debug}"
        );
    }
}
