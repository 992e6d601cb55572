//! [`ResponseFuture`] of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::decision::Decision;
use super::limiter::CheckFuture;
use crate::error::ErrorDialect;

pin_project_lite::pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): waits for the limiter when it is remote,
    /// then for the inner service, and adds the `x-ratelimit-*` headers to its response.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Checking { check: CheckFuture, pending: Option<(S, Request<B>)>, dialect: ErrorDialect },
        Inner { #[pin] fut: S::Future, decision: Decision },
        Rejected { res: Option<S::Response> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(fut: S::Future, decision: Decision) -> Self {
        ResponseFuture {
            state: State::Inner { fut, decision },
        }
    }

    pub(crate) fn rejected(res: S::Response) -> Self {
        ResponseFuture {
            state: State::Rejected { res: Some(res) },
        }
    }

    pub(crate) fn checking(
        check: CheckFuture,
        service: S,
        req: Request<B>,
        dialect: ErrorDialect,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                pending: Some((service, req)),
                dialect,
            },
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: From<Bytes>,
{
    type Output = Result<Response<ResB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Checking {
                    check,
                    pending,
                    dialect,
                } => {
                    let decision = ready!(check.as_mut().poll(cx));
                    let next = match (decision.rejection(*dialect), pending.take()) {
                        (Some(res), _) => State::Rejected { res: Some(res) },
                        (None, Some((mut service, req))) => State::Inner {
                            fut: service.call(req),
                            decision,
                        },
                        (None, None) => return Poll::Pending,
                    };
                    state.set(next);
                }
                StateProj::Inner { fut, decision } => {
                    let mut out = ready!(fut.poll(cx));
                    if let Ok(res) = &mut out {
                        decision.write_headers(res.headers_mut());
                    }
                    return Poll::Ready(out);
                }
                StateProj::Rejected { res } => {
                    return match res.take() {
                        Some(r) => Poll::Ready(Ok(r)),
                        None => Poll::Pending,
                    }
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Inner { .. } => "inner",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
