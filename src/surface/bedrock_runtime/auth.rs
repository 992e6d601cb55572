//! SigV4 client auth: what plain boto3 and the AWS SDKs send, checked against gateway keys.
//!
//! [`SigV4AuthLayer`] acts on requests whose `Authorization` is `AWS4-HMAC-SHA256 …` and lets every
//! other request through untouched, so it sits in front of the API-key auth
//! ([`crate::auth`]), which then accepts the `Authorization: Bearer` / `x-api-key` clients of the
//! same routes (Bedrock API-key clients, `AWS_BEARER_TOKEN_BEDROCK`).
//!
//! A signed request must name a configured [`AwsClientCredential`], be signed for the `bedrock`
//! service in a well-formed region, sign its `host` and `x-amz-date` headers, and carry a fresh
//! `x-amz-date` (within 15 minutes), or it is refused with a 403 before any of its body is read
//! (`UnrecognizedClientException` / `InvalidSignatureException` in the AWS shape). The request then
//! counts as the gateway key the credential maps to (an [`ApiKeyId`] extension, which the API-key
//! layer honours). SigV4 signs the payload, so the signature itself is checked over the body as it
//! is read: when the client sent `x-amz-content-sha256` the signature is verified at once against
//! that claim and the body must hash to it; otherwise (what botocore sends) the body is hashed as
//! it streams and the signature is verified when it ends. Either failure fails the body read with a
//! 403 that the detection stage answers — nothing unverified reaches the core.
//!
//! (A forged signature for a known access key counts against that key's rate limit before its body
//! is read, as the key is known from the header; its request never goes further.)
//!
//! Each access key may have at most `max_concurrent` requests in flight
//! ([`SigV4AuthLayer::max_concurrent_per_access_key`], default 64): beyond it a request is a 429
//! `ThrottlingException` at once. The slot is held by the response body, so a stream counts until
//! its last byte.
//!
//! ```
//! use open_bedrock_server::config::AwsClientCredential;
//! use open_bedrock_server::surface::bedrock_runtime::auth::SigV4AuthLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(SigV4AuthLayer::new(&["k".to_owned()], &[]))
//!     .service_fn(|_req: http::Request<_>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(open_bedrock_server::body::Body::empty()))
//!     });
//! let req = http::Request::post("/model/m/invoke")
//!     .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00")
//!     .body(open_bedrock_server::body::Body::empty())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 403);
//! assert_eq!(res.headers()["x-amzn-errortype"], "UnrecognizedClientException");
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use http::{header, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::ApiKeyId;
use crate::body::BoxError;
use crate::config::AwsClientCredential;
use crate::error::{ErrorDialect, GatewayError};
use crate::load_shed::InFlightBody;
use crate::sigv4;

/// Requests one access key may have in flight by default.
pub const DEFAULT_MAX_CONCURRENT_PER_ACCESS_KEY: usize = 64;

/// AWS allows a signed request's clock to be 15 minutes off.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
struct Credential {
    access_key_id: String,
    secret: Arc<str>,
    key: ApiKeyId,
    slots: Arc<Semaphore>,
}

/// Layer that applies [`SigV4Auth`].
#[derive(Debug, Clone)]
pub struct SigV4AuthLayer {
    credentials: Arc<[Credential]>,
    disabled: bool,
}

impl SigV4AuthLayer {
    /// Accepts the SigV4 `credentials`, each counting as the gateway key (one of `keys`, named
    /// `key-1`, `key-2`, … by position) it maps to. A credential naming an unknown key is ignored.
    pub fn new(keys: &[String], credentials: &[AwsClientCredential]) -> Self {
        let credentials = credentials
            .iter()
            .filter_map(|c| {
                let index = keys.iter().position(|k| k == c.api_key.expose())?;
                Some(Credential {
                    access_key_id: c.access_key_id.clone(),
                    secret: Arc::from(c.secret_access_key.expose()),
                    key: ApiKeyId(Arc::from(format!("key-{}", index + 1))),
                    slots: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_PER_ACCESS_KEY)),
                })
            })
            .collect();
        SigV4AuthLayer {
            credentials,
            disabled: false,
        }
    }

    /// At most `max` requests in flight per access key (429 `ThrottlingException` beyond).
    pub fn max_concurrent_per_access_key(mut self, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        self.credentials = self
            .credentials
            .iter()
            .map(|c| Credential {
                access_key_id: c.access_key_id.clone(),
                secret: c.secret.clone(),
                key: c.key.clone(),
                slots: Arc::new(Semaphore::new(max)),
            })
            .collect();
        self
    }

    /// Checks nothing (auth disabled explicitly): signed requests pass like any other.
    pub fn disabled() -> Self {
        SigV4AuthLayer {
            credentials: Arc::from(Vec::new()),
            disabled: true,
        }
    }
}

