//! Bedrock errors → [`GatewayError`], per PROTOCOLS.md §5.8.
//!
//! The error code comes from the SDK's error metadata (`x-amzn-ErrorType` or the exception-frame
//! header), compared case-insensitively with any `Exception` suffix kept, so the HTTP errors of
//! InvokeModel/Converse and the lowerCamel exception frames of streams map through one table.
//! Messages are passed on with AWS account ids and ARNs removed.

use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use http::StatusCode;

use crate::error::{scrub_aws_identifiers, GatewayError};

/// Maps any SDK error of a Bedrock operation.
pub(crate) fn from_sdk<E, R>(err: SdkError<E, R>) -> GatewayError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let mapped = map_sdk(&err);
    if mapped.status().is_server_error() {
        tracing::warn!(error = %chain(&err), status = mapped.status().as_u16(), "bedrock call failed");
    }
    mapped
}

fn map_sdk<E, R>(err: &SdkError<E, R>) -> GatewayError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            // Exception frames inside a stream carry no error code in the SDK's metadata; the
            // typed error's variant names the exception (`ThrottlingException(…)`).
            let variant = format!("{e:?}");
            let code = e.code().or_else(|| {
                variant
                    .split(['(', ' ', '{'])
                    .next()
                    .filter(|v| v.ends_with("Exception"))
            });
            from_code(code, e.message())
        }
        SdkError::TimeoutError(_) => {
            GatewayError::upstream_timeout("Bedrock did not answer in time.")
        }
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                GatewayError::upstream_timeout("Bedrock did not answer in time.")
            } else if chain(err).contains("loading credentials") {
                // The credential chain (an assumed role's STS call, a profile, …) failed: the
                // gateway's own credentials, not the network.
                tracing::error!(error = %chain(err), "no usable AWS credentials for Bedrock");
                GatewayError::upstream_auth(
                    "The gateway has no usable AWS credentials for Bedrock (see the gateway's logs).",
                )
            } else if d.is_user() {
                tracing::warn!(error = %chain(err), "the Bedrock request could not be sent");
                GatewayError::internal("The Bedrock request could not be sent.")
            } else {
                tracing::warn!(error = %chain(err), "failed to reach Bedrock");
                GatewayError::upstream_connect("Failed to reach Bedrock.")
            }
        }
        SdkError::ResponseError(_) => GatewayError::upstream_protocol(format!(
            "Bedrock sent an invalid response: {}",
            chain(err)
        )),
        SdkError::ConstructionFailure(_) => {
            let msg = chain(err);
            if msg.to_ascii_lowercase().contains("credential") || msg.contains("identity") {
                GatewayError::upstream_auth(
                    "The gateway has no usable AWS credentials for Bedrock (see the gateway's logs).",
                )
            } else {
                GatewayError::internal(format!("The Bedrock request could not be built: {msg}"))
            }
        }
        _ => {
            tracing::warn!(error = %chain(err), "the Bedrock call failed");
            GatewayError::upstream_connect("The Bedrock call failed.")
        }
    }
}

/// The error and its sources, scrubbed of AWS identifiers.
fn chain(err: &dyn std::error::Error) -> String {
    scrub_aws_identifiers(&crate::error::error_chain(err))
}

