//! AWS Signature Version 4 *verification* of an incoming request.
//!
//! Hand-written because the AWS crates only sign: `aws-sigv4` decides itself which headers to sign,
//! while a verifier must rebuild the canonical request from exactly the `SignedHeaders` the client
//! listed. The algorithm is the documented one — canonical request (method, the path URI-encoded
//! once more, sorted query, the signed headers, the payload hash), string to sign, HMAC-SHA256 key
//! derivation — and the final comparison is constant-time.
//!
//! ```
//! use open_bedrock_server::sigv4;
//!
//! let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
//!             SignedHeaders=host;x-amz-date, Signature=abc";
//! let parsed = sigv4::parse_authorization(auth).unwrap();
//! assert_eq!(parsed.access_key, "AKIDEXAMPLE");
//! assert_eq!(parsed.service, "bedrock");
//! ```

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// Access key id.
    pub access_key: &'a str,
    /// `yyyymmdd` of the credential scope.
    pub date: &'a str,
    /// Region of the scope.
    pub region: &'a str,
    /// Service of the scope (`bedrock`).
    pub service: &'a str,
    /// Lower-case signed header names, in order.
    pub signed_headers: Vec<&'a str>,
    /// Hex signature.
    pub signature: &'a str,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The header is not a SigV4 `Authorization` header.
    Malformed,
    /// `x-amz-date` is missing or does not match the scope date.
    BadDate,
    /// The signature does not match.
    Mismatch,
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let auth = Authorization {
        access_key: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    };
    (scope.next() == Some("aws4_request") && !auth.access_key.is_empty()).then_some(auth)
}

/// URI-encodes `s` per SigV4 (unreserved characters kept; `/` kept when `keep_slash`).
fn uri_encode(s: &str, keep_slash: bool, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

// HMAC accepts keys of any length; this cannot happen.
fn unreachable_hmac() -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(b"k")
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// The canonical request SigV4 signs, for the headers listed in `auth`.
pub fn canonical_request(
    parts: &http::request::Parts,
    body: &[u8],
    auth: &Authorization<'_>,
) -> String {
    let mut c = String::with_capacity(512);
    c.push_str(parts.method.as_str());
    c.push('\n');
    // Non-S3 services: the path as sent is encoded once more.
    uri_encode(parts.uri.path(), true, &mut c);
    c.push('\n');
    let mut query: Vec<(String, String)> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&dec(k), false, &mut ek);
            uri_encode(&dec(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    query.sort();
    let q: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    c.push_str(&q.join("&"));
    c.push('\n');
    for name in &auth.signed_headers {
        c.push_str(name);
        c.push(':');
        let values: Vec<String> = if *name == "host" && parts.headers.get("host").is_none() {
            parts
                .uri
                .authority()
                .map(|a| a.to_string())
                .into_iter()
                .collect()
        } else {
            parts
                .headers
                .get_all(*name)
                .iter()
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        c.push_str(&values.join(","));
        c.push('\n');
    }
    c.push('\n');
    c.push_str(&auth.signed_headers.join(";"));
    c.push('\n');
    match parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) => c.push_str(h),
        None => c.push_str(&hex::encode(Sha256::digest(body))),
    }
    c
}

/// Verifies the request's SigV4 signature against `secret`.
pub fn verify(parts: &http::request::Parts, body: &[u8], secret: &str) -> Result<(), VerifyError> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::Malformed)?;
    let auth = parse_authorization(header).ok_or(VerifyError::Malformed)?;
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::BadDate)?;
    if !amz_date.starts_with(auth.date) {
        return Err(VerifyError::BadDate);
    }
    let canonical = canonical_request(parts, body, &auth);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AWS documentation's example (`get-vanilla` from the SigV4 test suite).
    #[test]
    fn aws_test_suite_get_vanilla() {
        let req = http::Request::get("http://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .header("x-amz-date", "20150830T123600Z")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            )
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(
            verify(&parts, b"", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            Ok(())
        );
        assert_eq!(
            verify(&parts, b"", "wrong-secret"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(
                &parts,
                b"tampered body",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
            ),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn path_is_encoded_twice() {
        let req =
            http::Request::post("http://h/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
                .header("host", "h")
                .body(())
                .unwrap();
        let (parts, ()) = req.into_parts();
        let auth = Authorization {
            access_key: "a",
            date: "20240101",
            region: "us-east-1",
            service: "bedrock",
            signed_headers: vec!["host"],
            signature: "",
        };
        let c = canonical_request(&parts, b"", &auth);
        assert!(
            c.starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/invoke\n"),
            "{c}"
        );
    }
}
