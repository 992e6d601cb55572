//! The one `data:` URL parser: `data:<mime>[;param…];base64,<payload>`, as images and files arrive
//! in OpenAI content parts, and the base64 decoder every codec uses for their payloads.
//!
//! The scheme is case-insensitive, the MIME type is trimmed and lowercased (`image/jpg` is read as
//! `image/jpeg`), parameters such as `name=…` or `charset=…` are skipped, and only base64 payloads
//! are accepted: a `data:` URL without `;base64` (percent-encoded text) is an error, not a
//! different kind of URL. Payloads decode with or without padding, ignoring whitespace.
//!
//! ```
//! use open_bedrock_server::format::data_url::DataUrl;
//!
//! let url = DataUrl::parse("DATA:Image/JPG;name=x.jpg;base64,/9j/").unwrap().unwrap();
//! assert_eq!((url.mime.as_deref(), url.data), (Some("image/jpeg"), "/9j/"));
//! assert_eq!(url.decode().unwrap(), [0xff, 0xd8, 0xff]);
//! assert!(DataUrl::parse("https://example.com/a.png").is_none());
//! assert!(DataUrl::parse("data:text/plain,hello").unwrap().is_err());
//! ```

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::error::GatewayError;

/// Standard base64, padding optional (clients are not consistent about it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A parsed base64 `data:` URL, borrowing its payload from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataUrl<'a> {
    /// The MIME type, lowercased (`None` when the URL names none).
    pub mime: Option<String>,
    /// The base64 payload, as written.
    pub data: &'a str,
}

fn malformed(message: &'static str) -> GatewayError {
    GatewayError::invalid_request(message)
        .with_param("messages")
        .with_code("invalid_value")
}

impl<'a> DataUrl<'a> {
    /// Parses `url`: `None` when it is not a `data:` URL; an error (400) when it is one that is not
    /// base64.
    pub fn parse(url: &'a str) -> Option<Result<Self, GatewayError>> {
        let rest = url
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("data:"))
            .map(|_| &url[5..])?;
        let Some((header, data)) = rest.split_once(',') else {
            return Some(Err(malformed("Malformed data URL: no ','.")));
        };
        let mut params = header.split(';');
        let mime = params
            .next()
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| !m.is_empty())
            .map(|m| {
                if m == "image/jpg" {
                    "image/jpeg".into()
                } else {
                    m
                }
            });
        if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
            return Some(Err(malformed(
                "Only base64 data URLs are supported (data:<type>;base64,<payload>).",
            )));
        }
        Some(Ok(DataUrl { mime, data }))
    }

    /// The payload's bytes.
    pub fn decode(&self) -> Result<Vec<u8>, GatewayError> {
        decode_base64(self.data)
    }
}

/// Decodes base64 (padding optional, whitespace ignored); a 400 naming `messages` when it is not.
pub fn decode_base64(data: &str) -> Result<Vec<u8>, GatewayError> {
    let decoded = if data.bytes().any(|b| b.is_ascii_whitespace()) {
        let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        BASE64.decode(cleaned.as_bytes())
    } else {
        BASE64.decode(data.as_bytes())
    };
    decoded.map_err(|e| {
        GatewayError::invalid_request(format!("Invalid base64 data: {e}.")).with_param("messages")
    })
}

/// Encodes bytes as standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let u = DataUrl::parse("data:image/png;base64,iVBO")
            .unwrap()
            .unwrap();
        assert_eq!((u.mime.as_deref(), u.data), (Some("image/png"), "iVBO"));
        let u = DataUrl::parse("data:application/pdf;name=x.pdf;base64,JVBE")
            .unwrap()
            .unwrap();
        assert_eq!(u.mime.as_deref(), Some("application/pdf"));
        let u = DataUrl::parse("data:;base64,AAAA").unwrap().unwrap();
        assert_eq!(u.mime, None);
        for bad in ["data:text/plain,hello", "data:image/png;base64"] {
            let e = DataUrl::parse(bad).unwrap().unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.param()),
                (400, Some("messages")),
                "{bad}"
            );
        }
        assert!(DataUrl::parse("s3://bucket/x.png").is_none());
        assert!(DataUrl::parse("dat").is_none());
    }

    #[test]
    fn decodes_with_or_without_padding_and_whitespace() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("!!").unwrap_err().param(), Some("messages"));
        assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
    }
}
