//! An OpenAI-compatible upstream's error → [`GatewayError`].

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;

/// Maps an OpenAI-shaped error body (`{"error":{message,type,param,code}}`) and its status.
///
/// 4xx keep their status and the upstream's message, `param` and `code`; 5xx become 502 (503 and
/// 504 stay) with the status in the message; 401/403 mean the gateway's *own* upstream key was
/// refused, so they become a 500 `upstream_auth_error` (never a 401: the client's key was fine),
/// and the upstream's message — which may quote the masked key — stays in the log. A body that is
/// not OpenAI-shaped is never echoed.
///
/// ```
/// use http::StatusCode;
/// use open_bedrock_server::format::openai::decode_error;
///
/// let e = decode_error(StatusCode::BAD_REQUEST,
///     br#"{"error":{"message":"too long","param":"messages","code":"context_length_exceeded"}}"#);
/// assert_eq!((e.status().as_u16(), e.param(), e.code()), (400, Some("messages"), Some("context_length_exceeded")));
/// assert_eq!(decode_error(StatusCode::INTERNAL_SERVER_ERROR, b"<html>").status(), 502);
/// ```
pub fn decode_error(status: StatusCode, body: &[u8]) -> GatewayError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        message: Option<String>,
        param: Option<String>,
        code: Option<Value>,
    }
    let parsed = serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error);
    let message = parsed
        .as_ref()
        .and_then(|d| d.message.clone())
        .unwrap_or_else(|| format!("The upstream answered {}.", status.as_u16()));
    if matches!(status.as_u16(), 401 | 403) {
        tracing::error!(status = status.as_u16(), upstream_message = %message, "the OpenAI upstream refused the gateway's API key");
        return GatewayError::upstream_auth("The gateway's upstream credentials were refused.");
    }
    let message = if status.is_server_error() {
        format!("Upstream error ({}): {message}", status.as_u16())
    } else {
        message
    };
    let mut err = GatewayError::upstream_status(status.as_u16(), message);
    if let Some(d) = parsed {
        if let Some(p) = d.param {
            err = err.with_param(p);
        }
        match d.code {
            Some(Value::String(c)) => err = err.with_code(c),
            Some(Value::Number(n)) => err = err.with_code(n.to_string()),
            _ => {}
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_upstream_errors() {
        let e = decode_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.status(), 400);
        assert_eq!(e.message(), "too long");
        assert_eq!(e.param(), Some("messages"));
        assert_eq!(e.code(), Some("context_length_exceeded"));
        let e = decode_error(
            StatusCode::UNAUTHORIZED,
            br#"{"error":{"message":"Incorrect API key provided: sk-proj-****abcd","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(e.status(), 500, "never a 401: the client's key was fine");
        assert_eq!(e.code(), Some("upstream_auth_error"));
        assert!(!e.message().contains("sk-proj"));
        let e = decode_error(StatusCode::INTERNAL_SERVER_ERROR, b"<html>oops</html>");
        assert_eq!(e.status(), 502);
        assert!(e.is_retryable());
        assert!(!e.message().contains("html"));
    }
}
