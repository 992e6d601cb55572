//! Client auth on the Bedrock runtime surface: what AWS SDKs send, checked against gateway keys.
//!
//! Accepted, in order:
//! 1. `Authorization: AWS4-HMAC-SHA256 …` (SigV4, what plain boto3 sends): the access key id must be
//!    one of the configured [`AwsClientCredential`]s and the signature must verify against its
//!    secret; the request then counts as the gateway key the credential maps to.
//! 2. `Authorization: Bearer <gateway key>` (Bedrock API-key clients, `AWS_BEARER_TOKEN_BEDROCK`)
//!    or `x-api-key: <gateway key>`.
//!
//! Anything else is a 403 in the AWS shape (`x-amzn-ErrorType: UnrecognizedClientException` or
//! `InvalidSignatureException`, body `{"message"}`), before the request reaches the rate limiter.
//! SigV4 signs the body, so this layer reads it (bounded, 413 beyond the limit) and hands the inner
//! service a `Request<Body>` over the bytes.
//!
//! ```
//! use open_bedrock_server::body::Body;
//! use open_bedrock_server::surface::bedrock_runtime::auth::BedrockAuthLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(BedrockAuthLayer::new(&["k".to_owned()], &[], 1024))
//!     .service_fn(|_req: http::Request<Body>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
//!     });
//! let req = http::Request::post("/model/m/invoke").body(Body::empty()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 403);
//! assert_eq!(res.headers()["x-amzn-errortype"], "UnrecognizedClientException");
//! let req = http::Request::post("/model/m/invoke").header("authorization", "Bearer k").body(Body::empty()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
//! # });
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{presented_key, ApiKeyId};
use crate::body::{Body, BoxError};
use crate::config::AwsClientCredential;
use crate::detect::{check_declared_length, read_bounded, DEFAULT_BODY_READ_TIMEOUT};
use crate::error::{ErrorDialect, GatewayError};
use crate::sigv4;

#[derive(Debug)]
struct Keys {
    keys: Vec<Box<[u8]>>,
    ids: Vec<ApiKeyId>,
    /// Access key id → (secret, index of the gateway key it maps to).
    credentials: Vec<(String, String, usize)>,
    disabled: bool,
    limit: usize,
}

/// Layer that applies [`BedrockAuth`].
#[derive(Debug, Clone)]
pub struct BedrockAuthLayer {
    keys: Arc<Keys>,
}

impl BedrockAuthLayer {
    /// Accepts the gateway `keys` and the SigV4 `credentials` that map to one of them; reads bodies
    /// up to `limit` bytes. A credential naming an unknown key is ignored.
    pub fn new(keys: &[String], credentials: &[AwsClientCredential], limit: usize) -> Self {
        let credentials = credentials
            .iter()
            .filter_map(|c| {
                let index = keys.iter().position(|k| k == c.api_key.expose())?;
                Some((
                    c.access_key_id.clone(),
                    c.secret_access_key.expose().to_owned(),
                    index,
                ))
            })
            .collect();
        BedrockAuthLayer {
            keys: Arc::new(Keys {
                keys: keys
                    .iter()
                    .map(|k| k.as_bytes().to_vec().into_boxed_slice())
                    .collect(),
                ids: (1..=keys.len())
                    .map(|i| ApiKeyId(Arc::from(format!("key-{i}"))))
                    .collect(),
                credentials,
                disabled: false,
                limit,
            }),
        }
    }

    /// Lets every request through as `anonymous` (auth disabled explicitly); bodies are still bounded.
    pub fn disabled(limit: usize) -> Self {
        BedrockAuthLayer {
            keys: Arc::new(Keys {
                keys: Vec::new(),
                ids: Vec::new(),
                credentials: Vec::new(),
                disabled: true,
                limit,
            }),
        }
    }
}

impl<S> Layer<S> for BedrockAuthLayer {
    type Service = BedrockAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BedrockAuth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// Middleware that authenticates Bedrock runtime requests (SigV4, Bearer or `x-api-key`).
#[derive(Debug, Clone)]
pub struct BedrockAuth<S> {
    inner: S,
    keys: Arc<Keys>,
}

fn denied(aws_type: &'static str, message: &'static str) -> GatewayError {
    GatewayError::permission_denied(message).with_aws_type(aws_type)
}

impl Keys {
    fn find(&self, presented: &[u8]) -> Option<usize> {
        crate::auth::find_key(&self.keys, presented)
    }

