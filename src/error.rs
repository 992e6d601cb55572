//! [`GatewayError`]: the one error type of the gateway, and the one place that renders it.
//!
//! Every failure — bad input, a rejected key, an unknown model, an upstream fault — is a
//! `GatewayError` carrying the HTTP status the client's SDK expects, the OpenAI `type`/`code`/`param`,
//! whether a retry may help, and an optional `Retry-After`. [`GatewayError::to_response`] renders it
//! in the client's dialect (OpenAI, Anthropic or Bedrock) with any response body built from bytes
//! ([`GatewayError::into_response`] with the gateway's own); [`GatewayError::to_body_json`] renders the
//! in-band error event of a stream that has already started. Nothing else in the crate builds an
//! error body.
//!
//! ```
//! use std::time::Duration;
//! use open_bedrock_server::error::{ErrorDialect, ErrorKind, ErrorSummary, GatewayError};
//!
//! // The gateway's own 429: never retried upstream, rendered with `Retry-After`.
//! let limited = GatewayError::rate_limited(Duration::from_millis(1500));
//! assert_eq!((limited.kind(), limited.status().as_u16()), (ErrorKind::RateLimited, 429));
//! assert!(!limited.is_retryable());
//! let res = limited.clone().into_response(ErrorDialect::OpenAi);
//! assert_eq!(res.headers()["retry-after"], "2");
//! assert_eq!(res.extensions().get::<ErrorSummary>().unwrap().kind, ErrorKind::RateLimited);
//!
//! // One error, three shapes.
//! assert_eq!(limited.to_body_json(ErrorDialect::OpenAi)["error"]["code"], "rate_limit_exceeded");
//! assert_eq!(limited.to_body_json(ErrorDialect::Anthropic)["error"]["type"], "rate_limit_error");
//! let bedrock = limited.into_response(ErrorDialect::Bedrock);
//! assert_eq!(bedrock.headers()["x-amzn-errortype"], "ThrottlingException");
//!
//! // An upstream 500 reaches the client as 502 and may be retried.
//! let upstream = GatewayError::upstream_status(500, "upstream broke");
//! assert_eq!(upstream.status(), 502);
//! assert!(upstream.is_retryable());
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::Body;

