//! The access log, written in batches.
//!
//! Written a line at a time, the access log cost the gateway one `write(2)` per request — the one
//! system call it made beyond the bare proxy's six (BENCHMARKS.md, issue 18) — and, with two
//! workers, waits on `Stdout`'s lock at saturation, where the gateway then reached 0.66–0.69× the
//! bare proxy's rate against 0.74–0.82× batched. [`Batched`] appends access-log lines (target
//! `access`) to a buffer that is written out about `interval` after its first line, or before it
//! would hold more than [`FULL`] bytes: at 1,000 requests a second and 100 ms, one write per
//! hundred lines. The timed write is done by a thread of its own, which sleeps while the buffer is
//! empty, so an idle gateway wakes for nothing.
//!
//! Every other line — start-up, warnings, errors — is written at once, after the access lines
//! batched before it: the log keeps its order, and nothing but access lines waits. A thread whose
//! line does not fit writes the batch itself, so a sink that blocks (a full pipe) holds the
//! writers back as line-at-a-time writing did, and the buffer stays bounded. Dropping the
//! [`Flusher`] (the gateway's graceful exit) writes what is left; lines that arrive after that
//! are written at once. A process killed outright (`SIGKILL`, an abort) loses the batch it held.
//!
//! Why by hand: tracing-appender's non-blocking writer hands each line to a worker thread over a
//! channel, which costs a line's allocation, a wake-up and a write per line at modest rates —
//! the write this module exists to save.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

/// A batch is written before it would hold more than this many bytes (about a hundred access
/// lines); a longer line is a batch of its own.
pub(crate) const FULL: usize = 64 * 1024;

/// The target whose lines are batched: the access log (`observe`).
const BATCHED_TARGET: &str = "access";

/// The log writer: access lines batched, every other line written at once (see the module docs).
#[derive(Clone)]
pub(crate) struct Batched {
    shared: Arc<Shared>,
}

/// Writes what is batched when dropped, and stops the timed writes.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    /// The lines waiting, and whether the flusher is to stop.
    pending: Mutex<Pending>,
    /// Signalled when the first line of a batch arrives, and at stop.
    arrived: Condvar,
    /// The sink, with the spare buffer a batch is swapped into: held while writing, so batches and
    /// direct lines reach the sink in the order they were taken. Taken before `pending`.
    out: Mutex<Out>,
    interval: Duration,
}

struct Pending {
    lines: Vec<u8>,
    stopped: bool,
}

struct Out {
    sink: Box<dyn Write + Send>,
    spare: Vec<u8>,
}