    /// What the headers alone decide, before any of the body is read: an unknown key, a bad or
    /// stale signature header is refused here, so an unauthenticated client cannot make the
    /// gateway buffer a large body.
    fn precheck(&self, parts: &http::request::Parts) -> Result<Precheck, GatewayError> {
        if self.disabled {
            return Ok(Precheck::Anonymous);
        }
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(sig) = authorization.and_then(sigv4::parse_authorization) {
            let Some(pos) = self
                .credentials
                .iter()
                .position(|(id, _, _)| id == sig.access_key)
            else {
                return Err(denied(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ));
            };
            let fresh = parts
                .headers
                .get("x-amz-date")
                .and_then(|v| v.to_str().ok())
                .and_then(sigv4::parse_amz_date)
                .is_some_and(|date| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                        .unwrap_or(0);
                    (now - date).abs() <= MAX_SKEW.as_secs() as i64
                });
            if !fresh {
                return Err(denied(
                    "InvalidSignatureException",
                    "Signature expired: the request's x-amz-date is more than 15 minutes from the gateway's time.",
                ));
            }
            return Ok(Precheck::Signed(pos));
        }
        let probe = Request::from_parts(parts.clone(), ());
        match presented_key(&probe).map(|k| self.find(k)) {
            Some(Some(i)) => Ok(Precheck::Key(i)),
            Some(None) => Err(denied("UnrecognizedClientException", "The API key included in the request is invalid.")),
            None => Err(denied(
                "UnrecognizedClientException",
                "Missing credentials: sign the request with SigV4 or send 'Authorization: Bearer <key>'.",
            )),
        }
    }

