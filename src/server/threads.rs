//! Serving on threads of their own ([`ServerLimits::threads`](super::ServerLimits::threads)), and
//! the values each of them keeps its own copy of ([`PerThread`]).
//!
//! Why: on tokio's work-stealing runtime a connection's task and the task of the pooled upstream
//! connection its request uses move between the workers. A request then often wakes the other
//! worker, and its heap blocks are allocated on one thread and freed on the other, where glibc's
//! allocator takes the owning arena's lock once the freeing thread's cache is full (at saturation
//! most of the gateway's `futex` calls are that lock; BENCHMARKS.md, issue 18). Here each thread
//! runs a single-threaded runtime and accepts from its own copy (`dup`) of the listening socket:
//! whichever thread is free takes the next connection, and the connection, the upstream
//! connections its requests use (pools kept per thread through [`PerThread`]) and the memory they
//! allocate stay on that thread.
//!
//! The cost: no thread takes over another's connections. A thread kept busy (a CPU-heavy request,
//! or the kernel running something else on its core) delays every connection it holds, where the
//! shared runtime's other workers would have taken them. Hence off by default.
//!
//! Shared between the threads: the connection limit (one semaphore), the shutdown (each thread
//! drains its own connections within the same drain period; streams still open after it end
//! through the same token), and everything the service keeps behind `Arc`s (keys, rate limits,
//! metrics). Tasks spawned while serving (HTTP/2 streams, upstream connections) run on the serving
//! thread's runtime; tasks started before serving (key reloads, the metrics port) on the caller's.
//!
//! Written here because neither tokio nor hyper-util has it: tokio's runtimes are either
//! work-stealing or one thread, and `tokio_util::task::LocalPoolHandle` pins tasks but not the
//! connections hyper-util's pool hands out.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{accept_loop, Served, Serving};

thread_local! {
    /// Whether this thread is one of the serving threads.
    static SERVING: Cell<bool> = const { Cell::new(false) };
    /// A serving thread's own copies, by the [`PerThread`] they belong to.
    static OWN: RefCell<Vec<(u64, Rc<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// Serves on `serving.limits.threads` threads (see the module docs) until `shutdown`, then lets each
/// drain; returns when every thread has ended. Dropped before that (the caller's task aborted),
/// it ends the threads at once, as dropping the one-runtime server drops its connections.
pub(super) async fn serve<S: Served>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serving: Serving<S>,
) {
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot hand the listener to the serving threads");
            return;
        }
    };
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let on_drop = abort.clone().drop_guard();
    let threads = serving.limits.threads;
    let mut ended = Vec::with_capacity(threads);
    for i in 0..threads {
        let copy = match listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, thread = i, "cannot copy the listener for a serving thread");
                continue;
            }
        };
        let (done, end) = tokio::sync::oneshot::channel::<()>();
        let (serving, stop, abort) = (serving.clone(), stop.clone(), abort.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let _done = done;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, thread = i, "cannot start a serving thread's runtime");
                        return;
                    }
                };
                SERVING.set(true);
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(copy) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, thread = i, "cannot listen on a serving thread");
                            return;
                        }
                    };
                    tokio::select! {
                        () = accept_loop(listener, stop.cancelled_owned(), serving) => {}
                        () = abort.cancelled() => {}
                    }
                });
            });
        match spawned {
            Ok(_) => ended.push(end),
            Err(e) => tracing::error!(error = %e, thread = i, "cannot start a serving thread"),
        }
    }
    drop(listener);
    let all_ended = futures_util::future::join_all(ended);
    let shutdown = std::pin::pin!(shutdown);
    tokio::pin!(all_ended);
    tokio::select! {
        _ = &mut all_ended => {}
        () = shutdown => {
            stop.cancel();
            all_ended.await;
        }
    }
    on_drop.disarm();
}

/// A value each serving thread keeps its own copy of, made by the thread's first use; any other
/// thread uses one shared copy. For the upstream connection pools: a serving thread then sends on
/// connections its own runtime drives.
///
/// A thread's copy lives as long as the thread, which ends with the server.
#[cfg_attr(not(feature = "openai"), allow(dead_code))]
pub(crate) struct PerThread<T> {
    id: u64,
    shared: T,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

#[cfg_attr(not(feature = "openai"), allow(dead_code))]
impl<T: 'static> PerThread<T> {
    /// The shared copy is made now, a serving thread's own by `make` on its first use.
    pub(crate) fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        PerThread {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            shared: make(),
            make: Box::new(make),
        }
    }

    /// `f` of this thread's copy.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        if !SERVING.get() {
            return f(&self.shared);
        }
        let found = OWN.with_borrow(|own| {
            own.iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, v)| v.clone())
        });
        let own = found.unwrap_or_else(|| {
            let made: Rc<dyn Any> = Rc::new((self.make)());
            OWN.with_borrow_mut(|own| own.push((self.id, made.clone())));
            made
        });
        match own.downcast_ref::<T>() {
            Some(own) => f(own),
            None => f(&self.shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn a_serving_thread_makes_its_own_copy_once_and_other_threads_share_one() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = made.clone();
        let per_thread = Arc::new(PerThread::new(move || {
            counter.fetch_add(1, Ordering::Relaxed) + 1
        }));
        assert_eq!(
            made.load(Ordering::Relaxed),
            1,
            "the shared copy, made at once"
        );
        assert_eq!(per_thread.with(|v| *v), 1);
        assert_eq!(
            per_thread.with(|v| *v),
            1,
            "not a serving thread: the shared copy"
        );
        let serving = |per_thread: Arc<PerThread<usize>>| {
            std::thread::spawn(move || {
                SERVING.set(true);
                let first = per_thread.with(|v| *v);
                let again = per_thread.with(|v| *v);
                (first, again)
            })
            .join()
            .unwrap()
        };
        let (first, again) = serving(per_thread.clone());
        assert_eq!((first, again), (2, 2), "its own, made once");
        let (first, again) = serving(per_thread.clone());
        assert_eq!((first, again), (3, 3), "another thread, another copy");
        assert_eq!(made.load(Ordering::Relaxed), 3);
        assert_eq!(per_thread.with(|v| *v), 1);
    }

    #[test]
    fn two_values_on_one_thread_keep_their_own_copies() {
        std::thread::spawn(|| {
            SERVING.set(true);
            let a = PerThread::new(|| "a");
            let b = PerThread::new(|| 7u32);
            assert_eq!(a.with(|v| *v), "a");
            assert_eq!(b.with(|v| *v), 7);
            assert_eq!(a.with(|v| *v), "a");
        })
        .join()
        .unwrap();
    }
}
