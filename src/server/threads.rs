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
//! shared runtime's other workers would have taken them. On by default all the same (one thread
//! per core, `config::default_server_threads`): measured side by side, the threads' higher
//! throughput and lower CPU per request at saturation outweighed it (BENCHMARKS.md);
//! `server.threads = 0` serves on the shared runtime.
//!
//! Shared between the threads: the connection limit (one semaphore), the shutdown (each thread
//! drains its own connections within the same drain period, and logs its own drain; streams still
//! open after it end through the same token), and everything the service keeps behind `Arc`s (keys,
//! rate limits, metrics). Kept per thread: the OpenAI-compatible providers' pools and the Bedrock
//! runtime clients (with their pools). Tasks spawned while serving run on the serving thread's
//! runtime: HTTP/2 streams, and the background tasks of clients the threads share (each of the
//! media fetcher's, the Bedrock control-plane client's and the AWS credential providers' pooled
//! connections on the thread that opened it, Redis's connection driver on the thread that last
//! connected), serving the others from there. So every runtime lives until the last thread has
//! drained. Tasks started before serving (key reloads, the metrics port) run on the caller's
//! runtime. A pool per thread multiplies its idle-connection bound (`pool_max_idle`) by the number
//! of threads.
//!
//! Written here because neither tokio nor hyper-util has it: tokio's runtimes are either
//! work-stealing or one thread, and `tokio_util::task::LocalPoolHandle` pins tasks but not the
//! connections hyper-util's pool hands out.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use super::{accept_loop, Served, Serving};

thread_local! {
    /// Whether this thread is one of the serving threads.
    static SERVING: Cell<bool> = const { Cell::new(false) };
    /// A serving thread's own copies, by the [`PerThread`] they belong to.
    static OWN: RefCell<Vec<Own>> = const { RefCell::new(Vec::new()) };
}

/// Serves on `serving.limits.threads` threads (see the module docs) until `shutdown`, then lets
/// each drain. The threads' runtimes end together once every thread has drained: the tasks the
/// shared clients spawn (the media fetcher's connections, Redis's connection driver) run on one
/// thread and serve the others until then. Dropped before that (the caller's task aborted), it
/// tells every thread to end at once, as dropping the one-runtime server drops its connections.
///
/// The runtimes and the copies of the socket are made before any thread starts. If they cannot
/// be, or no thread starts, the loop runs on the caller's runtime instead, with an error in the
/// log.
pub(super) async fn serve<S: Served>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    serving: Serving<S>,
) {
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot hand the listener to the serving threads; not serving");
            return;
        }
    };
    let prepared: io::Result<Vec<_>> = (0..serving.limits.threads)
        .map(|_| prepare(&listener))
        .collect();
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the serving threads; serving on one runtime");
            return serve_here(listener, shutdown, serving).await;
        }
    };
    let stop = CancellationToken::new();
    // Cancelled once every thread's loop has ended, or when this future is dropped.
    let release = CancellationToken::new();
    let on_drop = release.clone().drop_guard();
    let log = tracing::dispatcher::get_default(Clone::clone);
    let (mut looped, mut ended) = (Vec::new(), Vec::new());
    for (i, (copy, runtime)) in prepared.into_iter().enumerate() {
        let (loop_done, loop_end) = tokio::sync::oneshot::channel::<()>();
        let (done, end) = tokio::sync::oneshot::channel::<()>();
        let (serving, stop, release, log) =
            (serving.clone(), stop.clone(), release.clone(), log.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                // Locals drop in reverse: the runtime and its tasks first, `done` last.
                let _done = done;
                // The process's global subscriber reaches every thread; a caller's scoped one
                // (a test's, an embedder's) is carried over. Setting it when a global one exists
                // would move every event in the process off tracing's global fast path.
                let _log = (!tracing::dispatcher::has_been_set())
                    .then(|| tracing::dispatcher::set_default(&log));
                let runtime = runtime;
                SERVING.set(true);
                let Some(runtime) = &runtime.0 else { return };
                runtime.block_on(async move {
                    tokio::select! {
                        () = accept_loop(copy, stop.cancelled_owned(), serving) => {}
                        () = release.cancelled() => return,
                    }
                    drop(loop_done);
                    release.cancelled().await;
                });
            });
        match spawned {
            Ok(_) => {
                looped.push(loop_end);
                ended.push(end);
            }
            Err(e) => tracing::error!(error = %e, thread = i, "cannot start a serving thread"),
        }
    }
    if looped.is_empty() {
        tracing::error!("no serving thread started; serving on one runtime");
        return serve_here(listener, shutdown, serving).await;
    }
    drop(listener);
    let all_looped = futures_util::future::join_all(looped);
    tokio::pin!(shutdown, all_looped);
    tokio::select! {
        _ = &mut all_looped => tracing::error!("every serving thread ended before the shutdown"),
        () = &mut shutdown => {
            stop.cancel();
            all_looped.await;
        }
    }
    drop(on_drop);
    futures_util::future::join_all(ended).await;
}

