//! Calling a service that is ready now, in place.
//!
//! A stack shared by many callers is cloned for each call in tower's usual pattern (clone, wait
//! for readiness, call: `Oneshot`), because `call` takes `&mut self` and the future must not
//! borrow it. For the gateway's boxed stacks a clone is a heap block and an `Arc` count per layer.
//! A caller that keeps one clone of its own (per connection, say) can instead ask it for readiness
//! with a no-op waker and call it at once when it is ready, which the gateway's own stacks always
//! are.
//!
//! Only for stacks this crate builds, ready by construction and without state per clone: the
//! server's outer stack under `Gateway::serve` and the route table's ingress without an
//! embedder's layers in it. An embedder's layer may keep state per clone (`RateLimit`), or queue
//! for capacity while a layer above answers ready (`LoadShed` over `ConcurrencyLimit`): a kept
//! clone would keep that place in the queue between requests, and the capacity handed to it would
//! wait for the connection's next request. Those stacks are cloned per request.
//!
//! A clone that is not ready goes with the request and is waited on with the caller's waker (and
//! the caller makes a new one next time). It must not be left behind for a fresh clone to wait in
//! its place: a service that reserves capacity while it is not ready (tower's `ConcurrencyLimit`
//! queues for a semaphore permit) would keep its place in the queue and be handed the capacity
//! with no one to poll it, and the fresh clone behind it would wait forever.

use std::task::{Context, Poll, Waker};

use futures_util::future::Either;
use tower::util::Oneshot;
use tower_service::Service;

/// A kept clone of a service for [`call_or_wait`]: empty until the first call, and empty in every
/// clone of its holder (each holder makes its own when it is first called).
pub(crate) struct Own<S>(Option<S>);

impl<S> Own<S> {
    pub(crate) fn new() -> Self {
        Own(None)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl<S> Clone for Own<S> {
    fn clone(&self) -> Self {
        Own(None)
    }
}

impl<S> Default for Own<S> {
    fn default() -> Self {
        Own::new()
    }
}

impl<S> std::fmt::Debug for Own<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Own(kept)"
        } else {
            "Own(none)"
        })
    }
}

/// Calls the service kept in `own` (made by `make` if there is none) with `req` if it is ready
/// now; otherwise takes it out of `own` and waits for it to be ready (`Oneshot`). A service whose
/// readiness failed goes into the `Oneshot` too, which asks it again and reports the error as the
/// call's (the stacks this is used for are `Error = Infallible`).
pub(crate) fn call_or_wait<S, R>(
    own: &mut Own<S>,
    make: impl FnOnce() -> S,
    req: R,
) -> Either<S::Future, Oneshot<S, R>>
where
    S: Service<R>,
{
    let mut service = own.0.take().unwrap_or_else(make);
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => {
            let called = service.call(req);
            own.0 = Some(service);
            Either::Left(called)
        }
        _ => Either::Right(Oneshot::new(service, req)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[tokio::test]
    async fn calls_a_ready_service_in_place_and_waits_for_one_that_is_not() {
        let made = std::cell::Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            tower::service_fn(|n: u8| async move { Ok::<_, ()>(n + 1) })
        };
        let mut own = Own::new();
        assert_eq!(call_or_wait(&mut own, make, 1).await, Ok(2));
        assert_eq!(call_or_wait(&mut own, make, 2).await, Ok(3));
        assert_eq!(made.get(), 1, "made once, then called in place");
    }

    #[tokio::test]
    async fn a_service_queued_for_capacity_is_the_one_waited_on() {
        // One request at a time: the first holds the only permit until `release` fires.
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let hold = std::sync::Arc::new(std::sync::Mutex::new(Some(hold)));
        let limited = tower::limit::ConcurrencyLimit::new(
            tower::service_fn(move |n: u8| {
                let hold = hold.lock().ok().and_then(|mut h| h.take());
                async move {
                    if let Some(hold) = hold {
                        let _ = hold.await;
                    }
                    Ok::<_, ()>(n)
                }
            }),
            1,
        );
        let mut own = Own::new();
        let first = tokio::spawn(call_or_wait(&mut own, || limited.clone(), 1));
        // Not ready (the permit is taken): its clone queues for the permit and goes with it.
        let second = tokio::spawn(call_or_wait(&mut own, || limited.clone(), 2));
        assert!(own.is_empty(), "the queued clone was not left behind");
        tokio::task::yield_now().await;
        let _ = release.send(());
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(
            tokio::time::timeout(wait, first).await.unwrap().unwrap(),
            Ok(1)
        );
        assert_eq!(
            tokio::time::timeout(wait, second).await.unwrap().unwrap(),
            Ok(2)
        );
        // A new clone serves the next call.
        let third = call_or_wait(&mut own, || limited.clone(), 3);
        assert_eq!(tokio::time::timeout(wait, third).await.unwrap(), Ok(3));
    }
}