/// Which error shape the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorDialect {
    /// `{"error":{"message","type","param","code"}}`.
    #[default]
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"message"}` with an `x-amzn-ErrorType` header.
    Bedrock,
}

/// What went wrong, at the granularity that decides status, retry and rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or unsupported (400).
    InvalidRequest,
    /// Missing or wrong gateway key (401).
    Unauthenticated,
    /// Not allowed (403).
    PermissionDenied,
    /// Unknown model (404).
    ModelNotFound,
    /// Unknown path (404).
    NotFound,
    /// Known path, wrong method (405).
    MethodNotAllowed,
    /// Body over the limit (413).
    PayloadTooLarge,
    /// The gateway's own limit rejected the request (429).
    RateLimited,
    /// The gateway is shedding load (503).
    Overloaded,
    /// The provider that serves the model is not configured on this gateway (503, never retried).
    ProviderNotConfigured,
    /// The upstream answered with an error status.
    Upstream,
    /// The upstream could not be reached or dropped the connection (502).
    UpstreamConnect,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The upstream answered something that is not the protocol (502).
    UpstreamProtocol,
    /// The gateway's own upstream credentials were refused (500).
    UpstreamAuth,
    /// A bug or an unexpected state (500).
    Internal,
}

/// The gateway's error. Small (one pointer) so `Result<_, GatewayError>` stays cheap on the hot path.
#[derive(Clone)]
pub struct GatewayError {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    status: StatusCode,
    /// Status the upstream answered with, for retry classification.
    upstream_status: Option<u16>,
    message: Cow<'static, str>,
    param: Option<Cow<'static, str>>,
    code: Option<Cow<'static, str>>,
    retry_after: Option<Duration>,
    /// The Bedrock exception name, when the error came from Bedrock (used by the Bedrock dialect).
    aws_type: Option<Cow<'static, str>>,
    /// Overrides the retry classification.
    retryable: Option<bool>,
}

impl GatewayError {
    fn new(kind: ErrorKind, status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            inner: Box::new(Inner {
                kind,
                status,
                upstream_status: None,
                message: message.into(),
                param: None,
                code: None,
                retry_after: None,
                aws_type: None,
                retryable: None,
            }),
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::InvalidRequest, StatusCode::BAD_REQUEST, message)
    }

    /// 400 for a missing required field, naming it in `param`.
    pub fn missing_field(param: impl Into<Cow<'static, str>>) -> Self {
        let param = param.into();
        Self::invalid_request(format!("Missing required parameter: '{param}'."))
            .with_param(param)
            .with_code("missing_required_parameter")
    }

    /// 400 `unsupported_parameter` / `unsupported_value` for a field the target cannot honour.
    pub fn unsupported(
        param: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::invalid_request(message)
            .with_param(param)
            .with_code("unsupported_parameter")
    }

    /// 401 with code `invalid_api_key`.
    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::Unauthenticated,
            StatusCode::UNAUTHORIZED,
            message,
        )
        .with_code("invalid_api_key")
    }

    /// 403.
    pub fn permission_denied(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::PermissionDenied, StatusCode::FORBIDDEN, message)
    }

    /// 404 `model_not_found`, before any upstream is called.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::ModelNotFound,
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 404 for an unknown path.
    pub fn not_found(method: &http::Method, path: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            StatusCode::NOT_FOUND,
            format!("Invalid URL ({method} {path})"),
        )
        .with_code("not_found")
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &http::Method, path: &str) -> Self {
        Self::new(
            ErrorKind::MethodNotAllowed,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed for {path}"),
        )
        .with_code("method_not_allowed")
    }

    /// 413 for a body over `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than the limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 429 from the gateway's own rate limit.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(
            ErrorKind::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests. Please try again later.",
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(Some(retry_after))
    }

    /// 429 from the gateway's own tokens-per-minute budget.
    pub fn tokens_rate_limited(retry_after: Duration) -> Self {
        let mut e = Self::new(
            ErrorKind::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for tokens per minute. Please try again later.",
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(Some(retry_after));
        e.inner.aws_type = Some(Cow::Borrowed("ThrottlingException"));
        e
    }

    /// 403 `model_not_allowed`: the key's allowlist does not include `model` (checked before any
    /// upstream call).
    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            ErrorKind::PermissionDenied,
            StatusCode::FORBIDDEN,
            format!("This API key is not allowed to use the model `{model}`."),
        )
        .with_param("model")
        .with_code("model_not_allowed")
    }

    /// 429 `budget_exceeded`: the key's `budget` (`usd_per_day`, `usd_per_month`,
    /// `tokens_per_day`) is spent; it resets at `resets_at` (RFC 3339), `retry_after` from now.
    pub fn budget_exceeded(budget: &str, resets_at: &str, retry_after: Duration) -> Self {
        let mut e = Self::new(
            ErrorKind::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Budget exceeded: this API key has spent its {budget} budget. It resets at {resets_at}."
            ),
        )
        .with_code("budget_exceeded")
        .with_retry_after(Some(retry_after));
        e.inner.aws_type = Some(Cow::Borrowed("ThrottlingException"));
        e
    }

    /// 429 `concurrency_limit_exceeded`: the key already has `limit` requests (streams included)
    /// in flight.
    pub fn key_concurrency_limited(limit: usize) -> Self {
        let mut e = Self::new(
            ErrorKind::RateLimited,
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Concurrency limit reached: this API key may have {limit} requests (open streams included) in flight at once."
            ),
        )
        .with_code("concurrency_limit_exceeded")
        .with_retry_after(Some(Duration::from_secs(1)));
        e.inner.aws_type = Some(Cow::Borrowed("ThrottlingException"));
        e
    }

    /// 503 when the gateway sheds load.
    pub fn overloaded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::Overloaded,
            StatusCode::SERVICE_UNAVAILABLE,
            message,
        )
        .with_code("overloaded")
        .with_retry_after(Some(Duration::from_secs(1)))
    }

    /// 503 for a model whose provider is not configured here: a configuration matter, so never
    /// retried, and not "overloaded" in any dialect. `how` says what to set.
    pub fn provider_not_configured(provider: &str, how: &str) -> Self {
        Self::new(
            ErrorKind::ProviderNotConfigured,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("The {provider} provider is not configured on this gateway ({how})."),
        )
        .with_code("provider_not_configured")
    }

    /// An error status from an upstream. 4xx pass through with their status; 5xx become 502,
    /// except 503 (stays 503: the upstream is overloaded) and 504 (stays 504).
    pub fn upstream_status(status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        let client_status = match status {
            400..=499 => StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            503 => StatusCode::SERVICE_UNAVAILABLE,
            504 => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        let mut e = Self::new(ErrorKind::Upstream, client_status, message);
        e.inner.upstream_status = Some(status);
        e
    }

    /// 502: connecting to the upstream failed, or it reset the connection.
    pub fn upstream_connect(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::UpstreamConnect, StatusCode::BAD_GATEWAY, message)
            .with_code("upstream_connect_error")
    }

    /// 504: the upstream did not answer in time.
    pub fn upstream_timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::UpstreamTimeout,
            StatusCode::GATEWAY_TIMEOUT,
            message,
        )
        .with_code("upstream_timeout")
    }

    /// 502: the upstream answered something that is not valid for its protocol.
    pub fn upstream_protocol(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::UpstreamProtocol,
            StatusCode::BAD_GATEWAY,
            message,
        )
        .with_code("upstream_protocol_error")
    }

    /// 500: the gateway's own upstream credentials were refused (never a 401: the client's key was fine).
    pub fn upstream_auth(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::UpstreamAuth,
            StatusCode::INTERNAL_SERVER_ERROR,
            message,
        )
        .with_code("upstream_auth_error")
    }

    /// 500: an unexpected state.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            ErrorKind::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            message,
        )
    }

    /// Sets `param`.
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.inner.param = Some(param.into());
        self
    }

    /// Sets `code`.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Self {
        self.inner.code = Some(code.into());
        self
    }

    /// Overrides the client status (used by the Bedrock error table).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = status;
        self
    }

    /// Sets the `Retry-After` hint.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.inner.retry_after = retry_after;
        self
    }

    /// Records the Bedrock exception name (for the Bedrock dialect).
    pub fn with_aws_type(mut self, aws_type: impl Into<Cow<'static, str>>) -> Self {
        self.inner.aws_type = Some(aws_type.into());
        self
    }

    /// Overrides whether a retry may help (e.g. a timeout after the upstream accepted the work).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.inner.retryable = Some(retryable);
        self
    }

    /// Marks the error as retryable by status, as if the upstream had answered `status`.
    pub fn with_upstream_status(mut self, status: u16) -> Self {
        self.inner.upstream_status = Some(status);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The status the upstream answered, when it answered.
    pub fn upstream_status_code(&self) -> Option<u16> {
        self.inner.upstream_status
    }

    /// The message the client gets.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The offending request field.
    pub fn param(&self) -> Option<&str> {
        self.inner.param.as_deref()
    }

    /// The machine-readable code.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The `Retry-After` hint.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether another attempt at the upstream may succeed: 408, 429, 5xx from the upstream,
    /// connect/reset failures and timeouts, or what the provider marked so (a Bedrock refusal the
    /// host's clock caused). Never other 4xx, never the gateway's own rejections.
    pub fn is_retryable(&self) -> bool {
        if let Some(r) = self.inner.retryable {
            return r;
        }
        match self.inner.kind {
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamTimeout => true,
            ErrorKind::Upstream => matches!(
                self.inner.upstream_status,
                Some(408 | 429 | 500 | 502 | 503 | 504)
            ),
            _ => false,
        }
    }

    /// The OpenAI `type` string.
    pub fn openai_type(&self) -> &'static str {
        match self.inner.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::ModelNotFound
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Unauthenticated => "invalid_request_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited if self.inner.message.contains("tokens") => "tokens",
            ErrorKind::RateLimited => "requests",
            ErrorKind::Upstream => match self.inner.status.as_u16() {
                429 => "rate_limit_error",
                401 => "authentication_error",
                403 => "permission_error",
                400..=499 => "invalid_request_error",
                _ => "server_error",
            },
            _ => "server_error",
        }
    }

    fn anthropic_type(&self) -> &'static str {
        if self.inner.kind == ErrorKind::ProviderNotConfigured {
            return "api_error";
        }
        match self.inner.status.as_u16() {
            400 | 405 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    /// The status `dialect`'s clients get: AWS answers a missing or wrong credential with 403.
    fn status_in(&self, dialect: ErrorDialect) -> StatusCode {
        if dialect == ErrorDialect::Bedrock && self.inner.kind == ErrorKind::Unauthenticated {
            StatusCode::FORBIDDEN
        } else {
            self.inner.status
        }
    }

    fn aws_type(&self) -> Cow<'static, str> {
        if let Some(t) = &self.inner.aws_type {
            return t.clone();
        }
        Cow::Borrowed(match self.inner.status.as_u16() {
            401 => "UnrecognizedClientException",
            403 => "AccessDeniedException",
            404 => "ResourceNotFoundException",
            408 | 504 => "ModelTimeoutException",
            429 => "ThrottlingException",
            503 => "ServiceUnavailableException",
            400..=499 => "ValidationException",
            _ => "InternalServerException",
        })
    }

    /// The error body in `dialect`, as JSON (also the payload of an in-band stream error event).
    pub fn to_body_json(&self, dialect: ErrorDialect) -> serde_json::Value {
        match dialect {
            ErrorDialect::OpenAi => json!({
                "error": {
                    "message": self.message(),
                    "type": self.openai_type(),
                    "param": self.param(),
                    "code": self.code(),
                }
            }),
            ErrorDialect::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.message()},
            }),
            ErrorDialect::Bedrock => json!({ "message": self.message() }),
        }
    }

    /// Renders the error as an HTTP response in `dialect`, with the gateway's [`Body`]
    /// (a thin wrapper over [`to_response`](Self::to_response)).
    pub fn into_response(self, dialect: ErrorDialect) -> Response<Body> {
        self.to_response(dialect)
    }

    /// Renders the error as an HTTP response in `dialect` with any body that can be built from
    /// bytes (`axum::body::Body`, `http_body_util::Full<Bytes>`, [`Body`]): status, JSON body,
    /// `Retry-After`, `x-amzn-ErrorType`, `WWW-Authenticate` and the [`ErrorSummary`] extension.
    /// The one renderer of the crate.
    pub fn to_response<B: From<Bytes>>(self, dialect: ErrorDialect) -> Response<B> {
        let body = serde_json::to_vec(&self.to_body_json(dialect)).unwrap_or_default();
        let mut res = Response::new(B::from(Bytes::from(body)));
        *res.status_mut() = self.status_in(dialect);
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.inner.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            if dialect == ErrorDialect::OpenAi {
                let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                headers.insert(
                    crate::header_name::RETRY_AFTER_MS.clone(),
                    HeaderValue::from(ms),
                );
            }
        }
        if dialect == ErrorDialect::Bedrock {
            if let Ok(v) = HeaderValue::from_str(&self.aws_type()) {
                headers.insert(crate::header_name::X_AMZN_ERRORTYPE.clone(), v);
            }
        }
        if self.inner.kind == ErrorKind::Unauthenticated && dialect == ErrorDialect::OpenAi {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let status = res.status();
        res.extensions_mut().insert(ErrorSummary {
            kind: self.inner.kind,
            status,
        });
        res
    }
}

