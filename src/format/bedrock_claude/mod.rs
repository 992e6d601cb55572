//! Bedrock Claude (Anthropic Messages) bodies, both directions.
//!
//! **Upstream direction** (the gateway calls Claude on Bedrock for a canonical request):
//! - [`upstream_request`]: canonical [`ChatRequest`](crate::model::ChatRequest) → InvokeModel body
//!   ([`encode_request`]), plus [`native_body`] for a client's own Claude body forwarded as written.
//! - [`upstream_reply`]: InvokeModel response JSON → canonical [`ChatResponse`](crate::model::ChatResponse).
//! - [`upstream_stream`]: InvokeModelWithResponseStream event JSON → canonical chunks ([`ClaudeStreamDecoder`]).
//!
//! **Client direction** (a client speaks Claude to the gateway, whatever model serves it):
//! - [`client_request`]: a client's Claude-format body → canonical request ([`decode_client_request`]).
//! - [`client_reply`]: canonical reply → Anthropic Messages response ([`encode_client_response`]) or
//!   typed Anthropic stream events ([`ClaudeStreamEncoder`]).
//!
//! Everything is synchronous and allocation-light; nothing here does I/O. Bedrock validates Claude
//! bodies against a JSON schema and rejects unknown keys, nulls and blank text, so the upstream
//! encoder only ever writes keys it knows Bedrock accepts.

pub mod client_reply;
pub mod client_request;
pub(crate) mod thinking;
pub mod upstream_reply;
pub mod upstream_request;
pub mod upstream_stream;

pub use client_reply::{encode_client_response, ClaudeEvent, ClaudeStreamEncoder};
pub use client_request::decode_client_request;
pub use upstream_reply::{decode_response, map_stop_reason};
pub use upstream_request::{
    check_native, encode_request, encode_request_bytes, native_body, ClaudeRequestOptions,
};
pub use upstream_stream::ClaudeStreamDecoder;

/// The `anthropic_version` Bedrock requires in every Claude body.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// A parsed `data:<mime>[;param…];base64,<payload>` URL (borrowed from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataUrl<'a> {
    /// The MIME type, as written.
    pub(crate) mime: &'a str,
    /// The raw base64 payload (no prefix).
    pub(crate) data: &'a str,
}

/// Parses a base64 data URL; `None` when `url` is not one (or is not base64-encoded).
pub(crate) fn parse_data_url(url: &str) -> Option<DataUrl<'_>> {
    let rest = url.strip_prefix("data:").or_else(|| {
        // Scheme names are case-insensitive.
        url.get(..5)
            .filter(|p| p.eq_ignore_ascii_case("data:"))
            .map(|_| &url[5..])
    })?;
    let (header, data) = rest.split_once(',')?;
    let mut params = header.split(';');
    let mime = params.next().unwrap_or("").trim();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    Some(DataUrl { mime, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBO"),
            Some(DataUrl {
                mime: "image/png",
                data: "iVBO"
            })
        );
        assert_eq!(
            parse_data_url("DATA:application/pdf;name=x.pdf;base64,JVBE"),
            Some(DataUrl {
                mime: "application/pdf",
                data: "JVBE"
            })
        );
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(parse_data_url("https://example.com/a.png"), None);
        assert_eq!(parse_data_url("data:image/png;base64"), None);
    }
}
