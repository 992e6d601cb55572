//! [`MediaFetcher`]: fetches the `http(s)` images and documents of a request for providers whose
//! models take them inline (Claude and the Converse families on Bedrock), so the pure codecs only
//! ever see `data:` URLs. OpenAI fetches URLs itself and never goes through here.
//!
//! Fetching a URL a client names is a server-side request on the client's behalf, so it is off
//! unless configured (`[media_fetch]`), and then bounded on every side:
//!
//! - **hosts**: only the allowed ones (`images.example.com`, `.example.com` for subdomains, `*`);
//! - **addresses**: a name is resolved by the gateway and only public addresses are connected to
//!   (private, loopback, link-local, shared, multicast and unspecified ones are refused, IPv4-mapped
//!   IPv6 included) unless `allow_private_addresses`; an IP-literal host is checked the same way.
//!   The check is in the connector's resolver, so the address checked is the address connected;
//! - **redirects**: followed up to `max_redirects`, each target checked like the first URL;
//! - **size**: `max_bytes` per URL (a larger `Content-Length` is refused before the body; a body
//!   that grows past it is cut off);
//! - **time**: `timeout` for the whole fetch of one URL, redirects included;
//! - **type**: sniffed from the bytes (PNG, JPEG, GIF, WebP, PDF; Office files and text trusted
//!   from their declared type only when the bytes agree), never taken from the URL; an image part
//!   must be an image.
//!
//! A URL that cannot be fetched within these bounds is the client's 400 (`media_fetch_failed`,
//! param `messages`), never a retried upstream error.
//!
//! Hand-written over the hyper-util client already in the tree: no HTTP client crate offers a
//! resolver-level address policy with per-hop host checks without pulling in a second TLS stack.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::config::MediaFetchConfig;
use crate::error::GatewayError;
use crate::format::data_url::encode_base64;
use crate::model::{ChatRequest, MessageContent};
use crate::provider::Quiet;

/// The most URLs fetched for one request.
const MAX_URLS: usize = 20;

/// Fetches a request's `http(s)` media within the configured bounds. Cheap to clone.
#[derive(Clone)]
pub struct MediaFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<Quiet<HttpConnector<PolicyResolver>>>, Empty<Bytes>>,
    config: MediaFetchConfig,
}

impl std::fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFetcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn failed(message: String) -> GatewayError {
    GatewayError::invalid_request(message)
        .with_param("messages")
        .with_code("media_fetch_failed")
}

/// Whether `ip` is an address on the public internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link-local
        }
    }
}

/// The connector's resolver: resolves with the system resolver and keeps only the addresses the
/// policy allows, so nothing else is ever connected to.
#[derive(Clone, Debug)]
struct PolicyResolver {
    allow_private: bool,
}

impl Service<Name> for PolicyResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{} resolves only to addresses the gateway does not fetch from",
                        name.as_str()
                    ),
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// What a sniffed body is.
fn sniff(bytes: &[u8], declared: Option<&str>) -> Option<String> {
    let found = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        "image/jpeg"
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "image/gif"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if bytes.starts_with(b"%PDF-") {
        "application/pdf"
    } else {
        let declared = declared?;
        let office_zip = bytes.starts_with(b"PK\x03\x04")
            && declared.starts_with("application/vnd.openxmlformats-officedocument.");
        let office_ole = bytes.starts_with(b"\xd0\xcf\x11\xe0")
            && matches!(declared, "application/msword" | "application/vnd.ms-excel");
        let text = matches!(
            declared,
            "text/plain" | "text/csv" | "text/html" | "text/markdown"
        ) && !bytes.contains(&0)
            && std::str::from_utf8(bytes).is_ok();
        if office_zip || office_ole || text {
            return Some(declared.to_owned());
        }
        return None;
    };
    Some(found.to_owned())
}

/// Whether `host` is allowed by `allowed`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*" || a == host || (a.starts_with('.') && (host.ends_with(&a) || host == a[1..]))
    })
}