/// Attached to error responses so logging and metrics layers can see what failed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ErrorSummary {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The status sent.
    pub status: StatusCode,
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayError")
            .field("kind", &self.inner.kind)
            .field("status", &self.inner.status.as_u16())
            .field("upstream_status", &self.inner.upstream_status)
            .field("message", &self.inner.message)
            .field("code", &self.inner.code)
            .finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.inner.message, self.inner.status.as_u16())
    }
}

impl std::error::Error for GatewayError {}

/// Removes AWS account ids and ARNs from an upstream message before it reaches a client.
///
/// Hand-written instead of a regex: it runs on every upstream error message, and the two patterns
/// (`arn:` up to a delimiter, runs of exactly twelve digits) are trivial to scan for.
#[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
pub(crate) fn scrub_aws_identifiers(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if message[i..].starts_with("arn:aws") {
            let end = message[i..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ')' | ']'))
                .map(|n| i + n)
                .unwrap_or(bytes.len());
            out.push_str("<arn>");
            i = end;
            continue;
        }
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let run = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            let next = bytes.get(i + run);
            if run == 12 && !next.is_some_and(|b| b.is_ascii_alphanumeric()) {
                out.push_str("<account>");
                i += run;
                continue;
            }
            out.push_str(&message[i..i + run]);
            i += run;
            continue;
        }
        let ch_len = message[i..].chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&message[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// An error and its sources, `: `-joined (what a log line or a 502's message says of a failed
/// connection or call).
#[cfg(any(feature = "openai", feature = "bedrock"))]
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_5xx_becomes_502_and_is_retryable() {
        let e = GatewayError::upstream_status(500, "boom");
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert!(e.is_retryable());
        let e = GatewayError::upstream_status(400, "bad");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(!e.is_retryable());
        assert!(GatewayError::upstream_status(429, "slow").is_retryable());
        assert!(!GatewayError::rate_limited(Duration::from_secs(1)).is_retryable());
    }

    #[test]
    fn provider_not_configured_is_503_never_retried_never_overloaded() {
        let e = GatewayError::provider_not_configured("Bedrock", "set AWS_REGION");
        assert_eq!(e.status(), 503);
        assert!(!e.is_retryable());
        let v = e.to_body_json(ErrorDialect::OpenAi);
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "provider_not_configured");
        assert_eq!(
            e.to_body_json(ErrorDialect::Anthropic)["error"]["type"],
            "api_error"
        );
        let res = e.into_response(ErrorDialect::Bedrock);
        assert_eq!(
            res.headers()["x-amzn-errortype"],
            "ServiceUnavailableException"
        );
        assert!(res.headers().get("retry-after").is_none());
    }

    #[test]
    fn openai_shape() {
        let v = GatewayError::missing_field("model").to_body_json(ErrorDialect::OpenAi);
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn anthropic_shape_and_retry_after() {
        let res = GatewayError::rate_limited(Duration::from_millis(1500))
            .into_response(ErrorDialect::Anthropic);
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "2");
    }

    #[test]
    fn scrubs_arns_and_accounts() {
        let s = scrub_aws_identifiers(
            "User: arn:aws:iam::123456789012:role/x is not authorized; account 123456789012, id 1234",
        );
        assert_eq!(
            s,
            "User: <arn> is not authorized; account <account>, id 1234"
        );
        assert_eq!(
            scrub_aws_identifiers("héllo 1234567890123"),
            "héllo 1234567890123"
        );
    }
}