/// Maps a Bedrock error code and message (HTTP error or stream exception).
pub(crate) fn from_code(code: Option<&str>, message: Option<&str>) -> GatewayError {
    let raw_code = code.unwrap_or("InternalServerException");
    let code = raw_code.to_ascii_lowercase();
    let message = scrub_aws_identifiers(message.unwrap_or("Bedrock returned an error."));
    let aws_type = canonical_aws_type(raw_code);
    let e = match code.as_str() {
        "validationexception" => {
            let lower = message.to_ascii_lowercase();
            let e = GatewayError::upstream_status(400, message);
            if lower.contains("too long")
                || lower.contains("too many input tokens")
                || lower.contains("context length")
            {
                e.with_code("context_length_exceeded")
                    .with_param("messages")
            } else if lower.contains("on-demand throughput") {
                e.with_code("model_not_supported").with_param("model")
            } else {
                e.with_code("invalid_request")
            }
        }
        "throttlingexception" => GatewayError::upstream_status(429, message)
            .with_code("rate_limit_exceeded")
            .with_retry_after(Some(Duration::from_secs(1))),
        "servicequotaexceededexception" => GatewayError::upstream_status(429, message)
            .with_code("insufficient_quota")
            // A quota does not recover in seconds: not worth a retry.
            .with_upstream_status(400),
        "accessdeniedexception" => {
            GatewayError::upstream_status(403, message).with_code("model_access_denied")
        }
        "resourcenotfoundexception" => GatewayError::upstream_status(404, message)
            .with_code("model_not_found")
            .with_param("model"),
        "modeltimeoutexception" => GatewayError::upstream_status(504, message).with_code("timeout"),
        "modelnotreadyexception" => {
            GatewayError::upstream_status(503, message).with_code("model_not_ready")
        }
        "serviceunavailableexception" => {
            GatewayError::upstream_status(503, message).with_code("service_unavailable")
        }
        "internalserverexception" | "internalfailure" => {
            GatewayError::upstream_status(500, message)
        }
        "modelerrorexception" => GatewayError::upstream_status(424, message)
            .with_status(StatusCode::BAD_GATEWAY)
            .with_code("upstream_model_error"),
        "modelstreamerrorexception" => GatewayError::upstream_status(424, message)
            .with_status(StatusCode::BAD_GATEWAY)
            .with_code("upstream_stream_error"),
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "invalidclienttokenid"
        | "expiredtokenexception"
        | "incompletesignature"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception"
        | "signaturedoesnotmatch" => {
            tracing::error!(code = raw_code, message = %message, "Bedrock refused the gateway's AWS credentials");
            GatewayError::upstream_auth("Bedrock refused the gateway's AWS credentials.")
        }
        _ => GatewayError::upstream_status(500, message),
    };
    e.with_aws_type(aws_type)
}

/// `throttlingException` → `ThrottlingException` (the HTTP spelling the Bedrock dialect sends).
fn canonical_aws_type(code: &str) -> String {
    let mut c = code.chars();
    match c.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
        None => "InternalServerException".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, u16, bool, Option<&str>)] = &[
            ("ValidationException", 400, false, Some("invalid_request")),
            (
                "ThrottlingException",
                429,
                true,
                Some("rate_limit_exceeded"),
            ),
            (
                "throttlingException",
                429,
                true,
                Some("rate_limit_exceeded"),
            ),
            (
                "ServiceQuotaExceededException",
                429,
                false,
                Some("insufficient_quota"),
            ),
            (
                "AccessDeniedException",
                403,
                false,
                Some("model_access_denied"),
            ),
            (
                "ResourceNotFoundException",
                404,
                false,
                Some("model_not_found"),
            ),
            ("ModelTimeoutException", 504, true, Some("timeout")),
            ("ModelNotReadyException", 503, true, Some("model_not_ready")),
            (
                "ServiceUnavailableException",
                503,
                true,
                Some("service_unavailable"),
            ),
            ("InternalServerException", 502, true, None),
            (
                "ModelErrorException",
                502,
                false,
                Some("upstream_model_error"),
            ),
            (
                "modelStreamErrorException",
                502,
                false,
                Some("upstream_stream_error"),
            ),
            (
                "UnrecognizedClientException",
                500,
                false,
                Some("upstream_auth_error"),
            ),
            (
                "ExpiredTokenException",
                500,
                false,
                Some("upstream_auth_error"),
            ),
            (
                "InvalidSignatureException",
                500,
                false,
                Some("upstream_auth_error"),
            ),
        ];
        for (code, status, retry, ecode) in cases {
            let e = from_code(Some(code), Some("msg"));
            assert_eq!(e.status().as_u16(), *status, "{code}");
            assert_eq!(e.is_retryable(), *retry, "{code}");
            assert_eq!(e.code(), *ecode, "{code}");
        }
        let e = from_code(
            Some("ValidationException"),
            Some("Input is too long for requested model."),
        );
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let e = from_code(
            Some("ValidationException"),
            Some("Invocation of model ID x with on-demand throughput isn't supported."),
        );
        assert_eq!(e.code(), Some("model_not_supported"));
    }

    #[test]
    fn account_ids_and_arns_never_reach_the_client() {
        let e = from_code(
            Some("AccessDeniedException"),
            Some("User: arn:aws:sts::123456789012:assumed-role/gw/i-0abc is not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/x"),
        );
        assert!(!e.message().contains("123456789012"), "{}", e.message());
        assert!(!e.message().contains("arn:aws"), "{}", e.message());
        let e = from_code(
            Some("UnrecognizedClientException"),
            Some("The security token included in the request is invalid. AKIA123"),
        );
        assert!(!e.message().contains("AKIA"));
    }
}