/// The loop on the caller's runtime, when the threads cannot serve.
async fn serve_here<S: Served>(
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()>,
    serving: Serving<S>,
) {
    match TcpListener::from_std(listener) {
        Ok(l) => accept_loop(l, shutdown, serving).await,
        Err(e) => tracing::error!(error = %e, "cannot listen; not serving"),
    }
}

/// A serving thread's runtime, and its copy of `listener` registered with it.
fn prepare(listener: &std::net::TcpListener) -> io::Result<(TcpListener, ThreadRuntime)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    // Wrapped before anything else can fail: a plain runtime dropped here would panic.
    let runtime = ThreadRuntime(Some(runtime));
    let copy = listener.try_clone()?;
    let copy = {
        let _in = handle.enter();
        TcpListener::from_std(copy)?
    };
    Ok((copy, runtime))
}

/// A serving thread's runtime, which may be dropped anywhere: made on the caller's runtime, it is
/// dropped there too when its thread cannot start, where tokio's own drop would panic (it waits
/// for its blocking pool). Its tasks are dropped with it; its blocking pool is not waited for.
struct ThreadRuntime(Option<Runtime>);

impl Drop for ThreadRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Marks this thread a serving thread: for tests of what keeps a copy per serving thread.
#[cfg(all(test, feature = "bedrock"))]
pub(crate) fn mark_serving() {
    SERVING.set(true);
}

/// A value each serving thread keeps its own copy of, made by the thread's first use; any other
/// thread uses one shared copy. For the upstream connection pools: a serving thread then sends on
/// connections its own runtime drives.
///
/// A thread's copy lives until the thread ends, or, once the `PerThread` is dropped, until that
/// thread next makes a copy of any `PerThread`.
#[cfg_attr(not(any(feature = "openai", feature = "bedrock")), allow(dead_code))]
pub(crate) struct PerThread<T> {
    id: u64,
    /// Alive as long as this `PerThread`: the threads' copies of a dropped one are let go.
    alive: Arc<()>,
    shared: T,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

/// One serving thread's copy of one [`PerThread`]'s value.
struct Own {
    id: u64,
    alive: Weak<()>,
    value: Rc<dyn Any>,
}

#[cfg_attr(not(any(feature = "openai", feature = "bedrock")), allow(dead_code))]
impl<T: 'static> PerThread<T> {
    /// The shared copy is made now, a serving thread's own by `make` on its first use.
    pub(crate) fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        PerThread {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
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
                .find(|o| o.id == self.id)
                .map(|o| o.value.clone())
        });
        let own = found.unwrap_or_else(|| {
            let made: Rc<dyn Any> = Rc::new((self.make)());
            let dead: Vec<Own> = OWN.with_borrow_mut(|own| {
                let (live, dead) = std::mem::take(own)
                    .into_iter()
                    .partition(|o| o.alive.strong_count() > 0);
                *own = live;
                own.push(Own {
                    id: self.id,
                    alive: Arc::downgrade(&self.alive),
                    value: made.clone(),
                });
                dead
            });
            // Dropped outside the borrow: a value's drop may use a `PerThread` too.
            drop(dead);
            made
        });
        match own.downcast_ref::<T>() {
            Some(own) => f(own),
            // Not reached: an id belongs to one `PerThread`, whose copies are all a `T`.
            None => f(&self.shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
    fn the_copies_of_a_dropped_value_are_let_go() {
        let probe = Arc::new(());
        std::thread::spawn({
            let probe = probe.clone();
            move || {
                SERVING.set(true);
                let gone = PerThread::new(move || probe.clone());
                gone.with(|_| ());
                assert_eq!(
                    Arc::strong_count(&gone.shared),
                    4,
                    "probe, closure, shared, own"
                );
                drop(gone);
                let next = PerThread::new(|| 0u8);
                next.with(|_| ());
                assert_eq!(
                    OWN.with_borrow(Vec::len),
                    1,
                    "only the live value's copy is kept"
                );
            }
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[tokio::test]
    async fn requests_on_the_serving_threads_use_their_own_copies() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let made = Arc::new(AtomicUsize::new(0));
        let per_thread = Arc::new(PerThread::new(move || {
            made.fetch_add(1, Ordering::Relaxed) + 1
        }));
        let service = tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
            let copy = per_thread.with(|v| *v);
            async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(crate::body::Body::from(
                    copy.to_string(),
                )))
            }
        });
        let listener = super::super::bind(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(super::super::serve_with(
            listener,
            service,
            stop.clone().cancelled_owned(),
            std::time::Duration::from_secs(5),
            CancellationToken::new(),
            super::super::ServerLimits::default().with_threads(2),
        ));
        for _ in 0..4 {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut reply = String::new();
            conn.read_to_string(&mut reply).await.unwrap();
            let copy = reply.rsplit("\r\n\r\n").next().unwrap();
            assert!(
                copy == "2" || copy == "3",
                "a serving thread's own copy, not the shared one (1): {reply}"
            );
        }
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_serving_threads_runtime_may_be_dropped_on_the_callers() {
        // A thread that cannot start drops its runtime here, in an async context.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let (copy, runtime) = prepare(&listener).unwrap();
        drop((copy, runtime));
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
