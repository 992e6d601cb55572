//! One accepted connection: its deadlines, its requests in flight, and the handle that closes it.
//!
//! hyper bounds a connection only once a request is under way (HTTP/1 header timeout, HTTP/2
//! keep-alive pings); a connection that never sends a byte, sends half an HTTP/2 preface, or sits
//! idle between requests would stay open forever. So each connection runs beside a watchdog that
//! closes it when:
//!
//! - its **first request** (HTTP/1 request head; HTTP/2 preface, settings and first HEADERS) has
//!   not arrived within `first_request` of the accept;
//! - it has had **no request in flight** (the last response fully sent) for `idle`;
//! - an HTTP/1 **request head** has not arrived whole within `head` of its first byte (read
//!   through [`HeadTimed`]): hyper's own header-read timeout would run from the end of the
//!   previous response, so it would end an idle keep-alive connection at `head` whatever `idle`
//!   said, and it makes (boxes, registers, drops) a timer per request; this is a clock reading
//!   per request;
//! - a **stream's reader has stalled**: a response body watched through
//!   [`ConnectionCloser::watch_reader`] handed hyper a frame and hyper has not come back for the
//!   next one within the body's timeout — its client stopped reading (see [`crate::stream`]);
//! - a response body asks for it through [`ConnectionCloser::close`].
//!
//! Closing drops the connection, and with it every response body on it, their in-flight slots and
//! their upstream calls.
//!
//! The streams' readers are watched by this one watchdog, which runs in the connection's own task,
//! rather than by a task and a timer per stream: a spawned task per stream cost two or three
//! wake-ups of the runtime's IO driver and two context switches per streamed request
//! (BENCHMARKS.md). The watchdog sleeps until the earliest deadline of the connection and of its
//! streams; a frame handed over later can only move a stream's deadline later than that, so the
//! watchdog is woken early only when a stream starts being watched with a deadline before the one it
//! sleeps to. A request head begun later never wakes it: the watchdog looks at least once every
//! `head`, so a head begun after one pass is seen at the next, no later than its deadline, and
//! the watchdog then sleeps to that deadline.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::util::Oneshot;
use tower_service::Service;

use super::PerRequest;

/// Closes the connection a request arrived on (a request extension set by the gateway's server),
/// and watches the readers of the streams sent on it. Closing drops every response body on it,
/// which cancels their upstream calls.
#[derive(Debug, Clone)]
pub struct ConnectionCloser(Arc<Closer>);

#[derive(Debug)]
struct Closer {
    closed: AtomicBool,
    /// Whether a connection's watchdog reads this (false for a detached closer).
    watched: bool,
    /// Wakes the watchdog: the connection was closed, or a stream's deadline is earlier than the
    /// one it sleeps to. A permit is kept when the watchdog is not waiting, so no wake is lost.
    wake: Notify,
    readers: Mutex<Readers>,
}

/// The streams watched on one connection.
#[derive(Debug, Default)]
struct Readers {
    /// Dropped with their bodies; the dead ones are pruned on each pass of the watchdog, and by a
    /// new stream when the list has doubled since the last pruning (many short streams on one
    /// HTTP/2 connection would otherwise pile up between passes, up to a stream timeout apart).
    live: Vec<Weak<ReaderWatch>>,
    /// The list's length at which a new stream prunes it first.
    prune_at: usize,
    /// When the watchdog will next look, if it sleeps.
    sleeping_until: Option<Instant>,
}

impl ConnectionCloser {
    fn new(watched: bool) -> Self {
        ConnectionCloser(Arc::new(Closer {
            closed: AtomicBool::new(false),
            watched,
            wake: Notify::new(),
            readers: Mutex::new(Readers::default()),
        }))
    }

    /// A closer that closes nothing (for tests and other servers): no watchdog reads it, so
    /// nothing it is asked to watch is watched.
    pub fn detached() -> Self {
        ConnectionCloser::new(false)
    }

    /// Closes the connection now.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }

