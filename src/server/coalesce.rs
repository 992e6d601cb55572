//! A connection's wake-ups of itself, taken within the poll that caused them.
//!
//! Detection reads each request body whole inside hyper's connection task, and taking the body's
//! bytes from hyper's channel wakes the channel's sender: hyper's dispatcher, that is the very
//! task that is running. tokio treats a task woken while it runs as one that yielded: it goes to
//! the back of its worker's queue and an idle worker is unparked to come for it. That is a futex
//! wake and, when the second worker finds nothing else to do, a park, for every request (about
//! two futex calls per request where the bare proxy, which streams the body to another task,
//! makes a quarter of one; a bare proxy that collects the body makes the same two: BENCHMARKS.md).
//!
//! [`Coalesced`] polls the connection with a waker of its own. A wake that arrives while the
//! connection is being polled, from this thread or another, is noted instead of passed on, and the
//! connection is polled again at once, at most [`INLINE_REPOLLS`] times per poll; past that the
//! wake is passed on, so a future that yields through its waker to be fair (hyper's dispatcher,
//! after 16 rounds) still yields. tokio's own yields (`task::yield_now`, an exhausted cooperative
//! budget) defer their wake until the poll has returned, so they reach the task as before. A wake
//! at any other time is passed on as it comes. No library does this for a hyper connection; it is
//! a few atomics. (A private module: its examples are the tests below.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// How many times one poll of a [`Coalesced`] polls its future again for a wake it gave itself.
pub(crate) const INLINE_REPOLLS: u32 = 1;

/// `Shared::state` bits. Not being polled, not woken.
const IDLE: u8 = 0;
/// Being polled.
const POLLING: u8 = 1;
/// Woken since the poll began. Every wake sets it with a read-modify-write, so the poll that
/// takes it (`swap`) is ordered after every one of them.
const WOKEN: u8 = 2;

pin_project_lite::pin_project! {
    /// `F`, polled so that wakes it causes while it is polled do not reschedule its task (see the
    /// module docs).
    pub(crate) struct Coalesced<F> {
        #[pin]
        inner: F,
        shared: Arc<Shared>,
        // A waker over `shared`, made once, so that what registers it sees the same waker on
        // every poll (`Waker::will_wake`).
        waker: Waker,
    }
}

struct Shared {
    state: AtomicU8,
    /// The task's own waker, from the latest poll.
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // While polled, the poll under way sees the wake and polls again; else the task is woken.
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & POLLING == 0 {
            self.task.wake();
        }
    }
}

impl<F> Coalesced<F> {
    /// `inner`, to be polled through its own waker.
    pub(crate) fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Coalesced {
            inner,
            waker: Waker::from(shared.clone()),
            shared,
        }
    }
}

impl<F: Future> Future for Coalesced<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.shared.task.register(cx.waker());
        let mut own = Context::from_waker(this.waker);
        let mut repolls = 0;
        loop {
            this.shared.state.store(POLLING, Ordering::Release);
            let polled = this.inner.as_mut().poll(&mut own);
            let woken = this.shared.state.swap(IDLE, Ordering::AcqRel) & WOKEN != 0;
            if !woken || polled.is_ready() {
                return polled;
            }
            if repolls == INLINE_REPOLLS {
                // It keeps waking itself: let the scheduler run others first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            repolls += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes of the task.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        (count, waker)
    }

    /// A future that wakes itself on each of its first `wakes` polls and is ready after them.
    struct SelfWaking {
        polls: u32,
        wakes: u32,
    }

    impl Future for SelfWaking {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.polls > self.wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A wake given during the poll is taken by polling again at once: the task is not woken.
    #[test]
    fn a_wake_during_the_poll_is_a_second_poll_not_a_reschedule() {
        let (count, waker) = task();
        let mut fut = std::pin::pin!(Coalesced::new(SelfWaking { polls: 0, wakes: 1 }));
        let polled = fut.as_mut().poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    /// A future that keeps waking itself still yields: after the inline polls, the task is woken
    /// and the poll returns.
    #[test]
    fn a_future_that_keeps_waking_itself_still_yields() {
        let (count, waker) = task();
        let mut fut = std::pin::pin!(Coalesced::new(SelfWaking {
            polls: 0,
            wakes: 100
        }));
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(fut.inner.polls, INLINE_REPOLLS + 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    /// A wake between polls (the socket became readable, an answer arrived) wakes the task, once
    /// per registration, from any thread.
    #[test]
    fn a_wake_between_polls_wakes_the_task() {
        let (count, waker) = task();
        let (tx, rx) = std::sync::mpsc::channel::<Waker>();
        let mut fut = std::pin::pin!(Coalesced::new(std::future::poll_fn(|cx| {
            tx.send(cx.waker().clone()).unwrap();
            Poll::<()>::Pending
        })));
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let registered = rx.recv().unwrap();
        std::thread::spawn(move || registered.wake())
            .join()
            .unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Polled again: the same waker is handed down, so registrations can be kept.
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let again = rx.recv().unwrap();
        assert!(again.will_wake(&fut.waker));
    }

    /// A wake from another thread while the future is being polled is taken by the poll: the
    /// future is polled again at once, and the task is not woken.
    #[test]
    fn a_wake_from_another_thread_during_the_poll_is_taken_by_the_poll() {
        let (count, waker) = task();
        let mut polls = 0;
        let mut fut = std::pin::pin!(Coalesced::new(std::future::poll_fn(move |cx| {
            polls += 1;
            if polls > 1 {
                return Poll::Ready(polls);
            }
            let waker = cx.waker().clone();
            std::thread::spawn(move || waker.wake()).join().unwrap();
            Poll::Pending
        })));
        let polled = fut.as_mut().poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }
}
