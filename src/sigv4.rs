//! AWS Signature Version 4 *verification* of an incoming request.
//!
//! Hand-written because the AWS crates only sign: `aws-sigv4` decides itself which headers to sign,
//! while a verifier must rebuild the canonical request from exactly the `SignedHeaders` the client
//! listed. The algorithm is the documented one — canonical request (method, the path URI-encoded
//! once more, sorted query, the signed headers, the payload hash), string to sign, HMAC-SHA256 key
//! derivation — and the final comparison is constant-time.
//!
//! Internal to the crate: the public face of this module is the SigV4 client-auth layer,
//! [`SigV4AuthLayer`](crate::surface::bedrock_runtime::auth::SigV4AuthLayer). The fake Bedrock
//! upstream of the tests (`tests/common/fake.rs`) compiles this file too, to check the signatures
//! of the SDK inside the gateway.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SigV4's request time, parsed once (see `header_name`).
pub(crate) static X_AMZ_DATE: http::HeaderName = http::HeaderName::from_static("x-amz-date");
/// The payload hash a signer claims.
pub(crate) static X_AMZ_CONTENT_SHA256: http::HeaderName =
    http::HeaderName::from_static("x-amz-content-sha256");

type HmacSha256 = hmac::Hmac<Sha256>;

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authorization<'a> {
    /// Access key id.
    pub(crate) access_key: &'a str,
    /// `yyyymmdd` of the credential scope.
    pub(crate) date: &'a str,
    /// Region of the scope.
    pub(crate) region: &'a str,
    /// Service of the scope (`bedrock`).
    pub(crate) service: &'a str,
    /// Lower-case signed header names, in order.
    pub(crate) signed_headers: Vec<&'a str>,
    /// Hex signature.
    pub(crate) signature: &'a str,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// The header is not a SigV4 `Authorization` header.
    Malformed,
    /// `x-amz-date` is missing or does not match the scope date.
    BadDate,
    /// The signature does not match.
    Mismatch,
    /// `x-amz-date` is further than the allowed skew from now (a replayed or stale request).
    Expired,
}

