//! [`Woken`]: a waker that notes it was woken, so a future polled often can leave its quiet
//! sources (timers, shutdown signals) unpolled until one of them has something to say.
//!
//! A stream body waiting for its upstream is polled once per upstream event, and a connection's
//! task once per read or write; each such poll went on to poll the same timers and signals to
//! find them still pending: the stream's keep-alive timer and the shutdown token (whose every poll
//! locks a mutex all streams share), the connection's watchdog (a timer and a `Notify`). Polled
//! with a [`Woken`]'s waker instead of the task's, they are polled again only after one of them
//! woke the task. Per five-event stream that was the token 1.6 k instructions, the keep-alive timer
//! 1.3 k, the upstream stream's timer 1.3 k and the watchdog 1.6 k (callgrind, BENCHMARKS.md,
//! issue 18). A waker of its own is also what keeps this right when a source's poll finds the
//! task's cooperative budget spent: tokio then wakes the waker it was given, so the flag is set
//! and the source is polled on the next poll. futures' `FuturesUnordered` keeps such a flag per
//! future it runs; for a few fields of one future no crate does, and it is an atomic flag in front
//! of the task's waker.
//!
//! A stream body also polls its yield to the runtime (`tokio::task::yield_now`, while it holds
//! events for one frame: `stream::encode`) with a [`Woken`]'s waker: [`Woken::take`] then says
//! whether the runtime has come back, so a poll before that keeps waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// A waker for a future's quiet sources: [`Woken::take`] says whether they woke it.
pub(crate) struct Woken {
    shared: Arc<Shared>,
    // Made once, so the sources see the same waker on every poll (`Waker::will_wake`).
    waker: Waker,
}

struct Shared {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Noted before the task is woken, so the poll that follows sees it.
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Woken {
    /// Woken to begin with: the first [`take`](Self::take) has the sources polled (registered).
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Woken {
            waker: Waker::from(shared.clone()),
            shared,
        }
    }

    /// The waker to poll the sources with.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Takes the task's waker (from `cx`) for the next wake; gives the waker to poll the sources
    /// with when one of them woke the task since the last `take` (or before the first), else
    /// `None`: every source still holds this waker and has nothing new.
    pub(crate) fn take(&self, cx: &Context<'_>) -> Option<&Waker> {
        // Registered before the flag is read: a wake after the read reaches the task.
        self.shared.task.register(cx.waker());
        self.shared
            .woken
            .swap(false, Ordering::AcqRel)
            .then_some(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task waker that counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_source_is_polled_first_and_then_only_after_it_woke_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let task = Waker::from(count.clone());
        let cx = Context::from_waker(&task);
        let woken = Woken::new();
        let source = woken.take(&cx).expect("polled first, to register").clone();
        assert!(woken.take(&cx).is_none(), "nothing woke it since");
        assert!(woken.take(&cx).is_none());
        source.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(woken.take(&cx).is_some(), "the source is polled again");
        assert!(woken.take(&cx).is_none());
        // Two wakes before the next poll: the first takes the task's waker, the second finds
        // none; the flag holds both until the next take.
        source.wake_by_ref();
        source.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(woken.take(&cx).is_some());
        assert!(woken.take(&cx).is_none());
    }
}