    /// Whether the connection was closed through this handle (or for a stalled reader).
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Watches the reader of a stream: the connection's watchdog closes the connection when a
    /// frame handed to hyper ([`ReaderWatch::handed`]) has not been followed by hyper's next poll
    /// ([`ReaderWatch::taken`]) within `timeout`. The watch ends when the returned handle is
    /// dropped. `None` for a detached closer or a zero timeout: nothing watches.
    pub(crate) fn watch_reader(&self, timeout: Duration) -> Option<Arc<ReaderWatch>> {
        if !self.0.watched || timeout.is_zero() {
            return None;
        }
        // A deadline is `timeout` after a clock reading: a longer timeout could overflow the clock.
        let timeout = timeout.min(MAX_TIMEOUT);
        let watch = Arc::new(ReaderWatch {
            timeout,
            started: Instant::now(),
            waiting: AtomicBool::new(false),
            handed_ms: AtomicU64::new(0),
        });
        let mut readers = lock(&self.0.readers);
        if readers.live.len() >= readers.prune_at {
            readers.live.retain(|weak| weak.strong_count() > 0);
            readers.prune_at = (2 * readers.live.len()).max(MIN_PRUNE_AT);
        }
        readers.live.push(Arc::downgrade(&watch));
        // Its first deadline is a timeout after a frame handed from now on; the watchdog needs
        // waking only when that is before the one it sleeps to.
        let wake = readers
            .sleeping_until
            .is_some_and(|at| watch.started + timeout < at);
        drop(readers);
        if wake {
            self.0.wake.notify_one();
        }
        Some(watch)
    }
}

/// The longest a stream's reader is given (a longer timeout is this one: 100 years).
const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The fewest watched streams a connection's list holds before a new one prunes it.
const MIN_PRUNE_AT: usize = 16;

/// Locks `m`, taking over a lock poisoned by a panic elsewhere (the list stays consistent: every
/// change to it is one push, retain or store).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the connection's watchdog reads of one stream: whether a frame is waiting for hyper to
/// come back for the next, and since when.
#[derive(Debug)]
pub(crate) struct ReaderWatch {
    timeout: Duration,
    started: Instant,
    /// A frame was handed to hyper and the body has not been polled since.
    waiting: AtomicBool,
    /// Milliseconds after `started` when that frame was handed over.
    handed_ms: AtomicU64,
}

impl ReaderWatch {
    /// A frame was handed to hyper at `now`.
    pub(crate) fn handed(&self, now: Instant) {
        let ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        self.handed_ms.store(ms, Ordering::Relaxed);
        self.waiting.store(true, Ordering::Release);
    }

    /// hyper came back for the next frame: the client took the last one.
    pub(crate) fn taken(&self) {
        self.waiting.store(false, Ordering::Release);
    }

    /// When this reader counts as stalled unless hyper comes back first: a timeout after the frame
    /// it waits on, or, waiting on none, after a frame handed `now`.
    fn deadline(&self, now: Instant) -> Instant {
        if self.waiting.load(Ordering::Acquire) {
            let handed = Duration::from_millis(self.handed_ms.load(Ordering::Relaxed));
            self.started + handed + self.timeout
        } else {
            now + self.timeout
        }
    }
}

/// What the watchdog of one connection reads.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    opened: Instant,
    /// Requests whose response has not been fully sent (or dropped).
    active: AtomicUsize,
    /// Milliseconds after `opened` of the last request start or end.
    last_change_ms: AtomicU64,
    /// Milliseconds after `opened` of the first byte of a request head not yet whole (read with
    /// no request in flight); [`NO_HEAD`] when none is awaited.
    head_started_ms: AtomicU64,
    got_request: AtomicBool,
    closer: ConnectionCloser,
}

/// `head_started_ms` when no request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// The bounds a connection's watchdog enforces (`ServerLimits`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The first request must arrive within this of the accept.
    pub(crate) first_request: Duration,
    /// No request in flight for this long closes the connection.
    pub(crate) idle: Duration,
    /// A request head must arrive whole within this of its first byte; `None`: no bound of its
    /// own (the first-request and idle bounds still hold).
    pub(crate) head: Option<Duration>,
}