impl<S> Layer<S> for SigV4AuthLayer {
    type Service = SigV4Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SigV4Auth {
            inner,
            credentials: self.credentials.clone(),
            disabled: self.disabled,
        }
    }
}

/// Middleware that authenticates SigV4-signed requests (see the [module docs](self)); other
/// requests pass through. The inner service gets the body as a [`SignedBody`].
#[derive(Debug, Clone)]
pub struct SigV4Auth<S> {
    inner: S,
    credentials: Arc<[Credential]>,
    disabled: bool,
}

fn denied(aws_type: &'static str, message: &'static str) -> GatewayError {
    GatewayError::permission_denied(message).with_aws_type(aws_type)
}

fn expired() -> GatewayError {
    denied(
        "InvalidSignatureException",
        "Signature expired: the request's x-amz-date is more than 15 minutes from the gateway's time.",
    )
}

fn mismatch() -> GatewayError {
    denied(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
    )
}

fn verify_error(e: sigv4::VerifyError) -> GatewayError {
    match e {
        sigv4::VerifyError::Expired => expired(),
        _ => mismatch(),
    }
}

/// What a signed head grants: the gateway key, the check owed at the end of the body, and the
/// access key's concurrency slot.
type Granted = (ApiKeyId, Box<PendingCheck>, OwnedSemaphorePermit);

/// `us-east-1`, `us-gov-west-1`, `eu-central-2`, …: at least three lowercase parts, the first of
/// two letters, the last a number.
fn is_region(region: &str) -> bool {
    let well_formed = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let first = region.split('-').next().unwrap_or_default();
    let last = region.rsplit('-').next().unwrap_or_default();
    region.len() <= 32
        && region.split('-').count() >= 3
        && region.split('-').all(well_formed)
        && first.len() == 2
        && last.bytes().all(|b| b.is_ascii_digit())
}