/// Seconds since the Unix epoch of an `x-amz-date` (`yyyymmddThhmmssZ`).
pub(crate) fn parse_amz_date(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| value.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of the date `y-m-d` (month 1–12), proleptic Gregorian (Howard
/// Hinnant's `days_from_civil`). Here, not in a calendar module, because this file is also
/// compiled into the test fakes on its own; the budgets' periods (`keys::period`) use it too.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
#[allow(dead_code)] // the test fakes that include this file do not all use it
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `x-amz-date` (`yyyymmddThhmmssZ`) of `secs` seconds since the Unix epoch (for signing test
/// requests).
#[cfg(test)]
pub(crate) fn format_amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether the request's `x-amz-date` is within `max_skew` of `now` (AWS allows 15 minutes), so
/// a captured request cannot be replayed later.
pub(crate) fn is_fresh(
    parts: &http::request::Parts,
    now: std::time::SystemTime,
    max_skew: std::time::Duration,
) -> Result<(), VerifyError> {
    let date = parts
        .headers
        .get(&X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_amz_date)
        .ok_or(VerifyError::BadDate)?;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let skew = i64::try_from(max_skew.as_secs()).unwrap_or(i64::MAX);
    if (now - date).abs() > skew {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

/// [`verify_hash`] of a fresh request ([`is_fresh`]).
#[cfg(test)]
pub(crate) fn verify_fresh(
    parts: &http::request::Parts,
    payload_hash: &str,
    secret: &str,
    now: std::time::SystemTime,
    max_skew: std::time::Duration,
) -> Result<(), VerifyError> {
    is_fresh(parts, now, max_skew)?;
    verify_hash(parts, payload_hash, secret)
}

/// The lower-case hex SHA-256 of a payload, as SigV4 signs it.
#[cfg(test)]
pub(crate) fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Parses an `Authorization` header value.
pub(crate) fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
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

/// The canonical request SigV4 signs, for the headers listed in `auth` and the hex SHA-256 of
/// the payload actually received.
pub(crate) fn canonical_request(
    parts: &http::request::Parts,
    payload_hash: &str,
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
    c.push_str(payload_hash);
    c
}

/// Verifies the request's SigV4 signature against `secret`, for the payload `body`: the whole
/// check in one call, for the tests. The auth layer hashes the body as it streams and calls
/// [`verify_hash`].
#[cfg(test)]
pub(crate) fn verify(
    parts: &http::request::Parts,
    body: &[u8],
    secret: &str,
) -> Result<(), VerifyError> {
    verify_hash(parts, &payload_hash(body), secret)
}

/// Verifies the request's SigV4 signature against `secret`, for a payload whose hex SHA-256 is
/// `payload_hash` — the hash of the body actually received (or, before the body is read, the
/// client's claimed `x-amz-content-sha256`, which the caller then checks against the body).
pub(crate) fn verify_hash(
    parts: &http::request::Parts,
    payload_hash: &str,
    secret: &str,
) -> Result<(), VerifyError> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::Malformed)?;
    let auth = parse_authorization(header).ok_or(VerifyError::Malformed)?;
    let amz_date = parts
        .headers
        .get(&X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or(VerifyError::BadDate)?;
    if !amz_date.starts_with(auth.date) {
        return Err(VerifyError::BadDate);
    }
    if let Some(claimed) = parts.headers.get(&X_AMZ_CONTENT_SHA256) {
        // A claimed payload hash (or UNSIGNED-PAYLOAD) must be the body's real hash.
        if claimed.as_bytes() != payload_hash.as_bytes() {
            return Err(VerifyError::Mismatch);
        }
    }
    let canonical = canonical_request(parts, payload_hash, &auth);
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

    #[test]
    fn parses_the_authorization_header() {
        let auth =
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        let parsed = parse_authorization(auth).unwrap();
        assert_eq!(parsed.access_key, "AKIDEXAMPLE");
        assert_eq!(parsed.service, "bedrock");
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(parse_authorization("Bearer abc"), None);
    }

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
        // A claimed payload hash cannot stand in for the body.
        let mut forged = parts.clone();
        forged.headers.insert(
            "x-amz-content-sha256",
            http::HeaderValue::from_static(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        );
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            verify(&forged, b"another body", secret),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&forged, b"", secret),
            Ok(()),
            "a correct claimed hash is fine"
        );
        forged.headers.insert(
            "x-amz-content-sha256",
            http::HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        assert_eq!(verify(&forged, b"", secret), Err(VerifyError::Mismatch));
    }

    #[test]
    fn freshness_window() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
        for secs in [0, 1_440_938_160, 1_709_251_199, 1_798_761_600] {
            assert_eq!(parse_amz_date(&format_amz_date(secs)), Some(secs), "{secs}");
        }
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
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let skew = std::time::Duration::from_secs(900);
        let signed_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(
            verify_fresh(
                &parts,
                &payload_hash(b""),
                secret,
                signed_at + std::time::Duration::from_secs(60),
                skew
            ),
            Ok(())
        );
        assert_eq!(
            verify_fresh(
                &parts,
                &payload_hash(b""),
                secret,
                signed_at + std::time::Duration::from_secs(3600),
                skew
            ),
            Err(VerifyError::Expired)
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
        let c = canonical_request(&parts, &payload_hash(b""), &auth);
        assert!(
            c.starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/invoke\n"),
            "{c}"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn sigv4_parser_never_panics(text in ".{0,200}") {
                let _ = parse_authorization(&text);
                let _ = parse_amz_date(&text);
            }

            #[test]
            fn sigv4_headers_round_trip(
                access_key in "[A-Z0-9]{4,20}",
                date in "20[0-9]{6}",
                region in "[a-z]{2}-[a-z]{3,9}-[1-9]",
                headers in vec("[a-z][a-z0-9-]{0,12}", 1..5),
                signature in "[0-9a-f]{64}",
            ) {
                let value = format!(
                    "AWS4-HMAC-SHA256 Credential={access_key}/{date}/{region}/bedrock/aws4_request, SignedHeaders={}, Signature={signature}",
                    headers.join(";")
                );
                let parsed = parse_authorization(&value).unwrap();
                prop_assert_eq!(parsed.access_key, access_key.as_str());
                prop_assert_eq!(parsed.date, date.as_str());
                prop_assert_eq!(parsed.region, region.as_str());
                prop_assert_eq!(parsed.service, "bedrock");
                prop_assert_eq!(parsed.signed_headers, headers.iter().map(String::as_str).collect::<Vec<_>>());
                prop_assert_eq!(parsed.signature, signature.as_str());
            }

            #[test]
            fn amz_dates_round_trip(secs in 0i64..4_102_444_800) {
                prop_assert_eq!(parse_amz_date(&format_amz_date(secs)), Some(secs));
            }
        }
    }
}
