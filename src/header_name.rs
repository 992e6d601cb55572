//! The non-standard header names the gateway reads or writes per request, parsed once.
//!
//! `headers.get("x-request-id")` or `headers.insert("x-gateway-provider", v)` parses and checks the
//! name on every call (http's `HdrName::from_static`, then a hash of it); a `static` built with
//! the `const` [`HeaderName::from_static`] is checked at compile time, and using it costs a clone
//! of a static slice. Standard names are `http::header`'s; the rate limiter's own are in
//! `rate_limit::decision`, SigV4's in `sigv4`.

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
/// Bedrock's token counts on a complete InvokeModel reply.
pub(crate) static X_AMZN_BEDROCK_INPUT_TOKEN_COUNT: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-input-token-count");
pub(crate) static X_AMZN_BEDROCK_OUTPUT_TOKEN_COUNT: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-output-token-count");
pub(crate) static X_AMZN_BEDROCK_CACHE_READ_INPUT_TOKEN_COUNT: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-cache-read-input-token-count");
pub(crate) static X_AMZN_BEDROCK_CACHE_WRITE_INPUT_TOKEN_COUNT: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-cache-write-input-token-count");
/// The guardrail an InvokeModel request names, its version, and whether to trace it.
pub(crate) static X_AMZN_BEDROCK_GUARDRAILIDENTIFIER: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-guardrailidentifier");
pub(crate) static X_AMZN_BEDROCK_GUARDRAILVERSION: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-guardrailversion");
pub(crate) static X_AMZN_BEDROCK_TRACE: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-trace");
/// Asks nginx-style proxies in front not to buffer a stream.
pub(crate) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