impl MediaFetcher {
    /// The fetcher `config` describes; `None` when fetching is off.
    pub fn new(config: &MediaFetchConfig) -> Result<Option<Self>, GatewayError> {
        if !config.enabled {
            return Ok(None);
        }
        let mut http = HttpConnector::new_with_resolver(PolicyResolver {
            allow_private: config.allow_private_addresses,
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.timeout));
        let https = super::https_connector(http)?;
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Some(MediaFetcher {
            inner: Arc::new(Inner {
                client,
                config: config.clone(),
            }),
        }))
    }

    /// `req` with every `http(s)` image and file URL replaced by a `data:` URL of the fetched
    /// bytes; `None` when it has none.
    pub async fn inline(&self, req: &ChatRequest) -> Result<Option<ChatRequest>, GatewayError> {
        let mut targets = Vec::new();
        for (m, msg) in req.messages.iter().enumerate() {
            let Some(MessageContent::Parts(parts)) = &msg.content else {
                continue;
            };
            for (p, part) in parts.iter().enumerate() {
                let url = match part.kind.as_str() {
                    "image_url" => part.image_url.as_ref().map(|i| i.url.as_str()),
                    "file" => part.file.as_ref().and_then(|f| f.file_data.as_deref()),
                    _ => None,
                };
                if let Some(url) = url.filter(|u| is_http(u)) {
                    targets.push((m, p, part.kind == "image_url", url.to_owned()));
                }
            }
        }
        if targets.is_empty() {
            return Ok(None);
        }
        if targets.len() > MAX_URLS {
            return Err(failed(format!(
                "A request may name at most {MAX_URLS} URLs for the gateway to fetch."
            )));
        }
        let fetched = futures_util::future::try_join_all(
            targets
                .iter()
                .map(|(_, _, image, url)| self.fetch(url, *image)),
        )
        .await?;
        let mut out = req.clone();
        for ((m, p, image, _), data_url) in targets.into_iter().zip(fetched) {
            if let Some(MessageContent::Parts(parts)) = &mut out.messages[m].content {
                let part = &mut parts[p];
                if image {
                    if let Some(i) = part.image_url.as_mut() {
                        i.url = data_url;
                    }
                } else if let Some(f) = part.file.as_mut() {
                    f.file_data = Some(data_url);
                }
            }
        }
        Ok(Some(out))
    }

    /// Fetches one URL as a `data:` URL.
    async fn fetch(&self, url: &str, image: bool) -> Result<String, GatewayError> {
        let config = &self.inner.config;
        let timeout = config.timeout;
        let (mime, bytes) = tokio::time::timeout(timeout, self.get(url))
            .await
            .map_err(|_| {
                failed(format!(
                    "Fetching {url} took longer than {} ms.",
                    timeout.as_millis()
                ))
            })??;
        if image && !mime.starts_with("image/") {
            return Err(failed(format!(
                "{url} is not an image the models take (found {mime}; expected PNG, JPEG, GIF or WebP)."
            )));
        }
        Ok(format!("data:{mime};base64,{}", encode_base64(&bytes)))
    }

    async fn get(&self, url: &str) -> Result<(String, Bytes), GatewayError> {
        let config = &self.inner.config;
        let mut uri: Uri = url
            .parse()
            .map_err(|e| failed(format!("{url} is not a valid URL: {e}")))?;
        for _ in 0..=config.max_redirects {
            self.check(&uri)?;
            let req = Request::get(uri.clone())
                .header(
                    header::ACCEPT,
                    "image/*, application/pdf, text/*, */*;q=0.5",
                )
                .header(header::USER_AGENT, "open-bedrock-server media fetch")
                .body(Empty::new())
                .map_err(|e| failed(format!("{url}: {e}")))?;
            let res = self.inner.client.request(req).await.map_err(|e| {
                failed(format!(
                    "Fetching {uri} failed: {}",
                    crate::error::error_chain(&e)
                ))
            })?;
            let status = res.status();
            if status.is_redirection() {
                let location = res
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| failed(format!("{uri} redirects without a Location.")))?;
                uri = resolve(&uri, location)
                    .ok_or_else(|| failed(format!("{uri} redirects to an invalid URL.")))?;
                continue;
            }
            if !status.is_success() {
                return Err(failed(format!("Fetching {uri} answered {status}.")));
            }
            let too_big = res
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .is_some_and(|n| n > config.max_bytes as u64);
            if too_big {
                return Err(failed(format!(
                    "{uri} is larger than the {} bytes the gateway fetches.",
                    config.max_bytes
                )));
            }
            let declared = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
            let bytes = Limited::new(res.into_body(), config.max_bytes)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| {
                    failed(format!(
                        "{uri} could not be read within {} bytes: {e}",
                        config.max_bytes
                    ))
                })?;
            let mime = sniff(&bytes, declared.as_deref()).ok_or_else(|| {
                failed(format!(
                    "{uri} is not an image or a document the models take (declared {}).",
                    declared.as_deref().unwrap_or("no type")
                ))
            })?;
            return Ok((mime, bytes));
        }
        Err(failed(format!(
            "{url} redirects more than {} times.",
            config.max_redirects
        )))
    }

    /// The scheme, host and address rules for one hop.
    fn check(&self, uri: &Uri) -> Result<(), GatewayError> {
        let config = &self.inner.config;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(failed(format!(
                "{uri}: only http and https URLs are fetched."
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| failed(format!("{uri} has no host.")))?;
        if !host_allowed(host, &config.allowed_hosts) {
            return Err(failed(format!(
                "The gateway does not fetch from {host}: it is not an allowed host ([media_fetch] allowed_hosts)."
            )));
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !config.allow_private_addresses && !is_public(ip) {
                return Err(failed(format!(
                    "The gateway does not fetch from the address {ip}."
                )));
            }
        }
        Ok(())
    }
}

fn is_http(url: &str) -> bool {
    let head = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

/// A redirect's `Location`, absolute or relative to `base`.
fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if let Ok(uri) = location.parse::<Uri>() {
        if uri.scheme().is_some() {
            return Some(uri);
        }
    }
    let authority = base.authority()?;
    let scheme = base.scheme_str()?;
    let path = if location.starts_with('/') {
        location.to_owned()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_only() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn hosts_and_redirect_targets() {
        let allowed = vec!["images.example.com".to_owned(), ".cdn.test".to_owned()];
        assert!(host_allowed("IMAGES.example.com", &allowed));
        assert!(host_allowed("a.cdn.test", &allowed));
        assert!(host_allowed("cdn.test", &allowed));
        assert!(!host_allowed("evilcdn.test", &allowed));
        assert!(!host_allowed("example.com", &allowed));
        assert!(host_allowed("anything", &["*".to_owned()]));
        let base: Uri = "https://a.test/x/y.png".parse().unwrap();
        assert_eq!(
            resolve(&base, "/z.png").unwrap().to_string(),
            "https://a.test/z.png"
        );
        assert_eq!(
            resolve(&base, "w.png").unwrap().to_string(),
            "https://a.test/x/w.png"
        );
        assert_eq!(
            resolve(&base, "http://b.test/v").unwrap().to_string(),
            "http://b.test/v"
        );
    }

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\nrest", Some("text/html")).as_deref(),
            Some("image/png")
        );
        assert_eq!(sniff(b"%PDF-1.7", None).as_deref(), Some("application/pdf"));
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8", None).as_deref(),
            Some("image/webp")
        );
        assert_eq!(
            sniff(b"hello", Some("text/plain")).as_deref(),
            Some("text/plain")
        );
        assert_eq!(
            sniff(b"<html>", Some("image/png")),
            None,
            "a page is not an image"
        );
        assert_eq!(sniff(b"\0\x01", Some("text/plain")), None);
        assert_eq!(sniff(b"hello", None), None);
    }
}
