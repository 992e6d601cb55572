//! The request id stage: a client's usable `x-request-id` kept, any other replaced by one the
//! gateway makes; the id is on the request for every stage below (logs, upstream calls) and on
//! the reply, unless the reply names one already.
//!
//! Written by hand rather than with tower-http's `SetRequestId` and `PropagateRequestId` (which
//! the gateway used before): those also put the id into the request's and the response's
//! extensions — two boxed values per request that no stage read, one of them the first of the
//! response's map — and the made id's bytes kept two heap blocks alive (its shrunk `Bytes`, and the
//! shared header of its first clone). Here the stack is one layer, and a made id keeps one block,
//! shared by every clone (callgrind and dhat, issue 18).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::Entry;
use http::{HeaderMap, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::MAX_REQUEST_ID_LEN;
use crate::header_name::X_REQUEST_ID;

/// Layer that applies [`RequestId`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// Middleware that gives every request an `x-request-id` and its reply the same.
#[derive(Debug, Clone)]
pub(crate) struct RequestId<S> {
    inner: S,
}

impl<S, B, ResB> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = request_id(req.headers_mut());
        ResponseFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RequestId`].
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ResB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            if !res.headers().contains_key(&X_REQUEST_ID) {
                res.headers_mut().insert(X_REQUEST_ID.clone(), id);
            }
        }
        Poll::Ready(Ok(res))
    }
}

/// The request's id: its one `x-request-id` when that is usable (at most
/// [`MAX_REQUEST_ID_LEN`] bytes of letters, digits and `-_.:/+=`), else a made one put in place
/// of every value it has: an id that is not usable, or one of several, would be logged, sent
/// upstream and echoed. One look-up of the name (a hash of its bytes) either way. (`entry` makes
/// room for one more header first, as an insert does: a map that a usable id fills to its
/// capacity grows, where looking the id up alone would not. A map filled to its capacity grows at
/// the made id's insert anyway.)
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let usable = |v: &HeaderValue| {
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID_LEN
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
    };
    match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(mut entry) => {
            let mut values = entry.iter();
            if let (Some(v), None) = (values.next(), values.next()) {
                if usable(v) {
                    return v.clone();
                }
            }
            let id = fresh();
            // Every value the client sent is replaced.
            entry.insert(id.clone());
            id
        }
        Entry::Vacant(entry) => entry.insert(fresh()).clone(),
    }
}

/// A made id (`req-` and the gateway's id digits, [`crate::model::write_fresh_id`]), kept in one
/// heap block: the id is written into a fixed buffer that the `Bytes` owns, and clones share it.
fn fresh() -> HeaderValue {
    let mut id = IdBytes::empty();
    // An error would be an id past the buffer: a counter beyond 16 hex digits, which a u64
    // cannot reach.
    crate::model::write_fresh_id(&mut id, "req-")
        .ok()
        .and_then(|()| HeaderValue::from_maybe_shared(Bytes::from_owner(id)).ok())
        .unwrap_or_else(|| HeaderValue::from_static("req-unknown"))
}

/// An id's bytes, held in place.
struct IdBytes {
    bytes: [u8; ID_CAPACITY],
    len: usize,
}

/// Room for `req-`, 16 digits of prefix and a counter of up to 16.
const ID_CAPACITY: usize = 36;

impl IdBytes {
    fn empty() -> Self {
        IdBytes {
            bytes: [0; ID_CAPACITY],
            len: 0,
        }
    }
}

impl std::fmt::Write for IdBytes {
    /// Appends `s`, or refuses it whole when it does not fit.
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl AsRef<[u8]> for IdBytes {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt as _;

    /// Echoes the request's id in a header of its own (and how many it has in another), and
    /// answers with `x-request-id: upstream` when asked to.
    async fn echo(req: Request<()>) -> Result<Response<()>, Infallible> {
        let mut res = Response::new(());
        if let Some(id) = req.headers().get(&X_REQUEST_ID) {
            res.headers_mut().insert("seen", id.clone());
        }
        let ids = req.headers().get_all(&X_REQUEST_ID).iter().count();
        res.headers_mut().insert("ids", HeaderValue::from(ids));
        if req.headers().contains_key("own") {
            res.headers_mut()
                .insert(X_REQUEST_ID.clone(), HeaderValue::from_static("upstream"));
        }
        Ok(res)
    }

    async fn call(req: Request<()>) -> Response<()> {
        RequestIdLayer
            .layer(tower::service_fn(echo))
            .oneshot(req)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_usable_client_id_is_kept_and_echoed() {
        let res = call(
            Request::builder()
                .header("x-request-id", "abc-123:x/y+z=")
                .body(())
                .unwrap(),
        )
        .await;
        assert_eq!(res.headers()["seen"], "abc-123:x/y+z=");
        assert_eq!(res.headers()["x-request-id"], "abc-123:x/y+z=");
    }

    #[tokio::test]
    async fn a_missing_or_unusable_id_is_replaced_by_a_made_one() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for sent in [None, Some("has space"), Some(""), Some(long.as_str())] {
            let mut req = Request::builder();
            if let Some(id) = sent {
                req = req.header("x-request-id", id);
            }
            let res = call(req.body(()).unwrap()).await;
            let id = res.headers()["x-request-id"].to_str().unwrap();
            assert!(id.starts_with("req-") && id.len() == 28, "{sent:?}: {id}");
            assert_eq!(
                res.headers()["seen"],
                id,
                "the stages below saw the same id"
            );
            assert_eq!(res.headers()["ids"], "1");
        }
        let twice = Request::builder()
            .header("x-request-id", "one")
            .header("x-request-id", "two")
            .body(())
            .unwrap();
        let res = call(twice).await;
        assert!(res.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-"));
        assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
        assert_eq!(
            res.headers()["ids"],
            "1",
            "the stages below see the made id alone"
        );
        assert_eq!(res.headers()["seen"], res.headers()["x-request-id"]);
    }

    #[tokio::test]
    async fn a_reply_that_names_an_id_keeps_it() {
        let res = call(Request::builder().header("own", "1").body(()).unwrap()).await;
        assert_eq!(res.headers()["x-request-id"], "upstream");
        assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    }

    #[test]
    fn made_ids_are_distinct_and_whole() {
        let (a, b) = (fresh(), fresh());
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
    }

    /// The longest id a u64 counter can give fits the buffer; a write past it is refused whole.
    #[test]
    fn the_id_buffer_holds_the_longest_id_and_refuses_more() {
        use std::fmt::Write as _;
        let mut id = IdBytes::empty();
        id.write_str("req-").unwrap();
        crate::digits::write_hex(&mut id, u64::MAX, 16).unwrap();
        crate::digits::write_hex(&mut id, u64::MAX, 8).unwrap();
        assert_eq!(id.as_ref(), format!("req-{}", "f".repeat(32)).as_bytes());
        assert!(id.write_str("x").is_err());
        assert_eq!(id.as_ref().len(), ID_CAPACITY);
        let mut short = IdBytes {
            bytes: [0; ID_CAPACITY],
            len: 30,
        };
        assert!(short.write_str("1234567").is_err());
        assert_eq!(short.len, 30);
        short.write_str("123456").unwrap();
        assert_eq!(short.len, ID_CAPACITY);
    }
}