    /// The key index the request authenticates as (`None` when auth is disabled), or the 403:
    /// a SigV4 signature is verified over the body that was actually received.
    fn check(
        &self,
        pre: Precheck,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Option<usize>, GatewayError> {
        match pre {
            Precheck::Anonymous => Ok(None),
            Precheck::Key(i) => Ok(Some(i)),
            Precheck::Signed(pos) => {
                let (_, secret, index) = &self.credentials[pos];
                let now = std::time::SystemTime::now();
                match sigv4::verify_fresh(parts, body, secret, now, MAX_SKEW) {
                    Ok(()) => Ok(Some(*index)),
                    Err(sigv4::VerifyError::Expired) => Err(denied(
                        "InvalidSignatureException",
                        "Signature expired: the request's x-amz-date is more than 15 minutes from the gateway's time.",
                    )),
                    Err(_) => Err(denied(
                        "InvalidSignatureException",
                        "The request signature we calculated does not match the signature you provided.",
                    )),
                }
            }
        }
    }
}

/// AWS allows a signed request's clock to be 15 minutes off.
const MAX_SKEW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What the headers alone established.
#[derive(Debug, Clone, Copy)]
enum Precheck {
    /// Auth is disabled.
    Anonymous,
    /// A gateway key (Bearer or `x-api-key`), by position.
    Key(usize),
    /// A SigV4 header for a known credential (by position); the signature is checked once the
    /// body is in.
    Signed(usize),
}

impl<S, B> Service<Request<B>> for BedrockAuth<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the inner service is awaited in the call, after the body is read.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let keys = self.keys.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            if let Err(e) = check_declared_length(&parts.headers, keys.limit) {
                return Ok(e.into_response(ErrorDialect::Bedrock));
            }
            let pre = match keys.precheck(&parts) {
                Ok(p) => p,
                Err(e) => return Ok(e.into_response(ErrorDialect::Bedrock)),
            };
            let bytes = match read_bounded(body, keys.limit, DEFAULT_BODY_READ_TIMEOUT).await {
                Ok(b) => b,
                Err(e) if e.status() == http::StatusCode::REQUEST_TIMEOUT => {
                    return Ok(e
                        .with_aws_type("ValidationException")
                        .into_response(ErrorDialect::Bedrock))
                }
                Err(e) => return Ok(e.into_response(ErrorDialect::Bedrock)),
            };
            let id = match keys.check(pre, &parts, &bytes) {
                Ok(Some(i)) => keys.ids[i].clone(),
                Ok(None) => ApiKeyId(Arc::from("anonymous")),
                Err(e) => return Ok(e.into_response(ErrorDialect::Bedrock)),
            };
            parts.extensions.insert(id.clone());
            let mut res =
                tower::ServiceExt::oneshot(inner, Request::from_parts(parts, Body::from(bytes)))
                    .await?;
            // The access log reads the key id from the response.
            res.extensions_mut().insert(id);
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn svc(
        creds: &[AwsClientCredential],
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        BedrockAuthLayer::new(&["k1".into(), "k2".into()], creds, 64).layer(tower::service_fn(
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

    async fn call(
        creds: &[AwsClientCredential],
        req: Request<Body>,
    ) -> (u16, Option<String>, String) {
        let res = svc(creds).oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let t = res
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, t, String::from_utf8(body.to_vec()).unwrap())
    }

    /// A request signed like botocore signs it (canonical request per `sigv4`, secret `s3cr3t`).
    fn signed(secret: &str, body: &'static str) -> Request<Body> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        signed_at(secret, body, i64::try_from(now).unwrap())
    }

    fn signed_at(secret: &str, body: &'static str, secs: i64) -> Request<Body> {
        use hmac::{KeyInit, Mac};
        use sha2::{Digest, Sha256};
        let amz = sigv4::format_amz_date(secs);
        let day = amz[..8].to_owned();
        let build = |auth: &str| {
            Request::post("http://gw/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
                .header("host", "gw")
                .header("x-amz-date", amz.as_str())
                .header("content-type", "application/json")
                .header("authorization", auth)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let template = format!("AWS4-HMAC-SHA256 Credential=AKIDCLIENT/{day}/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=");
        let parts = build(&template);
        let auth = sigv4::parse_authorization(&template).unwrap();
        let canonical = sigv4::canonical_request(&parts, body.as_bytes(), &auth);
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{day}/us-east-1/bedrock/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mac = |k: &[u8], d: &[u8]| {
            let mut m = hmac::Hmac::<Sha256>::new_from_slice(k).unwrap();
            m.update(d);
            m.finalize().into_bytes().to_vec()
        };
        let mut k = mac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
        for part in [&b"us-east-1"[..], b"bedrock", b"aws4_request"] {
            k = mac(&k, part);
        }
        let sig = hex::encode(mac(&k, sts.as_bytes()));
        let parts = build(&format!("{template}{sig}"));
        Request::from_parts(parts, Body::from(body))
    }

    fn cred() -> Vec<AwsClientCredential> {
        vec![AwsClientCredential {
            access_key_id: "AKIDCLIENT".into(),
            secret_access_key: "s3cr3t".into(),
            api_key: "k2".into(),
        }]
    }

    #[tokio::test]
    async fn sigv4_with_a_mapped_credential_counts_as_its_key() {
        assert_eq!(
            call(&cred(), signed("s3cr3t", "{}")).await,
            (200, None, "key-2".into())
        );
    }

    #[tokio::test]
    async fn a_replayed_old_signature_is_refused() {
        let (status, kind, body) = call(&cred(), signed_at("s3cr3t", "{}", 1_704_067_200)).await;
        assert_eq!(
            (status, kind.as_deref()),
            (403, Some("InvalidSignatureException"))
        );
        assert!(body.contains("expired"), "{body}");
    }

    #[tokio::test]
    async fn bad_signatures_and_unknown_access_keys_are_403() {
        let (status, t, body) = call(&cred(), signed("wrong", "{}")).await;
        assert_eq!(
            (status, t.as_deref()),
            (403, Some("InvalidSignatureException"))
        );
        assert!(body.contains("signature"), "{body}");
        let (status, t, _) = call(&[], signed("s3cr3t", "{}")).await;
        assert_eq!(
            (status, t.as_deref()),
            (403, Some("UnrecognizedClientException"))
        );
        // A credential mapped to a key that is not configured is ignored.
        let orphan = vec![AwsClientCredential {
            api_key: "nope".into(),
            ..cred()[0].clone()
        }];
        assert_eq!(call(&orphan, signed("s3cr3t", "{}")).await.0, 403);
    }

    #[tokio::test]
    async fn bearer_and_x_api_key() {
        let r = Request::post("/")
            .header("authorization", "Bearer k1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&[], r).await, (200, None, "key-1".into()));
        let r = Request::post("/")
            .header("x-api-key", "k2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&[], r).await.2, "key-2");
        let r = Request::post("/")
            .header("authorization", "Bearer k3")
            .body(Body::empty())
            .unwrap();
        let (status, t, body) = call(&[], r).await;
        assert_eq!(
            (status, t.as_deref()),
            (403, Some("UnrecognizedClientException"))
        );
        assert!(body.starts_with("{\"message\""), "{body}");
    }

    #[tokio::test]
    async fn body_over_the_limit_is_413() {
        let r = Request::post("/")
            .header("authorization", "Bearer k1")
            .body(Body::from("x".repeat(100)))
            .unwrap();
        assert_eq!(call(&[], r).await.0, 413);
    }
}