impl ConnectionState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnectionState {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            last_change_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NO_HEAD),
            got_request: AtomicBool::new(false),
            closer: ConnectionCloser::new(true),
        })
    }

    /// Milliseconds since the connection opened.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NO_HEAD - 1)
    }

    fn touch(&self) {
        self.last_change_ms
            .store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// Bytes were read from the connection: with no request in flight and no head begun, they
    /// begin a request head.
    fn bytes_read(&self) {
        if self.head_started_ms.load(Ordering::Relaxed) == NO_HEAD
            && self.active.load(Ordering::Acquire) == 0
        {
            self.head_started_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
        }
    }

    /// A request arrived (its head whole): it is in flight until its guard drops.
    fn request_started(&self) {
        self.got_request.store(true, Ordering::Release);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(NO_HEAD, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves when the connection must close: its first request is late, a request head is
    /// late, it has been idle too long, a stream's reader stalled, or a body closed it.
    pub(crate) async fn watchdog(self: Arc<Self>, bounds: Bounds) {
        let closer = &self.closer.0;
        // Deadlines are these after a clock reading: longer ones could overflow the clock.
        let first_request = bounds.first_request.min(MAX_TIMEOUT);
        let idle = bounds.idle.min(MAX_TIMEOUT);
        let head = bounds.head.map(|head| head.min(MAX_TIMEOUT));
        loop {
            if closer.closed.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            let head_started = match self.head_started_ms.load(Ordering::Relaxed) {
                NO_HEAD => None,
                ms => Some(self.opened + Duration::from_millis(ms)),
            };
            let mut deadline = if !self.got_request.load(Ordering::Acquire) {
                self.opened + first_request
            } else if head_started.is_none() && self.active.load(Ordering::Acquire) == 0 {
                let last = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
                self.opened + last + idle
            } else {
                // Requests in flight bound themselves (timeouts, the streams' readers below);
                // look again after one idle period.
                now + idle
            };
            if let Some(head) = head {
                // A head being read is due a head timeout after its first byte; one begun after
                // this pass is seen at the next, which comes within a head timeout.
                deadline = deadline.min(head_started.unwrap_or(now) + head);
            }
            if deadline <= now {
                return;
            }
            // The streams' deadlines; the dead are pruned.
            let stalled = {
                let mut readers = lock(&closer.readers);
                let mut stalled = None;
                readers.live.retain(|weak| match weak.upgrade() {
                    Some(reader) => {
                        let due = reader.deadline(now);
                        if due <= now {
                            stalled = Some(reader.timeout);
                        }
                        deadline = deadline.min(due);
                        true
                    }
                    None => false,
                });
                readers.prune_at = (2 * readers.live.len()).max(MIN_PRUNE_AT);
                readers.sleeping_until = Some(deadline);
                stalled
            };
            if let Some(timeout) = stalled {
                tracing::warn!(
                    timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    "the client stopped reading its stream; closing the connection"
                );
                self.closer.close();
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = closer.wake.notified() => {}
            }
        }
    }

    /// Whether the connection was closed through its closer: for a stalled reader, or by a body.
    pub(crate) fn closed_by_closer(&self) -> bool {
        self.closer.is_closed()
    }
}

#[cfg(test)]
impl ConnectionCloser {
    /// A closer read by the watchdog of a connection with one request in flight and hour-long
    /// first-request, idle and head bounds, and that watchdog: it resolves when the connection
    /// closes.
    pub(crate) fn watched_for_test() -> (Self, impl Future<Output = ()> + Send + 'static) {
        let state = ConnectionState::new();
        state.request_started();
        let hour = Duration::from_secs(3600);
        let bounds = Bounds {
            first_request: hour,
            idle: hour,
            head: Some(hour),
        };
        (state.closer.clone(), state.watchdog(bounds))
    }
}

/// The gateway's service for one connection, as hyper calls it: records request starts and ends
/// for the watchdog and gives each request the connection's [`ConnectionCloser`].
///
/// Every connection shares the one stack behind an `Arc`. Each request calls a clone of its own
/// (poll_ready, then call, as tower requires), which is what hyper-util's tower adapter did per
/// request anyway. For the gateway's own stack ([`PerRequest::Kept`]), ready by construction, the
/// connection's first request clones it once for the connection instead (hyper calls with
/// `&self`, tower with `&mut self`) and each request calls that clone in place: a clone per request
/// is a heap block and an `Arc` count per layer (`crate::ready`).
///
/// A request counts as in flight for the watchdog from the moment hyper hands it over, before
/// the stack is ready for it.
#[derive(Debug)]
pub(crate) struct ConnectionService<S> {
    inner: Arc<S>,
    /// This connection's own clone of `inner`, made at its first request; `None` for a clone
    /// per request.
    own: Option<std::cell::RefCell<crate::ready::Own<S>>>,
    state: Arc<ConnectionState>,
}

/// An empty extensions map with room for the extensions a request through the gateway takes (the
/// connection's closer, the route's error dialect, the key's id and its record): a map that starts
/// empty is made for three and grown at the fourth, its entries moved into a new table
/// (callgrind, issue 18).
///
/// The map of a response this thread handed to hyper, emptied ([`recycle_extensions`]), when
/// there is one: a chat reply carries its request's map back (the translate stage's `Room`), and
/// once hyper has written a head it drops the map. (A map an error reply made for itself may have
/// room for fewer: it grows once, at its first request's fourth entry, and keeps that room.)
/// Otherwise a clone of one kept per thread, emptied after four entries made it that large; an
/// emptied map keeps its room.
fn sized_extensions() -> http::Extensions {
    thread_local! {
        static ROOMY: http::Extensions = {
            let mut e = http::Extensions::new();
            e.insert(0u8);
            e.insert(0u16);
            e.insert(0u32);
            e.insert(0u64);
            e.clear();
            e
        };
    }
    // `try_with`: while the thread's locals are torn down, a plain new map.
    let spare = SPARE_EXTENSIONS.try_with(|spare| spare.borrow_mut().pop());
    spare
        .ok()
        .flatten()
        .or_else(|| ROOMY.try_with(http::Extensions::clone).ok())
        .unwrap_or_default()
}

thread_local! {
    /// Emptied extension maps of responses this thread served, for [`sized_extensions`]: at most
    /// [`SPARE_MAPS`], each of at most [`MAX_RECYCLED_ENTRIES`] entries when it was kept.
    static SPARE_EXTENSIONS: std::cell::RefCell<Vec<http::Extensions>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The emptied maps a thread keeps: one per request it serves at a time, up to this many.
const SPARE_MAPS: usize = 8;

/// A map with more entries than this is dropped, not kept. (An emptied map keeps its table, which
/// entries of other types made larger before; each entry is of a type of its own, so no map's
/// table outgrows the extension types there are.)
const MAX_RECYCLED_ENTRIES: usize = 8;

/// Takes a response's extensions, just before hyper writes its head, to be emptied and reused by
/// a request this thread reads next ([`sized_extensions`]). hyper reads two things there: a
/// custom reason phrase, which leaves the map where it is, and the original case of header names,
/// which only a hyper client set to preserve it puts there (the gateway's is not).
fn recycle_extensions(extensions: &mut http::Extensions) {
    if extensions.is_empty()
        || extensions.len() > MAX_RECYCLED_ENTRIES
        || extensions.get::<hyper::ext::ReasonPhrase>().is_some()
    {
        return;
    }
    let mut map = std::mem::take(extensions);
    // Emptied before the list is borrowed: an entry's drop could make or recycle a map itself.
    map.clear();
    // While the thread's locals are torn down, the map is dropped.
    let _ = SPARE_EXTENSIONS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_MAPS {
            spare.push(map);
        }
    });
}

impl<S> ConnectionService<S> {
    pub(crate) fn new(inner: Arc<S>, state: Arc<ConnectionState>, per_request: PerRequest) -> Self {
        ConnectionService {
            inner,
            own: (per_request == PerRequest::Kept).then(std::cell::RefCell::default),
            state,
        }
    }
}

impl<S, ReqB, ResB> hyper::service::Service<Request<ReqB>> for ConnectionService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
{
    type Response = Response<TrackedBody<ResB>>;
    type Error = S::Error;
    type Future = TrackedFuture<Either<S::Future, Oneshot<S, Request<ReqB>>>>;

    fn call(&self, mut req: Request<ReqB>) -> Self::Future {
        let state = self.state.clone();
        state.request_started();
        let extensions = req.extensions_mut();
        if extensions.is_empty() {
            *extensions = sized_extensions();
        }
        extensions.insert(state.closer.clone());
        let kept = self.own.as_ref().and_then(|own| own.try_borrow_mut().ok());
        let fut = match kept {
            Some(mut own) => crate::ready::call_or_wait(&mut own, || S::clone(&self.inner), req),
            None => Either::Right(Oneshot::new(S::clone(&self.inner), req)),
        };
        TrackedFuture {
            fut,
            guard: Some(ActiveGuard(state)),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ConnectionService`]: hands the request's guard to the body.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        fut: F,
        guard: Option<ActiveGuard>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.fut.poll(cx))?;
        recycle_extensions(res.extensions_mut());
        let guard = this.guard.take();
        Poll::Ready(Ok(res.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

/// Counts one request in flight on its connection until dropped.
#[derive(Debug)]
struct ActiveGuard(Arc<ConnectionState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as a request in flight on its connection until it is dropped.
    #[derive(Debug)]
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _guard: Option<ActiveGuard>,
    }
}

impl<B: HttpBody> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket as its HTTP/1 server reads it: the first bytes read with no request in
/// flight begin a request head, which the connection's watchdog bounds (`Bounds::head`). Writes
/// pass through untouched.
#[derive(Debug)]
pub(crate) struct HeadTimed<I> {
    io: I,
    state: Arc<ConnectionState>,
}

impl<I> HeadTimed<I> {
    pub(crate) fn new(io: I, state: Arc<ConnectionState>) -> Self {
        HeadTimed { io, state }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadTimed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.bytes_read();
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadTimed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// Lets the spawned watchdog run its pass at the current (paused) time.
    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    /// The entries that made the kept map large are not in its clones: a request starts with
    /// none of them.
    #[test]
    fn sized_extensions_are_empty() {
        for _ in 0..2 {
            let mut e = sized_extensions();
            assert!(e.is_empty());
            assert_eq!(e.get::<u8>(), None);
            assert_eq!(e.get::<u64>(), None);
            e.insert(1u8);
            assert_eq!(e.get::<u8>(), Some(&1));
        }
    }

    /// A response's map comes back to the next request emptied (a key's id never reaches a
    /// request it did not authenticate), once per response; a map with a reason phrase stays on
    /// its response for hyper, and a map grown large is not kept.
    #[test]
    fn a_response_map_is_reused_emptied() {
        std::thread::spawn(|| {
            let answered = |e: http::Extensions| {
                let mut res = Response::new(());
                *res.extensions_mut() = e;
                res
            };
            let mut e = sized_extensions();
            e.insert(crate::auth::ApiKeyId("key-1".into()));
            e.insert(7u32);
            let mut res = answered(e);
            recycle_extensions(res.extensions_mut());
            assert!(res.extensions().is_empty(), "taken from the response");
            assert_eq!(SPARE_EXTENSIONS.with(|s| s.borrow().len()), 1);
            let mut next = sized_extensions();
            assert!(next.is_empty());
            assert_eq!(next.get::<crate::auth::ApiKeyId>(), None);
            assert_eq!(SPARE_EXTENSIONS.with(|s| s.borrow().len()), 0);

            next.insert(hyper::ext::ReasonPhrase::from_static(b"Fine"));
            let mut res = answered(next);
            recycle_extensions(res.extensions_mut());
            assert!(res.extensions().get::<hyper::ext::ReasonPhrase>().is_some());
            assert_eq!(SPARE_EXTENSIONS.with(|s| s.borrow().len()), 0);

            let mut large = http::Extensions::new();
            macro_rules! nine {
                ($($t:ty),*) => { $(large.insert(<$t>::default());)* };
            }
            nine!(u8, u16, u32, u64, u128, i8, i16, i32, i64);
            let mut res = answered(large);
            recycle_extensions(res.extensions_mut());
            assert_eq!(res.extensions().len(), 9, "left where it is");
            assert_eq!(SPARE_EXTENSIONS.with(|s| s.borrow().len()), 0);

            for _ in 0..SPARE_MAPS + 2 {
                let mut e = http::Extensions::new();
                e.insert(1u8);
                recycle_extensions(&mut e);
            }
            assert_eq!(SPARE_EXTENSIONS.with(|s| s.borrow().len()), SPARE_MAPS);
        })
        .join()
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn one_stalled_reader_closes_the_connection_at_its_deadline() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        settle().await;
        let reading = closer.watch_reader(5 * SEC).unwrap();
        let stalled = closer.watch_reader(5 * SEC).unwrap();
        tokio::time::sleep(SEC).await;
        // This frame is never taken.
        stalled.handed(Instant::now());
        // The other reader takes each frame a second after it is handed, for longer than the
        // timeout: it is never the one that stalls.
        for _ in 0..4 {
            reading.handed(Instant::now());
            tokio::time::sleep(SEC).await;
            reading.taken();
            settle().await;
            assert!(!closer.is_closed());
        }
        // Stalled since 1 s: closed at 6 s, not before.
        tokio::time::sleep(SEC - Duration::from_millis(100)).await;
        settle().await;
        assert!(!closer.is_closed(), "closed before the deadline");
        tokio::time::sleep(Duration::from_millis(200)).await;
        settle().await;
        assert!(
            closer.is_closed(),
            "the stalled reader's connection stayed open"
        );
        assert!(watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_watched_while_the_watchdog_sleeps_long_is_still_caught_in_time() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        // The watchdog sleeps to the hour-long idle deadline of a connection with a request in
        // flight; a 2 s reader must wake it.
        settle().await;
        let reader = closer.watch_reader(2 * SEC).unwrap();
        reader.handed(Instant::now());
        tokio::time::sleep(2 * SEC + Duration::from_millis(10)).await;
        settle().await;
        assert!(closer.is_closed());
        assert!(watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_waiting_on_no_frame_never_stalls() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        settle().await;
        let reader = closer.watch_reader(SEC).unwrap();
        reader.handed(Instant::now());
        reader.taken(); // hyper came back; the upstream is slow to send the next chunk
        tokio::time::sleep(30 * SEC).await;
        settle().await;
        assert!(!closer.is_closed());
        assert!(!watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_readers_are_pruned_and_close_nothing() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        settle().await;
        for _ in 0..3 {
            let reader = closer.watch_reader(SEC).unwrap();
            reader.handed(Instant::now());
        }
        tokio::time::sleep(5 * SEC).await;
        settle().await;
        assert!(!closer.is_closed());
        assert!(lock(&closer.0.readers).live.is_empty());
        assert!(!watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn many_short_streams_between_passes_do_not_pile_up() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let _watchdog = tokio::spawn(watchdog);
        settle().await;
        // One stream kept open, then ten thousand that end at once, with no await in between:
        // the watchdog makes no pass meanwhile, so only the pruning on registration bounds the
        // list.
        let open = closer.watch_reader(60 * SEC).unwrap();
        for _ in 0..10_000 {
            let short = closer.watch_reader(60 * SEC).unwrap();
            short.handed(Instant::now());
            short.taken();
        }
        let held = lock(&closer.0.readers).live.len();
        assert!(
            held <= 2 * MIN_PRUNE_AT,
            "{held} entries held for 1 live stream"
        );
        drop(open);
    }

    #[tokio::test(start_paused = true)]
    async fn close_ends_the_watchdog_at_once() {
        let (closer, watchdog) = ConnectionCloser::watched_for_test();
        let watchdog = tokio::spawn(watchdog);
        settle().await;
        closer.close();
        settle().await;
        assert!(watchdog.is_finished());
    }

    /// A new connection with its watchdog spawned; `served`: it has served one request, which
    /// ended at 0 s, and is idle.
    async fn connection(
        bounds: Bounds,
        served: bool,
    ) -> (Arc<ConnectionState>, tokio::task::JoinHandle<()>) {
        let state = ConnectionState::new();
        if served {
            state.request_started();
            drop(ActiveGuard(state.clone()));
        }
        let watchdog = tokio::spawn(state.clone().watchdog(bounds));
        settle().await;
        (state, watchdog)
    }

    /// Sleeps to `at` after the test's start (`start`), then lets the watchdog look.
    async fn at(start: Instant, at: Duration) {
        tokio::time::sleep_until(start + at).await;
        settle().await;
    }

    const BOUNDS: Bounds = Bounds {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(120),
        head: Some(Duration::from_secs(30)),
    };

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_outlives_the_head_timeout_until_the_idle_one() {
        let start = Instant::now();
        let (_state, watchdog) = connection(BOUNDS, true).await;
        at(start, 119 * SEC).await;
        assert!(!watchdog.is_finished(), "closed before the idle timeout");
        at(start, 121 * SEC).await;
        assert!(watchdog.is_finished(), "the idle connection stayed open");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_while_the_watchdog_sleeps_is_closed_a_head_timeout_after_its_first_byte()
    {
        let start = Instant::now();
        let (state, watchdog) = connection(BOUNDS, true).await;
        // The watchdog looked at 0 s; a head's first byte at 50 s, never completed.
        at(start, 50 * SEC).await;
        state.bytes_read();
        // More bytes of the same head move nothing.
        at(start, 70 * SEC).await;
        state.bytes_read();
        at(start, 79 * SEC).await;
        assert!(!watchdog.is_finished(), "closed before the head's deadline");
        at(start, 81 * SEC).await;
        assert!(
            watchdog.is_finished(),
            "the late head's connection stayed open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_arrives_whole_ends_its_bound_and_bytes_read_in_flight_begin_none() {
        let start = Instant::now();
        let (state, watchdog) = connection(BOUNDS, true).await;
        at(start, 5 * SEC).await;
        state.bytes_read();
        at(start, 6 * SEC).await;
        state.request_started();
        // The body and whatever else is read while the request is in flight begin no head.
        state.bytes_read();
        at(start, 100 * SEC).await;
        assert!(!watchdog.is_finished(), "a request in flight was cut");
        // The response sent at 100 s: idle from then on, with no head begun.
        drop(ActiveGuard(state.clone()));
        at(start, 219 * SEC).await;
        assert!(!watchdog.is_finished(), "closed before the idle timeout");
        at(start, 221 * SEC).await;
        assert!(watchdog.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_is_bounded_by_the_first_request_or_the_head_timeout_whichever_is_first() {
        let start = Instant::now();
        let bounds = Bounds {
            first_request: Duration::from_secs(60),
            ..BOUNDS
        };
        let (state, watchdog) = connection(bounds, false).await;
        at(start, 20 * SEC).await;
        state.bytes_read();
        at(start, 49 * SEC).await;
        assert!(!watchdog.is_finished());
        at(start, 51 * SEC).await;
        assert!(
            watchdog.is_finished(),
            "the first head outlived its deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn absurdly_long_bounds_neither_overflow_the_clock_nor_close_anything() {
        let forever = Duration::from_millis(u64::MAX);
        let bounds = Bounds {
            first_request: forever,
            idle: forever,
            head: Some(forever),
        };
        let (state, watchdog) = connection(bounds, false).await;
        state.bytes_read();
        tokio::time::sleep(3600 * SEC).await;
        settle().await;
        assert!(!watchdog.is_finished());
    }

    #[test]
    fn a_detached_closer_or_a_zero_timeout_watches_nothing() {
        assert!(ConnectionCloser::detached().watch_reader(SEC).is_none());
        let (closer, _watchdog) = ConnectionCloser::watched_for_test();
        assert!(closer.watch_reader(Duration::ZERO).is_none());
    }
}
