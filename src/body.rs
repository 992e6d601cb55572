//! [`Body`]: the one response body type of the gateway.
//!
//! An opaque newtype so the public API never names a concrete body and every layer (JSON replies,
//! SSE streams, error responses) answers with the same type. Inside, the bodies a request nearly
//! always has are held as they are: bytes already in memory (a complete reply, an error, an empty
//! body) and hyper's incoming request body; any other body is boxed. Each of those would otherwise
//! be one heap block and a virtual call per frame (`dhat`: about three blocks of the gateway's 72
//! per relayed request, issue 18).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty};

/// Boxed error of a body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body of every gateway response.
pub struct Body(Kind);

enum Kind {
    /// Bytes in memory, sent as one frame (`None`: sent, or empty from the start).
    Full(Option<Bytes>),
    /// A request body as hyper's server reads it.
    Incoming(hyper::body::Incoming),
    /// Any other body.
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// Wraps any body.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A `Body` is one already: it is not boxed a second time (as axum's `Body::new` does);
        // nor are hyper's request body and an empty body.
        let mut slot = Some(body);
        let any = &mut slot as &mut dyn std::any::Any;
        if let Some(own) = any.downcast_mut::<Option<Body>>() {
            if let Some(own) = own.take() {
                return own;
            }
        } else if let Some(incoming) = any.downcast_mut::<Option<hyper::body::Incoming>>() {
            if let Some(incoming) = incoming.take() {
                return Body(Kind::Incoming(incoming));
            }
        } else if any.is::<Option<Empty<Bytes>>>() {
            return Body(Kind::Full(None));
        }
        match slot {
            Some(body) => Body(Kind::Boxed(body.map_err(Into::into).boxed_unsync())),
            // Not reached (the slot is emptied only for the bodies returned above); no panic path.
            None => Body::empty(),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Body(Kind::Full(None))
    }

    /// Whether the whole body is in memory (nothing left to wait for): a complete reply or an
    /// error, not a stream or a request still arriving.
    pub(crate) fn is_in_memory(&self) -> bool {
        matches!(self.0, Kind::Full(_))
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        // As `Full`: an empty body has no data frame.
        Body(Kind::Full((!b.is_empty()).then_some(b)))
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
        match &mut self.0 {
            Kind::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(data) => data.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// The most [`to_bytes`] reserves ahead on a body's word.
#[cfg(any(feature = "openai", feature = "bedrock", test))]
const PRESIZE_MAX: usize = 1 << 20;

/// Reads `body` whole into one `Bytes`. A body that arrives in one frame — a small reply, nearly
/// always — is that frame's bytes, with no copy and no list of frames (`http_body_util`'s
/// `Collected` keeps one, an allocation per body); more frames are copied into one buffer.
/// Trailers are skipped. It reads to the end: give it a bounded body (a `Limited` one, as the
/// OpenAI-compatible provider does for its upstream's replies, and the Bedrock provider for
/// InvokeModel's). The join buffer is pre-sized from the body's size hint, at most
/// [`PRESIZE_MAX`].
#[cfg(any(feature = "openai", feature = "bedrock", test))]
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
    use futures_util::StreamExt;
    use http_body_util::Full;

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
    async fn bytes_in_memory_are_one_frame_and_an_empty_body_none() {
        use http_body::Body as _;
        let body = Body::from("hello");
        assert!(body.is_in_memory());
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        let frames: Vec<_> = http_body_util::BodyStream::new(body)
            .map(|f| f.unwrap().into_data().unwrap())
            .collect()
            .await;
        assert_eq!(frames, [Bytes::from_static(b"hello")]);

        for empty in [
            Body::from(Bytes::new()),
            Body::empty(),
            Body::new(Empty::<Bytes>::new()),
        ] {
            assert!(empty.is_in_memory());
            assert!(empty.is_end_stream());
            assert_eq!(empty.size_hint().exact(), Some(0));
            assert!(empty.collect().await.unwrap().to_bytes().is_empty());
        }
        // Any other body is boxed, and is not in memory.
        let streamed = Body::new(Full::new(Bytes::from_static(b"x")));
        assert!(!streamed.is_in_memory());
        assert_eq!(&streamed.collect().await.unwrap().to_bytes()[..], b"x");
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