impl<S> SigV4Auth<S> {
    /// What the headers alone decide, before any of the body is read.
    fn check_head(&self, parts: &http::request::Parts) -> Result<Option<Granted>, GatewayError> {
        if self.disabled {
            return Ok(None);
        }
        let Some(sig) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(sigv4::parse_authorization)
        else {
            return Ok(None);
        };
        let Some(credential) = self
            .credentials
            .iter()
            .find(|c| c.access_key_id == sig.access_key)
        else {
            return Err(denied(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        };
        if sig.service != "bedrock" {
            return Err(denied(
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'bedrock'.",
            ));
        }
        if !is_region(sig.region) {
            return Err(denied(
                "InvalidSignatureException",
                "Credential should be scoped to a valid region.",
            ));
        }
        // An unsigned host or date could be replayed elsewhere or later.
        for required in ["host", "x-amz-date"] {
            if !sig
                .signed_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(required))
            {
                return Err(denied(
                    "InvalidSignatureException",
                    "The request must sign the host and x-amz-date headers.",
                ));
            }
        }
        sigv4::is_fresh(parts, SystemTime::now(), MAX_SKEW).map_err(|_| expired())?;
        // The signed head, kept for the check at the end of the body.
        let mut head = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .body(())
            .map_err(|e| GatewayError::internal(e.to_string()))?
            .into_parts()
            .0;
        head.headers = parts.headers.clone();
        let claimed = parts
            .headers
            .get(&crate::sigv4::X_AMZ_CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(claimed) = &claimed {
            // The claimed payload hash is signed: the signature can be checked now, and the body
            // must then hash to the claim.
            sigv4::verify_hash(&head, claimed, &credential.secret).map_err(verify_error)?;
        }
        let slot = credential.slots.clone().try_acquire_owned().map_err(|_| {
            GatewayError::rate_limited(Duration::from_secs(1))
                .with_aws_type("ThrottlingException")
                .with_code("too_many_concurrent_requests")
        })?;
        Ok(Some((
            credential.key.clone(),
            Box::new(PendingCheck {
                hasher: Sha256::new(),
                head,
                secret: credential.secret.clone(),
                claimed,
            }),
            slot,
        )))
    }
}

impl<S, B, ResB> Service<Request<B>> for SigV4Auth<S>
where
    S: Service<Request<SignedBody<B>>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Response = Response<InFlightBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.check_head(&parts) {
            Ok(None) => ResponseFuture::inner(
                self.inner
                    .call(Request::from_parts(parts, SignedBody::unsigned(body))),
                None,
            ),
            Ok(Some((key, check, slot))) => {
                parts.extensions.insert(key);
                ResponseFuture::inner(
                    self.inner.call(Request::from_parts(
                        parts,
                        SignedBody {
                            inner: body,
                            check: Some(check),
                        },
                    )),
                    Some(slot),
                )
            }
            Err(e) => {
                let dialect = parts
                    .extensions
                    .get::<ErrorDialect>()
                    .copied()
                    .unwrap_or(ErrorDialect::Bedrock);
                ResponseFuture::rejected(e.to_response(dialect))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SigV4Auth`].
    #[derive(Debug)]
    pub struct ResponseFuture<F, ResB> {
        #[pin]
        state: State<F, ResB>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, ResB> {
        Inner { #[pin] fut: F, slot: Option<OwnedSemaphorePermit> },
        Rejected { res: Option<Response<ResB>> },
    }
}

impl<F, ResB> ResponseFuture<F, ResB> {
    fn inner(fut: F, slot: Option<OwnedSemaphorePermit>) -> Self {
        ResponseFuture {
            state: State::Inner { fut, slot },
        }
    }

    fn rejected(res: Response<ResB>) -> Self {
        ResponseFuture {
            state: State::Rejected { res: Some(res) },
        }
    }
}

impl<F, E, ResB> Future for ResponseFuture<F, ResB>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<InFlightBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { fut, slot } => {
                let res = std::task::ready!(fut.poll(cx))?;
                let slot = slot.take();
                Poll::Ready(Ok(res.map(|body| InFlightBody::holding(body, slot))))
            }
            StateProj::Rejected { res } => match res.take() {
                Some(r) => Poll::Ready(Ok(r.map(|body| InFlightBody::holding(body, None)))),
                None => Poll::Pending,
            },
        }
    }
}

/// The signature check still owed when the body ends.
struct PendingCheck {
    hasher: Sha256,
    head: http::request::Parts,
    secret: Arc<str>,
    claimed: Option<String>,
}

impl std::fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCheck").finish_non_exhaustive()
    }
}

impl PendingCheck {
    fn finish(self) -> Result<(), GatewayError> {
        let hash = hex::encode(self.hasher.finalize());
        match &self.claimed {
            // Already verified against the claim: the body must be what was claimed.
            Some(claimed) if *claimed == hash => Ok(()),
            Some(_) => Err(mismatch()),
            None => sigv4::verify_hash(&self.head, &hash, &self.secret).map_err(verify_error),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body whose SigV4 signature (if it has one) is checked as it is read: its last
    /// frame is followed by a 403 [`GatewayError`] instead of the end when the check fails.
    #[derive(Debug)]
    pub struct SignedBody<B> {
        #[pin]
        inner: B,
        check: Option<Box<PendingCheck>>,
    }
}

impl<B> SignedBody<B> {
    /// A body with no signature to check.
    pub fn unsigned(inner: B) -> Self {
        SignedBody { inner, check: None }
    }
}

impl<B> HttpBody for SignedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(check), Some(data)) = (this.check.as_mut(), frame.data_ref()) {
                    check.hasher.update(data.chunk());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => match this.check.take().map(|c| c.finish()) {
                Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
                _ => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        // The check must run at the end, so an unchecked signed body is never "already over".
        self.check.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::detect::{Classified, DetectLayer, DetectedRequest};
    use crate::format::{InboundFormat, ReplyFormat};
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tower::ServiceExt;

    /// SigV4 → detection (which reads the body, as the gateway's stack does) → an echo of the key.
    fn svc(
        creds: &[AwsClientCredential],
    ) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
        let classify = |_: &http::request::Parts, _: &crate::detect::BodyHead| {
            Ok(Classified::new(
                InboundFormat::BedrockClaude,
                ReplyFormat::BedrockInvokeClaude,
            ))
        };
        tower::ServiceBuilder::new()
            .map_response(|res: Response<InFlightBody<Body>>| res.map(Body::new))
            .layer(SigV4AuthLayer::new(&["k1".into(), "k2".into()], creds))
            .layer(DetectLayer::new(64, classify))
            .service_fn(|req: Request<DetectedRequest>| async move {
                let id = req
                    .extensions()
                    .get::<ApiKeyId>()
                    .map(|i| i.0.to_string())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Body::from(id)))
            })
    }

    async fn call(
        creds: &[AwsClientCredential],
        req: Request<Body>,
    ) -> (u16, Option<String>, String) {
        let mut req = req;
        req.extensions_mut().insert(ErrorDialect::Bedrock);
        let res = svc(creds).oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let t = res
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, t, String::from_utf8(body.to_vec()).unwrap())
    }

    /// A request signed like botocore signs it (canonical request per `sigv4`).
    fn signed(secret: &str, body: &'static str) -> Request<Body> {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        signed_at(secret, body, i64::try_from(now).unwrap(), None)
    }

    fn signed_at(
        secret: &str,
        body: &'static str,
        secs: i64,
        claimed: Option<&str>,
    ) -> Request<Body> {
        use hmac::{KeyInit, Mac};
        let amz = sigv4::format_amz_date(secs);
        let day = amz[..8].to_owned();
        let build = |auth: &str| {
            let mut b =
                Request::post("http://gw/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
                    .header("host", "gw")
                    .header("x-amz-date", amz.as_str())
                    .header("content-type", "application/json")
                    .header("authorization", auth);
            if let Some(c) = claimed {
                b = b.header("x-amz-content-sha256", c);
            }
            b.body(()).unwrap().into_parts().0
        };
        let signed_headers = if claimed.is_some() {
            "content-type;host;x-amz-content-sha256;x-amz-date"
        } else {
            "content-type;host;x-amz-date"
        };
        let template = format!("AWS4-HMAC-SHA256 Credential=AKIDCLIENT/{day}/us-east-1/bedrock/aws4_request, SignedHeaders={signed_headers}, Signature=");
        let parts = build(&template);
        let auth = sigv4::parse_authorization(&template).unwrap();
        let hash = claimed
            .map(str::to_owned)
            .unwrap_or_else(|| sigv4::payload_hash(body.as_bytes()));
        let canonical = sigv4::canonical_request(&parts, &hash, &auth);
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

    fn now() -> i64 {
        i64::try_from(
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap()
    }

    /// `req` with its Authorization header rewritten by `edit` (the signature no longer matters:
    /// these checks come first).
    fn tampered(edit: impl Fn(&str) -> String) -> Request<Body> {
        let mut req = signed("s3cr3t", "{}");
        let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
        req.headers_mut()
            .insert("authorization", edit(&auth).parse().unwrap());
        req
    }

    #[tokio::test]
    async fn the_scope_and_the_signed_headers_are_checked_from_the_head() {
        for (what, req) in [
            ("service", tampered(|a| a.replace("/bedrock/", "/s3/"))),
            (
                "region",
                tampered(|a| a.replace("/us-east-1/", "/Nowhere!/")),
            ),
            (
                "host",
                tampered(|a| a.replace("content-type;host;x-amz-date", "content-type;x-amz-date")),
            ),
            (
                "date",
                tampered(|a| a.replace("content-type;host;x-amz-date", "content-type;host")),
            ),
        ] {
            let (status, kind, body) = call(&cred(), req).await;
            assert_eq!(status, 403, "{what}: {body}");
            assert_eq!(kind.as_deref(), Some("InvalidSignatureException"), "{what}");
        }
        assert!(
            is_region("us-gov-west-1") && is_region("eu-central-2") && is_region("ap-southeast-1")
        );
        assert!(!is_region("us-east") && !is_region("US-EAST-1") && !is_region("x-y-1"));
    }

    #[tokio::test]
    async fn an_access_key_has_a_bounded_number_of_requests_in_flight() {
        let svc = tower::ServiceBuilder::new()
            .layer(
                SigV4AuthLayer::new(&["k1".into(), "k2".into()], &cred())
                    .max_concurrent_per_access_key(1),
            )
            .service_fn(|_req: Request<SignedBody<Body>>| async {
                Ok::<_, Infallible>(Response::new(Body::from("streaming…")))
            });
        let first = svc.clone().oneshot(signed("s3cr3t", "{}")).await.unwrap();
        assert_eq!(first.status(), 200);
        let second = svc.clone().oneshot(signed("s3cr3t", "{}")).await.unwrap();
        assert_eq!(
            second.status(),
            429,
            "the first response still holds the key's slot"
        );
        assert_eq!(second.headers()["x-amzn-errortype"], "ThrottlingException");
        drop(first);
        let third = svc.oneshot(signed("s3cr3t", "{}")).await.unwrap();
        assert_eq!(
            third.status(),
            200,
            "the slot came back with the first body"
        );
    }

    #[tokio::test]
    async fn sigv4_with_a_mapped_credential_counts_as_its_key() {
        assert_eq!(
            call(&cred(), signed("s3cr3t", "{}")).await,
            (200, None, "key-2".into())
        );
    }

    #[tokio::test]
    async fn a_claimed_payload_hash_is_checked_before_and_after_the_body() {
        let good = sigv4::payload_hash(b"{}");
        assert_eq!(
            call(&cred(), signed_at("s3cr3t", "{}", now(), Some(&good))).await,
            (200, None, "key-2".into())
        );
        // The signature covers the claim, but the body is not what was claimed.
        let (status, t, _) = call(
            &cred(),
            signed_at("s3cr3t", "{\"x\":1}", now(), Some(&good)),
        )
        .await;
        assert_eq!(
            (status, t.as_deref()),
            (403, Some("InvalidSignatureException"))
        );
        // A wrong secret is refused from the headers alone.
        let (status, _, _) = call(&cred(), signed_at("nope", "{}", now(), Some(&good))).await;
        assert_eq!(status, 403);
    }

    #[tokio::test]
    async fn a_replayed_old_signature_is_refused() {
        let (status, kind, body) =
            call(&cred(), signed_at("s3cr3t", "{}", 1_704_067_200, None)).await;
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
    async fn unsigned_requests_pass_through_to_the_key_auth() {
        let r = Request::post("/")
            .header("authorization", "Bearer k1")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(call(&[], r).await, (200, None, String::new()));
    }
}
