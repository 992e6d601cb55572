//! A small load generator for `scripts/bench-load`: the same client for every target, so the
//! comparison is fair. Loopback only in practice (it sends wherever `--url` says; the script passes
//! 127.0.0.1). Every mode is bounded in count and time and prints one JSON line.
//!
//! ```text
//! loadgen rate   --url URL --body JSON --rate 1000 --secs 10   # open-loop fixed rate: p50/p99/p99.9
//! loadgen stream --url URL --body JSON --n 200 --concurrency 4 # streaming TTFT and total time
//! loadgen hold   --url URL --body JSON --n 1000 --secs 8       # N open streams, held, then dropped
//! ```
//!
//! `rate` is open-loop: request `i` is due at `start + i/rate` whatever happened to the others, and
//! its latency runs from the moment its timer fires, but no later than 2 ms after its due time
//! (tokio's timer granularity is forgiven, nothing more), so a target that falls behind is charged
//! for the queueing it causes, like wrk2. The timer's own lag is reported as `timer_lag`.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Full URL of the chat-completions endpoint.
    #[arg(long)]
    url: String,
    /// The request body (JSON).
    #[arg(long)]
    body: String,
    /// Bearer token, if the target wants one.
    #[arg(long)]
    auth: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

#[derive(Subcommand)]
enum Mode {
    /// Fixed aggregate rate, open loop.
    Rate {
        #[command(flatten)]
        t: Target,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Requests allowed in flight; beyond it new requests wait (and the wait counts).
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
        /// Also print every latency (ms), for merging rounds.
        #[arg(long)]
        raw: bool,
    },
    /// Streaming requests, closed loop: time to first content token and to the end.
    Stream {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 200)]
        n: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Also print every stream's time to first token and total (ms), for merging rounds.
        #[arg(long)]
        raw: bool,
        /// Each worker first runs a stream it does not count, so the counted ones find their
        /// connections open (a run cut into rounds would otherwise count a connection's setup
        /// per worker and round).
        #[arg(long)]
        warmup: bool,
    },
    /// Open N streaming requests at once, print when all are open, hold them, then drop them.
    Hold {
        #[command(flatten)]
        t: Target,
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 8.0)]
        secs: f64,
        /// Streams opened at the same time while ramping up.
        #[arg(long, default_value_t = 200)]
        ramp: usize,
    },
}

type Http = Client<HttpConnector, Full<Bytes>>;

fn client() -> Http {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(conn)
}

fn request(t: &Target) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::post(&t.url).header("content-type", "application/json");
    if let Some(a) = &t.auth {
        b = b.header("authorization", format!("Bearer {a}"));
    }
    b.body(Full::new(Bytes::from(t.body.clone()))).unwrap()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    serde_json::json!({
        "p50_ms": pct(&v, 50.0), "p99_ms": pct(&v, 99.0), "p999_ms": pct(&v, 99.9),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
    })
}

/// Samples (ms) as `--raw` prints them: to 0.1 µs.
fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|l| (l * 1e4).round() / 1e4).collect()
}

fn emit(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").unwrap();
    out.flush().unwrap();
}