/// What a lock poisoned by a panicking writer still holds is usable: lines are plain bytes.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Batched {
    /// A writer over `sink` that writes batched lines about `interval` after they arrive, and
    /// the flusher that does it (keep it until exit; dropping it writes what is left). If the
    /// system refuses the flusher's thread, an error: the caller writes each line at once instead.
    pub(crate) fn new(
        sink: Box<dyn Write + Send>,
        interval: Duration,
    ) -> io::Result<(Batched, Flusher)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(FULL),
                stopped: false,
            }),
            arrived: Condvar::new(),
            out: Mutex::new(Out {
                sink,
                spare: Vec::with_capacity(FULL),
            }),
            interval,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || worker.run())?;
        Ok((
            Batched {
                shared: Arc::clone(&shared),
            },
            Flusher {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Writes an access line, batched (what a line of target `access` written through
    /// [`MakeWriter`] gets). A failed write loses the line, as the event's would.
    pub(crate) fn access(&self, line: &[u8]) {
        let _ = self.shared.append(line);
    }
}

impl Shared {
    /// The flusher: waits for a batch's first line, lets `interval` pass, writes the batch.
    fn run(&self) {
        loop {
            let pending = lock(&self.pending);
            let pending = self
                .arrived
                .wait_while(pending, |p| p.lines.is_empty() && !p.stopped)
                .unwrap_or_else(PoisonError::into_inner);
            if pending.stopped {
                return;
            }
            let (pending, _) = self
                .arrived
                .wait_timeout_while(pending, self.interval, |p| !p.stopped)
                .unwrap_or_else(PoisonError::into_inner);
            let stopped = pending.stopped;
            drop(pending);
            self.write_batch(&mut lock(&self.out));
            if stopped {
                return;
            }
        }
    }

    /// Appends an access line, after writing the batch if the line would not fit in it: the
    /// buffers keep [`FULL`] bytes of room and are never grown and shrunk again under load.
    fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = lock(&self.pending);
        if pending.stopped {
            // The flusher is gone (the process is exiting): nothing would write it later.
            drop(pending);
            return self.direct(line);
        }
        if !pending.lines.is_empty() && pending.lines.len() + line.len() > FULL {
            drop(pending);
            self.write_batch(&mut lock(&self.out));
            pending = lock(&self.pending);
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        drop(pending);
        if first {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Writes the batch, then `line`.
    fn direct(&self, line: &[u8]) -> io::Result<()> {
        let mut out = lock(&self.out);
        self.write_batch(&mut out);
        out.sink.write_all(line)?;
        out.sink.flush()
    }

    /// Writes what is pending, with `out` held (so nothing written after it can overtake it).
    fn write_batch(&self, out: &mut Out) {
        // The last batch written (or one whose write panicked half-way: it is not written again
        // after newer lines) makes room; a batch grown past a full one by a long line keeps no
        // more than a full one's room.
        out.spare.clear();
        out.spare.shrink_to(FULL);
        {
            let mut pending = lock(&self.pending);
            if pending.lines.is_empty() {
                return;
            }
            std::mem::swap(&mut pending.lines, &mut out.spare);
        }
        // A sink that fails loses this batch, as it would have lost these lines one by one;
        // there is nowhere left to say so.
        let _ = out.sink.write_all(&out.spare);
        let _ = out.sink.flush();
    }
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("interval", &self.shared.interval)
            .finish_non_exhaustive()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.shared.pending).stopped = true;
        self.shared.arrived.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.write_batch(&mut lock(&self.shared.out));
    }
}

/// One line's writer: batched or direct.
pub(crate) struct LineWriter<'a> {
    shared: &'a Shared,
    batched: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.batched {
            self.shared.append(buf)?;
        } else {
            self.shared.direct(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            batched: meta.target() == BATCHED_TARGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink that keeps each write apart.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Writes {
        fn all(&self) -> Vec<String> {
            lock(&self.0)
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        }
        fn wait_for(&self, count: usize) -> Vec<String> {
            let start = Instant::now();
            while lock(&self.0).len() < count && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.all()
        }
    }

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn writer(interval: Duration) -> (Batched, Flusher, Writes) {
        let writes = Writes::default();
        let Ok((batched, flusher)) = Batched::new(Box::new(writes.clone()), interval) else {
            panic!("no log-flush thread");
        };
        (batched, flusher, writes)
    }

    fn line(b: &Batched, access: bool, text: &str) {
        let mut w = LineWriter {
            shared: &b.shared,
            batched: access,
        };
        w.write_all(text.as_bytes()).unwrap();
    }

    /// Access lines arriving together leave in one write, after the interval, in order.
    #[test]
    fn access_lines_are_written_together_after_the_interval() {
        let (b, _flusher, writes) = writer(Duration::from_secs(1));
        for i in 0..50 {
            line(&b, true, &format!("access {i}\n"));
        }
        assert!(writes.all().is_empty(), "written before the interval");
        let all = writes.wait_for(1);
        let expected: String = (0..50).map(|i| format!("access {i}\n")).collect();
        assert_eq!(all, vec![expected]);
        // The next batch is timed from its own first line.
        line(&b, true, "later\n");
        assert_eq!(writes.wait_for(2)[1], "later\n");
    }

    /// Any other line is written at once, after the access lines batched before it.
    #[test]
    fn other_lines_go_at_once_after_the_batch_before_them() {
        let (b, _flusher, writes) = writer(Duration::from_secs(3600));
        line(&b, true, "a1\n");
        line(&b, true, "a2\n");
        line(&b, false, "warn\n");
        assert_eq!(writes.all(), vec!["a1\na2\n", "warn\n"]);
        line(&b, false, "error\n");
        assert_eq!(writes.all(), vec!["a1\na2\n", "warn\n", "error\n"]);
    }

    /// A full batch is written by the line that does not fit in it, without waiting for the
    /// interval; that line starts the next batch. A line longer than a batch is one on its own.
    #[test]
    fn a_full_batch_is_written_at_once() {
        let (b, flusher, writes) = writer(Duration::from_secs(3600));
        let one = format!("{}\n", "x".repeat(999));
        let fit = FULL / one.len();
        for _ in 0..fit {
            line(&b, true, &one);
        }
        assert!(writes.all().is_empty());
        line(&b, true, &one);
        let all = writes.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].len(), fit * one.len());
        let huge = format!("{}\n", "h".repeat(2 * FULL));
        line(&b, true, &huge);
        line(&b, true, "after\n");
        drop(flusher);
        assert_eq!(writes.all()[1..], [one, huge, "after\n".to_owned()]);
    }

    /// Dropping the flusher writes what is batched, without waiting for the interval; a line
    /// that arrives after that is written at once.
    #[test]
    fn dropping_the_flusher_writes_the_rest() {
        let (b, flusher, writes) = writer(Duration::from_secs(3600));
        line(&b, true, "last\n");
        let (done, dropped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(flusher);
            let _ = done.send(());
        });
        dropped
            .recv_timeout(Duration::from_secs(60))
            .expect("the flusher's drop waited for the interval");
        assert_eq!(writes.all(), vec!["last\n"]);
        line(&b, true, "later\n");
        assert_eq!(writes.all(), vec!["last\n", "later\n"]);
    }

    /// Lines from many threads: every one written, whole, each thread's in its order.
    #[test]
    fn concurrent_lines_are_whole_and_none_is_lost() {
        let (b, flusher, writes) = writer(Duration::from_millis(1));
        std::thread::scope(|s| {
            for t in 0..4 {
                let b = b.clone();
                s.spawn(move || {
                    for i in 0..2_000 {
                        line(
                            &b,
                            i % 97 != 0,
                            &format!("{t} {i} {}\n", "y".repeat(i % 300)),
                        );
                    }
                });
            }
        });
        drop(flusher);
        let text = writes.all().concat();
        let mut next = [0usize; 4];
        for l in text.lines() {
            let mut parts = l.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(parts.next().unwrap(), "y".repeat(i % 300), "{l}");
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [2_000; 4]);
    }

    /// Lines are routed by target: the access log's are batched, the rest are not.
    #[test]
    fn only_the_access_target_is_batched() {
        let (b, _flusher, writes) = writer(Duration::from_secs(3600));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(b.clone())
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "access", "one request");
            tracing::info!(target: "access", "two requests");
            assert!(writes.all().is_empty());
            tracing::warn!("something else");
        });
        let all = writes.all();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].contains("one request") && all[0].contains("two requests"));
        assert!(all[1].contains("something else"));
    }
}
