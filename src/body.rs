//! [`Body`]: the one response body type of the gateway.
//!
//! An opaque newtype over a boxed `http_body::Body` so the public API never names a concrete body
//! and every layer (JSON replies, SSE streams, error responses) answers with the same type.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

/// Boxed error of a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body of every gateway response.
pub struct Body(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>);

impl Body {
    /// Wraps any body.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A `Body` is one already: it is not boxed a second time (as axum's `Body::new` does).
        let mut slot = Some(body);
        if let Some(own) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
            if let Some(own) = own.take() {
                return own;
            }
        }
        match slot {
            Some(body) => Body(body.map_err(Into::into).boxed_unsync()),
            // Not reached (the slot is emptied only for a `Body`, returned above); no panic path.
            None => Body::empty(),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body::new(Empty::new())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::new(Full::new(b))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Body(..)")
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

/// The most [`to_bytes`] reserves ahead on a body's word.
#[cfg(any(feature = "openai", test))]
const PRESIZE_MAX: usize = 1 << 20;

/// Reads `body` whole into one `Bytes`. A body that arrives in one frame — a small reply, nearly
/// always — is that frame's bytes, with no copy and no list of frames (`http_body_util`'s
/// `Collected` keeps one, an allocation per body); more frames are copied into one buffer.
/// Trailers are skipped. It reads to the end: give it a bounded body (a `Limited` one, as the
/// OpenAI-compatible provider does for its upstream's replies). The join buffer is pre-sized from
/// the body's size hint, at most [`PRESIZE_MAX`].
#[cfg(any(feature = "openai", test))]
pub(crate) async fn to_bytes<B>(body: B) -> Result<Bytes, B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match (&mut joined, &first) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, Some(head)) => {
                // Sized for what the body says is still to come (up to `PRESIZE_MAX`: the hint
                // is the sender's claim, e.g. its Content-Length), so a long body is not regrown
                // by doubling; past that it grows with the bytes that actually arrive.
                let rest =
                    usize::try_from(body.size_hint().lower()).map_or(0, |n| n.min(PRESIZE_MAX));
                let mut buf = bytes::BytesMut::with_capacity(
                    head.len().saturating_add(data.len()).saturating_add(rest),
                );
                buf.extend_from_slice(head);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
            (None, None) => first = Some(data),
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of the given frames (data, or trailers for `None`).
    fn framed(
        frames: Vec<Option<&'static [u8]>>,
    ) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
        let frames = frames.into_iter().map(|f| {
            Ok::<_, BoxError>(match f {
                Some(b) => Frame::data(Bytes::from_static(b)),
                None => Frame::trailers(http::HeaderMap::new()),
            })
        });
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn to_bytes_keeps_one_frame_as_it_is_and_joins_several() {
        let one = Bytes::from_static(b"{\"id\":1}");
        let got = to_bytes(Full::new(one.clone())).await.unwrap();
        assert_eq!(got, one);
        assert_eq!(got.as_ptr(), one.as_ptr(), "one frame is not copied");

        let got = to_bytes(framed(vec![
            Some(b"ab"),
            Some(b""),
            Some(b"cd"),
            None,
            Some(b"e"),
        ]))
        .await
        .unwrap();
        assert_eq!(&got[..], b"abcde");
        assert!(to_bytes(framed(vec![])).await.unwrap().is_empty());
        assert!(to_bytes(framed(vec![None])).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn to_bytes_reserves_at_most_a_mebibyte_on_a_bodys_claimed_length() {
        /// Two small frames under a claim of a terabyte still to come (a hostile Content-Length):
        /// reserving what it claims would abort the process.
        struct Claims(Vec<&'static [u8]>);
        impl http_body::Body for Claims {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                let next = (!self.0.is_empty()).then(|| self.0.remove(0));
                Poll::Ready(next.map(|b| Ok(Frame::data(Bytes::from_static(b)))))
            }
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(1 << 40)
            }
        }
        let got = to_bytes(Claims(vec![b"ab", b"cd", b"ef"])).await.unwrap();
        assert_eq!(&got[..], b"abcdef");
    }

    #[tokio::test]
    async fn to_bytes_fails_over_a_limit_and_on_an_error_after_data() {
        use http_body_util::Limited;
        // Within the limit, in several frames: joined.
        let body = Limited::new(framed(vec![Some(b"abc"), Some(b"def")]), 6);
        assert_eq!(&to_bytes(body).await.unwrap()[..], b"abcdef");
        // One byte over, in the second frame: an error, not a truncated body.
        let body = Limited::new(framed(vec![Some(b"abc"), Some(b"defg")]), 6);
        let err = to_bytes(body).await.unwrap_err();
        assert!(err.to_string().contains("length limit"), "{err}");

        // An error after some data is the error, not the data so far.
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Err(BoxError::from("connection reset")),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let err = to_bytes(body).await.unwrap_err();
        assert_eq!(err.to_string(), "connection reset");
    }
}
