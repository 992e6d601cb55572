//! The non-standard header names the gateway reads or writes on every request, parsed once.
//!
//! `headers.get("x-request-id")` or `headers.insert("x-gateway-provider", v)` parses and checks the
//! name on every call (http's `HdrName::from_static`, then a hash of it); a `static` built with
//! the `const` [`HeaderName::from_static`] is checked at compile time, and using it costs a clone
//! of a static slice. Standard names are `http::header`'s; the rate limiter's own are in
//! `rate_limit::decision`.

use http::HeaderName;

/// The request id: read from the client, sent upstream, echoed in the reply.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Bedrock's spelling of the request id in a reply.
pub(crate) static X_AMZN_REQUESTID: HeaderName = HeaderName::from_static("x-amzn-requestid");
/// A client's key, when it is not in `Authorization: Bearer` (Anthropic's clients).
pub(crate) static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// The provider that served a reply.
pub(crate) static X_GATEWAY_PROVIDER: HeaderName = HeaderName::from_static("x-gateway-provider");
/// The model group's deployment that served a reply.
pub(crate) static X_GATEWAY_DEPLOYMENT: HeaderName =
    HeaderName::from_static("x-gateway-deployment");
/// A call's cost in US dollars, for a key with a budget.
pub(crate) static X_GATEWAY_COST: HeaderName = HeaderName::from_static("x-gateway-cost");
/// OpenAI's retry hint in milliseconds.
pub(crate) static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
/// Bedrock's error type.
pub(crate) static X_AMZN_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
/// Bedrock's content type of a stream's event payloads.
pub(crate) static X_AMZN_BEDROCK_CONTENT_TYPE: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-content-type");
/// Asks nginx-style proxies in front not to buffer a stream.
pub(crate) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