/// One complete (non-streaming) request; `Ok` only for a 200 with its whole body read.
async fn one(c: &Http, t: &Target) -> Result<(), String> {
    let fut = async {
        let res = c.request(request(t)).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let _ = res.into_body().collect().await.map_err(|e| e.to_string())?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(Duration::from_millis(t.timeout_ms), fut)
        .await
        .map_err(|_| "timeout".to_owned())?
}

/// Whether `buf` holds the first token of a chat stream: a non-empty `"content":"…"` (OpenAI),
/// `"text":"…"` (Anthropic) or `"outputText":"…"` (Titan).
fn has_token(buf: &[u8]) -> bool {
    [&b"\"content\":\""[..], b"\"text\":\"", b"\"outputText\":\""]
        .iter()
        .any(|pat| {
            buf.windows(pat.len() + 1)
                .any(|w| &w[..pat.len()] == *pat && w[pat.len()] != b'"')
        })
}

struct StreamTimes {
    ttft: Duration,
    total: Duration,
    events: usize,
}

async fn one_stream(c: &Http, t: &Target) -> Result<StreamTimes, String> {
    let start = Instant::now();
    let fut = async {
        let res = c.request(request(t)).await.map_err(|e| e.to_string())?;
        if res.status() != 200 {
            return Err(format!("status {}", res.status()));
        }
        let mut body = res.into_body();
        let (mut ttft, mut seen, mut events) = (None, Vec::new(), 0usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(d) = frame.data_ref() {
                events += d.windows(5).filter(|w| w == b"data:").count();
                if ttft.is_none() {
                    seen.extend_from_slice(d);
                    if has_token(&seen) {
                        ttft = Some(start.elapsed());
                    }
                }
            }
        }
        Ok(StreamTimes {
            ttft: ttft.ok_or("no content token")?,
            total: start.elapsed(),
            events,
        })
    };
    tokio::time::timeout(Duration::from_millis(t.timeout_ms), fut)
        .await
        .map_err(|_| "timeout".to_owned())?
}

async fn rate(t: Target, rate: f64, secs: f64, max_in_flight: usize, raw: bool) {
    let c = client();
    let total = (rate * secs).round() as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(total);
    let mut lag = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        // The clock starts when the timer fires, but no later than 2 ms after the due time:
        // tokio's timer has 1 ms granularity and often fires 1-2 ms late (forgiven: it would be
        // charged to every target alike); any later start (the loop held up waiting for an
        // in-flight slot, or starved) is charged to the target, so one that falls behind pays for
        // the queueing it causes.
        let fired = Instant::now();
        lag.push(fired.saturating_duration_since(due).as_secs_f64() * 1e3);
        let fired = fired.min(due + Duration::from_millis(2));
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (c, t, errors) = (c.clone(), t.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let r = one(&c, &t).await;
            let lat = fired.elapsed().as_secs_f64() * 1e3;
            drop(permit);
            match r {
                Ok(()) => Some(lat),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }));
    }
    let mut lats = Vec::with_capacity(total);
    for h in handles {
        if let Ok(Some(l)) = h.await {
            lats.push(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok = lats.len();
    let raw_lats = raw.then(|| rounded(&lats));
    let mut v = summary(lats);
    v["timer_lag"] = summary(lag);
    if let Some(r) = raw_lats {
        v["lat_ms"] = r.into();
    }
    v["mode"] = "rate".into();
    v["target_rps"] = rate.into();
    v["sent"] = total.into();
    v["ok"] = ok.into();
    v["errors"] = errors.load(Ordering::Relaxed).into();
    v["achieved_rps"] = (ok as f64 / elapsed).into();
    emit(v);
}

async fn stream(t: Target, n: usize, concurrency: usize, raw: bool, warmup: bool) {
    let c = client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (c, t, next) = (c.clone(), t.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            if warmup {
                let _ = one_stream(&c, &t).await;
            }
            let mut got = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                got.push(one_stream(&c, &t).await);
            }
            got
        }));
    }
    let (mut ttft, mut total, mut errors, mut events) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for w in workers {
        for r in w.await.unwrap() {
            match r {
                Ok(s) => {
                    ttft.push(s.ttft.as_secs_f64() * 1e3);
                    total.push(s.total.as_secs_f64() * 1e3);
                    events += s.events;
                }
                Err(_) => errors += 1,
            }
        }
    }
    let raw_samples = raw.then(|| (rounded(&ttft), rounded(&total)));
    let mut out = serde_json::json!({
        "mode": "stream", "ok": ttft.len(), "errors": errors, "events": events,
        "ttft": summary(ttft), "total": summary(total),
    });
    if let Some((ttft, total)) = raw_samples {
        out["ttft_ms"] = ttft.into();
        out["total_ms"] = total.into();
    }
    emit(out);
}

async fn hold(t: Target, n: usize, secs: f64, ramp: usize) {
    let c = client();
    let opening = Arc::new(tokio::sync::Semaphore::new(ramp));
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<bool>(n);
    let deadline = Instant::now() + Duration::from_millis(t.timeout_ms);
    let mut handles = Vec::new();
    for _ in 0..n {
        let (c, t, opening, open_tx) = (c.clone(), t.clone(), opening.clone(), open_tx.clone());
        handles.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.unwrap();
            let res = tokio::time::timeout_at(deadline.into(), c.request(request(&t))).await;
            let Ok(Ok(res)) = res else {
                let _ = open_tx.send(false).await;
                return;
            };
            let ok = res.status() == 200;
            let mut body = res.into_body();
            // Open = the first event arrived.
            let first = tokio::time::timeout_at(deadline.into(), body.frame()).await;
            drop(permit);
            let _ = open_tx.send(ok && matches!(first, Ok(Some(Ok(_))))).await;
            // Hold: keep reading until the stream ends or the task is dropped.
            while let Some(Ok(_)) = body.frame().await {}
        }));
    }
    drop(open_tx);
    let started = Instant::now();
    let (mut open, mut failed) = (0usize, 0usize);
    while open + failed < n {
        match open_rx.recv().await {
            Some(true) => open += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    emit(serde_json::json!({
        "mode": "hold", "event": "open", "open": open, "failed": failed,
        "open_secs": started.elapsed().as_secs_f64(),
    }));
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let still = handles.iter().filter(|h| !h.is_finished()).count();
    for h in &handles {
        h.abort();
    }
    emit(serde_json::json!({"mode": "hold", "event": "done", "still_open": still}));
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match cli.mode {
            Mode::Rate {
                t,
                rate: r,
                secs,
                max_in_flight,
                raw,
            } => rate(t, r, secs, max_in_flight, raw).await,
            Mode::Stream {
                t,
                n,
                concurrency,
                raw,
                warmup,
            } => stream(t, n, concurrency, raw, warmup).await,
            Mode::Hold { t, n, secs, ramp } => hold(t, n, secs, ramp).await,
        }
    });
}
